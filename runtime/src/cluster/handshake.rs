//! The node link's opening: a challenge-response on the shared cluster
//! cookie, after Erlang distribution's. Both sides prove they know the
//! cookie with an HMAC-SHA256 over fresh random nonces, so the cookie never
//! crosses the wire and a recorded handshake cannot be replayed; proofs are
//! compared in constant time.
//!
//! ```text
//! dialer                                   listener
//!   Hello { node, nonce_d }          ──▶
//!                                    ◀──   Challenge { node, nonce_l }
//!   Proof { proof_d }                ──▶   check proof_d
//!                                    ◀──   Accepted { proof_l }   (or Refused { reason })
//!   check proof_l
//! ```
//!
//! `proof_d = HMAC(cookie, "dialer" ‖ nonce_l ‖ nonce_d ‖ dialer ‖ listener)`
//! and `proof_l` the same with the roles swapped, so neither proof can be
//! reflected back. The dialer proves first, as in Erlang: anyone who can
//! reach the node port gets only a nonce, never an HMAC keyed by the cookie
//! to test guesses against offline. (A node made to dial an impostor's
//! address still gives that impostor its proof: a cookie must be long and
//! random, and mutual TLS keeps impostors out — see docs/OPERATIONS.md.)
//! A listener that finds the proof wrong says so (`Refused`) before it
//! closes, so the dialer can log the cause.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::codec::{self, FRAME_LEN_MAX};

/// Version of the node protocol; a peer speaking another one is refused.
/// Version 2: the dialer proves the cookie first (version 1 had the
/// listener prove first).
pub const PROTOCOL_VERSION: u16 = 2;
/// Cookies shorter than this draw a warning at start-up: a short cookie can
/// be guessed offline from one proof.
pub const COOKIE_LEN_RECOMMENDED: usize = 16;
/// Longest node name, in bytes.
pub const NODE_NAME_LEN_MAX: usize = 255;
/// A connection that has not finished its handshake by then is closed, so
/// a stalled or silent client never holds a slot for long. Under TLS the
/// same bound covers the TLS and the cookie handshake together.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

type HmacSha256 = Hmac<Sha256>;

/// The shared cluster secret. Its bytes are never printed.
#[derive(Clone)]
pub struct Cookie(Arc<[u8]>);

impl Cookie {
    /// A cookie from its secret text.
    ///
    /// # Errors
    /// [`HandshakeError::Protocol`] for an empty secret.
    pub fn new(secret: &str) -> Result<Self, HandshakeError> {
        if secret.is_empty() {
            return Err(HandshakeError::Protocol(
                "the cluster cookie is empty".into(),
            ));
        }
        Ok(Self(Arc::from(secret.as_bytes())))
    }

    /// Whether the secret is shorter than [`COOKIE_LEN_RECOMMENDED`] bytes.
    #[must_use]
    pub fn is_short(&self) -> bool {
        self.0.len() < COOKIE_LEN_RECOMMENDED
    }

    fn proof(
        &self,
        role: &[u8],
        first: &[u8; 32],
        second: &[u8; 32],
        a: &str,
        b: &str,
    ) -> HmacSha256 {
        let Ok(mut mac) = HmacSha256::new_from_slice(&self.0) else {
            unreachable!("HMAC takes keys of any length")
        };
        mac.update(role);
        mac.update(first);
        mac.update(second);
        // Length-prefixed names: ("ab", "c") and ("a", "bc") differ.
        for name in [a, b] {
            mac.update(&(name.len() as u64).to_be_bytes());
            mac.update(name.as_bytes());
        }
        mac
    }
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cookie(<redacted>)")
    }
}

/// Why a link did not open.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer does not know the cookie (or we do not know its).
    #[error("the peer's cookie proof is wrong")]
    WrongCookie,
    /// The peer broke the protocol: garbage, an oversized or unexpected
    /// frame, another protocol version, a bad node name.
    #[error("handshake protocol error: {0}")]
    Protocol(String),
    /// The handshake did not finish within [`HANDSHAKE_TIMEOUT`].
    #[error("the handshake timed out")]
    Timeout,
    /// The peer closed the connection.
    #[error("the peer closed the connection during the handshake")]
    Closed,
    /// The connection failed.
    #[error("i/o error during the handshake")]
    Io(#[source] std::io::Error),
    /// The TLS handshake under the link failed: the peer's certificate is
    /// not signed by the cluster CA or does not name the address dialed,
    /// or the peer does not speak TLS.
    #[error("the TLS handshake failed")]
    Tls(#[source] std::io::Error),
}

/// The handshake's messages. The first three variants keep the places
/// they had in version 1 (bincode tags by position), so a version-1 peer's
/// `Hello` still decodes and is refused by its version, not as garbage.
#[derive(Debug, Serialize, Deserialize)]
enum Opening {
    Hello {
        protocol: u16,
        node: String,
        nonce: [u8; 32],
    },
    /// Version 1's answer to `Hello` (the listener's proof first); never
    /// sent now, refused if received.
    Welcome {
        protocol: u16,
        node: String,
        nonce: [u8; 32],
        proof: [u8; 32],
    },
    Proof {
        proof: [u8; 32],
    },
    Challenge {
        protocol: u16,
        node: String,
        nonce: [u8; 32],
    },
    Accepted {
        proof: [u8; 32],
    },
    Refused {
        reason: String,
    },
}

/// What a listener tells a dialer whose proof is wrong.
const REFUSED_WRONG_COOKIE: &str = "wrong cookie";

/// A length-delimited frame transport with the frame limit applied: a
/// length prefix above [`FRAME_LEN_MAX`] fails before anything is read.
pub type Transport<S> = Framed<S, LengthDelimitedCodec>;

/// Wraps a byte stream in the node link's framing.
pub fn framed<S: AsyncRead + AsyncWrite>(io: S) -> Transport<S> {
    Framed::new(
        io,
        LengthDelimitedCodec::builder()
            .max_frame_length(FRAME_LEN_MAX)
            .new_codec(),
    )
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    transport: &mut Transport<S>,
    message: &Opening,
) -> Result<(), HandshakeError> {
    let bytes =
        codec::encode("handshake", message).map_err(|e| HandshakeError::Protocol(e.to_string()))?;
    transport
        .send(bytes::Bytes::from(bytes))
        .await
        .map_err(HandshakeError::Io)
}

async fn receive<S: AsyncRead + AsyncWrite + Unpin>(
    transport: &mut Transport<S>,
) -> Result<Opening, HandshakeError> {
    match transport.next().await {
        None => Err(HandshakeError::Closed),
        Some(Err(err)) if err.kind() == std::io::ErrorKind::InvalidData => {
            Err(HandshakeError::Protocol(err.to_string()))
        }
        Some(Err(err)) => Err(HandshakeError::Io(err)),
        Some(Ok(frame)) => {
            codec::decode("handshake", &frame).map_err(|e| HandshakeError::Protocol(e.to_string()))
        }
    }
}

fn check_peer(protocol: u16, node: &str) -> Result<(), HandshakeError> {
    if protocol != PROTOCOL_VERSION {
        return Err(HandshakeError::Protocol(format!(
            "protocol version {protocol}, expected {PROTOCOL_VERSION}"
        )));
    }
    if node.is_empty() || node.len() > NODE_NAME_LEN_MAX {
        return Err(HandshakeError::Protocol(format!(
            "node name must be 1 to {NODE_NAME_LEN_MAX} bytes"
        )));
    }
    Ok(())
}

/// Opens a link as the dialing side; returns the peer's node name.
///
/// # Errors
/// [`HandshakeError`] — the link must then be dropped.
pub async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    transport: &mut Transport<S>,
    me: &str,
    cookie: &Cookie,
) -> Result<String, HandshakeError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let nonce_d: [u8; 32] = rand::random();
        send(
            transport,
            &Opening::Hello {
                protocol: PROTOCOL_VERSION,
                node: me.to_owned(),
                nonce: nonce_d,
            },
        )
        .await?;
        let (node, nonce_l) = match receive(transport).await? {
            Opening::Challenge {
                protocol,
                node,
                nonce,
            } => {
                check_peer(protocol, &node)?;
                (node, nonce)
            }
            Opening::Welcome { protocol, .. } => {
                return Err(HandshakeError::Protocol(format!(
                    "protocol version {protocol}, expected {PROTOCOL_VERSION}"
                )));
            }
            Opening::Refused { reason } => return Err(refused(&reason)),
            _ => return Err(HandshakeError::Protocol("expected Challenge".into())),
        };
        let mine = cookie
            .proof(b"dialer", &nonce_l, &nonce_d, me, &node)
            .finalize()
            .into_bytes();
        send(transport, &Opening::Proof { proof: mine.into() }).await?;
        match receive(transport).await? {
            Opening::Accepted { proof } => {
                cookie
                    .proof(b"listener", &nonce_d, &nonce_l, &node, me)
                    .verify_slice(&proof)
                    .map_err(|_| HandshakeError::WrongCookie)?;
                Ok(node)
            }
            Opening::Refused { reason } => Err(refused(&reason)),
            _ => Err(HandshakeError::Protocol("expected Accepted".into())),
        }
    })
    .await
    .map_err(|_| HandshakeError::Timeout)?
}

/// The error for a listener's `Refused`.
fn refused(reason: &str) -> HandshakeError {
    if reason == REFUSED_WRONG_COOKIE {
        HandshakeError::WrongCookie
    } else {
        HandshakeError::Protocol(format!("refused by the peer: {reason}"))
    }
}

/// Opens a link as the listening side; returns the peer's node name.
///
/// # Errors
/// [`HandshakeError`] — the link must then be dropped.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    transport: &mut Transport<S>,
    me: &str,
    cookie: &Cookie,
) -> Result<String, HandshakeError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let Opening::Hello {
            protocol,
            node,
            nonce: nonce_d,
        } = receive(transport).await?
        else {
            return Err(HandshakeError::Protocol("expected Hello".into()));
        };
        if let Err(err) = check_peer(protocol, &node) {
            // Best effort: a peer of another version learns why.
            let _ = send(
                transport,
                &Opening::Refused {
                    reason: err.to_string(),
                },
            )
            .await;
            return Err(err);
        }
        let nonce_l: [u8; 32] = rand::random();
        send(
            transport,
            &Opening::Challenge {
                protocol: PROTOCOL_VERSION,
                node: me.to_owned(),
                nonce: nonce_l,
            },
        )
        .await?;
        let Opening::Proof { proof } = receive(transport).await? else {
            return Err(HandshakeError::Protocol("expected Proof".into()));
        };
        if cookie
            .proof(b"dialer", &nonce_l, &nonce_d, &node, me)
            .verify_slice(&proof)
            .is_err()
        {
            let _ = send(
                transport,
                &Opening::Refused {
                    reason: REFUSED_WRONG_COOKIE.to_owned(),
                },
            )
            .await;
            return Err(HandshakeError::WrongCookie);
        }
        let mine = cookie
            .proof(b"listener", &nonce_d, &nonce_l, me, &node)
            .finalize()
            .into_bytes();
        send(transport, &Opening::Accepted { proof: mine.into() }).await?;
        Ok(node)
    })
    .await
    .map_err(|_| HandshakeError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives the listener by hand as a dialer that does not know the
    /// cookie, recording every message the listener sends.
    /// A listener "n1" accepting in a task, and the dialing end of its
    /// transport after sending `Hello` with `protocol` (driven by hand).
    async fn hello_to_a_listener(
        protocol: u16,
    ) -> (
        Transport<tokio::io::DuplexStream>,
        tokio::task::JoinHandle<Result<String, HandshakeError>>,
    ) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (mut dialer, mut listener) = (framed(a), framed(b));
        let cookie = Cookie::new("the-real-cluster-cookie").unwrap();
        let accepting = tokio::spawn(async move { accept(&mut listener, "n1", &cookie).await });
        send(
            &mut dialer,
            &Opening::Hello {
                protocol,
                node: "evil".to_owned(),
                nonce: [7; 32],
            },
        )
        .await
        .unwrap();
        (dialer, accepting)
    }

    #[tokio::test]
    async fn a_dialer_without_the_cookie_gets_no_proof_to_guess_it_from() {
        let (mut dialer, accepting) = hello_to_a_listener(PROTOCOL_VERSION).await;
        let challenge = receive(&mut dialer).await.unwrap();
        assert!(
            matches!(&challenge, Opening::Challenge { node, .. } if node == "n1"),
            "{challenge:?}"
        );
        send(&mut dialer, &Opening::Proof { proof: [0; 32] })
            .await
            .unwrap();
        let answer = receive(&mut dialer).await.unwrap();
        assert!(
            matches!(&answer, Opening::Refused { reason } if reason == REFUSED_WRONG_COOKIE),
            "{answer:?}"
        );
        assert!(matches!(
            accepting.await.unwrap(),
            Err(HandshakeError::WrongCookie)
        ));
        // Neither message carried anything keyed by the cookie.
        assert!(matches!(
            receive(&mut dialer).await,
            Err(HandshakeError::Closed)
        ));
    }

    #[tokio::test]
    async fn a_version_1_dialer_is_told_its_version_is_refused() {
        let (mut dialer, accepting) = hello_to_a_listener(1).await;
        let answer = receive(&mut dialer).await.unwrap();
        assert!(
            matches!(&answer, Opening::Refused { reason } if reason.contains("protocol version 1")),
            "{answer:?}"
        );
        assert!(matches!(
            accepting.await.unwrap(),
            Err(HandshakeError::Protocol(_))
        ));
    }

    #[test]
    fn short_cookies_are_flagged() {
        assert!(Cookie::new("s3cret").unwrap().is_short());
        assert!(!Cookie::new("0123456789abcdef").unwrap().is_short());
    }
}
