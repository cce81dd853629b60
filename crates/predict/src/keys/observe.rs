//! The [`OnlineModel`] implementation: decompose an event, learn, and forecast.

use prescient_core::{Event, Forecast, Observe, OnlineModel};

use super::KeyModel;

impl OnlineModel for KeyModel {
    fn name(&self) -> &str {
        "keys"
    }

    fn observe(&mut self, event: &Event, mode: Observe) {
        if mode == Observe::Skip {
            return;
        }
        let learn = mode == Observe::Learn;
        let now = event.time;
        if let Some(prev) = self.last_time {
            let gap = now.as_micros().saturating_sub(prev.as_micros()).max(0) as f64;
            self.gap_us = if self.event_no <= 1 {
                gap
            } else {
                0.999 * self.gap_us + 0.001 * gap
            };
        }
        self.last_time = Some(now);
        self.event_no += 1;
        self.decompose(event);
        if learn {
            self.learn_successors();
        }
        self.resolve_old(learn);
        if learn {
            self.push_pending();
            self.resolve_readahead();
        }
        self.follow_streams(now, learn);
        self.last_event = Some((event.id.clone(), event.time));
    }

    fn forecast(&mut self, event: &Event) -> Forecast {
        let now = event.time;
        let current = self.is_current(event);
        if !current {
            self.decompose(event);
            self.touched.clear();
        }
        let latest = self.latest(now);
        let mut out = Vec::new();
        self.forecast_successors(now, latest, &mut out);
        if current {
            self.forecast_streams(now, latest, &mut out);
            self.touched.clear();
        }
        out.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        Forecast {
            next: Vec::new(),
            entities: out,
            novelty_discount: None,
        }
    }
}
