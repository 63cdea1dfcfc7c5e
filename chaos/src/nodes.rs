//! `bulwark serve` child processes on 127.0.0.1: one node, or a cluster of
//! several with the shop's services spread over them; each killable with
//! SIGKILL and restartable on its data directory, its ports unchanged.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::ChaosError;

/// How long a node may take to announce its address and become ready.
pub const NODE_START_TIMEOUT: Duration = Duration::from_secs(60);
/// The cookie of a chaos cluster (loopback only).
const COOKIE: &str = "bulwark-chaos-cookie";
/// Pause between two polls of a node's readiness.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Which services each node runs: one node runs the whole shop; three
/// spread it as the cluster tests do (users; products; orders, payments
/// and notifications). Other sizes are refused.
fn layout(count: usize) -> Result<Vec<&'static str>, ChaosError> {
    match count {
        1 => Ok(vec!["users,products,payments,notifications,orders"]),
        3 => Ok(vec!["users", "products", "orders,payments,notifications"]),
        other => Err(ChaosError::Setup(format!(
            "a chaos cluster has 1 or 3 nodes, not {other}"
        ))),
    }
}

#[derive(Debug)]
struct NodeSpec {
    name: String,
    http: SocketAddr,
    cluster: Option<SocketAddr>,
    services: &'static str,
}

/// Running nodes; every child is killed when this is dropped.
#[derive(Debug)]
pub struct Nodes {
    exe: PathBuf,
    data_dir: PathBuf,
    admin_key: String,
    extra: Vec<String>,
    specs: Vec<NodeSpec>,
    children: Vec<Option<Child>>,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Any free port on loopback: the node binds it itself and announces the
/// real address, which its restarts then reuse (no window in which another
/// process could take a port picked for it).
fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The addresses in a `listening on HTTP [cluster ADDR]` line.
fn announced(line: &str) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let mut words = line.strip_prefix("listening on ")?.split(' ');
    let http = words.next()?.parse().ok()?;
    let cluster = match (words.next(), words.next()) {
        (Some("cluster"), Some(addr)) => Some(addr.parse().ok()?),
        _ => None,
    };
    Some((http, cluster))
}

impl Nodes {
    /// Starts `count` nodes (1, or 3 as a cluster) of the `bulwark` binary
    /// at `exe`, their data under `data_dir`, with `admin_key` and the
    /// extra `serve` flags `extra`; returns once every node is ready and,
    /// in a cluster, sees every other member up.
    ///
    /// # Errors
    /// [`ChaosError::Setup`] when a node does not start or become ready in
    /// [`NODE_START_TIMEOUT`].
    pub async fn start(
        exe: &Path,
        count: usize,
        data_dir: &Path,
        admin_key: &str,
        extra: Vec<String>,
    ) -> Result<Self, ChaosError> {
        let layout = layout(count)?;
        let mut specs = Vec::new();
        for (i, services) in layout.into_iter().enumerate() {
            specs.push(NodeSpec {
                name: format!("n{}", i + 1),
                http: any_port(),
                cluster: (count > 1).then(any_port),
                services,
            });
        }
        let mut nodes = Self {
            exe: exe.to_owned(),
            data_dir: data_dir.to_owned(),
            admin_key: admin_key.to_owned(),
            extra,
            children: specs.iter().map(|_| None).collect(),
            specs,
        };
        for i in 0..count {
            nodes.spawn(i)?;
        }
        for i in 0..count {
            nodes.wait_ready(i).await?;
        }
        Ok(nodes)
    }

    /// The edges' base URLs, by node.
    #[must_use]
    pub fn edges(&self) -> Vec<String> {
        self.specs
            .iter()
            .map(|spec| format!("http://{}", spec.http))
            .collect()
    }

    /// How many nodes there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The name of node `i`.
    #[must_use]
    pub fn name(&self, i: usize) -> &str {
        &self.specs[i].name
    }

    /// Whether node `i`'s process is running (started and not killed).
    #[must_use]
    pub fn is_running(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    fn spawn(&mut self, i: usize) -> Result<(), ChaosError> {
        let spec = &self.specs[i];
        let mut command = Command::new(&self.exe);
        command
            .arg("serve")
            .args(["--http", &spec.http.to_string()])
            .args(["--node", &spec.name])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--admin-key", &self.admin_key])
            .args(&self.extra);
        if let Some(cluster) = spec.cluster {
            command
                .args(["--cluster", &cluster.to_string()])
                .args(["--cookie", COOKIE])
                .args(["--services", spec.services]);
            let seeds: Vec<String> = self
                .specs
                .iter()
                .filter(|other| other.name != spec.name)
                .filter_map(|other| other.cluster)
                // Members not started yet have no address; they join us.
                .filter(|addr| addr.port() != 0)
                .map(|addr| addr.to_string())
                .collect();
            if !seeds.is_empty() {
                command.args(["--join", &seeds.join(",")]);
            }
        }
        let log = std::fs::File::create(self.data_dir.join(format!("{}.log", spec.name)))
            .map_err(|err| ChaosError::Setup(format!("cannot create the node log: {err}")))?;
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|err| {
                ChaosError::Setup(format!("cannot run {}: {err}", self.exe.display()))
            })?;
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = stdout {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { return };
                    if let Some(addrs) = announced(&line) {
                        let _ = tx.send(addrs);
                    }
                }
            });
        }
        self.children[i] = Some(child);
        let (http, cluster) = rx.recv_timeout(NODE_START_TIMEOUT).map_err(|_| {
            ChaosError::Setup(format!(
                "node {} did not announce its address (see {}/{}.log)",
                self.specs[i].name,
                self.data_dir.display(),
                self.specs[i].name
            ))
        })?;
        self.specs[i].http = http;
        self.specs[i].cluster = cluster;
        Ok(())
    }

    /// Waits until node `i` is ready and, in a cluster, every running
    /// node sees every running member up.
    async fn wait_ready(&self, i: usize) -> Result<(), ChaosError> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + NODE_START_TIMEOUT;
        let running: Vec<usize> = (0..self.len()).filter(|&j| self.is_running(j)).collect();
        loop {
            let mut ready = is_ready(&client, self.specs[i].http).await;
            if ready && self.len() > 1 {
                for &j in &running {
                    let members = members_up(&client, self.specs[j].http).await;
                    ready &= running
                        .iter()
                        .all(|&k| members.contains(&self.specs[k].name));
                }
            }
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ChaosError::Setup(format!(
                    "node {} did not become ready",
                    self.specs[i].name
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Kills node `i` with SIGKILL (no shutdown, no flush).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its data directory and ports; returns once
    /// it is ready and the cluster sees it.
    ///
    /// # Errors
    /// [`ChaosError::Setup`] when it does not come back in
    /// [`NODE_START_TIMEOUT`].
    pub async fn restart(&mut self, i: usize) -> Result<(), ChaosError> {
        self.kill(i);
        // The old process's port may linger a moment in the kernel; the
        // new one binds it with SO_REUSEADDR (tokio's default), so a
        // failed start is retried rather than waited for.
        let deadline = Instant::now() + NODE_START_TIMEOUT;
        loop {
            match self.spawn(i) {
                Ok(()) => break,
                Err(err) if Instant::now() > deadline => return Err(err),
                Err(_) => {
                    self.kill(i);
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
            }
        }
        self.wait_ready(i).await
    }
}

async fn is_ready(client: &reqwest::Client, addr: SocketAddr) -> bool {
    client
        .get(format!("http://{addr}/ready"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// The names of the members `addr` sees up (itself included).
async fn members_up(client: &reqwest::Client, addr: SocketAddr) -> Vec<String> {
    let Ok(response) = client
        .get(format!("http://{addr}/api/v1/cluster"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
    else {
        return Vec::new();
    };
    let body: Value = response.json().await.unwrap_or(Value::Null);
    body["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .filter(|m| m["state"] == "up" || m["state"] == "local")
                .filter_map(|m| m["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announced_addresses_are_read_from_the_listening_line() {
        assert_eq!(
            announced("listening on 127.0.0.1:8080"),
            Some((SocketAddr::from(([127, 0, 0, 1], 8080)), None))
        );
        assert_eq!(
            announced("listening on 127.0.0.1:1 cluster 127.0.0.1:2"),
            Some((
                SocketAddr::from(([127, 0, 0, 1], 1)),
                Some(SocketAddr::from(([127, 0, 0, 1], 2)))
            ))
        );
        assert_eq!(announced("starting"), None);
        assert_eq!(announced("listening on nowhere"), None);
    }
}
