//! The HTTP path of the extractors against the simulated MSP: compressed bodies, bounds.

mod common;

use mobiflux::simulator::{Fault, Simulator};
use mobiflux_extractors::{FetchError, Http, HttpOptions, Source};

fn source() -> Source {
    Source {
        pipeline: "p".into(),
        partner: "p".into(),
        format: "gbfs".into(),
        url: String::new(),
        language: None,
        system_id: None,
        headers: vec![],
        sensitive: vec![],
        secrets: vec![],
    }
}

const ZONES: &str = "/gbfs/v3.0/geofencing_zones.json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_arrive_decompressed_and_byte_identical() {
    let sim = common::msp().await;
    sim.set_fault(ZONES, Fault::Gzip);
    let http = Http::new(HttpOptions::default()).unwrap();
    let resp = http
        .get(&source(), &format!("{}{ZONES}", sim.base_url()))
        .await
        .unwrap();
    let original = std::fs::read(format!(
        "{}/gbfs/v3.0/geofencing_zones.json",
        common::FIXTURES
    ))
    .unwrap();
    assert_eq!(resp.body.len(), 821_067);
    assert_eq!(&resp.body[..], &original[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_bound_applies_to_the_decompressed_body() {
    let sim: Simulator = common::msp().await;
    sim.set_fault(ZONES, Fault::Gzip);
    // A limit above the compressed size but below the real size must still refuse the body.
    let limit = 400_000;
    let http = Http::new(HttpOptions {
        max_body_bytes: limit,
        ..HttpOptions::default()
    })
    .unwrap();
    let url = format!("{}{ZONES}", sim.base_url());
    let err = http.get(&source(), &url).await.unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("GET {url} (200): body is larger than the limit of 400000 bytes")
    );
}

/// A GBFS system polled again by one process: every file is asked for with the validators
/// its last answer gave; an unchanged one is answered 304 and recorded under the object
/// landed first (no body received, nothing written), a changed one is landed anew; a
/// server without validators is asked plainly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_files_are_confirmed_by_304_under_the_object_landed_first() {
    use mobiflux_extractors::RawStore;
    use mobiflux_extractors::raw::{MemoryStore, Reusing};
    use std::collections::BTreeMap;
    let root = common::temp_dir("conditional");
    let dir = root.join("gbfs/v2.3");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(format!("{}/gbfs/v2.3", common::FIXTURES)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let modified = "Wed, 21 Oct 2026 07:28:00 GMT";
    std::fs::write(
        dir.join("system_information.headers"),
        format!("Last-Modified: {modified}\n"),
    )
    .unwrap();
    let sim = Simulator::start(&root, "127.0.0.1:0").await.unwrap();
    let store = Reusing::new(Box::new(MemoryStore::default()));
    let mut src = source();
    src.url = format!("{}/gbfs/v2.3/gbfs.json", sim.base_url());
    let http = Http::new(HttpOptions::default()).unwrap();
    let run = || async {
        let m =
            mobiflux_extractors::gbfs::extract(&http, &store, &mobiflux_model::RunId::new(), &src)
                .await
                .unwrap();
        let by: BTreeMap<String, mobiflux_extractors::ManifestObject> = m
            .objects
            .iter()
            .map(|o| (o.resource.clone(), o.clone()))
            .collect();
        (m, by)
    };
    let (first, a) = run().await;
    let n = first.objects.len();
    assert_eq!(n, 13, "{:?}", a.keys());
    assert!(
        a.values()
            .all(|o| o.status == 200 && o.headers.contains_key("etag"))
    );

    let (second, b) = run().await;
    assert_eq!(b.len(), n);
    for (r, o) in &b {
        let earlier = &a[r];
        assert_eq!(o.status, 304, "{r}");
        assert!(o.usable(), "{r}");
        assert_eq!(
            (
                &o.key,
                &o.sha256,
                o.bytes,
                &o.content_type,
                &o.headers["etag"]
            ),
            (
                &earlier.key,
                &earlier.sha256,
                earlier.bytes,
                &earlier.content_type,
                &earlier.headers["etag"]
            ),
            "{r}"
        );
        assert!(o.fetched_at > earlier.fetched_at);
    }
    // No byte came again; the discovery document, which the extractor reads, was read back
    // from the raw zone; the feed files were not.
    assert!(first.bytes() > 10_000, "{}", first.bytes());
    assert_eq!(second.bytes(), 0);
    assert_eq!(b["gbfs"].landed.0.as_deref(), a["gbfs"].landed.0.as_deref());
    assert!(b["free_bike_status"].landed.0.is_none());
    // What the second run names is in the raw zone, for a replay.
    let kept = store.get(&b["station_status"].key).await.unwrap();
    assert_eq!(Some(&kept), a["station_status"].landed.0.as_ref());
    assert_eq!(store.list("raw/p/").await.unwrap().len(), n);
    // The requests: plain, then each with its file's ETag (and Last-Modified, when given).
    let asked = sim.requests_with_header("if-none-match");
    assert_eq!(asked.len(), 2 * n);
    assert!(asked[..n].iter().all(|(_, v)| v.is_empty()), "{asked:?}");
    for (path, tag) in &asked[n..] {
        let resource = path.rsplit('/').next().unwrap().trim_end_matches(".json");
        assert_eq!(tag, &a[resource].headers["etag"], "{path}");
    }
    let since = sim.requests_with_header("if-modified-since");
    let since: Vec<_> = since[n..].iter().filter(|(_, v)| !v.is_empty()).collect();
    assert_eq!(
        since,
        vec![&(
            "/gbfs/v2.3/system_information.json".to_string(),
            modified.to_string()
        )]
    );

    // A file that changed is landed anew; the others are still confirmed.
    let status = dir.join("station_status.json");
    let text = std::fs::read_to_string(&status).unwrap();
    std::fs::write(&status, text.replace("1751437263", "1751437323")).unwrap();
    let (_, c) = run().await;
    assert_eq!(c["station_status"].status, 200);
    assert_ne!(c["station_status"].key, a["station_status"].key);
    assert_ne!(c["station_status"].sha256, a["station_status"].sha256);
    assert!(
        c.iter()
            .filter(|(r, _)| *r != "station_status")
            .all(|(_, o)| o.status == 304 && o.key == a[&o.resource].key)
    );
    assert_eq!(store.list("raw/p/").await.unwrap().len(), n + 1);

    // A server without validators: plain answers, the same objects (landed once a day);
    // then nothing to send back.
    sim.set_validators(false);
    let (_, d) = run().await;
    assert!(
        d.values()
            .all(|o| o.status == 200 && !o.headers.contains_key("etag"))
    );
    assert_eq!(d["station_status"].key, c["station_status"].key);
    let before = sim.requests().len();
    let (_, e) = run().await;
    assert!(e.values().all(|o| o.status == 200));
    let asked = sim.requests_with_header("if-none-match");
    assert!(
        asked[before..].iter().all(|(_, v)| v.is_empty()),
        "{asked:?}"
    );
}

/// A published file downloaded again: asked for with its ETag, confirmed by a 304 without
/// a byte downloaded; downloaded whole from a server without validators, and still stored
/// once a day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_published_file_is_confirmed_not_downloaded_again() {
    use mobiflux_extractors::RawStore;
    use mobiflux_extractors::raw::{MemoryStore, Reusing};
    let sim = common::msp().await;
    let store = Reusing::new(Box::new(MemoryStore::default()));
    let mut src = source();
    src.format = "bnls".into();
    src.url = format!("{}/bnls/exemple-valide.csv", sim.base_url());
    let http = Http::new(HttpOptions::default()).unwrap();
    let run = || async {
        let m =
            mobiflux_extractors::files::extract(&http, &store, &mobiflux_model::RunId::new(), &src)
                .await
                .unwrap();
        assert_eq!(m.objects.len(), 1);
        m
    };
    let first = run().await;
    let size = std::fs::metadata(format!("{}/bnls/exemple-valide.csv", common::FIXTURES))
        .unwrap()
        .len();
    assert_eq!((first.objects[0].status, first.bytes()), (200, size));
    let second = run().await;
    let (a, b) = (&first.objects[0], &second.objects[0]);
    assert_eq!((b.status, second.bytes()), (304, 0));
    assert!(b.usable());
    assert_eq!((&b.key, &b.sha256, b.bytes), (&a.key, &a.sha256, a.bytes));
    let asked = sim.requests_with_header("if-none-match");
    assert_eq!(asked[1].1, a.headers["etag"]);
    sim.set_validators(false);
    let third = run().await;
    assert_eq!(third.objects[0].status, 200);
    assert_eq!(third.objects[0].key, a.key);
    assert_eq!(store.list("raw/p/").await.unwrap(), vec![a.key.clone()]);
}
