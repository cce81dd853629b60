#![allow(clippy::unwrap_used)] // a test: an unwrap that fails is a failed test
//! A NATS server that requires a user and password: the source connects with them given in
//! the options or in the URL, fails without them, and its errors never hold the password.
//! Starts its own `nats-server` on a spare port (and kills only that one).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prescient_nats::{NatsAuth, NatsError, NatsSource, NatsSourceOptions};
use prescient_testkit::{unavailable, unique};

const PASSWORD: &str = "s3cret-pass-for-test";

/// A `nats-server` of this test's own, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    _dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn start() -> Option<Server> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(unique("nats-auth"));
    std::fs::create_dir_all(&dir).unwrap();
    let child =
        Command::new(std::env::var("PRESCIENT_NATS_SERVER").unwrap_or("nats-server".into()))
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .args(["--user", "prescient", "--pass", PASSWORD])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            unavailable(format!("cannot start nats-server: {e}"));
            return None;
        }
    };
    let server = Server {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(server)
}

fn options(url: String, auth: NatsAuth) -> NatsSourceOptions {
    let stream = unique("AUTH");
    NatsSourceOptions {
        url,
        auth,
        subjects: vec![format!("ptest.{stream}.events")],
        dead_letter_subject: format!("ptest.{stream}.dead"),
        durable: format!("{stream}_durable"),
        stream,
        connect_timeout: Duration::from_secs(2),
        ..NatsSourceOptions::default()
    }
}

#[tokio::test]
async fn a_server_that_requires_a_password_is_reached_with_one() {
    let Some(server) = start() else { return };
    let bare = format!("nats://127.0.0.1:{}", server.port);

    let given = NatsAuth {
        user: Some("prescient".into()),
        password: Some(prescient_core::Secret::new(PASSWORD)),
        ..NatsAuth::default()
    };
    let source = NatsSource::connect(options(bare.clone(), given)).await;
    assert!(source.is_ok(), "{:?}", source.err());
    assert!(!format!("{:?}", source.unwrap()).contains(PASSWORD));

    let in_url = format!("nats://prescient:{PASSWORD}@127.0.0.1:{}", server.port);
    let source = NatsSource::connect(options(in_url, NatsAuth::default())).await;
    assert!(source.is_ok(), "{:?}", source.err());

    let wrong = format!(
        "nats://prescient:wrong-{PASSWORD}@127.0.0.1:{}",
        server.port
    );
    match NatsSource::connect(options(wrong, NatsAuth::default())).await {
        Ok(_) => panic!("a wrong password connected"),
        Err(e @ NatsError::Unavailable(_)) => {
            let shown = e.to_string();
            assert!(!shown.contains(PASSWORD), "{shown}");
            assert!(shown.contains("prescient:***@"), "{shown}");
        }
        Err(other) => panic!("expected the server to refuse, got {other}"),
    }

    let none = NatsSource::connect(options(bare, NatsAuth::default())).await;
    assert!(none.is_err(), "no credentials connected");
}

#[tokio::test]
async fn a_password_without_a_user_is_a_config_error() {
    let auth = NatsAuth {
        password: Some(prescient_core::Secret::new(PASSWORD)),
        ..NatsAuth::default()
    };
    match NatsSource::connect(options("nats://127.0.0.1:1".into(), auth)).await {
        Err(NatsError::Config(m)) => assert!(m.contains("user"), "{m}"),
        other => panic!("expected a config error, got {:?}", other.err()),
    }
}
