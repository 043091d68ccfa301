//! Secret masking for everything that leaves a process: log lines, error messages,
//! raw-zone manifests and `etl_runs` rows. One place, so no stage masks differently.

pub const MASK: &str = "***";

/// Header names always treated as sensitive, whatever a definition says.
const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "x-auth-token",
    "x-amz-security-token",
];

/// Query parameter names (case-insensitive, substring) always treated as sensitive.
const SENSITIVE_PARAMS: &[&str] = &[
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "signature",
    "credential",
    "auth",
    "session",
];

pub fn is_sensitive_header(name: &str, extra: &[String]) -> bool {
    let n = name.to_ascii_lowercase();
    SENSITIVE_HEADERS.contains(&n.as_str()) || extra.iter().any(|e| e.eq_ignore_ascii_case(&n))
}

fn is_sensitive_param(name: &str, extra: &[String]) -> bool {
    let n = name.to_ascii_lowercase();
    SENSITIVE_PARAMS.iter().any(|p| n.contains(p))
        || extra.iter().any(|e| e.eq_ignore_ascii_case(&n))
}

/// Masks the password of the userinfo part and the values of sensitive query parameters.
/// Works on any string that looks like a URL; other strings come back unchanged.
pub fn url(raw: &str, extra_params: &[String]) -> String {
    let (before_query, query) = match raw.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (raw, None),
    };
    let mut out = String::with_capacity(raw.len());
    // userinfo: scheme://user:password@host
    match before_query.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    match userinfo.split_once(':') {
                        Some((user, _)) => {
                            out.push_str(user);
                            out.push(':');
                            out.push_str(MASK);
                        }
                        None => out.push_str(userinfo),
                    }
                    out.push('@');
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(path);
        }
        None => out.push_str(before_query),
    }
    if let Some(q) = query {
        out.push('?');
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if is_sensitive_param(k, extra_params) => format!("{k}={MASK}"),
                _ => kv.to_string(),
            })
            .collect();
        out.push_str(&parts.join("&"));
    }
    out
}

/// Replaces every occurrence of the given secret values in a text (error bodies, messages).
pub fn values(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s.as_str(), MASK);
    }
    out
}

/// Headers as (name, value) pairs with sensitive values masked.
pub fn headers<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    extra: &[String],
) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .map(|(k, v)| {
            let v = if is_sensitive_header(k, extra) {
                MASK
            } else {
                v
            };
            (k.to_ascii_lowercase(), v.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_userinfo_password_and_sensitive_params() {
        assert_eq!(
            url(
                "https://bob:hunter2@msp.example/gbfs.json?lang=fr&api_key=abc&token=t",
                &[]
            ),
            "https://bob:***@msp.example/gbfs.json?lang=fr&api_key=***&token=***"
        );
        assert_eq!(
            url("http://127.0.0.1:8080/gbfs.json", &[]),
            "http://127.0.0.1:8080/gbfs.json"
        );
        assert_eq!(
            url("http://h/x?client=abc", &["client".to_string()]),
            "http://h/x?client=***"
        );
    }

    #[test]
    fn masks_sensitive_headers() {
        let h = headers(
            [
                ("Authorization", "Bearer abc"),
                ("Content-Type", "application/json"),
                ("X-Partner", "p"),
            ],
            &["x-partner".to_string()],
        );
        assert_eq!(
            h,
            vec![
                ("authorization".to_string(), "***".to_string()),
                ("content-type".to_string(), "application/json".to_string()),
                ("x-partner".to_string(), "***".to_string()),
            ]
        );
    }

    #[test]
    fn masks_secret_values_in_text() {
        assert_eq!(
            values("denied for key s3cr3t!", &["s3cr3t!".into()]),
            "denied for key ***"
        );
    }
}
