//! Mutual TLS under the node link, through the public API: two nodes with
//! certificates from one cluster CA (made here with rcgen, each carrying
//! `127.0.0.1` as an IP subject alternative name) call each other over a
//! real TLS link on loopback. A dialer or listener whose certificate
//! another CA signed, a listener certificate that does not name the dialed
//! IP, a plain-TCP dialer and a silent connection are all refused or
//! outwaited without stopping the listener from serving an honest node.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::sync::{Arc, Mutex};

use bulwark_runtime::cluster::handshake::{Cookie, HANDSHAKE_TIMEOUT, HandshakeError};
use bulwark_runtime::cluster::link::Link;
use bulwark_runtime::cluster::tls::{Tls, TlsError, TlsFile, TlsPaths};
use bulwark_runtime::cluster::{ConnectError, accept_links, connect};
use bulwark_runtime::{Node, NodeConfig, ServiceConfig};
use common::{DEADLINE, Req, Shared, Svc};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const COOKIE: &str = "cluster-secret";

/// A certificate authority that signs node certificates.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A node's certificate and private key, as PEM.
struct NodeCert {
    cert: String,
    key: String,
}

impl Pki {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { ca }
    }

    fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A node certificate for `names` (IP addresses become IP SANs), good
    /// for both ends of a link.
    fn node(&self, node: &str, names: &[&str]) -> NodeCert {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, node);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        NodeCert {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// TLS settings for a node on loopback that trusts this CA.
    fn tls(&self, node: &str) -> Tls {
        tls(&self.node(node, &["127.0.0.1"]), &self.ca_pem())
    }
}

fn tls(node: &NodeCert, ca_pem: &str) -> Tls {
    Tls::from_pem(node.cert.as_bytes(), node.key.as_bytes(), ca_pem.as_bytes()).unwrap()
}

/// Node "a", running svc-0 and accepting links over TLS.
struct Listener {
    node: Node,
    shared: Shared,
    addr: std::net::SocketAddr,
    links: Arc<Mutex<Vec<Link>>>,
    stop: CancellationToken,
}

async fn listen(tls: Tls) -> Listener {
    let shared = Shared::default();
    let node = Node::builder(NodeConfig::new("a"))
        .service(Svc::<0>::new(&shared), ServiceConfig::default())
        .start()
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let links = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&links);
    tokio::spawn(accept_links(
        listener,
        "a".to_owned(),
        Cookie::new(COOKIE).unwrap(),
        Some(tls),
        node.router().clone(),
        Arc::new(move |link| sink.lock().unwrap().push(link)),
        stop.clone(),
    ));
    Listener {
        node,
        shared,
        addr,
        links,
        stop,
    }
}

impl Listener {
    async fn shutdown(self) {
        self.stop.cancel();
        self.node.shutdown().await;
    }
}

/// Node "b", running svc-1; it dials.
async fn dialer() -> Node {
    Node::builder(NodeConfig::new("b"))
        .service(Svc::<1>::new(&Shared::default()), ServiceConfig::default())
        .start()
        .await
        .unwrap()
}

async fn dial(a: &Listener, b: &Node, tls: Option<&Tls>) -> Result<Link, ConnectError> {
    let cookie = Cookie::new(COOKIE).unwrap();
    tokio::time::timeout(DEADLINE, connect(a.addr, "b", &cookie, tls, b.router()))
        .await
        .expect("connect is bounded by the handshake timeout")
}

/// An honest node dials `a` over TLS and calls svc-0 through the link.
async fn assert_serves(a: &Listener, pki: &Pki, echo: u64) {
    let b = dialer().await;
    let link = dial(a, &b, Some(&pki.tls("b"))).await.unwrap();
    assert_eq!(link.peer(), "a");
    b.router().add_remote("svc-0", link.clone());
    assert_eq!(b.router().call::<Svc<0>>(Req::Echo(echo)).await, Ok(echo));
    link.close();
    b.shutdown().await;
}

#[tokio::test]
async fn a_remote_service_answers_over_mutual_tls() {
    let pki = Pki::new("cluster-ca");
    let a = listen(pki.tls("a")).await;
    let b = dialer().await;
    let link = dial(&a, &b, Some(&pki.tls("b"))).await.unwrap();
    assert_eq!(link.peer(), "a");
    b.router().add_remote("svc-0", link.clone());
    assert_eq!(b.router().call::<Svc<0>>(Req::Echo(41)).await, Ok(41));
    // It ran on a, which holds the other end of the link.
    assert_eq!(a.shared.contexts.lock().unwrap().len(), 1);
    common::eventually("a holds the link from b", || {
        a.links.lock().unwrap().iter().any(|l| l.peer() == "b")
    })
    .await;
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_dialer_whose_certificate_another_ca_signed_is_refused_and_the_listener_serves_on() {
    let pki = Pki::new("cluster-ca");
    let rogue = Pki::new("rogue-ca");
    let a = listen(pki.tls("a")).await;
    let b = dialer().await;
    // Trusts the cluster CA (so it accepts a), presents a rogue certificate.
    let intruder = tls(&rogue.node("b", &["127.0.0.1"]), &pki.ca_pem());
    let result = dial(&a, &b, Some(&intruder)).await;
    assert!(
        matches!(result, Err(ConnectError::Handshake { .. })),
        "{result:?}"
    );
    assert!(a.links.lock().unwrap().is_empty());
    b.shutdown().await;
    assert_serves(&a, &pki, 7).await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_listener_whose_certificate_another_ca_signed_is_refused_by_the_dialer() {
    let pki = Pki::new("cluster-ca");
    let rogue = Pki::new("rogue-ca");
    let a = listen(tls(&rogue.node("a", &["127.0.0.1"]), &pki.ca_pem())).await;
    let b = dialer().await;
    let result = dial(&a, &b, Some(&pki.tls("b"))).await;
    assert!(
        matches!(
            result,
            Err(ConnectError::Handshake {
                source: HandshakeError::Tls(_),
                ..
            })
        ),
        "{result:?}"
    );
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_listener_certificate_that_does_not_name_the_dialed_ip_is_refused() {
    let pki = Pki::new("cluster-ca");
    let a = listen(tls(&pki.node("a", &["node-a.cluster.test"]), &pki.ca_pem())).await;
    let b = dialer().await;
    let result = dial(&a, &b, Some(&pki.tls("b"))).await;
    assert!(
        matches!(
            result,
            Err(ConnectError::Handshake {
                source: HandshakeError::Tls(_),
                ..
            })
        ),
        "{result:?}"
    );
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_plain_tcp_dialer_is_refused_by_a_tls_listener_which_serves_on() {
    let pki = Pki::new("cluster-ca");
    let a = listen(pki.tls("a")).await;
    let b = dialer().await;
    let result = dial(&a, &b, None).await;
    assert!(
        matches!(result, Err(ConnectError::Handshake { .. })),
        "{result:?}"
    );
    assert!(a.links.lock().unwrap().is_empty());
    b.shutdown().await;
    assert_serves(&a, &pki, 8).await;
    a.shutdown().await;
}

#[tokio::test]
async fn silent_connections_stalling_the_tls_handshake_do_not_delay_an_honest_node() {
    let pki = Pki::new("cluster-ca");
    let a = listen(pki.tls("a")).await;
    let opened = Instant::now();
    // Accepted before the honest node's connection, and never a byte sent.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(a.addr).await.unwrap());
    }
    assert_serves(&a, &pki, 9).await;
    // The honest node got through while the silent ones were still held
    // open, not after the listener gave up on them: had their handshakes
    // run in the accept loop, the first would have been dropped (at the
    // handshake timeout) before the honest one was accepted. On a machine
    // so slow that the timeout has passed anyway, there is nothing to tell.
    if opened.elapsed() < HANDSHAKE_TIMEOUT {
        for stream in &silent {
            let mut byte = [0_u8; 1];
            let read = stream.try_read(&mut byte);
            assert!(
                matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
                "the listener already closed a silent connection: {read:?}"
            );
        }
    }
    a.shutdown().await;
}

#[test]
fn pem_garbage_is_a_typed_error_naming_the_input() {
    let pki = Pki::new("cluster-ca");
    let node = pki.node("a", &["127.0.0.1"]);
    let ca = pki.ca_pem();
    let garbage = b"not a pem file at all".as_slice();

    let err = Tls::from_pem(garbage, node.key.as_bytes(), ca.as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::NoCertificate {
                file: TlsFile::Cert,
                path: None
            }
        ),
        "{err:?}"
    );
    let err = Tls::from_pem(node.cert.as_bytes(), garbage, ca.as_bytes()).unwrap_err();
    assert!(matches!(err, TlsError::NoKey { path: None }), "{err:?}");
    let err = Tls::from_pem(node.cert.as_bytes(), node.key.as_bytes(), garbage).unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::NoCertificate {
                file: TlsFile::Ca,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "no certificate in the CA certificate PEM");

    let broken = b"-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n";
    let err = Tls::from_pem(broken, node.key.as_bytes(), ca.as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::Malformed {
                file: TlsFile::Cert,
                ..
            }
        ),
        "{err:?}"
    );

    // Well-formed, but the key is another certificate's.
    let other = pki.node("b", &["127.0.0.1"]);
    let err = Tls::from_pem(node.cert.as_bytes(), other.key.as_bytes(), ca.as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::Invalid {
                file: TlsFile::Key,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn tls_settings_load_from_pem_files_and_errors_name_the_path() {
    let pki = Pki::new("cluster-ca");
    let node = pki.node("a", &["127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let paths = TlsPaths {
        cert: dir.path().join("node.pem"),
        key: dir.path().join("node.key"),
        ca: dir.path().join("ca.pem"),
    };
    std::fs::write(&paths.cert, &node.cert).unwrap();
    std::fs::write(&paths.key, &node.key).unwrap();

    let err = Tls::load(&paths).unwrap_err();
    assert!(
        matches!(&err, TlsError::Unreadable { file: TlsFile::Ca, path, .. } if *path == paths.ca),
        "{err:?}"
    );

    std::fs::write(&paths.ca, pki.ca_pem()).unwrap();
    let tls = Tls::load(&paths).unwrap();
    // Its Debug shows no key material.
    assert_eq!(format!("{tls:?}"), "Tls { .. }");

    std::fs::write(&paths.key, "garbage").unwrap();
    let err = Tls::load(&paths).unwrap_err();
    assert!(
        matches!(&err, TlsError::NoKey { path: Some(path) } if *path == paths.key),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&paths.key.display().to_string()),
        "{err}"
    );
}
