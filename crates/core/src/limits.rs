//! The documented limits on what an event may hold, checked where input enters.
//!
//! Every importer and every bus decoder calls [`check_event`] on what it decoded, and turns a
//! [`LimitError`] into an import error or a dead letter with the reason. Past these limits the
//! rest of the system does not have to defend itself: a timestamp is within a few thousand
//! years, so window arithmetic does not saturate; a version leaves room above it, so an
//! invalidation floor cannot be parked at `u64::MAX`; an event's entity list is short enough
//! that per-event work stays small. `docs/events.md` lists the same numbers.

use std::fmt;

use crate::event::Event;
use crate::time::Timestamp;

/// The earliest accepted event time: 1900-01-01T00:00:00Z.
pub const MIN_TIME: Timestamp = Timestamp::from_secs(-2_208_988_800);
/// The latest accepted event time: 9999-12-31T23:59:59Z.
pub const MAX_TIME: Timestamp = Timestamp::from_secs(253_402_300_799);
/// The largest accepted entity version: 2^53 − 1, the largest integer every JSON reader holds
/// exactly.
pub const MAX_VERSION: u64 = (1 << 53) - 1;
/// The most entity references (and, separately, mutations) in one event.
pub const MAX_ENTITIES: usize = 10_000;
/// The most attributes in one event.
pub const MAX_ATTRIBUTES: usize = 256;
/// The longest id, kind, role, event type or attribute name, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;
/// The longest attribute value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The longest line of a line-oriented log (JSON Lines, CSV, ARC), and the largest message a
/// bus decoder accepts, in bytes.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// The largest log that is one document rather than lines (OCEL 2.0 JSON), in bytes after
/// decompression. Such a log is read and parsed whole, so this bounds the memory an import may
/// take; it is well above the size of published OCEL 2.0 logs.
pub const MAX_DOCUMENT_BYTES: u64 = 1 << 30;

/// Which limit an event broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The event's time is outside [`MIN_TIME`]..=[`MAX_TIME`].
    #[error("time {0} is outside the accepted range 1900-01-01 to 9999-12-31")]
    Time(Timestamp),
    /// A mutation's version is above [`MAX_VERSION`].
    #[error("version {0} of {1} is above the largest accepted version {MAX_VERSION}")]
    Version(u64, String),
    /// Too many entities, mutations or attributes.
    #[error("{count} {what} in one event; at most {max} are accepted")]
    Count {
        /// What was counted (`entities`, `mutations`, `attributes`).
        what: &'static str,
        /// How many the event has.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A string is too long.
    #[error("{what} is {len} bytes long; at most {max} are accepted")]
    Length {
        /// Which string (`event type`, `entity id`, ...).
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A record (a line or a message) is too long.
    #[error("record is {0} bytes or longer; at most {MAX_RECORD_BYTES} are accepted")]
    Record(usize),
    /// A required string is empty.
    #[error("{0} is empty")]
    Empty(&'static str),
}

fn name(what: &'static str, s: &str) -> Result<(), LimitError> {
    if s.len() > MAX_NAME_BYTES {
        return Err(LimitError::Length {
            what,
            len: s.len(),
            max: MAX_NAME_BYTES,
        });
    }
    Ok(())
}

fn count(what: &'static str, count: usize, max: usize) -> Result<(), LimitError> {
    if count > max {
        return Err(LimitError::Count { what, count, max });
    }
    Ok(())
}

/// Checks a time against [`MIN_TIME`] and [`MAX_TIME`].
///
/// # Errors
/// [`LimitError::Time`] when it is outside.
pub fn check_time(t: Timestamp) -> Result<(), LimitError> {
    if t < MIN_TIME || t > MAX_TIME {
        return Err(LimitError::Time(t));
    }
    Ok(())
}

/// Checks the length of one record (a line or a message) against [`MAX_RECORD_BYTES`].
///
/// # Errors
/// [`LimitError::Record`] when it is longer.
pub fn check_record(len: usize) -> Result<(), LimitError> {
    if len > MAX_RECORD_BYTES {
        return Err(LimitError::Record(len));
    }
    Ok(())
}

/// Checks every limit of this module on `event`.
///
/// # Errors
/// The first [`LimitError`] found.
pub fn check_event(event: &Event) -> Result<(), LimitError> {
    check_time(event.time)?;
    name("event id", &event.id)?;
    name("event type", &event.event_type)?;
    if event.event_type.is_empty() {
        return Err(LimitError::Empty("event type"));
    }
    count("entities", event.entities.len(), MAX_ENTITIES)?;
    count("mutations", event.mutations.len(), MAX_ENTITIES)?;
    count("attributes", event.attributes.len(), MAX_ATTRIBUTES)?;
    for r in &event.entities {
        name("entity kind", &r.kind)?;
        name("entity id", &r.id)?;
        if let Some(role) = &r.role {
            name("entity role", role)?;
        }
    }
    for m in &event.mutations {
        name("entity kind", &m.kind)?;
        name("entity id", &m.id)?;
        if m.version.0 > MAX_VERSION {
            return Err(LimitError::Version(m.version.0, m.key().to_string()));
        }
    }
    for (k, v) in &event.attributes {
        name("attribute name", k)?;
        if v.len() > MAX_VALUE_BYTES {
            return Err(LimitError::Length {
                what: "attribute value",
                len: v.len(),
                max: MAX_VALUE_BYTES,
            });
        }
    }
    Ok(())
}

/// The limits as a table, for `--help` texts and docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Table;

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "time: 1900-01-01 to 9999-12-31")?;
        writeln!(f, "version: at most {MAX_VERSION}")?;
        writeln!(f, "entities, mutations per event: at most {MAX_ENTITIES}")?;
        writeln!(f, "attributes per event: at most {MAX_ATTRIBUTES}")?;
        writeln!(
            f,
            "id, kind, role, type, attribute name: at most {MAX_NAME_BYTES} bytes"
        )?;
        writeln!(f, "attribute value: at most {MAX_VALUE_BYTES} bytes")?;
        writeln!(f, "line or message: at most {MAX_RECORD_BYTES} bytes")?;
        write!(f, "OCEL 2.0 document: at most {MAX_DOCUMENT_BYTES} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::{EntityRef, Version};
    use crate::event::Mutation;

    fn event() -> Event {
        Event::new("e", "t", Timestamp::from_secs(1_700_000_000))
            .with_entity(EntityRef::new("k", "1"))
    }

    #[test]
    fn an_ordinary_event_passes() {
        assert_eq!(check_event(&event()), Ok(()));
    }

    #[test]
    fn each_limit_is_enforced() {
        let mut e = event();
        e.time = Timestamp::from_millis(i64::MAX);
        assert!(matches!(check_event(&e), Err(LimitError::Time(_))));
        e.time = MAX_TIME;
        assert_eq!(check_event(&e), Ok(()));

        let mut e = event();
        e.mutations.push(Mutation {
            kind: "k".into(),
            id: "1".into(),
            version: Version(u64::MAX),
        });
        assert!(matches!(check_event(&e), Err(LimitError::Version(..))));
        e.mutations[0].version = Version(MAX_VERSION);
        assert_eq!(check_event(&e), Ok(()));

        let mut e = event();
        e.entities = vec![EntityRef::new("k", "1"); MAX_ENTITIES + 1];
        assert!(matches!(
            check_event(&e),
            Err(LimitError::Count {
                what: "entities",
                ..
            })
        ));

        let mut e = event();
        e.event_type = "x".repeat(MAX_NAME_BYTES + 1).into();
        assert!(matches!(check_event(&e), Err(LimitError::Length { .. })));
        e.event_type = "".into();
        assert_eq!(check_event(&e), Err(LimitError::Empty("event type")));

        assert!(check_record(MAX_RECORD_BYTES).is_ok());
        assert!(check_record(MAX_RECORD_BYTES + 1).is_err());
    }
}
