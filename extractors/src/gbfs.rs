//! GBFS auto-discovery, 1.0 to 3.0, and fetching of every file it lists.
//!
//! - `gbfs.json` 1.x/2.x: `data.{language}.feeds`; the definition's `language`, else `en`,
//!   else the first language in alphabetical order.
//! - `gbfs.json` 3.x: `data.feeds`.
//! - `manifest.json` 3.x: `data.datasets[].versions[]`; the definition's `system_id` picks
//!   the dataset when several are listed, and the newest version mobiflux reads (≤ 3.x) is followed.
//!
//! Every document is landed unchanged (resources `manifest`, `gbfs`, then one per feed name).
//! A feed file that fails does not stop the others from being landed, but fails the run.

use mobiflux_model::RunId;
use serde_json::Value;

use crate::http::expect_json;
use crate::{ExtractError, Http, Landing, Manifest, RawStore, Source};

/// A feed file named by the discovery document.
#[derive(Debug, Clone, PartialEq)]
pub struct Feed {
    pub name: String,
    pub url: String,
}

/// Discovers and fetches a GBFS system; returns the written manifest.
pub async fn extract(
    http: &Http,
    store: &dyn RawStore,
    run: &RunId,
    src: &Source,
) -> Result<Manifest, ExtractError> {
    let mut landing = Landing::new(store, src, run);
    let result = run_extraction(http, &mut landing).await;
    landing.close(result).await
}

async fn run_extraction(http: &Http, landing: &mut Landing<'_>) -> Result<(), ExtractError> {
    let src = landing.src;
    let (feeds, _version) = discover(http, landing, &src.url).await?;
    landing.fetch_json_files(http, &feeds, |_| false).await
}

/// Follows manifest → gbfs.json → feed list, landing each discovery document.
pub async fn discover(
    http: &Http,
    landing: &mut Landing<'_>,
    url: &str,
) -> Result<(Vec<Feed>, String), ExtractError> {
    let src = landing.src;
    let resp = landing
        .fetch_as(http, &discovery_resource, url, "json")
        .await?;
    let mut doc = expect_json(&resp)?;
    let mut doc_url = url.to_string();
    if doc.pointer("/data/datasets").is_some() {
        // 3.x manifest: follow the chosen system.
        doc_url = pick_from_manifest(&doc, src).map_err(|message| ExtractError::Discovery {
            url: src.redacted(url),
            message,
        })?;
        let resp = landing.fetch(http, "gbfs", &doc_url, "json").await?;
        doc = expect_json(&resp)?;
    }
    feeds_of(&doc, src.language.as_deref()).map_err(|message| ExtractError::Discovery {
        url: src.redacted(&doc_url),
        message,
    })
}

/// `manifest` for a GBFS 3.x manifest, `gbfs` for anything else the discovery URL answers.
fn discovery_resource(resp: &crate::http::Response) -> String {
    let is_manifest = serde_json::from_slice::<Value>(&resp.body)
        .ok()
        .is_some_and(|d| d.pointer("/data/datasets").is_some());
    if is_manifest { "manifest" } else { "gbfs" }.to_string()
}

/// The feeds a `gbfs.json` lists, with its version (`1.0` when it declares none).
pub fn feeds_of(doc: &Value, language: Option<&str>) -> Result<(Vec<Feed>, String), String> {
    let version = doc
        .get("version")
        .and_then(Value::as_str)
        .unwrap_or("1.0")
        .to_string();
    let data = doc
        .get("data")
        .and_then(Value::as_object)
        .ok_or("expected a GBFS auto-discovery document with a \"data\" object")?;
    let list = if let Some(feeds) = data.get("feeds") {
        feeds
    } else {
        let mut langs: Vec<&String> = data.keys().collect();
        langs.sort();
        let lang = match language {
            Some(l) => data.get_key_value(l).map(|(k, _)| k).ok_or_else(|| {
                format!("language {l:?} is not offered; the feed offers {langs:?}")
            })?,
            None => langs
                .iter()
                .find(|l| l.as_str() == "en")
                .or(langs.first())
                .copied()
                .ok_or("the discovery document lists no language")?,
        };
        data[lang]
            .get("feeds")
            .ok_or_else(|| format!("data.{lang} has no \"feeds\" list"))?
    };
    let list = list.as_array().ok_or("\"feeds\" must be a list")?;
    let mut feeds = Vec::new();
    for (i, f) in list.iter().enumerate() {
        let (Some(name), Some(url)) = (
            f.get("name").and_then(Value::as_str),
            f.get("url").and_then(Value::as_str),
        ) else {
            return Err(format!("feeds[{i}] needs a name and a url"));
        };
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        if name == "gbfs" || name == "manifest" || feeds.iter().any(|f: &Feed| f.name == name) {
            continue;
        }
        feeds.push(Feed {
            name,
            url: url.to_string(),
        });
    }
    Ok((feeds, version))
}

fn version_key(v: &str) -> (u32, u32) {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// The `gbfs.json` URL of the chosen system in a 3.x manifest.
pub fn pick_from_manifest(doc: &Value, src: &Source) -> Result<String, String> {
    let datasets = doc
        .pointer("/data/datasets")
        .and_then(Value::as_array)
        .ok_or("data.datasets must be a list")?;
    let ids: Vec<&str> = datasets
        .iter()
        .filter_map(|d| d.get("system_id").and_then(Value::as_str))
        .collect();
    let dataset = match (&src.system_id, datasets.len()) {
        (Some(id), _) => datasets
            .iter()
            .find(|d| d.get("system_id").and_then(Value::as_str) == Some(id))
            .ok_or_else(|| {
                format!("system_id {id:?} is not in the manifest, which lists {ids:?}")
            })?,
        (None, 1) => &datasets[0],
        (None, n) => {
            return Err(format!(
                "the manifest lists {n} systems {ids:?}: set system_id in the definition"
            ));
        }
    };
    dataset
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v.get("version")?.as_str()?, v.get("url")?.as_str()?)))
        .filter(|(v, _)| version_key(v).0 <= 3)
        .max_by_key(|(v, _)| version_key(v))
        .map(|(_, url)| url.to_string())
        .ok_or_else(|| "the chosen system lists no GBFS version up to 3.x".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Value {
        let p = format!("{}/../fixtures/gbfs/{path}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
    }

    fn src(system_id: Option<&str>, language: Option<&str>) -> Source {
        Source {
            pipeline: "p".into(),
            partner: "p".into(),
            format: "gbfs".into(),
            url: "http://x/gbfs.json".into(),
            language: language.map(Into::into),
            system_id: system_id.map(Into::into),
            headers: vec![],
            sensitive: vec![],
            secrets: vec![],
        }
    }

    #[test]
    fn lists_feeds_of_2_3_and_3_0() {
        let (feeds, v) = feeds_of(&fixture("v2.3/gbfs.json"), None).unwrap();
        assert_eq!(v, "2.3");
        assert_eq!(feeds.len(), 12);
        assert_eq!(
            feeds[3],
            Feed {
                name: "station_information".into(),
                url: "https://test.com/station_information".into()
            }
        );
        let (feeds, v) = feeds_of(&fixture("v3.0/gbfs.json"), None).unwrap();
        assert_eq!(v, "3.0");
        assert_eq!(feeds.len(), 8);
        assert_eq!(feeds[1].name, "vehicle_status");
    }

    #[test]
    fn a_1_0_document_without_version_is_read_as_1_0() {
        // GBFS 1.0 (2015) shape: no version field, feeds under the language key.
        let doc = serde_json::json!({"last_updated": 1434054678, "ttl": 0, "data": {"en": {"feeds": [
            {"name": "system_information", "url": "https://m.example/gbfs/en/system_information.json"},
            {"name": "station_status", "url": "https://m.example/gbfs/en/station_status.json"}]}}});
        let (feeds, v) = feeds_of(&doc, None).unwrap();
        assert_eq!(v, "1.0");
        assert_eq!(
            feeds.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["system_information", "station_status"]
        );
    }

    #[test]
    fn picks_languages_of_1_x_2_x() {
        let doc = fixture("spec-examples/v2.3/gbfs.json");
        let (en, _) = feeds_of(&doc, None).unwrap();
        let (fr, _) = feeds_of(&doc, Some("fr")).unwrap();
        assert!(en[0].url.contains("/en/"), "{:?}", en);
        assert!(fr[0].url.contains("/fr/"), "{:?}", fr);
        let err = feeds_of(&doc, Some("de")).unwrap_err();
        assert_eq!(
            err,
            r#"language "de" is not offered; the feed offers ["en", "fr"]"#
        );
    }

    #[test]
    fn follows_the_newest_version_of_the_chosen_manifest_system() {
        let doc = fixture("v3.0/manifest.json");
        let err = pick_from_manifest(&doc, &src(None, None)).unwrap_err();
        assert!(err.starts_with("the manifest lists 7 systems"), "{err}");
        assert_eq!(
            pick_from_manifest(&doc, &src(Some("example_berlin"), None)).unwrap(),
            "https://berlin.example.com/gbfs/3.0"
        );
    }
}
