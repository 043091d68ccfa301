//! Gateway access logs through the `combined_timed` pattern.

use super::*;
use crate::Context;
use crate::mapped::{ColumnSpec, Convert, MappedTable, Source, TimeSpec};
use crate::tabular::{FileStats, RunKeys, read};
use chrono::{TimeZone, Utc};
use mobiflux_model::schema::GATEWAY_CALLS;

const LOG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/access-logs/gateway.access.log"
);

fn spec(column: &'static str, from: &str, convert: Convert, regex: Option<&str>) -> ColumnSpec {
    ColumnSpec {
        column,
        source: Source::Column(from.into()),
        convert,
        regex: regex.map(|r| Regex::new(r).unwrap()),
        default: None,
    }
}

pub fn gateway_map() -> LogMap {
    LogMap {
        name: "combined_timed".into(),
        pattern: Regex::new(&named_pattern("combined_timed").unwrap()).unwrap(),
        mapping: MappedTable {
            target: &GATEWAY_CALLS,
            columns: vec![
                spec("request_id", "line_id", Convert::Auto, None),
                spec(
                    "observed_at",
                    "time_local",
                    Convert::Time(TimeSpec::Format {
                        format: TIME_LOCAL.into(),
                        tz: chrono_tz::UTC,
                    }),
                    None,
                ),
                spec("client_id", "remote_user", Convert::Auto, None),
                spec(
                    "target_partner",
                    "path",
                    Convert::Auto,
                    Some(r"^/v1/partners/([^/]+)/"),
                ),
                spec("remote_addr", "remote_addr", Convert::Auto, None),
                spec("method", "method", Convert::Auto, None),
                spec("endpoint", "path", Convert::Auto, None),
                spec("status", "status", Convert::Auto, None),
                spec(
                    "latency_ms",
                    "request_time",
                    Convert::Number {
                        decimal: '.',
                        group: None,
                        scale: 1000.0,
                    },
                    None,
                ),
                spec("bytes", "bytes", Convert::Auto, None),
                spec("user_agent", "user_agent", Convert::Auto, None),
            ],
            nulls: vec![String::new(), "-".into()],
        },
    }
}

#[test]
fn access_log_lines_become_gateway_calls_and_a_cut_line_is_quarantined() {
    let map = gateway_map();
    map.mapping.check().unwrap();
    for file in [LOG.to_string(), format!("{LOG}.gz")] {
        let bytes = std::fs::read(&file).unwrap();
        let ctx = Context {
            pipeline: "p",
            partner: "mcm-gateway",
            run_id: "r",
            language: None,
        };
        let mut chunks = Vec::new();
        let fetched = Utc.with_ymd_and_hms(2026, 11, 21, 9, 30, 0).unwrap();
        let stats = read(
            &ctx,
            Box::new(std::io::Cursor::new(bytes)),
            "raw/p/file/x.log",
            fetched,
            &map,
            &text_options(),
            1000,
            &mut RunKeys::default(),
            &mut |c| {
                chunks.push(c);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(
            stats,
            FileStats {
                rows: 6,
                quarantined_rows: 1
            },
            "{file}"
        );
        let c = chunks.remove(0);
        let q = &c.quarantine[0];
        assert_eq!(
            (q.position.as_str(), q.reason.as_str()),
            (
                "line 6",
                "the line does not match the log format combined_timed"
            )
        );
        let df = &c.tables[0].1;
        let s = |col: &str, i| {
            df.column(col)
                .unwrap()
                .str()
                .unwrap()
                .get(i)
                .map(str::to_string)
        };
        let n = |col: &str, i| df.column(col).unwrap().i64().unwrap().get(i);
        let t = df
            .column("observed_at")
            .unwrap()
            .datetime()
            .unwrap()
            .physical()
            .get(0)
            .unwrap();
        assert_eq!(
            Utc.timestamp_micros(t).unwrap().to_rfc3339(),
            "2026-11-21T08:15:02+00:00"
        );
        assert_eq!(
            (
                s("client_id", 0).as_deref(),
                s("target_partner", 0).as_deref()
            ),
            (Some("maas-app-1"), Some("velo-city"))
        );
        assert_eq!(
            s("endpoint", 0).as_deref(),
            Some("/v1/partners/velo-city/available-assets")
        );
        assert_eq!((n("status", 3), n("bytes", 3)), (Some(504), Some(0)));
        assert_eq!(
            df.column("latency_ms").unwrap().f64().unwrap().get(3),
            Some(30001.0)
        );
        assert_eq!((s("client_id", 4), s("target_partner", 4)), (None, None));
        assert_eq!(s("request_id", 0).unwrap().len(), 16);
        assert_ne!(s("request_id", 0), s("request_id", 1));
    }
}
