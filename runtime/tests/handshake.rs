//! The node link's opening through its public API: the right cookie opens
//! a link both ways; a wrong cookie, garbage, an oversized length prefix and
//! a stalled peer are refused without a panic or a large allocation.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use bulwark_runtime::cluster::handshake::{
    Cookie, HANDSHAKE_TIMEOUT, HandshakeError, accept, dial, framed,
};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn nodes_with_the_same_cookie_learn_each_others_names() {
    let (a, b) = tokio::io::duplex(4096);
    let cookie = Cookie::new("s3cret").unwrap();
    let (mut da, mut db) = (framed(a), framed(b));
    let (dialed, accepted) =
        tokio::join!(dial(&mut da, "n1", &cookie), accept(&mut db, "n2", &cookie));
    assert_eq!(dialed.unwrap(), "n2");
    assert_eq!(accepted.unwrap(), "n1");
}

#[tokio::test]
async fn a_node_with_the_wrong_cookie_is_refused_on_both_sides() {
    let (a, b) = tokio::io::duplex(4096);
    let (mut da, mut db) = (framed(a), framed(b));
    let right = Cookie::new("right").unwrap();
    let wrong = Cookie::new("wrong").unwrap();
    let (dialed, accepted) = tokio::join!(
        async {
            let result = dial(&mut da, "intruder", &wrong).await;
            drop(da); // a refused link is dropped
            result
        },
        accept(&mut db, "n2", &right)
    );
    // The listener checks the dialer's proof, refuses it and says why, so
    // both sides know the cause.
    assert!(
        matches!(dialed, Err(HandshakeError::WrongCookie)),
        "{dialed:?}"
    );
    assert!(
        matches!(accepted, Err(HandshakeError::WrongCookie)),
        "{accepted:?}"
    );
}

#[tokio::test]
async fn the_cookie_never_crosses_the_wire() {
    let (a, mut b) = tokio::io::duplex(64 * 1024);
    let cookie = Cookie::new("do-not-leak-this-cookie").unwrap();
    let mut da = framed(a);
    let dialing = tokio::spawn(async move { dial(&mut da, "n1", &cookie).await });
    let mut seen = vec![0_u8; 4096];
    let n = tokio::io::AsyncReadExt::read(&mut b, &mut seen)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&seen[..n]);
    assert!(!text.contains("do-not-leak"));
    drop(b);
    assert!(dialing.await.unwrap().is_err());
}

#[tokio::test]
async fn garbage_is_a_protocol_error_not_a_panic() {
    let (a, mut b) = tokio::io::duplex(4096);
    let cookie = Cookie::new("c").unwrap();
    let mut da = framed(a);
    let listening = tokio::spawn(async move { accept(&mut da, "n2", &cookie).await });
    // A plausible length prefix followed by random bytes.
    b.write_all(&[0, 0, 0, 16]).await.unwrap();
    b.write_all(&[0xde; 16]).await.unwrap();
    let result = listening.await.unwrap();
    assert!(
        matches!(result, Err(HandshakeError::Protocol(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_frame_claiming_four_gib_is_refused_before_it_is_read() {
    let (a, mut b) = tokio::io::duplex(4096);
    let cookie = Cookie::new("c").unwrap();
    let mut da = framed(a);
    let listening = tokio::spawn(async move { accept(&mut da, "n2", &cookie).await });
    b.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
    let result = listening.await.unwrap();
    assert!(
        matches!(result, Err(HandshakeError::Protocol(_))),
        "{result:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stalls_mid_frame_is_dropped_at_the_timeout() {
    let (a, mut b) = tokio::io::duplex(4096);
    let cookie = Cookie::new("c").unwrap();
    let mut da = framed(a);
    let started = tokio::time::Instant::now();
    let listening = tokio::spawn(async move { accept(&mut da, "n2", &cookie).await });
    // Half a frame, then nothing.
    b.write_all(&[0, 0, 0, 64, 1, 2]).await.unwrap();
    let result = listening.await.unwrap();
    assert!(matches!(result, Err(HandshakeError::Timeout)), "{result:?}");
    assert_eq!(started.elapsed(), HANDSHAKE_TIMEOUT);
    drop(b);
}

#[test]
fn an_empty_cookie_is_refused_and_a_cookie_never_prints() {
    assert!(Cookie::new("").is_err());
    assert_eq!(
        format!("{:?}", Cookie::new("x").unwrap()),
        "Cookie(<redacted>)"
    );
}
