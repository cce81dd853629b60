//! The admin HTTP API (axum), bound to `127.0.0.1:9464` by default.
//!
//! - `GET /healthz`: 200 while the process runs.
//! - `GET /readyz`: 200 when the source answered last time and the cache and store answer a
//!   probe now; 503 with the failing parts otherwise.
//! - `GET /metrics`: Prometheus text format (see [`render_metrics`]).
//! - `POST /predict`: an event as JSON in, the predictor's forecast as JSON out. The predictor
//!   does not learn from it (`Observe::Skip`).
//! - `GET /get?kind=K&id=I&min_version=V`: the consumer API over HTTP:
//!   `{"kind","id","version","outcome","encoding","data"}`, with `encoding` `utf8` or `base64`.
//! - `GET /model`: the neural model being served (`[predictor] model = "neural"` or
//!   `"ensemble"`): generation, training log hash, vocabulary size, validation metrics.
//! - `POST /model` with `{"path": "DIR"}`: loads the artifact in `DIR` and swaps it in without
//!   stopping; events after the swap are predicted by the new model, none is dropped. A
//!   missing, corrupt or incompatible artifact answers 422 with the reason and the old model
//!   stays. Without a neural predictor both answer 409.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prescient_core::{
    Cache, EntityKey, Event, Observe, PredictRequest, SmolStr, Store, StoreError, Version,
};
use prescient_neural::ModelSlot;
use prescient_prefetch::{BreakerState, Prefetcher, ReadError, Snapshot};
use serde::{Deserialize, Serialize};

use crate::stats::ServeStats;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The prefetcher (counters, predictor, consumer API).
    pub prefetcher: Prefetcher,
    /// The serve loop's counters.
    pub stats: Arc<ServeStats>,
    /// The cache, probed by `/readyz`.
    pub cache: Arc<dyn Cache>,
    /// The store, probed by `/readyz`.
    pub store: Arc<dyn Store>,
    /// The neural model's slot, for `/model` (absent: the predictor has no network).
    pub model_slot: Option<ModelSlot>,
    /// `/readyz` is not ready while a batch has been processing for longer than this.
    pub stall: Duration,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/predict", post(predict))
        .route("/get", get(read))
        .route("/model", get(model_info).post(swap_model))
        .with_state(state)
}

/// What `/model` says about the model being served.
#[derive(Debug, Serialize)]
struct ModelView {
    generation: u64,
    training_log_hash: String,
    vocabulary: usize,
    validation_accuracy: f64,
    validation_ece: f64,
    ensemble_weight: Option<f32>,
}

fn model_view(slot: &ModelSlot) -> ModelView {
    let (model, generation) = slot.current();
    ModelView {
        generation,
        training_log_hash: model.info().training_log_hash.clone(),
        vocabulary: model.vocabulary().len(),
        validation_accuracy: model.info().report.val_accuracy,
        validation_ece: model.info().report.val_ece,
        ensemble_weight: model.ensemble().map(|m| m.weight),
    }
}

fn no_network() -> Response {
    (
        StatusCode::CONFLICT,
        "the predictor has no neural model ([predictor] model = \"neural\" or \"ensemble\")\n",
    )
        .into_response()
}

async fn model_info(State(s): State<AdminState>) -> Response {
    match &s.model_slot {
        Some(slot) => Json(model_view(slot)).into_response(),
        None => no_network(),
    }
}

/// The body of `POST /model`.
#[derive(Debug, Deserialize)]
struct SwapRequest {
    path: std::path::PathBuf,
}

async fn swap_model(State(s): State<AdminState>, Json(req): Json<SwapRequest>) -> Response {
    let Some(slot) = s.model_slot.clone() else {
        return no_network();
    };
    let (path, loader) = (req.path.clone(), slot.clone());
    // Loading reads and checks the weights: off the async workers.
    let loaded = tokio::task::spawn_blocking(move || loader.load(&path)).await;
    match loaded {
        Ok(Ok(_)) => {
            tracing::info!(message = "Neural model swapped.", path = %req.path.display());
            Json(model_view(&slot)).into_response()
        }
        Ok(Err(e)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "cannot load {}: {}; the old model stays\n",
                req.path.display(),
                prescient_core::error_chain(&e)
            ),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("loading {} failed: {e}\n", req.path.display()),
        )
            .into_response(),
    }
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let mut failing = Vec::new();
    if !s.stats.source_up.load(Ordering::Relaxed) {
        failing.push("source".to_owned());
    }
    if let Some(d) = s.stats.processing_for().filter(|d| *d > s.stall) {
        failing.push(format!(
            "events: one batch has been processing for {} s",
            d.as_secs()
        ));
    }
    let probe = EntityKey::new("__prescient_probe", "readyz");
    let t = Duration::from_secs(1);
    match tokio::time::timeout(t, s.cache.get(&probe)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => failing.push(format!("cache: {e}")),
        Err(_) => failing.push("cache: timed out".into()),
    }
    match tokio::time::timeout(t, s.store.load(&probe)).await {
        Ok(Ok(_)) | Ok(Err(StoreError::UnknownKind(_))) => {}
        Ok(Err(e)) => failing.push(format!("store: {e}")),
        Err(_) => failing.push("store: timed out".into()),
    }
    if failing.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", failing.join("; ")),
        )
            .into_response()
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let body = render_metrics(&s.prefetcher.snapshot(), &s.stats);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Renders the prefetcher's snapshot and the serve loop's counters in the Prometheus text
/// format. Every counter is `prescient_<name>_total`; gauges are `prescient_queue_depth`,
/// `prescient_in_flight`, `prescient_hit_ratio` (hits / (hits + joined + misses)),
/// `prescient_source_up` and `prescient_breaker_state{state=...}`.
pub fn render_metrics(snap: &Snapshot, stats: &ServeStats) -> String {
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, v: u64| {
        let _ = writeln!(out, "# HELP prescient_{name}_total {help}");
        let _ = writeln!(out, "# TYPE prescient_{name}_total counter");
        let _ = writeln!(out, "prescient_{name}_total {v}");
    };
    for (name, v) in &snap.counters {
        counter(name, &format!("Prefetcher counter {name}."), *v);
    }
    counter("retries", "Retries of failed prefetch loads.", snap.retries);
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    counter(
        "messages_received",
        "Deliveries taken from the source.",
        ld(&stats.received),
    );
    counter(
        "events_processed",
        "Events processed and acked.",
        ld(&stats.processed),
    );
    counter(
        "dead_letters",
        "Malformed messages dead-lettered.",
        ld(&stats.dead_letters),
    );
    counter(
        "ack_errors",
        "Acks or dead-letterings that failed.",
        ld(&stats.ack_errors),
    );
    counter(
        "source_errors",
        "Errors of the event source.",
        ld(&stats.source_errors),
    );
    let get = |n: &str| {
        snap.counters
            .iter()
            .find(|(k, _)| *k == n)
            .map_or(0, |(_, v)| *v)
    };
    let reads = get("hits") + get("joined") + get("misses");
    let ratio = if reads == 0 {
        0.0
    } else {
        get("hits") as f64 / reads as f64
    };
    let mut gauge = |name: &str, help: &str, v: String| {
        let _ = writeln!(out, "# HELP prescient_{name} {help}");
        let _ = writeln!(out, "# TYPE prescient_{name} gauge");
        let _ = writeln!(out, "prescient_{name} {v}");
    };
    gauge(
        "queue_depth",
        "Prefetch plans waiting.",
        snap.queue_depth.to_string(),
    );
    gauge(
        "in_flight",
        "Prefetch loads in flight.",
        snap.in_flight.to_string(),
    );
    gauge(
        "hit_ratio",
        "Consumer reads served from the cache: hits / (hits + joined + misses).",
        format!("{ratio}"),
    );
    gauge(
        "source_up",
        "1 when the event source answered last time.",
        u8::from(stats.source_up.load(Ordering::Relaxed)).to_string(),
    );
    let _ = writeln!(
        out,
        "# HELP prescient_breaker_state The predictor circuit breaker's state (1 for the current one)."
    );
    let _ = writeln!(out, "# TYPE prescient_breaker_state gauge");
    for (name, st) in [
        ("closed", BreakerState::Closed),
        ("open", BreakerState::Open),
        ("half_open", BreakerState::HalfOpen),
    ] {
        let _ = writeln!(
            out,
            "prescient_breaker_state{{state=\"{name}\"}} {}",
            u8::from(snap.breaker == st)
        );
    }
    out
}

async fn predict(State(s): State<AdminState>, Json(event): Json<Event>) -> Response {
    let predictor = s.prefetcher.predictor();
    let req = PredictRequest {
        event: &event,
        observe: Observe::Skip,
        deadline: None,
    };
    match predictor.predict(req).await {
        Ok(f) => Json(f).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

/// The query of `/get`.
#[derive(Debug, Deserialize)]
pub struct GetQuery {
    /// The entity's kind.
    pub kind: SmolStr,
    /// The entity's id.
    pub id: SmolStr,
    /// The least version the reader accepts (default 0).
    #[serde(default)]
    pub min_version: u64,
}

/// The answer of `/get`.
#[derive(Debug, Serialize, Deserialize)]
pub struct GetResponse {
    /// The entity's kind.
    pub kind: SmolStr,
    /// The entity's id.
    pub id: SmolStr,
    /// The version read.
    pub version: u64,
    /// `hit`, `joined` or `miss`.
    pub outcome: String,
    /// `utf8` or `base64`.
    pub encoding: String,
    /// The data, encoded as `encoding` says.
    pub data: String,
}

async fn read(State(s): State<AdminState>, Query(q): Query<GetQuery>) -> Response {
    let key = EntityKey::new(q.kind.clone(), q.id.clone());
    match s.prefetcher.get(&key, Version(q.min_version)).await {
        Ok((entry, outcome)) => {
            let (encoding, data) = match std::str::from_utf8(&entry.data) {
                Ok(t) => ("utf8", t.to_owned()),
                Err(_) => ("base64", base64(&entry.data)),
            };
            Json(GetResponse {
                kind: q.kind,
                id: q.id,
                version: entry.version.0,
                outcome: outcome.as_str().to_owned(),
                encoding: encoding.to_owned(),
                data,
            })
            .into_response()
        }
        Err(e @ ReadError::NotFound(_)) => {
            (StatusCode::NOT_FOUND, format!("{e}\n")).into_response()
        }
        Err(e @ ReadError::VersionUnavailable { .. }) => {
            (StatusCode::CONFLICT, format!("{e}\n")).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }
}
