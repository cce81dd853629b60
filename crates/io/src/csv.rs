//! The CSV importer: a header row, one event per record, columns mapped by a [`CsvMapping`].
//!
//! The record reader is a small RFC 4180 parser (quoted fields with `""` escapes and embedded
//! newlines, CRLF or LF line ends) that tracks line numbers and reports unterminated quotes and
//! invalid UTF-8, which general CSV readers do not. A record longer than [`MAX_RECORD_BYTES`]
//! is an invalid record, parsed to its end without being kept; each event is checked against
//! the limits of [`prescient_core::limits`], and its time against their range.

use std::io::BufRead;

use prescient_core::limits::{MAX_RECORD_BYTES, check_event};
use prescient_core::{EntityRef, Event, SmolStr, Timestamp};

use crate::error::{Errors, ImportError};
use crate::lines::too_long;
use crate::time::parse_checked;
use crate::{CsvMapping, Format, ImportedLog};

/// Reads records from a CSV stream, straight from the reader's buffer: a record is never read
/// as a whole raw line first, so one longer than [`MAX_RECORD_BYTES`] is parsed to its end (the
/// quoting decides where that is) without its fields being kept.
struct Records<R> {
    r: R,
    delim: u8,
    /// Physical lines consumed so far.
    line: u64,
    out: Vec<u8>,
    ends: Vec<usize>,
}

#[derive(Clone, Copy)]
enum State {
    Start,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

enum RecordError {
    Io(std::io::Error),
    /// An unterminated quote; the record started at this line.
    Unterminated(u64),
    /// The record starting at this line (and spanning this many lines) is longer than
    /// [`MAX_RECORD_BYTES`]; it was consumed and its fields dropped.
    TooLong {
        start: u64,
        lines: u64,
        len: u64,
    },
}

impl<R: BufRead> Records<R> {
    fn new(r: R, delim: u8) -> Self {
        Records {
            r,
            delim,
            line: 0,
            out: Vec::with_capacity(1024),
            ends: Vec::with_capacity(32),
        }
    }

    /// Reads the next non-blank record; returns the line it starts on, or `None` at the end.
    fn next(&mut self) -> Result<Option<u64>, RecordError> {
        loop {
            self.out.clear();
            self.ends.clear();
            let start = self.line + 1;
            let mut state = State::Start;
            let mut blank = true;
            // Bytes of the record consumed so far, and whether the last byte kept is a `\r`
            // outside quotes (dropped when a `\n` follows: a CRLF line end).
            let mut len: u64 = 0;
            let mut cr = false;
            let mut any = false;
            let mut ended = false;
            while !ended {
                let avail = match self.r.fill_buf() {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(RecordError::Io(e)),
                };
                if avail.is_empty() {
                    break;
                }
                any = true;
                let mut used = 0;
                for &b in avail {
                    used += 1;
                    match state {
                        State::Start | State::Unquoted => {
                            if b == b'"' && matches!(state, State::Start) {
                                state = State::Quoted;
                                blank = false;
                                cr = false;
                            } else if b == self.delim {
                                self.ends.push(self.out.len());
                                state = State::Start;
                                blank = false;
                                cr = false;
                            } else if b == b'\n' {
                                if cr {
                                    self.out.pop();
                                }
                                ended = true;
                                break;
                            } else {
                                if !b.is_ascii_whitespace() {
                                    blank = false;
                                }
                                self.out.push(b);
                                cr = b == b'\r';
                                state = State::Unquoted;
                            }
                        }
                        State::Quoted => {
                            if b == b'"' {
                                state = State::QuoteInQuoted;
                            } else {
                                if b == b'\n' {
                                    self.line += 1;
                                }
                                self.out.push(b);
                            }
                        }
                        State::QuoteInQuoted => {
                            if b == b'"' {
                                self.out.push(b'"');
                                state = State::Quoted;
                            } else if b == self.delim {
                                self.ends.push(self.out.len());
                                state = State::Start;
                                cr = false;
                            } else if b == b'\n' {
                                ended = true;
                                break;
                            } else {
                                self.out.push(b);
                                cr = b == b'\r';
                                state = State::Unquoted;
                            }
                        }
                    }
                }
                len += used as u64;
                self.r.consume(used);
                if self.out.len() > MAX_RECORD_BYTES {
                    // Too long already: keep parsing to the record's end, not keeping its
                    // content (`len` still counts it).
                    self.out.clear();
                    self.ends.clear();
                }
            }
            if !any {
                return Ok(None);
            }
            // The line that ends the record (or the last one, without a final `\n`).
            self.line += 1;
            if !ended && matches!(state, State::Quoted) {
                return Err(RecordError::Unterminated(start));
            }
            let content = len - u64::from(ended) - u64::from(cr && ended);
            if content > MAX_RECORD_BYTES as u64 {
                return Err(RecordError::TooLong {
                    start,
                    lines: self.line + 1 - start,
                    len: content,
                });
            }
            self.ends.push(self.out.len());
            if blank && self.ends.len() == 1 {
                continue;
            }
            return Ok(Some(start));
        }
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.out[start..self.ends[i]]
    }
}

/// The message of a record over [`MAX_RECORD_BYTES`]: as for a line when it is one.
fn too_long_record(lines: u64, len: u64) -> String {
    if lines <= 1 {
        too_long(len)
    } else {
        format!(
            "record of {lines} lines is {len} bytes long, longer than 1 MiB ({MAX_RECORD_BYTES} bytes)"
        )
    }
}

/// Picks the delimiter among `,` `;` and tab: the most frequent outside quotes (`,` on ties).
pub(crate) fn detect_delimiter(header: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in header {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => break,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let cands = [b',', b';', b'\t'];
    let mut best = 0;
    for i in 1..3 {
        if counts[i] > counts[best] {
            best = i;
        }
    }
    cands[best]
}

/// Columns resolved from the header.
struct Plan {
    names: Vec<SmolStr>,
    case: Option<usize>,
    types: Vec<usize>,
    time: Option<usize>,
    id: Option<usize>,
    entities: Vec<usize>,
    /// Columns that go to attributes.
    attrs: Vec<usize>,
}

fn resolve(file: &str, names: &[SmolStr], m: &CsvMapping) -> Result<Plan, ImportError> {
    let find = |col: &str| -> Result<usize, ImportError> {
        names.iter().position(|n| n == col).ok_or_else(|| {
            let list: Vec<&str> = names.iter().map(SmolStr::as_str).collect();
            ImportError::whole(
                file,
                format!("no column named {col:?}; columns are: {}", list.join(", ")),
            )
        })
    };
    if m.event_type.is_empty() {
        let list: Vec<&str> = names.iter().map(SmolStr::as_str).collect();
        return Err(ImportError::whole(
            file,
            format!(
                "no event type column given (--type); columns are: {}",
                list.join(", ")
            ),
        ));
    }
    let case = m.case.as_deref().map(find).transpose()?;
    let mut types = Vec::new();
    for c in &m.event_type {
        let i = find(c)?;
        if !types.contains(&i) {
            types.push(i);
        }
    }
    let time = m.time.as_deref().map(find).transpose()?;
    let id = m.id.as_deref().map(find).transpose()?;
    let mut entities = Vec::new();
    for c in &m.entities {
        let i = find(c)?;
        if Some(i) != case && !entities.contains(&i) {
            entities.push(i);
        }
    }
    let attrs = (0..names.len())
        .filter(|i| {
            Some(*i) != case
                && Some(*i) != time
                && Some(*i) != id
                && !types.contains(i)
                && !entities.contains(i)
        })
        .collect();
    Ok(Plan {
        names: names.to_vec(),
        case,
        types,
        time,
        id,
        entities,
        attrs,
    })
}

fn text<'a>(file: &str, line: u64, name: &str, bytes: &'a [u8]) -> Result<&'a str, ImportError> {
    std::str::from_utf8(bytes)
        .map_err(|e| ImportError::at(file, line, format!("column {name:?}: invalid UTF-8 ({e})")))
}

/// Reads a CSV log from an opened stream.
pub(crate) fn read(
    file: &str,
    mut r: Box<dyn BufRead + '_>,
    m: &CsvMapping,
    skip_invalid: bool,
    source: std::path::PathBuf,
) -> Result<ImportedLog, ImportError> {
    let delim = match m.delimiter {
        Some(d) => d,
        None => {
            let head = r.fill_buf().map_err(|e| ImportError::io(file, e))?;
            detect_delimiter(head)
        }
    };
    let mut rec = Records::new(r, delim);
    let header_line = match rec.next() {
        Ok(Some(l)) => l,
        Ok(None) => return Err(ImportError::whole(file, "empty file: no header row")),
        Err(RecordError::Io(e)) => return Err(ImportError::io(file, e)),
        Err(RecordError::Unterminated(l)) => {
            return Err(ImportError::at(
                file,
                l,
                "unterminated quote in the header row",
            ));
        }
        Err(RecordError::TooLong { start, lines, len }) => {
            return Err(ImportError::at(
                file,
                start,
                format!("header row: {}", too_long_record(lines, len)),
            ));
        }
    };
    let mut names = Vec::with_capacity(rec.len());
    for i in 0..rec.len() {
        let mut f = rec.field(i);
        if i == 0 {
            f = f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f);
        }
        let s = std::str::from_utf8(f).map_err(|e| {
            ImportError::at(file, header_line, format!("header: invalid UTF-8 ({e})"))
        })?;
        names.push(SmolStr::new(s.trim()));
    }
    let plan = resolve(file, &names, m)?;
    let mut errors = Errors::new(skip_invalid);
    let mut events = Vec::new();
    loop {
        let line = match rec.next() {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(RecordError::Io(e)) => return Err(ImportError::io(file, e)),
            Err(RecordError::Unterminated(l)) => {
                let e = ImportError::at(
                    file,
                    l,
                    "unterminated quote: the quoted field runs to the end of the file",
                );
                errors.skip(e)?;
                break;
            }
            Err(RecordError::TooLong { start, lines, len }) => {
                errors.skip(ImportError::at(file, start, too_long_record(lines, len)))?;
                continue;
            }
        };
        match event(file, line, &rec, &plan, events.len()) {
            Ok(e) => match check_event(&e) {
                Ok(()) => events.push(e),
                Err(limit) => errors.skip(ImportError::at(file, line, limit.to_string()))?,
            },
            Err(e) => errors.skip(e)?,
        }
    }
    Ok(ImportedLog {
        events,
        skipped: errors.skipped,
        first_errors: errors.first,
        source,
        format: Format::Csv,
    })
}

fn event<R: BufRead>(
    file: &str,
    line: u64,
    rec: &Records<R>,
    plan: &Plan,
    index: usize,
) -> Result<Event, ImportError> {
    let n = plan.names.len();
    if rec.len() != n {
        return Err(ImportError::at(
            file,
            line,
            format!(
                "expected {n} fields (as in the header), found {}",
                rec.len()
            ),
        ));
    }
    let col = |i: usize| text(file, line, &plan.names[i], rec.field(i));
    let mut ty = String::new();
    for &i in &plan.types {
        let v = col(i)?.trim();
        if v.is_empty() {
            continue;
        }
        if !ty.is_empty() {
            ty.push('+');
        }
        ty.push_str(v);
    }
    if ty.is_empty() {
        let cols: Vec<String> = plan
            .types
            .iter()
            .map(|&i| format!("{:?}", plan.names[i].as_str()))
            .collect();
        return Err(ImportError::at(
            file,
            line,
            format!("missing event type: column {} is empty", cols.join(" + ")),
        ));
    }
    let time = match plan.time {
        Some(i) => {
            let v = col(i)?;
            parse_checked(v).map_err(|msg| {
                ImportError::at(
                    file,
                    line,
                    format!("column {:?}: {msg}", plan.names[i].as_str()),
                )
            })?
        }
        None => Timestamp::from_millis(i64::try_from(index).unwrap_or(i64::MAX)),
    };
    let id = match plan.id {
        Some(i) => SmolStr::new(col(i)?),
        None => SmolStr::new(line.to_string()),
    };
    let mut event = Event::new(id, ty, time);
    event.entities.reserve(plan.entities.len() + 1);
    if let Some(i) = plan.case {
        let v = col(i)?;
        if !v.is_empty() {
            event.entities.push(
                EntityRef::new(plan.names[i].clone(), v).with_role(SmolStr::new_static("case")),
            );
        }
    }
    for &i in &plan.entities {
        let v = col(i)?;
        if !v.is_empty() {
            event
                .entities
                .push(EntityRef::new(plan.names[i].clone(), v));
        }
    }
    for &i in &plan.attrs {
        let v = col(i)?;
        if !v.is_empty() {
            event
                .attributes
                .push((plan.names[i].clone(), SmolStr::new(v)));
        }
    }
    Ok(event)
}
