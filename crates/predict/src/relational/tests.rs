//! Unit tests of the relational model.

use std::time::Duration;

use prescient_core::{
    EntityKey, EntityRef, Event, Forecast, Observe, OnlineModel, Relation, Timestamp,
};

use super::RelationalModel;
use super::config::RelationalConfig;
use super::snapshot::SnapshotError;

fn ev(id: &str, ty: &str, secs: i64, ents: &[(&str, &str)]) -> Event {
    let mut e = Event::new(id, ty, Timestamp::from_secs(secs));
    for (k, i) in ents {
        e = e.with_entity(EntityRef::new(*k, *i));
    }
    e
}

/// Learns cases given as type strings (one letter per event, 10 s apart, cases 1000 s apart).
fn learn_cases(m: &mut RelationalModel, cases: &[&str], reps: usize) {
    let mut n = 0;
    for r in 0..reps {
        for (ci, c) in cases.iter().enumerate() {
            let case = format!("{r}-{ci}");
            for (i, ch) in c.chars().enumerate() {
                let t = (n * 1000 + i * 10) as i64;
                m.observe(
                    &ev(
                        &format!("{case}-{i}"),
                        &ch.to_string(),
                        t,
                        &[("case", &case)],
                    ),
                    Observe::Learn,
                );
            }
            n += 1;
        }
    }
}

/// Windows within the next hour, starting at once.
fn near() -> RelationalConfig {
    RelationalConfig {
        lookahead: Duration::from_secs(3600),
        min_lead: Duration::ZERO,
        ..RelationalConfig::default()
    }
}

#[test]
fn windows_respect_min_lead() {
    let mut m = RelationalModel::default();
    // Re-touched after 60 s (80%) or after a day (20%): with the default minimum lead of
    // an hour, the predicted window lies in the day-long gap's bucket, with confidence the
    // share of trials there times the share of the bucket the one-hour window covers.
    for i in 0..50i64 {
        let o = format!("o{i}");
        let t = i * 1_000_000;
        m.observe(&ev("1", "a", t, &[("k", &o)]), Observe::Learn);
        let later = if i % 5 == 0 { 86_400 } else { 60 };
        m.observe(&ev("2", "b", t + later, &[("k", &o)]), Observe::Learn);
    }
    let e = ev("q", "a", 100_000_000, &[("k", "new")]);
    m.observe(&e, Observe::Learn);
    let f = m.forecast(&e);
    let Some(p) = f.entities.first() else {
        panic!("no prediction: {f:?}");
    };
    let (s, l) = (
        p.expected_at.secs_since(e.time),
        p.latest.secs_since(e.time),
    );
    let b = crate::hist::bucket_of(86_400.0);
    let (lo, hi) = (crate::hist::bucket_lo(b), crate::hist::bucket_hi(b));
    assert!(
        s >= lo - 1.0 && l <= hi + 1.0 && (l - s - 3600.0).abs() < 1.0,
        "{s} {l}"
    );
    let want = 10.0 * 3600.0 / (hi - lo) / 52.0;
    assert!(
        (f64::from(p.confidence) - want).abs() < 1e-4,
        "{} {want}",
        p.confidence
    );
}

#[test]
fn hot_entities_are_refreshed_when_their_cached_copy_expires() {
    let mut m = RelationalModel::default();
    // A product touched every 10 minutes for two days: every data-age cycle (1 h) is
    // followed by a touch within 10 minutes of its expiry.
    let mut last = None;
    for i in 0..288i64 {
        let e = ev("e", "sell", i * 600, &[("product", "p1")]);
        m.observe(&e, Observe::Learn);
        last = Some(e);
    }
    let Some(e) = last else {
        panic!("no events");
    };
    let f = m.forecast(&e);
    let p = f
        .entities
        .iter()
        .find(|p| p.entity == EntityKey::new("product", "p1"));
    let Some(p) = p else {
        panic!("no refresh: {f:?}");
    };
    // The last cycle started at a multiple of an hour: its expiry is still ahead.
    let start = (287 * 600) / 3600 * 3600;
    assert_eq!(p.expected_at, Timestamp::from_secs(start + 3600));
    assert!(p.latest > p.expected_at);
    // 47 resolved cycles out of 48, all touched again within 10 minutes of expiry.
    assert!(
        (p.confidence - 47.0 / 49.0).abs() < 1e-6,
        "{}",
        p.confidence
    );
}

fn top(m: &mut RelationalModel, e: &Event) -> Option<(String, f32)> {
    m.forecast(e)
        .top()
        .map(|n| (n.event_type.to_string(), n.probability))
}

#[test]
fn longer_contexts_win_where_they_know_more() {
    let mut m = RelationalModel::default();
    // After b, the next type depends on what came before b.
    learn_cases(&mut m, &["abc", "dbe"], 50);
    let t = 1_000_000;
    for (first, want) in [("a", "c"), ("d", "e")] {
        let case = format!("q{first}");
        m.observe(&ev("1", first, t, &[("case", &case)]), Observe::Track);
        let e = ev("2", "b", t + 10, &[("case", &case)]);
        m.observe(&e, Observe::Track);
        let (ty, p) = top(&mut m, &e).unwrap_or_default();
        assert_eq!(ty, want);
        assert!(p > 0.9, "{p}");
    }
    // The median gap of the transition: 10 s.
    let e = ev("3", "b", t + 20, &[("case", "qa")]);
    let f = m.forecast(&e);
    assert!(
        f.next
            .windows(2)
            .all(|w| w[0].probability >= w[1].probability)
    );
    let gap = f.next[0].expected_at.secs_since(e.time);
    assert!((7.0..=14.0).contains(&gap), "{gap}");
}

#[test]
fn track_learns_nothing() {
    let mut m = RelationalModel::default();
    learn_cases(&mut m, &["abc"], 5);
    let before = m.snapshot().unwrap_or_default();
    let ctx = m.contexts();
    for i in 0..5 {
        let e = ev("x", "z", 100_000 + i, &[("case", "new")]);
        m.observe(&e, Observe::Track);
    }
    assert_eq!(m.contexts(), ctx);
    assert_eq!(m.s.unigram.total, 15.0);
    assert_ne!(before, m.snapshot().unwrap_or_default()); // the context did move
}

#[test]
fn same_entity_window_and_confidence_are_hit_rates() {
    let mut m = RelationalModel::new(near());
    // 10 orders: touched by `a`, then by `b` 100 s later, never again.
    for i in 0..10i64 {
        let o = format!("o{i}");
        m.observe(&ev("1", "a", i * 10_000, &[("order", &o)]), Observe::Learn);
        m.observe(
            &ev("2", "b", i * 10_000 + 100, &[("order", &o)]),
            Observe::Learn,
        );
    }
    let e = ev("q", "a", 1_000_000, &[("order", "new")]);
    m.observe(&e, Observe::Learn);
    let f = m.forecast(&e);
    let p = f
        .entities
        .iter()
        .find(|p| p.entity == EntityKey::new("order", "new"));
    let Some(p) = p else {
        panic!("no prediction for the new order: {f:?}");
    };
    assert_eq!(p.relation, Relation::Same);
    // 10 hits out of 11 trials (the query itself is a pending trial), shrunk by one.
    assert!(
        (p.confidence - 10.0 / 12.0).abs() < 1e-6,
        "{}",
        p.confidence
    );
    let (s, l) = (
        p.expected_at.secs_since(e.time),
        p.latest.secs_since(e.time),
    );
    assert!(s <= 100.0 && l >= 100.0 && l - s <= 3600.0, "{s} {l}");
    // After `b` nothing follows: no window, no prediction.
    let e = ev("r", "b", 1_000_100, &[("order", "new")]);
    m.observe(&e, Observe::Learn);
    assert!(m.forecast(&e).entities.is_empty());
}

#[test]
fn linked_entities_are_predicted_for_unseen_entities() {
    let mut m = RelationalModel::new(near());
    // Place (order + customer), pay (order only) 50 s later, then the customer is touched
    // again by `mail` 150 s after the payment.
    for i in 0..20i64 {
        let (o, c) = (format!("o{i}"), format!("c{i}"));
        let t = i * 10_000;
        m.observe(
            &ev("p", "place", t, &[("order", &o), ("customer", &c)]),
            Observe::Learn,
        );
        m.observe(&ev("y", "pay", t + 50, &[("order", &o)]), Observe::Learn);
        m.observe(
            &ev("m", "mail", t + 200, &[("customer", &c)]),
            Observe::Learn,
        );
    }
    let t = 1_000_000;
    m.observe(
        &ev("p", "place", t, &[("order", "onew"), ("customer", "cnew")]),
        Observe::Learn,
    );
    let e = ev("y", "pay", t + 50, &[("order", "onew")]);
    m.observe(&e, Observe::Learn);
    let x = m.explain(&e);
    let p = x
        .entities
        .iter()
        .find(|p| p.prediction.entity == EntityKey::new("customer", "cnew"));
    let Some(p) = p else {
        panic!("no linked prediction: {x:?}");
    };
    assert_eq!(p.prediction.relation, Relation::Linked);
    assert_eq!(p.via, EntityKey::new("order", "onew"));
    assert!(p.prediction.confidence > 0.8);
    let s = p.prediction.expected_at.secs_since(e.time);
    let l = p.prediction.latest.secs_since(e.time);
    assert!(s <= 150.0 && l >= 150.0, "{s} {l}");
    assert_eq!(x.main_entity, Some(EntityKey::new("order", "onew")));
}

#[test]
fn memory_is_bounded_by_configuration() {
    let mut m = RelationalModel::new(RelationalConfig {
        max_entities: 1000,
        max_contexts: 50,
        ..RelationalConfig::default()
    });
    for i in 0..100_000i64 {
        let id = i.to_string();
        let ty = (i % 97).to_string();
        m.observe(&ev("e", &ty, i, &[("k", &id)]), Observe::Learn);
        assert!(m.tracked_entities() <= 1000);
    }
    assert!(m.contexts() <= 50);
    assert!(m.evicted_entities() >= 98_000);
}

#[test]
fn snapshot_round_trip_and_errors() {
    let mut m = RelationalModel::default();
    learn_cases(&mut m, &["abc", "abd", "xbc"], 10);
    let bytes = m.snapshot().unwrap_or_default();
    let mut back = match RelationalModel::restore(&bytes) {
        Ok(b) => b,
        Err(e) => panic!("restore failed: {e}"),
    };
    let e = ev("q", "b", 99_999, &[("case", "0-0")]);
    assert_eq!(m.forecast(&e), back.forecast(&e));
    assert!(matches!(
        RelationalModel::restore(b"hello"),
        Err(SnapshotError::NotASnapshot)
    ));
    let mut other = bytes.clone();
    other[8] = 99;
    assert!(matches!(
        RelationalModel::restore(&other),
        Err(SnapshotError::Version { found: 99, .. })
    ));
    assert!(matches!(
        RelationalModel::restore(&bytes[..bytes.len() / 2]),
        Err(SnapshotError::Corrupt(_))
    ));
}

#[test]
fn forecasts_after_a_novel_type_are_calibrated_apart() {
    // A third of the cases start with a type seen nowhere else and end in `c` or `d`
    // alike; the others always end in `c`. Their contexts at `b` are the same, and `c`
    // follows it 5 times in 6.
    let mut m = RelationalModel::default();
    let case = |m: &mut RelationalModel, id: &str, first: &str, last: Option<&str>, mode| {
        let mut types = vec![first, "s1", "s2", "s3", "s4", "a", "b"];
        types.extend(last);
        let mut f = Forecast::default();
        for (j, t) in types.iter().enumerate() {
            let e = ev(&format!("{id}-{j}"), t, j as i64 * 60, &[("case", id)]);
            m.observe(&e, mode);
            f = m.forecast(&e);
        }
        f
    };
    for i in 0..600 {
        let novel = format!("n{i}");
        let (first, last) = if i % 3 != 0 {
            ("s0", "c")
        } else {
            (novel.as_str(), if i % 6 == 0 { "c" } else { "d" })
        };
        case(&mut m, &format!("t{i}"), first, Some(last), Observe::Learn);
    }
    let conf = |f: Forecast| {
        let top = f.top().expect("a forecast");
        assert_eq!(top.event_type, "c");
        f64::from(top.probability)
    };
    let plain = conf(case(&mut m, "plain", "s0", None, Observe::Track));
    let novel = conf(case(&mut m, "novel", "zz", None, Observe::Track));
    assert!(plain > 0.9, "plain {plain}");
    assert!((novel - 0.5).abs() < 0.1, "novel {novel}");
    // Without the discount, novel and plain forecasts share their calibration.
    m.set_novelty_discount(false);
    let pooled = conf(case(&mut m, "novel2", "zz", None, Observe::Track));
    assert!((pooled - 5.0 / 6.0).abs() < 0.07, "pooled {pooled}");
}

#[test]
fn top1_confidence_is_calibrated_on_a_noisy_process() {
    // After `a`: `b` with probability 0.7, else `c` (a fixed pseudo-random sequence).
    let mut m = RelationalModel::default();
    let mut x: u64 = 12345;
    let (mut hits, mut n, mut conf) = (0.0, 0.0, 0.0);
    for i in 0..4000i64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let next = if (x >> 33) % 10 < 7 { "b" } else { "c" };
        let case = i.to_string();
        let a = ev("a", "a", i * 100, &[("case", &case)]);
        m.observe(&a, Observe::Learn);
        if i >= 2000 {
            let f = m.forecast(&a);
            if let Some(t) = f.top() {
                n += 1.0;
                conf += f64::from(t.probability);
                hits += f64::from(u8::from(t.event_type == next));
            }
        }
        m.observe(
            &ev("n", next, i * 100 + 10, &[("case", &case)]),
            Observe::Learn,
        );
    }
    let (acc, mean_conf) = (hits / n, conf / n);
    assert!(
        (acc - mean_conf).abs() < 0.05,
        "accuracy {acc}, confidence {mean_conf}"
    );
}

/// Event types beyond `MAX_TYPES` are one unknown type: the forecast's distribution (and so
/// the cost of an event) stays bounded, and forecasts and explanations after them work.
#[test]
fn event_types_are_bounded() {
    let mut m = RelationalModel::default();
    let n = super::MAX_TYPES + 500;
    for i in 0..n {
        let e = ev(
            &i.to_string(),
            &format!("t{i}"),
            i as i64,
            &[("case", "c1")],
        );
        m.observe(&e, Observe::Learn);
        let f = m.forecast(&e);
        assert!(f.next.len() <= m.config().max_next);
    }
    assert_eq!(m.types(), super::MAX_TYPES);
    let e = ev("x", "t1", n as i64, &[("case", "c1")]);
    m.observe(&e, Observe::Learn);
    let why = m.explain(&e);
    assert!(!why.next.is_empty());
    assert!(why.contexts.iter().all(|c| !c.types.is_empty()));
}
