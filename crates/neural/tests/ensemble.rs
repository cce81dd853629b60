//! The learner (train-on-first-prediction) and the ensemble, with a tiny bigram online model.

use std::collections::HashMap;

use prescient_core::{
    EntityKey, EntityRef, Event, Forecast, NextEvent, Observe, OnlineModel, Prediction, Relation,
    SmolStr, Timestamp,
};
use prescient_neural::{EnsembleModel, NeuralConfig, NeuralLearner};

/// After `x` comes `y` if the event before `x` was `start` or `z`, else `z`; otherwise `x`.
fn case(id: usize, len: usize) -> Vec<Event> {
    let mut types: Vec<&str> = vec!["start"];
    while types.len() < len {
        let next = match types.last().copied() {
            Some("x") => {
                if matches!(
                    types.get(types.len().wrapping_sub(2)).copied(),
                    Some("start" | "z")
                ) {
                    "y"
                } else {
                    "z"
                }
            }
            _ => "x",
        };
        types.push(next);
    }
    types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Event::new(
                format!("{id}-{i}"),
                *t,
                Timestamp::from_secs(1_650_000_000 + id as i64 * 500 + i as i64 * 30),
            )
            .with_entity(EntityRef::new("case", id.to_string()).with_role("case"))
        })
        .collect()
}

/// Bigram counts; predicts the entity of the event itself with confidence 1.
#[derive(Debug, Default)]
struct Bigram {
    counts: HashMap<SmolStr, HashMap<SmolStr, f32>>,
    last: HashMap<SmolStr, SmolStr>,
}

impl OnlineModel for Bigram {
    fn name(&self) -> &str {
        "bigram"
    }
    fn observe(&mut self, e: &Event, mode: Observe) {
        let case = e.entities[0].id.clone();
        if mode == Observe::Learn
            && let Some(prev) = self.last.get(&case)
        {
            *self
                .counts
                .entry(prev.clone())
                .or_default()
                .entry(e.event_type.clone())
                .or_default() += 1.0;
        }
        self.last.insert(case, e.event_type.clone());
    }
    fn forecast(&mut self, e: &Event) -> Forecast {
        let mut next: Vec<NextEvent> = self
            .counts
            .get(&e.event_type)
            .map(|m| {
                let total: f32 = m.values().sum();
                m.iter()
                    .map(|(t, c)| NextEvent {
                        event_type: t.clone(),
                        probability: c / total,
                        expected_at: e.time,
                    })
                    .collect()
            })
            .unwrap_or_default();
        next.sort_by(|a, b| b.probability.total_cmp(&a.probability));
        Forecast {
            next,
            novelty_discount: None,
            entities: vec![Prediction {
                entity: EntityKey::new("case", e.entities[0].id.clone()),
                confidence: 1.0,
                expected_at: e.time,
                latest: e.time,
                event_type: None,
                relation: Relation::Same,
            }],
        }
    }
}

fn cfg() -> NeuralConfig {
    NeuralConfig {
        embed_dim: 8,
        hidden: 16,
        epochs: 30,
        batch: 8,
        lr: 0.02,
        patience: 30,
        validation_share: 0.25,
        ..NeuralConfig::default()
    }
}

/// Runs tax2017-style scoring: learn the training cases, track the test cases.
fn score(model: &mut dyn OnlineModel) -> (f64, Forecast) {
    for e in (0..60).flat_map(|i| case(i, 6 + i % 4)) {
        model.observe(&e, Observe::Learn);
    }
    let (mut hits, mut n, mut last) = (0, 0, Forecast::default());
    for c in (100..120).map(|i| case(i, 8)) {
        for k in 1..c.len() {
            model.observe(&c[k - 1], Observe::Track);
            if k >= 2 {
                let f = model.forecast(&c[k - 1]);
                hits += usize::from(f.top().is_some_and(|t| t.event_type == c[k].event_type));
                n += 1;
                last = f;
            }
        }
    }
    (hits as f64 / n as f64, last)
}

#[test]
fn learner_trains_on_first_prediction() {
    let mut l = NeuralLearner::new(cfg());
    let (acc, _) = score(&mut l);
    assert!(l.report().is_some());
    assert!(l.cases().is_empty());
    // the process needs two events of memory after `x`; a bigram cannot tell y from z
    assert!(acc > 0.95, "neural accuracy {acc}");
}

#[test]
fn ensemble_beats_the_bigram_and_keeps_its_entities() {
    let (bigram_acc, _) = score(&mut Bigram::default());
    let mut ens = EnsembleModel::new(
        NeuralLearner::new(cfg()),
        Bigram::default(),
        Box::new(Bigram::default),
    );
    let (acc, last) = score(&mut ens);
    let w = ens.weight().expect("weight chosen");
    assert!(w > 0.0, "weight {w}");
    assert!(
        acc > bigram_acc + 0.1,
        "ensemble {acc} vs bigram {bigram_acc}"
    );
    assert_eq!(last.entities.len(), 1);
    let total: f32 = last.next.iter().map(|n| n.probability).sum();
    assert!(total <= 1.0 + 1e-4, "{total}");
}

/// A trained network served with a fixed mix, fed the test cases batch by batch or event by
/// event: the same forecasts either way.
#[test]
fn a_served_ensemble_predicts_a_batch_as_it_predicts_one_by_one() {
    let cases: Vec<Vec<Event>> = (0..60).map(|i| case(i, 6 + i % 4)).collect();
    let (model, _) = prescient_neural::NeuralModel::train(&cases, &cfg(), &mut |_| {}).unwrap();
    let model = std::sync::Arc::new(model);
    let (_, mix) = prescient_neural::fit_mix(&model, &cases, 0.25, Bigram::default());
    let served = |bigram: Bigram| {
        let mut online = bigram;
        for e in cases.iter().flatten() {
            online.observe(e, Observe::Learn);
        }
        EnsembleModel::served(
            prescient_neural::NeuralPredictor::new(model.clone()),
            online,
            prescient_neural::EnsembleMix { weight: 0.5, ..mix },
        )
    };
    let (mut one, mut batched) = (served(Bigram::default()), served(Bigram::default()));
    // Events of several cases interleaved, as a broker delivers them, in batches of 5.
    let test: Vec<Vec<Event>> = (100..106).map(|i| case(i, 7)).collect();
    let mut stream = Vec::new();
    for k in 0..7 {
        for c in &test {
            stream.push(c[k].clone());
        }
    }
    let mut n = 0;
    for chunk in stream.chunks(5) {
        let items: Vec<(&Event, Observe)> = chunk.iter().map(|e| (e, Observe::Track)).collect();
        let together = batched.process_batch(&items);
        assert_eq!(together.len(), chunk.len());
        for (e, b) in chunk.iter().zip(together) {
            one.observe(e, Observe::Track);
            let a = one.forecast(e);
            assert_eq!(a.entities, b.entities);
            assert_eq!(a.next.len(), b.next.len());
            for (x, y) in a.next.iter().zip(&b.next) {
                assert_eq!(x.event_type, y.event_type, "event {}", e.id);
                assert!(
                    (x.probability - y.probability).abs() < 1e-4,
                    "{x:?} vs {y:?}"
                );
            }
            n += 1;
        }
    }
    assert_eq!(n, 42);
}

/// A mix of the given weight, without recalibration.
fn mix(weight: f32) -> prescient_neural::EnsembleMix {
    prescient_neural::EnsembleMix {
        weight,
        calibration: prescient_neural::TopCalibration::IDENTITY,
        validation_accuracy: 0.0,
        online_accuracy: 0.0,
        rows: 0,
    }
}

/// A served ensemble that follows a slot takes the mix of whichever model is in it.
#[test]
fn a_swapped_in_model_brings_its_own_mix() {
    let cases: Vec<Vec<Event>> = (0..60).map(|i| case(i, 6 + i % 4)).collect();
    let (model, _) = prescient_neural::NeuralModel::train(&cases, &cfg(), &mut |_| {}).unwrap();
    let (mut online_only, mut network_only) = (model.clone(), model);
    online_only.set_ensemble(Some(mix(0.0)));
    network_only.set_ensemble(Some(mix(1.0)));
    let slot = prescient_neural::ModelSlot::new(std::sync::Arc::new(online_only));
    let mut bigram = Bigram::default();
    for e in cases.iter().flatten() {
        bigram.observe(e, Observe::Learn);
    }
    let (network, _) = slot.current();
    let mut ens = EnsembleModel::served_following(
        prescient_neural::NeuralPredictor::new(network).follow(slot.clone()),
        bigram,
        mix(0.5),
    );
    let probe = case(200, 5);
    for e in &probe[..4] {
        ens.observe(e, Observe::Track);
    }
    let last = &probe[3];
    // Weight 0: the bigram's forecast as it is.
    let before = ens.forecast(last);
    let mut bigram_alone = Bigram::default();
    for e in cases.iter().flatten() {
        bigram_alone.observe(e, Observe::Learn);
    }
    for e in &probe[..4] {
        bigram_alone.observe(e, Observe::Track);
    }
    assert_eq!(before.next, bigram_alone.forecast(last).next);
    // Weight 1 after the swap: the network's distribution.
    slot.swap(std::sync::Arc::new(network_only));
    let after = ens.forecast(last);
    let (model, _) = slot.current();
    let mut alone = prescient_neural::NeuralPredictor::new(model);
    for e in &probe[..4] {
        alone.observe(e, Observe::Track);
    }
    let d = alone.distribution(last).unwrap();
    let top = d.top(1);
    assert_eq!(after.next[0].event_type, top[0].0);
    assert!((after.next[0].probability - top[0].1).abs() < 1e-5);
}

/// The bigram, reporting a novelty discount of one half on every forecast, which it applies
/// to its own confidences unless told not to.
#[derive(Debug, Default)]
struct Discounting {
    inner: Bigram,
    off: bool,
}

impl OnlineModel for Discounting {
    fn name(&self) -> &str {
        "discounting"
    }
    fn observe(&mut self, e: &Event, mode: Observe) {
        self.inner.observe(e, mode);
    }
    fn forecast(&mut self, e: &Event) -> Forecast {
        let mut f = self.inner.forecast(e);
        if !self.off {
            for n in &mut f.next {
                n.probability *= 0.5;
            }
        }
        f.novelty_discount = Some(0.5);
        f
    }
    fn set_novelty_discount(&mut self, on: bool) {
        self.off = !on;
    }
}

/// In a mix the online model's novelty discount lowers the mix's top confidence (the online
/// model does not apply it itself); alone, the online model applies it.
#[test]
fn the_online_models_novelty_discount_applies_to_the_mix() {
    let cases: Vec<Vec<Event>> = (0..60).map(|i| case(i, 6 + i % 4)).collect();
    let (model, _) = prescient_neural::NeuralModel::train(&cases, &cfg(), &mut |_| {}).unwrap();
    let model = std::sync::Arc::new(model);
    let probe = case(200, 5);
    fn run<M: OnlineModel>(mut m: M, cases: &[Vec<Event>], probe: &[Event]) -> Forecast {
        for e in cases.iter().flatten() {
            m.observe(e, Observe::Learn);
        }
        for e in &probe[..4] {
            m.observe(e, Observe::Track);
        }
        m.forecast(&probe[3])
    }
    fn served<M: OnlineModel>(
        model: &std::sync::Arc<prescient_neural::NeuralModel>,
        online: M,
        weight: f32,
    ) -> EnsembleModel<M> {
        EnsembleModel::served(
            prescient_neural::NeuralPredictor::new(model.clone()),
            online,
            mix(weight),
        )
    }
    let plain = run(served(&model, Bigram::default(), 0.5), &cases, &probe);
    let discounted = run(served(&model, Discounting::default(), 0.5), &cases, &probe);
    let top = |f: &Forecast| f.top().expect("a forecast").probability;
    assert_eq!(plain.next[0].event_type, discounted.next[0].event_type);
    assert!(
        (top(&discounted) - 0.5 * top(&plain)).abs() < 1e-5,
        "{} vs {}",
        top(&discounted),
        top(&plain)
    );
    assert!(
        discounted
            .next
            .iter()
            .all(|n| n.probability <= top(&discounted))
    );
    // Weight 0: the online model's own forecast, discounted by the model itself.
    let alone = run(served(&model, Discounting::default(), 0.0), &cases, &probe);
    let own = run(Discounting::default(), &cases, &probe);
    assert_eq!(alone.next, own.next);
    assert!(top(&own) <= 0.5, "{}", top(&own));
}
