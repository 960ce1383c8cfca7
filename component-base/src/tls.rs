//! TLS setup from PEM files: rustls server and client configs on the ring provider, TLS 1.2+.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};

use crate::Error;

/// ALPN id for HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN id for HTTP/1.1.
pub const ALPN_HTTP1_1: &[u8] = b"http/1.1";
/// What an HTTP server that speaks both versions (like [`crate::serve`]) offers, h2 first.
pub const ALPN_HTTP: &[&[u8]] = &[ALPN_H2, ALPN_HTTP1_1];

const PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Where distributions keep their CA bundle, tried in order when no CA file is given.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::ReadFile {
        path: path.to_owned(),
        source,
    })
}

/// Reads every certificate in a PEM file, in file order (leaf first for a chain).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    parse_certs(path, &read(path)?)
}

/// Reads the first private key in a PEM file: PKCS#8, PKCS#1 RSA or SEC1 EC.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    parse_private_key(path, &read(path)?)
}

fn parse_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = rustls_pemfile::certs(&mut BufReader::new(pem))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::ParsePem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(Error::NoCertificates {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn parse_private_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, Error> {
    rustls_pemfile::private_key(&mut BufReader::new(pem))
        .map_err(|source| Error::ParsePem {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| Error::NoPrivateKey {
            path: path.to_owned(),
        })
}

fn root_store(path: &Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|source| Error::InvalidCaCertificate {
                path: path.to_owned(),
                source,
            })?;
    }
    Ok(roots)
}

/// The system trust bundle, found the way Go's crypto/x509 does on Linux: `SSL_CERT_FILE`, then
/// the usual distribution paths.
fn system_root_store() -> Result<RootCertStore, Error> {
    let candidates = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from));
    for path in candidates {
        let Ok(pem) = std::fs::read(&path) else {
            continue;
        };
        let mut roots = RootCertStore::empty();
        // A bundle may hold certificates webpki rejects; skip those rather than fail.
        let mut reader = pem.as_slice();
        let certs = rustls_pemfile::certs(&mut reader).filter_map(Result::ok);
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added > 0 {
            return Ok(roots);
        }
    }
    Err(Error::NoSystemRoots)
}

fn alpn_ids(alpn: &[&[u8]]) -> Vec<Vec<u8>> {
    alpn.iter().map(|id| id.to_vec()).collect()
}

/// A server config serving `cert` (a PEM chain, leaf first) with `key`.
///
/// With `client_ca`, every client must present a certificate that chains to it (mutual TLS);
/// without, no client certificate is asked for. `alpn` lists the protocols offered, e.g.
/// [`ALPN_HTTP`].
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, Error> {
    build_server_config(cert, key, client_ca, false, alpn)
}

/// Like [`server_config`] with a client CA, but a client may also connect without a certificate
/// (as kube-apiserver's `--client-ca-file` works: certificates are one authenticator of several).
/// A certificate that is presented must still verify.
pub fn server_config_optional_client_cert(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, Error> {
    build_server_config(cert, key, Some(client_ca), true, alpn)
}

/// Like [`server_config_optional_client_cert`] with certificates of any of `client_cas`
/// accepted (e.g. `--client-ca-file` and `--requestheader-client-ca-file` together); with none
/// given, clients are not asked for certificates.
pub fn server_config_optional_client_certs(
    cert: &Path,
    key: &Path,
    client_cas: &[&Path],
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, Error> {
    if client_cas.is_empty() {
        return server_config(cert, key, None, alpn);
    }
    let mut roots = RootCertStore::empty();
    for ca in client_cas {
        roots.roots.extend(root_store(ca)?.roots);
    }
    build_server_config_with_roots(cert, key, Some(roots), true, alpn)
}

/// A verifier of client certificates issued by the CA bundle at `ca`, to tell after the
/// handshake which of several trusted CAs issued a certificate.
pub fn client_verifier(ca: &Path) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    WebPkiClientVerifier::builder_with_provider(Arc::new(root_store(ca)?), provider())
        .build()
        .map_err(Error::ClientVerifier)
}

/// Whether `verifier` accepts the DER client certificate `cert` now.
pub fn verifies(verifier: &dyn ClientCertVerifier, cert: &[u8]) -> bool {
    verifier
        .verify_client_cert(&CertificateDer::from(cert), &[], UnixTime::now())
        .is_ok()
}

fn build_server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    allow_anonymous: bool,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, Error> {
    let roots = client_ca.map(root_store).transpose()?;
    build_server_config_with_roots(cert, key, roots, allow_anonymous, alpn)
}

fn build_server_config_with_roots(
    cert: &Path,
    key: &Path,
    client_roots: Option<RootCertStore>,
    allow_anonymous: bool,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, Error> {
    let certs = load_certs(cert)?;
    let key = load_private_key(key)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(Error::ServerConfig)?;
    let builder = match client_roots {
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if allow_anonymous {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(Error::ClientVerifier)?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(Error::ServerConfig)?;
    config.alpn_protocols = alpn_ids(alpn);
    Ok(Arc::new(config))
}

/// A client config trusting `ca` (or the system bundle when `None`), presenting
/// `client_cert_and_key` (cert PEM path, key PEM path) when given, offering `alpn`.
pub fn client_config(
    ca: Option<&Path>,
    client_cert_and_key: Option<(&Path, &Path)>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, Error> {
    let roots = match ca {
        Some(ca) => root_store(ca)?,
        None => system_root_store()?,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(Error::ClientConfig)?
        .with_root_certificates(roots);
    let mut config = match client_cert_and_key {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_private_key(key)?)
            .map_err(Error::ClientConfig)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn_ids(alpn);
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC1_EC: &str = include_str!("../testdata/sec1-ec.key");
    const PKCS1_RSA: &str = include_str!("../testdata/pkcs1-rsa.key");

    fn loads_into_a_signing_key(key: &PrivateKeyDer<'static>) -> bool {
        provider()
            .key_provider
            .load_private_key(key.clone_key())
            .is_ok()
    }

    #[test]
    fn sec1_ec_key_is_loaded() {
        let key = parse_private_key(Path::new("ec.key"), SEC1_EC.as_bytes()).expect("parses");
        assert!(matches!(key, PrivateKeyDer::Sec1(_)));
        assert!(loads_into_a_signing_key(&key));
    }

    #[test]
    fn pkcs1_rsa_key_is_loaded() {
        let key = parse_private_key(Path::new("rsa.key"), PKCS1_RSA.as_bytes()).expect("parses");
        assert!(matches!(key, PrivateKeyDer::Pkcs1(_)));
        assert!(loads_into_a_signing_key(&key));
    }

    #[test]
    fn pkcs8_key_is_loaded() {
        let pem = rcgen::KeyPair::generate()
            .expect("key generates")
            .serialize_pem();
        let key = parse_private_key(Path::new("p8.key"), pem.as_bytes()).expect("parses");
        assert!(matches!(key, PrivateKeyDer::Pkcs8(_)));
        assert!(loads_into_a_signing_key(&key));
    }

    #[test]
    fn key_file_without_a_key_names_the_file() {
        let err =
            parse_private_key(Path::new("/etc/k8s/empty.key"), b"not pem\n").expect_err("no key");
        assert!(matches!(err, Error::NoPrivateKey { .. }));
        assert!(err.to_string().contains("/etc/k8s/empty.key"), "{err}");
    }

    #[test]
    fn cert_file_holding_only_a_key_is_refused_naming_the_file() {
        let err = parse_certs(Path::new("server.crt"), SEC1_EC.as_bytes()).expect_err("no cert");
        assert_eq!(err.to_string(), "no certificates found in server.crt");
    }

    #[test]
    fn missing_file_error_names_the_file() {
        let err = load_certs(Path::new("/nonexistent/ca.crt")).expect_err("missing");
        assert_eq!(err.to_string(), "failed to read /nonexistent/ca.crt");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn certs_are_read_in_file_order() {
        let key = rcgen::KeyPair::generate().expect("key generates");
        let a = rcgen::CertificateParams::new(vec!["a.example".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("signs");
        let b = rcgen::CertificateParams::new(vec!["b.example".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("signs");
        let pem = format!("{}{}", a.pem(), b.pem());
        let certs = parse_certs(Path::new("chain.crt"), pem.as_bytes()).expect("parses");
        assert_eq!(certs, vec![a.der().clone(), b.der().clone()]);
    }
}
