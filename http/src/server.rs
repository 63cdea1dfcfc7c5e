//! The accept loop: one task per connection, a bound on open connections,
//! a header read timeout, and a graceful drain at shutdown (axum
//! `examples/serve-with-hyper`, mini-redis `server::run`).
//!
//! `axum::serve` is not used: it sets no header read timeout, so a client
//! that sends half a request head and stalls would hold its connection
//! (and a task) forever.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use bulwark_runtime::Node;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::ServiceExt as _;
use tracing::{debug, info, warn};

use crate::config::{EdgeConfig, HEADER_BYTES_MAX};
use crate::middleware::MissingHost;
use crate::routes;

/// Pause after an accept error that is not the client's (out of file
/// descriptors, say) before accepting again, so the loop does not spin
/// while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// The HTTP server: a bound listener and the edge's router.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    router: Router,
    config: EdgeConfig,
}

impl Server {
    /// A server that will accept on `listener` and route to `node`'s
    /// services with the limits of `config`.
    #[must_use]
    pub fn new(listener: TcpListener, node: Node, config: EdgeConfig) -> Self {
        let router = routes::router(node, config.clone());
        Self {
            listener,
            router,
            config,
        }
    }

    /// The address the listener is bound to (the real port when bound to 0).
    ///
    /// # Errors
    /// The socket's error when the address cannot be read.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets the
    /// requests in flight finish (each connection closes after its current
    /// response) for up to the drain timeout, drops the connections still
    /// open after that, and returns.
    ///
    /// Only HTTP/1.1 is served (`http1_only` with `serve_connection`; the
    /// upgrade-capable variant ignores `http1_only`): detecting HTTP/2 reads
    /// the connection preface with no timeout, so a client that connects
    /// and says nothing would hold its connection forever. HTTP/1's header
    /// read timeout runs from the moment the connection waits for a head.
    ///
    /// # Errors
    /// None today: accept errors are logged and retried. The `Result` keeps
    /// room for listener failures that should stop the server.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> io::Result<()> {
        let Self {
            listener,
            router,
            config,
        } = self;
        // One permit per open connection: the accept loop waits for a
        // permit before accepting, so past `connections_max` new clients
        // wait in the kernel's backlog instead of costing a task each.
        let connections = Arc::new(Semaphore::new(config.connections_max.max(1)));
        let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(HEADER_BYTES_MAX)
            .keep_alive(true);
        // Tells every watched connection to finish its current request and
        // close; its `shutdown()` resolves when they all have.
        let graceful = GracefulShutdown::new();
        // The connection tasks, so the ones still open after the drain
        // timeout can be aborted rather than left running.
        let mut tasks = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                permit = Arc::clone(&connections).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_closed) => break,
                },
                () = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        if !is_per_connection(&err) {
                            warn!(error = %err, "accept failed; pausing");
                            tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                        }
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            // The peer address, for the rate limit of clients without a key.
            let service = TowerToHyperService::new(router.clone().map_request(
                move |mut request: axum::http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    if request.version() == axum::http::Version::HTTP_11
                        && !request.headers().contains_key(axum::http::header::HOST)
                    {
                        request.extensions_mut().insert(MissingHost);
                    }
                    request
                },
            ));
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let connection = graceful.watch(connection);
            tasks.spawn(async move {
                if let Err(err) = connection.await {
                    debug!(%peer, error = %err, "connection ended with an error");
                }
                drop(permit);
            });
        }
        drop(listener);
        let open = graceful.count();
        info!(open, "stopped accepting; draining connections");
        if tokio::time::timeout(config.drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            warn!(
                drain_timeout_ms =
                    u64::try_from(config.drain_timeout.as_millis()).unwrap_or(u64::MAX),
                "connections still open after the drain timeout; dropping them"
            );
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

/// Accept errors that concern one connection only (the client reset it
/// before it was accepted): accept the next one at once.
fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
