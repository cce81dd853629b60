//! The protocols on tiny hand-made logs whose scores are worked out by hand in the comments.

use std::collections::HashMap;
use std::time::Duration;

use prescient_core::{
    EntityRef, Event, Forecast, NextEvent, Observe, OnlineModel, Prediction, Relation, Timestamp,
};
use prescient_eval::{EvalError, EvalOptions, Protocol, Report, case_of, evaluate};

/// Predicts, with confidence 1, the type that last followed the current type in a learned
/// case, and every entity of the current event. Learns only in `Observe::Learn`.
#[derive(Debug, Default)]
struct LastSuccessor {
    prev: HashMap<String, String>,
    succ: HashMap<String, String>,
}

impl OnlineModel for LastSuccessor {
    fn name(&self) -> &str {
        "last-successor"
    }
    fn observe(&mut self, e: &Event, mode: Observe) {
        let c = case_of(e).to_owned();
        if mode == Observe::Learn
            && let Some(p) = self.prev.get(&c)
        {
            self.succ.insert(p.clone(), e.event_type.to_string());
        }
        self.prev.insert(c, e.event_type.to_string());
    }
    fn forecast(&mut self, e: &Event) -> Forecast {
        let mut f = Forecast::default();
        if let Some(t) = self.succ.get(e.event_type.as_str()) {
            f.next.push(NextEvent {
                event_type: t.as_str().into(),
                probability: 1.0,
                expected_at: e.time,
            });
        }
        for k in e.distinct_keys() {
            f.entities.push(Prediction {
                entity: k,
                confidence: 1.0,
                expected_at: e.time,
                latest: e.time,
                event_type: None,
                relation: Relation::Same,
            });
        }
        f
    }
}

/// Cases as strings of one-letter types, e.g. `["abc", "ab"]`; events one second apart.
fn cases(cs: &[&str]) -> Vec<Event> {
    let mut out = Vec::new();
    for (ci, c) in cs.iter().enumerate() {
        for ch in c.chars() {
            let i = out.len();
            out.push(
                Event::new(
                    format!("e{i}"),
                    ch.to_string(),
                    Timestamp::from_secs(i as i64),
                )
                .with_entity(EntityRef::new("case", format!("{}", ci + 1)).with_role("case")),
            );
        }
    }
    out
}

fn run(events: &[Event], protocol: Protocol) -> Report {
    let opts = EvalOptions {
        protocol,
        horizon: Duration::from_secs(10),
        ..EvalOptions::default()
    };
    let mut m = LastSuccessor::default();
    let r = evaluate(&mut m, events, &opts, &mut |_, _| {});
    r.unwrap_or_else(|e| panic!("evaluate failed: {e}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn tax2017_by_hand() {
    // 6 cases: f = round(7/3) = 2, so 4 train and 2 test; the longest training case has 4.
    // Learned successors (last wins): a->c, b->d, c->d.
    // Test "abcde": prefixes 2..=min(4, 4): after b (d, want c) no, after c (d) yes,
    // after d (none, want e) no. Test "abd": prefix 2: after b (d) yes. 2 of 4.
    // If the model learned from test cases, b->c would be learned and "abd" would miss.
    let r = run(
        &cases(&["abcd", "abc", "abd", "ac", "abcde", "abd"]),
        Protocol::Tax2017,
    );
    assert_eq!(r.scored, 4);
    assert!(close(r.next_type_accuracy, 0.5), "{r:?}");
    // Bin 1.0: 2 of 3 right (|2/3 - 1| weighs 3/4); bin 0: the empty forecast, 0 of 1 at 0.
    assert!(close(r.ece, 0.25), "{r:?}");
    assert_eq!((r.train_cases, r.test_cases), (Some(4), Some(2)));
    assert_eq!(r.train_events, 12);
    assert_eq!(r.test_observe, "track");
    let json = serde_json::to_value(&r).unwrap_or_default();
    for field in [
        "protocol",
        "log",
        "model",
        "scored",
        "next_type_accuracy",
        "ece",
        "train_seconds",
        "predict_per_sec",
    ] {
        assert!(json.get(field).is_some(), "missing {field} in {json}");
    }
    assert_eq!(json["protocol"], "tax2017");
}

#[test]
fn tax2017_caps_prefixes_at_longest_training_case() {
    // 3 cases: f = round(4/3) = 1, 2 train (longest 2), 1 test; only prefix 2 is scored... but
    // min(len - 1, L) = min(4, 2) = 2 allows exactly one row.
    let r = run(&cases(&["ab", "ab", "abab"]), Protocol::Tax2017);
    assert_eq!(r.scored, 1);
    // After "ab": successor of b was never learned: wrong.
    assert!(close(r.next_type_accuracy, 0.0));
}

#[test]
fn tax2017_cases_are_runs_of_rows() {
    // Case "1" appears twice, split by case "2": three runs, 2 train, 1 test.
    let mut evs = cases(&["ab", "ab", "abc"]);
    for e in &mut evs[4..] {
        e.entities[0] = EntityRef::new("case", "1").with_role("case");
    }
    let r = run(&evs, Protocol::Tax2017);
    assert_eq!((r.train_cases, r.test_cases), (Some(2), Some(1)));
}

#[test]
fn pt2021_by_hand() {
    // 6 case ids: 4 train (floor of 80%), 2 test, every prefix 1..len-1 scored.
    // "abcde": after a (c, want b) no, b (d, want c) no, c (d) yes, d (none) no.
    // "abd": after a no, after b (d) yes. Micro 2/6; per length 0/2, 1/2, 1/1, 0/1 -> 0.375.
    let r = run(
        &cases(&["abcd", "abc", "abd", "ac", "abcde", "abd"]),
        Protocol::Pt2021,
    );
    assert_eq!(r.scored, 6);
    assert!(close(r.next_type_accuracy, 2.0 / 6.0), "{r:?}");
    assert!(close(r.mean_over_prefix_lengths.unwrap_or(-1.0), 0.375));
}

fn ev(i: usize, ty: &str, secs: i64, ents: &[&str]) -> Event {
    let mut e = Event::new(format!("e{i}"), ty, Timestamp::from_secs(secs));
    for x in ents {
        e = e.with_entity(EntityRef::new("k", *x));
    }
    e
}

#[test]
fn chrono_by_hand() {
    // 9 events, 6 train. Learned before scoring: a->c, b->a, c->b.
    let mut evs = vec![
        ev(0, "a", 0, &["x"]),
        ev(1, "b", 1, &["y"]),
        ev(2, "c", 2, &["x"]),
        ev(3, "a", 3, &["y"]),
        ev(4, "b", 4, &["x"]),
        ev(5, "c", 5, &["y"]),
        ev(6, "a", 6, &["x"]),
        ev(7, "b", 20, &["y", "z"]),
        ev(8, "c", 21, &["x", "y"]),
    ];
    // File order is not time order: the protocol sorts.
    evs.swap(0, 8);
    let r = run(&evs, Protocol::Chrono);
    // e6 (a): next on x is e8 (c); predicted c: right, time error |0 - 15|.
    // e7 (b): next on y or z is e8 (c); predicted a: wrong, time error |0 - 1|.
    // e8: nothing follows, not scored.
    assert_eq!(r.scored, 2);
    assert!(close(r.next_type_accuracy, 0.5));
    assert!(close(r.time_to_next_mae_s.unwrap_or(-1.0), 8.0));
    // Predicted {x}, {y, z}, {x, y}; truth sets (H = 10 s): {}, {x, y}, {}. One hit (y at e7).
    assert_eq!(r.entity_predicted, Some(5));
    assert_eq!(r.entity_truth, Some(2));
    assert!(close(r.entity_precision.unwrap_or(-1.0), 0.2));
    assert!(close(r.entity_recall.unwrap_or(-1.0), 0.5));
    assert_eq!(r.test_observe, "learn");
}

#[test]
fn chrono_truth_excludes_entities_first_seen_later() {
    // 9 events, 6 train. Scored: e6 at 6; in (6, 16], e7 touches "new" (first seen there, so
    // not in the truth set) and "x".
    let mut evs: Vec<Event> = (0..6).map(|i| ev(i, "a", i as i64, &["x"])).collect();
    evs.push(ev(6, "a", 6, &["q"]));
    evs.push(ev(7, "a", 7, &["new", "x"]));
    evs.push(ev(8, "a", 50, &["q"]));
    let r = run(&evs, Protocol::Chrono);
    // Truth: e6 -> {x}; e7 -> {}; e8 -> {}. Predictions: {q}, {new, x}, {q}: no hits.
    assert_eq!(r.entity_truth, Some(1));
    assert_eq!(r.entity_predicted, Some(4));
    assert!(close(r.entity_precision.unwrap_or(-1.0), 0.0));
}

#[test]
fn errors() {
    let opts = EvalOptions::default();
    let mut m = LastSuccessor::default();
    assert_eq!(
        evaluate(&mut m, &[], &opts, &mut |_, _| {}),
        Err(EvalError::EmptyLog)
    );
    let one = cases(&["abc"]);
    assert!(matches!(
        evaluate(&mut m, &one, &opts, &mut |_, _| {}),
        Err(EvalError::TooSmall { .. })
    ));
    assert_eq!("TAX2017".parse::<Protocol>(), Ok(Protocol::Tax2017));
    assert!("nope".parse::<Protocol>().is_err());
}
