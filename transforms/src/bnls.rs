//! BNLS, the French national parking places base (etalab/schema-stationnement), to
//! `parking_facilities`. The published schema is bundled; `schema = "…"` overrides it.

use crate::tabular::{ColumnMap, Conv, Mapping, conv, fetched_at, from};
use mobiflux_model::schema::PARKING_FACILITIES;

pub const SCHEMA: &[u8] = include_bytes!("../../fixtures/bnls/schema.json");

const COLUMNS: &[ColumnMap] = &[
    from("facility_id", "id"),
    from("name", "nom"),
    from("insee_code", "insee"),
    from("address", "adresse"),
    from("url", "url"),
    from("user_type", "type_usagers"),
    from("free", "gratuit"),
    from("capacity", "nb_places"),
    from("spaces_park_ride", "nb_pr"),
    from("spaces_pmr", "nb_pmr"),
    from("spaces_ev", "nb_voitures_electriques"),
    from("spaces_bike", "nb_velo"),
    from("spaces_e2w", "nb_2r_el"),
    from("spaces_carsharing", "nb_autopartage"),
    from("spaces_motorbike", "nb_2_rm"),
    from("spaces_carpool", "nb_covoit"),
    // Centimetres, or "N/A" when there is no height limit.
    conv("max_height_cm", "hauteur_max", Conv::IntOrNull),
    from("siret", "num_siret"),
    from("lat", "Ylat"),
    from("lon", "Xlong"),
    from("pmr_tariff", "tarif_pmr"),
    from("price_1h", "tarif_1h"),
    from("price_2h", "tarif_2h"),
    from("price_3h", "tarif_3h"),
    from("price_4h", "tarif_4h"),
    from("price_24h", "tarif_24h"),
    from("resident_subscription", "abo_resident"),
    from("non_resident_subscription", "abo_non_resident"),
    from("structure_type", "type_ouvrage"),
    from("info", "info"),
    // BNLS rows carry no date of their own: the file's fetch time versions them.
    fetched_at("valid_from"),
];

pub const MAPPING: Mapping = Mapping {
    target: &PARKING_FACILITIES,
    id_column: "facility_id",
    columns: COLUMNS,
};
