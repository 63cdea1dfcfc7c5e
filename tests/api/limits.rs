//! The edge holds its limits: shedding past the concurrency limit, the
//! request deadline, the header read timeout. A stalled client is made
//! with a raw TCP stream that sends part of a request and goes quiet.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::helpers::{eventually, problem, spawn_app_with};

/// Opens a connection and sends a request head announcing a 100-byte body
/// followed by only part of it: the handler then waits for the rest,
/// holding its concurrency permit, until the request deadline.
async fn stalled_post(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /api/v1/users HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{\"username\":",
        )
        .await
        .unwrap();
    stream
}

/// Reads until the server closes the connection or `limit` passes.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut received = Vec::new();
    let mut buf = [0_u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return (received, true),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_elapsed) => return (received, false),
        }
    }
}

/// Reads until `needle` has arrived, the server closes the connection or
/// `limit` passes; returns what arrived.
async fn read_until(stream: &mut TcpStream, needle: &[u8], limit: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0_u8; 4096];
    let deadline = Instant::now() + limit;
    while !received.windows(needle.len()).any(|w| w == needle) {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => received.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_limit_is_413_before_any_of_it_is_sent() {
    // A long request deadline: a server that waited for the body would
    // answer nothing within the read's limit below (and 504 much later).
    let app = spawn_app_with(|config| config.edge.request_timeout = Duration::from_secs(600)).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(
            b"POST /api/v1/users HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
              content-length: 10000000\r\nexpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let received = read_until(&mut stream, b"\"status\":413", Duration::from_secs(60)).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    assert!(
        !text.contains("100 Continue"),
        "asked for a body it refuses: {text}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_1_request_without_host_is_400_and_http_1_0_needs_none() {
    let app = spawn_app_with(|_| {}).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let received = read_until(&mut stream, b"\"status\":400", Duration::from_secs(60)).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    assert!(text.contains("Host"), "{text}");
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let (received, _closed) = read_until_closed(&mut stream, Duration::from_secs(60)).await;
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_concurrency_limit_requests_are_shed_with_503_and_retry_after() {
    let app = spawn_app_with(|config| {
        config.edge.concurrency_limit = 1;
        config.edge.request_timeout = Duration::from_secs(30);
    })
    .await;
    let _holder = stalled_post(app.addr).await;
    // The stalled request takes the only permit once its head is parsed;
    // poll until the next request is shed.
    let response = eventually("a request to be shed", || async {
        let response = app.get("/api/v1/users").await;
        (response.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(response)
    })
    .await;
    assert_eq!(response.headers()["retry-after"], "1");
    let body = problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["type"], "/problems/overloaded");
    // Probes are never shed.
    assert_eq!(app.health().await.status(), StatusCode::OK);
    // Once the stalled request ends (its client goes away), its slot is
    // free again and requests are admitted.
    drop(_holder);
    eventually("the freed slot to admit a request", || async {
        (app.get("/api/v1/users").await.status() == StatusCode::OK).then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_is_504() {
    let timeout = Duration::from_millis(300);
    let app = spawn_app_with(|config| config.edge.request_timeout = timeout).await;
    let started = Instant::now();
    let mut stream = stalled_post(app.addr).await;
    let (received, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    assert!(started.elapsed() >= timeout);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_mid_head_is_disconnected_while_others_are_served() {
    let header_timeout = Duration::from_millis(500);
    let app = spawn_app_with(|config| config.edge.header_read_timeout = header_timeout).await;
    let mut stalled = TcpStream::connect(app.addr).await.unwrap();
    stalled.write_all(b"GET /health HT").await.unwrap();
    let started = Instant::now();
    // Meanwhile another client is served normally.
    assert_eq!(app.health().await.status(), StatusCode::OK);
    let (_, closed) = read_until_closed(&mut stalled, header_timeout * 10).await;
    assert!(closed, "the stalled connection was not closed");
    assert!(started.elapsed() >= header_timeout / 2);
    // A client that connects and says nothing at all is closed too.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let (_, closed) = read_until_closed(&mut silent, header_timeout * 10).await;
    assert!(closed, "the silent connection was not closed");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_at_shutdown_is_answered_before_the_node_stops() {
    let app = spawn_app_with(|config| config.edge.request_timeout = Duration::from_secs(30)).await;
    let addr = app.addr;
    let mut stream = stalled_post(addr).await;
    // Let the head reach the handler before the shutdown starts.
    assert_eq!(app.health().await.status(), StatusCode::OK);
    let stopped = tokio::spawn(app.stop());
    eventually("the listener to close", || async {
        TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;
    let rest = br#""drain","email":"drain@example.com"}"#;
    let padding = vec![b' '; 100 - b"{\"username\":".len() - rest.len()];
    stream.write_all(rest).await.unwrap();
    stream.write_all(&padding).await.unwrap();
    let (received, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");
    assert!(closed, "the connection stayed open after the drain");
    stopped.await.unwrap();
}
