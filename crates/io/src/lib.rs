//! Event-log importers: CSV, JSON Lines (Prescient's native form), OCEL 2.0 JSON and ARC block
//! traces, each optionally gzip-compressed, into [`prescient_core::Event`]s.
//!
//! [`read_log`] picks the format (given, or by file extension), reads the file through a
//! byte-counting reader for progress, and returns an [`ImportedLog`]. Bad records either stop the
//! import with an [`ImportError`] that names the file and the line, or, with
//! [`ImportOptions::skip_invalid`], are counted and skipped. No input makes an importer panic.
//! The mapping of each format to events is documented in `docs/events.md`.
//!
//! # Examples
//!
//! ```no_run
//! use prescient_io::{CsvMapping, ImportOptions, read_log};
//!
//! let opts = ImportOptions {
//!     csv: CsvMapping {
//!         case: Some("CaseID".into()),
//!         event_type: vec!["ActivityID".into()],
//!         time: Some("CompleteTimestamp".into()),
//!         ..CsvMapping::default()
//!     },
//!     ..ImportOptions::default()
//! };
//! let log = read_log("helpdesk.csv".as_ref(), &opts, &mut |_, _| {})?;
//! println!("{} events, {} skipped", log.events.len(), log.skipped);
//! # Ok::<(), prescient_io::ImportError>(())
//! ```

use std::fmt;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use prescient_core::Event;

mod arc;
mod csv;
mod error;
mod input;
mod jsonl;
mod lines;
mod ocel;
mod source;
mod time;

pub use error::{ImportError, MAX_KEPT_ERRORS};
pub use ocel::read_ocel2_object_links;
pub use source::FileSource;
pub use time::parse_timestamp;

/// An input format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// JSON Lines, one [`Event`] per line in its serde form (`.jsonl`, `.ndjson`).
    Jsonl,
    /// CSV or TSV with a header row, mapped by a [`CsvMapping`] (`.csv`, `.tsv`).
    Csv,
    /// OCEL 2.0 JSON (`.json`).
    Ocel2,
    /// ARC block traces: `start count ignored request` per line (`.lis`).
    Arc,
}

impl Format {
    /// All formats, in the order of their names.
    pub const ALL: [Format; 4] = [Format::Jsonl, Format::Csv, Format::Ocel2, Format::Arc];

    /// The format's name, as accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Ocel2 => "ocel2",
            Format::Arc => "arc",
        }
    }

    /// The format a file's extension suggests (`.jsonl`/`.ndjson`, `.csv`/`.tsv`, `.json`,
    /// `.lis`, each optionally followed by `.gz`), or `None`.
    pub fn detect(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        let ext = name.rsplit_once('.')?.1;
        match ext {
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "csv" | "tsv" => Some(Format::Csv),
            "json" => Some(Format::Ocel2),
            "lis" => Some(Format::Arc),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that is not one of `jsonl`, `csv`, `ocel2`, `arc`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {0:?}; expected one of: jsonl, csv, ocel2, arc")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" => Ok(Format::Jsonl),
            "csv" | "tsv" => Ok(Format::Csv),
            "ocel2" | "ocel" => Ok(Format::Ocel2),
            "arc" | "lis" => Ok(Format::Arc),
            _ => Err(UnknownFormat(s.to_owned())),
        }
    }
}

/// How CSV columns map to events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CsvMapping {
    /// The case column: an entity with role `case` and the column name as its kind.
    pub case: Option<String>,
    /// The event type columns; several are joined with `+`, skipping empty cells. Required.
    pub event_type: Vec<String>,
    /// The timestamp column; without one, event `i` gets time `i` milliseconds.
    pub time: Option<String>,
    /// Further entity columns; each non-empty cell is an entity with the column name as its kind.
    pub entities: Vec<String>,
    /// The event id column; without one, the id is the record's line number.
    pub id: Option<String>,
    /// The field delimiter; detected from the header line (`,` `;` or tab) when `None`.
    pub delimiter: Option<u8>,
}

/// Options of [`read_log`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// The format; detected from the file name when `None`.
    pub format: Option<Format>,
    /// The column mapping, for CSV.
    pub csv: CsvMapping,
    /// Skip invalid records (counting them) instead of failing on the first one.
    pub skip_invalid: bool,
}

/// The result of an import.
#[derive(Debug)]
pub struct ImportedLog {
    /// The events, in file order.
    pub events: Vec<Event>,
    /// How many records (or OCEL references) were skipped as invalid.
    pub skipped: usize,
    /// The first [`MAX_KEPT_ERRORS`] errors of skipped records.
    pub first_errors: Vec<ImportError>,
    /// The file read.
    pub source: PathBuf,
    /// The format read.
    pub format: Format,
}

/// Reads an event log.
///
/// `progress` is called with the number of (compressed) bytes read so far and the file's size,
/// at the start, every 256 KiB and at the end. Gzip input is detected by its magic bytes.
///
/// # Errors
///
/// An [`ImportError`] when the file cannot be read, the format is unknown, the CSV mapping names
/// a column the file lacks, or (without `skip_invalid`) a record is invalid.
pub fn read_log(
    path: &Path,
    opts: &ImportOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ImportedLog, ImportError> {
    let file = path.display().to_string();
    let format = match opts.format.or_else(|| Format::detect(path)) {
        Some(f) => f,
        None => {
            return Err(ImportError::Format {
                file,
                message: "cannot tell the format from the file name; give one of: jsonl, csv, ocel2, arc (--format)".to_owned(),
            });
        }
    };
    let r = input::open(path, progress)?;
    let source = path.to_path_buf();
    match format {
        Format::Csv => csv::read(&file, r, &opts.csv, opts.skip_invalid, source),
        Format::Jsonl => jsonl::read(&file, r, opts.skip_invalid, source),
        Format::Ocel2 => ocel::read(&file, r, opts.skip_invalid, source),
        Format::Arc => arc::read(&file, r, opts.skip_invalid, source),
    }
}

/// Reads an event log held in memory, in `format`, as [`read_log`] reads a file: `name` names
/// it in errors. Gzip is not detected here.
///
/// # Errors
///
/// As [`read_log`], except for the errors of opening a file.
pub fn read_slice(
    name: &str,
    bytes: &[u8],
    format: Format,
    opts: &ImportOptions,
) -> Result<ImportedLog, ImportError> {
    let r: Box<dyn std::io::BufRead + '_> = Box::new(bytes);
    let source = PathBuf::from(name);
    match format {
        Format::Csv => csv::read(name, r, &opts.csv, opts.skip_invalid, source),
        Format::Jsonl => jsonl::read(name, r, opts.skip_invalid, source),
        Format::Ocel2 => ocel::read(name, r, opts.skip_invalid, source),
        Format::Arc => arc::read(name, r, opts.skip_invalid, source),
    }
}

/// Writes events as JSON Lines, one [`Event`] per line (the form [`Format::Jsonl`] reads).
///
/// # Errors
///
/// Any error of the writer.
pub fn write_jsonl(events: &[Event], w: impl Write) -> Result<(), std::io::Error> {
    let mut w = BufWriter::new(w);
    for e in events {
        serde_json::to_writer(&mut w, e)?;
        w.write_all(b"\n")?;
    }
    w.flush()
}
