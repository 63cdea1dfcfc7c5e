//! A node link: one authenticated connection to a peer node, carrying
//! multiplexed calls (matched by request id) and heartbeats.
//!
//! A reader task decodes frames and dispatches them; a writer task owns the
//! socket's write half and sends from a bounded queue, plus a heartbeat
//! whenever it has been idle. A peer silent for [`PEER_SILENCE_MAX`] is
//! taken for dead: the link closes and every call waiting on it fails at
//! once with `Unavailable` instead of at its deadline. A frame that fails to
//! decode closes the link (the stream can no longer be trusted); a payload
//! that fails to decode is a typed error for that one call.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::codec;
use super::handshake::Transport;
use crate::envelope::{CallContext, CorrelationId, TraceContext};

/// A link sends a heartbeat when it has written nothing for this long.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// A peer that sent nothing (not even a heartbeat) for this long is dead:
/// a few missed heartbeats, so a busy peer is not declared dead, while a
/// dead one is noticed within seconds.
pub const PEER_SILENCE_MAX: Duration = Duration::from_secs(2);
/// Frames queued for the writer; past it, a call is refused with
/// `Overloaded` rather than queued without bound.
pub const OUTBOUND_FRAMES_MAX: usize = 4096;
/// Inbound calls a link serves at once; past it, a call is answered
/// `Overloaded` at once.
pub const INBOUND_CALLS_MAX: usize = 2048;
/// Frames the writer takes from its queue into one flush, at most: a burst
/// of calls or replies leaves in a few writes instead of one write each,
/// while the frame that opened the batch waits behind no more than this
/// many encodes. (The framing also writes out early once its buffer holds
/// 8 KiB, so a batch of large frames does not pile up in memory.)
pub const WRITE_BATCH_FRAMES_MAX: usize = 64;

/// The call context as it crosses the wire: the deadline travels as the
/// time remaining, since the nodes' clocks are not comparable.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WireContext {
    correlation: WireCorrelation,
    trace: Option<([u8; 16], [u8; 8], u8)>,
    remaining_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum WireCorrelation {
    Generated(u128),
    External(String),
}

impl WireContext {
    fn from_context(ctx: &CallContext) -> Self {
        Self {
            correlation: match &ctx.correlation_id {
                CorrelationId::Generated(id) => WireCorrelation::Generated(*id),
                CorrelationId::External(text) => WireCorrelation::External(text.to_string()),
            },
            trace: ctx.trace.map(|t| (t.trace_id, t.parent_id, t.flags)),
            remaining_ms: u64::try_from(ctx.remaining().as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn into_context(self) -> CallContext {
        let correlation_id = match self.correlation {
            WireCorrelation::Generated(id) => CorrelationId::Generated(id),
            WireCorrelation::External(text) => CorrelationId::external(&text),
        };
        CallContext {
            correlation_id,
            trace: self.trace.map(|(trace_id, parent_id, flags)| TraceContext {
                trace_id,
                parent_id,
                flags,
            }),
            deadline: Instant::now() + Duration::from_millis(self.remaining_ms),
        }
    }
}

/// How a remote call failed, as the serving node saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RemoteFailure {
    /// The deadline passed on the serving node.
    Timeout,
    /// The service's bulkhead (or the link's inbound bound) was full.
    Overloaded,
    /// The serving actor stopped before replying.
    Restarted,
    /// The service could not take the call there (not running on that node,
    /// down, or the node is shutting down).
    Unavailable,
    /// The service's own error, encoded with the wire codec.
    Service(Vec<u8>),
    /// The request or reply did not decode.
    Decode(String),
}

#[derive(Debug, Serialize, Deserialize)]
enum Frame {
    Call {
        id: u64,
        service: String,
        context: WireContext,
        payload: Payload,
    },
    Reply {
        id: u64,
        outcome: Result<Payload, RemoteFailure>,
    },
    Heartbeat,
    /// What the sending node runs and subscribes to; sent first on every
    /// link, so each side routes to the other without configuration.
    Announce(Announcement),
    /// Fire-and-forget: no reply.
    Cast {
        service: String,
        context: WireContext,
        payload: Payload,
    },
}

/// An encoded request or response inside a frame, serialized as one byte
/// string: the codec writes its length and copies the bytes at once, where
/// serde's default for a `Vec<u8>` is a sequence costing a call per byte
/// each way. The bytes on the wire are the same either way.
#[derive(Debug, PartialEq, Eq)]
struct Payload(Vec<u8>);

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PayloadVisitor;

        impl serde::de::Visitor<'_> for PayloadVisitor {
            type Value = Payload;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }

            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Payload, E> {
                Ok(Payload(bytes))
            }

            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Payload, E> {
                Ok(Payload(bytes.to_vec()))
            }
        }

        deserializer.deserialize_byte_buf(PayloadVisitor)
    }
}

/// What a node tells a peer when a link opens, and again whenever its
/// view of the cluster changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// The services it runs.
    pub services: Vec<String>,
    /// The topics it has subscribers for.
    pub topics: Vec<String>,
    /// Where it accepts node links, when it does.
    pub addr: Option<SocketAddr>,
    /// The other nodes it has a live link to, so a node that joined
    /// through one seed learns of (and links to) all of them.
    pub members: Vec<MemberAddr>,
}

/// A cluster member as announced: its name and where it accepts links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAddr {
    /// The node's name.
    pub name: String,
    /// Its node-link address.
    pub addr: SocketAddr,
}

/// What serves the calls a link receives: the local router.
pub trait Inbound: Send + Sync + 'static {
    /// What to announce to the peer when a link opens.
    fn announcement(&self) -> Announcement {
        Announcement::default()
    }

    /// The peer announced what it runs and subscribes to.
    fn announced(&self, _link: &Link, _announcement: Announcement) {}

    /// The link closed: forget what it routed.
    fn closed(&self, _link: &Link) {}

    /// Serves one call to `service` with an encoded request; answers with
    /// the encoded response or why it failed.
    fn serve(
        &self,
        service: String,
        context: CallContext,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteFailure>>;

    /// Delivers one cast to `service` with an encoded request; nothing is
    /// answered (a cast that cannot be delivered is logged and dropped, as
    /// a local one is refused).
    fn cast(&self, service: String, context: CallContext, payload: Vec<u8>);
}

/// Why a call over a link did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The link is closed (peer dead, unreachable, or shutting down).
    #[error("the link to {peer} is closed")]
    Closed {
        /// The peer node.
        peer: String,
    },
    /// The call was sent (or may have been) and the link closed before the
    /// reply: the peer may have applied it.
    #[error("the link to {peer} was lost before the reply")]
    Lost {
        /// The peer node.
        peer: String,
    },
    /// The link's outbound queue is full.
    #[error("the link to {peer} is overloaded")]
    Overloaded {
        /// The peer node.
        peer: String,
    },
    /// The deadline passed before the reply.
    #[error("no reply from {peer} before the deadline")]
    Timeout {
        /// The peer node.
        peer: String,
    },
    /// The serving node reported a failure.
    #[error("{peer} answered with a failure: {failure:?}")]
    Remote {
        /// The peer node.
        peer: String,
        /// What it reported.
        failure: RemoteFailure,
    },
}

type Pending = DashMap<u64, oneshot::Sender<Result<Vec<u8>, RemoteFailure>>>;

struct LinkInner {
    peer: String,
    /// Frames for the writer task; bounded so a slow peer pushes back.
    outbound: mpsc::Sender<Frame>,
    /// Calls waiting for a reply, by request id. Dropped (failing every
    /// waiter) when the link closes.
    pending: Arc<Pending>,
    next_id: AtomicU64,
    closed: CancellationToken,
}

/// A live link to one peer node. Cheap to clone; every clone is the same
/// connection.
#[derive(Clone)]
pub struct Link {
    inner: Arc<LinkInner>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("peer", &self.inner.peer)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Link {
    /// Runs a link over an authenticated transport (after the handshake).
    pub fn spawn<S>(transport: Transport<S>, peer: String, inbound: Arc<dyn Inbound>) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(OUTBOUND_FRAMES_MAX);
        let closed = CancellationToken::new();
        let pending: Arc<Pending> = Arc::new(DashMap::new());
        let link = Self {
            inner: Arc::new(LinkInner {
                peer,
                outbound: tx,
                pending: Arc::clone(&pending),
                next_id: AtomicU64::new(1),
                closed: closed.clone(),
            }),
        };
        let (sink, stream) = transport.split();
        // The queue is empty: the announcement is the first frame out.
        let _ = link
            .inner
            .outbound
            .try_send(Frame::Announce(inbound.announcement()));
        tokio::spawn(write_loop(sink, rx, closed));
        tokio::spawn(read_loop(stream, link.clone(), inbound));
        link
    }

    /// The peer's node name.
    #[must_use]
    pub fn peer(&self) -> &str {
        &self.inner.peer
    }

    /// Whether the link is closed.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.inner.closed.is_cancelled()
    }

    /// Closes the link; calls waiting on it fail at once.
    pub fn close(&self) {
        self.inner.closed.cancel();
        self.inner.pending.clear();
    }

    /// Resolves once the link is closed.
    pub async fn wait_closed(&self) {
        self.inner.closed.cancelled().await;
    }

    /// Sends `announcement` to the peer (after what it already has queued).
    /// Returns `false` when the link is closed or its queue is full; the
    /// peer then keeps its previous view until the next announcement.
    pub fn announce(&self, announcement: Announcement) -> bool {
        self.inner
            .outbound
            .try_send(Frame::Announce(announcement))
            .is_ok()
    }

    /// Sends a cast to `service` on the peer: queued for the writer, never
    /// waited on.
    ///
    /// # Errors
    /// [`LinkError::Closed`] when the link is closed,
    /// [`LinkError::Overloaded`] when its outbound queue is full.
    pub fn cast(
        &self,
        service: &str,
        context: &CallContext,
        payload: Vec<u8>,
    ) -> Result<(), LinkError> {
        let peer = || self.inner.peer.clone();
        if self.is_closed() {
            return Err(LinkError::Closed { peer: peer() });
        }
        let frame = Frame::Cast {
            service: service.to_owned(),
            context: WireContext::from_context(context),
            payload: Payload(payload),
        };
        self.inner
            .outbound
            .try_send(frame)
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => LinkError::Overloaded { peer: peer() },
                mpsc::error::TrySendError::Closed(_) => LinkError::Closed { peer: peer() },
            })
    }

    /// Whether `self` and `other` are the same connection.
    #[must_use]
    pub fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Calls `service` on the peer with an encoded request, within
    /// `context` (its deadline bounds the wait).
    ///
    /// # Errors
    /// [`LinkError`] saying what happened.
    pub async fn call(
        &self,
        service: &str,
        context: &CallContext,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, LinkError> {
        let peer = || self.inner.peer.clone();
        if self.is_closed() {
            return Err(LinkError::Closed { peer: peer() });
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner.pending.insert(id, tx);
        let frame = Frame::Call {
            id,
            service: service.to_owned(),
            context: WireContext::from_context(context),
            payload: Payload(payload),
        };
        if let Err(err) = self.inner.outbound.try_send(frame) {
            self.inner.pending.remove(&id);
            return Err(match err {
                mpsc::error::TrySendError::Full(_) => LinkError::Overloaded { peer: peer() },
                mpsc::error::TrySendError::Closed(_) => LinkError::Closed { peer: peer() },
            });
        }
        // A close that raced the insert: the frame may or may not have
        // been written before the writer stopped.
        if self.is_closed() {
            self.inner.pending.remove(&id);
            return Err(LinkError::Lost { peer: peer() });
        }
        match tokio::time::timeout_at(context.deadline, rx).await {
            Ok(Ok(Ok(bytes))) => Ok(bytes),
            Ok(Ok(Err(failure))) => Err(LinkError::Remote {
                peer: peer(),
                failure,
            }),
            Ok(Err(_)) => Err(LinkError::Lost { peer: peer() }),
            Err(_) => {
                self.inner.pending.remove(&id);
                Err(LinkError::Timeout { peer: peer() })
            }
        }
    }
}

type Sink<S> = futures::stream::SplitSink<Transport<S>, bytes::Bytes>;

async fn write_loop<S>(mut sink: Sink<S>, mut rx: mpsc::Receiver<Frame>, closed: CancellationToken)
where
    S: AsyncRead + AsyncWrite,
{
    let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
    'link: loop {
        let frame = tokio::select! {
            () = closed.cancelled() => break,
            frame = rx.recv() => match frame {
                Some(frame) => frame,
                None => break,
            },
            _ = heartbeat.tick() => Frame::Heartbeat,
        };
        if feed(&mut sink, &frame).await.is_err() {
            break;
        }
        // What is already queued leaves with this frame, in one flush.
        for _ in 1..WRITE_BATCH_FRAMES_MAX {
            let Ok(frame) = rx.try_recv() else { break };
            if feed(&mut sink, &frame).await.is_err() {
                break 'link;
            }
        }
        if sink.flush().await.is_err() {
            break;
        }
        heartbeat.reset();
    }
    closed.cancel();
    let _ = sink.close().await;
}

/// Encodes `frame` into the sink's buffer without flushing it. A frame
/// that does not encode is dropped with a warning.
async fn feed<S>(sink: &mut Sink<S>, frame: &Frame) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite,
{
    match codec::encode("frame", frame) {
        Ok(bytes) => sink.feed(bytes::Bytes::from(bytes)).await,
        Err(err) => {
            warn!(error = %err, "dropping a frame that does not encode");
            Ok(())
        }
    }
}

async fn read_loop<S>(
    mut stream: futures::stream::SplitStream<Transport<S>>,
    link: Link,
    inbound: Arc<dyn Inbound>,
) where
    S: AsyncRead + AsyncWrite,
{
    let outbound = link.inner.outbound.clone();
    let pending = Arc::clone(&link.inner.pending);
    let closed = link.inner.closed.clone();
    let peer = link.inner.peer.clone();
    let serving = Arc::new(Semaphore::new(INBOUND_CALLS_MAX));
    loop {
        let next = tokio::select! {
            () = closed.cancelled() => break,
            next = tokio::time::timeout(PEER_SILENCE_MAX, stream.next()) => next,
        };
        let bytes = match next {
            Err(_) => {
                warn!(%peer, "peer silent past the limit; closing the link");
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(err))) => {
                warn!(%peer, error = %err, "link framing broken; closing");
                break;
            }
            Ok(Some(Ok(bytes))) => bytes,
        };
        let frame = match codec::decode::<Frame>("frame", &bytes) {
            Ok(frame) => frame,
            Err(err) => {
                warn!(%peer, error = %err, "undecodable frame; closing the link");
                break;
            }
        };
        match frame {
            Frame::Heartbeat => {}
            Frame::Announce(announcement) => inbound.announced(&link, announcement),
            Frame::Cast {
                service,
                context,
                payload,
            } => inbound.cast(service, context.into_context(), payload.0),
            Frame::Reply { id, outcome } => {
                if let Some((_, waiter)) = pending.remove(&id) {
                    let _ = waiter.send(outcome.map(|payload| payload.0));
                } else {
                    debug!(%peer, id, "late reply dropped");
                }
            }
            Frame::Call {
                id,
                service,
                context,
                payload,
            } => {
                let Ok(permit) = Arc::clone(&serving).try_acquire_owned() else {
                    let reply = Frame::Reply {
                        id,
                        outcome: Err(RemoteFailure::Overloaded),
                    };
                    let _ = outbound.try_send(reply);
                    continue;
                };
                let inbound = Arc::clone(&inbound);
                let outbound = outbound.clone();
                tokio::spawn(async move {
                    let outcome = inbound
                        .serve(service, context.into_context(), payload.0)
                        .await
                        .map(Payload);
                    drop(permit);
                    let _ = outbound.send(Frame::Reply { id, outcome }).await;
                });
            }
        }
    }
    closed.cancel();
    // Every waiter fails now, not at its deadline.
    pending.clear();
    inbound.closed(&link);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_encodes_exactly_as_the_byte_vector_it_wraps() {
        let bytes: Vec<u8> = (0..=255).collect();
        let as_vec = codec::encode("vec", &bytes).unwrap();
        let as_payload = codec::encode("payload", &Payload(bytes.clone())).unwrap();
        assert_eq!(as_payload, as_vec, "same wire format");
        assert_eq!(
            codec::decode::<Payload>("payload", &as_vec).unwrap(),
            Payload(bytes)
        );
        assert!(codec::decode::<Payload>("payload", &as_vec[..100]).is_err());
    }
}
