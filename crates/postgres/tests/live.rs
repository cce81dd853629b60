//! Tests of [`PgStore`] against a live PostgreSQL (`PRESCIENT_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/test`). Without a server they print `SKIPPED` and pass,
//! unless `CI=true`, where they fail.
//!
//! Every test uses its own tables, named after the process id, the test and the time, and drops
//! them at the end.

use std::time::Duration;

use prescient_core::{EntityKey, Entry, SmolStr, Store, StoreError, StoreWriter, Version};
use prescient_postgres::{DEFAULT_URL, PgError, PgStore, PgStoreOptions};
use prescient_testkit::{service, unavailable, unique};

fn url() -> String {
    service("PRESCIENT_TEST_POSTGRES", DEFAULT_URL)
}

/// Connects, or returns `None` (after printing `SKIPPED`) when the server is unreachable
/// outside CI. In CI an unreachable server fails the test.
async fn connect(opts: PgStoreOptions) -> Option<PgStore> {
    match PgStore::connect(opts).await {
        Ok(s) => Some(s),
        Err(e) if e.is_transient() => {
            unavailable(format!("PostgreSQL at {} unreachable: {e}", url()));
            None
        }
        Err(e) => panic!("cannot connect to PostgreSQL at {}: {e}", url()),
    }
}

fn options(table: &str) -> PgStoreOptions {
    let mut o = PgStoreOptions::new(url()).with_table(Some(table.to_owned()));
    o.pool_size = 4;
    o.connect_timeout = Duration::from_secs(3);
    o
}

async fn exec(store: &PgStore, sql: &str) {
    let client = store.pool().get().await.expect("pooled connection");
    client.batch_execute(sql).await.expect(sql);
}

fn ids(xs: &[&str]) -> Vec<SmolStr> {
    xs.iter().map(SmolStr::new).collect()
}

#[tokio::test]
async fn round_trip_and_batch_order() {
    let table = unique("rt");
    let Some(store) = connect(options(&table)).await else {
        return;
    };
    store.ensure_schema().await.expect("schema");
    // Idempotent.
    store.ensure_schema().await.expect("schema twice");

    let rows: Vec<(EntityKey, Entry)> = (0..2_500)
        .map(|i| {
            (
                EntityKey::new("orders", format!("o-{i}")),
                Entry::new(Version(i), format!("order {i}").into_bytes()),
            )
        })
        .chain([(
            EntityKey::new("items", "o-1"),
            Entry::new(Version(9), &b"\x00\xffbinary"[..]),
        )])
        .collect();
    store.upsert_batch(&rows).await.expect("upsert");

    let got = store
        .load_batch("orders", &ids(&["o-7", "missing", "o-2499", "o-7", "o-0"]))
        .await
        .expect("load");
    assert_eq!(
        got,
        vec![
            Some(Entry::new(Version(7), &b"order 7"[..])),
            None,
            Some(Entry::new(Version(2499), &b"order 2499"[..])),
            Some(Entry::new(Version(7), &b"order 7"[..])),
            Some(Entry::new(Version(0), &b"order 0"[..])),
        ]
    );
    // Kinds namespace ids.
    let item = store
        .load(&EntityKey::new("items", "o-1"))
        .await
        .expect("load one");
    assert_eq!(item, Some(Entry::new(Version(9), &b"\x00\xffbinary"[..])));
    // Empty batches are fine.
    assert_eq!(
        store.load_batch("orders", &[]).await.expect("empty"),
        vec![]
    );

    // Upsert replaces; within one batch the later row of a key wins.
    store
        .upsert_batch(&[
            (
                EntityKey::new("orders", "o-7"),
                Entry::new(Version(70), &b"a"[..]),
            ),
            (
                EntityKey::new("orders", "o-7"),
                Entry::new(Version(71), &b"b"[..]),
            ),
        ])
        .await
        .expect("upsert again");
    let got = store
        .load(&EntityKey::new("orders", "o-7"))
        .await
        .expect("reload");
    assert_eq!(got, Some(Entry::new(Version(71), &b"b"[..])));

    // A version that does not fit a bigint is refused, not wrapped.
    let e = store
        .upsert_batch(&[(
            EntityKey::new("orders", "big"),
            Entry::new(Version(u64::MAX), &b"x"[..]),
        )])
        .await
        .expect_err("too big");
    assert!(matches!(e, StoreError::Query(_)), "{e:?}");

    exec(&store, &format!("DROP TABLE {table}")).await;
}

#[tokio::test]
async fn custom_query_over_user_table_with_jsonb() {
    let table = unique("def");
    let user = unique("orders");
    let sql = format!(
        "SELECT order_no::text, row_version, payload FROM {user} WHERE order_no::text = ANY($1)"
    );
    let text_sql = format!(
        "SELECT order_no::text AS id, row_version::int4, note FROM {user} WHERE order_no::text = ANY($1::text[])"
    );
    let Some(store) = connect(
        options(&table)
            .with_query("orders", sql)
            .with_query("order_notes", text_sql),
    )
    .await
    else {
        return;
    };
    exec(
        &store,
        &format!(
            "CREATE TABLE {user} (order_no bigint PRIMARY KEY, row_version bigint NOT NULL, \
             payload jsonb NOT NULL, note text NOT NULL); \
             INSERT INTO {user} VALUES (1, 3, '{{\"total\": 12.5, \"items\": [1, 2]}}', 'first'), \
             (2, 8, '{{\"total\": 1}}', 'second');"
        ),
    )
    .await;
    store.check_queries().await.expect("queries are valid");

    let got = store
        .load_batch("orders", &ids(&["2", "3", "1"]))
        .await
        .expect("load");
    assert_eq!(got.len(), 3);
    let two = got[0].as_ref().expect("order 2");
    assert_eq!(two.version, Version(8));
    let json: serde_json::Value = serde_json::from_slice(&two.data).expect("json data");
    assert_eq!(json, serde_json::json!({"total": 1}));
    assert_eq!(got[1], None);
    let one = got[2].as_ref().expect("order 1");
    assert_eq!(one.version, Version(3));
    let json: serde_json::Value = serde_json::from_slice(&one.data).expect("json data");
    assert_eq!(json["items"], serde_json::json!([1, 2]));

    let notes = store
        .load_batch("order_notes", &ids(&["1"]))
        .await
        .expect("text data");
    assert_eq!(notes, vec![Some(Entry::new(Version(3), &b"first"[..]))]);

    exec(&store, &format!("DROP TABLE {user}")).await;
}

#[tokio::test]
async fn bad_queries_give_clear_errors() {
    let user = unique("bad");
    let opts = PgStoreOptions::new(url())
        .with_table(None)
        .with_query(
            "two_cols",
            format!("SELECT k, v FROM {user} WHERE k = ANY($1)"),
        )
        .with_query(
            "int_ids",
            format!("SELECT k, v, d FROM {user} WHERE n = ANY($1)"),
        )
        .with_query(
            "text_version",
            format!("SELECT k, d AS ver, d FROM {user} WHERE k = ANY($1)"),
        )
        .with_query(
            "no_table",
            "SELECT id, version, data FROM prescient_no_such_table_xyz WHERE id = ANY($1)",
        );
    let Some(store) = connect(opts).await else {
        return;
    };
    exec(
        &store,
        &format!("CREATE TABLE {user} (k text, n bigint, v bigint, d text)"),
    )
    .await;

    let check = async |kind: &str, needle: &str| {
        let e = store.load_batch(kind, &ids(&["a"])).await.expect_err(kind);
        let StoreError::Query(msg) = &e else {
            panic!("{kind}: expected a query error, got {e:?}");
        };
        assert!(msg.contains(&format!("{kind:?}")), "{kind}: {msg}");
        assert!(msg.contains(needle), "{kind}: {msg}");
    };
    check("two_cols", "exactly 3").await;
    check("int_ids", "text[]").await;
    check("text_version", "\"ver\"").await;
    check("no_table", "prescient_no_such_table_xyz").await;

    // The startup check reports the first bad kind by name too.
    let e = store.check_queries().await.expect_err("bad queries");
    assert!(matches!(e, PgError::BadQuery { .. }), "{e:?}");

    // No default table: unknown kinds fail, and writes fail.
    let e = store
        .load_batch("whatever", &ids(&["a"]))
        .await
        .expect_err("unknown");
    assert_eq!(e, StoreError::UnknownKind("whatever".into()));
    let e = store
        .upsert_batch(&[(
            EntityKey::new("whatever", "a"),
            Entry::new(Version(1), &b""[..]),
        )])
        .await
        .expect_err("no table to write");
    assert_eq!(e, StoreError::UnknownKind("whatever".into()));

    exec(&store, &format!("DROP TABLE {user}")).await;
}

#[tokio::test]
async fn unknown_kind_with_default_table_is_all_missing() {
    let table = unique("unk");
    let Some(store) = connect(options(&table)).await else {
        return;
    };
    store.ensure_schema().await.expect("schema");
    let got = store
        .load_batch("never_written", &ids(&["a", "b"]))
        .await
        .expect("load");
    assert_eq!(got, vec![None, None]);
    exec(&store, &format!("DROP TABLE {table}")).await;
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let mut o = PgStoreOptions::new("postgres://postgres@127.0.0.1:1/test");
    o.connect_timeout = Duration::from_secs(2);
    let e = PgStore::connect(o)
        .await
        .expect_err("nothing listens on port 1");
    assert!(e.is_transient(), "{e:?}");
    assert!(matches!(StoreError::from(e), StoreError::Unavailable(_)));
}

#[tokio::test]
async fn concurrent_loads_share_the_pool() {
    let table = unique("conc");
    let Some(store) = connect(options(&table)).await else {
        return;
    };
    store.ensure_schema().await.expect("schema");
    let rows: Vec<(EntityKey, Entry)> = (0..200u64)
        .map(|i| {
            (
                EntityKey::new("c", format!("{i}")),
                Entry::new(Version(i), i.to_string().into_bytes()),
            )
        })
        .collect();
    store.upsert_batch(&rows).await.expect("upsert");
    let store = std::sync::Arc::new(store);
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let want: Vec<SmolStr> = (0..50u64)
                .map(|i| SmolStr::new(((i * 7 + t) % 200).to_string()))
                .collect();
            let got = store.load_batch("c", &want).await.expect("load");
            for (id, e) in want.iter().zip(got) {
                let e = e.expect("present");
                assert_eq!(e.version.0.to_string(), id.as_str());
                assert_eq!(&e.data[..], id.as_bytes());
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    exec(&store, &format!("DROP TABLE {table}")).await;
}
