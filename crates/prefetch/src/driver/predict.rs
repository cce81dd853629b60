//! The prediction step: ticks of quiet spells, one call to the predictor per run of events,
//! each bounded by the deadline, and the answers handed to the core event by event.
//!
//! Whatever the predictor is (a remote replica set, or an in-process model run off the runtime
//! by [`crate::Offloaded`]), it is awaited here, the same way, with the deadline: an answer that
//! does not come in time is a [`PredictError::Timeout`], which the core counts against the
//! breaker.

use std::sync::atomic::Ordering;
use std::time::Duration;

use prescient_core::{
    EntityKey, Event, Forecast, Observe, PredictError, PredictRequest, Predictor, Timestamp,
};

use super::Prefetcher;
use crate::planner::Offer;

/// A call for a batch may take the per-event deadline once per event, up to this many times.
const MAX_DEADLINES_PER_CALL: u32 = 10;

impl Prefetcher {
    /// Predicts `events` in order, ticking the quiet spells between them. Returns the
    /// predictions offered.
    pub(super) async fn predict_events(&self, events: &[Event]) -> usize {
        let predictor = self.predictor();
        let mut offered = 0;
        let mut start = 0;
        while start < events.len() {
            let end = self.next_split(events, start);
            if self.inner.event_time.load(Ordering::Relaxed) {
                self.tick_quiet(events[start].time, true).await;
            } else if start == 0 {
                self.tick_quiet(self.inner.clock.now(), false).await;
            }
            offered += self.predict_split(&events[start..end], &*predictor).await;
            start = end;
        }
        offered
    }

    /// With ticks and a clock that follows the events, a batch is split where a quiet spell of
    /// event time lies between two of its events, so that the spell is ticked before the events
    /// after it, as if they had come one by one. The very first event goes alone: it tells
    /// whether the clock follows the events. Returns the end of the split from `start`.
    fn next_split(&self, events: &[Event], start: usize) -> usize {
        let Some(every) = self.inner.cfg.tick.filter(|d| !d.is_zero()) else {
            return events.len();
        };
        if !self.inner.event_time.load(Ordering::Relaxed) {
            let first = self.state().core.last_event().is_none();
            return if first { start + 1 } else { events.len() };
        }
        let mut end = start + 1;
        while end < events.len() && events[end].time.since(events[end - 1].time) <= every {
            end += 1;
        }
        end
    }

    /// Predicts a run of events with no quiet spell inside: in one call while the breaker is
    /// closed, one probe at a time while it is half-open, none while it is open.
    async fn predict_split(&self, events: &[Event], predictor: &dyn Predictor) -> usize {
        let mut offered = 0;
        let mut i = 0;
        while i < events.len() {
            let now = self.inner.clock.now();
            let take = {
                let mut s = self.state();
                if s.core.breaker_closed(now) {
                    events.len() - i
                } else if s.core.allow_predict(now) {
                    1
                } else {
                    0
                }
            };
            if take == 0 {
                self.advance_to(&events[i]);
                self.processed(&events[i]);
                self.issue_due_settled().await;
                i += 1;
                continue;
            }
            let round = &events[i..i + take];
            i += take;
            self.tell_fills(predictor);
            let results = self.call(predictor, round, now).await;
            for (event, result) in round.iter().zip(results) {
                self.advance_to(event);
                let at = self.inner.clock.now();
                let n = self.take_forecast(at, Some(event), result);
                offered += n.unwrap_or(0);
                self.processed(event);
                self.issue_due_settled().await;
                if !self.state().core.breaker_closed(self.inner.clock.now()) {
                    // Failures opened the breaker: it would have refused the rest.
                    break;
                }
            }
        }
        offered
    }

    /// Tells the core's tick schedule that `event` was processed: at its own time, and, when
    /// the clock does not follow the events, at the clock's time too.
    fn processed(&self, event: &Event) {
        let wall = !self.inner.event_time.load(Ordering::Relaxed);
        let now = self.inner.clock.now();
        let mut s = self.state();
        s.core.on_event_time(event.time);
        if wall {
            s.core.on_activity(now);
        }
    }

    /// One call to the predictor for `events`, bounded by the deadline.
    async fn call(
        &self,
        predictor: &dyn Predictor,
        events: &[Event],
        now: Timestamp,
    ) -> Vec<Result<Forecast, PredictError>> {
        let per_event = self.inner.cfg.predict_timeout;
        let wait = per_event.saturating_mul(
            u32::try_from(events.len())
                .unwrap_or(u32::MAX)
                .clamp(1, MAX_DEADLINES_PER_CALL),
        );
        let deadline = now.plus(wait);
        let reqs: Vec<PredictRequest<'_>> = events
            .iter()
            .map(|event| PredictRequest {
                event,
                observe: Observe::Learn,
                deadline: Some(deadline),
            })
            .collect();
        match tokio::time::timeout(wait, predictor.predict_batch(&reqs)).await {
            Ok(mut answers) => {
                answers.resize_with(events.len(), || {
                    Err(PredictError::Internal(format!(
                        "{} gave fewer answers than requests",
                        predictor.name()
                    )))
                });
                answers
            }
            Err(_) => vec![Err(PredictError::Timeout); events.len()],
        }
    }

    /// Tells `predictor` which prefetches filled the cache since it was last told.
    fn tell_fills(&self, predictor: &dyn Predictor) {
        let fills: Vec<(EntityKey, Timestamp)> = self.state().core.take_fills();
        for (key, at) in &fills {
            predictor.filled(key, *at);
        }
    }

    /// Hands a prediction's outcome to the core (offering its entities); logs a failure.
    /// Returns the predictions offered, `None` for a failure.
    fn take_forecast(
        &self,
        now: Timestamp,
        event: Option<&Event>,
        result: Result<Forecast, PredictError>,
    ) -> Option<usize> {
        match result {
            Ok(forecast) => {
                let offers = forecast.entities.into_iter().map(|p| Offer {
                    key: p.entity,
                    confidence: p.confidence,
                    expected_at: p.expected_at,
                    latest: p.latest,
                    relation: p.relation,
                });
                self.state()
                    .core
                    .on_predicted(now, Ok::<_, &PredictError>(offers))
            }
            Err(error) => {
                self.state()
                    .core
                    .on_predicted(now, Err::<[Offer<EntityKey>; 0], _>(&error));
                let event = event.map_or("(tick)", |e| e.id.as_str());
                tracing::warn!(message = "Prediction failed.", %error, event);
                None
            }
        }
    }

    /// Ticks the predictor in the quiet spell before `until`, as the core schedules it, offering
    /// what comes due. `until_is_event`: `until` is the next event's time (else the wall
    /// clock). With a clock that follows the events, each tick moves it, and the loads due are
    /// issued as they fall due.
    pub(super) async fn tick_quiet(&self, until: Timestamp, until_is_event: bool) {
        let predictor = self.predictor();
        loop {
            let Some(at) = self.state().core.next_tick(until, until_is_event) else {
                return;
            };
            if self.inner.event_time.load(Ordering::Relaxed) {
                // The loads that fall due before the tick are issued at their own times.
                self.step_through_due(at).await;
            }
            if self.inner.clock.observe_event(at) {
                self.inner.event_time.store(true, Ordering::Relaxed);
            }
            self.issue_due_settled().await;
            let now = self.inner.clock.now();
            if !self.state().core.allow_predict(now) {
                continue;
            }
            self.tell_fills(&*predictor);
            let result = match tokio::time::timeout(
                self.inner.cfg.predict_timeout,
                predictor.tick(at),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(PredictError::Timeout),
            };
            self.take_forecast(self.inner.clock.now(), None, result);
            self.issue_due_settled().await;
            if self.inner.event_time.load(Ordering::Relaxed) {
                // Nothing else moves a clock that follows the events before the next tick or
                // event: step it through the loads that fall due in between.
                let every = self.inner.cfg.tick.unwrap_or(Duration::ZERO);
                self.step_through_due(until.min(at.plus(every))).await;
            }
        }
    }

    /// With a clock that follows the events, moves it to each load that falls due before
    /// `until` and issues it then, as the replay simulator does in virtual time.
    pub(super) async fn step_through_due(&self, until: Timestamp) {
        loop {
            let due = self.state().core.next_due();
            let Some(due) = due.filter(|d| *d < until) else {
                return;
            };
            if !self.inner.clock.observe_event(due) && due <= self.inner.clock.now() {
                // Due already and still not issued (budget or concurrency): leave it for later.
                self.issue_due_settled().await;
                return;
            }
            self.issue_due_settled().await;
        }
    }

    /// Time passed until `until` without an event: ticks the quiet spell before it, issues the
    /// loads that fell due (with a clock that follows the events, stepping it through them),
    /// and moves such a clock to `until`. A driver in virtual time calls this before the
    /// reads at `until`; `on_events` does it by itself for the events it is given.
    pub async fn advance(&self, until: Timestamp) {
        if self.inner.event_time.load(Ordering::Relaxed) {
            self.tick_quiet(until, true).await;
            self.step_through_due(until).await;
        }
        if self.inner.clock.observe_event(until) {
            self.inner.event_time.store(true, Ordering::Relaxed);
        }
        self.issue_due_settled().await;
    }

    /// [`Prefetcher::issue_due`], then, in lockstep ([`super::PrefetcherConfig::lockstep`]),
    /// waits for the loads to finish before time moves on.
    async fn issue_due_settled(&self) {
        self.issue_due();
        if self.inner.cfg.lockstep {
            self.drain().await;
        }
    }

    /// Tells the clock the time of `event` ([`prescient_core::Clock::observe_event`]), before
    /// its predictions are offered. A clock that follows the events moves only here and at
    /// ticks; the loads that become due are then issued event by event.
    pub(super) fn advance_to(&self, event: &Event) {
        if self.inner.clock.observe_event(event.time) {
            self.inner.event_time.store(true, Ordering::Relaxed);
        }
    }
}
