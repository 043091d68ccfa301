//! The two vehicle vocabularies mobiflux translates between: GBFS (the unified tables'
//! `form_factor` and `propulsion`) and TOMP (asset classes and propulsions, which the
//! gateway serves). One table each, read both ways.

/// (GBFS form factor, TOMP asset class, other TOMP spellings seen in feeds).
const ASSET_CLASSES: &[(&str, &str, &[&str])] = &[
    ("bicycle", "BICYCLE", &["BIKE"]),
    ("cargo_bicycle", "CARGO_BICYCLE", &["CARGOBIKE"]),
    ("car", "CAR", &[]),
    ("moped", "MOPED", &["SCOOTER"]),
    ("scooter_standing", "STEP", &["KICKSCOOTER"]),
    ("scooter", "STEP", &[]),
    ("scooter_seated", "MOPED", &[]),
    ("other", "OTHER", &[]),
];

/// (GBFS propulsion type, TOMP propulsion, other TOMP spellings).
const PROPULSIONS: &[(&str, &str, &[&str])] = &[
    ("human", "MUSCLE", &[]),
    ("electric", "ELECTRIC", &[]),
    ("electric_assist", "ASSISTED", &[]),
    ("combustion", "GASOLINE", &["DIESEL", "COMBUSTION"]),
    ("combustion_diesel", "DIESEL", &[]),
    ("hybrid", "HYBRID", &[]),
    ("plug_in_hybrid", "HYBRID", &[]),
    ("hydrogen_fuel_cell", "HYDROGEN", &[]),
];

fn to_gbfs(table: &[(&'static str, &str, &[&str])], tomp: &str) -> Option<&'static str> {
    table
        .iter()
        .find(|(_, t, aliases)| *t == tomp || aliases.contains(&tomp))
        .map(|(g, _, _)| *g)
}

fn to_tomp(table: &[(&str, &'static str, &[&str])], gbfs: &str) -> Option<&'static str> {
    table
        .iter()
        .find(|(g, _, _)| *g == gbfs)
        .map(|(_, t, _)| *t)
}

/// GBFS `form_factor` of a TOMP asset class (`other` when unknown).
pub fn form_factor(asset_class: &str) -> &'static str {
    to_gbfs(ASSET_CLASSES, asset_class).unwrap_or("other")
}

/// TOMP asset class of a GBFS form factor (`OTHER` when unknown).
pub fn asset_class(form_factor: &str) -> &'static str {
    to_tomp(ASSET_CLASSES, form_factor).unwrap_or("OTHER")
}

/// GBFS `propulsion_type` of a TOMP propulsion (lower-cased when unknown).
pub fn propulsion_type(tomp: &str) -> String {
    to_gbfs(PROPULSIONS, tomp)
        .map(str::to_string)
        .unwrap_or_else(|| tomp.to_lowercase())
}

/// TOMP propulsion of a GBFS propulsion type (upper-cased when unknown).
pub fn tomp_propulsion(gbfs: &str) -> String {
    to_tomp(PROPULSIONS, gbfs)
        .map(str::to_string)
        .unwrap_or_else(|| gbfs.to_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ways() {
        assert_eq!(form_factor("BIKE"), "bicycle");
        assert_eq!(form_factor("BICYCLE"), "bicycle");
        assert_eq!(form_factor("KICKSCOOTER"), "scooter_standing");
        assert_eq!(form_factor("AIR"), "other");
        assert_eq!(asset_class("bicycle"), "BICYCLE");
        assert_eq!(asset_class("scooter_standing"), "STEP");
        assert_eq!(propulsion_type("DIESEL"), "combustion");
        assert_eq!(propulsion_type("SOLAR"), "solar");
        assert_eq!(tomp_propulsion("electric_assist"), "ASSISTED");
        assert_eq!(tomp_propulsion("human"), "MUSCLE");
    }
}
