//! IRVE, the French national EV charging points standard (etalab/schema-irve): static
//! points to `charge_points`, dynamic status to `charge_point_status`. The published
//! schemas are bundled; a definition may point to a newer one (`schema = "…"`).

use crate::tabular::{ColumnMap, Conv, Mapping, conv, from};
use mobiflux_model::schema::{CHARGE_POINT_STATUS, CHARGE_POINTS};

pub const STATIC_SCHEMA: &[u8] =
    include_bytes!("../../fixtures/irve/statique/schema-statique.json");
pub const DYNAMIC_SCHEMA: &[u8] =
    include_bytes!("../../fixtures/irve/dynamique/schema-dynamique.json");

const STATIC_COLUMNS: &[ColumnMap] = &[
    from("charge_point_id", "id_pdc_itinerance"),
    from("station_id", "id_station_itinerance"),
    from("station_name", "nom_station"),
    from("network", "nom_enseigne"),
    from("owner_name", "nom_amenageur"),
    from("owner_siren", "siren_amenageur"),
    from("owner_contact", "contact_amenageur"),
    from("operator_name", "nom_operateur"),
    from("operator_contact", "contact_operateur"),
    from("operator_phone", "telephone_operateur"),
    from("location_type", "implantation_station"),
    from("address", "adresse_station"),
    from("insee_code", "code_insee_commune"),
    conv("lat", "coordonneesXY", Conv::Lat),
    conv("lon", "coordonneesXY", Conv::Lon),
    from("station_points", "nbre_pdc"),
    from("power_kw", "puissance_nominale"),
    from("socket_ef", "prise_type_ef"),
    from("socket_type2", "prise_type_2"),
    from("socket_ccs", "prise_type_combo_ccs"),
    from("socket_chademo", "prise_type_chademo"),
    from("socket_other", "prise_type_autre"),
    from("free", "gratuit"),
    from("pay_per_use", "paiement_acte"),
    from("pay_by_card", "paiement_cb"),
    from("pay_other", "paiement_autre"),
    from("pricing", "tarification"),
    from("access", "condition_acces"),
    from("reservation", "reservation"),
    from("opening_hours", "horaires"),
    from("pmr_access", "accessibilite_pmr"),
    from("height_limit", "restriction_gabarit"),
    from("two_wheels", "station_deux_roues"),
    from("grid_connection", "raccordement"),
    from("pdl_number", "num_pdl"),
    from("commissioned_on", "date_mise_en_service"),
    from("remarks", "observations"),
    from("updated_on", "date_maj"),
    from("cable_t2_attached", "cable_t2_attache"),
    // A point's version is its date_maj: a file re-published with older data changes nothing.
    conv("valid_from", "date_maj", Conv::DayStart),
];

pub const STATIC: Mapping = Mapping {
    target: &CHARGE_POINTS,
    id_column: "charge_point_id",
    columns: STATIC_COLUMNS,
};

const DYNAMIC_COLUMNS: &[ColumnMap] = &[
    from("charge_point_id", "id_pdc_itinerance"),
    from("observed_at", "horodatage"),
    from("status", "etat_pdc"),
    from("occupancy", "occupation_pdc"),
    from("socket_type2_status", "etat_prise_type_2"),
    from("socket_ccs_status", "etat_prise_type_combo_ccs"),
    from("socket_chademo_status", "etat_prise_type_chademo"),
    from("socket_ef_status", "etat_prise_type_ef"),
];

pub const DYNAMIC: Mapping = Mapping {
    target: &CHARGE_POINT_STATUS,
    id_column: "charge_point_id",
    columns: DYNAMIC_COLUMNS,
};
