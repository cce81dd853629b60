//! The admin API's request parsing: any method, path, query, headers and body through the
//! real router (with a token set, over an in-memory cache and store). It answers every
//! request with a status, never a panic; health routes never need the token, the others
//! never pass without it.
//!
//! Input: the first byte picks the method, then the request target up to a newline, then
//! header lines (`Name: value`) up to an empty line, then the body.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use prescient_core::{Local, Secret, SystemClock};
use prescient_predict::{SimpleConfig, SimpleModel};
use prescient_prefetch::{Prefetcher, PrefetcherConfig};
use prescient_server::ServeStats;
use prescient_server::admin::{AdminState, Guard, router};
use prescient_server::config::AdminConfig;
use tower::ServiceExt as _;

const TOKEN: &str = "fuzz-token-0123456789";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

fn app() -> axum::Router {
    static APP: OnceLock<axum::Router> = OnceLock::new();
    APP.get_or_init(|| {
        let _guard = runtime().enter();
        let cache: Arc<dyn prescient_core::Cache> = Arc::new(prescient_cache_mem::MemCache::new(
            10_000,
            Duration::from_secs(3600),
        ));
        let store: Arc<dyn prescient_core::Store> =
            Arc::new(prescient_sqlite::SqliteStore::in_memory().expect("sqlite"));
        let predictor = Arc::new(Local::new(SimpleModel::new(SimpleConfig::default())));
        let prefetcher = Prefetcher::new(
            PrefetcherConfig::default(),
            Arc::new(SystemClock),
            predictor,
            cache.clone(),
            store.clone(),
        );
        let admin = AdminConfig {
            token: Some(Secret::new(TOKEN)),
            max_body_bytes: 4096,
            ..AdminConfig::default()
        };
        router(AdminState {
            prefetcher,
            stats: Arc::new(ServeStats::default()),
            cache,
            store,
            model_slot: None,
            stall: Duration::from_secs(30),
            guard: Guard::new(&admin, admin.bind),
        })
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let method = ["GET", "POST", "PUT", "DELETE"][usize::from(first) % 4];
    let (target, rest) = split_line(rest);
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    let mut builder = Request::builder().method(method).uri(target);
    let mut rest = rest;
    loop {
        let (line, after) = split_line(rest);
        rest = after;
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            break;
        };
        builder = builder.header(&line[..colon], line[colon + 1..].trim_ascii());
    }
    let Ok(request) = builder.body(Body::from(rest.to_vec())) else {
        return;
    };
    let path = request.uri().path().to_owned();
    // RFC 7235: the scheme in any case, one or more spaces, the credentials.
    let authorized = request.headers().get("authorization").is_some_and(|v| {
        std::str::from_utf8(v.as_bytes()).is_ok_and(|v| {
            v.split_once(' ').is_some_and(|(scheme, rest)| {
                scheme.eq_ignore_ascii_case("bearer") && rest.trim_matches([' ', '\t']) == TOKEN
            })
        })
    });
    let response = runtime()
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), app().oneshot(request)).await });
    let response = response.expect("the admin API answered within 10 s").expect("infallible");
    let status = response.status().as_u16();
    let guarded = ["/metrics", "/predict", "/get", "/model"].contains(&path.as_str());
    if guarded && !authorized && status != 405 && status != 413 {
        assert_eq!(status, 401, "{method} {path} passed without the token");
    }
});

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}
