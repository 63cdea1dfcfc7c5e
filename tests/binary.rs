//! The real `bulwark` binary, as an operator runs it.
//!
//! The failures pinned here: a SIGTERM must drain and exit 0 with every
//! store flushed, so a restart on the same data directory finds everything;
//! a SIGKILL in the middle of a stream of writes must not lose any write
//! that was acknowledged (201) before it — an acknowledgement means the
//! write is durable; and a bad configuration value must stop start-up with
//! exit code 2 and a message naming the key.
#![allow(clippy::unwrap_used)]

mod process;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use process::{EVENTUALLY, POLL_INTERVAL, SHUTDOWN_TIMEOUT, Server, get, post, settled_order};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Users acknowledged before the SIGKILL: enough that writes are in flight
/// when it lands.
const ACKED_BEFORE_KILL: usize = 40;
/// Writers posting users at once.
const WRITERS: usize = 4;
/// Upper bound on the users each writer posts, so the loop stops by itself.
const POSTS_PER_WRITER_MAX: usize = 2_000;

/// Starts the binary on 127.0.0.1:0 with `data_dir`.
fn start(data_dir: &std::path::Path) -> Server {
    Server::start([std::ffi::OsStr::new("--data-dir"), data_dir.as_os_str()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_0_and_a_restart_on_the_same_data_keeps_everything() {
    let data = tempfile::tempdir().unwrap();
    let client = Client::new();
    let mut server = start(data.path());
    let user = post(
        &client,
        server.url("/api/v1/users"),
        json!({"username": "ada", "email": "ada@example.com"}),
    )
    .await;
    let product = post(
        &client,
        server.url("/api/v1/products"),
        json!({"name": "lamp", "price": 12.5, "quantity": 10}),
    )
    .await;
    let order = post(
        &client,
        server.url("/api/v1/orders"),
        json!({"user_id": user["id"], "items": [{"product_id": product["id"], "quantity": 2, "price": 12.5}]}),
    )
    .await;
    let order_url = format!("/api/v1/orders/{}", order["id"]);
    let settled = settled_order(&client, server.url(&order_url)).await;
    assert_eq!(settled["status"], "completed");

    server.terminate();
    let status = server.exit_status(SHUTDOWN_TIMEOUT).await;
    assert!(status.success(), "exit status {status}");
    drop(server);

    let server = start(data.path());
    let (status, body) = get(
        &client,
        server.url(&format!("/api/v1/users/{}", user["id"])),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["username"], "ada");
    let (status, body) = get(
        &client,
        server.url(&format!("/api/v1/products/{}", product["id"])),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["quantity"], 8);
    let (status, body) = get(&client, server.url(&order_url)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_user_acknowledged_before_a_sigkill_exists_after_restart() {
    let data = tempfile::tempdir().unwrap();
    let client = Client::new();
    let mut server = start(data.path());
    let acked: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let killed = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (client, acked, killed) = (client.clone(), Arc::clone(&acked), Arc::clone(&killed));
        let url = server.url("/api/v1/users");
        writers.push(tokio::spawn(async move {
            for n in 0..POSTS_PER_WRITER_MAX {
                let username = format!("w{writer}-u{n}");
                let body =
                    json!({"username": username, "email": format!("{username}@example.com")});
                let Ok(response) = client.post(&url).json(&body).send().await else {
                    break;
                };
                if response.status() != StatusCode::CREATED {
                    break;
                }
                let Ok(user) = response.json::<Value>().await else {
                    break;
                };
                acked
                    .lock()
                    .await
                    .push((user["id"].as_u64().unwrap(), username));
                if killed.load(Ordering::Relaxed) {
                    break;
                }
            }
        }));
    }
    let deadline = Instant::now() + EVENTUALLY;
    while acked.lock().await.len() < ACKED_BEFORE_KILL {
        assert!(Instant::now() < deadline, "too few users acknowledged");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    // SIGKILL while the writers are still posting.
    server.child.kill().unwrap();
    killed.store(true, Ordering::Relaxed);
    server.exit_status(SHUTDOWN_TIMEOUT).await;
    for writer in writers {
        writer.await.unwrap();
    }
    drop(server);

    let acked = acked.lock().await.clone();
    assert!(acked.len() >= ACKED_BEFORE_KILL);
    let server = start(data.path());
    for (id, username) in &acked {
        let (status, body) = get(&client, server.url(&format!("/api/v1/users/{id}"))).await;
        assert_eq!(status, StatusCode::OK, "acknowledged user {id} is lost");
        assert_eq!(&body["username"], username.as_str());
    }
}

#[test]
fn a_bad_configuration_value_exits_2_naming_the_key() {
    let output = Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .arg("serve")
        .env("BULWARK_HTTP", "abc")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(r#"BULWARK_HTTP: invalid socket address "abc""#),
        "{stderr}"
    );
}

#[test]
fn an_unknown_key_in_the_config_file_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bulwark.toml");
    std::fs::write(&file, "[http]\nadress = \"127.0.0.1:0\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown key `http.adress`"), "{stderr}");
}
