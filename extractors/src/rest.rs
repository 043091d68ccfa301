//! Partner REST APIs with their own JSON (`format = "json"`): the definition's URL is called
//! and its response landed unchanged as resource `records`; the declarative mapping reads
//! it from the raw zone.

use mobiflux_model::RunId;

use crate::gbfs::Feed;
use crate::{ExtractError, Http, Landing, Manifest, RawStore, Source};

/// Fetches a partner's JSON document; returns the written manifest.
pub async fn extract(
    http: &Http,
    store: &dyn RawStore,
    run: &RunId,
    src: &Source,
) -> Result<Manifest, ExtractError> {
    let mut landing = Landing::new(store, src, run);
    let files = [Feed {
        name: "records".into(),
        url: src.url.clone(),
    }];
    let result = landing.fetch_json_files(http, &files, |_| false).await;
    let manifest = landing.finish(result.as_ref().err()).await?;
    result.map(|()| manifest)
}
