//! The OCEL 2.0 JSON importer.
//!
//! The file's `objects` give each object's type. Each event's `relationships` (`objectId`,
//! `qualifier`) become entity references of kind = the object's type, id = the object id and
//! role = the qualifier. Event `attributes` become [`Event::attributes`] (values as text). Events
//! keep the file's order. The objects' own `relationships` (object-to-object links) are read by
//! [`read_ocel2_object_links`].

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use prescient_core::{EntityKey, EntityRef, Event, SmolStr};
use serde::Deserialize;

use crate::error::{Errors, ImportError};
use crate::time::{EXPECTED, parse_timestamp};
use crate::{Format, ImportedLog, input};

#[derive(Deserialize)]
struct Log {
    #[serde(default)]
    events: Vec<OcelEvent>,
    #[serde(default)]
    objects: Vec<Object>,
}

#[derive(Deserialize)]
struct LinksOnly {
    #[serde(default)]
    objects: Vec<Object>,
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
    mut r: Box<dyn BufRead + '_>,
) -> Result<T, ImportError> {
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes)
        .map_err(|e| ImportError::io(file, e))?;
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
    let types = object_types(&log.objects);
    let mut errors = Errors::new(skip_invalid);
    let mut events = Vec::with_capacity(log.events.len());
    'events: for (i, ev) in log.events.iter().enumerate() {
        let at = || format!("events[{i}]");
        let Some(time) = parse_timestamp(&ev.time) else {
            errors.skip(ImportError::at(
                file,
                at(),
                format!(
                    "event {:?}: cannot parse time {:?} as a timestamp ({EXPECTED})",
                    ev.id, ev.time
                ),
            ))?;
            continue 'events;
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
    let types = object_types(&log.objects);
    let mut out = Vec::new();
    for (i, o) in log.objects.iter().enumerate() {
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
