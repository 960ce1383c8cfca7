//! The error type returned by component-base's fallible setup functions.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What failed while setting up shared daemon plumbing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse pem in {path}")]
    ParsePem {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no certificates found in {path}")]
    NoCertificates { path: PathBuf },
    #[error("no private key found in {path} (expected pkcs#8, pkcs#1 rsa or sec1 ec)")]
    NoPrivateKey { path: PathBuf },
    #[error("invalid ca certificate in {path}")]
    InvalidCaCertificate {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("no ca file given and no system trust bundle found")]
    NoSystemRoots,
    #[error("failed to build client certificate verifier")]
    ClientVerifier(#[source] rustls::server::VerifierBuilderError),
    #[error("failed to build tls server config")]
    ServerConfig(#[source] rustls::Error),
    #[error("failed to build tls client config")]
    ClientConfig(#[source] rustls::Error),
    #[error("failed to install signal handler")]
    SignalHandler(#[source] std::io::Error),
    #[error("failed to bind {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to register metrics collector")]
    RegisterCollector(#[source] prometheus::Error),
}
