//! Real municipal exports and hostile variants of them through the text reader.

use super::*;
use std::io::Write;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");

fn file(path: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{path}")).unwrap()
}

fn opts(delimiter: u8, encoding: Encoding) -> TextOptions {
    TextOptions {
        delimiter,
        encoding,
        ..TextOptions::default()
    }
}

/// Header, rows and the encoding used.
type Read3 = (Vec<String>, Vec<Vec<String>>, Encoding);

fn all(bytes: Vec<u8>, o: &TextOptions) -> Result<Read3, TextError> {
    let mut r = Records::open(Box::new(std::io::Cursor::new(bytes)), "test.csv", o)?;
    let mut rec = csv::ByteRecord::new();
    let mut rows = Vec::new();
    while r.next(&mut rec)? {
        rows.push(r.fields(&rec)?.iter().map(|f| f.to_string()).collect());
    }
    Ok((r.header().to_vec(), rows, r.encoding()))
}

#[test]
fn latin1_with_crlf_is_detected_and_decoded() {
    let (header, rows, enc) = all(
        file("parking-csv/bietigheim-bissingen.csv"),
        &opts(b';', Encoding::Auto),
    )
    .unwrap();
    assert_eq!(enc, Encoding::Windows1252);
    assert_eq!(
        header,
        [
            "Name",
            "OpeningState",
            "Capacity",
            "OccupiedSites",
            "Timestamp"
        ]
    );
    assert_eq!(
        rows[0],
        [
            "Parkplatz Mühlwiesenstr.",
            "Geöffnet",
            "106",
            "81",
            "1740651467085"
        ]
    );
    assert_eq!(rows.len(), 14);
}

#[test]
fn utf8_bom_is_stripped_from_the_first_column_name() {
    let (header, rows, enc) = all(
        file("parking-csv/reutlingen_disabled.csv"),
        &opts(b';', Encoding::Auto),
    )
    .unwrap();
    assert_eq!(enc, Encoding::Utf8);
    assert_eq!(header, ["id", "ort", "GEOM"]);
    assert_eq!(
        rows[0],
        [
            "554",
            "Burgstraße 27-29",
            "POINT (9.221345705496756 48.49058561524002)"
        ]
    );
}

#[test]
fn gzip_and_zstd_are_read_transparently() {
    let plain = file("parking-csv/reutlingen.csv");
    let expected = all(plain.clone(), &TextOptions::default()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    assert_eq!(
        all(gz.finish().unwrap(), &TextOptions::default()).unwrap(),
        expected
    );
    let zst =
        ruzstd::encoding::compress_to_vec(&plain[..], ruzstd::encoding::CompressionLevel::Fastest);
    assert_eq!(all(zst, &TextOptions::default()).unwrap(), expected);
}

#[test]
fn a_truncated_gzip_is_a_clear_error() {
    let plain = file("parking-csv/bielefeld.csv");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    let mut bytes = gz.finish().unwrap();
    bytes.truncate(bytes.len() / 2);
    let err = all(bytes, &opts(b';', Encoding::Auto)).unwrap_err();
    assert!(
        err.to_string()
            .contains("the compressed stream is truncated"),
        "{err}"
    );
}

#[test]
fn invalid_utf8_names_file_line_and_column() {
    let err = all(
        file("parking-csv/bietigheim-bissingen.csv"),
        &opts(b';', Encoding::Utf8),
    )
    .unwrap_err();
    assert_eq!(err.line, Some(2));
    assert_eq!(err.column.as_deref(), Some("1 (Name)"));
    assert!(
        err.to_string().starts_with(
            "test.csv: line 2, column 1 (Name): invalid UTF-8 after byte 11 of the field"
        ),
        "{err}"
    );
}

#[test]
fn a_character_split_across_two_fields_is_invalid_utf8_in_the_first() {
    // "é" is C3 A9: its two bytes on both sides of the delimiter make the record's bytes
    // valid UTF-8 back to back, but neither field is.
    let err = all(b"a;b\nx\xC3;\xA9y\n".to_vec(), &opts(b';', Encoding::Utf8)).unwrap_err();
    assert_eq!(err.line, Some(2));
    assert_eq!(err.column.as_deref(), Some("1 (a)"));
}

/// 100 MB of one line, produced lazily: the reader must stop at its bound, not buffer it.
struct EndlessLine {
    left: usize,
}

impl Read for EndlessLine {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.left);
        buf[..n].fill(b'a');
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn a_100_mb_line_is_refused_at_the_bound() {
    let input = io::Cursor::new(b"id,name\n".to_vec()).chain(EndlessLine { left: 100 << 20 });
    let mut r = Records::open(Box::new(input), "huge.csv", &TextOptions::default()).unwrap();
    let mut rec = csv::ByteRecord::new();
    let err = r.next(&mut rec).unwrap_err();
    assert_eq!(
        err.to_string(),
        "huge.csv: line 2 is longer than 1048576 bytes"
    );
}

#[test]
fn records_know_their_line_with_crlf_lf_and_quoted_newlines() {
    for (bytes, expected) in [
        (b"a,b\r\n1,2\r\n3,4\r\n".to_vec(), vec![2, 3]),
        (b"a,b\n1,2\n\n3,4\n".to_vec(), vec![2, 4]),
        (b"a,b\n\"x\ny\",2\n3,4\n".to_vec(), vec![2, 4]),
    ] {
        let mut r = Records::open(
            Box::new(io::Cursor::new(bytes)),
            "t.csv",
            &TextOptions::default(),
        )
        .unwrap();
        let mut rec = csv::ByteRecord::new();
        let mut lines = Vec::new();
        while r.next(&mut rec).unwrap() {
            lines.push(r.line_of(&rec));
        }
        assert_eq!(lines, expected);
    }
}

#[test]
fn an_empty_file_is_an_error() {
    let err = all(Vec::new(), &TextOptions::default()).unwrap_err();
    assert_eq!(err.to_string(), "test.csv: the file is empty");
    assert!(Encoding::parse("ISO-8859-1") == Some(Encoding::Windows1252));
}
