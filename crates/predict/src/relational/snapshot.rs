//! Versioned binary snapshots of the relational model.

use serde::{Deserialize, Serialize};

use super::RelationalModel;
use super::config::RelationalConfig;
use super::state::{State, mark_learned};

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not a snapshot of this model.
    #[error("not a relational model snapshot")]
    NotASnapshot,
    /// The snapshot was written by another format version.
    #[error("snapshot format version {found}, this build reads version {expected}")]
    Version {
        /// The version found.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// The snapshot is corrupt.
    #[error("corrupt snapshot: {0}")]
    Corrupt(String),
}

/// The snapshot format version.
///
/// Version 2 calibrates forecasts after an entity's first event apart from the others;
/// version 3 also those after a novel event type.
pub const FORMAT_VERSION: u32 = 3;

pub(super) const MAGIC: &[u8; 8] = b"PRESCRM\0";

#[derive(Serialize, Deserialize)]
pub(super) struct Snapshot {
    pub(super) format_version: u32,
    pub(super) config: RelationalConfig,
    pub(super) state: State,
}

impl RelationalModel {
    /// Writes the model (settings and everything learned) in a versioned binary format.
    ///
    /// # Errors
    /// [`SnapshotError::Corrupt`] if serialisation fails.
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let snap = Snapshot {
            format_version: FORMAT_VERSION,
            config: self.cfg.clone(),
            state: self.s.clone(),
        };
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let body = postcard::to_stdvec(&snap).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Restores a model written by [`RelationalModel::snapshot`].
    ///
    /// # Errors
    /// [`SnapshotError`] if the bytes are not a snapshot, are of another format version, or are
    /// corrupt.
    pub fn restore(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
            return Err(SnapshotError::NotASnapshot);
        };
        let (ver, body) = rest
            .split_at_checked(4)
            .ok_or(SnapshotError::NotASnapshot)?;
        let mut v = [0u8; 4];
        v.copy_from_slice(ver);
        let found = u32::from_le_bytes(v);
        if found != FORMAT_VERSION {
            return Err(SnapshotError::Version {
                found,
                expected: FORMAT_VERSION,
            });
        }
        let snap: Snapshot =
            postcard::from_bytes(body).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
        if snap.format_version != FORMAT_VERSION {
            return Err(SnapshotError::Version {
                found: snap.format_version,
                expected: FORMAT_VERSION,
            });
        }
        let mut m = RelationalModel::new(snap.config);
        m.s = snap.state;
        m.type_ids =
            m.s.types
                .iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), i as u16))
                .collect();
        for &(t, _) in &m.s.unigram.next {
            mark_learned(&mut m.learned_types, t);
        }
        m.kind_ids =
            m.s.kinds
                .iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), i as u16))
                .collect();
        Ok(m)
    }
}
