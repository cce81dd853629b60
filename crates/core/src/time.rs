//! Time: [`Timestamp`] and the [`Clock`] through which all time enters the system.
//!
//! **Architecture Invariant:** no code outside a `Clock` implementation reads the system time.
//! Replay swaps in a [`ManualClock`] and the real pipeline runs in virtual time.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time: microseconds since the Unix epoch, UTC.
///
/// Serialized as an RFC 3339 string (`2023-04-03T10:08:18Z`); deserialized from such a string
/// or from an integer number of milliseconds since the epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);
    /// The largest representable time; used as "never".
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    /// From microseconds since the epoch.
    pub const fn from_micros(us: i64) -> Self {
        Timestamp(us)
    }

    /// From milliseconds since the epoch (saturating).
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms.saturating_mul(1_000))
    }

    /// From seconds since the epoch (saturating).
    pub const fn from_secs(s: i64) -> Self {
        Timestamp(s.saturating_mul(1_000_000))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Seconds since the epoch, as a float.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// This time plus a duration (saturating).
    pub fn plus(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(duration_micros(d)))
    }

    /// This time minus a duration (saturating).
    pub fn minus(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_sub(duration_micros(d)))
    }

    /// The duration from `earlier` to `self`, or zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        let d = self.0.saturating_sub(earlier.0);
        if d <= 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(d as u64)
        }
    }

    /// Signed seconds from `earlier` to `self`.
    pub fn secs_since(self, earlier: Timestamp) -> f64 {
        (self.0.saturating_sub(earlier.0)) as f64 / 1e6
    }

    /// As a `chrono` UTC date-time, if in range.
    pub fn to_datetime(self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::from_timestamp_micros(self.0)
    }

    /// Parses an RFC 3339 / ISO 8601 date-time with an offset (`2023-04-03T10:08:18Z`,
    /// `2011-10-01T00:38:44.546+02:00`).
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        chrono::DateTime::parse_from_rfc3339(s.trim())
            .ok()
            .map(|dt| Timestamp(dt.timestamp_micros()))
    }
}

fn duration_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime() {
            Some(dt) => write!(
                f,
                "{}",
                dt.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            ),
            None => write!(f, "@{}us", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Reads a [`Timestamp`] straight from the token, without buffering it as an untagged enum
/// would (that tried the number first, and built an error for every text timestamp).
struct TimestampVisitor;

impl serde::de::Visitor<'_> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 timestamp (e.g. 2023-04-03T10:08:18Z) or Unix milliseconds")
    }

    fn visit_i64<E: serde::de::Error>(self, ms: i64) -> Result<Timestamp, E> {
        Ok(Timestamp::from_millis(ms))
    }

    fn visit_u64<E: serde::de::Error>(self, ms: u64) -> Result<Timestamp, E> {
        i64::try_from(ms)
            .map(Timestamp::from_millis)
            .map_err(|_| E::custom(format!("timestamp {ms} ms is out of range")))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Timestamp, E> {
        Timestamp::parse_rfc3339(s).ok_or_else(|| {
            E::custom(format!(
                "invalid timestamp {s:?}: expected RFC 3339, e.g. 2023-04-03T10:08:18Z"
            ))
        })
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TimestampVisitor)
    }
}

/// The source of "now". The only way time enters the system.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;

    /// Told the time of each event as the event is processed, in processing order. A clock that
    /// follows the events ([`EventClock`]) advances to it; the others ignore it (the default).
    /// Returns whether the clock moved, so that a driver knows to look for work that became due.
    fn observe_event(&self, time: Timestamp) -> bool {
        let _ = time;
        false
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }

    fn observe_event(&self, time: Timestamp) -> bool {
        (**self).observe_event(time)
    }
}

/// Wall-clock time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(duration_micros(d))
    }
}

/// Virtual time, moved explicitly. Used by replay and by tests.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock standing at `t`.
    pub fn new(t: Timestamp) -> Self {
        ManualClock(AtomicI64::new(t.0))
    }

    /// Moves the clock to `t`. Time never goes backwards: an earlier `t` is ignored.
    pub fn set(&self, t: Timestamp) {
        self.0.fetch_max(t.0, Ordering::AcqRel);
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(duration_micros(d), Ordering::AcqRel);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::Acquire))
    }
}

/// Event time: the clock stands at the latest time of the events processed so far, and moves
/// only when an event is observed ([`Clock::observe_event`]); it never goes backwards, so an
/// event older than one already seen leaves it where it is.
///
/// This is the time frame of replay's virtual time, for a live process fed a recorded log
/// faster (or slower) than it happened: predictions are scheduled, and expire, in the log's
/// time rather than against a wall clock that has nothing to do with it.
#[derive(Debug)]
pub struct EventClock(AtomicI64);

impl EventClock {
    /// A clock standing at `start` until the first later event is observed.
    pub fn new(start: Timestamp) -> Self {
        EventClock(AtomicI64::new(start.0))
    }
}

impl Default for EventClock {
    /// A clock standing at the earliest representable time, so that the first event sets it.
    fn default() -> Self {
        EventClock(AtomicI64::new(i64::MIN))
    }
}

impl Clock for EventClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::Acquire))
    }

    fn observe_event(&self, time: Timestamp) -> bool {
        self.0.fetch_max(time.0, Ordering::AcqRel) < time.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::parse_rfc3339("2011-10-01T00:38:44.546+02:00").unwrap();
        assert_eq!(t.to_string(), "2011-09-30T22:38:44.546Z");
        let json = serde_json::to_string(&t).unwrap();
        let back: Timestamp = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
        let ms: Timestamp = serde_json::from_str("1500").unwrap();
        assert_eq!(ms, Timestamp::from_millis(1500));
        let neg: Timestamp = serde_json::from_str("-1500").unwrap();
        assert_eq!(neg, Timestamp::from_millis(-1500));
        let bad = |json: &str| {
            serde_json::from_str::<Timestamp>(json)
                .unwrap_err()
                .to_string()
        };
        assert!(bad("\"yesterday\"").contains("invalid timestamp \"yesterday\""));
        assert!(bad("1.5").contains("expected an RFC 3339 timestamp"));
        assert!(bad("18446744073709551615").contains("out of range"));
    }

    #[test]
    fn event_clock_follows_the_events_and_never_goes_back() {
        let c = EventClock::default();
        assert!(c.observe_event(Timestamp::from_secs(100)));
        assert_eq!(c.now(), Timestamp::from_secs(100));
        assert!(!c.observe_event(Timestamp::from_secs(40)));
        assert_eq!(c.now(), Timestamp::from_secs(100), "an older event");
        assert!(!c.observe_event(Timestamp::from_secs(100)), "the same time");
        assert!(c.observe_event(Timestamp::from_secs(160)));
        let shared: Arc<dyn Clock> = Arc::new(c);
        assert_eq!(shared.now(), Timestamp::from_secs(160));
        assert!(shared.observe_event(Timestamp::from_secs(200)));
        assert_eq!(shared.now(), Timestamp::from_secs(200), "through an Arc");
        // Other clocks ignore events.
        let m = ManualClock::new(Timestamp::from_secs(1));
        assert!(!m.observe_event(Timestamp::from_secs(50)));
        assert_eq!(m.now(), Timestamp::from_secs(1));
        assert!(!SystemClock.observe_event(Timestamp::MAX));
    }

    #[test]
    fn manual_clock_never_goes_back() {
        let c = ManualClock::new(Timestamp::from_secs(10));
        c.set(Timestamp::from_secs(5));
        assert_eq!(c.now(), Timestamp::from_secs(10));
        c.advance(Duration::from_millis(2));
        assert_eq!(c.now(), Timestamp::from_micros(10_002_000));
        assert_eq!(
            c.now().since(Timestamp::from_secs(10)),
            Duration::from_millis(2)
        );
        assert_eq!(
            Timestamp::from_secs(1).since(Timestamp::from_secs(2)),
            Duration::ZERO
        );
    }
}
