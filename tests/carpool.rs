//! Carpooling partners (standard covoiturage) end to end: searches built from the
//! definition, answers shaped by the standard (the Mon Compte Mobilité gateway's payloads)
//! pseudonymized before anything is stored, journeys in the warehouse without a trace of
//! the people behind them.

mod common;

use common::*;

const KEY: &str = "test-pseudonym-key-0123456789";
const PHONE: &str = "+33 6 12 34 56 78";

/// A partner serving the gateway's carpooling payloads at the standard's endpoints; the
/// driver of the punctual journey also gets a phone number and an e-mail (the gateway's
/// payloads have none; the standard's User schema allows them).
fn partner_site() -> std::path::PathBuf {
    let dir = temp_dir("carpool-site");
    std::fs::create_dir_all(dir.join("covoit")).unwrap();
    for (endpoint, mock) in [
        ("driver_journeys", "getDriverJourneys"),
        ("passenger_journeys", "getPassengerJourneys"),
        ("driver_regular_trips", "getDriverRegularTrip"),
        ("passenger_regular_trips", "getPassengerRegularTrip"),
    ] {
        let mut text = std::fs::read_to_string(format!(
            "{FIXTURES}/mcm-gateway/gateway-api__mock__{mock}.json"
        ))
        .unwrap();
        if endpoint == "driver_journeys" {
            text = text.replacen(
                "\"firstName\": \"Jean\",",
                &format!("\"firstName\": \"Jean\", \"phoneNumber\": \"{PHONE}\", \"email\": \"jean.dupond@example.org\","),
                1,
            );
            assert!(text.contains(PHONE));
        }
        std::fs::write(dir.join(format!("covoit/{endpoint}.json")), text).unwrap();
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carpool_journeys_load_and_no_personal_data_is_stored_anywhere() {
    let sim = mobiflux::simulator::Simulator::start(partner_site(), "127.0.0.1:0")
        .await
        .unwrap();
    let pipelines = temp_dir("carpool-defs");
    define_format(
        &pipelines,
        "covoit",
        "covoiturage",
        &format!("{}/covoit", sim.base_url()),
        "od = [{ from = [48.8584, 2.2945], to = [43.6045, 1.4440] }]\nregular_time_of_day = \"07:30:00\"\ntime_delta_mins = 30\nradius_km = 2.5\n",
    );
    let local = temp_dir("carpool-local");
    let sqlite = format!("sqlite://{}/w.db", local.display());
    let mut env = dest(&pipelines, local.join("raw").to_str().unwrap(), &sqlite);
    env.push(("MOBIFLUX_PSEUDONYM_KEY".into(), KEY.into()));
    env.push(("MOBIFLUX_LOG".into(), "debug".into()));
    let mut logs = String::new();
    for _ in 0..2 {
        let out = mobiflux(&["run"], &env).await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains("rows loaded per table: carpool_journeys 3"),
            "{stdout}"
        );
        logs.push_str(&stdout);
        logs.push_str(&stderr);
    }
    // The searches carry the standard's parameters.
    let searches = sim.requests();
    assert_eq!(searches.len(), 8, "{searches:?}");
    let wh = mobiflux_loaders::open(&sqlite).await.unwrap();
    let rows = wh
        .dump(&mobiflux_model::schema::CARPOOL_JOURNEYS)
        .await
        .unwrap();
    assert_eq!(rows.len(), 6, "two runs of three journeys");
    let col = |name: &str| {
        mobiflux_model::schema::CARPOOL_JOURNEYS
            .columns
            .iter()
            .filter(|c| c.name != "run_id")
            .position(|c| c.name == name)
            .unwrap()
    };
    // The same driver has the same hash in both runs: countable, not identifiable.
    let hashes: std::collections::BTreeSet<Option<String>> =
        rows.iter().map(|r| r[col("person_hash")].clone()).collect();
    assert_eq!(hashes.len(), 1, "{hashes:?}");
    let hash = hashes.into_iter().next().unwrap().unwrap();
    assert_eq!(
        hash,
        mobiflux_transforms::covoiturage::keyed_hash(KEY.as_bytes(), "user987654")
    );
    let driver = rows
        .iter()
        .find(|r| {
            r[col("role")].as_deref() == Some("driver")
                && r[col("kind")].as_deref() == Some("punctual")
        })
        .unwrap();
    assert_eq!(driver[col("journey_id")].as_deref(), Some("journey012345"));
    assert_eq!(driver[col("price")].as_deref(), Some("15.3"));
    assert_eq!(
        driver[col("drop_address")].as_deref(),
        Some("Place du Capitole, Toulouse")
    );
    // No name, alias, id, phone or e-mail anywhere: logs, raw zone (objects and manifests),
    // warehouse.
    let mut haystacks = vec![logs];
    for f in files_under(&local) {
        haystacks.push(String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned());
    }
    for personal in [
        "Dupond",
        "JeanD",
        "\"Jean\"",
        "user987654",
        PHONE,
        "jean.dupond@example.org",
    ] {
        assert!(
            haystacks.iter().all(|h| !h.contains(personal)),
            "{personal} was stored or logged"
        );
    }
    // The manifest says what was done to the payloads.
    let store = mobiflux_extractors::raw::open(local.join("raw").to_str().unwrap(), None)
        .await
        .unwrap();
    let manifests = store.list("raw/_runs/").await.unwrap();
    let m = String::from_utf8(store.get(&manifests[0]).await.unwrap().to_vec()).unwrap();
    for done in [
        "driver.lastName: dropped",
        "driver.phoneNumber: dropped",
        "driver.id: keyed hash",
        "passenger.alias: keyed hash",
    ] {
        assert!(m.contains(done), "{done} not in {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_search_does_not_quote_the_partners_answer() {
    let sim = mobiflux::simulator::Simulator::start(partner_site(), "127.0.0.1:0")
        .await
        .unwrap();
    // The simulated error page repeats the request; a real one might repeat a driver's name.
    sim.set_fault(
        "/covoit/passenger_journeys",
        mobiflux::simulator::Fault::Status(500),
    );
    let pipelines = temp_dir("carpool-fail");
    define_format(
        &pipelines,
        "covoit",
        "covoiturage",
        &format!("{}/covoit", sim.base_url()),
        "od = [{ from = [48.8584, 2.2945], to = [43.6045, 1.4440] }]",
    );
    let local = temp_dir("carpool-fail-local");
    let (mut env, _) = local_dest(&pipelines, &local);
    env.push(("MOBIFLUX_PSEUDONYM_KEY".into(), KEY.into()));
    let out = mobiflux(&["run"], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("FAILED pipeline covoit:"))
        .expect(&stderr);
    assert!(line.contains("answered 500"), "{line}");
    assert!(
        line.contains("not shown: a carpooling answer may hold personal data"),
        "{line}"
    );
    assert!(!line.contains("simulated failure"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_pseudonym_key_nothing_is_fetched_or_stored() {
    let sim = mobiflux::simulator::Simulator::start(partner_site(), "127.0.0.1:0")
        .await
        .unwrap();
    let pipelines = temp_dir("carpool-nokey");
    define_format(
        &pipelines,
        "covoit",
        "covoiturage",
        &format!("{}/covoit", sim.base_url()),
        "od = [{ from = [48.8584, 2.2945], to = [43.6045, 1.4440] }]",
    );
    let local = temp_dir("carpool-nokey-local");
    let out = mobiflux(&["run"], &local_dest(&pipelines, &local).0).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("set MOBIFLUX_PSEUDONYM_KEY"), "{stderr}");
    assert!(sim.requests().is_empty());
}
