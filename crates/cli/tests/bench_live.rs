//! `prescient bench live` end to end, over the live NATS, Redis and PostgreSQL: a small generated
//! log goes through the in-process `serve` and both consumers, and the JSON report accounts for
//! every event published. Without the services the test prints `SKIPPED` (fails under CI=true).

#![allow(clippy::unwrap_used)] // a test: an unwrap that fails is a failed test

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::process::Command;
use std::time::Duration;

use prescient_testkit::{service, unavailable};

/// Whether the `host:port` of `url` accepts a TCP connection.
fn reachable(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.to_socket_addrs().is_ok_and(|mut addrs| {
        addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
    })
}

/// `n` events, a second apart, each reading one order and one customer.
fn log(n: usize) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".jsonl")
        .tempfile()
        .unwrap();
    for i in 0..n {
        writeln!(
            file,
            r#"{{"id":"e{i}","type":"{ty}","time":{ms},"entities":[{{"kind":"orders","id":"o-{o}"}},{{"kind":"customers","id":"c-{c}"}}]}}"#,
            ty = if i % 2 == 0 { "place order" } else { "pay order" },
            ms = 1_700_000_000_000u64 + 1_000 * i as u64,
            o = i / 2,
            c = i % 3,
        )
        .unwrap();
    }
    file.flush().unwrap();
    file
}

#[test]
fn bench_live_reads_every_published_event_on_both_sides() {
    let nats = service("PRESCIENT_TEST_NATS", "nats://127.0.0.1:4222");
    let redis = service("PRESCIENT_TEST_REDIS", "redis://127.0.0.1:6379");
    let postgres = service(
        "PRESCIENT_TEST_POSTGRES",
        "postgres://postgres@127.0.0.1:5432/test",
    );
    for url in [&nats, &redis, &postgres] {
        if !reachable(url) {
            unavailable(format!("bench live needs {url}, which is unreachable"));
            return;
        }
    }
    let n = 40;
    let log = log(n);
    let out = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(["bench", "live", "--json", "--stall-secs", "30"])
        .arg("--log")
        .arg(log.path())
        .args(["--nats", &nats, "--redis", &redis, "--postgres", &postgres])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench live failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));

    assert_eq!(report["events"], n, "{report}");
    assert_eq!(report["times"], "event");
    assert_eq!(report["clock"], "event");
    assert_eq!(report["model"], "online");
    for key in [
        "events_per_sec",
        "publish_events_per_sec",
        "predict_us_per_event",
    ] {
        assert!(report[key].as_f64().is_some(), "{key} in {report}");
    }
    for key in [
        "predictions",
        "prefetches_issued",
        "prefetches_used",
        "joined",
    ] {
        assert!(
            report["prefetch"][key].as_u64().is_some(),
            "prefetch.{key} in {report}"
        );
    }
    assert!(report["prefetch"]["planner"].is_object(), "{report}");
    // Each side's consumer read every published event, two entities each.
    for side in ["prescient", "cache_aside"] {
        let s = &report[side];
        assert_eq!(s["reads"], n, "{side}: {s}");
        assert_eq!(s["entity_reads"], 2 * n, "{side}: {s}");
        let hit_ratio = s["hit_ratio"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&hit_ratio), "{side}: {s}");
    }
    // Cache-aside starts cold: its first read misses and loads from PostgreSQL.
    assert!(
        report["cache_aside"]["store_loads"].as_u64().unwrap() >= 1,
        "{report}"
    );
}
