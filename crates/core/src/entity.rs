//! Entities: what the cache holds and the store serves.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

/// The identity of a data entity: its kind (an object type or a column name) and its id.
///
/// Ids are namespaced by kind: `orders:o-1` and `items:o-1` are different entities.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntityKey {
    /// The entity's kind, e.g. `orders`, `case`, `block`.
    pub kind: SmolStr,
    /// The entity's id within its kind.
    pub id: SmolStr,
}

impl EntityKey {
    /// A key from a kind and an id.
    pub fn new(kind: impl Into<SmolStr>, id: impl Into<SmolStr>) -> Self {
        EntityKey {
            kind: kind.into(),
            id: id.into(),
        }
    }
}

impl fmt::Display for EntityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

impl fmt::Debug for EntityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

/// A reference from an event to an entity, with an optional role or qualifier
/// (`customer`, `item`, `resource`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntityRef {
    /// The entity's kind.
    pub kind: SmolStr,
    /// The entity's id within its kind.
    pub id: SmolStr,
    /// The role the entity plays in the event, if the log says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<SmolStr>,
}

impl EntityRef {
    /// A reference without a role.
    pub fn new(kind: impl Into<SmolStr>, id: impl Into<SmolStr>) -> Self {
        EntityRef {
            kind: kind.into(),
            id: id.into(),
            role: None,
        }
    }

    /// The same reference with a role.
    pub fn with_role(mut self, role: impl Into<SmolStr>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// The entity's key.
    pub fn key(&self) -> EntityKey {
        EntityKey {
            kind: self.kind.clone(),
            id: self.id.clone(),
        }
    }
}

/// A version of an entity. Versions of one entity only grow; a larger version is newer.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Version(pub u64);

impl Version {
    /// The version before any write.
    pub const ZERO: Version = Version(0);

    /// The next version.
    pub fn next(self) -> Version {
        Version(self.0.saturating_add(1))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// One version of an entity's data, as the store returns it and the cache holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The version this data belongs to.
    pub version: Version,
    /// The entity's data, opaque to Prescient.
    pub data: Bytes,
}

impl Entry {
    /// An entry from a version and data.
    pub fn new(version: Version, data: impl Into<Bytes>) -> Self {
        Entry {
            version,
            data: data.into(),
        }
    }
}
