//! Records of JSON documents (GBFS, TOMP, …) to one unified table: each record read into a
//! row, checked against the table, its natural id refused when repeated, or quarantined
//! with its JSON-pointer position and the first issue found.

use std::collections::HashMap;

use mobiflux_model::TableSchema;
use serde_json::Value;

use crate::frame::{FrameBuilder, Row};
use crate::json::{Issue, Obj};
use crate::{Context, Quarantined};

/// Accumulates one table's rows and the quarantine, with duplicate-key detection.
pub struct Table<'c> {
    ctx: &'c Context<'c>,
    pub builder: FrameBuilder,
    seen: HashMap<String, String>,
    quarantine: &'c mut Vec<Quarantined>,
}

impl<'c> Table<'c> {
    pub fn new(
        schema: &'static TableSchema,
        ctx: &'c Context<'c>,
        quarantine: &'c mut Vec<Quarantined>,
    ) -> Self {
        Table {
            ctx,
            builder: FrameBuilder::new(schema),
            seen: HashMap::new(),
            quarantine,
        }
    }

    fn row(&self) -> Row {
        let mut r = Row::new(self.builder.schema());
        r.set("partner", self.ctx.partner)
            .set("run_id", self.ctx.run_id);
        r
    }

    fn reject(&mut self, source_object: &str, position: String, issue: Issue) {
        self.quarantine.push(Quarantined {
            source_object: source_object.to_string(),
            position,
            field: Some(issue.field),
            value: issue.value,
            reason: issue.reason,
        });
    }

    /// Adds a row read by `read`, or quarantines the record with the first issue found.
    /// `id_field` names the natural id, whose repeats within the batch are quarantined.
    pub fn add(
        &mut self,
        source_object: &str,
        position: String,
        id_field: &str,
        read: impl FnOnce(&mut Row) -> Result<(), Issue>,
    ) {
        let mut row = self.row();
        if let Err(issue) = read(&mut row) {
            return self.reject(source_object, position, issue);
        }
        if let Err(e) = self.builder.check(&row) {
            let issue = Issue::new(e.field, None, e.reason);
            return self.reject(source_object, position, issue);
        }
        if let Some(crate::frame::Value::Text(id)) = row.get(id_field) {
            if let Some(first) = self.seen.get(id) {
                let issue = Issue::new(
                    id_field,
                    Some(&Value::String(id.clone())),
                    format!("duplicate {id_field} (first seen at {first})"),
                );
                return self.reject(source_object, position, issue);
            }
            self.seen.insert(id.clone(), position);
        }
        self.builder.push_checked_row(&row);
    }
}

pub fn as_obj<'v>(v: &'v Value, what: &str) -> Result<&'v Obj, Issue> {
    v.as_object().ok_or_else(|| {
        Issue::new(
            what,
            Some(v),
            format!("{what} record must be a JSON object"),
        )
    })
}
