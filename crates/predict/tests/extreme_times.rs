//! Events at the ends of the time range do not hang or crash the models.
//!
//! The importers reject times outside `MIN_TIME..=MAX_TIME`, but a model is also fed by
//! other code: with a time near `i64::MAX` microseconds, window arithmetic saturates, and a
//! loop that waits for a window's start to pass a horizon must still end. Each case runs on a
//! thread and fails if it does not return in time (a hang before the fix).

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use prescient_core::{EntityRef, Event, Observe, OnlineModel, Timestamp};
use prescient_predict::{PrescientModel, ReuseConfig, ReuseModel};

/// Generous for a debug build: the calls below take milliseconds.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs `f` on a thread; fails if it panics or does not return within [`LIMIT`].
fn returns_in_time(name: &str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(()) => {
            let joined = handle.join();
            assert!(joined.is_ok(), "{name} panicked");
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{name} panicked"),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{name} did not return within {LIMIT:?}"),
    }
}

/// The times fed: the ends of the range (as seconds, milliseconds and microseconds saturate
/// to), just inside them, and a normal time after.
fn times() -> Vec<Timestamp> {
    vec![
        Timestamp::from_secs(1_700_000_000),
        Timestamp::from_secs(i64::MAX),
        Timestamp::from_millis(i64::MAX),
        Timestamp::from_micros(i64::MAX - 1),
        Timestamp::from_secs(i64::MIN),
        Timestamp::from_micros(i64::MIN + 1),
        Timestamp::from_secs(1_700_000_100),
    ]
}

/// Feeds `m` events of a few entities at the times of [`times`], in that order and in
/// reverse, learning from them, forecasting after each and asking for due windows.
fn feed(m: &mut impl OnlineModel) {
    let mut order = times();
    let reversed: Vec<_> = order.iter().rev().copied().collect();
    order.extend(reversed);
    for (i, t) in order.into_iter().enumerate() {
        let e = Event::new(format!("e{i}"), ["open", "read", "close"][i % 3], t)
            .with_entity(EntityRef::new("case", (i % 2).to_string()).with_role("case"))
            .with_entity(EntityRef::new("user", "u1"))
            .with_entity(EntityRef::new("block", (i % 4).to_string()));
        m.observe(&e, Observe::Learn);
        let _ = m.forecast(&e);
        let _ = m.forecast_due(t);
        m.filled(&e.entities[0].key(), t);
    }
}

#[test]
fn reuse_model_returns_on_extreme_times() {
    returns_in_time("reuse", || {
        feed(&mut ReuseModel::new(ReuseConfig::default()))
    });
}

#[test]
fn default_model_returns_on_extreme_times() {
    returns_in_time("online", || feed(&mut PrescientModel::default()));
}
