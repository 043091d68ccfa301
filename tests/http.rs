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
