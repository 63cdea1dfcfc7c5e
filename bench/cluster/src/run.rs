//! The `run` mode: starts the serving child, links to it, and measures each
//! path sequentially and with concurrent callers.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use bulwark_runtime::cluster::connect;
use bulwark_runtime::cluster::handshake::Cookie;
use bulwark_runtime::{Node, NodeConfig, Router, ServiceConfig};
use tokio::sync::Barrier;
use tonic::transport::{Channel, Endpoint};

use crate::echo::{LocalEcho, RemoteEcho};
use crate::grpc::proto::EchoRequest;
use crate::grpc::proto::echo_client::EchoClient;
use crate::stats::Latencies;
use crate::{CLIENT_NODE, COOKIE, SERVER_NODE};
use crate::{Path, RunArgs};

/// The serving child process. Killed when dropped, so an error anywhere in
/// the run does not leave it behind.
#[derive(Debug)]
pub(crate) struct ServeChild {
    child: Child,
    /// The child's node link port.
    pub(crate) link_port: u16,
    /// The child's gRPC port.
    pub(crate) grpc_port: u16,
}

impl ServeChild {
    /// Starts `<this executable> serve` and reads the ports it prints.
    ///
    /// # Errors
    /// When the child cannot start or does not print two ports.
    pub(crate) fn spawn() -> Result<Self> {
        let exe = std::env::current_exe().context("locating this executable")?;
        let child = Command::new(&exe)
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting `{} serve`", exe.display()))?;
        let mut this = Self {
            child,
            link_port: 0,
            grpc_port: 0,
        };
        let stdout = this
            .child
            .stdout
            .take()
            .context("the child's stdout is not piped")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading the child's ports")?;
        let mut ports = line.split_whitespace().map(str::parse::<u16>);
        match (ports.next(), ports.next()) {
            (Some(Ok(link)), Some(Ok(grpc))) => {
                this.link_port = link;
                this.grpc_port = grpc;
                Ok(this)
            }
            _ => bail!("the serve child printed {line:?}, not `<link port> <grpc port>`"),
        }
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One way to make the echo call.
#[derive(Clone)]
enum Target {
    /// `Router::call` to the service on the child node, over the node link.
    Remote(Router),
    /// `Router::call` to the service on this node.
    Local(Router),
    /// A tonic unary call to the child's gRPC server. Clones share the
    /// channel (one HTTP/2 connection, calls multiplexed as streams).
    Grpc(EchoClient<Channel>),
}

impl Target {
    /// Makes one call with `payload` and checks the echo.
    async fn call(&mut self, payload: &[u8]) -> Result<()> {
        let reply = match self {
            Self::Remote(router) => router
                .call::<RemoteEcho>(payload.to_vec())
                .await
                .context("remote router call")?,
            Self::Local(router) => router
                .call::<LocalEcho>(payload.to_vec())
                .await
                .context("in-process router call")?,
            Self::Grpc(client) => {
                client
                    .echo(EchoRequest {
                        payload: payload.to_vec(),
                    })
                    .await
                    .context("gRPC call")?
                    .into_inner()
                    .payload
            }
        };
        ensure!(
            reply.len() == payload.len(),
            "echo returned {} bytes for {}",
            reply.len(),
            payload.len()
        );
        Ok(())
    }
}

/// `calls` calls one after another; each call's latency.
async fn sequential(target: &mut Target, payload: &[u8], calls: usize) -> Result<Latencies> {
    let mut samples = Vec::with_capacity(calls);
    let started = Instant::now();
    for _ in 0..calls {
        let sent = Instant::now();
        target.call(payload).await?;
        samples.push(elapsed_ns(sent));
    }
    Ok(Latencies::new(samples, started.elapsed()))
}

/// `calls` calls spread over `callers` tasks, each calling in a loop; the
/// clock starts once every task is ready.
async fn concurrent(
    target: &Target,
    payload: &Arc<[u8]>,
    callers: usize,
    calls: usize,
) -> Result<Latencies> {
    let ready = Arc::new(Barrier::new(callers + 1));
    let mut tasks = Vec::with_capacity(callers);
    for caller in 0..callers {
        // The first `calls % callers` callers make one more call.
        let share = calls / callers + usize::from(caller < calls % callers);
        let (mut target, payload, ready) =
            (target.clone(), Arc::clone(payload), Arc::clone(&ready));
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(share);
            ready.wait().await;
            for _ in 0..share {
                let sent = Instant::now();
                target.call(&payload).await?;
                samples.push(elapsed_ns(sent));
            }
            anyhow::Ok(samples)
        }));
    }
    ready.wait().await;
    let started = Instant::now();
    let mut samples = Vec::with_capacity(calls);
    for task in tasks {
        samples.extend(task.await.context("a caller task panicked")??);
    }
    Ok(Latencies::new(samples, started.elapsed()))
}

fn elapsed_ns(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The figures of one path.
struct PathFigures {
    path: Path,
    sequential: Latencies,
    concurrent: Latencies,
}

/// Links to the child, measures every path, prints the table and ratios.
///
/// # Errors
/// When the link or the gRPC channel cannot open, or a call fails.
pub(crate) async fn run(args: &RunArgs, child: &ServeChild) -> Result<()> {
    ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let node = Node::builder(NodeConfig::new(CLIENT_NODE))
        .service(LocalEcho, ServiceConfig::default())
        .start()
        .await
        .context("starting the measuring node")?;
    let link_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, child.link_port));
    let cookie = Cookie::new(COOKIE).context("the bench cookie")?;
    let link = connect(link_addr, CLIENT_NODE, &cookie, None, node.router())
        .await
        .with_context(|| format!("linking to the serve child at {link_addr}"))?;
    ensure!(
        link.peer() == SERVER_NODE,
        "linked to {:?}, not {SERVER_NODE:?}",
        link.peer()
    );
    node.router().add_remote("echo", link.clone());
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{}", child.grpc_port))
        .context("the gRPC endpoint")?
        .tcp_nodelay(true)
        .connect()
        .await
        .context("connecting to the gRPC server")?;

    let payload: Arc<[u8]> = (0..args.payload_bytes)
        .map(|i| u8::try_from(i % 251).unwrap_or(0))
        .collect();
    let mut targets: Vec<(Path, Target)> = [
        (Path::Remote, Target::Remote(node.router().clone())),
        (Path::Local, Target::Local(node.router().clone())),
        (Path::Grpc, Target::Grpc(EchoClient::new(channel))),
    ]
    .into_iter()
    .filter(|(path, _)| args.only.is_none_or(|only| only == *path))
    .collect();

    println!(
        "payload {} B; sequential: {} calls after {} warm-up; concurrent: {} callers, {} calls",
        args.payload_bytes, args.calls, args.warmup_calls, args.concurrency, args.concurrent_calls
    );
    let mut sequentials = Vec::with_capacity(targets.len());
    for (path, target) in &mut targets {
        let name = path.label();
        sequential(target, &payload, args.warmup_calls)
            .await
            .with_context(|| format!("warming up {name}"))?;
        sequentials.push(
            sequential(target, &payload, args.calls)
                .await
                .with_context(|| format!("sequential {name}"))?,
        );
    }
    let mut figures = Vec::with_capacity(targets.len());
    for ((path, target), sequential) in targets.iter().zip(sequentials) {
        let name = path.label();
        let concurrent = concurrent(target, &payload, args.concurrency, args.concurrent_calls)
            .await
            .with_context(|| format!("concurrent {name}"))?;
        figures.push(PathFigures {
            path: *path,
            sequential,
            concurrent,
        });
    }
    print_report(&figures, args.concurrency);

    link.close();
    node.shutdown().await;
    Ok(())
}

/// Goal of issue #5: remote router p50 at most this fraction of tonic's.
const P50_RATIO_GOAL_MAX: f64 = 0.8;
/// Goal of issue #5: remote router throughput at least this multiple of
/// tonic's, with the same number of concurrent callers.
const THROUGHPUT_RATIO_GOAL_MIN: f64 = 1.5;

fn print_report(figures: &[PathFigures], callers: usize) {
    println!();
    println!(
        "| path | seq p50 µs | seq p99 µs | seq calls/s | {callers} callers calls/s | {callers} callers p50 µs | {callers} callers p99 µs |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for f in figures {
        println!(
            "| {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.1} | {:.1} |",
            f.path.label(),
            f.sequential.percentile_us(0.5),
            f.sequential.percentile_us(0.99),
            f.sequential.calls_per_s(),
            f.concurrent.calls_per_s(),
            f.concurrent.percentile_us(0.5),
            f.concurrent.percentile_us(0.99),
        );
    }
    let find = |path| figures.iter().find(|f| f.path == path);
    let (Some(remote), Some(grpc)) = (find(Path::Remote), find(Path::Grpc)) else {
        return;
    };
    let p50_ratio = remote.sequential.percentile_us(0.5) / grpc.sequential.percentile_us(0.5);
    let throughput_ratio = remote.concurrent.calls_per_s() / grpc.concurrent.calls_per_s();
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    println!();
    println!(
        "remote router p50 / tonic p50 = {p50_ratio:.2} (goal <= {P50_RATIO_GOAL_MAX}): {}",
        verdict(p50_ratio <= P50_RATIO_GOAL_MAX)
    );
    println!(
        "remote router throughput / tonic throughput = {throughput_ratio:.2} (goal >= {THROUGHPUT_RATIO_GOAL_MIN}): {}",
        verdict(throughput_ratio >= THROUGHPUT_RATIO_GOAL_MIN)
    );
}
