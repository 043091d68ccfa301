//! Published text files read as a stream of records, in bounded memory.
//!
//! Layers, outermost first: transparent gzip/zstd (by magic bytes), character decoding
//! (UTF-8 with or without BOM, Windows-1252/ISO-8859-1, declared or detected), a line-length
//! bound (a 100 MB "line" is an error, not an allocation), and a CSV reader for any
//! single-byte delimiter and quote, CRLF or LF. Every error names the file, and the line
//! and column when there is one.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};

#[cfg(test)]
mod tests;

/// Character encoding of a text file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// BOM or valid UTF-8 in the first 64 KiB means UTF-8; anything else Windows-1252.
    Auto,
    Utf8,
    /// ISO-8859-1 as browsers and most exports mean it (WHATWG maps it to Windows-1252).
    Windows1252,
}

impl Encoding {
    pub fn parse(label: &str) -> Option<Self> {
        match label.trim().to_ascii_lowercase().as_str() {
            "auto" | "detect" => Some(Encoding::Auto),
            "utf-8" | "utf8" => Some(Encoding::Utf8),
            "iso-8859-1" | "latin-1" | "latin1" | "windows-1252" | "cp1252" | "iso-8859-15" => {
                Some(Encoding::Windows1252)
            }
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Auto => "auto",
            Encoding::Utf8 => "utf-8",
            Encoding::Windows1252 => "windows-1252",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TextOptions {
    pub delimiter: u8,
    pub quote: u8,
    /// Quotes group fields; off for line-oriented files (a log line is one field).
    pub quoting: bool,
    /// The first record names the columns.
    pub header: bool,
    pub encoding: Encoding,
    /// Longest accepted physical line, in bytes after decoding.
    pub max_line_bytes: usize,
}

impl Default for TextOptions {
    fn default() -> Self {
        TextOptions {
            delimiter: b',',
            quote: b'"',
            quoting: true,
            header: true,
            encoding: Encoding::Auto,
            max_line_bytes: 1 << 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}: {}{message}", location(*.line, .column.as_deref()))]
pub struct TextError {
    pub file: String,
    pub line: Option<u64>,
    pub column: Option<String>,
    pub message: String,
}

fn location(line: Option<u64>, column: Option<&str>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("line {l}, column {c}: "),
        (Some(l), None) => format!("line {l}: "),
        _ => String::new(),
    }
}

const SNIFF: usize = 64 * 1024;

/// Reads up to `n` bytes (fewer only at end of input).
fn read_prefix(r: &mut dyn Read, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    r.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Undoes gzip or zstd compression, recognised by magic bytes.
fn decompress(input: Box<dyn Read + Send>, file: &str) -> Result<Box<dyn Read + Send>, TextError> {
    let mut br = BufReader::with_capacity(64 * 1024, input);
    let head = br.fill_buf().map_err(|e| io_error(file, None, e))?.to_vec();
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(br)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let d = ruzstd::decoding::StreamingDecoder::new(br).map_err(|e| TextError {
            file: file.into(),
            line: None,
            column: None,
            message: format!("not a readable zstd stream: {e}"),
        })?;
        Ok(Box::new(d))
    } else {
        Ok(Box::new(br))
    }
}

/// Maps an I/O error while reading to a message that says what went wrong.
fn io_error(file: &str, line: Option<u64>, e: io::Error) -> TextError {
    let message = match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            "the compressed stream is truncated (unexpected end of file)".to_string()
        }
        _ => e.to_string(),
    };
    TextError {
        file: file.into(),
        line,
        column: None,
        message,
    }
}

/// Refuses physical lines longer than a bound, and knows which line a byte offset is on.
/// Newline offsets are kept only for the bytes the CSV reader has buffered but not yet
/// consumed, so memory stays bounded whatever the file size.
struct LineGuard<R> {
    inner: R,
    max: usize,
    current: usize,
    offset: u64,
    newlines: RefCell<VecDeque<u64>>,
    passed: Cell<u64>,
}

impl<R> LineGuard<R> {
    /// The 1-based line of the byte at `offset` (a record's start; a CRLF terminator's `\n`
    /// counts as the end of the previous line).
    fn line_at(&self, offset: u64) -> u64 {
        let mut q = self.newlines.borrow_mut();
        while q.front().is_some_and(|&n| n <= offset) {
            q.pop_front();
            self.passed.set(self.passed.get() + 1);
        }
        self.passed.get() + 1
    }
}

impl<R: Read> Read for LineGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut q = self.newlines.borrow_mut();
        let chunk = &buf[..n];
        let mut start = 0;
        let too_long = |passed: u64, pending: usize, max: usize| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "line {} is longer than {max} bytes",
                    passed + pending as u64 + 1
                ),
            )
        };
        for pos in memchr::memchr_iter(b'\n', chunk) {
            if self.current + (pos - start) > self.max {
                return Err(too_long(self.passed.get(), q.len(), self.max));
            }
            self.current = 0;
            q.push_back(self.offset + pos as u64);
            start = pos + 1;
        }
        self.current += n - start;
        if self.current > self.max {
            return Err(too_long(self.passed.get(), q.len(), self.max));
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// A delimited file being read, record by record.
pub struct Records {
    reader: csv::Reader<LineGuard<Box<dyn Read + Send>>>,
    file: String,
    header: Vec<String>,
    encoding: Encoding,
}

impl Records {
    /// Opens a delimited file: decompresses, decodes, reads the header (when there is one).
    /// An empty file is an error: a published file always has at least its header.
    pub fn open(
        input: Box<dyn Read + Send>,
        file: &str,
        opts: &TextOptions,
    ) -> Result<Records, TextError> {
        let mut plain = decompress(input, file)?;
        let prefix = read_prefix(&mut plain, SNIFF).map_err(|e| io_error(file, None, e))?;
        if prefix.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(TextError {
                file: file.into(),
                line: None,
                column: None,
                message: "the file is empty".into(),
            });
        }
        let has_bom = prefix.starts_with(&[0xef, 0xbb, 0xbf]);
        let encoding = match opts.encoding {
            Encoding::Auto if has_bom => Encoding::Utf8,
            Encoding::Auto => match std::str::from_utf8(&prefix) {
                Ok(_) => Encoding::Utf8,
                // Cut inside a character at the end of the sample: still UTF-8.
                Err(e) if e.error_len().is_none() => Encoding::Utf8,
                Err(_) => Encoding::Windows1252,
            },
            other => other,
        };
        let skip = if has_bom && encoding == Encoding::Utf8 {
            3
        } else {
            0
        };
        let rest: Box<dyn Read + Send> = Box::new(io::Cursor::new(prefix).chain(plain));
        let mut rest = rest;
        if skip > 0 {
            io::copy(&mut (&mut rest).take(skip), &mut io::sink())
                .map_err(|e| io_error(file, None, e))?;
        }
        let decoded: Box<dyn Read + Send> = match encoding {
            Encoding::Windows1252 => Box::new(
                encoding_rs_io::DecodeReaderBytesBuilder::new()
                    .encoding(Some(encoding_rs::WINDOWS_1252))
                    .build(rest),
            ),
            _ => rest,
        };
        let guard = LineGuard {
            inner: decoded,
            max: opts.max_line_bytes,
            current: 0,
            offset: 0,
            newlines: RefCell::new(VecDeque::new()),
            passed: Cell::new(0),
        };
        let reader = csv::ReaderBuilder::new()
            .delimiter(opts.delimiter)
            .quote(opts.quote)
            .quoting(opts.quoting)
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(256 * 1024)
            .from_reader(guard);
        let mut records = Records {
            reader,
            file: file.to_string(),
            header: Vec::new(),
            encoding,
        };
        if opts.header {
            let mut rec = csv::ByteRecord::new();
            if !records.next(&mut rec)? {
                return Err(TextError {
                    file: file.into(),
                    line: Some(1),
                    column: None,
                    message: "no header line".into(),
                });
            }
            records.header = records
                .fields(&rec)?
                .iter()
                .map(|h| h.trim().to_string())
                .collect();
        }
        Ok(records)
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    /// Column names from the header (empty without one).
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// The encoding in use (the detected one when the definition said `auto`).
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Reads the next record into `rec`; false at the end of the file.
    pub fn next(&mut self, rec: &mut csv::ByteRecord) -> Result<bool, TextError> {
        match self.reader.read_byte_record(rec) {
            Ok(more) => Ok(more),
            Err(e) => Err(self.error(e)),
        }
    }

    /// The line the record just read starts on (1-based). Call it in reading order.
    pub fn line_of(&self, rec: &csv::ByteRecord) -> u64 {
        let byte = rec.position().map(|p| p.byte()).unwrap_or(0);
        self.reader.get_ref().line_at(byte)
    }

    /// Field `i` of a record as text; invalid UTF-8 is an error naming line and column.
    pub fn field<'r>(
        &self,
        rec: &'r csv::ByteRecord,
        i: usize,
    ) -> Result<Option<&'r str>, TextError> {
        let Some(bytes) = rec.get(i) else {
            return Ok(None);
        };
        std::str::from_utf8(bytes).map(Some).map_err(|e| TextError {
            file: self.file.clone(),
            line: Some(self.line_of(rec)),
            column: Some(self.column_name(i)),
            message: format!(
                "invalid UTF-8 after byte {} of the field (the file is read as {}; declare encoding = \"windows-1252\" for a Latin-1 file)",
                e.valid_up_to(),
                self.encoding.name()
            ),
        })
    }

    /// Every field of a record as text.
    pub fn fields<'r>(&self, rec: &'r csv::ByteRecord) -> Result<Vec<&'r str>, TextError> {
        // One UTF-8 check over the record's bytes (its fields back to back) instead of one
        // per field; a field boundary inside a character, or any invalid byte, falls back
        // to the per-field check, which names the field.
        if let Ok(all) = simdutf8::basic::from_utf8(rec.as_slice()) {
            let mut out = Vec::with_capacity(rec.len());
            let mut whole = true;
            for i in 0..rec.len() {
                let r = rec.range(i).expect("a field of the record");
                if !(all.is_char_boundary(r.start) && all.is_char_boundary(r.end)) {
                    whole = false;
                    break;
                }
                out.push(&all[r]);
            }
            if whole {
                return Ok(out);
            }
        }
        (0..rec.len())
            .map(|i| self.field(rec, i).map(|f| f.unwrap_or("")))
            .collect()
    }

    fn column_name(&self, i: usize) -> String {
        match self.header.get(i) {
            Some(h) => format!("{} ({h})", i + 1),
            None => (i + 1).to_string(),
        }
    }

    fn error(&self, e: csv::Error) -> TextError {
        let line = e
            .position()
            .map(|p| self.reader.get_ref().line_at(p.byte()));
        match e.into_kind() {
            csv::ErrorKind::Io(io) => io_error(&self.file, line, io),
            other => TextError {
                file: self.file.clone(),
                line,
                column: None,
                message: format!("{other:?}"),
            },
        }
    }
}
