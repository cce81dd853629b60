//! The embedded store: [`SqliteStore`], SQLite through rusqlite (bundled, no system library).
//!
//! # Schema
//! By default every entity is a row of one table:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS prescient_entities (
//!     kind    TEXT    NOT NULL,
//!     id      TEXT    NOT NULL,
//!     version INTEGER NOT NULL,
//!     data    BLOB    NOT NULL,
//!     PRIMARY KEY (kind, id)
//! );
//! ```
//!
//! A kind can instead be read from the user's own table with a configured query. It takes one
//! parameter, `?1`, a JSON array of ids, and returns the columns `id`, `version` and `data`:
//!
//! ```sql
//! SELECT order_id AS id, row_version AS version, payload AS data
//! FROM orders WHERE order_id IN (SELECT value FROM json_each(?1))
//! ```
//!
//! Loads of one kind are one statement, whatever the batch size. SQLite calls are blocking: the
//! async [`Store`] methods run them on tokio's blocking pool; [`SqliteStore::load_batch_sync`]
//! is for callers that are not async (the replay simulator).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use prescient_core::store::StoreWriter;
use prescient_core::{EntityKey, Entry, SmolStr, Store, StoreError, Version};
use rusqlite::{Connection, OptionalExtension, params};

/// The default table.
pub const DEFAULT_TABLE: &str = "prescient_entities";

/// Errors opening or preparing the store.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    /// SQLite refused.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A configured query is unusable.
    #[error("query for kind {kind:?}: {reason}")]
    BadQuery {
        /// The entity kind.
        kind: String,
        /// What is wrong.
        reason: String,
    },
}

/// An entity store in a SQLite file (or in memory).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    queries: Arc<HashMap<String, String>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and its default table.
    ///
    /// # Errors
    /// [`SqliteError`] if the file cannot be opened or the schema cannot be created.
    pub fn open(path: &Path) -> Result<Self, SqliteError> {
        Self::from_connection(Connection::open(path)?)
    }

    /// An in-memory database (tests, demos).
    ///
    /// # Errors
    /// [`SqliteError`] if SQLite fails.
    pub fn in_memory() -> Result<Self, SqliteError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(conn: Connection) -> Result<Self, SqliteError> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS prescient_entities (
                 kind TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, data BLOB NOT NULL,
                 PRIMARY KEY (kind, id)) WITHOUT ROWID;",
        )?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            queries: Arc::new(HashMap::new()),
        })
    }

    /// Reads `kind` with `sql` instead of the default table. The query is checked now.
    ///
    /// # Errors
    /// [`SqliteError::BadQuery`] if it does not prepare or lacks the `id`, `version`, `data` columns.
    pub fn with_query(mut self, kind: &str, sql: &str) -> Result<Self, SqliteError> {
        {
            let conn = self.lock_conn();
            let stmt = conn.prepare(sql).map_err(|e| SqliteError::BadQuery {
                kind: kind.to_owned(),
                reason: e.to_string(),
            })?;
            let cols: Vec<String> = stmt
                .column_names()
                .iter()
                .map(|c| c.to_ascii_lowercase())
                .collect();
            for need in ["id", "version", "data"] {
                if !cols.iter().any(|c| c == need) {
                    return Err(SqliteError::BadQuery {
                        kind: kind.to_owned(),
                        reason: format!(
                            "it must return a column named {need:?}; it returns {cols:?}"
                        ),
                    });
                }
            }
            if stmt.parameter_count() != 1 {
                return Err(SqliteError::BadQuery {
                    kind: kind.to_owned(),
                    reason: "it must take exactly one parameter, ?1, a JSON array of ids".into(),
                });
            }
        }
        Arc::make_mut(&mut self.queries).insert(kind.to_owned(), sql.to_owned());
        Ok(self)
    }

    fn lock_conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the entities `ids` of `kind` in one statement; blocking.
    ///
    /// # Errors
    /// [`StoreError::Query`] if SQLite fails.
    pub fn load_batch_sync(
        &self,
        kind: &str,
        ids: &[SmolStr],
    ) -> Result<Vec<Option<Entry>>, StoreError> {
        let ids_json = serde_json::to_string(&ids.iter().map(SmolStr::as_str).collect::<Vec<_>>())
            .map_err(|e| StoreError::Query(e.to_string()))?;
        let conn = self.lock_conn();
        let mut found: HashMap<String, Entry> = HashMap::with_capacity(ids.len());
        let q = |e: rusqlite::Error| StoreError::Query(format!("kind {kind:?}: {e}"));
        match self.queries.get(kind) {
            Some(sql) => {
                let mut stmt = conn.prepare_cached(sql).map_err(q)?;
                let idx = |name: &str| stmt.column_index(name);
                let (ci, cv, cd) = (
                    idx("id").map_err(q)?,
                    idx("version").map_err(q)?,
                    idx("data").map_err(q)?,
                );
                let rows = stmt
                    .query_map(params![ids_json], |r| {
                        Ok((
                            r.get::<_, String>(ci)?,
                            r.get::<_, i64>(cv)?,
                            value_bytes(r.get_ref(cd)?),
                        ))
                    })
                    .map_err(q)?;
                for row in rows {
                    let (id, v, d) = row.map_err(q)?;
                    found.insert(id, Entry::new(Version(v.max(0) as u64), d));
                }
            }
            None => {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, version, data FROM prescient_entities \
                         WHERE kind = ?1 AND id IN (SELECT value FROM json_each(?2))",
                    )
                    .map_err(q)?;
                let rows = stmt
                    .query_map(params![kind, ids_json], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, Vec<u8>>(2)?,
                        ))
                    })
                    .map_err(q)?;
                for row in rows {
                    let (id, v, d) = row.map_err(q)?;
                    found.insert(id, Entry::new(Version(v.max(0) as u64), d));
                }
            }
        }
        Ok(ids
            .iter()
            .map(|id| found.get(id.as_str()).cloned())
            .collect())
    }

    /// Inserts or replaces rows of the default table in one transaction; blocking.
    ///
    /// # Errors
    /// [`StoreError::Query`] if SQLite fails.
    pub fn upsert_batch_sync(&self, rows: &[(EntityKey, Entry)]) -> Result<(), StoreError> {
        let q = |e: rusqlite::Error| StoreError::Query(e.to_string());
        let mut conn = self.lock_conn();
        let tx = conn.transaction().map_err(q)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO prescient_entities (kind, id, version, data) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (kind, id) DO UPDATE SET version = excluded.version, data = excluded.data",
                )
                .map_err(q)?;
            for (k, e) in rows {
                let v = i64::try_from(e.version.0).unwrap_or(i64::MAX);
                stmt.execute(params![k.kind.as_str(), k.id.as_str(), v, e.data.as_ref()])
                    .map_err(q)?;
            }
        }
        tx.commit().map_err(q)
    }

    /// The version of one entity in the default table; blocking.
    ///
    /// # Errors
    /// [`StoreError::Query`] if SQLite fails.
    pub fn version_sync(&self, key: &EntityKey) -> Result<Option<Version>, StoreError> {
        let conn = self.lock_conn();
        conn.query_row(
            "SELECT version FROM prescient_entities WHERE kind = ?1 AND id = ?2",
            params![key.kind.as_str(), key.id.as_str()],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map(|v| v.map(|v| Version(v.max(0) as u64)))
        .map_err(|e| StoreError::Query(e.to_string()))
    }

    /// Rows in the default table; blocking.
    ///
    /// # Errors
    /// [`StoreError::Query`] if SQLite fails.
    pub fn count_sync(&self) -> Result<u64, StoreError> {
        let conn = self.lock_conn();
        conn.query_row("SELECT count(*) FROM prescient_entities", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n.max(0) as u64)
        .map_err(|e| StoreError::Query(e.to_string()))
    }
}

fn value_bytes(v: rusqlite::types::ValueRef<'_>) -> Vec<u8> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
        ValueRef::Integer(i) => i.to_string().into_bytes(),
        ValueRef::Real(f) => f.to_string().into_bytes(),
        ValueRef::Null => Vec::new(),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(format!("sqlite task failed: {e}")))?
}

#[async_trait]
impl Store for SqliteStore {
    async fn load_batch(
        &self,
        kind: &str,
        ids: &[SmolStr],
    ) -> Result<Vec<Option<Entry>>, StoreError> {
        let this = self.clone();
        let kind = kind.to_owned();
        let ids = ids.to_vec();
        blocking(move || this.load_batch_sync(&kind, &ids)).await
    }
}

#[async_trait]
impl StoreWriter for SqliteStore {
    async fn upsert_batch(&self, rows: &[(EntityKey, Entry)]) -> Result<(), StoreError> {
        let this = self.clone();
        let rows = rows.to_vec();
        blocking(move || this.upsert_batch_sync(&rows)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: &str, id: &str) -> EntityKey {
        EntityKey::new(kind, id)
    }

    #[tokio::test]
    async fn batched_round_trip_in_request_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("e.db")).unwrap();
        s.upsert_batch(&[
            (key("orders", "o1"), Entry::new(Version(1), "one")),
            (key("orders", "o2"), Entry::new(Version(2), "two")),
            (key("items", "o1"), Entry::new(Version(9), "item")),
        ])
        .await
        .unwrap();
        let got = s
            .load_batch("orders", &["o2".into(), "missing".into(), "o1".into()])
            .await
            .unwrap();
        assert_eq!(got[0], Some(Entry::new(Version(2), "two")));
        assert_eq!(got[1], None);
        assert_eq!(got[2], Some(Entry::new(Version(1), "one")));
        assert_eq!(
            s.load(&key("items", "o1")).await.unwrap().unwrap().version,
            Version(9)
        );
        s.upsert_batch(&[(key("orders", "o1"), Entry::new(Version(3), "three"))])
            .await
            .unwrap();
        assert_eq!(
            s.version_sync(&key("orders", "o1")).unwrap(),
            Some(Version(3))
        );
        assert_eq!(s.count_sync().unwrap(), 3);
    }

    #[tokio::test]
    async fn configured_query_reads_the_users_table() {
        let s = SqliteStore::in_memory().unwrap();
        s.lock_conn()
            .execute_batch(
                "CREATE TABLE orders (order_id TEXT PRIMARY KEY, row_version INTEGER, payload TEXT);
                 INSERT INTO orders VALUES ('a', 7, '{\"total\": 3}'), ('b', 2, '{}');",
            )
            .unwrap();
        let s = s
            .with_query(
                "orders",
                "SELECT order_id AS id, row_version AS version, payload AS data FROM orders \
                 WHERE order_id IN (SELECT value FROM json_each(?1))",
            )
            .unwrap();
        let got = s
            .load_batch("orders", &["a".into(), "zz".into()])
            .await
            .unwrap();
        assert_eq!(got[0], Some(Entry::new(Version(7), "{\"total\": 3}")));
        assert_eq!(got[1], None);
    }

    #[test]
    fn bad_queries_are_refused_with_a_reason() {
        let s = SqliteStore::in_memory().unwrap();
        let err = s
            .clone()
            .with_query("orders", "SELEKT nonsense")
            .unwrap_err()
            .to_string();
        assert!(err.contains("orders"), "{err}");
        let err = s
            .with_query("orders", "SELECT id, version FROM prescient_entities WHERE id IN (SELECT value FROM json_each(?1))")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"data\""), "{err}");
    }
}
