//! Prescient's PostgreSQL [`Store`]: batched, versioned entity loads over a connection pool.
//!
//! [`PgStore`] serves each entity kind either from a **per-kind query** over the user's own tables
//! (so Prescient reads the real rows and their real version column), or from a **default table**
//! that holds every kind as `(kind, id, version, data)`:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS prescient_entities (
//!     kind text NOT NULL, id text NOT NULL, version bigint NOT NULL, data bytea NOT NULL,
//!     PRIMARY KEY (kind, id))
//! ```
//!
//! A per-kind query takes the ids as its one parameter `$1 text[]` and returns the columns
//! `(id text, version bigint, data)`, where `data` may be `bytea`, `text`, `varchar`, `json` or
//! `jsonb` (text and JSON arrive as their UTF-8 bytes). For example:
//!
//! ```sql
//! SELECT order_id::text, row_version, payload FROM shop.orders WHERE order_id::text = ANY($1)
//! ```
//!
//! Queries are prepared once per pooled connection and cached. Each prepared statement is
//! checked against that contract, and a query that breaks it fails with a
//! [`StoreError::Query`] naming the kind and the column at fault.
//!
//! **Unknown kinds:** a kind with no configured query is read from the default table when one is
//! configured ([`PgStoreOptions::table`] is `Some`, the default), where a kind that was never
//! written simply has no rows (every id comes back `None`). With `table: None` such a kind fails
//! with [`StoreError::UnknownKind`].
//!
//! **Errors:** failures to reach the server (connect, pool timeout, dropped connection, server
//! shutting down, too many connections, serialization failures) map to the transient
//! [`StoreError::Unavailable`]; everything the server rejects as SQL maps to
//! [`StoreError::Query`].

use prescient_core::redact_url;
use std::collections::HashMap;
use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{
    Config, ManagerConfig, Pool, PoolConfig, PoolError, RecyclingMethod, Runtime, Timeouts,
};
use prescient_core::{
    EntityKey, Entry, SmolStr, Store, StoreError, StoreWriter, Version, error_chain,
};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, Type};
use tracing::{debug, warn};

/// The default table's name.
pub const DEFAULT_TABLE: &str = "prescient_entities";

/// The default connection URL (the local test database).
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How many rows one `upsert_batch` statement writes at most; larger batches are split.
const UPSERT_CHUNK: usize = 10_000;

/// Why a PostgreSQL operation failed. Converts into [`StoreError`].
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The options are invalid (bad URL, bad table name, zero pool size).
    #[error("invalid PostgreSQL store options: {0}")]
    Config(String),
    /// No connection could be made or taken from the pool.
    #[error("PostgreSQL unavailable: {0}")]
    Unavailable(String),
    /// The server rejected a statement, or the connection broke during one.
    #[error("PostgreSQL error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A per-kind query does not satisfy the `$1 text[] -> (id, version, data)` contract.
    #[error("query for entity kind {kind:?} is invalid: {problem}")]
    BadQuery {
        /// The entity kind whose query is wrong.
        kind: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A returned row could not be used (NULL or negative version, NULL data, NULL id).
    #[error("bad row for entity kind {kind:?}: {problem}")]
    BadRow {
        /// The entity kind.
        kind: String,
        /// What is wrong with the row.
        problem: String,
    },
    /// No query is configured for this kind and there is no default table.
    #[error("no query configured for entity kind {0:?} and no default table")]
    UnknownKind(String),
}

impl PgError {
    /// Whether retrying may succeed (the server was unreachable or briefly refused).
    pub fn is_transient(&self) -> bool {
        match self {
            PgError::Unavailable(_) => true,
            PgError::Postgres(e) => is_transient(e),
            _ => false,
        }
    }
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> Self {
        match e {
            PgError::UnknownKind(kind) => StoreError::UnknownKind(kind),
            e if e.is_transient() => StoreError::Unavailable(error_chain(&e)),
            e => StoreError::Query(error_chain(&e)),
        }
    }
}

impl From<PoolError> for PgError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) if !is_transient(&e) => PgError::Postgres(e),
            e => PgError::Unavailable(error_chain(&e)),
        }
    }
}

/// Whether a driver error means "the server could not be reached or asked us to come back".
fn is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        return code.code().starts_with("08") // connection exception
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::TOO_MANY_CONNECTIONS
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED;
    }
    // No server error: transient only when the connection itself failed (I/O, connect,
    // timeout); type conversion and parse errors are not.
    let m = e.to_string();
    m.starts_with("error communicating with the server")
        || m.starts_with("error connecting to server")
        || m.starts_with("timeout")
        || e.source()
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
}

/// Options of [`PgStore::connect`].
#[derive(Clone)]
pub struct PgStoreOptions {
    /// A libpq-style URL, e.g. `postgres://postgres@127.0.0.1:5432/test`.
    pub url: String,
    /// The most connections the pool opens.
    pub pool_size: usize,
    /// The default table that serves kinds without their own query, and that
    /// [`StoreWriter::upsert_batch`] writes to. `None`: no default table (unknown kinds fail).
    pub table: Option<String>,
    /// Per-kind queries: kind -> SQL taking `$1 text[]` and returning `(id, version, data)`.
    pub queries: HashMap<String, String>,
    /// How long to wait for a new connection or a free pooled one before failing with
    /// [`StoreError::Unavailable`].
    pub connect_timeout: Duration,
}

impl fmt::Debug for PgStoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStoreOptions")
            .field("url", &redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("table", &self.table)
            .field("queries", &self.queries)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        PgStoreOptions {
            url: DEFAULT_URL.to_owned(),
            pool_size: 8,
            table: Some(DEFAULT_TABLE.to_owned()),
            queries: HashMap::new(),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl PgStoreOptions {
    /// Default options for a URL.
    pub fn new(url: impl Into<String>) -> Self {
        PgStoreOptions {
            url: url.into(),
            ..PgStoreOptions::default()
        }
    }

    /// Adds a per-kind query.
    pub fn with_query(mut self, kind: impl Into<String>, sql: impl Into<String>) -> Self {
        self.queries.insert(kind.into(), sql.into());
        self
    }

    /// Sets (or removes, with `None`) the default table.
    pub fn with_table(mut self, table: Option<String>) -> Self {
        self.table = table;
        self
    }
}

/// Checks that a table name is a plain (optionally schema-qualified) SQL identifier, since it
/// is spliced into statements.
fn check_table_name(t: &str) -> Result<(), PgError> {
    let ok_part = |p: &str| {
        let mut cs = p.chars();
        cs.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let parts: Vec<&str> = t.split('.').collect();
    if parts.len() <= 2 && parts.iter().all(|p| ok_part(p)) {
        Ok(())
    } else {
        Err(PgError::Config(format!(
            "table name {t:?} must be an identifier like `prescient_entities` or `schema.table`"
        )))
    }
}

/// The SQL of one kind: its own query or the default table's.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    /// A configured per-kind query (validated against the contract).
    Custom(&'a str),
    /// The default table's select, which also takes the kind as `$1`.
    Default(&'a str),
}

/// A PostgreSQL-backed [`Store`] and [`StoreWriter`]. Cheap to share behind an `Arc`.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use prescient_core::{SmolStr, Store};
/// use prescient_postgres::{PgStore, PgStoreOptions};
///
/// let opts = PgStoreOptions::new("postgres://postgres@127.0.0.1:5432/test").with_query(
///     "orders",
///     "SELECT id::text, row_version, payload FROM orders WHERE id::text = ANY($1)",
/// );
/// let store = PgStore::connect(opts).await?;
/// store.ensure_schema().await?;
/// let rows = store.load_batch("orders", &[SmolStr::new("o-1")]).await?;
/// # Ok(()) }
/// ```
pub struct PgStore {
    pool: Pool,
    table: Option<String>,
    queries: HashMap<SmolStr, String>,
    default_select: Option<String>,
    upsert: Option<String>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("table", &self.table)
            .field("kinds", &self.queries.keys().collect::<Vec<_>>())
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PgStore {
    /// Creates the pool and checks that one connection can be made.
    ///
    /// # Errors
    /// [`PgError::Config`] for invalid options; [`PgError::Unavailable`] when the server cannot
    /// be reached within `connect_timeout`; [`PgError::Postgres`] when it refuses the login.
    ///
    /// # Cancel safety
    /// Cancel safe: nothing is kept if the future is dropped.
    pub async fn connect(opts: PgStoreOptions) -> Result<PgStore, PgError> {
        if opts.pool_size == 0 {
            return Err(PgError::Config("pool_size must be at least 1".into()));
        }
        if let Some(t) = &opts.table {
            check_table_name(t)?;
        }
        let mut cfg = Config::new();
        cfg.url = Some(opts.url.clone());
        cfg.connect_timeout = Some(opts.connect_timeout);
        cfg.manager = Some(ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        });
        let mut pool_cfg = PoolConfig::new(opts.pool_size);
        pool_cfg.timeouts = Timeouts {
            wait: Some(opts.connect_timeout),
            create: Some(opts.connect_timeout),
            recycle: Some(opts.connect_timeout),
        };
        cfg.pool = Some(pool_cfg);
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .map_err(|e| PgError::Config(error_chain(&e)))?;
        // Fail early if the server is not there.
        let client = pool.get().await.map_err(|e| {
            warn!(message = "PostgreSQL connect failed.", url = %redact_url(&opts.url), error = %error_chain(&e));
            PgError::from(e)
        })?;
        drop(client);
        let default_select = opts
            .table
            .as_ref()
            .map(|t| format!("SELECT id, version, data FROM {t} WHERE kind = $1 AND id = ANY($2)"));
        let upsert = opts.table.as_ref().map(|t| {
            format!(
                "INSERT INTO {t} (kind, id, version, data) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::bytea[]) \
                 ON CONFLICT (kind, id) DO UPDATE SET version = EXCLUDED.version, data = EXCLUDED.data"
            )
        });
        debug!(message = "PostgreSQL store connected.", url = %redact_url(&opts.url), pool_size = opts.pool_size);
        Ok(PgStore {
            pool,
            table: opts.table,
            queries: opts
                .queries
                .into_iter()
                .map(|(k, v)| (SmolStr::new(k), v))
                .collect(),
            default_select,
            upsert,
        })
    }

    /// The connection pool, for administration and tests.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The default table, if any.
    pub fn table(&self) -> Option<&str> {
        self.table.as_deref()
    }

    /// Creates the default table if it does not exist (no-op without a default table).
    ///
    /// # Errors
    /// [`PgError`] when the statement fails.
    ///
    /// # Cancel safety
    /// Cancel safe: the statement is idempotent.
    pub async fn ensure_schema(&self) -> Result<(), PgError> {
        let Some(t) = &self.table else {
            return Ok(());
        };
        let client = self.pool.get().await?;
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {t} (kind text NOT NULL, id text NOT NULL, \
                 version bigint NOT NULL, data bytea NOT NULL, PRIMARY KEY (kind, id))"
            ))
            .await?;
        Ok(())
    }

    /// Prepares every configured per-kind query and checks it against the contract, so that a
    /// misconfiguration shows at startup rather than on the first load of that kind.
    ///
    /// # Errors
    /// [`PgError::BadQuery`] naming the first kind whose query is wrong, or the
    /// [`PgError::Postgres`] error that preparing it raised.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn check_queries(&self) -> Result<(), PgError> {
        let client = self.pool.get().await?;
        let mut kinds: Vec<&SmolStr> = self.queries.keys().collect();
        kinds.sort();
        for kind in kinds {
            if let Some(sql) = self.queries.get(kind) {
                prepare_checked(&client, kind, Source::Custom(sql)).await?;
            }
        }
        Ok(())
    }

    fn source_of(&self, kind: &str) -> Result<Source<'_>, PgError> {
        if let Some(q) = self.queries.get(kind) {
            Ok(Source::Custom(q))
        } else if let Some(q) = &self.default_select {
            Ok(Source::Default(q))
        } else {
            Err(PgError::UnknownKind(kind.to_owned()))
        }
    }

    /// Loads `ids` of `kind` in request order (see [`Store::load_batch`]), with this crate's
    /// error type.
    ///
    /// # Errors
    /// [`PgError`] when the whole batch fails.
    ///
    /// # Cancel safety
    /// Cancel safe: a read only.
    pub async fn load_rows(
        &self,
        kind: &str,
        ids: &[SmolStr],
    ) -> Result<Vec<Option<Entry>>, PgError> {
        let source = self.source_of(kind)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.pool.get().await?;
        let stmt = prepare_checked(&client, kind, source).await?;
        let id_params: Vec<&str> = ids.iter().map(SmolStr::as_str).collect();
        let rows = match source {
            Source::Custom(_) => client.query(&stmt, &[&id_params]).await?,
            Source::Default(_) => client.query(&stmt, &[&kind, &id_params]).await?,
        };
        let mut found: HashMap<&str, Entry> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let bad = |problem: String| PgError::BadRow {
                kind: kind.to_owned(),
                problem,
            };
            let id: Option<&str> = row.try_get(0)?;
            let id = id.ok_or_else(|| bad("the id column is NULL".into()))?;
            let version: Option<DbVersion> = row.try_get(1)?;
            let version = version
                .ok_or_else(|| bad(format!("id {id:?} has a NULL version")))?
                .0;
            let version = u64::try_from(version)
                .map_err(|_| bad(format!("id {id:?} has a negative version {version}")))?;
            let data: Option<DbData> = row.try_get(2)?;
            let data = data.ok_or_else(|| bad(format!("id {id:?} has NULL data")))?;
            found.insert(id, Entry::new(Version(version), data.0));
        }
        Ok(ids
            .iter()
            .map(|id| found.get(id.as_str()).cloned())
            .collect())
    }

    /// Writes rows into the default table (see [`StoreWriter::upsert_batch`]), with this
    /// crate's error type.
    ///
    /// Rows go in one multi-row `INSERT .. SELECT FROM UNNEST(..) ON CONFLICT DO UPDATE` per
    /// 10 000 rows, all in one transaction. When a key appears twice in `rows`, the later row
    /// wins. Writes always go to the default table, also for kinds that have their own query.
    ///
    /// # Errors
    /// [`PgError::UnknownKind`] without a default table; [`PgError::BadRow`] for a version above
    /// `i64::MAX`; [`PgError::Postgres`] when the statement fails.
    ///
    /// # Cancel safety
    /// Cancel safe: the transaction is rolled back if the future is dropped before commit.
    pub async fn upsert_rows(&self, rows: &[(EntityKey, Entry)]) -> Result<(), PgError> {
        let Some(sql) = &self.upsert else {
            let kind = rows.first().map(|(k, _)| k.kind.to_string());
            return Err(PgError::UnknownKind(kind.unwrap_or_default()));
        };
        if rows.is_empty() {
            return Ok(());
        }
        let mut client = self.pool.get().await?;
        let stmt = client.prepare_cached(sql).await?;
        let tx = client.transaction().await?;
        for chunk in rows.chunks(UPSERT_CHUNK) {
            // Keep the last row of each key: one statement cannot update a row twice.
            let mut last: HashMap<&EntityKey, usize> = HashMap::with_capacity(chunk.len());
            for (i, (k, _)) in chunk.iter().enumerate() {
                last.insert(k, i);
            }
            let n = last.len();
            let (mut kinds, mut ids, mut versions, mut datas) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for (i, (k, e)) in chunk.iter().enumerate() {
                if last.get(k) != Some(&i) {
                    continue;
                }
                let v = i64::try_from(e.version.0).map_err(|_| PgError::BadRow {
                    kind: k.kind.to_string(),
                    problem: format!("version {} of {k} does not fit a bigint", e.version.0),
                })?;
                kinds.push(k.kind.as_str());
                ids.push(k.id.as_str());
                versions.push(v);
                datas.push(e.data.as_ref());
            }
            tx.execute(&stmt, &[&kinds, &ids, &versions, &datas])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Prepares (or takes from the connection's cache) the statement of a kind and checks its
/// parameter and column types.
async fn prepare_checked(
    client: &deadpool_postgres::Client,
    kind: &str,
    source: Source<'_>,
) -> Result<tokio_postgres::Statement, PgError> {
    let sql = match source {
        Source::Custom(q) | Source::Default(q) => q,
    };
    let stmt = match client.prepare_cached(sql).await {
        Ok(s) => s,
        Err(e) if matches!(source, Source::Custom(_)) && !is_transient(&e) => {
            return Err(PgError::BadQuery {
                kind: kind.to_owned(),
                problem: format!("PostgreSQL cannot prepare it: {}", error_chain(&e)),
            });
        }
        Err(e) => return Err(e.into()),
    };
    if let Source::Custom(_) = source {
        check_contract(kind, stmt.params(), stmt.columns())?;
    }
    Ok(stmt)
}

/// Checks a per-kind query's parameter and column types against the contract.
fn check_contract(
    kind: &str,
    params: &[Type],
    columns: &[tokio_postgres::Column],
) -> Result<(), PgError> {
    let bad = |problem: String| PgError::BadQuery {
        kind: kind.to_owned(),
        problem,
    };
    match params {
        [t] if *t == Type::TEXT_ARRAY || *t == Type::VARCHAR_ARRAY => {}
        [t] => {
            return Err(bad(format!(
                "its parameter $1 has type {t}, but must be text[] (write `$1::text[]` or \
                 compare `id::text = ANY($1)`)"
            )));
        }
        _ => {
            return Err(bad(format!(
                "it takes {} parameters, but must take exactly one: $1 text[] of ids",
                params.len()
            )));
        }
    }
    if columns.len() != 3 {
        let names: Vec<&str> = columns.iter().map(tokio_postgres::Column::name).collect();
        return Err(bad(format!(
            "it returns {} columns {names:?}, but must return exactly 3: (id text, version \
             bigint, data bytea|text|json|jsonb)",
            columns.len()
        )));
    }
    let (id, version, data) = (&columns[0], &columns[1], &columns[2]);
    if !<&str as FromSql<'_>>::accepts(id.type_()) {
        return Err(bad(format!(
            "column 1 ({:?}) is the id and must be text, but has type {} (cast it with ::text)",
            id.name(),
            id.type_()
        )));
    }
    if !DbVersion::accepts(version.type_()) {
        return Err(bad(format!(
            "column 2 ({:?}) is the version and must be bigint, but has type {} (cast it with \
             ::bigint)",
            version.name(),
            version.type_()
        )));
    }
    if !DbData::accepts(data.type_()) {
        return Err(bad(format!(
            "column 3 ({:?}) is the data and must be bytea, text, json or jsonb, but has type {}",
            data.name(),
            data.type_()
        )));
    }
    Ok(())
}

/// A version column: bigint (also int and smallint).
struct DbVersion(i64);

impl<'a> FromSql<'a> for DbVersion {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let v = match *ty {
            Type::INT8 => i64::from_sql(ty, raw)?,
            Type::INT4 => i64::from(i32::from_sql(ty, raw)?),
            Type::INT2 => i64::from(i16::from_sql(ty, raw)?),
            _ => return Err(format!("unsupported version type {ty}").into()),
        };
        Ok(DbVersion(v))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INT8 | Type::INT4 | Type::INT2)
    }
}

/// A data column as bytes: bytea as is, text and json as UTF-8, jsonb without its version byte.
struct DbData(Bytes);

impl<'a> FromSql<'a> for DbData {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            // Binary jsonb is a format version byte (1) followed by the JSON text.
            return match raw.split_first() {
                Some((1, rest)) => Ok(DbData(Bytes::copy_from_slice(rest))),
                Some((v, _)) => Err(format!("unsupported jsonb format version {v}").into()),
                None => Err("empty jsonb value".into()),
            };
        }
        Ok(DbData(Bytes::copy_from_slice(raw)))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::BYTEA | Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::JSON | Type::JSONB
        )
    }
}

#[async_trait]
impl Store for PgStore {
    async fn load_batch(
        &self,
        kind: &str,
        ids: &[SmolStr],
    ) -> Result<Vec<Option<Entry>>, StoreError> {
        self.load_rows(kind, ids).await.map_err(|e| {
            let e = StoreError::from(e);
            if e.is_transient() {
                warn!(message = "PostgreSQL load failed.", error = %e, kind, ids = ids.len());
            }
            e
        })
    }
}

#[async_trait]
impl StoreWriter for PgStore {
    async fn upsert_batch(&self, rows: &[(EntityKey, Entry)]) -> Result<(), StoreError> {
        self.upsert_rows(rows).await.map_err(|e| {
            let e = StoreError::from(e);
            warn!(message = "PostgreSQL upsert failed.", error = %e, rows = rows.len());
            e
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_identifiers() {
        assert!(check_table_name("prescient_entities").is_ok());
        assert!(check_table_name("app.t_1").is_ok());
        assert!(check_table_name("x; DROP TABLE y").is_err());
        assert!(check_table_name("a.b.c").is_err());
        assert!(check_table_name("1abc").is_err());
        assert!(check_table_name("").is_err());
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
    }

    #[test]
    fn jsonb_loses_its_version_byte() {
        let d = DbData::from_sql(&Type::JSONB, b"\x01{\"a\":1}").map(|d| d.0);
        assert_eq!(d.ok().as_deref(), Some(&b"{\"a\":1}"[..]));
        assert!(DbData::from_sql(&Type::JSONB, b"").is_err());
        let t = DbData::from_sql(&Type::TEXT, b"hi").map(|d| d.0);
        assert_eq!(t.ok().as_deref(), Some(&b"hi"[..]));
    }

    #[test]
    fn contract_names_the_bad_parameter() {
        let e = check_contract("orders", &[Type::INT8_ARRAY], &[]);
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("\"orders\""), "{msg}");
        assert!(msg.contains("text[]"), "{msg}");
        let e = check_contract("orders", &[], &[]);
        assert!(e.is_err());
    }

    #[test]
    fn unknown_kind_maps_to_store_unknown_kind() {
        let e: StoreError = PgError::UnknownKind("x".into()).into();
        assert_eq!(e, StoreError::UnknownKind("x".into()));
        let e: StoreError = PgError::Unavailable("down".into()).into();
        assert!(e.is_transient());
        let e: StoreError = PgError::BadQuery {
            kind: "k".into(),
            problem: "p".into(),
        }
        .into();
        assert!(matches!(e, StoreError::Query(_)));
    }
}
