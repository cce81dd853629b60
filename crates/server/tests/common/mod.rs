//! Helpers shared by the server's integration tests.

use prescient_core::{Ack, Delivery, Event, EventSource, SourceError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Events sent through a channel: the test decides when they arrive.
#[derive(Debug)]
#[allow(dead_code)] // not every test binary feeds a channel
pub struct ChannelSource(pub mpsc::UnboundedReceiver<Event>);

#[async_trait::async_trait]
impl EventSource for ChannelSource {
    async fn next(&mut self) -> Result<Option<Delivery>, SourceError> {
        Ok(self.0.recv().await.map(|e| Delivery {
            payload: Ok(e),
            attempt: 1,
            ack: Ack::noop(),
        }))
    }
}

/// A minimal HTTP/1.1 request; returns (status, body).
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    http_with(addr, method, path, &[], body).await
}

/// [`http`] with extra headers, each a full `Name: value` line without the line end.
#[allow(dead_code)] // not every test binary sends headers
pub async fn http_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_owned();
    (status, body)
}
