//! The JSON Lines importer: one [`Event`] per line in its serde form; blank lines are ignored.
//! A line longer than [`MAX_RECORD_BYTES`] is skipped unread, and each event is checked against
//! the limits of [`prescient_core::limits`].

use std::io::BufRead;
use std::path::PathBuf;

use prescient_core::Event;
use prescient_core::limits::{MAX_RECORD_BYTES, check_event};

use crate::error::{Errors, ImportError};
use crate::lines::{Line, read_line, too_long};
use crate::{Format, ImportedLog};

pub(crate) fn read(
    file: &str,
    mut r: Box<dyn BufRead + '_>,
    skip_invalid: bool,
    source: PathBuf,
) -> Result<ImportedLog, ImportError> {
    let mut errors = Errors::new(skip_invalid);
    let mut events = Vec::new();
    let mut buf = Vec::with_capacity(1024);
    let mut line = 0u64;
    loop {
        let read =
            read_line(&mut r, &mut buf, MAX_RECORD_BYTES).map_err(|e| ImportError::io(file, e))?;
        line += 1;
        match read {
            Line::End => break,
            Line::TooLong(len) => {
                errors.skip(ImportError::at(file, line, too_long(len)))?;
                continue;
            }
            Line::Read => {}
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Event>(&buf) {
            Ok(e) => match check_event(&e) {
                Ok(()) => events.push(e),
                Err(limit) => errors.skip(ImportError::at(
                    file,
                    line,
                    format!("event {:?}: {limit}", e.id),
                ))?,
            },
            Err(e) => {
                // The line is already named; serde's position within it is noise.
                let full = e.to_string();
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                let msg = full.strip_suffix(&suffix).unwrap_or(&full);
                errors.skip(ImportError::at(
                    file,
                    line,
                    format!("not a valid event: {msg}"),
                ))?;
            }
        }
    }
    Ok(ImportedLog {
        events,
        skipped: errors.skipped,
        first_errors: errors.first,
        source,
        format: Format::Jsonl,
    })
}
