#![allow(clippy::unwrap_used)] // a test: an unwrap that fails is a failed test
//! Swapping the neural model of a running `serve` through the admin API: events keep flowing
//! across the swap and none is dropped, predictions come from the new model afterwards, and a
//! broken artifact is refused with the old model kept. Needs no external service.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ChannelSource, http};
use prescient_core::{EntityRef, Event, Timestamp};
use prescient_neural::{NeuralConfig, NeuralModel};
use prescient_server::{Config, ServeReport, ServerError, Service, build};
use tokio::sync::mpsc;

fn event(case: usize, i: usize, ty: &str) -> Event {
    Event::new(
        format!("{case}-{i}"),
        ty,
        Timestamp::from_secs(1_700_000_000 + case as i64 * 1000 + i as i64 * 60),
    )
    .with_entity(EntityRef::new("ticket", format!("t{case}")).with_role("case"))
}

/// Cases that follow `types` in order.
fn cases(types: &[&str], n: usize) -> Vec<Vec<Event>> {
    (0..n)
        .map(|c| {
            types
                .iter()
                .enumerate()
                .map(|(i, t)| event(c, i, t))
                .collect()
        })
        .collect()
}

fn train(types: &[&str], dir: &std::path::Path) {
    let cfg = NeuralConfig {
        embed_dim: 4,
        hidden: 8,
        epochs: 3,
        batch: 4,
        ..NeuralConfig::default()
    };
    let (model, _) = NeuralModel::train(&cases(types, 16), &cfg, &mut |_| {}).unwrap();
    model.save(dir).unwrap();
}

/// A service on `cfg`'s cache, store and predictor, fed by `rx`, with the predictor's neural
/// model slot (if it has one) behind `/model`.
async fn service(cfg: Config, rx: mpsc::UnboundedReceiver<Event>) -> Service {
    let built = build::build_predictor(&cfg).unwrap();
    let cache = build::build_cache(&cfg.cache, Duration::from_secs(3600))
        .await
        .unwrap();
    let store = build::build_store(&cfg.store).await.unwrap();
    Service::from_parts(
        cfg,
        Box::new(ChannelSource(rx)),
        cache,
        store,
        built.predictor,
    )
    .unwrap()
    .with_model_slot(built.model_slot)
}

/// Runs `svc` until the returned sender is used (or dropped).
fn start(
    svc: Service,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<ServeReport, ServerError>>,
) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(svc.run(async {
        let _ = stop_rx.await;
    }));
    (stop_tx, run)
}

/// The next types `/predict` lists after `e`.
async fn predicted_types(addr: std::net::SocketAddr, e: &Event) -> Vec<String> {
    let (status, body) = http(addr, "POST", "/predict", &serde_json::to_string(e).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap().to_owned())
        .collect()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_model_is_swapped_in_while_serving_and_no_event_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (old_dir, new_dir) = (dir.path().join("old"), dir.path().join("new"));
    train(&["open", "work", "close"], &old_dir);
    // The new model knows a type the old one never saw.
    train(&["open", "escalate", "close"], &new_dir);

    let cfg = Config::from_toml_str(&format!(
        "[source]\ntype = \"file\"\npath = \"unused.jsonl\"\n[cache]\ntype = \"memory\"\n\
         [store]\ntype = \"sqlite\"\npath = {:?}\n[admin]\nbind = \"127.0.0.1:0\"\n\
         [predictor]\nmodel = \"neural\"\nneural = {:?}\n",
        dir.path().join("store.db").display().to_string(),
        old_dir.display().to_string()
    ))
    .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let hook_seen = seen.clone();
    let mut svc = service(cfg, rx).await.with_hook(Arc::new(move |e: &Event| {
        hook_seen.lock().unwrap().push(e.id.to_string());
    }));
    let addr = svc.bind_admin().await.unwrap().unwrap();
    let (stop_tx, run) = start(svc);

    let probe = event(999, 0, "open");
    let (status, body) = http(addr, "GET", "/model", "").await;
    assert_eq!(status, 200, "{body}");
    let before: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(before["generation"], 0);
    assert!(
        !predicted_types(addr, &probe)
            .await
            .iter()
            .any(|t| t == "escalate")
    );

    // A producer keeps sending while the model is swapped.
    let producer = tokio::spawn(async move {
        let mut sent = Vec::new();
        for c in 0..40 {
            for (i, t) in ["open", "work", "close"].iter().enumerate() {
                let e = event(c, i, t);
                sent.push(e.id.to_string());
                tx.send(e).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Keep the channel open: a closed source ends the run.
        (sent, tx)
    });
    wait_for("some events before the swap", || {
        seen.lock().unwrap().len() >= 20
    })
    .await;
    let body = format!("{{\"path\": {:?}}}", new_dir.display().to_string());
    let (status, answer) = http(addr, "POST", "/model", &body).await;
    assert_eq!(status, 200, "{answer}");
    let after: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(after["generation"], 1);
    assert_ne!(after["training_log_hash"], before["training_log_hash"]);

    // A broken artifact is refused and the new model stays.
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("meta.json"),
        "{\"format\": \"prescient-neural\"",
    )
    .unwrap();
    let body = format!("{{\"path\": {:?}}}", broken.display().to_string());
    let (status, answer) = http(addr, "POST", "/model", &body).await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer.contains("the old model stays"), "{answer}");
    let (_, now) = http(addr, "GET", "/model", "").await;
    let now: serde_json::Value = serde_json::from_str(&now).unwrap();
    assert_eq!(now["generation"], 1);

    let (sent, _tx) = producer.await.unwrap();
    wait_for("every event", || seen.lock().unwrap().len() >= sent.len()).await;
    assert!(
        predicted_types(addr, &probe)
            .await
            .iter()
            .any(|t| t == "escalate")
    );
    let _ = stop_tx.send(());
    let report = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let processed: HashSet<String> = seen.lock().unwrap().iter().cloned().collect();
    let expected: HashSet<String> = sent.into_iter().collect();
    assert_eq!(processed, expected, "events were dropped or invented");
    assert_eq!(report.processed, expected.len() as u64);
}

#[tokio::test]
async fn without_a_network_the_model_endpoint_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::from_toml_str(&format!(
        "[source]\ntype = \"file\"\npath = \"unused.jsonl\"\n[cache]\ntype = \"memory\"\n\
         [store]\ntype = \"sqlite\"\npath = {:?}\n[admin]\nbind = \"127.0.0.1:0\"\n",
        dir.path().join("store.db").display().to_string(),
    ))
    .unwrap();
    let (_tx, rx) = mpsc::unbounded_channel();
    let mut svc = service(cfg, rx).await;
    assert!(svc.model_slot().is_none());
    let addr = svc.bind_admin().await.unwrap().unwrap();
    let (stop_tx, run) = start(svc);
    let (status, body) = http(addr, "POST", "/model", "{\"path\": \"/nowhere\"}").await;
    assert_eq!(status, 409, "{body}");
    let _ = stop_tx.send(());
    run.await.unwrap().unwrap();
}

#[test]
fn a_neural_model_needs_its_directory() {
    let err = Config::from_toml_str(
        "[source]\ntype = \"file\"\npath = \"x.jsonl\"\n[cache]\ntype = \"memory\"\n\
         [store]\ntype = \"sqlite\"\npath = \"x.db\"\n[predictor]\nmodel = \"ensemble\"\n",
    )
    .and_then(|c| c.check().map(|()| c))
    .unwrap_err()
    .to_string();
    assert!(err.contains("predictor.neural"), "{err}");
}
