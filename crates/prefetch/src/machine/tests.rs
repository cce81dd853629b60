//! Tests of the core: the crediting rule, waste, invalidation and state that moves.

use std::time::Duration;

use prescient_core::{PredictError, Relation, Timestamp, Version};

use super::*;
use crate::budget::BudgetConfig;
use crate::planner::Offer;

fn s(v: i64) -> Timestamp {
    Timestamp::from_secs(v)
}

fn core() -> PrefetchCore<u32> {
    PrefetchCore::new(CoreConfig {
        planner: PlannerConfig {
            lead: Duration::ZERO,
            batch_window: Duration::ZERO,
            target_precision: None,
            budget: BudgetConfig {
                per_read: 1.0,
                per_second: 0.0,
                burst: 1000.0,
            },
            ..PlannerConfig::default()
        },
        ..CoreConfig::default()
    })
}

fn offer(key: u32, at: i64) -> Offer<u32> {
    Offer {
        key,
        confidence: 0.9,
        expected_at: s(at),
        latest: s(at + 60),
        relation: Relation::Same,
    }
}

/// Offers `key` for `at`, polls at `at` and returns the one item issued.
fn issue(c: &mut PrefetchCore<u32>, key: u32, at: i64) -> BatchItem<u32> {
    assert_eq!(
        c.on_predicted(s(at - 1), Ok::<_, &PredictError>([offer(key, at)])),
        Some(1)
    );
    let mut batches = c.poll(s(at));
    assert_eq!(batches.len(), 1);
    batches.remove(0).items.remove(0)
}

fn fill(c: &mut PrefetchCore<u32>, item: &BatchItem<u32>, at: i64) {
    let f = c.on_prefetch_loaded(s(at), item, Ok(true)).unwrap();
    c.on_prefetch_filled(s(at), item, f, Version(1), s(at).plus(f.ttl));
}

#[test]
fn a_hit_on_a_prefetched_entry_credits_it_once() {
    let mut c = core();
    let item = issue(&mut c, 1, 10);
    fill(&mut c, &item, 10);
    assert!(c.on_hit(s(11), &1));
    assert!(!c.on_hit(s(12), &1));
    let st = c.stats();
    assert_eq!((st.prefetches_issued, st.prefetches_used), (1, 1));
    assert_eq!(c.planner().stats().by_relation[0].used, 1);
}

#[test]
fn a_refresh_of_a_copy_that_would_have_served_the_read_is_not_credited() {
    let mut c = core();
    c.on_demand_filled(s(0), 1, Version(1), s(30));
    // The planner would skip a copy fresh at the expected read; plan the read after it.
    let item = issue(&mut c, 1, 30);
    fill(&mut c, &item, 25);
    assert!(!c.on_hit(s(28), &1), "the old copy was valid until 30");
    assert!(c.on_hit(s(40), &1));
}

#[test]
fn a_read_that_joins_a_prefetch_in_flight_credits_it_and_the_fill_stays_credited() {
    let mut c = core();
    let item = issue(&mut c, 1, 10);
    assert!(matches!(c.begin_demand(s(10), &1), Demand::Join(_)));
    assert!(c.on_joined(&1));
    assert!(!c.on_joined(&1));
    fill(&mut c, &item, 10);
    assert!(!c.on_hit(s(11), &1), "credited already");
    assert_eq!(c.stats().prefetches_used, 1);
    c.invalidate(&1, Version(2));
    assert_eq!(c.stats().prefetches_wasted, 0);
}

#[test]
fn an_unused_prefetch_is_wasted_when_invalidated_replaced_or_evicted() {
    let mut c = core();
    let item = issue(&mut c, 1, 10);
    fill(&mut c, &item, 10);
    c.invalidate(&1, Version(2));
    assert_eq!(c.stats().prefetches_wasted, 1);
    let item = issue(&mut c, 2, 20);
    fill(&mut c, &item, 20);
    c.on_demand_filled(s(21), 2, Version(1), s(3600));
    assert_eq!(c.stats().prefetches_wasted, 2);
    let item = issue(&mut c, 3, 30);
    fill(&mut c, &item, 30);
    c.on_evicted(&3);
    assert_eq!(c.stats().prefetches_wasted, 3);
    assert_eq!(c.stats().invalidations, 1);
}

#[test]
fn a_fresh_copy_is_not_prefetched_again() {
    let mut c = core();
    c.on_demand_filled(s(0), 1, Version(1), s(100));
    c.on_predicted(s(1), Ok::<_, &PredictError>([offer(1, 10)]));
    assert!(c.poll(s(10)).is_empty());
    assert_eq!(c.planner().stats().skipped_cached, 1);
}

#[test]
fn fills_are_handed_to_the_predictor_once() {
    let mut c = core();
    let item = issue(&mut c, 1, 10);
    fill(&mut c, &item, 10);
    assert_eq!(c.take_fills(), [(1, s(10))]);
    assert!(c.take_fills().is_empty());
}

#[test]
fn failures_open_the_breaker() {
    let mut c = core();
    let e = PredictError::Internal("x".into());
    for i in 0..5 {
        assert!(c.allow_predict(s(i)));
        assert_eq!(c.on_predicted(s(i), Err::<[Offer<u32>; 0], _>(&e)), None);
    }
    assert!(!c.allow_predict(s(5)));
    assert_eq!(c.stats().predictor_errors, 5);
    assert_eq!(c.stats().breaker_refused, 1);
}

#[test]
fn state_moves_between_cores_and_round_trips_through_json() {
    let mut a = core();
    a.on_predicted(s(0), Ok::<_, &PredictError>([offer(1, 100), offer(2, 200)]));
    a.on_demand_filled(s(0), 3, Version(4), s(3600));
    let item = issue(&mut a, 5, 10);
    fill(&mut a, &item, 10);
    let state = a.export(&mut |k| *k != 2);
    assert_eq!(
        state.entities.iter().map(|e| e.key).collect::<Vec<_>>(),
        [1, 3, 5]
    );
    let json = serde_json::to_string(&state).unwrap();
    let back: CoreState<u32> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);

    let mut b = core();
    b.import(s(20), back);
    assert!(b.is_fresh(&3, s(100)));
    assert!(b.on_hit(s(21), &5), "the prefetch tag moved with the copy");
    let batches = b.poll(s(100));
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].items[0].key, 1);
    assert!(b.poll(s(200)).is_empty(), "2 was not selected");

    a.forget(&mut |k| *k != 2);
    assert!(!a.is_fresh(&3, s(100)));
    assert_eq!(a.planner().pending_len(), 1);
}
