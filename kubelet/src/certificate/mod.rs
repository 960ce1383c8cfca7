//! Client-certificate rotation (`--rotate-certificates`, `rotateCertificates`) as upstream's
//! certificate manager does it: at a jittered 70–90 % of the current certificate's lifetime the
//! kubelet posts a new CSR (new key, `system:node:<name>` in `system:nodes`, signer
//! `kubernetes.io/kube-apiserver-client-kubelet`) with its current credentials (the
//! `selfnodeclient` path), stores the issued pair as the bootstrap does (`kubelet-client-<date>.pem`
//! and the `kubelet-client-current.pem` symlink) and swaps it in, retrying with back-off.
//!
//! The running kubelet picks up the new certificate without a restart: its one `kube::Client`
//! (cloned into the pod workers, node status and Lease, the server, routes, events, eviction,
//! static-pod mirrors...) is built by [`transport::client`] over a rustls certificate resolver
//! that reads a shared slot, and its connector closes every connection it opened when the slot
//! changes (upstream closes all connections after a rotation). Swapping the certificate under
//! the shared connection pool reaches every clone at once; rebuilding the client instead would
//! need a swappable handle in each of those places.

pub mod transport;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use component_base::Shutdown;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::ResourceExt as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::prelude::FromDer as _;

use crate::bootstrap::{self, BootstrapError};
pub use transport::ClientCertificate;

/// How long one request waits to be approved and issued before a new one is posted
/// (upstream's certificateWaitTimeout).
const WAIT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Why rotation could not start, or one rotation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no certificate in the PEM data")]
    NoCertificate,
    #[error("no private key in the PEM data")]
    NoKey,
    #[error("parse the certificate: {0}")]
    Parse(String),
    #[error("load the private key")]
    Key(#[source] rustls::Error),
    #[error("read kubeconfig {path}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("build the apiserver client")]
    Client(#[source] kube::Error),
    #[error("generate the key and certificate request")]
    Generate(#[source] rcgen::Error),
    #[error("post the certificate signing request")]
    Post(#[source] kube::Error),
    #[error("certificate signing request {name} was not issued within {WAIT_TIMEOUT:?}")]
    Timeout { name: String },
    #[error("bootstrap credentials")]
    Bootstrap(#[source] BootstrapError),
    #[error("the kubeconfig names a proxy ({0}); the rotating client does not speak to proxies")]
    Proxy(String),
}

/// A client certificate and its key as the kubelet presents them.
#[derive(Clone)]
pub struct Pair {
    pub key: Arc<CertifiedKey>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub common_name: String,
    pub organizations: Vec<String>,
}

impl Pair {
    /// From PEM: the certificate chain (leaf first) in `cert_pem`, the private key in
    /// `key_pem` (the same buffer for the kubelet's combined files).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, Error> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Parse(e.to_string()))?;
        let leaf = chain.first().ok_or(Error::NoCertificate)?;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(leaf)
            .map_err(|e| Error::Parse(e.to_string()))?;
        let validity = cert.validity();
        let subject = cert.subject();
        let common_name = subject
            .iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .last()
            .unwrap_or_default()
            .to_string();
        let organizations = subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok())
            .map(str::to_string)
            .collect();
        let (not_before, not_after) = (
            system_time(validity.not_before.timestamp()),
            system_time(validity.not_after.timestamp()),
        );
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| Error::NoKey)?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(Error::Key)?;
        let key = CertifiedKey::new(chain, signer);
        key.keys_match().map_err(Error::Key)?;
        Ok(Pair {
            key: Arc::new(key),
            not_before,
            not_after,
            common_name,
            organizations,
        })
    }

    /// Whether this certificate is what the kubelet would ask for (upstream rotates at once
    /// when the subject does not fit the template any more).
    fn fits(&self, node: &str) -> bool {
        self.common_name == format!("system:node:{node}")
            && self.organizations.iter().any(|o| o == "system:nodes")
    }
}

fn system_time(unix: i64) -> SystemTime {
    if unix >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
    }
}

/// notBefore and notAfter of the first certificate in `pem`.
pub fn validity(pem: &[u8]) -> Result<(SystemTime, SystemTime), Error> {
    let leaf = CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or(Error::NoCertificate)?
        .map_err(|e| Error::Parse(e.to_string()))?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&leaf)
        .map_err(|e| Error::Parse(e.to_string()))?;
    Ok((
        system_time(cert.validity().not_before.timestamp()),
        system_time(cert.validity().not_after.timestamp()),
    ))
}

/// RFC 3339 for logs.
pub fn rfc3339(t: SystemTime) -> String {
    k8s_openapi::chrono::DateTime::<k8s_openapi::chrono::Utc>::from(t)
        .to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true)
}

/// When to rotate a certificate valid from `not_before` to `not_after`: at 70 % of its
/// lifetime plus `jitter` (0..=1) times another 20 %, so nodes started together spread their
/// rotations (upstream's jitteryDuration).
pub fn rotation_deadline(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let total = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_before + total.mul_f64(0.7 + 0.2 * jitter.clamp(0.0, 1.0))
}

/// A uniformly spread number in 0..1 (the per-process random keys of the std hasher suffice
/// for spreading deadlines; nothing here needs to be unpredictable).
fn jitter() -> f64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The pause after failed attempt `attempt` (0-based): upstream's back-off of 2 s doubling
/// with 10 % jitter for five attempts, then every 32 s for as long as it takes.
pub fn retry_pause(attempt: u32, jitter: f64) -> Duration {
    if attempt >= 5 {
        return Duration::from_secs(32);
    }
    Duration::from_secs(2u64 << attempt).mul_f64(1.0 + 0.1 * jitter.clamp(0.0, 1.0))
}

// The kubelet's certificate-manager metrics, read by the server's /metrics.
static CLIENT_NOT_AFTER: AtomicI64 = AtomicI64::new(i64::MIN);
static RENEW_ERRORS: AtomicU64 = AtomicU64::new(0);

fn record_not_after(t: SystemTime) {
    let unix = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    CLIENT_NOT_AFTER.store(unix, Ordering::Relaxed);
}

/// `kubelet_certificate_manager_client_ttl_seconds`: seconds until the client certificate
/// expires (negative once it has), +Inf while no rotated certificate is in use.
pub fn client_ttl_seconds() -> f64 {
    match CLIENT_NOT_AFTER.load(Ordering::Relaxed) {
        i64::MIN => f64::INFINITY,
        not_after => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default();
            not_after as f64 - now
        }
    }
}

/// `kubelet_certificate_manager_client_expiration_renew_errors_total`: failed rotations
/// (upstream names the counter without `_total`; promtool requires the suffix).
pub fn renew_errors() -> u64 {
    RENEW_ERRORS.load(Ordering::Relaxed)
}

/// Adds the two certificate-manager series to a /metrics scrape.
pub fn register_metrics(registry: &prometheus::Registry) {
    if let Ok(ttl) = prometheus::Gauge::new(
        "kubelet_certificate_manager_client_ttl_seconds",
        "Gauge of the TTL (time-to-live) of the Kubelet's client certificate. The value is in \
         seconds until certificate expiry (negative if already expired). If client certificate \
         is invalid or unused, the value will be +INF.",
    ) {
        ttl.set(client_ttl_seconds());
        let _ = registry.register(Box::new(ttl));
    }
    if let Ok(errors) = prometheus::IntCounter::new(
        "kubelet_certificate_manager_client_expiration_renew_errors_total",
        "Counter of certificate renewal errors.",
    ) {
        errors.inc_by(renew_errors());
        let _ = registry.register(Box::new(errors));
    }
}

/// The message of `e` and its causes, `a: b: c`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// The rotation loop of one kubelet.
pub struct Manager {
    cert: Arc<ClientCertificate>,
    current: Pair,
    client: kube::Client,
    bootstrap_kubeconfig: Option<PathBuf>,
    cert_dir: PathBuf,
    node: String,
    rotate_now: bool,
}

/// Sets up rotation for the kubelet's `--kubeconfig`: the client certificate in use is
/// `<cert-dir>/kubelet-client-current.pem` if it exists (as upstream's certificate store
/// prefers it), else the kubeconfig's `client-certificate`/`client-key` files, else its
/// embedded `client-certificate-data`/`client-key-data`, which are written to the cert dir
/// first and rotated at once (kubeadm's first kubelet.conf). Returns the node client that
/// presents the rotated certificates and the manager to run; `None` when the kubeconfig has no
/// client certificate at all (nothing to rotate).
pub async fn start(
    kubeconfig: &Path,
    bootstrap_kubeconfig: Option<&Path>,
    cert_dir: &Path,
    node: &str,
) -> Result<Option<(kube::Client, Manager)>, Error> {
    let kubeconfig_error = |source| Error::Kubeconfig {
        path: kubeconfig.display().to_string(),
        source,
    };
    let kc = Kubeconfig::read_from(kubeconfig).map_err(kubeconfig_error)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(kubeconfig_error)?;
    if let Some(proxy) = &config.proxy_url {
        return Err(Error::Proxy(proxy.to_string()));
    }
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })
    };
    let current_file = cert_dir.join(bootstrap::CURRENT);
    let auth = &config.auth_info;
    let mut rotate_now = false;
    let current = if current_file.exists() {
        let pem = read(&current_file)?;
        Pair::from_pem(&pem, &pem)?
    } else if let (Some(cert), Some(key)) = (&auth.client_certificate, &auth.client_key) {
        Pair::from_pem(&read(Path::new(cert))?, &read(Path::new(key))?)?
    } else if let (Some(cert), Some(key)) = (&auth.client_certificate_data, embedded_key(auth)) {
        let decode = |data: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| Error::Parse(e.to_string()))
        };
        let (cert, key) = (decode(cert)?, decode(&key)?);
        let pair = Pair::from_pem(&cert, &key)?;
        bootstrap::store(cert_dir, &cert, &key).map_err(Error::Bootstrap)?;
        tracing::info!(cert_dir = %cert_dir.display(), "wrote the kubeconfig's client certificate to the cert dir for rotation");
        rotate_now = true;
        pair
    } else {
        return Ok(None);
    };
    if !current.fits(node) {
        tracing::info!(common_name = %current.common_name, "the client certificate is not system:node:{node} in system:nodes; rotating at once");
        rotate_now = true;
    }
    record_not_after(current.not_after);
    let cert = ClientCertificate::new(current.key.clone());
    let client = transport::client(config, cert.clone()).map_err(Error::Client)?;
    let manager = Manager {
        cert,
        current,
        client: client.clone(),
        bootstrap_kubeconfig: bootstrap_kubeconfig.map(Path::to_path_buf),
        cert_dir: cert_dir.to_path_buf(),
        node: node.to_string(),
        rotate_now,
    };
    Ok(Some((client, manager)))
}

/// The kubeconfig's embedded key (kube keeps it as a secret string; its serde form exposes it).
fn embedded_key(auth: &kube::config::AuthInfo) -> Option<String> {
    serde_json::to_value(auth)
        .ok()?
        .get("client-key-data")?
        .as_str()
        .map(str::to_string)
}

impl Manager {
    /// Rotates before each certificate expires, until `shutdown`.
    pub async fn run(mut self, shutdown: Shutdown) {
        tracing::info!("client certificate rotation is enabled");
        loop {
            let deadline = if std::mem::take(&mut self.rotate_now) {
                SystemTime::now()
            } else {
                rotation_deadline(self.current.not_before, self.current.not_after, jitter())
            };
            tracing::info!(
                expiration = %rfc3339(self.current.not_after),
                rotation_deadline = %rfc3339(deadline),
                "client certificate rotation scheduled"
            );
            let wait = deadline
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait() => return,
            }
            let mut attempt = 0;
            loop {
                match self.rotate().await {
                    Ok(()) => break,
                    Err(e) => {
                        RENEW_ERRORS.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %chain(&e), "rotating the client certificate failed; retrying");
                    }
                }
                let pause = retry_pause(attempt, jitter());
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.wait() => return,
                }
            }
        }
    }

    /// One rotation: key, CSR, wait for the certificate, store it, swap it in.
    async fn rotate(&mut self) -> Result<(), Error> {
        // With an expired certificate the node cannot authenticate any more: as upstream, the
        // bootstrap credentials (when there are any) ask for the new one.
        let expired = SystemTime::now() >= self.current.not_after;
        let client = match &self.bootstrap_kubeconfig {
            Some(boot) if expired && boot.exists() => {
                tracing::info!(bootstrap_kubeconfig = %boot.display(), "the client certificate has expired; requesting a new one with the bootstrap credentials");
                bootstrap::client_from(boot)
                    .await
                    .map_err(Error::Bootstrap)?
                    .0
            }
            _ => self.client.clone(),
        };
        let (key_pem, csr_pem) = bootstrap::request(&self.node).map_err(Error::Generate)?;
        let csrs: Api<CertificateSigningRequest> = Api::all(client);
        let created = csrs
            .create(
                &PostParams::default(),
                &bootstrap::csr_object(&csr_pem, None),
            )
            .await
            .map_err(Error::Post)?;
        let name = created.name_any();
        tracing::info!(csr = %name, "requested a new client certificate");
        let cert = tokio::time::timeout(WAIT_TIMEOUT, bootstrap::wait_issued(&csrs, &name))
            .await
            .map_err(|_| Error::Timeout { name: name.clone() })?
            .map_err(Error::Bootstrap)?;
        let pair = Pair::from_pem(&cert, key_pem.as_bytes())?;
        bootstrap::store(&self.cert_dir, &cert, key_pem.as_bytes()).map_err(Error::Bootstrap)?;
        self.cert.set(pair.key.clone());
        record_not_after(pair.not_after);
        tracing::info!(csr = %name, expiration = %rfc3339(pair.not_after), "rotated the client certificate");
        self.current = pair;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn the_deadline_falls_between_70_and_90_percent_of_the_lifetime() {
        let (nb, na) = (at(1_000), at(1_000 + 10_000));
        let cases = [
            ("no jitter", 0.0, 8_000),
            ("half", 0.5, 9_000),
            ("full", 1.0, 10_000),
            ("clamped below", -3.0, 8_000),
            ("clamped above", 7.0, 10_000),
        ];
        for (name, j, want) in cases {
            assert_eq!(rotation_deadline(nb, na, j), at(want), "{name}");
        }
        for _ in 0..1000 {
            let d = rotation_deadline(nb, na, jitter());
            assert!(d >= at(8_000) && d <= at(10_000), "{d:?}");
        }
    }

    #[test]
    fn a_certificate_that_ends_before_it_starts_is_due_at_once() {
        assert_eq!(rotation_deadline(at(500), at(100), 0.5), at(500));
    }

    #[test]
    fn jitter_stays_in_the_unit_interval_and_varies() {
        let samples: Vec<f64> = (0..200).map(|_| jitter()).collect();
        assert!(samples.iter().all(|j| (0.0..1.0).contains(j)));
        let first = samples[0];
        assert!(samples.iter().any(|j| (j - first).abs() > 1e-9));
    }

    #[test]
    fn retries_back_off_from_2s_to_every_32s() {
        let pauses: Vec<u64> = (0..8).map(|a| retry_pause(a, 0.0).as_secs()).collect();
        assert_eq!(pauses, [2, 4, 8, 16, 32, 32, 32, 32]);
        assert_eq!(retry_pause(0, 1.0), Duration::from_millis(2_200));
        assert_eq!(retry_pause(u32::MAX, 1.0), Duration::from_secs(32));
    }

    #[test]
    fn metrics_report_the_ttl_and_the_renewal_errors() {
        let registry = prometheus::Registry::new();
        register_metrics(&registry);
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "kubelet_certificate_manager_client_expiration_renew_errors_total",
                "kubelet_certificate_manager_client_ttl_seconds",
            ]
        );
        record_not_after(SystemTime::now() + Duration::from_secs(3600));
        let ttl = client_ttl_seconds();
        assert!((3590.0..=3600.0).contains(&ttl), "{ttl}");
        record_not_after(SystemTime::now() - Duration::from_secs(60));
        assert!(client_ttl_seconds() < -59.0, "negative once expired");
    }

    fn issued(cn: &str, org: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, org);
        params.not_before = rcgen::date_time_ymd(2030, 1, 1);
        params.not_after = rcgen::date_time_ymd(2031, 1, 1);
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_pair_reads_validity_and_subject_from_combined_or_separate_pem() {
        let (cert, key) = issued("system:node:n1", "system:nodes");
        let combined = format!("{cert}{key}");
        let pair = Pair::from_pem(combined.as_bytes(), combined.as_bytes()).expect("pair");
        assert_eq!(pair.common_name, "system:node:n1");
        assert!(pair.fits("n1"));
        assert!(!pair.fits("n2"));
        assert_eq!(rfc3339(pair.not_before), "2030-01-01T00:00:00Z");
        assert_eq!(rfc3339(pair.not_after), "2031-01-01T00:00:00Z");
        let separate = Pair::from_pem(cert.as_bytes(), key.as_bytes()).expect("pair");
        assert_eq!(separate.not_after, pair.not_after);
        assert_eq!(
            validity(cert.as_bytes()).expect("validity"),
            (pair.not_before, pair.not_after)
        );

        let (_, other_key) = issued("system:node:n1", "system:nodes");
        assert!(
            matches!(
                Pair::from_pem(cert.as_bytes(), other_key.as_bytes()),
                Err(Error::Key(_))
            ),
            "a key that does not belong to the certificate is refused"
        );
        assert!(matches!(
            Pair::from_pem(key.as_bytes(), key.as_bytes()),
            Err(Error::NoCertificate)
        ));
        assert!(matches!(
            Pair::from_pem(cert.as_bytes(), cert.as_bytes()),
            Err(Error::NoKey)
        ));
        let (cert, key) = issued("system:node:n1", "developers");
        let pair = Pair::from_pem(cert.as_bytes(), key.as_bytes()).expect("pair");
        assert!(!pair.fits("n1"), "not in system:nodes");
    }
}
