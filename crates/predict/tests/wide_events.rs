//! An event with very many entities costs about linearly in them, not quadratically.
//!
//! Entities were de-duplicated, and links between them found, by scanning the entities
//! already seen for each one. The wall-time limit below is generous for a debug build of the
//! linear code (on a shared machine) and far below what the quadratic code took (see the
//! commit that added it).

use std::time::{Duration, Instant};

use prescient_core::{EntityRef, Event, Observe, OnlineModel, Timestamp};
use prescient_predict::PrescientModel;

/// Distinct entities in the wide event.
const ENTITIES: usize = 20_000;

/// The limit for learning from the wide event twice and forecasting after each.
const LIMIT: Duration = Duration::from_secs(20);

/// An event touching `ENTITIES` distinct entities of four kinds, and each of them twice more
/// (duplicates are ignored).
fn wide_event(id: &str, secs: i64) -> Event {
    let kinds = ["case", "order", "item", "block"];
    let mut e = Event::new(id, "bulk", Timestamp::from_secs(secs));
    for i in 0..ENTITIES {
        e = e.with_entity(EntityRef::new(kinds[i % kinds.len()], i.to_string()));
    }
    for i in (0..ENTITIES).step_by(7) {
        e = e.with_entity(EntityRef::new(kinds[i % kinds.len()], i.to_string()));
    }
    e
}

#[test]
fn an_event_with_20k_entities_is_processed_in_time() {
    let mut m = PrescientModel::default();
    let first = wide_event("a", 1_700_000_000);
    let second = wide_event("b", 1_700_003_700);
    let started = Instant::now();
    for e in [&first, &second] {
        m.observe(e, Observe::Learn);
        let f = m.forecast(e);
        assert!(f.entities.len() <= 2 * ENTITIES * 6, "{}", f.entities.len());
    }
    let took = started.elapsed();
    assert!(took < LIMIT, "two wide events took {took:?}");
}
