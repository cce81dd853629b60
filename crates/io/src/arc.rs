//! The ARC block-trace importer: each line `start count ignored request` is one `read` event
//! referencing the blocks `start..start+count` (kind `block`); event `i` gets time `i` ms.
//! A count above [`MAX_ENTITIES`] and a line longer than [`MAX_RECORD_BYTES`] are invalid lines.

use std::io::BufRead;
use std::path::PathBuf;

use prescient_core::limits::{MAX_ENTITIES, MAX_RECORD_BYTES, check_event};
use prescient_core::{EntityRef, Event, SmolStr, Timestamp};
use smol_str::ToSmolStr;

use crate::error::{Errors, ImportError};
use crate::lines::{Line, read_line, too_long};
use crate::{Format, ImportedLog};

/// The largest block count a line may have: one entity per block.
const MAX_COUNT: u64 = MAX_ENTITIES as u64;

fn parse_line(line: &str, index: usize) -> Result<Event, String> {
    let mut it = line.split_ascii_whitespace();
    let mut field = |name: &str| {
        it.next().ok_or_else(|| {
            format!("missing field {name:?} (expected `start count ignored request`)")
        })
    };
    let start_s = field("start")?;
    let count_s = field("count")?;
    let _ignored = field("ignored")?;
    let request = field("request")?;
    let start: u64 = start_s
        .parse()
        .map_err(|_| format!("start block {start_s:?} is not a non-negative integer"))?;
    let count: u64 = count_s
        .parse()
        .map_err(|_| format!("block count {count_s:?} is not a non-negative integer"))?;
    if count == 0 || count > MAX_COUNT {
        return Err(format!(
            "block count {count} is out of range (1..={MAX_COUNT})"
        ));
    }
    if start.checked_add(count).is_none() {
        return Err(format!("blocks {start}+{count} overflow"));
    }
    if !request.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "request number {request:?} is not a non-negative integer"
        ));
    }
    let time = Timestamp::from_millis(i64::try_from(index).unwrap_or(i64::MAX));
    let mut e = Event::new(request, SmolStr::new_static("read"), time);
    e.entities.reserve_exact(count as usize);
    let kind = SmolStr::new_static("block");
    for b in start..start + count {
        e.entities.push(EntityRef {
            kind: kind.clone(),
            id: b.to_smolstr(),
            role: None,
        });
    }
    check_event(&e).map_err(|limit| limit.to_string())?;
    Ok(e)
}

pub(crate) fn read(
    file: &str,
    mut r: Box<dyn BufRead + '_>,
    skip_invalid: bool,
    source: PathBuf,
) -> Result<ImportedLog, ImportError> {
    let mut errors = Errors::new(skip_invalid);
    let mut events = Vec::new();
    let mut buf = Vec::with_capacity(128);
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
        let parsed = match std::str::from_utf8(&buf) {
            Ok(s) => parse_line(s, events.len()),
            Err(_) => Err("invalid UTF-8".to_owned()),
        };
        match parsed {
            Ok(e) => events.push(e),
            Err(msg) => errors.skip(ImportError::at(file, line, msg))?,
        }
    }
    Ok(ImportedLog {
        events,
        skipped: errors.skipped,
        first_errors: errors.first,
        source,
        format: Format::Arc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_inline_text() {
        for n in [0u64, 7, 10, 230027, u64::MAX] {
            let s = n.to_smolstr();
            assert_eq!(s, n.to_string());
            assert!(!s.is_heap_allocated());
        }
    }
}
