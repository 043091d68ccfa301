//! `mobiflux stats NAME`: a statistic for AOM analysts as a table in the terminal, CSV or
//! JSON, to stdout or a file.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDate, Utc};
use mobiflux_loaders::Warehouse;
use mobiflux_loaders::stats::{self, Filters, Table};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    /// Needs --output.
    Parquet,
}

/// `2026-11-01` (midnight UTC) or an RFC 3339 time.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| format!("{s:?} is neither a date (2026-11-01) nor an RFC 3339 time"))
}

/// The statistics, one line each.
pub fn list() -> String {
    let width = stats::STATS.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for s in stats::STATS {
        out.push_str(&format!("{:<width$}  {}  ({})\n", s.name, s.about, s.view));
    }
    out
}

pub async fn run(
    warehouse: &dyn Warehouse,
    name: &str,
    filters: &Filters,
    format: Format,
    output: Option<&Path>,
) -> Result<()> {
    if name == "list" {
        print!("{}", list());
        return Ok(());
    }
    let Some(stat) = stats::find(name) else {
        bail!("no statistic named {name:?}; there are:\n{}", list());
    };
    if let (Some(from), Some(to)) = (filters.from, filters.to)
        && from >= to
    {
        bail!("--from ({from}) must be before --to ({to}); --to is exclusive");
    }
    if format == Format::Parquet && output.is_none() {
        bail!("--format parquet writes a file: give it with --output FILE");
    }
    let table = warehouse.stats(stat, filters).await?;
    if let (Format::Parquet, Some(path)) = (format, output) {
        let file = std::fs::File::create(path).with_context(|| path.display().to_string())?;
        let mut out = std::io::BufWriter::new(file);
        stats::write_parquet(&table, &mut out)?;
        out.flush().with_context(|| path.display().to_string())?;
        return Ok(());
    }
    let text = match format {
        Format::Parquet => unreachable!("written above"),
        Format::Table => render_table(&table),
        Format::Csv => render_csv(&table)?,
        Format::Json => serde_json::to_string_pretty(&table.records())? + "\n",
    };
    match output {
        Some(path) => std::fs::write(path, text).with_context(|| path.display().to_string())?,
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(())
}

/// A cell as printed: numbers with at most two decimals, null as empty.
fn shown(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            let s = format!("{f:.2}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        other => other.to_string(),
    }
}

pub fn render_table(t: &Table) -> String {
    if t.rows.is_empty() {
        return "(no rows)\n".into();
    }
    let cells: Vec<Vec<String>> = t
        .rows
        .iter()
        .map(|r| r.iter().map(shown).collect())
        .collect();
    let widths: Vec<usize> = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric: Vec<bool> = (0..t.columns.len())
        .map(|i| t.rows.iter().all(|r| r[i].is_number() || r[i].is_null()))
        .collect();
    let line = |vals: &[String]| {
        let parts: Vec<String> = vals
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let pad = widths[i].saturating_sub(v.chars().count());
                if numeric[i] {
                    format!("{}{v}", " ".repeat(pad))
                } else {
                    format!("{v}{}", " ".repeat(pad))
                }
            })
            .collect();
        parts.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(&t.columns);
    out.push_str(&line(
        &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
    ));
    for r in &cells {
        out.push_str(&line(r));
    }
    out.push_str(&format!("({} rows)\n", t.rows.len()));
    out
}

fn render_csv(t: &Table) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&t.columns)?;
    for r in &t.rows {
        w.write_record(r.iter().map(|v| match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }))?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_numbers_right_and_round_them() {
        let t = Table {
            columns: vec!["partner".into(), "avg_available".into()],
            rows: vec![
                vec![json!("velov"), json!(12.3456)],
                vec![json!("cityscoot"), json!(3.0)],
            ],
        };
        assert_eq!(
            render_table(&t),
            "partner    avg_available\n---------  -------------\nvelov              12.35\ncityscoot              3\n(2 rows)\n"
        );
        assert_eq!(
            render_csv(&t).unwrap(),
            "partner,avg_available\nvelov,12.3456\ncityscoot,3.0\n"
        );
    }

    #[test]
    fn times_are_dates_or_rfc3339() {
        assert_eq!(
            parse_time("2026-11-01").unwrap().to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("2026-11-01T10:00:00+01:00")
                .unwrap()
                .to_rfc3339(),
            "2026-11-01T09:00:00+00:00"
        );
        assert!(
            parse_time("yesterday")
                .unwrap_err()
                .to_string()
                .contains("RFC 3339")
        );
    }
}
