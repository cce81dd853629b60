//! The model artifact: round trip, corrupt files and mismatched metadata.

use std::path::Path;

use prescient_core::{EntityRef, Event, Timestamp};
use prescient_neural::{Cell, NeuralConfig, NeuralError, NeuralModel};

fn cases() -> Vec<Vec<Event>> {
    (0..16)
        .map(|c| {
            let types = ["open", "work", "wait", "work", "close"];
            (0..3 + c % 3)
                .map(|i| {
                    Event::new(
                        format!("{c}-{i}"),
                        types[(i + c) % types.len()],
                        Timestamp::from_secs(1_700_000_000 + c as i64 * 1000 + i as i64 * 90),
                    )
                    .with_entity(EntityRef::new("case", c.to_string()).with_role("case"))
                })
                .collect()
        })
        .collect()
}

fn model() -> NeuralModel {
    let cfg = NeuralConfig {
        embed_dim: 4,
        hidden: 8,
        epochs: 2,
        batch: 4,
        ..NeuralConfig::default()
    };
    NeuralModel::train(&cases(), &cfg, &mut |_| {})
        .expect("training")
        .0
}

fn saved() -> (tempfile::TempDir, NeuralModel) {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = model();
    m.save(dir.path()).expect("save");
    (dir, m)
}

fn artifact_problem(err: NeuralError, file: &str) -> String {
    match err {
        NeuralError::Artifact { path, problem } => {
            assert_eq!(path.file_name().and_then(|f| f.to_str()), Some(file));
            problem
        }
        other => panic!("expected an artifact error about {file}, got {other:?}"),
    }
}

fn edit_meta(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("meta.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("json");
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec(&v).expect("json")).expect("write");
}

#[test]
fn round_trip_gives_identical_predictions() {
    let (dir, m) = saved();
    let loaded = NeuralModel::load(dir.path()).expect("load");
    let data = cases();
    let ctx: Vec<&[Event]> = data.iter().map(|c| &c[..2]).collect();
    assert_eq!(
        m.predict_batch(&ctx).expect("predict"),
        loaded.predict_batch(&ctx).expect("predict")
    );
    assert_eq!(loaded.vocabulary(), m.vocabulary());
    assert_eq!(loaded.meta(), m.meta());
    assert_eq!(loaded.info().training_log_hash.len(), 64);
}

#[test]
fn truncated_weights_are_reported_with_the_file() {
    let (dir, _) = saved();
    let p = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&p).expect("read");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).expect("write");
    let problem = artifact_problem(
        NeuralModel::load(dir.path()).expect_err("corrupt"),
        "model.safetensors",
    );
    assert!(problem.contains("safetensors"), "{problem}");
}

#[test]
fn garbled_meta_is_reported_with_the_file() {
    let (dir, _) = saved();
    std::fs::write(dir.path().join("meta.json"), b"{\"format\": \"prescient-ne").expect("write");
    let problem = artifact_problem(
        NeuralModel::load(dir.path()).expect_err("garbled"),
        "meta.json",
    );
    assert!(problem.contains("JSON"), "{problem}");
}

#[test]
fn missing_files_are_io_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    match NeuralModel::load(dir.path()) {
        Err(NeuralError::Io { path, .. }) => assert!(path.ends_with("meta.json")),
        other => panic!("expected an io error, got {other:?}"),
    }
}

#[test]
fn other_format_versions_are_refused() {
    let (dir, _) = saved();
    edit_meta(dir.path(), |v| v["format_version"] = 99.into());
    let problem = artifact_problem(
        NeuralModel::load(dir.path()).expect_err("version"),
        "meta.json",
    );
    assert!(problem.contains("format version 99"), "{problem}");
}

#[test]
fn vocabulary_mismatch_is_refused() {
    let (dir, _) = saved();
    // one type more in the vocabulary than the network was trained on
    edit_meta(dir.path(), |v| {
        if let Some(a) = v["vocabulary"].as_array_mut() {
            a.push("extra".into());
        }
    });
    let problem = artifact_problem(
        NeuralModel::load(dir.path()).expect_err("vocab"),
        "meta.json",
    );
    assert!(problem.contains("vocabulary mismatch"), "{problem}");
}

#[test]
fn weights_of_another_shape_are_refused() {
    let (dir, _) = saved();
    // metadata and weights consistent with each other's vocabulary but not with the tensors
    edit_meta(dir.path(), |v| {
        if let Some(a) = v["vocabulary"].as_array_mut() {
            a.push("extra".into());
        }
        v["arch"]["vocab"] = (v["arch"]["vocab"].as_u64().unwrap_or(0) + 1).into();
    });
    let problem = artifact_problem(
        NeuralModel::load(dir.path()).expect_err("shape"),
        "model.safetensors",
    );
    assert!(problem.contains("emb.weight"), "{problem}");
    assert!(problem.contains("do not belong together"), "{problem}");
}

#[test]
fn the_ensemble_mix_is_saved_and_an_impossible_one_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut m = model();
    let mix = prescient_neural::EnsembleMix {
        weight: 0.35,
        calibration: prescient_neural::TopCalibration { a: 0.9, b: 0.1 },
        validation_accuracy: 0.8,
        online_accuracy: 0.75,
        rows: 120,
    };
    m.set_ensemble(Some(mix));
    m.save(dir.path()).expect("save");
    let loaded = NeuralModel::load(dir.path()).expect("load");
    assert_eq!(loaded.ensemble(), Some(mix));
    // Without a mix the field is left out, and an older artifact without it loads.
    edit_meta(dir.path(), |v| {
        if let Some(o) = v.as_object_mut() {
            o.remove("ensemble");
        }
    });
    assert_eq!(
        NeuralModel::load(dir.path()).expect("load").ensemble(),
        None
    );
    edit_meta(dir.path(), |v| {
        v["ensemble"] = serde_json::json!({
            "weight": 1.5,
            "calibration": {"a": 1.0, "b": 0.0},
            "validation_accuracy": 0.8,
            "online_accuracy": 0.75,
            "rows": 120
        });
    });
    let problem = artifact_problem(
        NeuralModel::load(dir.path()).expect_err("weight"),
        "meta.json",
    );
    assert!(problem.contains("ensemble.weight"), "{problem}");
}

#[test]
fn a_transformer_round_trips_and_its_cell_is_checked() {
    let cfg = NeuralConfig {
        embed_dim: 4,
        hidden: 8,
        layers: 2,
        cell: Cell::Transformer,
        epochs: 2,
        batch: 4,
        ..NeuralConfig::default()
    };
    let m = NeuralModel::train(&cases(), &cfg, &mut |_| {})
        .expect("training")
        .0;
    let dir = tempfile::tempdir().expect("tempdir");
    m.save(dir.path()).expect("save");
    let loaded = NeuralModel::load(dir.path()).expect("load");
    assert_eq!(loaded.arch().cell, Cell::Transformer);
    let data = cases();
    let ctx: Vec<&[Event]> = data.iter().map(|c| &c[..3]).collect();
    assert_eq!(
        m.predict_batch(&ctx).expect("predict"),
        loaded.predict_batch(&ctx).expect("predict")
    );
    // the cell named at the top must be the network's
    edit_meta(dir.path(), |v| v["cell"] = "gru".into());
    let problem = artifact_problem(
        NeuralModel::load(dir.path()).expect_err("cell mismatch"),
        "meta.json",
    );
    assert!(problem.contains("transformer"), "{problem}");
    edit_meta(dir.path(), |v| v["cell"] = "lstm".into());
    let problem = artifact_problem(
        NeuralModel::load(dir.path()).expect_err("unknown cell"),
        "meta.json",
    );
    assert!(problem.contains("unknown cell"), "{problem}");
}

#[test]
fn the_novelty_discount_is_saved_and_an_impossible_one_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut m = model();
    m.set_novelty_discount(Some(0.4));
    m.save(dir.path()).expect("save");
    let loaded = NeuralModel::load(dir.path()).expect("load");
    assert_eq!(loaded.novelty_discount(), Some(0.4));
    edit_meta(dir.path(), |v| v["novelty_discount"] = 1.5.into());
    let problem = artifact_problem(
        NeuralModel::load(dir.path()).expect_err("a discount above 1"),
        "meta.json",
    );
    assert!(problem.contains("novelty_discount"), "{problem}");
}

/// Sets the first value of every tensor in the saved weights to `value`.
fn poison_weights(dir: &Path, value: f32) {
    use candle_core::{Device, Tensor};
    let p = dir.join("model.safetensors");
    let tensors = candle_core::safetensors::load(&p, &Device::Cpu).expect("load weights");
    let mut out = std::collections::HashMap::new();
    for (name, t) in tensors {
        let shape = t.dims().to_vec();
        let mut values: Vec<f32> = t.flatten_all().expect("flat").to_vec1().expect("f32");
        values[0] = value;
        out.insert(
            name,
            Tensor::from_vec(values, shape, &Device::Cpu).expect("tensor"),
        );
    }
    candle_core::safetensors::save(&out, &p).expect("save weights");
}

#[test]
fn weights_that_are_not_finite_or_overflow_are_refused() {
    for bad in [f32::NAN, f32::INFINITY, 3e38] {
        let (dir, _) = saved();
        poison_weights(dir.path(), bad);
        let problem = artifact_problem(
            NeuralModel::load(dir.path()).expect_err("poisoned weights"),
            "model.safetensors",
        );
        assert!(problem.contains("finite"), "{bad}: {problem}");
    }
}

#[cfg(unix)]
#[test]
fn weights_that_link_to_a_device_are_not_read() {
    let (dir, _) = saved();
    let p = dir.path().join("model.safetensors");
    std::fs::remove_file(&p).expect("remove");
    std::os::unix::fs::symlink("/dev/zero", &p).expect("symlink");
    let problem = artifact_problem(
        NeuralModel::load(dir.path()).expect_err("a device"),
        "model.safetensors",
    );
    assert!(problem.contains("not a regular file"), "{problem}");
}

#[test]
fn weights_larger_than_the_network_needs_are_not_read() {
    let (dir, _) = saved();
    let p = dir.path().join("model.safetensors");
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&p)
        .expect("open");
    // A sparse tail: the size is what is checked, before anything is read.
    f.set_len(f.metadata().expect("meta").len() + (1 << 30))
        .expect("grow");
    let problem = artifact_problem(
        NeuralModel::load(dir.path()).expect_err("too large"),
        "model.safetensors",
    );
    assert!(problem.contains("at most"), "{problem}");
}

#[test]
fn a_model_that_fails_at_run_time_is_swapped_back_out() {
    use std::sync::Arc;
    let good = Arc::new(model());
    let slot = prescient_neural::ModelSlot::new(Arc::clone(&good));
    assert!(!slot.revert(0), "the first model has nothing to go back to");
    let bad = Arc::new(model());
    slot.swap(Arc::clone(&bad));
    let (_, generation) = slot.current();
    assert!(slot.revert(generation));
    assert!(Arc::ptr_eq(&slot.current().0, &good));
    assert!(
        !slot.revert(generation),
        "a failure seen under an older generation does not swap again"
    );
    // A later swap is not undone by a failure of the model before it.
    slot.swap(Arc::clone(&bad));
    let (_, newer) = slot.current();
    assert!(!slot.revert(generation));
    assert!(Arc::ptr_eq(&slot.current().0, &bad));
    assert!(slot.revert(newer));
}
