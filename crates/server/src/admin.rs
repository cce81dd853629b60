//! The admin HTTP API (axum), bound to `127.0.0.1:9464` by default.
//!
//! - `GET /healthz`: 200 while the process runs.
//! - `GET /readyz`: 200 when the source answered last time and the cache and store answer a
//!   probe now; 503 with the failing parts otherwise.
//! - `GET /metrics`: Prometheus text format (see [`crate::metrics`]).
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
//!
//! With `[admin] token` set, every route but `/healthz` and `/readyz` needs
//! `Authorization: Bearer TOKEN` (401 otherwise). Without a token, a bind off loopback refuses
//! `POST /model` (403): loading a directory is never open to the network. Request bodies past
//! `[admin] max_body_bytes` answer 413.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prescient_core::{
    Cache, EntityKey, Event, Observe, PredictRequest, SmolStr, Store, StoreError, Version,
};
use prescient_neural::ModelSlot;
use prescient_prefetch::{Prefetcher, ReadError};
use serde::{Deserialize, Serialize};

use crate::config::AdminConfig;
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
    /// Who may call it.
    pub guard: Guard,
}

/// Who may call the admin API: the bearer token, and whether the bind is loopback.
#[derive(Debug, Clone)]
pub struct Guard {
    token: Option<prescient_core::Secret>,
    loopback: bool,
    max_body_bytes: usize,
}

impl Guard {
    /// The guard for `cfg`, bound at `bind`.
    pub fn new(cfg: &AdminConfig, bind: SocketAddr) -> Self {
        Guard {
            token: cfg.token.clone(),
            loopback: bind.ip().is_loopback(),
            max_body_bytes: cfg.max_body_bytes,
        }
    }

    /// Whether anyone who can reach the bind can call every route.
    pub fn is_open_to_the_network(&self) -> bool {
        self.token.is_none() && !self.loopback
    }

    /// Whether a request carrying `authorization` may pass.
    fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        // `Bearer` in any case, one or more spaces, the token (RFC 7235 credentials).
        let Some(value) = authorization else {
            return false;
        };
        let Some((scheme, given)) = value.split_at_checked(6) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer") || !given.starts_with(b" ") {
            return false;
        }
        constant_time_eq(given.trim_ascii(), token.expose().as_bytes())
    }
}

/// Compares two secrets in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    let limit = state.guard.max_body_bytes;
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/predict", post(predict))
        .route("/get", get(read))
        .route("/model", get(model_info).post(swap_model))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Lets a request through when it carries the token (or none is set).
async fn authorize(State(s): State<AdminState>, request: Request, next: Next) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if !s.guard.admits(header) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "this admin API needs `Authorization: Bearer TOKEN` ([admin] token)\n",
        )
            .into_response();
    }
    next.run(request).await
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
    if s.guard.is_open_to_the_network() {
        return (
            StatusCode::FORBIDDEN,
            "POST /model on an admin API bound off loopback needs [admin] token\n",
        )
            .into_response();
    }
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
    let body = s.stats.metrics.render(&s.prefetcher.snapshot(), &s.stats);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn predict(State(s): State<AdminState>, Json(event): Json<Event>) -> Response {
    let predictor = s.prefetcher.predictor();
    let req = PredictRequest {
        event: &event,
        observe: Observe::Skip,
        deadline: None,
    };
    let started = Instant::now();
    let answer = predictor.predict(req).await;
    s.stats.metrics.record_predict(started.elapsed());
    match answer {
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
    let started = Instant::now();
    let answer = s.prefetcher.get(&key, Version(q.min_version)).await;
    let outcome = match &answer {
        Ok((_, outcome)) => outcome.as_str(),
        Err(_) => "error",
    };
    s.stats.metrics.record_read(outcome, started.elapsed());
    match answer {
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
