//! The JSON Lines importer: one [`Event`] per line in its serde form; blank lines are ignored.

use std::io::BufRead;
use std::path::PathBuf;

use prescient_core::Event;

use crate::error::{Errors, ImportError};
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
        buf.clear();
        let n = r
            .read_until(b'\n', &mut buf)
            .map_err(|e| ImportError::io(file, e))?;
        if n == 0 {
            break;
        }
        line += 1;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Event>(&buf) {
            Ok(e) => events.push(e),
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
