#![allow(clippy::unwrap_used)] // a test: an unwrap that fails is a failed test
//! The admin API's guard: a bearer token on every route but the health ones, `POST /model`
//! refused off loopback without a token, and a bound on request bodies. Needs no external
//! service.

mod common;

use std::time::Duration;

use common::{ChannelSource, http, http_with};
use prescient_core::Event;
use prescient_server::{Config, ServeReport, ServerError, Service, build};
use tokio::sync::mpsc;

const TOKEN: &str = "correct-horse-battery-staple";

fn config(dir: &std::path::Path, admin: &str) -> Config {
    Config::from_toml_str(&format!(
        "[source]\ntype = \"file\"\npath = \"unused.jsonl\"\n[cache]\ntype = \"memory\"\n\
         [store]\ntype = \"sqlite\"\npath = {:?}\n[admin]\n{admin}\n",
        dir.join("store.db").display().to_string(),
    ))
    .unwrap()
}

/// Serves `cfg` until the returned sender is used; returns the admin API's address.
async fn start(
    cfg: Config,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<ServeReport, ServerError>>,
    mpsc::UnboundedSender<Event>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let built = build::build_predictor(&cfg).unwrap();
    let cache = build::build_cache(&cfg.cache, Duration::from_secs(3600))
        .await
        .unwrap();
    let store = build::build_store(&cfg.store).await.unwrap();
    let mut svc = Service::from_parts(
        cfg,
        Box::new(ChannelSource(rx)),
        cache,
        store,
        built.predictor,
    )
    .unwrap();
    let bound = svc.bind_admin().await.unwrap().unwrap();
    // A wildcard bind is reached through loopback.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], bound.port()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(svc.run(async {
        let _ = stop_rx.await;
    }));
    (addr, stop_tx, run, tx)
}

#[tokio::test]
async fn with_a_token_every_route_but_health_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!("bind = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\""),
    );
    let (addr, stop, run, _tx) = start(cfg).await;
    assert_eq!(http(addr, "GET", "/healthz", "").await.0, 200);
    assert_ne!(http(addr, "GET", "/readyz", "").await.0, 401);
    for (method, path, body) in [
        ("GET", "/metrics", ""),
        ("GET", "/get?kind=a&id=1", ""),
        ("GET", "/model", ""),
        ("POST", "/model", "{\"path\": \"/nowhere\"}"),
        ("POST", "/predict", "{}"),
    ] {
        let (status, text) = http(addr, method, path, body).await;
        assert_eq!(status, 401, "{method} {path} without a token: {text}");
        let wrong = http_with(addr, method, path, &["Authorization: Bearer nope"], body).await;
        assert_eq!(wrong.0, 401, "{method} {path} with a wrong token");
        let bare = http_with(
            addr,
            method,
            path,
            &[&format!("Authorization: {TOKEN}")],
            body,
        )
        .await;
        assert_eq!(bare.0, 401, "{method} {path} with the token but no scheme");
    }
    let auth = format!("Authorization: Bearer {TOKEN}");
    let (status, text) = http_with(addr, "GET", "/metrics", &[&auth], "").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("prescient_events_total"), "{text}");
    // The scheme in any case, and more than one space (found by the admin_request fuzz target).
    let spaced = format!("Authorization: bearer    {TOKEN}");
    let (status, text) = http_with(addr, "GET", "/metrics", &[&spaced], "").await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = http_with(addr, "GET", "/model", &[&auth], "").await;
    assert_eq!(
        status, 409,
        "the token lets it through to the handler: {text}"
    );
    let _ = stop.send(());
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn off_loopback_without_a_token_the_model_cannot_be_swapped() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "bind = \"0.0.0.0:0\"");
    let (addr, stop, run, _tx) = start(cfg).await;
    let (status, text) = http(addr, "POST", "/model", "{\"path\": \"/etc\"}").await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("[admin] token"), "{text}");
    assert_eq!(http(addr, "GET", "/metrics", "").await.0, 200);
    let _ = stop.send(());
    run.await.unwrap().unwrap();

    // On loopback the same request reaches the handler (no network here: 409).
    let cfg = config(dir.path(), "bind = \"127.0.0.1:0\"");
    let (addr, stop, run, _tx) = start(cfg).await;
    let (status, text) = http(addr, "POST", "/model", "{\"path\": \"/etc\"}").await;
    assert_eq!(status, 409, "{text}");
    let _ = stop.send(());
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_body_past_the_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "bind = \"127.0.0.1:0\"\nmax_body_bytes = 1024");
    let (addr, stop, run, _tx) = start(cfg).await;
    let big = format!(
        "{{\"id\":\"1\",\"type\":\"{}\",\"time\":\"2024-01-01T00:00:00Z\"}}",
        "x".repeat(4096)
    );
    let (status, text) = http(addr, "POST", "/predict", &big).await;
    assert_eq!(status, 413, "{text}");
    let small =
        "{\"id\":\"1\",\"type\":\"open\",\"time\":\"2024-01-01T00:00:00Z\",\"entities\":[]}";
    let (status, text) = http(addr, "POST", "/predict", small).await;
    assert_eq!(status, 200, "{text}");
    let _ = stop.send(());
    run.await.unwrap().unwrap();
}

#[test]
fn the_token_is_never_printed_and_a_short_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &format!("token = \"{TOKEN}\""));
    cfg.check().unwrap();
    let shown = format!("{cfg:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains("redacted"), "{shown}");
    let err = Config::from_toml_str(
        "[source]\ntype = \"file\"\npath = \"x.jsonl\"\n[cache]\ntype = \"memory\"\n\
         [store]\ntype = \"sqlite\"\npath = \"x.db\"\n[admin]\ntoken = \"short\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("admin.token"), "{err}");
}

#[test]
fn the_model_memory_budget_is_read_and_zero_refused() {
    let base = "[source]\ntype = \"file\"\npath = \"x.jsonl\"\n[cache]\ntype = \"memory\"\n\
                [store]\ntype = \"sqlite\"\npath = \"x.db\"\n[predictor]\n";
    let cfg = Config::from_toml_str(&format!("{base}memory_mb = 64\n")).unwrap();
    assert_eq!(cfg.predictor.memory_mb, Some(64));
    build::build_predictor(&cfg).unwrap();
    let err = Config::from_toml_str(&format!("{base}memory_mb = 0\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("predictor.memory_mb"), "{err}");
}
