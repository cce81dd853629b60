//! Unit tests of the reuse-time model.

use prescient_core::{EntityKey, EntityRef, Event, Forecast, Observe, OnlineModel, Timestamp};

use super::ReuseModel;
use super::config::{MARGIN_US, ReuseConfig};

fn ev(i: u64, ty: &str, secs: i64, ents: &[(&str, &str)]) -> Event {
    let mut e = Event::new(i.to_string(), ty, Timestamp::from_secs(secs));
    for (k, id) in ents {
        e = e.with_entity(EntityRef::new(*k, *id));
    }
    e
}

#[test]
fn a_reported_fill_sets_the_age_of_the_copy() {
    let key = EntityKey::new("job", "j");
    let hour = 3_600_000_000i64;
    let run = |report: bool| {
        let mut m = ReuseModel::new(ReuseConfig::default());
        m.observe(&ev(1, "start", 0, &[("job", "j")]), Observe::Learn);
        // A prefetch refills the copy as it expires, an hour after the read.
        if report {
            m.filled(&key, Timestamp::from_micros(hour));
        }
        let fresh = m.copy_fresh(&key, hour + hour / 2);
        // Read half an hour later: a hit on the refilled copy, or a miss that fills anew.
        m.observe(&ev(2, "poll", 5_400, &[("job", "j")]), Observe::Learn);
        (fresh, m.fresh_until(&key))
    };
    assert_eq!(run(true), (true, Some(2 * hour + MARGIN_US)));
    assert_eq!(run(false), (false, Some(hour * 5 / 2 + MARGIN_US)));
}

#[test]
fn reported_fills_replace_the_assumed_refreshes() {
    // Jobs read twice, 90 minutes apart, as in the type's example: the window after the
    // first read's copy is predicted confidently, so without reports its refresh is
    // assumed; once the driver reports fills, only a reported fill refreshes a copy.
    let run = |report: bool| {
        let mut m = ReuseModel::new(ReuseConfig::default());
        for i in 0..3000i64 {
            let t = i * 600;
            for id in [i, i - 9] {
                let e = ev(0, "tick", t, &[("job", &id.to_string())]);
                m.observe(&e, Observe::Learn);
                m.forecast(&e);
            }
            if report && i == 0 {
                m.filled(&EntityKey::new("job", "none"), Timestamp::from_secs(0));
            }
        }
        // Job 2995 was read at 2995 × 600 s; its copy expired an hour later, in a window
        // predicted (confidently) by the last forecast.
        m.copy_fresh(
            &EntityKey::new("job", "2995"),
            (2995 * 600 + 4200) * 1_000_000,
        )
    };
    assert!(run(false), "a confident window is assumed refreshed");
    assert!(!run(true), "no prefetch was reported");
}

#[test]
fn cold_windows_are_learned_from_a_sample() {
    // Jobs read twice, 90 minutes apart, and one-off jobs (of another event type) never
    // read again: most windows are cold. Sampling those learns from far fewer windows and
    // predicts the reads as well.
    let run = |cold_sample: u32| {
        let mut m = ReuseModel::new(ReuseConfig {
            cold_sample,
            ..ReuseConfig::default()
        });
        let mut confident = 0;
        let mut n = 0;
        for i in 0..3000i64 {
            for (id, t, ty) in [
                (i, i * 600, "tick"),
                (i - 9, i * 600, "tick"),
                (100_000 + i, i * 600 + 1, "once"),
            ] {
                n += 1;
                let e = ev(n, ty, t, &[("job", &id.to_string())]);
                m.observe(&e, Observe::Learn);
                let f = m.forecast(&e);
                if i > 2000 {
                    confident += f
                        .entities
                        .iter()
                        .filter(|p| p.confidence > 0.5 && p.entity.id.len() < 6)
                        .count();
                }
            }
        }
        (m.windows_learned(), confident)
    };
    let (all, confident_all) = run(1);
    let (sampled, confident_sampled) = run(8);
    assert!(sampled * 3 < all, "{sampled} of {all}");
    assert!(confident_all > 500, "{confident_all}");
    assert!(
        confident_sampled * 10 >= confident_all * 9,
        "{confident_sampled} against {confident_all}"
    );
}

#[test]
fn reads_of_written_versions_are_not_worth_a_refresh() {
    // Jobs read twice, 90 minutes apart; with `write`, the second read's event writes the
    // job, so a copy refreshed before it would be stale.
    let run = |write: bool| {
        let mut m = ReuseModel::new(ReuseConfig::default());
        let mut confident = 0;
        let mut n = 0;
        for i in 0..3000i64 {
            for (id, t, second) in [(i, i * 600, false), (i - 9, i * 600, true)] {
                n += 1;
                let mut e = ev(n, "tick", t, &[("job", &id.to_string())]);
                if write && second {
                    e.mutations.push(prescient_core::Mutation {
                        kind: "job".into(),
                        id: id.to_string().into(),
                        version: prescient_core::Version(2),
                    });
                }
                m.observe(&e, Observe::Learn);
                let f = m.forecast(&e);
                if i > 2000 {
                    confident += f.entities.iter().filter(|p| p.confidence > 0.5).count();
                }
            }
        }
        confident
    };
    assert!(run(false) > 500, "{}", run(false));
    assert_eq!(run(true), 0);
}

#[test]
fn windows_come_due_without_an_event() {
    // Jobs read twice, 90 minutes apart; new jobs every 10 minutes keep the model learning.
    let mut m = ReuseModel::new(ReuseConfig::default());
    let mut n = 0;
    for i in 0..3000i64 {
        for (id, t) in [(i, i * 600), (i - 9, i * 600)] {
            n += 1;
            let e = ev(n, "tick", t, &[("job", &id.to_string())]);
            m.observe(&e, Observe::Learn);
            m.forecast(&e);
        }
    }
    // One more job, then silence: its second read is due 90 minutes later.
    let t0 = 3000 * 600 + 3000;
    let e = ev(n + 1, "tick", t0, &[("job", "new")]);
    m.observe(&e, Observe::Learn);
    let confident = |f: &Forecast| {
        f.entities
            .iter()
            .any(|p| p.entity.id == "new" && p.confidence > 0.8)
    };
    // At the read, its first window (an hour later) is not due yet.
    assert!(!confident(&m.forecast(&e)));
    // Within a window of its start, a tick predicts it.
    let f = m.forecast_due(Timestamp::from_secs(t0 + 600));
    assert!(confident(&f), "{f:?}");
    // Each window is predicted once.
    assert!(!confident(&m.forecast_due(Timestamp::from_secs(t0 + 700))));
}

#[test]
fn learns_a_fixed_delay_for_new_entities() {
    // Every order is confirmed, then reminded exactly 20 hours later. Other orders keep
    // the clock moving.
    let mut m = ReuseModel::new(ReuseConfig::default());
    let mut i = 0;
    for o in 0..400 {
        let t0 = o * 1800;
        let id = format!("o{o}");
        m.observe(&ev(i, "confirm", t0, &[("order", &id)]), Observe::Learn);
        i += 1;
        m.forecast(&ev(i, "confirm", t0, &[("order", &id)]));
    }
    // A reminder 20 h after each confirmation.
    let mut m2 = ReuseModel::new(ReuseConfig::default());
    let mut evs = Vec::new();
    for o in 0..600 {
        let id = format!("o{o}");
        evs.push(ev(0, "confirm", o * 1800, &[("order", &id)]));
        evs.push(ev(
            0,
            "remind",
            o * 1800 + 20 * 3600 + 600,
            &[("order", &id)],
        ));
    }
    evs.sort_by_key(|e| e.time);
    let mut hits = 0;
    let mut confident = 0;
    for (n, e) in evs.iter().enumerate() {
        m2.observe(e, Observe::Learn);
        let f = m2.forecast(e);
        if n > evs.len() / 2 {
            for p in &f.entities {
                if p.confidence > 0.5 {
                    confident += 1;
                    // The window must hold the reminder.
                    let id = p.entity.id.trim_start_matches('o');
                    let o: i64 = id.parse().unwrap_or(-1);
                    let remind = o * 1800 + 20 * 3600 + 600;
                    let (a, b) = (p.expected_at.as_micros(), p.latest.as_micros());
                    if a <= remind * 1_000_000 && remind * 1_000_000 < b {
                        hits += 1;
                    }
                }
            }
        }
    }
    assert!(confident > 100, "confident predictions: {confident}");
    assert!(
        hits * 10 >= confident * 9,
        "{hits} of {confident} windows held the read"
    );
    assert!(m.tracked() > 0);
}

#[test]
fn random_reads_stay_below_the_threshold() {
    // Entities read at random times, far apart: nothing should look likely.
    let mut m = ReuseModel::new(ReuseConfig::default());
    let mut x: u64 = 12345;
    let mut t = 0i64;
    let mut confident = 0;
    for i in 0..20_000u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        t += 60;
        let id = format!("e{}", (x >> 33) % 5000);
        let e = ev(i, "touch", t, &[("thing", &id)]);
        m.observe(&e, Observe::Learn);
        confident += m
            .forecast(&e)
            .entities
            .iter()
            .filter(|p| p.confidence >= 0.5)
            .count();
    }
    assert!(confident < 50, "{confident} confident predictions on noise");
}

#[test]
fn windows_follow_the_copy_not_the_last_read() {
    // A group read every 40 minutes: the gap between reads never exceeds the window, but
    // the copy filled by a miss expires every hour (a hit does not refresh it), so the
    // window after each expiry holds a read.
    let mut m = ReuseModel::new(ReuseConfig::default());
    let mut refreshes = 0;
    for i in 0..2_000i64 {
        let e = ev(i as u64, "touch", i * 2400, &[("group", "g")]);
        m.observe(&e, Observe::Learn);
        let f = m.forecast(&e);
        if i > 1_000 {
            refreshes += f
                .entities
                .iter()
                .filter(|p| p.entity.id == "g" && p.confidence >= 0.8)
                .count();
        }
    }
    // One refresh per hour of the last 999 reads (666 hours); at least most of them.
    assert!(refreshes > 500, "{refreshes} confident refreshes");
    // While the refreshed copy is fresh, the model knows it.
    let now = 2_000 * 2400;
    assert!(m.copy_fresh(&EntityKey::new("group", "g"), now));
}

#[test]
fn off_without_a_window_and_bounded() {
    let mut m = ReuseModel::new(ReuseConfig {
        window: None,
        ..ReuseConfig::default()
    });
    let e = ev(0, "a", 0, &[("k", "1")]);
    m.observe(&e, Observe::Learn);
    assert!(m.forecast(&e).entities.is_empty());
    assert_eq!(m.tracked(), 0);

    let mut m = ReuseModel::new(ReuseConfig {
        max_entities: 100,
        ..ReuseConfig::default()
    });
    for i in 0..10_000u64 {
        let e = ev(i, "a", i as i64, &[("k", &i.to_string())]);
        m.observe(&e, Observe::Learn);
        m.forecast(&e);
    }
    assert!(m.tracked() <= 101, "tracked {}", m.tracked());
}

#[test]
fn cold_entities_stop_being_predicted_until_read() {
    // Entities read once and never again, then one read again two hours later; a week
    // of windows after each read.
    let run = |cold_windows: u32| {
        let mut m = ReuseModel::new(ReuseConfig {
            cold_windows,
            max_windows: 24 * 7,
            ..ReuseConfig::default()
        });
        for i in 0..2_000u64 {
            let e = ev(i, "once", (i * 600) as i64, &[("doc", &i.to_string())]);
            m.observe(&e, Observe::Learn);
            m.forecast(&e);
        }
        (m.windows_predicted(), m)
    };
    let (all, _) = run(0);
    let (cold, mut m) = run(12);
    let _ = m.forecast(&ev(0, "tick", 2_000 * 600, &[]));
    assert!(
        cold * 4 < all,
        "{cold} windows predicted with sleep, {all} without"
    );
    // A read wakes an entity (one read 30 hours ago, asleep since), and is counted
    // against its state's sleeping.
    let woke = |m: &ReuseModel| m.sleep.iter().map(|c| c[1]).sum::<u32>();
    let slept = m.sleep.iter().map(|c| c[0]).sum::<u32>();
    assert!(slept > 1_000, "{slept} entities put to sleep");
    assert_eq!(woke(&m), 0);
    let e = ev(9_000, "once", 2_000 * 600, &[("doc", "1820")]);
    m.observe(&e, Observe::Learn);
    assert_eq!(woke(&m), 1);
}
