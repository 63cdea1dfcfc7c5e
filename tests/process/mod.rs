//! Runs the real `bulwark` binary for black-box tests: start it on
//! loopback with port 0, read the addresses it announces on stdout, signal
//! it, wait for it, and talk to its edge.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::Value;
use tokio::time::Instant;

/// How long start-up (stores opened, sagas resumed) may take.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful shutdown may take.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long asynchronous work (a saga, a member joining) may take.
pub const EVENTUALLY: Duration = Duration::from_secs(30);
/// Pause between two polls of a condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A running `bulwark serve`; killed if the test fails before stopping it.
pub struct Server {
    pub child: Child,
    /// Where its edge listens.
    pub addr: SocketAddr,
    /// Where it accepts node links, when it is a cluster member.
    pub cluster: Option<SocketAddr>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stderr() -> Stdio {
    if std::env::var_os("TEST_LOG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

impl Server {
    /// Starts `bulwark serve --http 127.0.0.1:0 <args>` and reads the
    /// addresses it announces.
    pub fn start<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bulwark"))
            .args(["serve", "--http", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(stderr())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                // "listening on ADDR" or "listening on ADDR cluster ADDR".
                if let Some(rest) = line.strip_prefix("listening on ") {
                    let mut words = rest.split(' ');
                    let http = words.next().unwrap().parse::<SocketAddr>().unwrap();
                    let cluster = match (words.next(), words.next()) {
                        (Some("cluster"), Some(addr)) => Some(addr.parse().unwrap()),
                        _ => None,
                    };
                    let _ = tx.send((http, cluster));
                }
            }
        });
        let (addr, cluster) = rx
            .recv_timeout(STARTUP_TIMEOUT)
            .expect("the server did not announce its address");
        Self {
            child,
            addr,
            cluster,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends SIGTERM (through `kill`: unsafe code is forbidden here).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub async fn exit_status(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// POSTs `body` and expects 201; returns the created resource.
pub async fn post(client: &Client, url: String, body: Value) -> Value {
    let response = client.post(&url).json(&body).send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::CREATED, "POST {url}: {body}");
    body
}

/// GETs `url`: its status and JSON body (`Null` when not JSON).
pub async fn get(client: &Client, url: String) -> (StatusCode, Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls until the order leaves `pending`; returns its final body.
pub async fn settled_order(client: &Client, url: String) -> Value {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let (status, body) = get(client, url.clone()).await;
        if status == StatusCode::OK && body["status"] != "pending" {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "the order stayed pending: {status} {body}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
