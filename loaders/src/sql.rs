//! SQL shared by both warehouses, derived from the table schemas (names are compile-time
//! constants, never user input; values are always bound or COPYed).

use mobiflux_model::{TableKind, TableSchema};

/// The id of a pipeline's latest run but replays ([`crate::Warehouse::last_run`]); `$1` is
/// the pipeline (SQLite takes `$1` as its first parameter too).
pub const LAST_RUN: &str = "SELECT run_id FROM etl_runs WHERE pipeline = $1 AND trigger <> 'replay' \
     ORDER BY started_at DESC LIMIT 1";

/// What a run stored of a table, for its curated rows written again
/// ([`crate::Warehouse::run_rows`]); `$1` the partner, `$2` the run id, and for a snapshot
/// table `$3` and `$4` the first and last snapshot time asked about (SQLite takes `$n` too):
/// the snapshot times whose rows the run inserted, or whether any row holds its version.
pub fn run_rows(t: &TableSchema) -> String {
    match t.kind {
        TableKind::Snapshot => format!(
            "SELECT DISTINCT observed_at FROM {} WHERE partner = $1 AND run_id = $2 \
             AND observed_at >= $3 AND observed_at <= $4",
            t.name
        ),
        _ => format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE partner = $1 AND run_id = $2)",
            t.name
        ),
    }
}

pub fn column_list(t: &TableSchema) -> String {
    t.column_names().collect::<Vec<_>>().join(", ")
}

/// `ON CONFLICT` clause for a table: a newer (or same) version of a static row replaces
/// the stored one only if something other than `run_id` differs; snapshots keep the first.
pub fn on_conflict(t: &TableSchema) -> String {
    match t.kind {
        TableKind::Static => {
            let non_key: Vec<&str> = t.column_names().filter(|c| !t.key.contains(c)).collect();
            let set = non_key
                .iter()
                .map(|c| format!("{c} = excluded.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            let compared: Vec<&str> = non_key.iter().copied().filter(|c| *c != "run_id").collect();
            let old = compared
                .iter()
                .map(|c| format!("{}.{c}", t.name))
                .collect::<Vec<_>>()
                .join(", ");
            let new = compared
                .iter()
                .map(|c| format!("excluded.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "ON CONFLICT ({}) DO UPDATE SET {set} WHERE {}.valid_from <= excluded.valid_from AND ({old}) IS DISTINCT FROM ({new})",
                t.key.join(", "),
                t.name
            )
        }
        TableKind::Snapshot => format!("ON CONFLICT ({}) DO NOTHING", t.key.join(", ")),
        TableKind::PerRun => String::new(),
    }
}

/// SQLite spells row-value `IS DISTINCT FROM` as `IS NOT`.
pub fn on_conflict_sqlite(t: &TableSchema) -> String {
    on_conflict(t).replace(" IS DISTINCT FROM ", " IS NOT ")
}

/// The error of a scheduled run left `running` (its daemon was killed, or lost the
/// warehouse before it could record the end), marked failed when its pipeline's next tick
/// is claimed; the run's id follows, and a closing parenthesis.
pub const ABANDONED: &str = "abandoned: the daemon running it stopped, or lost the warehouse, before recording how it ended (a complete extraction can be loaded again: mobiflux replay ";

pub const ETL_RUN_COLUMNS: &str = "run_id, pipeline, partner, format, trigger, scheduled_for, started_at, finished_at, status, rows_loaded, rows_quarantined, bytes, error, manifest, curated_batch";

pub const ETL_RUN_UPSERT: &str = "ON CONFLICT (run_id) DO UPDATE SET pipeline = excluded.pipeline, partner = excluded.partner, format = excluded.format, trigger = excluded.trigger, scheduled_for = excluded.scheduled_for, started_at = excluded.started_at, finished_at = excluded.finished_at, status = excluded.status, rows_loaded = excluded.rows_loaded, rows_quarantined = excluded.rows_quarantined, bytes = excluded.bytes, error = excluded.error, manifest = excluded.manifest, curated_batch = coalesce(etl_runs.curated_batch, excluded.curated_batch)";

/// ORDER BY for dumps: the natural key, or every column for per-run tables.
pub fn dump_order(t: &TableSchema) -> String {
    if t.key.is_empty() {
        column_list(t)
    } else {
        t.key.join(", ")
    }
}

/// A string as a PostgreSQL dollar-quoted literal (`$q$…$q$`), for a statement that cannot
/// bind parameters (a simple query): nothing in it is special, whatever the server's
/// `standard_conforming_strings`; the tag grows until the string does not contain it.
pub fn dollar_quoted(s: &str) -> String {
    let mut tag = String::from("$q$");
    while s.contains(&tag) {
        tag.insert(tag.len() - 1, 'q');
    }
    format!("{tag}{s}{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobiflux_model::schema::{REGIONS, VEHICLES};

    #[test]
    fn static_tables_upsert_newer_changed_versions_and_snapshots_keep_the_first() {
        assert_eq!(
            on_conflict(&REGIONS),
            "ON CONFLICT (partner, region_id) DO UPDATE SET name = excluded.name, valid_from = excluded.valid_from, \
             run_id = excluded.run_id WHERE regions.valid_from <= excluded.valid_from AND (regions.name, regions.valid_from) \
             IS DISTINCT FROM (excluded.name, excluded.valid_from)"
        );
        assert_eq!(
            on_conflict(&VEHICLES),
            "ON CONFLICT (partner, vehicle_id, observed_at) DO NOTHING"
        );
    }

    #[test]
    fn a_dollar_quoted_literal_never_contains_its_own_tag() {
        assert_eq!(super::dollar_quoted("velo'city"), "$q$velo'city$q$");
        assert_eq!(super::dollar_quoted("a$q$b"), "$qq$a$q$b$qq$");
        assert_eq!(super::dollar_quoted("$q$$qq$"), "$qqq$$q$$qq$$qqq$");
    }
}
