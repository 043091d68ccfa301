//! Scraped pages to a unified table. A row selector picks one element per row; each column
//! reads, inside it, the first element matching a CSS selector (or the row element itself):
//! its whitespace-collapsed text or an attribute, optionally narrowed by a regex capture,
//! then converted like a `csv` column (locale numbers with `decimal`/`group`, dates such as
//! `%d.%m.%Y`, value maps, constants). Scraping works on the stored page, so a changed layout
//! is fixed in the definition and the run replayed.
//!
//! A row selector, or a column selector, that matches nothing in a page fails the run with
//! the selector and the page named: a silent empty load would hide a redesigned site.

use regex::Regex;
use scraper::{ElementRef, Html, Selector};

use crate::mapped::MappedTable;
use crate::tabular::{FileStats, RowMap, RowSink, RunKeys};
use crate::{Context, Output, TransformError};

#[cfg(test)]
mod tests;

/// Where a column's text comes from in a row element.
#[derive(Debug, Clone)]
pub struct Field {
    /// The unified column it feeds (also its name in the mapping).
    pub name: String,
    /// `None`: the row element itself.
    pub css: Option<String>,
    /// An attribute instead of the text.
    pub attr: Option<String>,
    /// The first capture group (or the whole match) of this pattern.
    pub regex: Option<Regex>,
}

/// A definition's scraping rules.
#[derive(Debug, Clone)]
pub struct PageSpec {
    pub rows: String,
    pub fields: Vec<Field>,
    /// Conversions and constants; its column sources are the field names.
    pub mapping: MappedTable,
}

/// Checks selector syntax (for `validate`): the first bad one, with the parser's reason.
pub fn check_selector(css: &str) -> Result<(), String> {
    Selector::parse(css)
        .map(|_| ())
        .map_err(|e| format!("CSS selector {css:?}: {e}"))
}

fn selector(css: &str, source_object: &str) -> Result<Selector, TransformError> {
    Selector::parse(css).map_err(|e| TransformError::BadFile {
        source_object: source_object.to_string(),
        expected: "valid CSS selectors".into(),
        found: format!("{css:?}: {e}"),
    })
}

/// The `href` of the first element `css` matches in a page (a "next page" link), if any.
/// The selector was checked when the definition was read.
pub fn next_link(page: &[u8], css: &str) -> Result<Option<String>, String> {
    let sel = Selector::parse(css).map_err(|e| format!("CSS selector {css:?}: {e}"))?;
    let doc = Html::parse_document(&page_text(page));
    Ok(doc
        .select(&sel)
        .find_map(|el| el.value().attr("href"))
        .map(str::trim)
        .filter(|h| !h.is_empty() && !h.starts_with('#'))
        .map(str::to_string))
}

/// Text of a page: UTF-8, else Windows-1252 (older municipal sites).
fn page_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => encoding_rs::WINDOWS_1252.decode(bytes).0.into_owned(),
    }
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Scrapes one stored page into chunks of the mapping's table.
pub fn read(
    ctx: &Context,
    bytes: &[u8],
    source_object: &str,
    fetched: chrono::DateTime<chrono::Utc>,
    spec: &PageSpec,
    seen: &mut RunKeys,
    emit: &mut dyn FnMut(Output) -> Result<(), String>,
) -> Result<FileStats, TransformError> {
    let doc = Html::parse_document(&page_text(bytes));
    let rows_sel = selector(&spec.rows, source_object)?;
    let rows: Vec<ElementRef> = doc.select(&rows_sel).collect();
    if rows.is_empty() {
        return Err(TransformError::BadFile {
            source_object: source_object.to_string(),
            expected: format!("elements matching the row selector {:?}", spec.rows),
            found: "none in this page".into(),
        });
    }
    let field_sels: Vec<Option<Selector>> = spec
        .fields
        .iter()
        .map(|f| {
            f.css
                .as_deref()
                .map(|c| selector(c, source_object))
                .transpose()
        })
        .collect::<Result<_, _>>()?;
    // Every row's texts first: a column selector that matches in no row is a broken page.
    let mut table: Vec<Vec<Option<String>>> = Vec::with_capacity(rows.len());
    let mut matched = vec![false; spec.fields.len()];
    for row in &rows {
        let mut texts = Vec::with_capacity(spec.fields.len());
        for (i, (f, sel)) in spec.fields.iter().zip(&field_sels).enumerate() {
            let el = match sel {
                Some(s) => row.select(s).next(),
                None => Some(*row),
            };
            let raw = el.and_then(|e| match &f.attr {
                Some(a) => e.value().attr(a).map(|v| v.trim().to_string()),
                None => Some(collapse(&e.text().collect::<String>())),
            });
            matched[i] |= raw.is_some();
            let value = match (&f.regex, raw) {
                (Some(re), Some(text)) => re
                    .captures(&text)
                    .map(|c| c.get(1).or(c.get(0)).map_or("", |m| m.as_str()).to_string()),
                (None, raw) => raw,
                (_, None) => None,
            };
            texts.push(value);
        }
        table.push(texts);
    }
    if let Some(i) = matched.iter().position(|m| !m) {
        let f = &spec.fields[i];
        return Err(TransformError::BadFile {
            source_object: source_object.to_string(),
            expected: format!(
                "column {} to be found by the selector {:?}{} in the {} rows",
                f.name,
                f.css.as_deref().unwrap_or("(the row itself)"),
                f.attr
                    .as_deref()
                    .map(|a| format!(" (attribute {a})"))
                    .unwrap_or_default(),
                rows.len()
            ),
            found: "it matches nothing in this page".into(),
        });
    }
    let header: Vec<String> = spec.fields.iter().map(|f| f.name.clone()).collect();
    let mut bound =
        spec.mapping
            .bind(&header)
            .map_err(|(expected, found)| TransformError::BadFile {
                source_object: source_object.to_string(),
                expected,
                found,
            })?;
    let fetched_us = fetched.timestamp_micros();
    let mut sink = RowSink::new(spec.mapping.target(), source_object, 25_000, emit);
    for (n, texts) in table.iter().enumerate() {
        let fields: Vec<&str> = texts.iter().map(|t| t.as_deref().unwrap_or("")).collect();
        let mut row = sink.blank(ctx);
        let mapped = bound.map(&fields, fetched_us, &mut row).map(|()| row);
        sink.accept(
            || format!("element {} of {:?}", n + 1, spec.rows),
            mapped,
            seen,
            || fields.join(" | "),
        )?;
    }
    sink.finish()
}
