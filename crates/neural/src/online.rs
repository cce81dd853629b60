//! Serving a model online: [`ContextStore`] keeps each case's recent history and the network's
//! state after its last event (a GRU's hidden state, a Transformer's keys and values), so a
//! prediction costs one step, and
//! [`NeuralPredictor`] wraps it as an [`OnlineModel`].
//!
//! A case is the entity of an event whose role is `case`, else its first entity. Cases are
//! evicted least recently used. The hidden state is carried incrementally, so it reads the
//! whole case even past `max_len` events; after a model swap it is rebuilt from the kept
//! history (the last `max_len` events).

use std::collections::{HashSet, VecDeque};
use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use prescient_core::{EntityKey, Event, Forecast, NextEvent, Observe, OnlineModel, Timestamp};
use smol_str::SmolStr;

use crate::error::NeuralError;
use crate::model::{CaseState, NeuralModel, NextTypeDistribution, StepInput};
use crate::slot::ModelSlot;

/// Default number of cases whose context is kept.
pub const DEFAULT_MAX_CASES: usize = 100_000;

/// The case an event belongs to: the entity with role `case`, else the first entity.
pub fn case_key(event: &Event) -> Option<EntityKey> {
    event
        .entities
        .iter()
        .find(|r| r.role.as_deref() == Some("case"))
        .or_else(|| event.entities.first())
        .map(|r| r.key())
}

/// What is kept of one case.
#[derive(Debug, Clone)]
struct CaseContext {
    /// The last `max_len` events: type and time.
    history: VecDeque<(SmolStr, Timestamp)>,
    start: Timestamp,
    count: usize,
    last_event: SmolStr,
    /// Model id, hidden state and the distribution after the last event.
    state: Option<(u64, CaseState, NextTypeDistribution)>,
    /// Whether the case has a type that model's vocabulary does not know.
    novel: bool,
}

/// Per-case contexts and hidden states, bounded, least recently used out first.
#[derive(Debug)]
pub struct ContextStore {
    cases: LruCache<EntityKey, CaseContext>,
}

impl ContextStore {
    /// A store keeping at most `max_cases` cases (at least 1).
    pub fn new(max_cases: usize) -> Self {
        ContextStore {
            cases: LruCache::new(NonZeroUsize::new(max_cases.max(1)).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// Number of cases kept.
    pub fn len(&self) -> usize {
        self.cases.len()
    }

    /// Whether no case is kept.
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }

    /// Forgets every case.
    pub fn clear(&mut self) {
        self.cases.clear();
    }

    /// Observes (unless `Skip`) and predicts for events that arrived together, in order.
    /// Events of different cases share one forward pass; a later event of the same case waits
    /// for the next pass. An event already observed last in its case is answered from the
    /// kept state without a forward pass.
    ///
    /// # Errors
    /// [`NeuralError::Tensor`] when the tensor library fails.
    pub fn process(
        &mut self,
        model: &NeuralModel,
        items: &[(&Event, Observe)],
    ) -> Result<Vec<Forecast>, NeuralError> {
        let dists = self.distributions(model, items)?;
        Ok(items
            .iter()
            .zip(&dists)
            .map(|((e, _), d)| forecast(model, e, d))
            .collect())
    }

    /// Like [`ContextStore::process`], returning the network's full distributions.
    ///
    /// # Errors
    /// [`NeuralError::Tensor`] when the tensor library fails.
    pub fn distributions(
        &mut self,
        model: &NeuralModel,
        items: &[(&Event, Observe)],
    ) -> Result<Vec<NextTypeDistribution>, NeuralError> {
        let mut out: Vec<Option<NextTypeDistribution>> = vec![None; items.len()];
        let mut pending: Vec<usize> = (0..items.len()).collect();
        while !pending.is_empty() {
            let mut seen = HashSet::new();
            let (mut wave, mut rest) = (Vec::new(), Vec::new());
            for i in pending {
                match case_key(items[i].0) {
                    Some(k) if seen.contains(&k) => rest.push(i),
                    Some(k) => {
                        seen.insert(k);
                        wave.push(i);
                    }
                    None => wave.push(i),
                }
            }
            self.wave(model, items, &wave, &mut out)?;
            pending = rest;
        }
        let mut dists = Vec::with_capacity(out.len());
        for d in out {
            dists.push(d.ok_or_else(|| NeuralError::Config("an event got no prediction".into()))?);
        }
        Ok(dists)
    }

    /// One forward pass for events of distinct cases.
    fn wave(
        &mut self,
        model: &NeuralModel,
        items: &[(&Event, Observe)],
        wave: &[usize],
        out: &mut [Option<NextTypeDistribution>],
    ) -> Result<(), NeuralError> {
        let mut todo: Vec<(usize, Option<EntityKey>, Option<View>)> = Vec::new();
        for &i in wave {
            let (event, _) = items[i];
            let key = case_key(event);
            let mut view = None;
            if let Some(c) = key.as_ref().and_then(|k| self.cases.get_mut(k)) {
                refresh(model, c)?;
                if c.last_event == event.id
                    && let Some((_, _, dist)) = &c.state
                {
                    // already observed: answer from the kept state
                    out[i] = Some(dist.clone());
                    continue;
                }
                view = Some(View {
                    prev: c.history.back().map(|h| h.1),
                    start: c.start,
                    count: c.count,
                    state: c.state.as_ref().map(|s| s.1.clone()),
                    novel: c.novel,
                });
            }
            todo.push((i, key, view));
        }
        if todo.is_empty() {
            return Ok(());
        }
        let states: Vec<Option<&CaseState>> = todo
            .iter()
            .map(|(_, _, v)| v.as_ref().and_then(|v| v.state.as_ref()))
            .collect();
        let inputs: Vec<StepInput> = todo
            .iter()
            .map(|(i, _, v)| step_input(model, items[*i].0, v.as_ref()))
            .collect();
        let (new_states, dists) = model.step_batch(&states, &inputs)?;
        for ((((i, key, _), state), dist), input) in
            todo.into_iter().zip(new_states).zip(dists).zip(inputs)
        {
            let (event, mode) = items[i];
            out[i] = Some(dist.clone());
            let (Some(key), true) = (key, mode != Observe::Skip) else {
                continue;
            };
            if !self.cases.contains(&key) {
                self.cases.put(
                    key.clone(),
                    CaseContext {
                        history: VecDeque::new(),
                        start: event.time,
                        count: 0,
                        last_event: SmolStr::default(),
                        state: None,
                        novel: false,
                    },
                );
            }
            if let Some(c) = self.cases.get_mut(&key) {
                c.history.push_back((event.event_type.clone(), event.time));
                while c.history.len() > model.spec.max_len {
                    c.history.pop_front();
                }
                c.count += 1;
                c.last_event = event.id.clone();
                c.state = Some((model.id, state, dist));
                c.novel = input.novel;
            }
        }
        Ok(())
    }
}

/// What a step needs from a case's context.
#[derive(Debug)]
struct View {
    prev: Option<Timestamp>,
    start: Timestamp,
    count: usize,
    state: Option<CaseState>,
    novel: bool,
}

fn step_input(model: &NeuralModel, event: &Event, ctx: Option<&View>) -> StepInput {
    let (prev, start, index, novel) = match ctx {
        Some(c) => (c.prev, c.start, c.count, c.novel),
        None => (None, event.time, 0, false),
    };
    let token = model.vocab.token(&event.event_type);
    StepInput {
        token,
        features: model.spec.step(prev, start, event.time, index),
        novel: novel || !model.knows(token),
    }
}

/// Makes sure the context's hidden state belongs to `model`, replaying the kept history if not.
fn refresh(model: &NeuralModel, c: &mut CaseContext) -> Result<(), NeuralError> {
    if c.state.as_ref().is_some_and(|s| s.0 == model.id) || c.history.is_empty() {
        return Ok(());
    }
    let first_index = c.count - c.history.len();
    let mut state: Option<CaseState> = None;
    let mut last_dist = None;
    let mut prev = None;
    let mut novel = false;
    for (j, (t, time)) in c.history.iter().enumerate() {
        let token = model.vocab.token(t);
        novel |= !model.knows(token);
        let input = StepInput {
            token,
            features: model.spec.step(prev, c.start, *time, first_index + j),
            novel,
        };
        let (mut s, mut d) = model.step_batch(&[state.as_ref()], &[input])?;
        state = s.pop();
        last_dist = d.pop();
        prev = Some(*time);
    }
    c.state = match (state, last_dist) {
        (Some(s), Some(d)) => Some((model.id, s, d)),
        _ => None,
    };
    c.novel = novel;
    Ok(())
}

/// A forecast listing the model's top types for the event.
pub(crate) fn forecast(
    model: &NeuralModel,
    event: &Event,
    dist: &NextTypeDistribution,
) -> Forecast {
    let expected_at = crate::model::after_seconds(event.time, dist.expected_seconds);
    // In a case with a type the vocabulary does not know, every probability is worth the
    // measured share less (the rest goes to types the network cannot name); the order stays.
    let worth = dist.novelty_discount.map_or(1.0, |d| d.clamp(0.0, 1.0));
    Forecast {
        next: dist
            .top(model.top_k)
            .into_iter()
            .map(|(event_type, probability)| NextEvent {
                event_type,
                probability: probability * worth,
                expected_at,
            })
            .collect(),
        entities: Vec::new(),
        novelty_discount: None,
    }
}

/// The neural model as an [`OnlineModel`]: the network predicts, the context follows the
/// stream. Observing never trains the network.
#[derive(Debug)]
pub struct NeuralPredictor {
    model: Arc<NeuralModel>,
    contexts: ContextStore,
    errors: u64,
    /// The slot followed, and the generation of the model taken from it.
    slot: Option<(ModelSlot, u64)>,
}

impl NeuralPredictor {
    /// Serves `model`, keeping up to [`DEFAULT_MAX_CASES`] cases.
    pub fn new(model: Arc<NeuralModel>) -> Self {
        Self::with_max_cases(model, DEFAULT_MAX_CASES)
    }

    /// Serves `model`, keeping up to `max_cases` cases.
    pub fn with_max_cases(model: Arc<NeuralModel>, max_cases: usize) -> Self {
        NeuralPredictor {
            model,
            contexts: ContextStore::new(max_cases),
            errors: 0,
            slot: None,
        }
    }

    /// Serves whatever model `slot` holds, picking up a swapped-in model before the next call.
    pub fn follow(mut self, slot: ModelSlot) -> Self {
        let (model, generation) = slot.current();
        self.model = model;
        self.slot = Some((slot, generation));
        self
    }

    /// Takes the slot's model if it was swapped since the last call.
    fn sync(&mut self) {
        let Some((slot, seen)) = &mut self.slot else {
            return;
        };
        if slot.generation() != *seen {
            let (model, generation) = slot.current();
            *seen = generation;
            tracing::info!(
                message = "Neural model swapped in.",
                generation,
                training_log_hash = %model.info().training_log_hash,
            );
            self.model = model;
        }
    }

    /// The model served.
    pub fn model(&self) -> &Arc<NeuralModel> {
        &self.model
    }

    /// Replaces the model; contexts are kept and their states rebuilt on next use.
    pub fn set_model(&mut self, model: Arc<NeuralModel>) -> Arc<NeuralModel> {
        std::mem::replace(&mut self.model, model)
    }

    /// Number of predictions that failed in the tensor library (answered with an empty forecast).
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Observes each event as its mode says and forecasts what follows it.
    ///
    /// # Errors
    /// [`NeuralError::Tensor`] when the tensor library fails.
    pub fn process(&mut self, items: &[(&Event, Observe)]) -> Result<Vec<Forecast>, NeuralError> {
        self.guarded(|contexts, model| contexts.process(model, items))
    }

    /// Runs `f` with the current model. A model swapped in that fails (an error or a panic) is
    /// swapped back out for the one it replaced, so that one bad artifact does not disable
    /// prediction for good.
    fn guarded<T>(
        &mut self,
        f: impl FnOnce(&mut ContextStore, &Arc<NeuralModel>) -> Result<T, NeuralError>,
    ) -> Result<T, NeuralError> {
        self.sync();
        let model = Arc::clone(&self.model);
        let contexts = &mut self.contexts;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(contexts, &model)))
            .unwrap_or_else(|panic| {
                Err(NeuralError::Panic(
                    prescient_core::panic_message(&*panic).to_owned(),
                ))
            });
        if let Err(error) = &result {
            self.errors += 1;
            if let Some((slot, seen)) = &self.slot
                && slot.revert(*seen)
            {
                tracing::warn!(
                    message = "The neural model swapped in failed; the previous one is back.",
                    %error,
                );
                self.sync();
            }
        }
        result
    }

    /// Observes each event as its mode says and returns the network's full distribution after
    /// each, events of distinct cases in one forward pass.
    ///
    /// # Errors
    /// [`NeuralError::Tensor`] when the tensor library fails.
    pub fn distributions(
        &mut self,
        items: &[(&Event, Observe)],
    ) -> Result<Vec<NextTypeDistribution>, NeuralError> {
        self.guarded(|contexts, model| contexts.distributions(model, items))
    }

    /// The network's full distribution after `event` (observed already or not; not observed here).
    ///
    /// # Errors
    /// [`NeuralError::Tensor`] when the tensor library fails.
    pub fn distribution(&mut self, event: &Event) -> Result<NextTypeDistribution, NeuralError> {
        let mut d = self
            .guarded(|contexts, model| contexts.distributions(model, &[(event, Observe::Skip)]))?;
        d.pop()
            .ok_or_else(|| NeuralError::Config("an event got no prediction".into()))
    }
}

impl OnlineModel for NeuralPredictor {
    fn name(&self) -> &str {
        "neural"
    }

    fn observe(&mut self, event: &Event, mode: Observe) {
        if mode == Observe::Skip {
            return;
        }
        if let Err(error) =
            self.guarded(|contexts, model| contexts.process(model, &[(event, mode)]))
        {
            tracing::warn!(message = "Neural observe failed.", %error);
        }
    }

    fn forecast(&mut self, event: &Event) -> Forecast {
        match self.guarded(|contexts, model| contexts.process(model, &[(event, Observe::Skip)])) {
            Ok(mut f) => f.pop().unwrap_or_default(),
            Err(error) => {
                tracing::warn!(message = "Neural forecast failed.", %error);
                Forecast::default()
            }
        }
    }
}
