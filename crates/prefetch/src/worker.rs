//! [`Offloaded`]: an in-process predictor run on a thread of its own, so that it can be given up
//! on.
//!
//! An in-process model computes on the thread that polls it. Awaited on an async worker, a slow
//! one holds up the cache reads and acks of the runtime, and one that never returns (a bug, an
//! input it loops on) cannot be abandoned by a timeout at all. `Offloaded` wraps any
//! [`Predictor`] and runs its calls, one after the other, on a dedicated thread: the caller's
//! future only waits for the answer, so the driver's deadline abandons it like a remote call,
//! and the breaker opens. A panic in the model is caught and answered as an error. While a call
//! the driver gave up on is still running, later calls wait in a short queue; when it is full
//! they fail at once (`model busy`), so a wedged model costs each event nothing more than a
//! refused call, and the node serves as a plain cache.
//!
//! The driver code is the same for this adapter and a remote predictor: both are awaited with
//! the deadline.

use std::fmt;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::channel::oneshot;
use futures::executor::block_on;
use prescient_core::{
    EntityKey, Event, Forecast, Observe, PredictError, PredictRequest, Predictor, Timestamp,
    panic_message,
};

/// Calls that may wait while one runs.
const QUEUE: usize = 4;

type Answers = Vec<Result<Forecast, PredictError>>;

enum Job {
    Predict {
        items: Vec<(Event, Observe, Option<Timestamp>)>,
        fills: Vec<(EntityKey, Timestamp)>,
        reply: oneshot::Sender<Answers>,
    },
    Tick {
        now: Timestamp,
        fills: Vec<(EntityKey, Timestamp)>,
        reply: oneshot::Sender<Result<Forecast, PredictError>>,
    },
}

/// Runs a predictor's calls on a thread of its own. See the module docs.
pub struct Offloaded {
    name: String,
    inner: Arc<dyn Predictor>,
    jobs: SyncSender<Job>,
    /// Fills reported since the last call; they go to the model before it.
    fills: Mutex<Vec<(EntityKey, Timestamp)>>,
}

impl fmt::Debug for Offloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Offloaded")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Offloaded {
    /// Runs `inner` on a new thread named after it.
    ///
    /// # Errors
    /// The OS error when the thread cannot be started.
    pub fn new(inner: Arc<dyn Predictor>) -> std::io::Result<Self> {
        let (jobs, rx) = sync_channel::<Job>(QUEUE);
        let model = inner.clone();
        std::thread::Builder::new()
            .name(format!("model-{}", inner.name()))
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    run(&*model, job);
                }
            })?;
        Ok(Offloaded {
            name: inner.name().to_owned(),
            inner,
            jobs,
            fills: Mutex::new(Vec::new()),
        })
    }

    /// The predictor it runs (for snapshots and explanations, which take its lock directly).
    pub fn inner(&self) -> &Arc<dyn Predictor> {
        &self.inner
    }

    fn take_fills(&self) -> Vec<(EntityKey, Timestamp)> {
        std::mem::take(&mut *self.fills.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn send(&self, job: Job) -> Result<(), PredictError> {
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => {
                PredictError::Unavailable(format!("model {} busy with earlier calls", self.name))
            }
            TrySendError::Disconnected(_) => {
                PredictError::Internal(format!("model {}'s thread has ended", self.name))
            }
        })
    }
}

/// Runs one job on the model's thread, catching a panic.
fn run(model: &dyn Predictor, job: Job) {
    let catch = |f: &mut dyn FnMut()| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .map_err(|p| PredictError::Internal(format!("model panicked: {}", panic_message(&*p))))
    };
    match job {
        Job::Predict {
            items,
            fills,
            reply,
        } => {
            let n = items.len();
            let mut out: Answers = Vec::new();
            let caught = catch(&mut || {
                for (key, at) in &fills {
                    model.filled(key, *at);
                }
                let reqs: Vec<PredictRequest<'_>> = items
                    .iter()
                    .map(|(event, observe, deadline)| PredictRequest {
                        event,
                        observe: *observe,
                        deadline: *deadline,
                    })
                    .collect();
                out = block_on(model.predict_batch(&reqs));
            });
            if let Err(e) = caught {
                out = vec![Err(e); n];
            }
            // The caller may have given up; nothing to do then.
            let _ = reply.send(out);
        }
        Job::Tick { now, fills, reply } => {
            let mut out = Ok(Forecast::default());
            let caught = catch(&mut || {
                for (key, at) in &fills {
                    model.filled(key, *at);
                }
                out = block_on(model.tick(now));
            });
            let _ = reply.send(caught.and(out));
        }
    }
}

#[async_trait]
impl Predictor for Offloaded {
    fn name(&self) -> &str {
        &self.name
    }

    async fn predict(&self, req: PredictRequest<'_>) -> Result<Forecast, PredictError> {
        self.predict_batch(std::slice::from_ref(&req))
            .await
            .pop()
            .unwrap_or_else(|| Err(PredictError::Internal("no answer".into())))
    }

    async fn predict_batch(&self, reqs: &[PredictRequest<'_>]) -> Answers {
        let (reply, answer) = oneshot::channel();
        let job = Job::Predict {
            items: reqs
                .iter()
                .map(|r| (r.event.clone(), r.observe, r.deadline))
                .collect(),
            fills: self.take_fills(),
            reply,
        };
        if let Err(e) = self.send(job) {
            return vec![Err(e); reqs.len()];
        }
        match answer.await {
            Ok(out) if out.len() == reqs.len() => out,
            Ok(out) => vec![
                Err(PredictError::Internal(format!(
                    "{} gave {} answers for {} requests",
                    self.name,
                    out.len(),
                    reqs.len()
                )));
                reqs.len()
            ],
            Err(_) => vec![
                Err(PredictError::Internal(format!(
                    "model {}'s thread ended",
                    self.name
                )));
                reqs.len()
            ],
        }
    }

    async fn tick(&self, now: Timestamp) -> Result<Forecast, PredictError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Tick {
            now,
            fills: self.take_fills(),
            reply,
        })?;
        answer
            .await
            .unwrap_or_else(|_| Err(PredictError::Internal("the model's thread ended".into())))
    }

    fn filled(&self, key: &EntityKey, at: Timestamp) {
        self.fills
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((key.clone(), at));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: an unwrap that fails is a failed test

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use prescient_core::{EntityRef, Local, OnlineModel};

    use super::*;

    /// Panics on events of type `boom`, loops until released on `hang`, records fills.
    #[derive(Debug, Default)]
    struct Model {
        release: Arc<AtomicBool>,
        fills: Vec<EntityKey>,
    }

    impl OnlineModel for Model {
        fn name(&self) -> &str {
            "model"
        }
        fn observe(&mut self, e: &Event, _: Observe) {
            assert!(e.event_type != "boom", "boom");
            while e.event_type == "hang" && !self.release.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        fn forecast(&mut self, _: &Event) -> Forecast {
            let mut f = Forecast::default();
            f.next.push(prescient_core::NextEvent {
                event_type: format!("fills-{}", self.fills.len()).into(),
                probability: 1.0,
                expected_at: Timestamp::EPOCH,
            });
            f
        }
        fn filled(&mut self, key: &EntityKey, _: Timestamp) {
            self.fills.push(key.clone());
        }
    }

    fn ev(t: &str) -> Event {
        Event::new("e", t, Timestamp::EPOCH).with_entity(EntityRef::new("k", "1"))
    }

    #[test]
    fn answers_on_its_own_thread_with_fills_delivered_first() {
        let p = Offloaded::new(Arc::new(Local::new(Model::default()))).unwrap();
        p.filled(&EntityKey::new("k", "1"), Timestamp::EPOCH);
        let e = ev("t");
        let got = block_on(p.predict_batch(&[PredictRequest::learning(&e)]));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap().next[0].event_type, "fills-1");
    }

    #[test]
    fn a_panic_is_an_error_and_the_model_serves_on() {
        let p = Offloaded::new(Arc::new(Local::new(Model::default()))).unwrap();
        let (boom, ok) = (ev("boom"), ev("t"));
        let got = block_on(p.predict_batch(&[PredictRequest::learning(&boom)]));
        assert!(matches!(&got[0], Err(PredictError::Internal(m)) if m.contains("boom")));
        assert!(block_on(p.predict(PredictRequest::learning(&ok))).is_ok());
    }

    #[tokio::test]
    async fn a_hung_model_can_be_given_up_on_and_then_refuses_at_once() {
        let release = Arc::new(AtomicBool::new(false));
        let model = Model {
            release: release.clone(),
            ..Model::default()
        };
        let p = Arc::new(Offloaded::new(Arc::new(Local::new(model))).unwrap());
        let hang = ev("hang");
        let waited = tokio::time::timeout(
            Duration::from_millis(50),
            p.predict(PredictRequest::learning(&hang)),
        )
        .await;
        assert!(waited.is_err(), "the deadline abandons the call");
        // The queue fills with calls nobody waits for, then calls are refused at once.
        let ok = ev("t");
        for _ in 0..QUEUE {
            let _ = tokio::time::timeout(
                Duration::from_millis(1),
                p.predict(PredictRequest::learning(&ok)),
            )
            .await;
        }
        let refused = p.predict(PredictRequest::learning(&ok)).await;
        assert!(
            matches!(&refused, Err(PredictError::Unavailable(m)) if m.contains("busy")),
            "{refused:?}"
        );
        release.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(p.predict(PredictRequest::learning(&ok)).await.is_ok());
    }
}
