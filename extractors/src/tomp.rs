//! TOMP-API 1.3 operator endpoints: `{url}/operator/information` first (required), then
//! stations, available assets, pricing plans, regions and alerts, a few at once. Every
//! response is landed unchanged under its resource name (`information`, `stations`,
//! `available_assets`, `pricing_plans`, `regions`, `alerts`).
//!
//! TOMP requires `Accept-Language` and `Api-Version` on every call: mobiflux sends the
//! definition's `language` (else `en`) and `1.3.0` unless the definition sets them itself.
//! An endpoint the operator does not implement (404, 501) is recorded in the manifest and
//! skipped; any other failure fails the run.

use mobiflux_model::RunId;

use crate::gbfs::Feed;
use crate::http::check_json;
use crate::{ExtractError, FetchError, Http, Landing, Manifest, RawStore, Source};

/// The operator endpoints read after `information`: (path, resource).
pub const ENDPOINTS: &[(&str, &str)] = &[
    ("stations", "stations"),
    ("available-assets", "available_assets"),
    ("pricing-plans", "pricing_plans"),
    ("regions", "regions"),
    ("alerts", "alerts"),
];

/// The API version mobiflux speaks.
pub const API_VERSION: &str = "1.3.0";

/// The definition's source with TOMP's mandatory headers added where it does not set them.
pub fn with_tomp_headers(src: &Source) -> Source {
    let mut src = src.clone();
    let has =
        |name: &str, h: &[(String, String)]| h.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !has("accept-language", &src.headers) {
        let lang = src.language.clone().unwrap_or_else(|| "en".into());
        src.headers.push(("Accept-Language".into(), lang));
    }
    if !has("api-version", &src.headers) {
        src.headers.push(("Api-Version".into(), API_VERSION.into()));
    }
    src
}

/// Fetches an operator's endpoints; returns the written manifest.
pub async fn extract(
    http: &Http,
    store: &dyn RawStore,
    run: &RunId,
    src: &Source,
) -> Result<Manifest, ExtractError> {
    let src = with_tomp_headers(src);
    let mut landing = Landing::new(store, &src, run);
    let result = run_extraction(http, &mut landing).await;
    landing.close(result).await
}

async fn run_extraction(http: &Http, landing: &mut Landing<'_>) -> Result<(), ExtractError> {
    let base = landing.src.url.trim_end_matches('/').to_string();
    let info = landing
        .fetch(
            http,
            "information",
            &format!("{base}/operator/information"),
            "json",
        )
        .await?;
    check_json(&info)?;
    let files: Vec<Feed> = ENDPOINTS
        .iter()
        .map(|(path, resource)| Feed {
            name: resource.to_string(),
            url: format!("{base}/operator/{path}"),
        })
        .collect();
    landing
        .fetch_json_files(http, &files, |e| {
            matches!(
                e,
                ExtractError::Fetch(FetchError::Status {
                    status: 404 | 501,
                    ..
                })
            )
        })
        .await
}
