//! Scraped pages end to end: the real Ulm page through a simulated site, politely.

mod common;

use common::*;
use mobiflux_model::schema::PARKING_OCCUPANCY;

const SPEC: &str = r#"table = "parking_occupancy"
rows = "div[data-name='Counter Element']"
[columns]
facility_id = { attr = "data-id" }
name = ".counter-headline a.stretched-link"
free = { css = ".counter-text p", regex = '^(\d+)\s*/' }
capacity = { css = ".counter-text p", regex = '/\s*(\d+)' }
"#;

fn site(robots: Option<&str>) -> std::path::PathBuf {
    let dir = temp_dir("site");
    let page = std::fs::read(format!("{FIXTURES}/html/ulm-parking.html")).unwrap();
    std::fs::create_dir_all(dir.join("parken")).unwrap();
    std::fs::write(dir.join("parken/p1.html"), &page).unwrap();
    std::fs::write(dir.join("parken/p2.html"), &page).unwrap();
    if let Some(r) = robots {
        std::fs::write(dir.join("robots.txt"), r).unwrap();
    }
    dir
}

fn define_page(dir: &std::path::Path, name: &str, url: &str, extra: &str, spec: &str) {
    let text = format!(
        "name = \"{name}\"\npartner = \"{name}\"\nformat = \"html\"\nurl = \"{url}\"\nschedule = \"0 */5 * * * *\"\n{extra}\n{spec}"
    );
    std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ulm_page_scrapes_into_parking_occupancy_politely() {
    let sim = mobiflux::simulator::Simulator::start(site(None), "127.0.0.1:0")
        .await
        .unwrap();
    let pipelines = temp_dir("scrape");
    define_page(
        &pipelines,
        "ulm",
        &format!("{}/parken/p1.html", sim.base_url()),
        "user_agent = \"mobiflux-test/1.0 (ops@example.org)\"",
        SPEC,
    );
    let pg = pg_database().await;
    let raw = temp_dir("scrape-raw");
    let out = mobiflux(&["run"], &dest(&pipelines, raw.to_str().unwrap(), &pg)).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rows loaded per table: parking_occupancy 10"),
        "{stdout}"
    );
    // robots.txt first, then the page, both with the definition's User-Agent.
    assert_eq!(
        sim.requests_with_agents(),
        vec![
            (
                "/robots.txt".to_string(),
                "mobiflux-test/1.0 (ops@example.org)".to_string()
            ),
            (
                "/parken/p1.html".to_string(),
                "mobiflux-test/1.0 (ops@example.org)".to_string()
            ),
        ]
    );
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    let rows: Vec<(String, String, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT facility_id, name, free, capacity FROM parking_occupancy ORDER BY facility_id::int",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 10);
    assert_eq!(
        rows[0],
        ("1".into(), "Am Rathaus".into(), Some(414), Some(558))
    );
    assert_eq!(rows[5], ("6".into(), "CCU Süd".into(), None, Some(235)));
    assert_eq!(rows[9], ("10".into(), "Kornhaus".into(), None, Some(70)));
    // The page itself is in the raw zone.
    let store = mobiflux_extractors::raw::open(raw.to_str().unwrap(), None)
        .await
        .unwrap();
    let pages = store.list("raw/ulm/page/").await.unwrap();
    assert_eq!(pages.len(), 1);
    assert!(pages[0].ends_with(".html"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_txt_is_obeyed_unless_the_definition_says_otherwise() {
    let sim = mobiflux::simulator::Simulator::start(
        site(Some("User-agent: *\nDisallow: /parken/\n")),
        "127.0.0.1:0",
    )
    .await
    .unwrap();
    let pipelines = temp_dir("robots");
    let url = format!("{}/parken/p1.html", sim.base_url());
    define_page(&pipelines, "polite", &url, "", SPEC);
    define_page(&pipelines, "permitted", &url, "robots = false", SPEC);
    let local = temp_dir("robots-local");
    let out = mobiflux(&["run"], &local_dest(&pipelines, &local).0).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains(&format!(
        "FAILED pipeline polite: {url}: {}/robots.txt disallows /parken/p1.html for mobiflux; set robots = false if the site owner agrees",
        sim.base_url()
    )), "{stderr}");
    assert!(
        stdout.contains("rows loaded per table: parking_occupancy 10"),
        "{stdout}"
    );
    assert_eq!(
        sim.requests()
            .iter()
            .filter(|p| p.as_str() == "/parken/p1.html")
            .count(),
        1,
        "only the permitted pipeline fetched the page"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_selector_fails_clearly_and_a_page_template_fetches_every_page() {
    let sim = mobiflux::simulator::Simulator::start(site(None), "127.0.0.1:0")
        .await
        .unwrap();
    let pipelines = temp_dir("pages");
    let base = sim.base_url();
    define_page(
        &pipelines,
        "redesigned",
        &format!("{base}/parken/p1.html"),
        "",
        &SPEC.replace("a.stretched-link", "h4.parkhaus-name"),
    );
    define_page(
        &pipelines,
        "paged",
        &format!("{base}/parken/p1.html"),
        &format!(
            "pages = {{ template = \"{base}/parken/p{{page}}.html\", from = 2, to = 2 }}\nrate_per_second = 20"
        ),
        SPEC,
    );
    let pg = pg_database().await;
    let raw = temp_dir("pages-raw");
    let out = mobiflux(&["run"], &dest(&pipelines, raw.to_str().unwrap(), &pg)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("FAILED pipeline redesigned:"))
        .expect(&stderr);
    assert!(
        line.contains(&format!("page {base}/parken/p1.html:")),
        "{line}"
    );
    assert!(line.contains("expected column name to be found by the selector \".counter-headline h4.parkhaus-name\" in the 10 rows; it matches nothing in this page"), "{line}");
    // The template's pages are fetched after the first URL, one by one; each page's rows
    // carry that page's own fetch time, so both observations load.
    assert!(
        stdout.contains("rows loaded per table: parking_occupancy 20"),
        "{stdout}"
    );
    let paged: Vec<String> = sim
        .requests()
        .into_iter()
        .filter(|p| p.starts_with("/parken/p2"))
        .collect();
    assert_eq!(paged, vec!["/parken/p2.html".to_string()]);
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    let (n, times): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT observed_at) FROM parking_occupancy WHERE partner = 'paged'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((n, times), (20, 2));
    let wh = mobiflux_loaders::open(&pg).await.unwrap();
    assert!(
        wh.dump(&PARKING_OCCUPANCY)
            .await
            .unwrap()
            .iter()
            .all(|r| r[0].as_deref() == Some("paged"))
    );
}

/// The real Ulm page with a "next page" link added before `</body>` (pagination is not on
/// the real page; the link is the one thing changed).
fn page_linking_to(next: &str) -> String {
    let page = std::fs::read_to_string(format!("{FIXTURES}/html/ulm-parking.html")).unwrap();
    assert!(page.contains("</body>"));
    page.replacen(
        "</body>",
        &format!("<nav class=\"pager\"><a rel=\"next\" href=\"{next}\">Weiter</a></nav></body>"),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_page_links_are_followed_until_the_last_page_a_loop_or_the_cap() {
    let dir = temp_dir("site-next");
    std::fs::create_dir_all(dir.join("parken")).unwrap();
    // p1 → p2 (relative), p2 → /parken/p3.html (absolute path), p3 → p1 (a loop).
    std::fs::write(dir.join("parken/p1.html"), page_linking_to("p2.html")).unwrap();
    std::fs::write(
        dir.join("parken/p2.html"),
        page_linking_to("/parken/p3.html"),
    )
    .unwrap();
    std::fs::write(dir.join("parken/p3.html"), page_linking_to("p1.html")).unwrap();
    // A site whose next link leaves it: pagination ends there.
    std::fs::write(
        dir.join("parken/away.html"),
        page_linking_to("https://elsewhere.example/parken/p2.html"),
    )
    .unwrap();
    let sim = mobiflux::simulator::Simulator::start(dir, "127.0.0.1:0")
        .await
        .unwrap();
    let pipelines = temp_dir("next");
    let url = format!("{}/parken/p1.html", sim.base_url());
    define_page(
        &pipelines,
        "chain",
        &url,
        "pages = { next = \"nav.pager a[rel=next]\" }\nrate_per_second = 50",
        SPEC,
    );
    define_page(
        &pipelines,
        "capped",
        &url,
        "pages = { next = \"nav.pager a[rel=next]\", max = 2 }\nrate_per_second = 50",
        SPEC,
    );
    define_page(
        &pipelines,
        "away",
        &format!("{}/parken/away.html", sim.base_url()),
        "pages = { next = \"nav.pager a[rel=next]\" }\nrate_per_second = 50",
        SPEC,
    );
    define_page(
        &pipelines,
        "bad-pages",
        &url,
        "pages = { next = \"a.next\", from = 1 }",
        SPEC,
    );
    let local = temp_dir("next-local");
    let env = dest(
        &pipelines,
        local.join("raw").to_str().unwrap(),
        &format!("sqlite://{}/w.db", local.display()),
    );
    let out = mobiflux(&["validate"], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("bad-pages.toml:6: pages: either { template, from, to } (page numbers) or { next, max } (a next-page link selector)"),
        "{stderr}"
    );
    std::fs::remove_file(pipelines.join("bad-pages.toml")).unwrap();
    let out = mobiflux(&["run"], &env).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // Three pages for the chain (the loop back to p1 ends it), two for the capped one.
    let pages: Vec<String> = sim
        .requests()
        .into_iter()
        .filter(|p| p.starts_with("/parken/"))
        .collect();
    let count = |p: &str| pages.iter().filter(|q| q.as_str() == p).count();
    assert_eq!(
        (
            count("/parken/p1.html"),
            count("/parken/p2.html"),
            count("/parken/p3.html")
        ),
        (2, 2, 1),
        "{pages:?}"
    );
    assert!(
        stdout.contains("rows loaded per table: parking_occupancy 60"),
        "{stdout}"
    );
    assert!(
        stderr.contains("next-page link leaves the site; pagination ends"),
        "{stderr}"
    );
    let wh = mobiflux_loaders::open(&format!("sqlite://{}/w.db", local.display()))
        .await
        .unwrap();
    let rows = wh.dump(&PARKING_OCCUPANCY).await.unwrap();
    let of = |p: &str| rows.iter().filter(|r| r[0].as_deref() == Some(p)).count();
    assert_eq!((of("chain"), of("capped")), (30, 20));
    assert!(
        stderr.contains("page cap reached; later pages are not fetched"),
        "{stderr}"
    );
    let store = mobiflux_extractors::raw::open(local.join("raw").to_str().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(store.list("raw/chain/page/").await.unwrap().len(), 3);
    assert_eq!(store.list("raw/capped/page/").await.unwrap().len(), 2);
}
