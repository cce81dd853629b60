//! Memory stays within the configured bound on a stream of millions of distinct entities.
//!
//! The 10-million-entity run is `#[ignore]`d because it takes a while in a debug build; run it
//! with `cargo test --release -p prescient-predict --test memory_bound -- --ignored`.

use prescient_core::{EntityRef, Event, Observe, OnlineModel, Timestamp};
use prescient_predict::{RelationalConfig, RelationalModel, ReuseConfig, ReuseModel};

fn stream(distinct: u64, max_entities: usize) {
    let mut m = RelationalModel::new(RelationalConfig {
        max_entities,
        max_contexts: 10_000,
        ..RelationalConfig::default()
    });
    let types = ["create", "update", "read", "close", "reopen", "archive"];
    let mut peak = 0;
    for i in 0..distinct {
        // Every event touches a new entity of each of two kinds, and a shared hot entity.
        let ty = types[(i % types.len() as u64) as usize];
        let e = Event::new("e", ty, Timestamp::from_millis(i as i64))
            .with_entity(EntityRef::new("order", i.to_string()).with_role("case"))
            .with_entity(EntityRef::new("item", (i * 7 + 3).to_string()))
            .with_entity(EntityRef::new("shop", (i % 10).to_string()));
        m.observe(&e, Observe::Learn);
        let _ = m.forecast(&e);
        peak = peak.max(m.tracked_entities());
    }
    assert!(peak <= max_entities, "peak {peak} > {max_entities}");
    assert!(m.contexts() <= 10_000);
    assert!(m.evicted_entities() >= 2 * distinct - max_entities as u64 - 10);
}

#[test]
fn bounded_on_100k_distinct_entities() {
    stream(100_000, 10_000);
}

#[test]
#[ignore = "10 million events: run in release with --ignored"]
fn bounded_on_10m_distinct_entities() {
    stream(10_000_000, 200_000);
}

/// The reuse-time model (the part of the default model that tracks every entity read): its
/// tracked entities and its slots stay within `max_entities`.
fn reuse_stream(distinct: u64, max_entities: usize) {
    let mut m = ReuseModel::new(ReuseConfig {
        max_entities,
        ..ReuseConfig::default()
    });
    let mut peak = 0;
    for i in 0..distinct {
        // A new entity every second; every tenth event also reads a hot one.
        let mut e = Event::new("e", "touch", Timestamp::from_secs(i as i64))
            .with_entity(EntityRef::new("doc", i.to_string()));
        if i % 10 == 0 {
            e = e.with_entity(EntityRef::new("shop", (i % 7).to_string()));
        }
        m.observe(&e, Observe::Learn);
        let _ = m.forecast(&e);
        peak = peak.max(m.tracked());
    }
    assert!(peak <= max_entities + 1, "peak {peak} > {max_entities}");
    assert!(m.slots() <= max_entities + 1, "{} slots", m.slots());
}

#[test]
fn reuse_bounded_on_100k_distinct_entities() {
    reuse_stream(100_000, 5_000);
}

#[test]
#[ignore = "10 million events: run in release with --ignored"]
fn reuse_bounded_on_10m_distinct_entities() {
    reuse_stream(10_000_000, 200_000);
}
