//! The OCEL 2.0 JSON importer (placeholder until the full importer lands).

use std::io::BufRead;
use std::path::{Path, PathBuf};

use prescient_core::EntityKey;

use crate::ImportedLog;
use crate::error::ImportError;

pub(crate) fn read(
    file: &str,
    _r: Box<dyn BufRead + '_>,
    _skip_invalid: bool,
    _source: PathBuf,
) -> Result<ImportedLog, ImportError> {
    Err(ImportError::whole(
        file,
        "OCEL 2.0 import is not implemented yet",
    ))
}

/// The objects' object-to-object relationships: `(from, to, qualifier)`.
///
/// # Errors
///
/// Always, for now: not implemented yet.
pub fn read_ocel2_object_links(
    path: &Path,
) -> Result<Vec<(EntityKey, EntityKey, String)>, ImportError> {
    Err(ImportError::whole(
        &path.display().to_string(),
        "OCEL 2.0 import is not implemented yet",
    ))
}
