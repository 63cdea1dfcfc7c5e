//! Optional mutual TLS under the node link (rustls, ring provider).
//!
//! Every node holds a certificate signed by one cluster CA. The listener
//! requires a client certificate signed by that CA; the dialer verifies the
//! listener's certificate against the same CA **and against the IP address
//! it dialed** ([`ServerName::IpAddress`]): a node certificate must carry
//! each address other nodes dial it on as an IP subject alternative name
//! (`127.0.0.1` for a node on loopback). A client certificate is only
//! checked for its signature, not for a name; the cookie handshake still
//! runs inside the TLS session, so a node needs both a CA-signed
//! certificate and the cookie.
//!
//! The configurations are built with an explicit ring provider, never a
//! process-wide default one, so nothing else in the process can change
//! which cryptography the link uses.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

/// Where a node's TLS material lives: PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// This node's certificate chain, its own certificate first.
    pub cert: PathBuf,
    /// This node's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The cluster CA certificate(s) that sign every node's certificate.
    pub ca: PathBuf,
}

/// Which of the three PEM inputs an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFile {
    /// The node's certificate chain.
    Cert,
    /// The node's private key.
    Key,
    /// The cluster CA certificate(s).
    Ca,
}

impl fmt::Display for TlsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cert => "node certificate",
            Self::Key => "private key",
            Self::Ca => "CA certificate",
        })
    }
}

/// Why the TLS settings could not be loaded. The file is named by its role
/// and, when it was read from disk, by its path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the {file} file {}", path.display())]
    Unreadable {
        /// Which input.
        file: TlsFile,
        /// The path tried.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or CA input holds no `CERTIFICATE` section.
    #[error("no certificate in the {file} PEM{}", at(path.as_deref()))]
    NoCertificate {
        /// Which input.
        file: TlsFile,
        /// Its path, when it was read from a file.
        path: Option<PathBuf>,
    },
    /// The key input holds no private key section.
    #[error("no private key in the {} PEM{}", TlsFile::Key, at(path.as_deref()))]
    NoKey {
        /// Its path, when it was read from a file.
        path: Option<PathBuf>,
    },
    /// A PEM section is malformed (bad base64, no end line).
    #[error("the {file} PEM{} is malformed", at(path.as_deref()))]
    Malformed {
        /// Which input.
        file: TlsFile,
        /// Its path, when it was read from a file.
        path: Option<PathBuf>,
        /// The cause.
        #[source]
        source: pem::Error,
    },
    /// Well-formed PEM that rustls refuses: a certificate that does not
    /// parse, a CA that is no trust anchor, a key it cannot use or that
    /// does not match the certificate.
    #[error("the {file}{} is invalid", at(path.as_deref()))]
    Invalid {
        /// Which input.
        file: TlsFile,
        /// Its path, when it was read from a file.
        path: Option<PathBuf>,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
    /// The CA certificates cannot build a client verifier.
    #[error("the {} cannot verify clients{}", TlsFile::Ca, at(path.as_deref()))]
    Verifier {
        /// The CA's path, when it was read from a file.
        path: Option<PathBuf>,
        /// The cause.
        #[source]
        source: VerifierBuilderError,
    },
    /// The cryptography provider offers no safe protocol version (not the
    /// case for ring with TLS 1.2 and 1.3 built in).
    #[error("the TLS provider offers no safe protocol version")]
    Provider {
        /// The cause.
        #[source]
        source: rustls::Error,
    },
}

fn at(path: Option<&Path>) -> String {
    path.map(|p| format!(" ({})", p.display()))
        .unwrap_or_default()
}

impl TlsError {
    /// The same error, naming the file it came from.
    fn in_file(self, paths: &TlsPaths) -> Self {
        let path_of = |file: TlsFile| {
            Some(match file {
                TlsFile::Cert => paths.cert.clone(),
                TlsFile::Key => paths.key.clone(),
                TlsFile::Ca => paths.ca.clone(),
            })
        };
        match self {
            Self::NoCertificate { file, .. } => Self::NoCertificate {
                file,
                path: path_of(file),
            },
            Self::NoKey { .. } => Self::NoKey {
                path: path_of(TlsFile::Key),
            },
            Self::Malformed { file, source, .. } => Self::Malformed {
                file,
                path: path_of(file),
                source,
            },
            Self::Invalid { file, source, .. } => Self::Invalid {
                file,
                path: path_of(file),
                source,
            },
            Self::Verifier { source, .. } => Self::Verifier {
                path: path_of(TlsFile::Ca),
                source,
            },
            other @ (Self::Unreadable { .. } | Self::Provider { .. }) => other,
        }
    }
}

/// A node's TLS settings, ready to wrap connections both ways. Cheap to
/// clone (the configurations are shared); its `Debug` prints no key.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    acceptor: TlsAcceptor,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the PEM files named by `paths`.
    ///
    /// # Errors
    /// [`TlsError`] naming the file that cannot be read or is unusable.
    pub fn load(paths: &TlsPaths) -> Result<Self, TlsError> {
        let read = |file: TlsFile, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Unreadable {
                file,
                path: path.to_owned(),
                source,
            })
        };
        let cert = read(TlsFile::Cert, &paths.cert)?;
        let key = read(TlsFile::Key, &paths.key)?;
        let ca = read(TlsFile::Ca, &paths.ca)?;
        Self::from_pem(&cert, &key, &ca).map_err(|err| err.in_file(paths))
    }

    /// Builds the settings from PEM text: this node's certificate chain,
    /// its private key, and the cluster CA certificate(s).
    ///
    /// # Errors
    /// [`TlsError`] naming the input that is missing or unusable.
    pub fn from_pem(cert: &[u8], key: &[u8], ca: &[u8]) -> Result<Self, TlsError> {
        let chain = certificates(TlsFile::Cert, cert)?;
        let key = private_key(key)?;
        let mut roots = RootCertStore::empty();
        for anchor in certificates(TlsFile::Ca, ca)? {
            roots.add(anchor).map_err(|source| TlsError::Invalid {
                file: TlsFile::Ca,
                path: None,
                source,
            })?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(ring::default_provider());

        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()
                .map_err(|source| TlsError::Verifier { path: None, source })?;
        let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Provider { source })?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(refused)?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Provider { source })?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(refused)?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(client)),
            acceptor: TlsAcceptor::from(Arc::new(server)),
        })
    }

    /// The client half of the TLS handshake on a connection to `addr`; the
    /// listener's certificate must name `addr`'s IP.
    pub(crate) async fn connect<S>(
        &self,
        addr: SocketAddr,
        stream: S,
    ) -> std::io::Result<client::TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.connector
            .connect(ServerName::IpAddress(addr.ip().into()), stream)
            .await
    }

    /// The server half of the TLS handshake; the dialer must present a
    /// certificate signed by the cluster CA.
    pub(crate) async fn accept<S>(&self, stream: S) -> std::io::Result<server::TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.acceptor.accept(stream).await
    }
}

/// A rustls refusal of the node's own material: a certificate that does
/// not parse is the certificate's fault, anything else the key's (unusable,
/// or not the certificate's).
fn refused(source: rustls::Error) -> TlsError {
    let file = match source {
        rustls::Error::InvalidCertificate(_) => TlsFile::Cert,
        _ => TlsFile::Key,
    };
    TlsError::Invalid {
        file,
        path: None,
        source,
    }
}

fn certificates(file: TlsFile, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Malformed {
            file,
            path: None,
            source,
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate { file, path: None });
    }
    Ok(certificates)
}

fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoKey { path: None },
        source => TlsError::Malformed {
            file: TlsFile::Key,
            path: None,
            source,
        },
    })
}
