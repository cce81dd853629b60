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
