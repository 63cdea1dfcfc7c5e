//! The real `bulwark` binary, as an operator runs it.
//!
//! The failures pinned here: a SIGTERM must drain and exit 0 with every
//! store flushed, so a restart on the same data directory finds everything
//! and finishes the order whose saga the signal interrupted; a SIGKILL in
//! the middle of a stream of writes (users, products, orders) must not lose
//! any write that was acknowledged (201) before it — an acknowledgement
//! means the write is durable; and a bad configuration value must stop start-up with
//! exit code 2 and a message naming the key. The SIGTERM and SIGKILL tests
//! run on both schedulers the binary builds: one worker per core, and the
//! current-thread scheduler of `--worker-threads 1`.
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

/// Resources acknowledged before the SIGKILL: enough that writes are in
/// flight when it lands.
const ACKED_BEFORE_KILL: usize = 40;
/// Writers posting users at once (beside one posting products and one
/// posting orders).
const WRITERS: usize = 4;
/// Simulated provider latency of the SIGTERM test: long enough that an
/// order is still in its charge step when the signal lands.
const PAYMENT_LATENCY_MS: &str = "4000";
/// Upper bound on the posts of each writer, so the loop stops by itself.
const POSTS_PER_WRITER_MAX: usize = 2_000;

/// How many threads run the node: tokio's default (one per core), or one
/// (the current-thread scheduler, `--worker-threads 1`).
#[derive(Clone, Copy)]
enum Threads {
    PerCore,
    One,
}

/// Starts the binary on 127.0.0.1:0 with `data_dir`, `threads` and `more`
/// arguments.
fn start(data_dir: &std::path::Path, threads: Threads, more: &[&str]) -> Server {
    let mut args = vec![
        std::ffi::OsString::from("--data-dir"),
        data_dir.as_os_str().to_owned(),
    ];
    if let Threads::One = threads {
        args.extend(["--worker-threads".into(), "1".into()]);
    }
    args.extend(more.iter().map(std::ffi::OsString::from));
    Server::start(args)
}

/// Threads of process `pid` named as tokio names its multi-thread
/// scheduler's workers (none with the current-thread scheduler).
fn runtime_workers(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter(|task| {
            let comm = task.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|name| name.trim() == "tokio-rt-worker")
        })
        .count()
}

/// The workers a server started with `threads` must run.
fn expected_workers(threads: Threads) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    match threads {
        Threads::PerCore if cores > 1 => cores,
        Threads::PerCore | Threads::One => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_0_and_a_restart_on_the_same_data_keeps_everything() {
    sigterm_then_restart(Threads::PerCore).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_one_thread_sigterm_exits_0_and_a_restart_keeps_everything() {
    sigterm_then_restart(Threads::One).await;
}

async fn sigterm_then_restart(threads: Threads) {
    let data = tempfile::tempdir().unwrap();
    let client = Client::new();
    // A slow payment provider keeps the second order's saga in its charge
    // step when the SIGTERM arrives.
    let mut server = start(
        data.path(),
        threads,
        &["--payments-latency-ms", PAYMENT_LATENCY_MS],
    );
    assert_eq!(
        runtime_workers(server.child.id()),
        expected_workers(threads)
    );
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
    let order_of = |quantity: u64| json!({"user_id": user["id"], "items": [{"product_id": product["id"], "quantity": quantity, "price": 12.5}]});
    let order = post(&client, server.url("/api/v1/orders"), order_of(2)).await;
    let order_url = format!("/api/v1/orders/{}", order["id"]);
    let settled = settled_order(&client, server.url(&order_url)).await;
    assert_eq!(settled["status"], "completed");
    let mid_saga = post(&client, server.url("/api/v1/orders"), order_of(1)).await;
    let mid_saga_url = format!("/api/v1/orders/{}", mid_saga["id"]);
    let (_, at_stop) = get(&client, server.url(&mid_saga_url)).await;
    assert_eq!(at_stop["status"], "pending", "{at_stop}");

    server.terminate();
    let status = server.exit_status(SHUTDOWN_TIMEOUT).await;
    assert!(status.success(), "exit status {status}");
    drop(server);

    let server = start(data.path(), threads, &[]);
    let (status, body) = get(
        &client,
        server.url(&format!("/api/v1/users/{}", user["id"])),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["username"], "ada");
    let (status, body) = get(&client, server.url(&order_url)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "completed");
    // The order that was mid-saga resumes and finishes after the restart.
    let resumed = settled_order(&client, server.url(&mid_saga_url)).await;
    assert_eq!(resumed["status"], "completed", "{resumed}");
    let (status, body) = get(
        &client,
        server.url(&format!("/api/v1/products/{}", product["id"])),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["quantity"], 7);
    let (status, payment) = get(
        &client,
        server.url(&format!("/api/v1/payments?order_id={}", mid_saga["id"])),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(payment["status"], "charged");
    // Resumed, not repeated: one charge in the ledger.
    let (status, ledger) = get(
        &client,
        server.url(&format!(
            "/api/v1/payments/ledger?order_id={}",
            mid_saga["id"]
        )),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let movements = ledger["movements"].as_array().unwrap();
    assert_eq!(movements.len(), 1, "{ledger}");
    assert_eq!(movements[0]["kind"], "charge");
}

/// A resource acknowledged (201): its URL path, and a field with the value
/// it must read back.
type Acked = (String, &'static str, Value);

/// What a writer of the SIGKILL test posts.
#[derive(Clone, Copy)]
enum Posting {
    User,
    Product,
    /// An order for one unit of the product, by the user.
    Order {
        user_id: u64,
        product_id: u64,
    },
}

impl Posting {
    /// The collection URL path and the body of post `n` of `writer`, and
    /// the field of the created resource that must read back the same.
    fn request(self, writer: usize, n: usize) -> (&'static str, Value, &'static str) {
        let name = format!("w{writer}-n{n}");
        match self {
            Self::User => (
                "/api/v1/users",
                json!({"username": name, "email": format!("{name}@example.com")}),
                "username",
            ),
            Self::Product => (
                "/api/v1/products",
                json!({"name": name, "price": 1.25, "quantity": 5}),
                "name",
            ),
            Self::Order {
                user_id,
                product_id,
            } => (
                "/api/v1/orders",
                json!({"user_id": user_id, "items": [{"product_id": product_id, "quantity": 1, "price": 1.0}]}),
                "user_id",
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_resource_acknowledged_before_a_sigkill_exists_after_restart() {
    sigkill_then_restart(Threads::PerCore).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_one_thread_every_resource_acknowledged_before_a_sigkill_exists_after_restart() {
    sigkill_then_restart(Threads::One).await;
}

async fn sigkill_then_restart(threads: Threads) {
    let data = tempfile::tempdir().unwrap();
    let client = Client::new();
    let mut server = start(data.path(), threads, &[]);
    assert_eq!(
        runtime_workers(server.child.id()),
        expected_workers(threads)
    );
    let buyer = post(
        &client,
        server.url("/api/v1/users"),
        json!({"username": "buyer", "email": "buyer@example.com"}),
    )
    .await;
    let stock = post(
        &client,
        server.url("/api/v1/products"),
        json!({"name": "stock", "price": 1.0, "quantity": 1_000_000}),
    )
    .await;
    let order = Posting::Order {
        user_id: buyer["id"].as_u64().unwrap(),
        product_id: stock["id"].as_u64().unwrap(),
    };
    let postings = (0..WRITERS)
        .map(|_| Posting::User)
        .chain([Posting::Product, order]);
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let killed = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for (writer, posting) in postings.enumerate() {
        let (client, acked, killed) = (client.clone(), Arc::clone(&acked), Arc::clone(&killed));
        let base = server.url("");
        writers.push(tokio::spawn(async move {
            for n in 0..POSTS_PER_WRITER_MAX {
                let (path, body, field) = posting.request(writer, n);
                let Ok(response) = client
                    .post(format!("{base}{path}"))
                    .json(&body)
                    .send()
                    .await
                else {
                    break;
                };
                if response.status() != StatusCode::CREATED {
                    break;
                }
                let Ok(created) = response.json::<Value>().await else {
                    break;
                };
                let url = format!("{path}/{}", created["id"].as_u64().unwrap());
                acked
                    .lock()
                    .await
                    .push((url, field, created[field].clone()));
                if killed.load(Ordering::Relaxed) {
                    break;
                }
            }
        }));
    }
    let deadline = Instant::now() + EVENTUALLY;
    while acked.lock().await.len() < ACKED_BEFORE_KILL {
        assert!(Instant::now() < deadline, "too few resources acknowledged");
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
    for kind in ["/api/v1/users/", "/api/v1/products/", "/api/v1/orders/"] {
        assert!(
            acked.iter().any(|(url, _, _)| url.starts_with(kind)),
            "no {kind} acknowledged before the kill"
        );
    }
    let server = start(data.path(), threads, &[]);
    for (url, field, value) in &acked {
        let (status, body) = get(&client, server.url(url)).await;
        assert_eq!(status, StatusCode::OK, "acknowledged {url} is lost");
        assert_eq!(&body[*field], value, "{url}");
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
fn a_log_setting_that_does_not_parse_exits_2_naming_it() {
    for (key, value, says) in [
        (
            "BULWARK_LOG_FORMAT",
            "xml",
            "BULWARK_LOG_FORMAT: must be `json` or `text`",
        ),
        ("RUST_LOG", "garbage[[[", "RUST_LOG:"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_bulwark"))
            .args(["serve", "--http", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env(key, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{key}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{key}={value}: {stderr}");
        // Nothing was started: no store was opened.
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{key}={value}"
        );
    }
}

#[test]
fn unreadable_tls_files_exit_2_before_any_store_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let missing = dir.path().join("missing.pem");
    let output = Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args(["serve", "--http", "127.0.0.1:0", "--cluster", "127.0.0.1:0"])
        .args(["--cookie", "a-long-enough-cluster-cookie"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--tls-cert")
        .arg(&missing)
        .arg("--tls-key")
        .arg(&missing)
        .arg("--tls-ca")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing.pem"), "{stderr}");
    assert_eq!(
        stderr.matches("missing.pem").count(),
        1,
        "said once: {stderr}"
    );
    assert!(!data.exists(), "nothing created: {stderr}");
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
