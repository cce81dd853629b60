//! When quiet spells are ticked: after [`super::CoreConfig::tick`] of time without an event,
//! and every as long after that, until the next event.

use std::time::Duration;

use prescient_core::Timestamp;

/// The most ticks in one quiet spell: a long spell is ticked only in its last this many ticks.
pub const MAX_QUIET_TICKS: u32 = 288;

#[derive(Debug, Clone)]
pub(crate) struct Ticks {
    every: Option<Duration>,
    /// The last event processed or tick (`None` before the first event).
    last_activity: Option<Timestamp>,
    /// The latest event time seen.
    last_event: Option<Timestamp>,
}

impl Ticks {
    pub fn new(every: Option<Duration>) -> Self {
        Ticks {
            every: every.filter(|d| !d.is_zero()),
            last_activity: None,
            last_event: None,
        }
    }

    pub fn on_event(&mut self, t: Timestamp) {
        self.on_activity(t);
        self.last_event = Some(self.last_event.map_or(t, |l| l.max(t)));
    }

    pub fn last_event(&self) -> Option<Timestamp> {
        self.last_event
    }

    pub fn on_activity(&mut self, t: Timestamp) {
        self.last_activity = Some(self.last_activity.map_or(t, |l| l.max(t)));
    }

    /// See [`super::PrefetchCore::next_tick`].
    pub fn next(&mut self, until: Timestamp, until_is_event: bool) -> Option<Timestamp> {
        let every = self.every?;
        let span = every.saturating_mul(MAX_QUIET_TICKS);
        let last = self.last_activity?.max(until.minus(span));
        let at = last.plus(every);
        if at >= until {
            return None;
        }
        if !until_is_event && self.last_event.is_none_or(|e| at.since(e) > span) {
            return None;
        }
        self.last_activity = Some(at);
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: i64) -> Timestamp {
        Timestamp::from_secs(v * 3600)
    }

    fn all(t: &mut Ticks, until: Timestamp, event: bool) -> Vec<Timestamp> {
        std::iter::from_fn(|| t.next(until, event)).collect()
    }

    #[test]
    fn a_quiet_spell_is_ticked_every_period_until_the_next_event() {
        let mut t = Ticks::new(Some(Duration::from_secs(3600)));
        assert_eq!(t.next(h(5), true), None, "nothing before the first event");
        t.on_event(h(0));
        assert_eq!(all(&mut t, h(3), true), [h(1), h(2)]);
        t.on_event(h(3));
        assert_eq!(
            all(&mut t, h(4), true),
            [],
            "no tick at the next event itself"
        );
    }

    #[test]
    fn a_long_spell_is_ticked_in_its_last_ticks_only() {
        let mut t = Ticks::new(Some(Duration::from_secs(3600)));
        t.on_event(h(0));
        let ticks = all(&mut t, h(1000), true);
        assert_eq!(ticks.len(), MAX_QUIET_TICKS as usize - 1);
        assert_eq!(ticks.last(), Some(&h(999)));
    }

    #[test]
    fn a_wall_clock_far_past_the_events_is_not_ticked() {
        let mut t = Ticks::new(Some(Duration::from_secs(3600)));
        t.on_event(h(0));
        assert_eq!(all(&mut t, h(10_000), false), []);
        assert_eq!(all(&mut t, h(3), false), [h(1), h(2)]);
    }

    #[test]
    fn no_period_no_ticks() {
        let mut t = Ticks::new(None);
        t.on_event(h(0));
        assert_eq!(t.next(h(10), true), None);
    }
}
