//! bulwark: the application — the shop's five services on one node behind
//! the HTTP edge.
//!
//! [`App::build`] binds the HTTP listener (port 0 allowed; [`App::http_addr`]
//! reports the real address), opens every service's store under
//! `<data_dir>/<node>/<service>` and starts the node.
//! [`App::run_until_stopped`] serves until its shutdown future resolves,
//! then stops accepting, lets in-flight requests finish (bounded by the
//! drain timeout) and shuts the node down (services drained and stopped,
//! stores flushed). `src/main.rs` is a thin CLI over this (zero2prod
//! `startup.rs`, mini-redis `server::run`).
//!
//! Layout: `lib.rs` ([`App`], [`AppError`]), `config.rs` ([`Config`]: defaults,
//! TOML file, `BULWARK_*` environment, flags), `chaos.rs` (`bulwark chaos`),
//! `main.rs` (`bulwark serve`, `bulwark chaos`).

pub mod chaos;
pub mod config;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use bulwark_actors::{ShopConfig, ShopSetupError};
use bulwark_http::Server;
use bulwark_runtime::cluster::ClusterConfig;
use bulwark_runtime::cluster::handshake::Cookie;
use bulwark_runtime::cluster::tls::{Tls, TlsError};
use bulwark_runtime::{Node, NodeConfig, NodeError};
use tokio::net::TcpListener;
use tracing::info;

pub use config::{Config, ConfigError};

/// Why the application could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The HTTP address could not be bound (in use, not local, no right).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The node's data directory could not be created.
    #[error("cannot create the data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A service's store could not be opened.
    #[error("cannot set up the shop")]
    Shop(#[from] ShopSetupError),
    /// The node did not start.
    #[error("cannot start the node")]
    Node(#[from] NodeError),
    /// The cluster settings could not be used.
    #[error("invalid cluster settings: {0}")]
    Cluster(String),
    /// The node-link TLS files could not be used.
    #[error("cannot set up node-link TLS")]
    Tls(#[from] TlsError),
    /// The HTTP server failed.
    #[error("the HTTP server failed")]
    Serve(#[source] io::Error),
}

impl AppError {
    /// Whether this is a bad setting (the cluster's, the TLS files named
    /// by it) rather than a failure of the machine: the binary exits 2 for
    /// it, as for any bad configuration value.
    #[must_use]
    pub fn is_bad_setting(&self) -> bool {
        matches!(self, Self::Cluster(_) | Self::Tls(_))
    }
}

/// A started application: the node runs, the listener is bound.
#[derive(Debug)]
pub struct App {
    node: Node,
    server: Server,
    http_addr: SocketAddr,
}

impl App {
    /// Binds the HTTP listener, opens the stores and starts the node.
    ///
    /// # Errors
    /// [`AppError::Bind`] when the address cannot be bound,
    /// [`AppError::DataDir`] / [`AppError::Shop`] when the data directory or
    /// a store cannot be opened (another process holds it, say),
    /// [`AppError::Node`] when a service does not start.
    pub async fn build(config: Config) -> Result<Self, AppError> {
        // Bind first: a taken port fails before any store is opened.
        let listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| AppError::Bind {
                addr: config.http_addr,
                source,
            })?;
        let http_addr = listener.local_addr().map_err(|source| AppError::Bind {
            addr: config.http_addr,
            source,
        })?;
        // The cluster settings and TLS files are checked before anything is
        // created on disk, so a bad one leaves no half-started node behind.
        let cluster = cluster_config(&config)?;
        let data_dir = config.node_data_dir();
        std::fs::create_dir_all(&data_dir).map_err(|source| AppError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let mut node_config = NodeConfig::new(config.node.clone());
        node_config.call_timeout = config.edge.request_timeout;
        node_config.shutdown_timeout = config.shutdown_timeout;
        node_config.breaker = config.breaker;
        let mut shop = ShopConfig::new(&data_dir);
        shop.payments = config.payments.clone();
        shop.services.clone_from(&config.services);
        shop.users = config.users_shards;
        shop.user_shards.clone_from(&config.user_shards);
        shop.webhook.clone_from(&config.webhook);
        let mut builder = bulwark_actors::install(Node::builder(node_config), &shop)?;
        if let Some(cluster) = cluster {
            builder = builder.cluster(cluster);
        }
        let node = builder.start().await?;
        if let Some(cluster) = node.cluster() {
            info!(cluster_addr = %cluster.addr(), "cluster member");
        }
        info!(node = %config.node, data_dir = %data_dir.display(), %http_addr, "node started");
        let mut edge = config.edge;
        edge.users_shards = config.users_shards;
        let server = Server::new(listener, node.clone(), edge);
        Ok(Self {
            node,
            server,
            http_addr,
        })
    }

    /// The address HTTP is served on.
    #[must_use]
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where this node accepts node links, when it is a cluster member.
    #[must_use]
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.node
            .cluster()
            .map(bulwark_runtime::cluster::Cluster::addr)
    }

    /// The node (its router, actor tree and services).
    #[must_use]
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets
    /// in-flight requests finish (up to the drain timeout) and shuts the
    /// node down: new calls refused, in-flight calls drained, services
    /// stopped in reverse start order, stores flushed.
    ///
    /// # Errors
    /// [`AppError::Serve`] when the HTTP server failed; the node is shut
    /// down all the same.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), AppError> {
        let served = self.server.run(shutdown).await;
        info!("HTTP stopped; shutting the node down");
        self.node.shutdown().await;
        served.map_err(AppError::Serve)
    }
}

/// The node's cluster settings, `None` outside a cluster. A node that only
/// joins listens on an ephemeral port of the HTTP address's host, so the
/// members it joins can dial it back.
fn cluster_config(config: &Config) -> Result<Option<ClusterConfig>, AppError> {
    if !config.is_clustered() {
        return Ok(None);
    }
    let secret = config
        .cookie
        .as_ref()
        .ok_or_else(|| AppError::Cluster("a cluster member needs a cookie".to_owned()))?;
    let cookie = Cookie::new(secret.expose()).map_err(|err| AppError::Cluster(err.to_string()))?;
    let tls = config.tls.as_ref().map(Tls::load).transpose()?;
    if cookie.is_short() && tls.is_none() {
        tracing::warn!(
            recommended_bytes = bulwark_runtime::cluster::handshake::COOKIE_LEN_RECOMMENDED,
            "the cluster cookie is short and node links are not under TLS: a node made to dial an impostor gives it a proof to guess the cookie from offline; use a long random cookie (e.g. `openssl rand -hex 32`) or --tls-*"
        );
    }
    let listen = config
        .cluster_addr
        .unwrap_or_else(|| SocketAddr::new(config.http_addr.ip(), 0));
    Ok(Some(ClusterConfig {
        listen,
        join: config.join.clone(),
        cookie,
        tls,
    }))
}
