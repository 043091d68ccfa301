//! Carpooling partners speaking the standard covoiturage API: one search per origin–
//! destination pair and endpoint, with the parameters the standard requires
//! (`departureLat/Lng`, `arrivalLat/Lng`, `departureDate` or `departureTimeOfDay`,
//! `timeDelta`, radii). Answers carry personal data: each body goes through the
//! pseudonymizer *before* it is written, the raw zone included, and the manifest lists
//! what was dropped or hashed. A body that cannot be pseudonymized (not JSON, cut short) is
//! never stored.

use chrono::{DateTime, Utc};
use mobiflux_model::RunId;

use crate::{ExtractError, FetchError, Http, Landing, Manifest, RawStore, Source};

/// An origin and a destination, as (lat, lon).
pub type OdPair = ((f64, f64), (f64, f64));

/// What to search for.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    pub pairs: Vec<OdPair>,
    /// Departure time searched for punctual journeys.
    pub departure: DateTime<Utc>,
    /// Departure time of day for regular trips (`07:30:00`); `None`: no regular trips.
    pub regular_time_of_day: Option<String>,
    pub time_delta_secs: u64,
    pub radius_km: f64,
    /// Most results per search.
    pub count: Option<u64>,
}

/// Drops or hashes a body's personal data; returns it with what was done.
pub type Pseudonymize<'a> = &'a (dyn Fn(&[u8]) -> Result<(Vec<u8>, Vec<String>), String> + Sync);

/// A failed search's error without the answer's first bytes: an error page of a carpooling
/// partner may quote personal data, and errors reach logs and manifests unpseudonymized.
fn without_body(e: FetchError) -> FetchError {
    const HIDDEN: &str = "(not shown: a carpooling answer may hold personal data)";
    match e {
        FetchError::Status {
            url,
            status,
            retry_after,
            ..
        } => FetchError::Status {
            url,
            status,
            head: HIDDEN.into(),
            retry_after,
        },
        FetchError::Truncated {
            url,
            status,
            received,
            message,
            mut partial,
            ..
        } => {
            partial.body = bytes::Bytes::new();
            FetchError::Truncated {
                url,
                status,
                received,
                message,
                head: HIDDEN.into(),
                partial,
            }
        }
        other => other,
    }
}

/// The search URLs of a run: (resource, URL).
pub fn search_urls(base: &str, s: &Search) -> Vec<(&'static str, String)> {
    let base = base.trim_end_matches('/');
    let mut out = Vec::new();
    for ((olat, olon), (dlat, dlon)) in &s.pairs {
        let common = format!(
            "departureLat={olat}&departureLng={olon}&arrivalLat={dlat}&arrivalLng={dlon}&timeDelta={}&departureRadius={}&arrivalRadius={}{}",
            s.time_delta_secs,
            s.radius_km,
            s.radius_km,
            s.count.map(|c| format!("&count={c}")).unwrap_or_default()
        );
        for endpoint in ["driver_journeys", "passenger_journeys"] {
            out.push((
                endpoint,
                format!(
                    "{base}/{endpoint}?{common}&departureDate={}",
                    s.departure.timestamp()
                ),
            ));
        }
        if let Some(tod) = &s.regular_time_of_day {
            for endpoint in ["driver_regular_trips", "passenger_regular_trips"] {
                out.push((
                    endpoint,
                    format!("{base}/{endpoint}?{common}&departureTimeOfDay={tod}"),
                ));
            }
        }
    }
    out
}

/// Runs the searches; returns the written manifest.
pub async fn extract(
    http: &Http,
    store: &dyn RawStore,
    run: &RunId,
    src: &Source,
    search: &Search,
    pseudonymize: Pseudonymize<'_>,
) -> Result<Manifest, ExtractError> {
    let mut landing = Landing::new(store, src, run);
    let urls = search_urls(&src.url, search);
    let total = urls.len();
    let mut errors = Vec::new();
    let mut done = std::collections::BTreeSet::new();
    for (resource, url) in &urls {
        let result = async {
            let mut resp = http.get(src, url).await.map_err(without_body)?;
            let (clean, what) =
                pseudonymize(&resp.body).map_err(|message| ExtractError::Discovery {
                    url: src.redacted(url),
                    message,
                })?;
            resp.body = clean.into();
            let object = Landing::land(store, src, resource, &resp, "json", true).await?;
            Ok::<_, ExtractError>((object, what))
        }
        .await;
        match result {
            Ok((object, what)) => {
                landing.manifest.objects.push(object);
                done.extend(what);
            }
            Err(e) => {
                landing
                    .manifest
                    .failures
                    .push(src.failure(resource, url, &e));
                errors.push(e);
            }
        }
    }
    landing.manifest.pseudonymized = done.into_iter().collect();
    let result = ExtractError::of_many(errors, total);
    landing.close(result).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn searches_carry_the_parameters_the_standard_requires() {
        let s = Search {
            pairs: vec![((48.8584, 2.2945), (43.6045, 1.444))],
            departure: Utc.with_ymd_and_hms(2026, 11, 23, 7, 0, 0).unwrap(),
            regular_time_of_day: Some("07:30:00".into()),
            time_delta_secs: 1800,
            radius_km: 2.5,
            count: Some(20),
        };
        let urls = search_urls("https://api.example/covoit/", &s);
        assert_eq!(
            urls,
            vec![
                ("driver_journeys", "https://api.example/covoit/driver_journeys?departureLat=48.8584&departureLng=2.2945&arrivalLat=43.6045&arrivalLng=1.444&timeDelta=1800&departureRadius=2.5&arrivalRadius=2.5&count=20&departureDate=1795417200".to_string()),
                ("passenger_journeys", "https://api.example/covoit/passenger_journeys?departureLat=48.8584&departureLng=2.2945&arrivalLat=43.6045&arrivalLng=1.444&timeDelta=1800&departureRadius=2.5&arrivalRadius=2.5&count=20&departureDate=1795417200".to_string()),
                ("driver_regular_trips", "https://api.example/covoit/driver_regular_trips?departureLat=48.8584&departureLng=2.2945&arrivalLat=43.6045&arrivalLng=1.444&timeDelta=1800&departureRadius=2.5&arrivalRadius=2.5&count=20&departureTimeOfDay=07:30:00".to_string()),
                ("passenger_regular_trips", "https://api.example/covoit/passenger_regular_trips?departureLat=48.8584&departureLng=2.2945&arrivalLat=43.6045&arrivalLng=1.444&timeDelta=1800&departureRadius=2.5&arrivalRadius=2.5&count=20&departureTimeOfDay=07:30:00".to_string()),
            ]
        );
    }
}
