//! The OCEL 2.0 JSON importer.
//!
//! The file's `objects` give each object's type. Each event's `relationships` (`objectId`,
//! `qualifier`) become entity references of kind = the object's type, id = the object id and
//! role = the qualifier. Event `attributes` become [`Event::attributes`] (values as text). Events
//! keep the file's order. The objects' own `relationships` (object-to-object links) are read by
//! [`read_ocel2_object_links`].
//!
//! The file is one JSON document, read whole: one larger than [`MAX_DOCUMENT_BYTES`] (after
//! decompression) is refused. It must be an object with `events` and `objects` arrays; any
//! other JSON is an error that says what is missing, not an empty log. Each event is checked
//! against the limits of [`prescient_core::limits`].

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use prescient_core::limits::{MAX_DOCUMENT_BYTES, check_event};
use prescient_core::{EntityKey, EntityRef, Event, SmolStr};
use serde::Deserialize;

use crate::error::{Errors, ImportError};
use crate::time::parse_checked;
use crate::{Format, ImportedLog, input};

/// The log; a missing field is `None`, so that the error can name it.
#[derive(Deserialize)]
struct Log {
    events: Option<Vec<OcelEvent>>,
    objects: Option<Vec<Object>>,
}

#[derive(Deserialize)]
struct LinksOnly {
    events: Option<serde::de::IgnoredAny>,
    objects: Option<Vec<Object>>,
}

/// The error of a document that is JSON but not an OCEL 2.0 log: which field is missing.
fn missing(file: &str, events: bool, objects: bool) -> Result<(), ImportError> {
    let what = match (events, objects) {
        (true, true) => return Ok(()),
        (false, false) => "no \"events\" and no \"objects\" field",
        (false, true) => "no \"events\" field",
        (true, false) => "no \"objects\" field",
    };
    Err(ImportError::whole(
        file,
        format!("not an OCEL 2.0 log: {what}"),
    ))
}

/// What a JSON document starts with, for the error of one that is not an object.
fn kind_of(first: u8) -> &'static str {
    match first {
        b'[' => "an array",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        b'-' | b'0'..=b'9' => "a number",
        _ => "something else",
    }
}

#[derive(Deserialize)]
struct OcelEvent {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    time: String,
    #[serde(default)]
    attributes: Vec<Attribute>,
    #[serde(default)]
    relationships: Vec<Relationship>,
}

#[derive(Deserialize)]
struct Object {
    id: String,
    #[serde(rename = "type")]
    object_type: String,
    #[serde(default)]
    relationships: Vec<Relationship>,
}

#[derive(Deserialize)]
struct Attribute {
    name: String,
    #[serde(default)]
    value: serde_json::Value,
}

#[derive(Deserialize)]
struct Relationship {
    #[serde(rename = "objectId")]
    object_id: String,
    #[serde(default)]
    qualifier: String,
}

/// Reads the whole stream and parses it as `T`, with errors that name the line and column.
fn parse<T: for<'de> Deserialize<'de>>(
    file: &str,
    r: Box<dyn BufRead + '_>,
) -> Result<T, ImportError> {
    parse_capped(file, r, MAX_DOCUMENT_BYTES)
}

/// [`parse`] with the size cap given.
fn parse_capped<T: for<'de> Deserialize<'de>>(
    file: &str,
    mut r: Box<dyn BufRead + '_>,
    max: u64,
) -> Result<T, ImportError> {
    let mut bytes = Vec::new();
    r.by_ref()
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ImportError::io(file, e))?;
    if bytes.len() as u64 > max {
        return Err(ImportError::whole(
            file,
            format!(
                "an OCEL 2.0 log is read whole, and this one is larger than {max} bytes (the limit is 1 GiB); convert it to JSON Lines, which is read line by line"
            ),
        ));
    }
    if let Some(&first) = bytes.iter().find(|b| !b.is_ascii_whitespace())
        && first != b'{'
    {
        return Err(ImportError::whole(
            file,
            format!(
                "not an OCEL 2.0 log: expected a JSON object with \"events\" and \"objects\", found {}",
                kind_of(first)
            ),
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let msg = full.strip_suffix(&suffix).unwrap_or(&full);
        ImportError::at(
            file,
            format!("{}:{}", e.line(), e.column()),
            format!("not valid OCEL 2.0 JSON: {msg}"),
        )
    })
}

/// Object id → object type, with each type's name allocated once.
fn object_types(objects: &[Object]) -> HashMap<&str, SmolStr> {
    let mut kinds: HashMap<&str, SmolStr> = HashMap::new();
    let mut out = HashMap::with_capacity(objects.len());
    for o in objects {
        let kind = kinds
            .entry(o.object_type.as_str())
            .or_insert_with(|| SmolStr::new(&o.object_type))
            .clone();
        out.insert(o.id.as_str(), kind);
    }
    out
}

fn value_text(v: &serde_json::Value) -> Option<SmolStr> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(SmolStr::new(s)),
        other => Some(SmolStr::new(other.to_string())),
    }
}

pub(crate) fn read(
    file: &str,
    r: Box<dyn BufRead + '_>,
    skip_invalid: bool,
    source: PathBuf,
) -> Result<ImportedLog, ImportError> {
    let log: Log = parse(file, r)?;
    missing(file, log.events.is_some(), log.objects.is_some())?;
    let log_events = log.events.unwrap_or_default();
    let log_objects = log.objects.unwrap_or_default();
    let types = object_types(&log_objects);
    let mut errors = Errors::new(skip_invalid);
    let mut events = Vec::with_capacity(log_events.len());
    'events: for (i, ev) in log_events.iter().enumerate() {
        let at = || format!("events[{i}]");
        let time = match parse_checked(&ev.time) {
            Ok(t) => t,
            Err(msg) => {
                errors.skip(ImportError::at(
                    file,
                    at(),
                    format!("event {:?}: {msg}", ev.id),
                ))?;
                continue 'events;
            }
        };
        let mut e = Event::new(ev.id.as_str(), ev.event_type.as_str(), time);
        e.entities.reserve_exact(ev.relationships.len());
        for (j, rel) in ev.relationships.iter().enumerate() {
            match types.get(rel.object_id.as_str()) {
                Some(kind) => e.entities.push(EntityRef {
                    kind: kind.clone(),
                    id: SmolStr::new(&rel.object_id),
                    role: (!rel.qualifier.is_empty()).then(|| SmolStr::new(&rel.qualifier)),
                }),
                None => errors.skip(ImportError::at(
                    file,
                    format!("events[{i}].relationships[{j}]"),
                    format!(
                        "event {:?}: object {:?} is not among the file's objects",
                        ev.id, rel.object_id
                    ),
                ))?,
            }
        }
        for a in &ev.attributes {
            if let Some(v) = value_text(&a.value) {
                e.attributes.push((SmolStr::new(&a.name), v));
            }
        }
        if let Err(limit) = check_event(&e) {
            errors.skip(ImportError::at(
                file,
                at(),
                format!("event {:?}: {limit}", ev.id),
            ))?;
            continue 'events;
        }
        events.push(e);
    }
    Ok(ImportedLog {
        events,
        skipped: errors.skipped,
        first_errors: errors.first,
        source,
        format: Format::Ocel2,
    })
}

/// Reads the objects' object-to-object relationships of an OCEL 2.0 JSON file (optionally
/// gzip-compressed): `(from, to, qualifier)`, keys with the object type as kind, in file order.
///
/// # Errors
///
/// An [`ImportError`] when the file cannot be read, is not OCEL 2.0 JSON, or a relationship
/// names an object that the file does not list.
pub fn read_ocel2_object_links(
    path: &Path,
) -> Result<Vec<(EntityKey, EntityKey, String)>, ImportError> {
    let file = path.display().to_string();
    let mut quiet = |_, _| {};
    let r = input::open(path, &mut quiet)?;
    let log: LinksOnly = parse(&file, r)?;
    missing(&file, log.events.is_some(), log.objects.is_some())?;
    let objects = log.objects.unwrap_or_default();
    let types = object_types(&objects);
    let mut out = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        let Some(from_kind) = types.get(o.id.as_str()) else {
            continue;
        };
        for (j, rel) in o.relationships.iter().enumerate() {
            let Some(to_kind) = types.get(rel.object_id.as_str()) else {
                return Err(ImportError::at(
                    &file,
                    format!("objects[{i}].relationships[{j}]"),
                    format!(
                        "object {:?}: related object {:?} is not among the file's objects",
                        o.id, rel.object_id
                    ),
                ));
            };
            out.push((
                EntityKey::new(from_kind.clone(), o.id.as_str()),
                EntityKey::new(to_kind.clone(), rel.object_id.as_str()),
                rel.qualifier.clone(),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &'static str, max: u64) -> Result<Log, ImportError> {
        parse_capped("om.json", Box::new(text.as_bytes()), max)
    }

    #[test]
    fn a_document_over_the_cap_is_refused_unread() {
        let doc = r#"{"events":[],"objects":[]}"#;
        let len = doc.len() as u64;
        assert!(parsed(doc, len).is_ok());
        let msg = parsed(doc, len - 1).err().map(|e| e.to_string());
        let msg = msg.unwrap_or_default();
        assert!(
            msg.starts_with("om.json: an OCEL 2.0 log is read whole"),
            "{msg}"
        );
        assert!(msg.contains("1 GiB"), "{msg}");
    }
}
