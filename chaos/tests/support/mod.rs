//! A node in-process (the shop behind its edge, admin API on) on
//! 127.0.0.1:0 with a fresh data directory: what the checker's own tests
//! run their workload against.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::time::Duration;

use bulwark_actors::{PaymentsConfig, ShopConfig};
use bulwark_chaos::{RunConfig, Target};
use bulwark_http::{AdminKey, EdgeConfig, Server};
use bulwark_runtime::{Node, NodeConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ADMIN_KEY: &str = "checker-test-key";

/// A running node; stopped (gracefully) by [`InProcess::stop`].
pub struct InProcess {
    pub target: Target,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<()>,
    _data: tempfile::TempDir,
}

/// Orders above 20.00 are declined: their sagas cancel after reserving
/// stock, so compensations run in every run.
pub fn payments() -> PaymentsConfig {
    PaymentsConfig {
        decline_over_cents: Some(2_000),
        ..PaymentsConfig::default()
    }
}

pub async fn start() -> InProcess {
    let data = tempfile::tempdir().unwrap();
    let mut shop = ShopConfig::new(data.path());
    shop.payments = payments();
    let node = bulwark_actors::install(Node::builder(NodeConfig::new("n1")), &shop)
        .unwrap()
        .start()
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let edge = EdgeConfig {
        admin_key: AdminKey::new(ADMIN_KEY),
        ..EdgeConfig::default()
    };
    let server = Server::new(listener, node.clone(), edge);
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        let _ = server
            .run(async move {
                let _ = stopped.await;
            })
            .await;
        node.shutdown().await;
    });
    InProcess {
        target: Target {
            edges: vec![format!("http://{addr}")],
            admin_key: ADMIN_KEY.to_owned(),
        },
        stop,
        serving,
        _data: data,
    }
}

impl InProcess {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.serving.await.unwrap();
    }
}

/// A short run: enough orders for a bug to show many times over.
pub fn short_run(seed: u64) -> RunConfig {
    RunConfig {
        seed,
        duration: Duration::from_secs(5),
        clients: 4,
        nemesis: None,
        settle_timeout: Duration::from_secs(60),
        ..RunConfig::default()
    }
}
