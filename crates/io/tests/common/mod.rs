//! Fixtures for the importer tests: files written into a temporary directory.

#![allow(dead_code)] // each test binary uses a different subset
#![allow(clippy::unwrap_used)] // fixture helpers fail loudly on setup errors

use std::io::Write;
use std::path::{Path, PathBuf};

use prescient_io::{CsvMapping, Format, ImportError, ImportOptions, ImportedLog, read_log};

/// A temporary directory holding fixture files.
pub struct Dir(pub tempfile::TempDir);

impl Dir {
    pub fn new() -> Self {
        Dir(tempfile::tempdir().unwrap())
    }

    /// Writes `content` to `name` and returns the path.
    pub fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.0.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    /// Writes `content` gzip-compressed to `name` and returns the path.
    pub fn gz(&self, name: &str, content: &[u8]) -> PathBuf {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(content).unwrap();
        self.file(name, &enc.finish().unwrap())
    }
}

/// CSV options: case column, type columns, time column, entity columns.
pub fn csv_opts(case: &str, ty: &[&str], time: Option<&str>, entities: &[&str]) -> ImportOptions {
    ImportOptions {
        format: None,
        csv: CsvMapping {
            case: (!case.is_empty()).then(|| case.to_owned()),
            event_type: ty.iter().map(|s| (*s).to_owned()).collect(),
            time: time.map(str::to_owned),
            entities: entities.iter().map(|s| (*s).to_owned()).collect(),
            id: None,
            delimiter: None,
        },
        skip_invalid: false,
    }
}

pub fn format(f: Format) -> ImportOptions {
    ImportOptions {
        format: Some(f),
        ..ImportOptions::default()
    }
}

pub fn read(path: &Path, opts: &ImportOptions) -> Result<ImportedLog, ImportError> {
    read_log(path, opts, &mut |_, _| {})
}

/// The error message of a failing import.
pub fn error(path: &Path, opts: &ImportOptions) -> String {
    match read(path, opts) {
        Ok(log) => panic!("expected an error, got {} events", log.events.len()),
        Err(e) => e.to_string(),
    }
}

/// Asserts that `msg` contains every one of `parts`.
pub fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "{msg:?} should mention {p:?}");
    }
}
