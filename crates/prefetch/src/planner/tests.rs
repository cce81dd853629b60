//! Tests of the planner.

use super::*;

impl PlanKey for (u8, u32) {
    type Kind = u8;
    fn kind(&self) -> u8 {
        self.0
    }
}

fn ms(v: i64) -> Timestamp {
    Timestamp::from_millis(v)
}

fn offer(key: (u8, u32), conf: f32, at: i64) -> Offer<(u8, u32)> {
    Offer {
        key,
        confidence: conf,
        expected_at: ms(at),
        latest: ms(at + 1000),
        relation: Relation::Same,
    }
}

fn cfg() -> PlannerConfig {
    PlannerConfig {
        lead: Duration::from_millis(10),
        batch_window: Duration::ZERO,
        budget: BudgetConfig {
            per_read: 1.0,
            per_second: 0.0,
            burst: 100.0,
        },
        retry: RetryConfig {
            max_attempts: 3,
            base: Duration::from_millis(5),
            max: Duration::from_millis(50),
            jitter: 0.0,
        },
        ..PlannerConfig::default()
    }
}

fn keys(batches: &[Batch<(u8, u32)>]) -> Vec<(u8, u32)> {
    batches
        .iter()
        .flat_map(|b| b.items.iter().map(|i| i.key))
        .collect()
}

#[test]
fn loads_just_in_time_not_now() {
    let mut p = Planner::new(cfg());
    p.offer(ms(0), offer((0, 1), 0.9, 100));
    assert!(p.poll(ms(0), &mut |_, _| false).is_empty());
    assert_eq!(p.next_due(), Some(ms(90)));
    assert!(p.poll(ms(89), &mut |_, _| false).is_empty());
    assert_eq!(keys(&p.poll(ms(90), &mut |_, _| false)), vec![(0, 1)]);
}

/// A planner that learns its threshold (target 0.5, within 0.3..0.9), starting at 0.5.
fn learning() -> Planner<(u8, u32)> {
    Planner::new(PlannerConfig {
        threshold: 0.5,
        target_precision: Some(0.5),
        threshold_bounds: (0.3, 0.9),
        max_in_flight: 1_000_000,
        ..cfg()
    })
}

/// One offer at `conf` per millisecond from `from` on, `n` in all (a read each, so the
/// budget keeps up); the prefetch issued for offer `i` is then reported used if `used(i)`.
/// Returns the prefetches issued.
fn drive(
    p: &mut Planner<(u8, u32)>,
    from: u32,
    n: u32,
    conf: f32,
    used: impl Fn(u32) -> bool,
) -> usize {
    let mut issued = 0;
    for i in from..from + n {
        let t = i64::from(i);
        p.on_read();
        p.offer(ms(t), offer((0, i), conf, t + 20));
        for b in p.poll(ms(t + 20), &mut |_, _| false) {
            for item in b.items {
                issued += 1;
                p.complete(ms(t + 22), &item, Ok(()));
                if used(i) {
                    p.on_prefetch_used(item.relation);
                }
            }
        }
    }
    issued
}

#[test]
fn learned_threshold_follows_usefulness() {
    // Every prefetch wasted: the threshold climbs to its upper bound; every one used: it
    // falls to its lower bound.
    let run = |used: bool| {
        let mut p = learning();
        drive(&mut p, 0, 5_000, 0.95, |_| used);
        p.threshold(Relation::Same)
    };
    assert!((run(false) - 0.9).abs() < 1e-3, "wasted: {}", run(false));
    assert!((run(true) - 0.3).abs() < 1e-3, "used: {}", run(true));
}

#[test]
fn the_threshold_moves_in_proportion_to_its_distance_from_the_target() {
    // All used (precision 1, far above the 0.5 target) against three in five used (0.6):
    // both thresholds fall, the first about five times as far.
    let fall = |share_used: u32| {
        let mut p = learning();
        drive(&mut p, 0, 640, 0.95, |i| i % 5 < share_used);
        0.5 - p.threshold(Relation::Same)
    };
    let (far, near) = (fall(5), fall(3));
    assert!(near > 0.0, "near the target it still falls: {near}");
    assert!(far > 3.0 * near, "far {far}, near {near}");
}

#[test]
fn a_starved_threshold_tries_a_proven_relation_again() {
    let run = |proven: u32| {
        let mut p = learning();
        drive(&mut p, 0, proven, 0.85, |_| true);
        // A bad spell lifts the threshold above every offer.
        drive(&mut p, proven, 4_000, 0.85, |_| false);
        assert!(p.threshold(Relation::Same) > 0.85);
        drive(&mut p, proven + 4_000, 20_000, 0.85, |_| true)
    };
    // Mostly useful before the spell: its offers are tried again, and loaded.
    let again = run(12_000);
    assert!(again > 1_000, "{again}");
    // Never useful: it stays off.
    assert_eq!(run(0), 0);
}

#[test]
fn each_relation_learns_its_own_threshold() {
    // Linked predictions are always wasted, refreshes always used: the waste of one
    // relation must not raise the threshold of the other.
    let mut p = learning();
    for i in 0..5_000u32 {
        p.on_read();
        p.on_read();
        let t = i64::from(i);
        for (id, relation) in [(2 * i, Relation::Linked), (2 * i + 1, Relation::Refresh)] {
            p.offer(
                ms(t),
                Offer {
                    relation,
                    ..offer((0, id), 0.95, t + 20)
                },
            );
        }
        for b in p.poll(ms(t + 20), &mut |_, _| false) {
            for item in b.items {
                p.complete(ms(t + 22), &item, Ok(()));
                if item.relation == Relation::Refresh {
                    p.on_prefetch_used(item.relation);
                }
            }
        }
    }
    assert!((p.threshold(Relation::Linked) - 0.9).abs() < 1e-3);
    assert!((p.threshold(Relation::Refresh) - 0.3).abs() < 1e-3);
}

#[test]
fn threshold_and_horizon_filter() {
    let mut p = Planner::new(PlannerConfig {
        threshold: 0.5,
        horizon: Duration::from_secs(1),
        ..cfg()
    });
    p.offer(ms(0), offer((0, 1), 0.49, 10));
    p.offer(ms(0), offer((0, 2), 0.9, 5_000));
    assert_eq!(p.pending_len(), 0);
    assert_eq!(p.stats().below_threshold, 1);
    assert_eq!(p.stats().out_of_horizon, 1);
}

#[test]
fn newer_offer_replaces_the_pending_one() {
    let mut p = Planner::new(cfg());
    p.offer(ms(0), offer((0, 1), 0.9, 100));
    p.offer(ms(1), offer((0, 1), 0.8, 500));
    assert!(p.poll(ms(100), &mut |_, _| false).is_empty());
    assert_eq!(keys(&p.poll(ms(490), &mut |_, _| false)), vec![(0, 1)]);
    assert_eq!(p.stats().replaced, 1);
}

#[test]
fn plans_for_disjoint_windows_coexist() {
    // A refresh due soon and a use predicted well after it: both are loaded, each in
    // its own window; beyond the cap per entity, the farthest plan is dropped.
    let mut p = Planner::new(cfg());
    let window = |key, at| Offer {
        latest: ms(at + 50),
        ..offer(key, 0.9, at)
    };
    p.offer(ms(0), window((0, 1), 100));
    p.offer(ms(1), window((0, 1), 1_000));
    for i in 0..MAX_PLANS_PER_ENTITY as i64 {
        p.offer(ms(2), window((0, 1), 5_000 + 1_000 * i));
    }
    assert_eq!(p.pending_len(), MAX_PLANS_PER_ENTITY);
    assert_eq!(p.stats().replaced, 2);
    let first = p.poll(ms(95), &mut |_, _| false);
    assert_eq!(keys(&first), vec![(0, 1)]);
    assert_eq!(p.pending_len(), MAX_PLANS_PER_ENTITY - 1);
    assert!(p.complete(ms(97), &first[0].items[0], Ok(())).is_some());
    assert!(p.poll(ms(100), &mut |_, _| false).is_empty());
    assert_eq!(keys(&p.poll(ms(995), &mut |_, _| false)), vec![(0, 1)]);
    // `forget` drops every plan of the entity.
    p.forget(&(0, 1));
    assert_eq!(p.pending_len(), 0);
    assert!(p.poll(ms(90_000), &mut |_, _| false).is_empty());
}

#[test]
fn another_relation_does_not_replace_a_plan() {
    // A refresh and a linked prediction for the same window: the newer linked one does not
    // displace the refresh; one load serves both, the other plan is skipped as cached.
    let mut p = Planner::new(cfg());
    p.offer(
        ms(0),
        Offer {
            relation: Relation::Refresh,
            ..offer((0, 1), 0.9, 100)
        },
    );
    p.offer(
        ms(1),
        Offer {
            relation: Relation::Linked,
            ..offer((0, 1), 0.9, 120)
        },
    );
    assert_eq!(p.pending_len(), 2);
    assert_eq!(p.stats().replaced, 0);
    let b = p.poll(ms(95), &mut |_, _| false);
    assert_eq!(keys(&b), vec![(0, 1)]);
    assert_eq!(b[0].items[0].relation, Relation::Refresh);
    assert!(p.complete(ms(96), &b[0].items[0], Ok(())).is_some());
    assert!(p.poll(ms(115), &mut |_, _| true).is_empty());
    assert_eq!(p.stats().skipped_cached, 1);
    assert_eq!(p.pending_len(), 0);
    // The same relation for an overlapping window replaces.
    p.offer(ms(200), offer((0, 2), 0.9, 300));
    p.offer(ms(201), offer((0, 2), 0.8, 310));
    assert_eq!(p.pending_len(), 1);
    assert_eq!(p.stats().replaced, 1);
}

#[test]
fn skips_cached_and_in_flight() {
    let mut p = Planner::new(cfg());
    let (_, new) = p.begin_demand(ms(0), &(0, 2));
    assert!(new);
    p.offer(ms(0), offer((0, 1), 0.9, 10));
    p.offer(ms(0), offer((0, 2), 0.9, 10));
    let b = p.poll(ms(0), &mut |k, _| *k == (0, 1));
    assert!(b.is_empty());
    assert_eq!(p.stats().skipped_cached, 1);
    assert_eq!(p.stats().skipped_in_flight, 1);
    // And a demand load joins nothing twice.
    let (_, again) = p.begin_demand(ms(1), &(0, 2));
    assert!(!again);
}

#[test]
fn priority_batches_and_concurrency() {
    let mut p = Planner::new(PlannerConfig {
        max_in_flight: 2,
        batch_size: 8,
        ..cfg()
    });
    p.offer(ms(0), offer((0, 1), 0.6, 10));
    p.offer(ms(0), offer((1, 2), 0.95, 10));
    p.offer(ms(0), offer((0, 3), 0.9, 10));
    let b = p.poll(ms(0), &mut |_, _| false);
    assert_eq!(keys(&b), vec![(1, 2), (0, 3)]);
    assert_eq!(b.len(), 2, "one batch per kind");
    // The third waits for a slot.
    assert!(p.poll(ms(1), &mut |_, _| false).is_empty());
    let item = b[0].items[0].clone();
    assert!(p.complete(ms(2), &item, Ok(())).is_some());
    assert_eq!(keys(&p.poll(ms(2), &mut |_, _| false)), vec![(0, 1)]);
}

#[test]
fn budget_caps_extra_load() {
    let mut p = Planner::new(PlannerConfig {
        budget: BudgetConfig {
            per_read: 1.0,
            per_second: 0.0,
            burst: 1.0,
        },
        ..cfg()
    });
    p.offer(ms(0), offer((0, 1), 0.9, 10));
    p.offer(ms(0), offer((0, 2), 0.8, 10));
    assert_eq!(keys(&p.poll(ms(0), &mut |_, _| false)), vec![(0, 1)]);
    assert!(p.poll(ms(1), &mut |_, _| false).is_empty());
    p.on_read();
    assert_eq!(keys(&p.poll(ms(2), &mut |_, _| false)), vec![(0, 2)]);
    assert!(p.stats().budget_waits >= 1);
}

#[test]
fn retries_with_backoff_then_gives_up() {
    let mut p = Planner::new(cfg());
    p.offer(ms(0), offer((0, 1), 0.9, 10));
    let b = p.poll(ms(0), &mut |_, _| false);
    let item = b[0].items[0].clone();
    assert_eq!(p.complete(ms(1), &item, Err(Failure::Transient)), None);
    assert_eq!(p.next_due(), Some(ms(6)));
    let b = p.poll(ms(6), &mut |_, _| false);
    let item = b[0].items[0].clone();
    assert_eq!(item.attempt, 2);
    p.complete(ms(7), &item, Err(Failure::Transient));
    let b = p.poll(ms(17), &mut |_, _| false);
    let item = b[0].items[0].clone();
    assert_eq!(item.attempt, 3);
    p.complete(ms(18), &item, Err(Failure::Transient));
    assert!(p.poll(ms(1000), &mut |_, _| false).is_empty());
    assert_eq!(p.stats().retries, 2);
    assert_eq!(p.stats().failed, 1);
    // Permanent failures are not retried.
    p.offer(ms(1000), offer((0, 5), 0.9, 1010));
    let b = p.poll(ms(1000), &mut |_, _| false);
    p.complete(ms(1001), &b[0].items[0], Err(Failure::Permanent));
    assert_eq!(p.stats().failed, 2);
    assert_eq!(p.pending_len(), 0);
}

#[test]
fn ttl_covers_the_window_within_bounds() {
    let p: Planner<(u8, u32)> = Planner::new(PlannerConfig {
        min_ttl: Duration::from_secs(1),
        max_ttl: Duration::from_secs(60),
        ttl_slack: Duration::from_secs(1),
        ..cfg()
    });
    assert_eq!(p.ttl_for(ms(0), ms(10_000)), Duration::from_secs(11));
    assert_eq!(p.ttl_for(ms(0), ms(0)), Duration::from_secs(1));
    assert_eq!(p.ttl_for(ms(0), ms(1_000_000)), Duration::from_secs(60));
}

#[test]
fn late_plans_expire() {
    let mut p = Planner::new(PlannerConfig {
        budget: BudgetConfig {
            per_read: 0.0,
            per_second: 0.0,
            burst: 0.0,
        },
        ..cfg()
    });
    p.offer(ms(0), offer((0, 1), 0.9, 10));
    assert!(p.poll(ms(0), &mut |_, _| false).is_empty());
    assert!(p.poll(ms(5_000), &mut |_, _| false).is_empty());
    assert_eq!(p.stats().expired, 1);
}

#[test]
fn stats_serialize_relations_by_name() {
    let mut stats = PlannerStats {
        issued: 3,
        ..PlannerStats::default()
    };
    stats.by_relation[Relation::Refresh.index()].issued = 2;
    stats.by_relation[Relation::Refresh.index()].used = 1;
    let v = serde_json::to_value(&stats).unwrap();
    assert_eq!(v["issued"], 3);
    assert_eq!(v["by_relation"]["refresh"]["issued"], 2);
    assert_eq!(v["by_relation"]["refresh"]["used"], 1);
    assert_eq!(
        v["by_relation"].as_object().map(|m| m.len()),
        Some(Relation::ALL.len())
    );
}
