//! Unit tests of the key model.

use prescient_core::{EntityRef, Event, Forecast, Observe, OnlineModel, Relation, Timestamp};

use super::KeyModel;
use super::config::KeyConfig;
use super::state::{Key, parse_id};

fn ev(i: u64, ids: &[u64]) -> Event {
    let mut e = Event::new(i.to_string(), "read", Timestamp::from_millis(i as i64));
    for id in ids {
        e = e.with_entity(EntityRef::new("block", id.to_string()));
    }
    e
}

fn step(m: &mut KeyModel, e: &Event) -> Forecast {
    m.observe(e, Observe::Learn);
    m.forecast(e)
}

fn ids(f: &Forecast, rel: Relation) -> Vec<u64> {
    f.entities
        .iter()
        .filter(|p| p.relation == rel)
        .filter_map(|p| p.entity.id.parse().ok())
        .collect()
}

/// The readahead calibration of kind `block`: `(trials, hit rate)` over all bins.
fn readahead_record(m: &KeyModel) -> (f32, f32) {
    let ks = &m.kinds[usize::from(m.kind_ids["block"])];
    let (n, k) = ks
        .seq
        .iter()
        .fold((0.0, 0.0), |(n, k), c| (n + c.trials, k + c.hits));
    (n, k / n.max(1.0))
}

#[test]
fn readahead_confidence_follows_what_was_read() {
    // A sequential scan: every id predicted ahead is read soon after.
    let mut m = KeyModel::default();
    let mut last = Forecast::default();
    for i in 0..3000 {
        last = step(&mut m, &ev(i, &[i]));
    }
    let (n, rate) = readahead_record(&m);
    assert!(n >= 100.0 && rate > 0.9, "{n} {rate}");
    let seq: Vec<f32> = last
        .entities
        .iter()
        .filter(|p| p.relation == Relation::Sequential)
        .map(|p| p.confidence)
        .collect();
    assert!(!seq.is_empty() && seq.iter().all(|c| *c > 0.8), "{seq:?}");

    // Runs of one, two or three ids at scattered places: the id after a run's last is
    // predicted at times and never read, and the record says so.
    let mut m = KeyModel::default();
    let (mut x, mut i) = (12345u64, 0u64);
    for r in 0..6000u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let base = (x >> 20) % 1_000_000_000 * 8;
        for j in 0..=r % 3 {
            step(&mut m, &ev(i, &[base + j]));
            i += 1;
        }
    }
    let (n, rate) = readahead_record(&m);
    assert!(n >= 100.0 && rate > 0.2 && rate < 0.8, "{n} {rate}");
}

#[test]
fn parses_only_canonical_integers() {
    assert_eq!(parse_id("0"), Some(0));
    assert_eq!(parse_id("1234"), Some(1234));
    assert_eq!(parse_id("007"), None);
    assert_eq!(parse_id("-1"), None);
    assert_eq!(parse_id("a1"), None);
    assert_eq!(parse_id(""), None);
}

#[test]
fn runs_become_one_anchor() {
    let mut m = KeyModel::default();
    let mut e = ev(0, &[7, 5, 6, 9]);
    e = e.with_entity(EntityRef::new("user", "alice"));
    m.decompose(&e);
    let got: Vec<(Key, u32)> = m.cur.iter().map(|a| (a.key.clone(), a.len)).collect();
    assert_eq!(
        got,
        vec![
            (Key::Text(1, "alice".into()), 1),
            (Key::Num(0, 5), 3),
            (Key::Num(0, 9), 1)
        ]
    );
}

#[test]
fn sequential_stream_gets_readahead_ahead_of_the_next_reads() {
    let mut m = KeyModel::default();
    let mut last = Forecast::default();
    // Many sequential runs of 4-block requests, interleaved with random reads.
    let mut t = 0;
    for run in 0..50u64 {
        let base = 1_000_000 * (run + 1);
        for r in 0..20u64 {
            last = step(
                &mut m,
                &ev(
                    t,
                    &[
                        base + 4 * r,
                        base + 4 * r + 1,
                        base + 4 * r + 2,
                        base + 4 * r + 3,
                    ],
                ),
            );
            t += 1;
            step(&mut m, &ev(t, &[(t * 7919) % 100_000 + 50_000_000]));
            t += 1;
        }
    }
    let _ = last;
    // A new run, a few requests in: the readahead covers more than the next request.
    let base = 900_000_000;
    let mut seen = Vec::new();
    for r in 0..6u64 {
        let f = step(
            &mut m,
            &ev(
                t,
                &[
                    base + 4 * r,
                    base + 4 * r + 1,
                    base + 4 * r + 2,
                    base + 4 * r + 3,
                ],
            ),
        );
        t += 1;
        seen.extend(ids(&f, Relation::Sequential));
    }
    let end = base + 24;
    assert!(
        seen.contains(&(end + 4)),
        "reads ahead more than one request: {seen:?}"
    );
    // Each id once.
    let mut dedup = seen.clone();
    dedup.sort_unstable();
    dedup.dedup();
    assert_eq!(dedup.len(), seen.len());
    assert!(seen.iter().all(|&b| b >= base + 4 && b < end + 256));
}

#[test]
fn strided_stream_is_followed() {
    let mut m = KeyModel::default();
    let mut t = 0;
    let mut seen = Vec::new();
    for run in 0..40u64 {
        let base = 1_000_000 * (run + 1);
        seen.clear();
        for r in 0..20u64 {
            let f = step(&mut m, &ev(t, &[base + 10 * r]));
            seen.extend(ids(&f, Relation::Sequential));
            t += 1;
        }
    }
    // The last run: ids at the stride ahead of the reads, none in between.
    let base = 40_000_000;
    assert!(seen.contains(&(base + 200)), "{seen:?}");
    assert!(seen.iter().all(|b| (b - base) % 10 == 0), "{seen:?}");
}

#[test]
fn repeated_pattern_predicts_successor() {
    let mut m = KeyModel::default();
    let mut t = 0;
    // A -> x -> B, repeated, with different fillers each time; many such pairs.
    for round in 0..30u64 {
        for pair in 0..20u64 {
            let a = 10_000 + pair * 1000;
            let b = 20_000_000 + pair * 1000;
            step(&mut m, &ev(t, &[a]));
            t += 1;
            step(&mut m, &ev(t, &[90_000_000 + t * 13 + round]));
            t += 1;
            step(&mut m, &ev(t, &[b]));
            t += 1;
            step(&mut m, &ev(t, &[95_000_000 + t * 17]));
            t += 1;
        }
    }
    let f = step(&mut m, &ev(t, &[10_000]));
    let p = f
        .entities
        .iter()
        .find(|p| p.entity.id == "20000000")
        .map(|p| (p.relation, p.confidence));
    let Some((rel, conf)) = p else {
        panic!("B not predicted: {f:?}");
    };
    assert_eq!(rel, Relation::Successor);
    assert!(conf > 0.8, "{conf}");
    // Fillers that never repeat are not predicted.
    assert!(f.entities.iter().all(|p| p.confidence >= 0.5));
    assert!(
        f.entities
            .iter()
            .all(|p| p.entity.id.parse::<u64>().is_ok_and(|v| v < 90_000_000)),
        "{f:?}"
    );
}

#[test]
fn text_ids_without_structure_predict_little() {
    let mut m = KeyModel::default();
    let mut predicted = 0;
    let mut x: u64 = 12345;
    for t in 0..20_000u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let e = Event::new(t.to_string(), "a", Timestamp::from_secs(t as i64))
            .with_entity(EntityRef::new("case", format!("c-{}", (x >> 33) % 5000)))
            .with_entity(EntityRef::new("user", format!("u{}", (x >> 20) % 50)));
        let f = step(&mut m, &e);
        predicted += f.entities.len();
    }
    assert!(predicted < 200, "{predicted}");
}

#[test]
fn memory_stays_bounded() {
    let cfg = KeyConfig {
        max_keys: 1000,
        max_streams: 16,
        ..KeyConfig::default()
    };
    let mut m = KeyModel::new(cfg);
    let mut x: u64 = 1;
    for t in 0..50_000u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        step(&mut m, &ev(t, &[x >> 24]));
        assert!(m.tracked_keys() <= 1001);
        assert!(m.tracked_streams() <= 16);
    }
    assert!(m.ring.len() <= m.cfg.successor_distance);
    assert!(m.spare.len() <= m.cfg.successor_distance + 1);
}

#[test]
fn track_learns_nothing() {
    let mut m = KeyModel::default();
    for t in 0..1000u64 {
        m.observe(&ev(t, &[t]), Observe::Track);
    }
    assert!(
        m.kinds
            .iter()
            .all(|k| k.streams.iter().all(|c| c.trials == 0.0))
    );
    assert!(m.forecast(&ev(1000, &[1000])).entities.is_empty());
}
