//! The windows that come due: entities whose next window starts within the horizon, predicted or
//! learned from.

use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;

use prescient_core::{Forecast, Prediction, Relation, Timestamp};

use super::ReuseModel;
use super::config::{COLD, REFRESH_ASSUMED};

impl ReuseModel {
    /// The windows that start within the next window after `now` (and after the last event),
    /// each predicted once, as predictions of `relation`.
    pub(super) fn windows_due(&mut self, now: i64, relation: Relation) -> Forecast {
        let mut f = Forecast::default();
        if self.window_us <= 0 {
            return f;
        }
        let now = self.now.max(now);
        let horizon = now.saturating_add(self.window_us);
        // Out of `self` for the loop, so that an entity's next window replaces its entry at
        // the top in place (one sift down) instead of a pop and a push. Nothing in the loop
        // reads the heap.
        let mut due = std::mem::take(&mut self.due);
        // Every step pops the top entry or moves it to a strictly later window (see below),
        // and an entry moves at most `max_windows` times: so the loop ends. The budget bounds
        // it even so, should saturated arithmetic at the ends of the time range break that
        // reasoning; it is never reached otherwise.
        let mut budget = (due.len() as u64)
            .saturating_add(1)
            .saturating_mul(u64::from(self.cfg.max_windows).saturating_add(1));
        while let Some(mut top) = due.peek_mut() {
            if budget == 0 {
                break;
            }
            budget -= 1;
            let Reverse((start, fill, slot)) = *top;
            if start > horizon {
                break;
            }
            let Some(mut st) = self
                .slots
                .get(slot as usize)
                .filter(|s| s.live)
                .map(|s| s.st)
            else {
                PeekMut::pop(top);
                continue;
            };
            if st.fill != fill {
                // Filled again since: the new copy's windows have their own entry.
                PeekMut::pop(top);
                continue;
            }
            let j = self.window_of(fill, start);
            let pre = self.prefix(&st);
            // Windows that have ended without a read are negatives.
            while st.learned + 1 < j
                && self
                    .start_of(st.fill, st.learned + 1)
                    .saturating_add(self.window_us)
                    <= now
            {
                st.learned += 1;
                self.learn(&st, &pre, st.learned, false);
            }
            let end = start.saturating_add(self.window_us);
            if end > now {
                let p = self.probability(&st, &pre, j);
                let p = self.calibrated(st.kind, p);
                self.predicted += 1;
                if p >= REFRESH_ASSUMED && !self.fed {
                    // No journal note: the window has just come within a window of `now`, so
                    // at no earlier time could the copy have been read in it.
                    st.refreshed = j;
                }
                st.cold = if p < COLD {
                    st.cold.saturating_add(1)
                } else {
                    0
                };
                if p >= self.cfg.min_confidence
                    && let Some(s) = self.slots.get(slot as usize)
                {
                    f.entities.push(Prediction {
                        entity: s.key.clone(),
                        confidence: p,
                        expected_at: Timestamp::from_micros(start),
                        latest: Timestamp::from_micros(end),
                        event_type: None,
                        relation,
                    });
                }
            }
            let cold = self.cfg.cold_windows;
            if j < self.cfg.max_windows {
                // A cold entity skips to its last window, where the windows that passed are
                // learned from.
                let next = if cold > 0 && st.cold >= cold && !st.asleep && self.may_sleep(&st) {
                    let cell = &mut self.sleep[Self::sleep_slot(&st)];
                    cell[0] = cell[0].saturating_add(1);
                    st.asleep = true;
                    self.cfg.max_windows
                } else {
                    j + 1
                };
                let next_start = self.start_of(fill, next);
                if next_start > start {
                    *top = Reverse((next_start, fill, slot));
                } else {
                    // The next window does not start later (the start saturated at the end
                    // of the time range): there are no more windows to predict.
                    PeekMut::pop(top);
                    st.scheduled = false;
                }
            } else {
                PeekMut::pop(top);
                st.scheduled = false;
            }
            if let Some(s) = self.slots.get_mut(slot as usize) {
                s.st = st;
            }
        }
        self.due = due;
        f.entities
            .sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        f
    }
}
