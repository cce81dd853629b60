//! The CSV importer: a header row, one event per record, columns mapped by a [`CsvMapping`].
//!
//! The record reader is a small RFC 4180 parser (quoted fields with `""` escapes and embedded
//! newlines, CRLF or LF line ends) that tracks line numbers and reports unterminated quotes and
//! invalid UTF-8, which general CSV readers do not.

use std::io::BufRead;

use prescient_core::{EntityRef, Event, SmolStr, Timestamp};

use crate::error::{Errors, ImportError};
use crate::time::{EXPECTED, parse_timestamp};
use crate::{CsvMapping, Format, ImportedLog};

/// Reads records from a CSV stream.
struct Records<R> {
    r: R,
    delim: u8,
    /// Physical lines consumed so far.
    line: u64,
    raw: Vec<u8>,
    out: Vec<u8>,
    ends: Vec<usize>,
}

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
}

impl<R: BufRead> Records<R> {
    fn new(r: R, delim: u8) -> Self {
        Records {
            r,
            delim,
            line: 0,
            raw: Vec::with_capacity(1024),
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
            loop {
                self.raw.clear();
                let n = self
                    .r
                    .read_until(b'\n', &mut self.raw)
                    .map_err(RecordError::Io)?;
                if n == 0 {
                    if matches!(state, State::Quoted) {
                        return Err(RecordError::Unterminated(start));
                    }
                    if self.line + 1 == start {
                        return Ok(None);
                    }
                    break;
                }
                self.line += 1;
                let mut ended = false;
                let raw = &self.raw;
                let len = raw.len();
                let mut i = 0;
                while i < len {
                    let b = raw[i];
                    match state {
                        State::Start | State::Unquoted => {
                            if b == b'"' && matches!(state, State::Start) {
                                state = State::Quoted;
                                blank = false;
                            } else if b == self.delim {
                                self.ends.push(self.out.len());
                                state = State::Start;
                                blank = false;
                            } else if b == b'\n'
                                || (b == b'\r' && i + 1 < len && raw[i + 1] == b'\n')
                            {
                                ended = true;
                                break;
                            } else {
                                if !b.is_ascii_whitespace() {
                                    blank = false;
                                }
                                self.out.push(b);
                                state = State::Unquoted;
                            }
                        }
                        State::Quoted => {
                            if b == b'"' {
                                state = State::QuoteInQuoted;
                            } else {
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
                            } else if b == b'\n'
                                || (b == b'\r' && i + 1 < len && raw[i + 1] == b'\n')
                            {
                                ended = true;
                                break;
                            } else {
                                self.out.push(b);
                                state = State::Unquoted;
                            }
                        }
                    }
                    i += 1;
                }
                if ended || !matches!(state, State::Quoted) {
                    break;
                }
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
        };
        match event(file, line, &rec, &plan, events.len()) {
            Ok(e) => events.push(e),
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
            parse_timestamp(v).ok_or_else(|| {
                ImportError::at(
                    file,
                    line,
                    format!(
                        "column {:?}: cannot parse {v:?} as a timestamp ({EXPECTED})",
                        plan.names[i].as_str()
                    ),
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
