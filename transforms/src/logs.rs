//! Line-oriented logs (the gateway's access logs) to a unified table: a named pattern turns
//! each line into named fields, which a declarative mapping converts like `csv` columns.
//!
//! Built-in patterns: `combined` (nginx/Apache combined format) and `combined_timed`
//! (combined followed by `$request_time` in seconds, a common nginx `log_format`). A
//! definition may give its own regex with named groups instead. Each line also offers
//! `line_id`, a stable 64-bit hash of the line in hex, for logs without request ids.

use regex::Regex;

use crate::mapped::MappedTable;
use crate::tableschema::Violation;
use crate::tabular::{BoundRow, Prepared, RowMap};
use crate::text::TextOptions;
use mobiflux_model::TableSchema;

#[cfg(test)]
mod tests;

pub const COMBINED: &str = r#"^(?P<remote_addr>\S+) \S+ (?P<remote_user>\S+) \[(?P<time_local>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>[^ "?]*)(?P<query>\?[^ "]*)?(?: [^"]*)?" (?P<status>\d{3}) (?P<bytes>\d+|-) "(?P<referer>[^"]*)" "(?P<user_agent>[^"]*)""#;

/// The time format of `time_local` in nginx and Apache logs.
pub const TIME_LOCAL: &str = "%d/%b/%Y:%H:%M:%S %z";

/// A named pattern: `combined`, `combined_timed`, or `None` for an unknown name.
pub fn named_pattern(name: &str) -> Option<String> {
    match name {
        "combined" => Some(format!("{COMBINED}$")),
        "combined_timed" => Some(format!(r"{COMBINED} (?P<request_time>[\d.]+)$")),
        _ => None,
    }
}

/// Reading options for logs: one line, one field.
pub fn text_options() -> TextOptions {
    TextOptions {
        delimiter: 0x1f,
        quoting: false,
        header: false,
        ..TextOptions::default()
    }
}

/// A log pattern and the mapping of its groups.
#[derive(Debug, Clone)]
pub struct LogMap {
    pub name: String,
    pub pattern: Regex,
    /// Column sources are group names (or `line_id`).
    pub mapping: MappedTable,
}

/// FNV-1a: stable across versions and platforms, so a replay gives the same ids.
fn line_id(line: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in line.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

struct BoundLog<'m> {
    map: &'m LogMap,
    groups: Vec<String>,
    /// Target positions filled with the line's id.
    line_id_at: Vec<usize>,
    inner: Box<dyn BoundRow + 'm>,
}

impl RowMap for LogMap {
    fn target(&self) -> &'static TableSchema {
        self.mapping.target
    }

    fn bind<'m>(&'m self, _header: &[String]) -> Result<Box<dyn BoundRow + 'm>, (String, String)> {
        let mut groups: Vec<String> = self
            .pattern
            .capture_names()
            .flatten()
            .map(str::to_string)
            .collect();
        groups.push("line_id".into());
        let inner = self.mapping.bind(&groups).map_err(|(expected, found)| {
            (
                expected,
                format!("the pattern {} offers {:?}; {found}", self.name, groups),
            )
        })?;
        let line_id = crate::mapped::Source::Column("line_id".into());
        let line_id_at = self
            .mapping
            .columns
            .iter()
            .filter(|c| c.source == line_id)
            .filter_map(|c| {
                self.mapping
                    .target
                    .columns
                    .iter()
                    .position(|t| t.name == c.column)
            })
            .collect();
        Ok(Box::new(BoundLog {
            map: self,
            groups,
            line_id_at,
            inner,
        }))
    }
}

impl BoundRow for BoundLog<'_> {
    fn map<'a>(
        &mut self,
        fields: &[&'a str],
        fetched_us: i64,
        out: &mut [Prepared<'a>],
    ) -> Result<(), Vec<Violation>> {
        let line = fields.first().copied().unwrap_or("");
        let Some(caps) = self.map.pattern.captures(line) else {
            return Err(vec![Violation {
                field: String::new(),
                value: line.chars().take(500).collect(),
                rule: format!("the line does not match the log format {}", self.map.name),
            }]);
        };
        let mut values: Vec<&'a str> = Vec::with_capacity(self.groups.len());
        for g in &self.groups[..self.groups.len() - 1] {
            values.push(caps.name(g).map_or("", |m| m.as_str()));
        }
        // `line_id` is not a slice of the line: it is filled in after the mapping.
        values.push("");
        self.inner.map(&values, fetched_us, out)?;
        if !self.line_id_at.is_empty() {
            let id = line_id(line);
            for &at in &self.line_id_at {
                out[at] = Prepared::Owned(id.clone());
            }
        }
        Ok(())
    }
}
