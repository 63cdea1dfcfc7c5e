//! The cluster: the wire codec, the node link's authenticated opening, and
//! the link itself (multiplexed calls, heartbeats). The router sends a call
//! over a link when the service has no local instance
//! ([`crate::Router::add_remote`]); membership and discovery build on these.

pub mod codec;
pub mod handshake;
pub mod link;
mod membership;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::router::Router;
use handshake::{Cookie, HandshakeError, accept, dial, framed};
use link::{Inbound, Link};
pub use membership::{Cluster, ClusterConfig, ClusterError, MemberInfo, MemberState};

/// Connections accepted but not yet authenticated, at most: a crowd of
/// idle or stalled sockets is held to this many (each for at most the
/// handshake timeout) and never stops an honest node from connecting once
/// one of them times out.
pub const HANDSHAKES_MAX: usize = 64;

/// Why a link could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The TCP connection failed.
    #[error("cannot connect to {addr}")]
    Io {
        /// The address dialed.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The handshake failed (wrong cookie, protocol, timeout).
    #[error("handshake with {addr} failed")]
    Handshake {
        /// The address dialed.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: HandshakeError,
    },
}

/// Dials `addr`, proves the cookie, and runs a link whose inbound calls
/// `router` serves.
///
/// # Errors
/// [`ConnectError`] when the peer cannot be reached or refuses us.
pub async fn connect(
    addr: SocketAddr,
    me: &str,
    cookie: &Cookie,
    router: &Router,
) -> Result<Link, ConnectError> {
    connect_with(addr, me, cookie, Arc::new(router.clone())).await
}

/// [`connect`] with any [`Inbound`] serving the link (a [`Cluster`] adds
/// membership to the router's routing).
///
/// # Errors
/// [`ConnectError`] when the peer cannot be reached or refuses us.
pub async fn connect_with(
    addr: SocketAddr,
    me: &str,
    cookie: &Cookie,
    inbound: Arc<dyn Inbound>,
) -> Result<Link, ConnectError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| ConnectError::Io { addr, source })?;
    let _ = stream.set_nodelay(true);
    let mut transport = framed(stream);
    let peer = dial(&mut transport, me, cookie)
        .await
        .map_err(|source| ConnectError::Handshake { addr, source })?;
    Ok(Link::spawn(transport, peer, inbound))
}

/// Accepts links on `listener` until `stop` is cancelled. Each connection
/// is authenticated in its own task (at most [`HANDSHAKES_MAX`] at once,
/// each bounded by the handshake timeout); each link that opens is handed
/// to `on_link`.
pub async fn accept_links(
    listener: TcpListener,
    me: String,
    cookie: Cookie,
    router: Router,
    on_link: Arc<dyn Fn(Link) + Send + Sync>,
    stop: CancellationToken,
) {
    accept_links_with(listener, me, cookie, Arc::new(router), on_link, stop).await;
}

/// [`accept_links`] with any [`Inbound`] serving the links.
pub async fn accept_links_with(
    listener: TcpListener,
    me: String,
    cookie: Cookie,
    inbound: Arc<dyn Inbound>,
    on_link: Arc<dyn Fn(Link) + Send + Sync>,
    stop: CancellationToken,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_MAX));
    loop {
        let (stream, addr) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    warn!(error = %err, "accept failed");
                    continue;
                }
            },
        };
        // Full: the newest connection is dropped, not the listener stalled.
        let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
            debug!(%addr, "too many handshakes in progress; dropping connection");
            continue;
        };
        let (me, cookie, inbound, on_link) = (
            me.clone(),
            cookie.clone(),
            Arc::clone(&inbound),
            Arc::clone(&on_link),
        );
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let mut transport = framed(stream);
            let result = accept(&mut transport, &me, &cookie).await;
            drop(permit);
            match result {
                Ok(peer) => on_link(Link::spawn(transport, peer, inbound)),
                Err(err) => warn!(%addr, error = %err, "node link refused"),
            }
        });
    }
}

/// First delay before re-dialing a peer whose link closed or could not open.
pub const REDIAL_DELAY_INITIAL: Duration = Duration::from_millis(100);
/// Longest delay between re-dials.
pub const REDIAL_DELAY_MAX: Duration = Duration::from_secs(5);

/// Keeps a link to `addr` open until `stop` is cancelled: dials, and after
/// the link closes (or a dial fails) dials again with exponential backoff.
/// Each link announces `router`'s services and routes to the peer's.
pub async fn maintain_link(
    addr: SocketAddr,
    me: String,
    cookie: Cookie,
    router: Router,
    stop: CancellationToken,
) {
    maintain_link_with(addr, me, cookie, Arc::new(router), stop).await;
}

/// [`maintain_link`] with any [`Inbound`] serving the links.
pub async fn maintain_link_with(
    addr: SocketAddr,
    me: String,
    cookie: Cookie,
    inbound: Arc<dyn Inbound>,
    stop: CancellationToken,
) {
    let mut delay = REDIAL_DELAY_INITIAL;
    while !stop.is_cancelled() {
        match connect_with(addr, &me, &cookie, Arc::clone(&inbound)).await {
            Ok(link) => {
                delay = REDIAL_DELAY_INITIAL;
                tokio::select! {
                    () = link.wait_closed() => {}
                    () = stop.cancelled() => {
                        link.close();
                        return;
                    }
                }
                debug!(%addr, "link closed; re-dialing");
            }
            Err(err) => warn!(%addr, error = %err, "cannot open node link; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
        delay = (delay * 2).min(REDIAL_DELAY_MAX);
    }
}
