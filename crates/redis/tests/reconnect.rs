//! `RedisCache` survives a Redis restart: operations fail (without panicking or hanging) while
//! the server is down, and the same instance works again once it is back.
//!
//! Runs a private `redis-server` on a free port; the shared server is never touched.

#![allow(clippy::unwrap_used)] // test helpers fail loudly on setup errors

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prescient_core::{Cache, EntityKey, Entry, PutOutcome, Version};
use prescient_redis::{RedisCache, RedisCacheOptions};

/// A `redis-server` child process, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn start(port: u16) -> std::io::Result<Server> {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Server(child))
}

async fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server on port {port} did not start");
}

#[tokio::test]
async fn cache_recovers_after_the_server_restarts() {
    let port = free_port();
    let server = match start(port) {
        Ok(s) => s,
        Err(e) => {
            prescient_testkit::unavailable(format!("cannot run redis-server: {e}"));
            return;
        }
    };
    wait_listening(port).await;
    let url = format!("redis://127.0.0.1:{port}");
    let cache = RedisCache::connect(
        RedisCacheOptions::new(&url)
            .key_prefix(common::unique("reconnect"))
            .response_timeout(Duration::from_millis(500))
            .connection_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let k = EntityKey::new("orders", "o-1");
    let e = Entry::new(Version(1), "one");
    let ttl = Duration::from_secs(60);
    assert_eq!(
        cache.put(&k, e.clone(), ttl).await.unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(cache.get(&k).await.unwrap(), Some(e.clone()));

    drop(server);
    for _ in 0..3 {
        let got = tokio::time::timeout(Duration::from_secs(5), cache.get(&k))
            .await
            .expect("get hung while the server was down");
        assert!(got.is_err(), "get succeeded with the server down: {got:?}");
        let put = tokio::time::timeout(Duration::from_secs(5), cache.put(&k, e.clone(), ttl))
            .await
            .expect("put hung while the server was down");
        assert!(put.is_err(), "put succeeded with the server down: {put:?}");
    }

    let _server = start(port).unwrap();
    wait_listening(port).await;
    let restarted = Instant::now();
    let e2 = Entry::new(Version(2), "two");
    loop {
        let r = tokio::time::timeout(Duration::from_secs(5), cache.put(&k, e2.clone(), ttl))
            .await
            .expect("put hung after the restart");
        if let Ok(out) = r {
            // The restarted server is empty, and its script cache too (EVALSHA reloads).
            assert_eq!(out, PutOutcome::Stored);
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(5),
            "cache did not recover within 5 s: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cache.get(&k).await.unwrap(), Some(e2));
    println!("recovered {:?} after the restart", restarted.elapsed());
}
