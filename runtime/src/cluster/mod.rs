//! The cluster: the wire codec, the node link's authenticated opening
//! (optionally under mutual TLS), and the link itself (multiplexed calls,
//! heartbeats). The router sends a call over a link when the service has no
//! local instance ([`crate::Router::add_remote`]); membership and discovery
//! build on these.

pub mod codec;
pub mod handshake;
pub mod link;
mod membership;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::router::Router;
use handshake::{Cookie, HANDSHAKE_TIMEOUT, HandshakeError, accept, dial, framed};
use link::{Inbound, Link};
pub use membership::{Cluster, ClusterConfig, ClusterError, MemberInfo, MemberState};
use tls::Tls;

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
    /// The handshake failed (TLS, wrong cookie, protocol, timeout).
    #[error("handshake with {addr} failed")]
    Handshake {
        /// The address dialed.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: HandshakeError,
    },
}

/// Dials `addr`, opens TLS when `tls` is set, proves the cookie, and runs
/// a link whose inbound calls `router` serves. Under TLS the listener's
/// certificate must be signed by the cluster CA and carry `addr`'s IP as a
/// subject alternative name (see [`tls`]). The TLS and cookie handshakes
/// together are bounded by [`HANDSHAKE_TIMEOUT`].
///
/// # Errors
/// [`ConnectError`] when the peer cannot be reached or refuses us.
pub async fn connect(
    addr: SocketAddr,
    me: &str,
    cookie: &Cookie,
    tls: Option<&Tls>,
    router: &Router,
) -> Result<Link, ConnectError> {
    connect_with(addr, me, cookie, tls, Arc::new(router.clone())).await
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
    tls: Option<&Tls>,
    inbound: Arc<dyn Inbound>,
) -> Result<Link, ConnectError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| ConnectError::Io { addr, source })?;
    let _ = stream.set_nodelay(true);
    let opening = async {
        match tls {
            None => open_dialed(stream, me, cookie, inbound).await,
            Some(tls) => {
                let stream = tls
                    .connect(addr, stream)
                    .await
                    .map_err(HandshakeError::Tls)?;
                open_dialed(stream, me, cookie, inbound).await
            }
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, opening)
        .await
        .unwrap_or(Err(HandshakeError::Timeout))
        .map_err(|source| ConnectError::Handshake { addr, source })
}

/// The cookie handshake as the dialer, then the link, over any stream (TCP
/// or TLS): `Link::spawn` is generic, so neither stream is boxed.
async fn open_dialed<S>(
    stream: S,
    me: &str,
    cookie: &Cookie,
    inbound: Arc<dyn Inbound>,
) -> Result<Link, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut transport = framed(stream);
    let peer = dial(&mut transport, me, cookie).await?;
    Ok(Link::spawn(transport, peer, inbound))
}

/// The cookie handshake as the listener, then the link.
async fn open_accepted<S>(
    stream: S,
    me: &str,
    cookie: &Cookie,
    inbound: Arc<dyn Inbound>,
) -> Result<Link, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut transport = framed(stream);
    let peer = accept(&mut transport, me, cookie).await?;
    Ok(Link::spawn(transport, peer, inbound))
}

/// Accepts links on `listener` until `stop` is cancelled. Each connection
/// is authenticated in its own task — the TLS handshake when `tls` is set
/// (the dialer must present a certificate signed by the cluster CA), then
/// the cookie handshake — at most [`HANDSHAKES_MAX`] at once, both together
/// bounded by [`HANDSHAKE_TIMEOUT`], so a peer stalling in either never
/// holds up the accept loop or another node. Each link that opens is handed
/// to `on_link`.
pub async fn accept_links(
    listener: TcpListener,
    me: String,
    cookie: Cookie,
    tls: Option<Tls>,
    router: Router,
    on_link: Arc<dyn Fn(Link) + Send + Sync>,
    stop: CancellationToken,
) {
    accept_links_with(listener, me, cookie, tls, Arc::new(router), on_link, stop).await;
}

/// [`accept_links`] with any [`Inbound`] serving the links.
pub async fn accept_links_with(
    listener: TcpListener,
    me: String,
    cookie: Cookie,
    tls: Option<Tls>,
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
        let (me, cookie, tls, on_link) = (
            me.clone(),
            cookie.clone(),
            tls.clone(),
            Arc::clone(&on_link),
        );
        let inbound = Arc::clone(&inbound);
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let opening = async {
                match tls {
                    None => open_accepted(stream, &me, &cookie, inbound).await,
                    Some(tls) => {
                        let stream = tls.accept(stream).await.map_err(HandshakeError::Tls)?;
                        open_accepted(stream, &me, &cookie, inbound).await
                    }
                }
            };
            let opened = tokio::time::timeout(HANDSHAKE_TIMEOUT, opening)
                .await
                .unwrap_or(Err(HandshakeError::Timeout));
            drop(permit);
            match opened {
                Ok(link) => on_link(link),
                Err(err) => warn!(
                    %addr,
                    error = %err,
                    cause = std::error::Error::source(&err).map(tracing::field::display),
                    "node link refused"
                ),
            }
        });
    }
}

/// First delay before re-dialing a peer whose link closed or could not open.
pub const REDIAL_DELAY_INITIAL: Duration = Duration::from_millis(100);
/// `err` and its sources, joined by ": " ("handshake with … failed: the
/// peer's cookie proof is wrong"), for a log line that names the cause.
fn with_causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Longest delay between re-dials.
pub const REDIAL_DELAY_MAX: Duration = Duration::from_secs(5);

/// While dials to a peer keep failing the same way, a warning is logged at
/// most this often (the other failures log at debug level).
pub const REDIAL_WARN_INTERVAL: Duration = Duration::from_secs(60);

/// Decides which failed dials of one peer are worth a warning: the first, one
/// whose error differs from the last, and otherwise one per
/// [`REDIAL_WARN_INTERVAL`] — so a member that stays down does not fill the
/// log with the same line every few seconds.
#[derive(Debug, Default)]
struct DialFailures {
    /// Failed dials since the last link was open.
    count: u64,
    last_error: Option<String>,
    last_warned: Option<tokio::time::Instant>,
}

impl DialFailures {
    /// Records a failed dial and logs it; returns whether it was a warning.
    fn failed(&mut self, addr: SocketAddr, error: &impl std::fmt::Display) -> bool {
        self.count += 1;
        let text = error.to_string();
        let now = tokio::time::Instant::now();
        let warn_now = self.last_error.as_deref() != Some(text.as_str())
            || self
                .last_warned
                .is_none_or(|at| now.duration_since(at) >= REDIAL_WARN_INTERVAL);
        if warn_now {
            warn!(%addr, error = %text, failed_dials = self.count, "cannot open node link; retrying");
            self.last_warned = Some(now);
        } else {
            debug!(%addr, error = %text, failed_dials = self.count, "cannot open node link; retrying");
        }
        self.last_error = Some(text);
        warn_now
    }

    fn opened(&mut self, addr: SocketAddr) {
        if self.count > 0 {
            info!(%addr, failed_dials = self.count, "node link open again");
        }
        *self = Self::default();
    }
}

/// Keeps a link to `addr` open until `stop` is cancelled: dials (under TLS
/// when `tls` is set, as [`connect`]), and after the link closes (or a dial
/// fails) dials again with exponential backoff. Each link announces
/// `router`'s services and routes to the peer's.
pub async fn maintain_link(
    addr: SocketAddr,
    me: String,
    cookie: Cookie,
    tls: Option<Tls>,
    router: Router,
    stop: CancellationToken,
) {
    maintain_link_with(addr, me, cookie, tls, Arc::new(router), stop).await;
}

/// [`maintain_link`] with any [`Inbound`] serving the links.
pub async fn maintain_link_with(
    addr: SocketAddr,
    me: String,
    cookie: Cookie,
    tls: Option<Tls>,
    inbound: Arc<dyn Inbound>,
    stop: CancellationToken,
) {
    let mut delay = REDIAL_DELAY_INITIAL;
    let mut failures = DialFailures::default();
    while !stop.is_cancelled() {
        match connect_with(addr, &me, &cookie, tls.as_ref(), Arc::clone(&inbound)).await {
            Ok(link) => {
                delay = REDIAL_DELAY_INITIAL;
                failures.opened(addr);
                tokio::select! {
                    () = link.wait_closed() => {}
                    () = stop.cancelled() => {
                        link.close();
                        return;
                    }
                }
                debug!(%addr, "link closed; re-dialing");
            }
            Err(err) => {
                failures.failed(addr, &with_causes(&err));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
        delay = (delay * 2).min(REDIAL_DELAY_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_dial_is_logged_with_its_cause() {
        let err = ConnectError::Handshake {
            addr: "127.0.0.1:9".parse().unwrap(),
            source: HandshakeError::WrongCookie,
        };
        assert_eq!(
            with_causes(&err),
            "handshake with 127.0.0.1:9 failed: the peer's cookie proof is wrong"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stays_down_is_warned_about_once_a_minute_and_each_new_error_at_once() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let refused = "connection refused";
        let mut failures = DialFailures::default();
        assert!(failures.failed(addr, &refused), "the first failure warns");
        // The same error every 5 s (the longest re-dial delay) for a minute:
        // debug lines only.
        let mut warned = 0;
        for _ in 0..11 {
            tokio::time::advance(REDIAL_DELAY_MAX).await;
            warned += usize::from(failures.failed(addr, &refused));
        }
        assert_eq!(warned, 0);
        tokio::time::advance(REDIAL_DELAY_MAX).await;
        assert!(
            failures.failed(addr, &refused),
            "a minute on, it warns again"
        );
        assert!(
            failures.failed(addr, &"handshake timed out"),
            "a different error warns at once"
        );
        assert!(
            !failures.failed(addr, &"handshake timed out"),
            "and then not again"
        );
        assert_eq!(failures.count, 15);
        failures.opened(addr);
        assert_eq!(failures.count, 0);
        assert!(
            failures.failed(addr, &refused),
            "after a link was open, the next failure warns"
        );
    }
}
