//! The [`Predictor`] seam: local or remote, async, fallible, with a deadline.

use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::entity::EntityKey;
use crate::event::Event;
use crate::prediction::Forecast;
use crate::time::Timestamp;

/// Why a prediction failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PredictError {
    /// The predictor did not answer before the deadline.
    #[error("predictor timed out")]
    Timeout,
    /// The predictor cannot be reached or is not ready.
    #[error("predictor unavailable: {0}")]
    Unavailable(String),
    /// The predictor failed internally.
    #[error("predictor failed: {0}")]
    Internal(String),
}

/// One request to a predictor.
#[derive(Debug, Clone, Copy)]
pub struct PredictRequest<'a> {
    /// The event that just happened.
    pub event: &'a Event,
    /// What the predictor does with the event besides predicting.
    pub observe: Observe,
    /// The time by which an answer is useful; a remote predictor gives up after it.
    pub deadline: Option<Timestamp>,
}

impl<'a> PredictRequest<'a> {
    /// A request that learns from `event` and has no deadline.
    pub fn learning(event: &'a Event) -> Self {
        PredictRequest {
            event,
            observe: Observe::Learn,
            deadline: None,
        }
    }
}

/// What a model does with an event it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Observe {
    /// Update the context (the entities' recent history) and learn statistics: the live stream.
    Learn,
    /// Update the context only: scoring held-out data, where learning would be cheating.
    Track,
    /// Neither: what-if queries (`/predict`, `explain`).
    Skip,
}

/// Predicts what follows an event: next event types and the entities they will touch.
///
/// Implementations may be in-process ([`Local`]) or remote (a replica set with failover).
/// Callers wrap them in a circuit breaker: an error or a timeout is counted against the
/// predictor, never propagated to consumers.
#[async_trait]
pub trait Predictor: Send + Sync + fmt::Debug {
    /// A short name for logs and reports (`online`, `neural`, `ensemble`).
    fn name(&self) -> &str;

    /// Observes `req.event` as `req.observe` says, then predicts what follows it.
    ///
    /// # Errors
    /// [`PredictError`] when the predictor cannot answer in time.
    ///
    /// # Cancel safety
    /// Dropping the future before it completes may lose the learning step of this event,
    /// never corrupt the model.
    async fn predict(&self, req: PredictRequest<'_>) -> Result<Forecast, PredictError>;

    /// Predicts for several events that arrived together, in order. Implementations that can
    /// batch (a neural network) override this; the default calls [`Predictor::predict`] in turn.
    async fn predict_batch(
        &self,
        reqs: &[PredictRequest<'_>],
    ) -> Vec<Result<Forecast, PredictError>> {
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            out.push(self.predict(*r).await);
        }
        out
    }

    /// Predictions that come due by the passage of time alone, at `now`, between events (see
    /// [`OnlineModel::forecast_due`]). Drivers call it every few minutes of event time; the
    /// default predicts nothing.
    ///
    /// # Errors
    /// [`PredictError`] when the predictor cannot answer in time.
    async fn tick(&self, now: Timestamp) -> Result<Forecast, PredictError> {
        let _ = now;
        Ok(Forecast::default())
    }

    /// Tells the predictor that a prefetch of `key` filled the cache at `at` (see
    /// [`OnlineModel::filled`]). The default ignores it.
    fn filled(&self, key: &EntityKey, at: Timestamp) {
        let _ = (key, at);
    }
}

/// A synchronous, in-process model that learns online. Wrap it in [`Local`] to get a [`Predictor`].
pub trait OnlineModel: Send + fmt::Debug {
    /// A short name for logs and reports.
    fn name(&self) -> &str;
    /// Updates the context with `event` and, for [`Observe::Learn`], learns from it.
    /// [`Observe::Skip`] is never passed here.
    fn observe(&mut self, event: &Event, mode: Observe);
    /// Predicts what follows `event`, given everything observed so far.
    fn forecast(&mut self, event: &Event) -> Forecast;
    /// Predictions that come due by the passage of time alone, at `now` (no event): a refresh
    /// due before the next event arrives, say. Drivers call it every few minutes of (event)
    /// time between events; `now` never goes back. The default predicts nothing.
    fn forecast_due(&mut self, now: Timestamp) -> Forecast {
        let _ = now;
        Forecast::default()
    }
    /// Tells the model the cache's data-age limit (`None`: entries never expire), so that it
    /// can time refreshes to it. The default ignores it.
    fn set_max_age(&mut self, max_age: Option<std::time::Duration>) {
        let _ = max_age;
    }
    /// Whether a next-type confidence is lowered where the context holds event types the
    /// model never learned (on unless turned off, for models that have such a discount). A
    /// model whose forecasts are mixed with another's and then recalibrated as a whole (the
    /// neural ensemble) turns it off: there its confidences rank types, and the mix's own
    /// calibration says how sure the mix is. The default ignores it.
    fn set_novelty_discount(&mut self, on: bool) {
        let _ = on;
    }
    /// For events that arrived together, in order: observes each as its mode says (unless
    /// [`Observe::Skip`]) and forecasts what follows it. The answers are those of `observe`
    /// then `forecast` event by event (the default does exactly that); a model that can share
    /// work across events, such as one forward pass of a network for many cases, overrides it.
    fn process_batch(&mut self, items: &[(&Event, Observe)]) -> Vec<Forecast> {
        process_each(self, items)
    }
    /// Tells the model that a prefetch of `key` filled the cache at `at`: a model that times
    /// refreshes to the age of the cached copy then knows when the copy was filled, instead of
    /// assuming which of its predictions were loaded. The default ignores it.
    fn filled(&mut self, key: &EntityKey, at: Timestamp) {
        let _ = (key, at);
    }
}

/// [`OnlineModel::process_batch`] event by event: `observe` (unless [`Observe::Skip`]) then
/// `forecast`, for each event in order. The default, and the fallback of models that batch only
/// some of the time.
pub fn process_each<M: OnlineModel + ?Sized>(
    model: &mut M,
    items: &[(&Event, Observe)],
) -> Vec<Forecast> {
    items
        .iter()
        .map(|&(event, mode)| {
            if mode != Observe::Skip {
                model.observe(event, mode);
            }
            model.forecast(event)
        })
        .collect()
}

impl<M: OnlineModel + ?Sized> OnlineModel for Box<M> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn observe(&mut self, event: &Event, mode: Observe) {
        (**self).observe(event, mode)
    }
    fn forecast(&mut self, event: &Event) -> Forecast {
        (**self).forecast(event)
    }
    fn forecast_due(&mut self, now: Timestamp) -> Forecast {
        (**self).forecast_due(now)
    }
    fn set_max_age(&mut self, max_age: Option<std::time::Duration>) {
        (**self).set_max_age(max_age)
    }
    fn set_novelty_discount(&mut self, on: bool) {
        (**self).set_novelty_discount(on)
    }
    fn process_batch(&mut self, items: &[(&Event, Observe)]) -> Vec<Forecast> {
        (**self).process_batch(items)
    }
    fn filled(&mut self, key: &EntityKey, at: Timestamp) {
        (**self).filled(key, at)
    }
}

/// An [`OnlineModel`] served in-process as a [`Predictor`]. Its futures are always ready.
#[derive(Debug)]
pub struct Local<M> {
    model: Mutex<M>,
    name: String,
}

impl<M: OnlineModel> Local<M> {
    /// Serves `model`.
    pub fn new(model: M) -> Self {
        let name = model.name().to_owned();
        Local {
            model: Mutex::new(model),
            name,
        }
    }

    /// Runs `f` with the model locked (for snapshots and explanations).
    ///
    /// A panic in `f` (a model's bug, or an input it cannot handle) is caught here and answered
    /// as [`PredictError::Internal`]; the lock is not poisoned, so the next call runs again, and
    /// a swapped-in model serves as usual. The model may have been left part way through an
    /// update: it stays usable, as every model's state is plain data, but it is up to the
    /// breaker and the operator to decide whether to keep it.
    pub fn with_model<R>(&self, f: impl FnOnce(&mut M) -> R) -> Result<R, PredictError> {
        // A panic caught below never leaves the guard behind poisoned; one from elsewhere
        // (there is none) would be recovered the same way.
        let mut m = self.model.lock().unwrap_or_else(|p| p.into_inner());
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut m))).map_err(|panic| {
            PredictError::Internal(format!("model panicked: {}", panic_message(&*panic)))
        })
    }

    /// Replaces the model (hot swap); returns the old one. Events in flight finish on the old one.
    pub fn swap(&self, model: M) -> Result<M, PredictError> {
        self.with_model(|m| std::mem::replace(m, model))
    }

    /// Learns and predicts synchronously; what [`Predictor::predict`] does, without a future.
    pub fn predict_now(&self, req: PredictRequest<'_>) -> Result<Forecast, PredictError> {
        self.with_model(|m| Self::learn_and_forecast(m, req))
    }

    /// [`Local::predict_now`] for several events in order, with the model locked once.
    pub fn predict_batch_now(
        &self,
        reqs: &[PredictRequest<'_>],
    ) -> Vec<Result<Forecast, PredictError>> {
        let items: Vec<(&Event, Observe)> = reqs.iter().map(|r| (r.event, r.observe)).collect();
        match self.with_model(|m| m.process_batch(&items)) {
            Ok(out) => out.into_iter().map(Ok).collect(),
            Err(e) => reqs.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    fn learn_and_forecast(m: &mut M, req: PredictRequest<'_>) -> Forecast {
        if req.observe != Observe::Skip {
            m.observe(req.event, req.observe);
        }
        m.forecast(req.event)
    }
}

/// The message of a caught panic, if it is text.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[async_trait]
impl<M: OnlineModel> Predictor for Local<M> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn predict(&self, req: PredictRequest<'_>) -> Result<Forecast, PredictError> {
        self.predict_now(req)
    }

    async fn tick(&self, now: Timestamp) -> Result<Forecast, PredictError> {
        self.with_model(|m| m.forecast_due(now))
    }

    async fn predict_batch(
        &self,
        reqs: &[PredictRequest<'_>],
    ) -> Vec<Result<Forecast, PredictError>> {
        self.predict_batch_now(reqs)
    }

    fn filled(&self, key: &EntityKey, at: Timestamp) {
        // A failure is reported by the next prediction; a lost fill only costs accuracy.
        let _ = self.with_model(|m| m.filled(key, at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::EntityRef;
    use futures::FutureExt;

    #[derive(Debug, Default)]
    struct Counter(usize);

    impl OnlineModel for Counter {
        fn name(&self) -> &str {
            "counter"
        }
        fn observe(&mut self, _: &Event, mode: Observe) {
            if mode == Observe::Learn {
                self.0 += 1;
            }
        }
        fn forecast(&mut self, e: &Event) -> Forecast {
            let mut f = Forecast::default();
            f.next.push(crate::prediction::NextEvent {
                event_type: format!("seen-{}", self.0).into(),
                probability: 1.0,
                expected_at: e.time,
            });
            f
        }
    }

    #[test]
    fn local_is_always_ready_and_learns_only_when_asked() {
        let p = Local::new(Counter::default());
        let e = Event::new("e", "t", Timestamp::EPOCH).with_entity(EntityRef::new("k", "1"));
        let f = p
            .predict(PredictRequest::learning(&e))
            .now_or_never()
            .unwrap()
            .unwrap();
        assert_eq!(f.top().unwrap().event_type, "seen-1");
        let req = PredictRequest {
            event: &e,
            observe: Observe::Skip,
            deadline: None,
        };
        let f = p.predict(req).now_or_never().unwrap().unwrap();
        assert_eq!(f.top().unwrap().event_type, "seen-1");
    }

    #[test]
    fn local_predicts_a_batch_in_order() {
        let p = Local::new(Counter::default());
        let e = Event::new("e", "t", Timestamp::EPOCH).with_entity(EntityRef::new("k", "1"));
        let skip = PredictRequest {
            event: &e,
            observe: Observe::Skip,
            deadline: None,
        };
        let reqs = [
            PredictRequest::learning(&e),
            skip,
            PredictRequest::learning(&e),
        ];
        let got: Vec<String> = p
            .predict_batch_now(&reqs)
            .into_iter()
            .map(|f| f.unwrap().top().unwrap().event_type.to_string())
            .collect();
        assert_eq!(got, ["seen-1", "seen-1", "seen-2"]);
    }

    #[derive(Debug, Default)]
    struct Panicky(u32);

    impl OnlineModel for Panicky {
        fn name(&self) -> &str {
            "panicky"
        }
        fn observe(&mut self, _: &Event, _: Observe) {
            self.0 += 1;
            assert!(self.0.is_multiple_of(2), "odd event {}", self.0);
        }
        fn forecast(&mut self, _: &Event) -> Forecast {
            Forecast::default()
        }
    }

    #[test]
    fn a_panicking_model_is_an_error_and_the_next_call_runs_again() {
        let p = Local::new(Panicky::default());
        let e = Event::new("e", "t", Timestamp::EPOCH);
        let first = p.predict_now(PredictRequest::learning(&e));
        assert!(
            matches!(&first, Err(PredictError::Internal(m)) if m.contains("odd event 1")),
            "{first:?}"
        );
        assert!(p.predict_now(PredictRequest::learning(&e)).is_ok());
        let swapped = p.swap(Panicky(1)).unwrap();
        assert_eq!(swapped.0, 2);
        assert!(p.predict_now(PredictRequest::learning(&e)).is_ok());
    }
}
