//! [`ImportError`]: what went wrong while reading a log, and where.
//!
//! Every error names the file; errors about the content also name the place (a line number, a
//! record, or a JSON path) where it is known, so that a message reads like
//! `helpdesk.csv:17: column "CompleteTimestamp": cannot parse "2012-13-45 xx" as a timestamp`.

use std::fmt;
use std::io;

/// An error while importing an event log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file could not be opened or read (including a corrupt gzip stream).
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file, as given.
        file: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The content is not valid for the format or the mapping.
    #[error("{file}{}: {message}", Loc(location.as_deref()))]
    Invalid {
        /// The file, as given.
        file: String,
        /// Where in the file: a line number (`17`), `17:5` (line and column), or a JSON path.
        location: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The format could not be determined or is not known.
    #[error("{file}: {message}")]
    Format {
        /// The file, as given.
        file: String,
        /// What is wrong.
        message: String,
    },
}

struct Loc<'a>(Option<&'a str>);

impl fmt::Display for Loc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(l) => write!(f, ":{l}"),
            None => Ok(()),
        }
    }
}

impl ImportError {
    /// The file the error is about, as given.
    pub fn file(&self) -> &str {
        match self {
            ImportError::Io { file, .. }
            | ImportError::Invalid { file, .. }
            | ImportError::Format { file, .. } => file,
        }
    }

    /// Where in the file, if known: a line number, `line:column`, or a JSON path.
    pub fn location(&self) -> Option<&str> {
        match self {
            ImportError::Invalid { location, .. } => location.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn io(file: &str, source: io::Error) -> Self {
        ImportError::Io {
            file: file.to_owned(),
            source,
        }
    }

    pub(crate) fn at(file: &str, location: impl ToString, message: impl Into<String>) -> Self {
        ImportError::Invalid {
            file: file.to_owned(),
            location: Some(location.to_string()),
            message: message.into(),
        }
    }

    pub(crate) fn whole(file: &str, message: impl Into<String>) -> Self {
        ImportError::Invalid {
            file: file.to_owned(),
            location: None,
            message: message.into(),
        }
    }
}

/// Collects errors of skipped records under `skip_invalid`, or stops at the first one.
#[derive(Debug)]
pub(crate) struct Errors {
    skip_invalid: bool,
    pub(crate) skipped: usize,
    pub(crate) first: Vec<ImportError>,
}

/// How many errors an [`crate::ImportedLog`] keeps when invalid records are skipped.
pub const MAX_KEPT_ERRORS: usize = 10;

impl Errors {
    pub(crate) fn new(skip_invalid: bool) -> Self {
        Errors {
            skip_invalid,
            skipped: 0,
            first: Vec::new(),
        }
    }

    /// Records a bad record: `Ok(())` means "skip it and go on", `Err` means "stop".
    pub(crate) fn skip(&mut self, e: ImportError) -> Result<(), ImportError> {
        if !self.skip_invalid {
            return Err(e);
        }
        self.skipped += 1;
        if self.first.len() < MAX_KEPT_ERRORS {
            self.first.push(e);
        }
        Ok(())
    }
}
