//! End-to-end tests of the neural predictor on a synthetic process generated here.

use std::sync::{Arc, OnceLock};

use futures::FutureExt;
use prescient_core::{
    EntityRef, Event, Observe, OnlineModel, PredictRequest, Predictor, Timestamp,
};
use prescient_neural::{
    Cell, NeuralConfig, NeuralError, NeuralModel, NeuralPredictor, NeuralServer,
};

/// A deterministic process that needs two events of memory: after `x` comes `y` if the event
/// before `x` was `start` or `z`, else `z`; cases end after `len` events.
fn case(id: usize, len: usize) -> Vec<Event> {
    let mut types = vec!["start"];
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
    let t0 = 1_600_000_000 + id as i64 * 7_200;
    types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Event::new(
                format!("c{id}-{i}"),
                *t,
                Timestamp::from_secs(t0 + i as i64 * 60),
            )
            .with_entity(EntityRef::new("case", id.to_string()).with_role("case"))
        })
        .collect()
}

fn cases(n: usize) -> Vec<Vec<Event>> {
    (0..n).map(|i| case(i, 5 + i % 6)).collect()
}

fn tiny() -> NeuralConfig {
    NeuralConfig {
        embed_dim: 8,
        hidden: 16,
        epochs: 30,
        batch: 8,
        lr: 0.02,
        patience: 30,
        ..NeuralConfig::default()
    }
}

fn trained() -> &'static Arc<NeuralModel> {
    static MODEL: OnceLock<Arc<NeuralModel>> = OnceLock::new();
    MODEL.get_or_init(|| {
        let (m, _) = NeuralModel::train(&cases(60), &tiny(), &mut |_| {}).expect("training");
        Arc::new(m)
    })
}

fn accuracy(model: &NeuralModel, test: &[Vec<Event>]) -> f64 {
    let mut ctx: Vec<&[Event]> = Vec::new();
    let mut want = Vec::new();
    for c in test {
        for k in 2..c.len() {
            ctx.push(&c[..k]);
            want.push(c[k].event_type.clone());
        }
    }
    let d = model.predict_batch(&ctx).expect("predict");
    let hits = d
        .iter()
        .zip(&want)
        .filter(|(d, w)| d.argmax() == Some(*w))
        .count();
    hits as f64 / want.len() as f64
}

#[test]
fn learns_a_deterministic_process_well_above_chance() {
    let model = trained();
    let test: Vec<Vec<Event>> = (100..130).map(|i| case(i, 5 + i % 6)).collect();
    let acc = accuracy(model, &test);
    // chance over 4 types is 0.25; the process needs two events of memory
    assert!(acc > 0.95, "accuracy {acc}");
    let report = &model.info().report;
    assert!(report.val_accuracy > 0.9, "{report:?}");
    assert!(report.temperature > 0.0);
}

#[test]
fn untrained_network_is_not_accurate() {
    // the same check fails for a model that has barely trained, so the test above can fail
    let cfg = NeuralConfig {
        epochs: 1,
        lr: 1e-5,
        ..tiny()
    };
    let (m, _) = NeuralModel::train(&cases(20), &cfg, &mut |_| {}).expect("training");
    let test: Vec<Vec<Event>> = (100..130).map(|i| case(i, 5 + i % 6)).collect();
    assert!(accuracy(&m, &test) < 0.95);
}

#[test]
fn progress_is_reported_per_batch_and_epoch() {
    let cfg = NeuralConfig {
        epochs: 2,
        patience: 5,
        ..tiny()
    };
    let mut reports = Vec::new();
    let (_, report) =
        NeuralModel::train(&cases(20), &cfg, &mut |p| reports.push(p)).expect("training");
    assert_eq!(report.epochs, 2);
    assert_eq!(reports.iter().filter(|p| p.epoch_done).count(), 2);
    assert!(reports.iter().all(|p| p.loss.is_finite()));
    assert!(reports.last().is_some_and(|p| p.val_accuracy.is_some()));
}

#[test]
fn training_is_reproducible_with_a_fixed_seed() {
    let cfg = NeuralConfig {
        epochs: 2,
        ..tiny()
    };
    let data = cases(20);
    let (a, _) = NeuralModel::train(&data, &cfg, &mut |_| {}).expect("training");
    let (b, _) = NeuralModel::train(&data, &cfg, &mut |_| {}).expect("training");
    let ctx: Vec<&[Event]> = data.iter().map(|c| &c[..3]).collect();
    let pa = a.predict_batch(&ctx).expect("predict");
    let pb = b.predict_batch(&ctx).expect("predict");
    assert_eq!(pa, pb);
}

#[test]
fn batch_predictions_equal_single_predictions() {
    let model = trained();
    let data = cases(12);
    let ctx: Vec<&[Event]> = data.iter().map(|c| &c[..c.len() / 2 + 1]).collect();
    let batch = model.predict_batch(&ctx).expect("batch");
    for (c, b) in ctx.iter().zip(&batch) {
        let single = model.predict_batch(&[c]).expect("single");
        for (x, y) in single[0].probabilities.iter().zip(&b.probabilities) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
        assert!((single[0].expected_seconds - b.expected_seconds).abs() < 1e-3);
    }
}

#[test]
fn empty_context_is_an_error() {
    let model = trained();
    let err = model.predict_batch(&[&[]]).expect_err("empty");
    assert!(matches!(err, NeuralError::EmptyContext { index: 0 }));
}

#[test]
fn online_predictor_follows_cases_like_batch_prediction() {
    let model = trained();
    let mut p = NeuralPredictor::new(Arc::clone(model));
    let a = case(500, 8);
    let b = case(501, 7);
    // interleave two cases
    let mut stream: Vec<&Event> = Vec::new();
    for i in 0..8 {
        if let Some(e) = a.get(i) {
            stream.push(e);
        }
        if let Some(e) = b.get(i) {
            stream.push(e);
        }
    }
    for e in stream {
        p.observe(e, Observe::Track);
        let f = p.forecast(e);
        let c = if e.id.starts_with("c500") { &a } else { &b };
        let k = c.iter().position(|x| x.id == e.id).expect("in case") + 1;
        let d = &model.predict_batch(&[&c[..k]]).expect("batch")[0];
        let top = f.top().expect("a forecast");
        assert_eq!(Some(&top.event_type), d.argmax());
        assert!((top.probability - d.probability(&top.event_type)).abs() < 1e-5);
        assert!(top.expected_at >= e.time);
        assert!(f.entities.is_empty());
    }
    assert_eq!(p.errors(), 0);
}

#[test]
fn server_batches_match_one_by_one_and_survive_a_swap() {
    let model = trained();
    let one = NeuralServer::new((**model).clone());
    let many = NeuralServer::new((**model).clone());
    let data = [case(600, 6), case(601, 6), case(602, 6)];
    // events of three cases, in rounds; each round is one batch
    for i in 0..6 {
        let round: Vec<&Event> = data.iter().map(|c| &c[i]).collect();
        let reqs: Vec<PredictRequest<'_>> = round
            .iter()
            .map(|e| PredictRequest {
                event: e,
                observe: Observe::Track,
                deadline: None,
            })
            .collect();
        let batched = many.predict_batch(&reqs).now_or_never().expect("ready");
        for (r, b) in reqs.iter().zip(batched) {
            let s = one.predict(*r).now_or_never().expect("ready").expect("ok");
            let b = b.expect("ok");
            assert_eq!(s.next.len(), b.next.len());
            for (x, y) in s.next.iter().zip(&b.next) {
                assert_eq!(x.event_type, y.event_type);
                assert!((x.probability - y.probability).abs() < 1e-5);
            }
        }
        if i == 2 {
            // swap in a different model mid-stream; states are rebuilt from the history
            let other = NeuralModel::train(
                &cases(20),
                &NeuralConfig {
                    epochs: 1,
                    seed: 7,
                    ..tiny()
                },
                &mut |_| {},
            )
            .expect("training")
            .0;
            let expected = other.predict_batch(&[&data[0][..4]]).expect("batch")[0].clone();
            many.swap(other).expect("swap");
            let got = many
                .predict(PredictRequest {
                    event: &data[0][3],
                    observe: Observe::Track,
                    deadline: None,
                })
                .now_or_never()
                .expect("ready")
                .expect("ok");
            let top = got.top().expect("forecast");
            assert_eq!(Some(&top.event_type), expected.argmax());
            // put the first model back for the rest of the comparison
            many.swap((**model).clone()).expect("swap");
        }
    }
}

fn trained_transformer() -> &'static Arc<NeuralModel> {
    static MODEL: OnceLock<Arc<NeuralModel>> = OnceLock::new();
    MODEL.get_or_init(|| {
        let cfg = NeuralConfig {
            cell: Cell::Transformer,
            layers: 2,
            lr: 0.01,
            ..tiny()
        };
        let (m, _) = NeuralModel::train(&cases(60), &cfg, &mut |_| {}).expect("training");
        Arc::new(m)
    })
}

#[test]
fn a_transformer_learns_the_process_too() {
    let model = trained_transformer();
    assert_eq!(model.arch().cell, Cell::Transformer);
    let test: Vec<Vec<Event>> = (100..130).map(|i| case(i, 5 + i % 6)).collect();
    let acc = accuracy(model, &test);
    assert!(acc > 0.95, "accuracy {acc}");
}

#[test]
fn a_transformer_steps_with_kept_keys_as_it_reads_whole_contexts() {
    // The online predictor advances each case one event at a time from its kept keys and
    // values; batch prediction runs the causal encoder over the whole padded context.
    let model = trained_transformer();
    let mut p = NeuralPredictor::new(Arc::clone(model));
    let (a, b) = (case(700, 9), case(701, 6));
    let mut stream: Vec<&Event> = Vec::new();
    for i in 0..9 {
        stream.extend(a.get(i));
        stream.extend(b.get(i));
    }
    for e in stream {
        p.observe(e, Observe::Track);
        let stepped = p.distribution(e).expect("step");
        let c = if e.id.starts_with("c700") { &a } else { &b };
        let k = c.iter().position(|x| x.id == e.id).expect("in case") + 1;
        let whole = &model.predict_batch(&[&c[..k]]).expect("batch")[0];
        for (x, y) in stepped.probabilities.iter().zip(&whole.probabilities) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y} after {k} events");
        }
        assert!((stepped.end_of_case - whole.end_of_case).abs() < 1e-4);
        let (s, w) = (stepped.expected_seconds, whole.expected_seconds);
        assert!((s - w).abs() <= 1e-3 * w.max(1.0), "{s} vs {w}");
    }
    assert_eq!(p.errors(), 0);
}

#[test]
fn a_transformer_whose_heads_do_not_divide_its_width_is_refused() {
    let cfg = NeuralConfig {
        cell: Cell::Transformer,
        hidden: 10,
        ..tiny()
    };
    let err = NeuralModel::train(&cases(10), &cfg, &mut |_| {}).expect_err("bad width");
    assert!(err.to_string().contains("multiple of 4"), "{err}");
}

#[test]
fn the_network_alone_discounts_cases_with_an_unknown_type() {
    let mut m = (**trained()).clone();
    m.set_novelty_discount(Some(0.5));
    let m = Arc::new(m);
    let known = case(800, 6);
    let mut p = NeuralPredictor::new(Arc::clone(&m));
    p.observe(&known[0], Observe::Track);
    p.observe(&known[1], Observe::Track);
    let d = p.distribution(&known[1]).expect("distribution");
    assert_eq!(d.novelty_discount, None);
    let top = p.forecast(&known[1]).top().cloned().expect("a forecast");
    assert!((top.probability - d.probability(&top.event_type)).abs() < 1e-6);

    // the same case with a type the vocabulary does not know
    let mut novel = known.clone();
    novel[1].event_type = "never-seen".into();
    let mut q = NeuralPredictor::new(Arc::clone(&m));
    q.observe(&novel[0], Observe::Track);
    q.observe(&novel[1], Observe::Track);
    let d = q.distribution(&novel[1]).expect("distribution");
    assert_eq!(d.novelty_discount, Some(0.5));
    // the forecast is worth half; the distribution an ensemble mixes is not discounted
    let top = q.forecast(&novel[1]).top().cloned().expect("a forecast");
    assert!((top.probability - 0.5 * d.probability(&top.event_type)).abs() < 1e-6);
    assert!(d.probability(&top.event_type) > 0.0);
    // a later event of the case stays novel
    q.observe(&novel[2], Observe::Track);
    let later = q.distribution(&novel[2]).expect("distribution");
    assert_eq!(later.novelty_discount, Some(0.5));
}
