//! Named fault-injection points (DESIGN.md §10), so tests prove "nothing half-written"
//! instead of assuming it. A point fires when its name is listed in the
//! `MOBIFLUX_FAILPOINTS` environment variable (comma-separated) of the process.
//! Unset in production: each check is then one relaxed load of a cached empty list.

use std::sync::OnceLock;

pub const ENV: &str = "MOBIFLUX_FAILPOINTS";

#[derive(Debug, thiserror::Error)]
#[error("failpoint '{0}' fired (set by {ENV})")]
pub struct Fired(pub &'static str);

fn active() -> &'static [String] {
    static ACTIVE: OnceLock<Vec<String>> = OnceLock::new();
    ACTIVE.get_or_init(|| {
        std::env::var(ENV)
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

/// Returns an error when the named point is active.
pub fn check(name: &'static str) -> Result<(), Fired> {
    if active().iter().any(|a| a == name) {
        Err(Fired(name))
    } else {
        Ok(())
    }
}
