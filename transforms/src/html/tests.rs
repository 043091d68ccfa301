//! The real Ulm parking page, and the failures a redesigned page must cause.

use super::*;
use crate::mapped::{ColumnSpec, Convert, MappedTable, Source};
use chrono::{TimeZone, Utc};
use mobiflux_model::schema::PARKING_OCCUPANCY;
use polars::prelude::DataFrame;

const PAGE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/html/ulm-parking.html"
);

fn field(name: &str, css: Option<&str>, attr: Option<&str>, regex: Option<&str>) -> Field {
    Field {
        name: name.into(),
        css: css.map(Into::into),
        attr: attr.map(Into::into),
        regex: regex.map(|r| Regex::new(r).unwrap()),
    }
}

fn spec(rows: &str, name_css: &str) -> PageSpec {
    let fields = vec![
        field("facility_id", None, Some("data-id"), None),
        field("name", Some(name_css), None, None),
        field("free", Some(".counter-text p"), None, Some(r"^(\d+)\s*/")),
        field(
            "capacity",
            Some(".counter-text p"),
            None,
            Some(r"/\s*(\d+)"),
        ),
    ];
    let columns = fields
        .iter()
        .map(|f| ColumnSpec {
            column: PARKING_OCCUPANCY
                .columns
                .iter()
                .find(|c| c.name == f.name)
                .unwrap()
                .name,
            source: Source::Column(f.name.clone()),
            convert: Convert::Auto,
            regex: None,
            default: None,
        })
        .collect();
    PageSpec {
        rows: rows.into(),
        fields,
        mapping: MappedTable {
            target: &PARKING_OCCUPANCY,
            columns,
            nulls: vec![String::new()],
        },
    }
}

fn scrape(bytes: &[u8], spec: &PageSpec) -> Result<(DataFrame, FileStats), TransformError> {
    let ctx = Context {
        pipeline: "p",
        partner: "ulm",
        run_id: "r",
        language: None,
    };
    let fetched = Utc.with_ymd_and_hms(2026, 11, 21, 9, 0, 0).unwrap();
    let mut chunks = Vec::new();
    let stats = read(
        &ctx,
        bytes,
        "raw/p/page/x.html",
        fetched,
        spec,
        &mut RunKeys::default(),
        &mut |c| {
            chunks.push(c);
            Ok(())
        },
    )?;
    Ok((chunks.remove(0).tables.remove(0).1, stats))
}

#[test]
fn every_car_park_of_the_ulm_page_is_scraped() {
    let page = std::fs::read(PAGE).unwrap();
    let (df, stats) = scrape(
        &page,
        &spec(
            "div[data-name='Counter Element']",
            ".counter-headline a.stretched-link",
        ),
    )
    .unwrap();
    assert_eq!(
        stats,
        FileStats {
            rows: 10,
            quarantined_rows: 0
        }
    );
    let s = |c: &str, i| {
        df.column(c)
            .unwrap()
            .str()
            .unwrap()
            .get(i)
            .map(str::to_string)
    };
    let n = |c: &str, i| df.column(c).unwrap().i64().unwrap().get(i);
    assert_eq!(
        (s("facility_id", 0).as_deref(), s("name", 0).as_deref()),
        (Some("8"), Some("Am Bahnhof"))
    );
    assert_eq!((n("free", 0), n("capacity", 0)), (Some(448), Some(548)));
    // "? / 780": the page does not know the free places; capacity still loads.
    assert_eq!(
        (s("name", 5).as_deref(), n("free", 5), n("capacity", 5)),
        (Some("Frauenstraße"), None, Some(780))
    );
    assert_eq!(s("name", 7).as_deref(), Some("CCU Süd"));
    let observed = df
        .column("observed_at")
        .unwrap()
        .datetime()
        .unwrap()
        .physical()
        .get(9)
        .unwrap();
    assert_eq!(
        Utc.timestamp_micros(observed).unwrap().to_rfc3339(),
        "2026-11-21T09:00:00+00:00"
    );
}

#[test]
fn a_row_selector_matching_nothing_fails_with_selector_and_page() {
    let page = std::fs::read(PAGE).unwrap();
    let err = scrape(&page, &spec("table.parkhaus tr", ".counter-headline a"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "raw/p/page/x.html: expected elements matching the row selector \"table.parkhaus tr\"; none in this page"
    );
}

#[test]
fn a_column_selector_matching_nothing_fails_with_selector_and_page() {
    let page = std::fs::read(PAGE).unwrap();
    let err = scrape(
        &page,
        &spec("div[data-name='Counter Element']", "h4.parkhaus-name"),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "raw/p/page/x.html: expected column name to be found by the selector \"h4.parkhaus-name\" in the 10 rows; it matches nothing in this page"
    );
}

#[test]
fn locale_numbers_and_dates() {
    let page = r#"<ul><li data-id="a"><b>1 234,5</b><i>12.03.2025</i></li><li data-id="b"><b>7,25</b><i>01.01.2026</i></li></ul>"#;
    let table = MappedTable {
        target: &mobiflux_model::schema::PARKING_FACILITIES,
        columns: vec![
            ColumnSpec {
                column: "facility_id",
                source: Source::Column("facility_id".into()),
                convert: Convert::Auto,
                regex: None,
                default: None,
            },
            ColumnSpec {
                column: "name",
                source: Source::Constant("x".into()),
                convert: Convert::Auto,
                regex: None,
                default: None,
            },
            ColumnSpec {
                column: "price_1h",
                source: Source::Column("price_1h".into()),
                convert: Convert::Number {
                    decimal: ',',
                    group: Some(' '),
                    scale: 1.0,
                },
                regex: None,
                default: None,
            },
            ColumnSpec {
                column: "valid_from",
                source: Source::Column("valid_from".into()),
                convert: Convert::Time(crate::mapped::TimeSpec::Format {
                    format: "%d.%m.%Y".into(),
                    tz: chrono_tz::Europe::Paris,
                }),
                regex: None,
                default: None,
            },
        ],
        nulls: vec![],
    };
    let spec = PageSpec {
        rows: "li".into(),
        fields: vec![
            field("facility_id", None, Some("data-id"), None),
            field("price_1h", Some("b"), None, None),
            field("valid_from", Some("i"), None, None),
        ],
        mapping: table,
    };
    let (df, _) = scrape(page.as_bytes(), &spec).unwrap();
    let p = df.column("price_1h").unwrap().f64().unwrap();
    assert_eq!((p.get(0), p.get(1)), (Some(1234.5), Some(7.25)));
    let v = df
        .column("valid_from")
        .unwrap()
        .datetime()
        .unwrap()
        .physical()
        .get(0)
        .unwrap();
    // Midnight in Paris on 12 March 2025 is 23:00 UTC the day before.
    assert_eq!(
        Utc.timestamp_micros(v).unwrap().to_rfc3339(),
        "2025-03-11T23:00:00+00:00"
    );
}
