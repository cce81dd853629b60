//! Measures seeding and batched-load throughput of [`PgStore`] against a live PostgreSQL and
//! prints JSON.
//!
//! ```text
//! cargo run -p prescient-postgres --example pg_throughput -- [rows] [batch] [concurrency] [url]
//! ```
//!
//! Upserts `rows` (default 200 000) entities of 200 bytes into a fresh default table, then
//! loads every one of them in `batch`-sized (default 100) `load_batch` calls, `concurrency`
//! (default 8) at a time, and drops the table.
//!
//! Latest result (2026-11-26, release build, shared 2-core machine at load average ~4,
//! PostgreSQL on the same machine, defaults): upsert 47 700 rows/s; load 182 000 rows/s
//! (1 820 batches of 100 per second, 8 concurrent).

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prescient_core::{EntityKey, Entry, SmolStr, Store, StoreWriter, Version};
use prescient_postgres::{DEFAULT_URL, PgStore, PgStoreOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rows: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200_000);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let conc: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(8);
    let url = args.next().unwrap_or_else(|| DEFAULT_URL.to_owned());
    let tag = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let table = format!("prescient_bench_{tag}");

    let mut opts = PgStoreOptions::new(url).with_table(Some(table.clone()));
    opts.pool_size = conc;
    let store = Arc::new(PgStore::connect(opts).await?);
    store.ensure_schema().await?;

    let data = vec![b'x'; 200];
    let all: Vec<(EntityKey, Entry)> = (0..rows)
        .map(|i| {
            (
                EntityKey::new("orders", format!("o-{i}")),
                Entry::new(Version(i as u64 + 1), data.clone()),
            )
        })
        .collect();
    let t = Instant::now();
    for chunk in all.chunks(50_000) {
        store.upsert_batch(chunk).await?;
    }
    let upsert_s = t.elapsed().as_secs_f64();

    let ids: Vec<SmolStr> = (0..rows).map(|i| SmolStr::new(format!("o-{i}"))).collect();
    let batches: Vec<Vec<SmolStr>> = ids.chunks(batch).map(<[SmolStr]>::to_vec).collect();
    let batches = Arc::new(batches);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (store, batches, next) = (store.clone(), batches.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut found = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(b) = batches.get(i) else { break };
                let got = store.load_batch("orders", b).await?;
                found += got.iter().flatten().count();
            }
            Ok::<usize, prescient_core::StoreError>(found)
        }));
    }
    let mut found = 0;
    for t in tasks {
        found += t.await??;
    }
    let load_s = t.elapsed().as_secs_f64();
    if found != rows {
        return Err(format!("loaded {found} of {rows} rows").into());
    }
    let client = store.pool().get().await?;
    client.batch_execute(&format!("DROP TABLE {table}")).await?;

    println!(
        "{}",
        serde_json::json!({
            "store": "postgres",
            "rows": rows,
            "row_bytes": data.len(),
            "upsert_s": upsert_s,
            "upsert_rows_per_s": rows as f64 / upsert_s,
            "load_batch_size": batch,
            "load_concurrency": conc,
            "load_s": load_s,
            "load_rows_per_s": rows as f64 / load_s,
            "load_batches_per_s": batches.len() as f64 / load_s,
        })
    );
    Ok(())
}
