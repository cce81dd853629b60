//! `prescient seed`: creates and fills one store row per entity of a log.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use prescient_core::{EntityKey, Entry, Event, StoreWriter, Version};

use crate::log_args::LogArgs;

/// Creates the default entity table and fills it with one row per entity of the log.
///
/// Each row gets the highest version the log's mutations give the entity (1 when none), and a
/// UTF-8 JSON payload of about `--payload-bytes` bytes.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `postgres://USER@HOST:PORT/DB` or `sqlite:PATH`.
    #[arg(long, value_name = "URL")]
    pub store: String,

    #[command(flatten)]
    pub log: LogArgs,

    /// Size of each entity's data.
    #[arg(long, default_value_t = 256)]
    pub payload_bytes: usize,

    /// PostgreSQL: the table (default `prescient_entities`).
    #[arg(long, default_value = "prescient_entities")]
    pub table: String,
}

/// The rows for the entities of `events`.
pub fn rows_of(events: &[Event], payload_bytes: usize) -> Vec<(EntityKey, Entry)> {
    let mut versions: BTreeMap<EntityKey, Version> = BTreeMap::new();
    for e in events {
        for r in &e.entities {
            versions.entry(r.key()).or_insert(Version(1));
        }
        for m in &e.mutations {
            let v = versions.entry(m.key()).or_insert(Version(1));
            *v = (*v).max(m.version);
        }
    }
    versions
        .into_iter()
        .map(|(k, v)| {
            let mut data = format!("{{\"kind\":{:?},\"id\":{:?},\"pad\":\"", k.kind, k.id);
            while data.len() + 2 < payload_bytes {
                data.push('x');
            }
            data.push_str("\"}");
            (k, Entry::new(v, data.into_bytes()))
        })
        .collect()
}

/// Connects a writable store for `url`.
pub async fn connect_writer(url: &str, table: &str) -> anyhow::Result<Arc<dyn StoreWriter>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let opts = prescient_postgres::PgStoreOptions::new(url).with_table(Some(table.to_owned()));
        let store = prescient_postgres::PgStore::connect(opts).await?;
        store.ensure_schema().await?;
        Ok(Arc::new(store))
    } else if let Some(path) = url.strip_prefix("sqlite:") {
        let store = prescient_sqlite::SqliteStore::open(std::path::Path::new(path))?;
        Ok(Arc::new(store))
    } else {
        anyhow::bail!(
            "--store {:?}: expected postgres://... or sqlite:PATH",
            prescient_core::redact_url(url)
        )
    }
}

/// Runs `seed`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let log = args.log.load()?;
    let rows = rows_of(&log.events, args.payload_bytes);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let w = connect_writer(&args.store, &args.table)
            .await
            .with_context(|| format!("cannot open {}", prescient_core::redact_url(&args.store)))?;
        let start = std::time::Instant::now();
        for chunk in rows.chunks(5_000) {
            w.upsert_batch(chunk).await?;
        }
        println!(
            "seeded {} entities ({} bytes each) into {} in {:.2} s",
            rows.len(),
            args.payload_bytes,
            prescient_core::redact_url(&args.store),
            start.elapsed().as_secs_f64()
        );
        anyhow::Ok(())
    })
}
