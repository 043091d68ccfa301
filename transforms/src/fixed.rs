//! Fixed-width files: each field is a range of character positions (1-based, inclusive,
//! as record layouts are usually written), trimmed, then mapped like `csv` columns.

use crate::mapped::MappedTable;
use crate::tableschema::Violation;
use crate::tabular::{BoundRow, Prepared, RowMap};
use crate::text::TextOptions;
use mobiflux_model::TableSchema;

#[derive(Debug, Clone)]
pub struct FixedMap {
    /// (name, first position, last position), 1-based and inclusive.
    pub fields: Vec<(String, usize, usize)>,
    /// The first line names the columns and is skipped.
    pub header: bool,
    /// Column sources are field names.
    pub mapping: MappedTable,
}

impl FixedMap {
    /// Reading options: one line, one field.
    pub fn text_options(&self) -> TextOptions {
        TextOptions {
            delimiter: 0x1f,
            quoting: false,
            header: self.header,
            ..TextOptions::default()
        }
    }

    /// Positions must start at 1, and each range must be in order.
    pub fn check(&self) -> Result<(), String> {
        for (name, from, to) in &self.fields {
            if *from == 0 || to < from {
                return Err(format!(
                    "field {name}: positions [{from}, {to}] must be 1-based with first <= last"
                ));
            }
        }
        Ok(())
    }
}

struct BoundFixed<'m> {
    map: &'m FixedMap,
    inner: Box<dyn BoundRow + 'm>,
}

impl RowMap for FixedMap {
    fn target(&self) -> &'static TableSchema {
        self.mapping.target
    }

    fn bind<'m>(&'m self, _header: &[String]) -> Result<Box<dyn BoundRow + 'm>, (String, String)> {
        let names: Vec<String> = self.fields.iter().map(|f| f.0.clone()).collect();
        let inner = self.mapping.bind(&names)?;
        Ok(Box::new(BoundFixed { map: self, inner }))
    }
}

/// The slice of `line` between 1-based character positions, inclusive (empty past the end).
fn slice(line: &str, from: usize, to: usize) -> &str {
    if line.is_ascii() {
        let end = to.min(line.len());
        return if from > end { "" } else { &line[from - 1..end] };
    }
    let mut starts = line
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(line.len()));
    let begin = starts.nth(from - 1);
    let end = line
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(line.len()))
        .nth(to)
        .unwrap_or(line.len());
    match begin {
        Some(b) if b < end => &line[b..end],
        _ => "",
    }
}

impl BoundRow for BoundFixed<'_> {
    fn map<'a>(
        &mut self,
        fields: &[&'a str],
        fetched_us: i64,
        out: &mut [Prepared<'a>],
    ) -> Result<(), Vec<Violation>> {
        let line = fields.first().copied().unwrap_or("").trim_end_matches('\r');
        let values: Vec<&'a str> = self
            .map
            .fields
            .iter()
            .map(|(_, from, to)| slice(line, *from, *to).trim())
            .collect();
        self.inner.map(&values, fetched_us, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Context;
    use crate::mapped::{ColumnSpec, Convert, Source, TimeSpec};
    use crate::tabular::{FileStats, RunKeys, read};
    use chrono::{TimeZone, Utc};
    use mobiflux_model::schema::PARKING_OCCUPANCY;

    #[test]
    fn positions_slice_characters_not_bytes() {
        assert_eq!(slice("ABCDEFG", 2, 4), "BCD");
        assert_eq!(slice("Mühle  12", 1, 5), "Mühle");
        assert_eq!(slice("Mühle  12", 8, 9), "12");
        assert_eq!(slice("short", 7, 9), "");
    }

    #[test]
    fn a_fixed_width_occupancy_export_loads() {
        // Layout: id 1-4, name 6-25, free 26-29, capacity 30-34, time 36-51.
        let line = |id: &str, name: &str, free: &str, cap: &str, at: &str| {
            format!("{id:<4} {name:<20}{free:>4}{cap:>5} {at}\n")
        };
        let text = [
            line("ID", "NAME", "FREI", "KAP", "STAND"),
            line(
                "P001",
                "Parkhaus Mühlstraße",
                "41",
                "300",
                "21.11.2026 08:15",
            ),
            line("P002", "Am Ring", "abc", "120", "21.11.2026 08:15"),
            line("P003", "Bahnhof Süd", "0", "85", "21.11.2026 08:16"),
        ]
        .concat();
        let col = |column: &'static str, from: &str, convert: Convert| ColumnSpec {
            column,
            source: Source::Column(from.into()),
            convert,
            regex: None,
            default: None,
        };
        let map = FixedMap {
            fields: vec![
                ("id".into(), 1, 4),
                ("name".into(), 6, 25),
                ("free".into(), 26, 29),
                ("capacity".into(), 30, 34),
                ("at".into(), 36, 51),
            ],
            header: true,
            mapping: MappedTable {
                target: &PARKING_OCCUPANCY,
                columns: vec![
                    col("facility_id", "id", Convert::Auto),
                    col("name", "name", Convert::Auto),
                    col("free", "free", Convert::Auto),
                    col("capacity", "capacity", Convert::Auto),
                    col(
                        "observed_at",
                        "at",
                        Convert::Time(TimeSpec::Format {
                            format: "%d.%m.%Y %H:%M".into(),
                            tz: chrono_tz::Europe::Berlin,
                        }),
                    ),
                ],
                nulls: vec![String::new()],
            },
        };
        map.check().unwrap();
        let ctx = Context {
            pipeline: "p",
            partner: "city",
            run_id: "r",
            language: None,
        };
        let mut chunks = Vec::new();
        let fetched = Utc.with_ymd_and_hms(2026, 11, 21, 8, 30, 0).unwrap();
        let stats = read(
            &ctx,
            Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
            "x.txt",
            fetched,
            &map,
            &map.text_options(),
            100,
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
                rows: 2,
                quarantined_rows: 1
            }
        );
        let c = chunks.remove(0);
        let df = &c.tables[0].1;
        assert_eq!(
            df.column("name").unwrap().str().unwrap().get(0),
            Some("Parkhaus Mühlstraße")
        );
        assert_eq!(df.column("free").unwrap().i64().unwrap().get(1), Some(0));
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
            "2026-11-21T07:15:00+00:00"
        );
        let q = &c.quarantine[0];
        assert_eq!(
            (
                q.position.as_str(),
                q.field.as_deref(),
                q.value.as_deref(),
                q.reason.as_str()
            ),
            ("line 3", Some("free"), Some("abc"), "whole number")
        );
    }
}
