//! Credentials in URLs never reach the output: every command below is given a URL with a
//! password, fails to connect (nothing listens on port 1), and neither its stdout nor its
//! stderr, debug logs included, holds the password.

use std::process::Command;

const SECRET: &str = "hunter2-very-secret";

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(args)
        .env("RUST_LOG", "debug")
        .output()
        .expect("the binary runs");
    assert!(!out.status.success(), "{args:?} was expected to fail");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("prescient-secrets-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn log(dir: &std::path::Path) -> String {
    let path = dir.join("events.jsonl");
    std::fs::write(
        &path,
        "{\"id\":\"e1\",\"type\":\"open\",\"time\":\"2024-01-01T00:00:00Z\",\"entities\":[{\"kind\":\"a\",\"id\":\"1\"}]}\n",
    )
    .expect("write log");
    path.display().to_string()
}

#[test]
fn publish_never_prints_the_password() {
    let dir = scratch("publish");
    let log = log(&dir);
    for url in [
        format!("nats://user:{SECRET}@127.0.0.1:1"),
        format!("nats://{SECRET}@127.0.0.1:1"),
        format!("redis://:{SECRET}@127.0.0.1:1"),
        format!("amqp://user:{SECRET}@127.0.0.1:1/%2f"),
        format!("kafka2://user:{SECRET}@127.0.0.1:1"),
    ] {
        let out = run(&["publish", "--log", &log, "--to", &url]);
        assert!(!out.contains(SECRET), "{url}: {out}");
        assert!(
            out.contains("127.0.0.1:1"),
            "the error names the server: {out}"
        );
    }
}

#[test]
fn seed_never_prints_the_password() {
    let dir = scratch("seed");
    let log = log(&dir);
    for url in [
        format!("postgres://user:{SECRET}@127.0.0.1:1/db"),
        format!("mysql://user:{SECRET}@127.0.0.1:1/db"),
    ] {
        let out = run(&["seed", "--log", &log, "--store", &url]);
        assert!(!out.contains(SECRET), "{url}: {out}");
    }
}

#[test]
fn serve_never_prints_the_password() {
    let dir = scratch("serve");
    let config = dir.join("prescient.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\ntype = \"nats\"\nurl = \"nats://user:{SECRET}@127.0.0.1:1\"\n\
             [cache]\ntype = \"memory\"\n[store]\ntype = \"sqlite\"\npath = {:?}\n\
             [admin]\nenabled = false\n",
            dir.join("store.db").display().to_string()
        ),
    )
    .expect("write config");
    let out = run(&["serve", "--config", &config.display().to_string()]);
    assert!(!out.contains(SECRET), "{out}");
    assert!(out.contains("user:***@127.0.0.1:1"), "{out}");
}
