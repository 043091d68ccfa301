//! The published IRVE and BNLS schemas against their published example files.

use super::*;
use crate::text::{Records, TextOptions};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");

fn schema(path: &str) -> Schema {
    Schema::from_json(&std::fs::read(format!("{FIXTURES}/{path}")).unwrap(), path).unwrap()
}

/// Valid rows, and violations with their line.
/// Cells are shown with `{:?}`: they borrow from records that do not outlive the read.
type Checked = (Vec<Vec<String>>, Vec<(u64, Violation)>);

/// Validates a file.
fn check(schema: &Schema, bytes: Vec<u8>, opts: &TextOptions) -> Result<Checked, String> {
    let mut r = Records::open(Box::new(std::io::Cursor::new(bytes)), "f.csv", opts)
        .map_err(|e| e.to_string())?;
    let mut v = Validator::new(schema, r.header())?;
    let mut rec = csv::ByteRecord::new();
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    while r.next(&mut rec).unwrap() {
        let fields = r.fields(&rec).unwrap();
        match v.row(&fields) {
            Ok(cells) => ok.push(cells.iter().map(|c| format!("{c:?}")).collect()),
            Err(vs) => bad.extend(vs.into_iter().map(|x| (r.line_of(&rec), x))),
        }
    }
    Ok((ok, bad))
}

fn file(path: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{path}")).unwrap()
}

#[test]
fn irve_static_example_is_valid_and_typed() {
    let s = schema("irve/statique/schema-statique.json");
    assert_eq!(s.fields.len(), 40);
    let (ok, bad) = check(
        &s,
        file("irve/statique/exemple-valide-statique.csv"),
        &TextOptions::default(),
    )
    .unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(ok.len(), 2);
    let idx = |n: &str| s.fields.iter().position(|f| f.name == n).unwrap();
    let shown = |c: Cell| format!("{c:?}");
    let point = Cell::Point {
        lon: 7.487105,
        lat: 48.345345,
    };
    assert_eq!(ok[0][idx("coordonneesXY")], shown(point));
    assert_eq!(ok[0][idx("puissance_nominale")], shown(Cell::Num(22.0)));
    assert_eq!(ok[0][idx("nbre_pdc")], shown(Cell::Int(10)));
    assert_eq!(ok[0][idx("prise_type_2")], shown(Cell::Bool(true)));
    let maj = NaiveDate::from_ymd_opt(2021, 4, 5).unwrap();
    assert_eq!(ok[0][idx("date_maj")], shown(Cell::Date(maj)));
    assert_eq!(ok[0][idx("id_pdc_local")], shown(Cell::Null));
}

#[test]
fn irve_dynamic_example_is_valid_with_offset_times() {
    let s = schema("irve/dynamique/schema-dynamique.json");
    let (ok, bad) = check(
        &s,
        file("irve/dynamique/exemple-valide-dynamique.csv"),
        &TextOptions::default(),
    )
    .unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(ok.len(), 2);
    assert_eq!(
        ok[1][3],
        format!(
            "{:?}",
            Cell::Datetime("2022-10-18T12:35:49Z".parse().unwrap())
        )
    );
}

#[test]
fn bnls_valid_loads_and_invalid_breaks_exactly_its_rules() {
    let s = schema("bnls/schema.json");
    let (ok, bad) = check(&s, file("bnls/exemple-valide.csv"), &TextOptions::default()).unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(ok.len(), 2);
    let (ok, bad) = check(
        &s,
        file("bnls/exemple-invalide.csv"),
        &TextOptions::default(),
    )
    .unwrap();
    assert!(ok.is_empty());
    let got: Vec<(u64, &str, &str, &str)> = bad
        .iter()
        .map(|(l, v)| (*l, v.field.as_str(), v.value.as_str(), v.rule.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                2,
                "id",
                "P-001",
                r"pattern ^([013-9]\d|2[AB1-9])\d{3}-P-\d{3}$"
            ),
            (
                2,
                "tarif_pmr",
                "inconnu",
                r#"enum ["gratuit", "normal_payant", "tarif_special"]"#
            ),
        ]
    );
}

#[test]
fn primary_key_repeats_and_constraint_bounds_are_reported() {
    let s = schema("bnls/schema.json");
    let valid = String::from_utf8(file("bnls/exemple-valide.csv")).unwrap();
    let mut lines: Vec<&str> = valid.lines().collect();
    let repeat = lines[1].to_string();
    let off_globe = lines[2]
        .replace("1.452323,46.59698", "1.452323,96.5")
        .replace("75114-P-002", "75114-P-003");
    lines.push(&repeat);
    lines.push(&off_globe);
    let (ok, bad) = check(&s, lines.join("\n").into_bytes(), &TextOptions::default()).unwrap();
    assert_eq!(ok.len(), 2);
    let got: Vec<(u64, &str, &str)> = bad
        .iter()
        .map(|(l, v)| (*l, v.field.as_str(), v.rule.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (4, "id", "primaryKey (id) is unique"),
            (5, "Ylat", "maximum 90")
        ]
    );
}

#[test]
fn a_wrong_delimiter_is_a_header_mismatch() {
    let s = schema("bnls/schema.json");
    let opts = TextOptions {
        delimiter: b';',
        ..TextOptions::default()
    };
    let err = check(&s, file("bnls/exemple-valide.csv"), &opts).unwrap_err();
    assert_eq!(
        err,
        "the header does not match the table schema: missing [\"id\", \"nom\", \"insee\", \"adresse\", \"url\", and 25 more]; \
         unexpected [\"id,nom,insee,adresse,url,type_usagers,gr\"…] (found 1 columns; is the delimiter right?)"
    );
}

#[test]
fn default_dates_are_iso_calendar_days_only() {
    assert_eq!(iso_date("2024-02-29"), NaiveDate::from_ymd_opt(2024, 2, 29));
    for bad in [
        "2023-02-29",
        "2024-13-01",
        "2024-1-01",
        "2024/01/01",
        "24-01-2024",
        "2024-01-0a",
        "+2024-01-1",
        "",
    ] {
        assert_eq!(iso_date(bad), None, "{bad}");
    }
}
