//! The cluster PKI: kubeadm's certificate layout under the cert dir, generation with rcgen,
//! reuse of valid existing files, and loading certificates back for checks and renewal.

use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

use crate::config::{Config, KeyAlgorithm};
use crate::Error;

/// Leaf certificates are valid for one year, CAs for ten, as upstream.
pub const CERT_VALIDITY: Duration = Duration::days(365);
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// Certificates start a little in the past so a skewed clock does not reject them right away.
const BACKDATE: Duration = Duration::minutes(5);

/// The group admin.conf's user belongs to; kubeadm binds it to cluster-admin.
pub const CLUSTER_ADMINS_GROUP: &str = "kubeadm:cluster-admins";
pub const SYSTEM_MASTERS: &str = "system:masters";

/// A certificate authority of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaSpec {
    /// The phase name (`kubeadm init phase certs <name>`) and check-expiration name.
    pub name: &'static str,
    /// The file name without extension, relative to the cert dir.
    pub base: &'static str,
    pub common_name: &'static str,
}

pub const CA: CaSpec = CaSpec {
    name: "ca",
    base: "ca",
    common_name: "kubernetes",
};
pub const FRONT_PROXY_CA: CaSpec = CaSpec {
    name: "front-proxy-ca",
    base: "front-proxy-ca",
    common_name: "front-proxy-ca",
};
pub const ETCD_CA: CaSpec = CaSpec {
    name: "etcd-ca",
    base: "etcd/ca",
    common_name: "etcd-ca",
};
pub const CAS: [CaSpec; 3] = [CA, FRONT_PROXY_CA, ETCD_CA];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    ServerAndClient,
}

/// What a certificate must contain: subject, SANs, usages and its CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertConfig {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub usage: Usage,
}

/// A leaf certificate of the layout.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub name: &'static str,
    pub base: &'static str,
    pub ca: CaSpec,
    /// What `kubeadm certs renew` says it renewed.
    pub long_name: &'static str,
    pub config: CertConfig,
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

/// Splits user-supplied SANs into DNS names and IPs.
fn split_sans(sans: &[String], dns: &mut Vec<String>, ips: &mut Vec<IpAddr>) {
    for s in sans {
        match s.parse::<IpAddr>() {
            Ok(ip) => push_unique(ips, ip),
            Err(_) => push_unique(dns, s.clone()),
        }
    }
}

fn leaf(
    name: &'static str,
    base: &'static str,
    ca: CaSpec,
    long_name: &'static str,
    cn: &str,
    orgs: &[&str],
    usage: Usage,
) -> LeafSpec {
    LeafSpec {
        name,
        base,
        ca,
        long_name,
        config: CertConfig {
            common_name: cn.to_string(),
            organizations: orgs.iter().map(|s| s.to_string()).collect(),
            dns_names: vec![],
            ips: vec![],
            usage,
        },
    }
}

/// The leaf certificates `kubeadm init phase certs all` creates, in upstream's order.
pub fn leaf_specs(cfg: &Config) -> Result<Vec<LeafSpec>, Error> {
    let mut apiserver = leaf(
        "apiserver",
        "apiserver",
        CA,
        "certificate for serving the Kubernetes API",
        "kube-apiserver",
        &[],
        Usage::Server,
    );
    {
        let c = &mut apiserver.config;
        push_unique(&mut c.dns_names, cfg.node_name.clone());
        for d in [
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            format!("kubernetes.default.svc.{}", cfg.dns_domain),
        ] {
            push_unique(&mut c.dns_names, d);
        }
        push_unique(&mut c.ips, cfg.apiserver_service_ip()?);
        push_unique(&mut c.ips, cfg.advertise_address);
        if let Some(ep) = &cfg.control_plane_endpoint {
            let host = host_of(ep);
            split_sans(&[host.to_string()], &mut c.dns_names, &mut c.ips);
        }
        split_sans(&cfg.cert_sans, &mut c.dns_names, &mut c.ips);
    }
    let etcd_serving = |name, base, long_name, extra: &[String]| {
        let mut s = leaf(
            name,
            base,
            ETCD_CA,
            long_name,
            &cfg.node_name,
            &[],
            Usage::ServerAndClient,
        );
        let c = &mut s.config;
        c.dns_names = vec!["localhost".to_string()];
        push_unique(&mut c.dns_names, cfg.node_name.clone());
        c.ips = vec![cfg.advertise_address];
        push_unique(&mut c.ips, IpAddr::from([127, 0, 0, 1]));
        push_unique(&mut c.ips, IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]));
        split_sans(extra, &mut c.dns_names, &mut c.ips);
        s
    };
    Ok(vec![
        apiserver,
        leaf(
            "apiserver-kubelet-client",
            "apiserver-kubelet-client",
            CA,
            "certificate for the API server to connect to kubelet",
            "kube-apiserver-kubelet-client",
            &[CLUSTER_ADMINS_GROUP],
            Usage::Client,
        ),
        leaf(
            "front-proxy-client",
            "front-proxy-client",
            FRONT_PROXY_CA,
            "certificate for the front proxy client",
            "front-proxy-client",
            &[],
            Usage::Client,
        ),
        etcd_serving(
            "etcd-server",
            "etcd/server",
            "certificate for serving etcd",
            &cfg.etcd_server_cert_sans,
        ),
        etcd_serving(
            "etcd-peer",
            "etcd/peer",
            "certificate for etcd nodes to communicate with each other",
            &cfg.etcd_peer_cert_sans,
        ),
        leaf(
            "etcd-healthcheck-client",
            "etcd/healthcheck-client",
            ETCD_CA,
            "certificate for liveness probes to healthcheck etcd",
            "kube-etcd-healthcheck-client",
            &[],
            Usage::Client,
        ),
        leaf(
            "apiserver-etcd-client",
            "apiserver-etcd-client",
            ETCD_CA,
            "certificate the apiserver uses to access etcd",
            "kube-apiserver-etcd-client",
            &[],
            Usage::Client,
        ),
    ])
}

/// The host part of `host[:port]` or `[v6]:port`.
pub fn host_of(endpoint: &str) -> &str {
    if let Some(rest) = endpoint.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    if endpoint.parse::<IpAddr>().is_ok() {
        return endpoint;
    }
    endpoint.rsplit_once(':').map_or(endpoint, |(h, _)| h)
}

pub fn cert_path(dir: &Path, base: &str) -> PathBuf {
    dir.join(format!("{base}.crt"))
}

pub fn key_path(dir: &Path, base: &str) -> PathBuf {
    dir.join(format!("{base}.key"))
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Io(what, e)
}

fn mkdir(dir: &Path, mode: u32) -> Result<(), Error> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io_err(format!("creating directory {:?}", dir)))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))
            .map_err(io_err(format!("setting permissions of {:?}", dir)))?;
    }
    Ok(())
}

/// Writes a file atomically (temp file + rename) with the given mode.
pub fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        mkdir(dir, 0o755)?;
    }
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let write = || -> std::io::Result<()> {
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
        fs::rename(&tmp, path)
    };
    write().map_err(io_err(format!("writing {:?}", path)))
}

/// A loaded CA: its certificate (PEM and DER) and an rcgen issuer over its key.
pub struct Ca {
    pub spec: CaSpec,
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("spec", &self.spec).finish()
    }
}

/// Decodes the first CERTIFICATE block of a PEM file.
pub fn pem_to_der(pem: &str, what: &str) -> Result<Vec<u8>, Error> {
    use base64::Engine as _;
    let begin = "-----BEGIN CERTIFICATE-----";
    let end = "-----END CERTIFICATE-----";
    let start = pem.find(begin).ok_or_else(|| {
        Error::Pki(format!(
            "{what}: data does not contain any valid PEM certificate"
        ))
    })?;
    let body = &pem[start + begin.len()..];
    let stop = body
        .find(end)
        .ok_or_else(|| Error::Pki(format!("{what}: truncated PEM certificate")))?;
    let b64: String = body[..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| Error::Pki(format!("{what}: invalid PEM certificate: {e}")))
}

pub fn parse_cert<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, Error> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| Error::Pki(format!("{what}: couldn't parse certificate: {e}")))
}

fn read(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(io_err(format!("reading {:?}", path)))
}

/// A DER length: short form below 128, else 0x80 | byte count, then big-endian bytes.
fn der_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let be: Vec<u8> = len
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = Vec::with_capacity(be.len() + 1);
    out.push(0x80 | be.len() as u8);
    out.extend(be);
    out
}

/// Wraps an RSA PKCS#1 key (upstream kubeadm's "RSA PRIVATE KEY") into PKCS#8, which is what
/// rcgen and ring read: SEQUENCE { INTEGER 0, AlgorithmIdentifier rsaEncryption, OCTET STRING }.
fn rsa_pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    const RSA_ENCRYPTION: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(&RSA_ENCRYPTION);
    body.push(0x04);
    body.extend(der_length(pkcs1.len()));
    body.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    out.extend(der_length(body.len()));
    out.extend(body);
    out
}

/// Reads a PEM private key: PKCS#8 (what this kubeadm writes) or PKCS#1 RSA (what upstream
/// kubeadm writes), so a PKI made by upstream or supplied by the user is reused.
fn load_key(path: &Path) -> Result<KeyPair, Error> {
    let text = read(path)?;
    let bad = |e: String| {
        Error::Pki(format!(
            "couldn't load the private key file {:?}: {e}",
            path
        ))
    };
    let begin = "-----BEGIN RSA PRIVATE KEY-----";
    if let Some(start) = text.find(begin) {
        use base64::Engine as _;
        let body = &text[start + begin.len()..];
        let end = body
            .find("-----END RSA PRIVATE KEY-----")
            .ok_or_else(|| bad("truncated PEM block".into()))?;
        let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
        let pkcs1 = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| bad(e.to_string()))?;
        let der = rsa_pkcs1_to_pkcs8(&pkcs1);
        return KeyPair::try_from(der.as_slice()).map_err(|e| bad(e.to_string()));
    }
    KeyPair::from_pem(&text).map_err(|e| bad(e.to_string()))
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn check_validity(cert: &X509Certificate<'_>, what: &str) -> Result<(), Error> {
    let n = now().unix_timestamp();
    let v = cert.validity();
    if n < v.not_before.timestamp() {
        return Err(Error::Pki(format!("{what} is not yet valid")));
    }
    if n > v.not_after.timestamp() {
        return Err(Error::Pki(format!("{what} has expired")));
    }
    Ok(())
}

fn key_matches(cert: &X509Certificate<'_>, key: &KeyPair) -> bool {
    cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
}

/// Loads an existing CA from the cert dir, if both files exist.
pub fn load_ca(dir: &Path, spec: CaSpec) -> Result<Option<Ca>, Error> {
    let (crt, key) = (cert_path(dir, spec.base), key_path(dir, spec.base));
    match (crt.exists(), key.exists()) {
        (false, false) => return Ok(None),
        (true, false) => {
            return Err(Error::Pki(format!(
                "failure loading {} certificate authority: couldn't load the private key file {:?}: no such file",
                spec.base, key
            )))
        }
        (false, true) => {
            return Err(Error::Pki(format!(
                "failure loading {} certificate authority: couldn't load the certificate file {:?}: no such file",
                spec.base, crt
            )))
        }
        (true, true) => {}
    }
    let what = format!("failure loading {} certificate authority", spec.base);
    let cert_pem = read(&crt)?;
    let cert_der = pem_to_der(&cert_pem, &what)?;
    let keypair = load_key(&key)?;
    {
        let cert = parse_cert(&cert_der, &what)?;
        if !cert.is_ca() {
            return Err(Error::Pki(format!("{what}: certificate is not a CA")));
        }
        check_validity(&cert, &format!("{} certificate authority", spec.base))?;
        if !key_matches(&cert, &keypair) {
            return Err(Error::Pki(format!(
                "{what}: the private key does not match the certificate"
            )));
        }
    }
    let issuer = Issuer::from_ca_cert_der(&cert_der.clone().into(), keypair)
        .map_err(|e| Error::Pki(format!("{what}: {e}")))?;
    Ok(Some(Ca {
        spec,
        cert_pem,
        cert_der,
        issuer,
    }))
}

fn new_key(alg: KeyAlgorithm) -> Result<KeyPair, Error> {
    KeyPair::generate_for(alg.rcgen())
        .map_err(|e| Error::Pki(format!("couldn't generate a private key: {e}")))
}

fn dn(cn: &str, orgs: &[String]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for o in orgs {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    dn.push(DnType::CommonName, cn);
    dn
}

/// Creates a self-signed CA, writes it and returns it.
pub fn create_ca(dir: &Path, spec: CaSpec, alg: KeyAlgorithm) -> Result<Ca, Error> {
    let key = new_key(alg)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(spec.common_name, &[]);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    let n = now();
    p.not_before = n - BACKDATE;
    p.not_after = n + CA_VALIDITY;
    let cert = p.self_signed(&key).map_err(|e| {
        Error::Pki(format!(
            "failure while generating {} CA certificate: {e}",
            spec.base
        ))
    })?;
    let cert_pem = cert.pem();
    mkdir(dir, 0o700)?;
    if let Some(parent) = cert_path(dir, spec.base).parent() {
        mkdir(parent, 0o700)?;
    }
    write_file(
        &key_path(dir, spec.base),
        key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file(&cert_path(dir, spec.base), cert_pem.as_bytes(), 0o644)?;
    let cert_der = cert.der().to_vec();
    let issuer = Issuer::new(p, key);
    Ok(Ca {
        spec,
        cert_pem,
        cert_der,
        issuer,
    })
}

/// Loads the CA, or creates it; prints upstream's progress line either way.
pub fn ensure_ca(dir: &Path, spec: CaSpec, alg: KeyAlgorithm) -> Result<Ca, Error> {
    if let Some(ca) = load_ca(dir, spec)? {
        println!("[certs] Using existing {} certificate authority", spec.base);
        return Ok(ca);
    }
    println!("[certs] Generating \"{}\" certificate and key", spec.base);
    create_ca(dir, spec, alg)
}

/// A leaf certificate and key, signed by `ca`.
pub fn issue(ca: &Ca, c: &CertConfig, alg: KeyAlgorithm) -> Result<(String, String), Error> {
    let key = new_key(alg)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(&c.common_name, &c.organizations);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = match c.usage {
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::ServerAndClient => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    p.use_authority_key_identifier_extension = true;
    for d in &c.dns_names {
        let name = d
            .clone()
            .try_into()
            .map_err(|e| Error::Pki(format!("invalid DNS name {d:?}: {e}")))?;
        p.subject_alt_names.push(SanType::DnsName(name));
    }
    for ip in &c.ips {
        p.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    let n = now();
    p.not_before = n - BACKDATE;
    p.not_after = n + CERT_VALIDITY;
    let cert = p.signed_by(&key, &ca.issuer).map_err(|e| {
        Error::Pki(format!(
            "failure while creating {} certificate: {e}",
            c.common_name
        ))
    })?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// What an existing certificate says about itself.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: CertConfig,
    pub not_after: OffsetDateTime,
    pub serial: String,
    pub issuer_cn: String,
}

/// Reads subject, SANs and usages back from a certificate.
pub fn describe(cert: &X509Certificate<'_>) -> Loaded {
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let organizations = cert
        .subject()
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(String::from))
        .collect();
    let mut dns_names = vec![];
    let mut ips = vec![];
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        ips.push(IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        ips.push(IpAddr::from(a));
                    }
                }
                _ => {}
            }
        }
    }
    let (server, client) = match cert.extended_key_usage() {
        Ok(Some(eku)) => (eku.value.server_auth, eku.value.client_auth),
        _ => (false, false),
    };
    let usage = match (server, client) {
        (true, true) => Usage::ServerAndClient,
        (true, false) => Usage::Server,
        _ => Usage::Client,
    };
    let issuer_cn = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string();
    Loaded {
        config: CertConfig {
            common_name: cn,
            organizations,
            dns_names,
            ips,
            usage,
        },
        not_after: cert.validity().not_after.to_datetime(),
        serial: cert.raw_serial_as_string(),
        issuer_cn,
    }
}

/// Checks an existing leaf against its CA and the configuration; the error says what is wrong.
fn validate_leaf(ca: &Ca, cert_pem: &str, key: &KeyPair, spec: &LeafSpec) -> Result<(), Error> {
    let what = format!("certificate {}", spec.name);
    let der = pem_to_der(cert_pem, &what)?;
    let cert = parse_cert(&der, &what)?;
    let ca_cert = parse_cert(&ca.cert_der, &format!("{} CA", ca.spec.base))?;
    if cert.verify_signature(Some(ca_cert.public_key())).is_err() {
        return Err(Error::Pki(format!(
            "{what} is not signed by corresponding CA"
        )));
    }
    check_validity(&cert, &what)?;
    if !key_matches(&cert, key) {
        return Err(Error::Pki(format!(
            "{what}: the private key does not match the certificate"
        )));
    }
    let have = describe(&cert).config;
    let missing: Vec<String> = spec
        .config
        .dns_names
        .iter()
        .filter(|d| !have.dns_names.contains(d))
        .cloned()
        .chain(
            spec.config
                .ips
                .iter()
                .filter(|ip| !have.ips.contains(ip))
                .map(|ip| ip.to_string()),
        )
        .collect();
    if !missing.is_empty() {
        let valid: Vec<String> = have
            .dns_names
            .iter()
            .cloned()
            .chain(have.ips.iter().map(|ip| ip.to_string()))
            .collect();
        return Err(Error::Pki(format!(
            "{what} is invalid: x509: certificate is valid for {}, not {}",
            valid.join(", "),
            missing.join(", ")
        )));
    }
    Ok(())
}

fn describe_sans(c: &CertConfig) -> String {
    let ips: Vec<String> = c.ips.iter().map(|i| i.to_string()).collect();
    format!(
        "DNS names [{}] and IPs [{}]",
        c.dns_names.join(" "),
        ips.join(" ")
    )
}

/// Writes a leaf certificate unless a valid one exists; prints upstream's progress lines.
pub fn ensure_leaf(dir: &Path, ca: &Ca, spec: &LeafSpec, alg: KeyAlgorithm) -> Result<(), Error> {
    let (crt, key) = (cert_path(dir, spec.base), key_path(dir, spec.base));
    if crt.exists() && key.exists() {
        let existing_key = load_key(&key)?;
        validate_leaf(ca, &read(&crt)?, &existing_key, spec)?;
        println!(
            "[certs] Using existing {} certificate and key on disk",
            spec.base
        );
        return Ok(());
    }
    println!("[certs] Generating \"{}\" certificate and key", spec.base);
    if spec.config.usage != Usage::Client {
        println!(
            "[certs] {} serving cert is signed for {}",
            spec.base,
            describe_sans(&spec.config)
        );
    }
    let (cert_pem, key_pem) = issue(ca, &spec.config, alg)?;
    write_file(&key, key_pem.as_bytes(), 0o600)?;
    write_file(&crt, cert_pem.as_bytes(), 0o644)?;
    Ok(())
}

/// sa.key/sa.pub: the service-account token signing key pair.
pub fn ensure_sa(dir: &Path, alg: KeyAlgorithm) -> Result<(), Error> {
    let (key, pubkey) = (dir.join("sa.key"), dir.join("sa.pub"));
    if key.exists() {
        let k = load_key(&key)?;
        println!("[certs] Using the existing \"sa\" key");
        if !pubkey.exists() {
            write_file(&pubkey, k.public_key_pem().as_bytes(), 0o644)?;
        }
        return Ok(());
    }
    println!("[certs] Generating \"sa\" key and public key");
    let k = new_key(alg)?;
    mkdir(dir, 0o700)?;
    write_file(&key, k.serialize_pem().as_bytes(), 0o600)?;
    write_file(&pubkey, k.public_key_pem().as_bytes(), 0o644)?;
    Ok(())
}

/// Reissues an existing leaf certificate with a new key and the same subject, SANs and
/// usages, signed by the same CA (`kubeadm certs renew`).
pub fn renew_file(
    ca: &Ca,
    cert_file: &Path,
    key_file: &Path,
    alg: KeyAlgorithm,
) -> Result<(), Error> {
    let what = format!("{:?}", cert_file);
    let der = pem_to_der(&read(cert_file)?, &what)?;
    let cert = parse_cert(&der, &what)?;
    let config = describe(&cert).config;
    let (cert_pem, key_pem) = issue(ca, &config, alg)?;
    write_file(key_file, key_pem.as_bytes(), 0o600)?;
    write_file(cert_file, cert_pem.as_bytes(), 0o644)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_ports_and_brackets() {
        assert_eq!(host_of("lb.example.com:6443"), "lb.example.com");
        assert_eq!(host_of("lb.example.com"), "lb.example.com");
        assert_eq!(host_of("[fd00::1]:6443"), "fd00::1");
        assert_eq!(host_of("fd00::1"), "fd00::1");
        assert_eq!(host_of("10.0.0.1:6443"), "10.0.0.1");
    }

    #[test]
    fn issued_leaf_verifies_against_its_ca_and_not_another() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = create_ca(dir.path(), CA, KeyAlgorithm::EcdsaP256).expect("ca");
        let other = create_ca(dir.path(), ETCD_CA, KeyAlgorithm::EcdsaP256).expect("ca");
        let spec = leaf("x", "x", CA, "x", "me", &["grp"], Usage::Client);
        let (pem, key_pem) = issue(&ca, &spec.config, KeyAlgorithm::EcdsaP256).expect("issue");
        let key = KeyPair::from_pem(&key_pem).expect("key");
        validate_leaf(&ca, &pem, &key, &spec).expect("valid");
        let err = validate_leaf(&other, &pem, &key, &spec).expect_err("wrong CA");
        assert!(
            err.to_string().contains("not signed by corresponding CA"),
            "{err}"
        );
        let der = pem_to_der(&pem, "t").expect("der");
        let loaded = describe(&parse_cert(&der, "t").expect("parse"));
        assert_eq!(loaded.config, spec.config);
        assert_eq!(loaded.issuer_cn, "kubernetes");
    }

    #[test]
    fn existing_cert_missing_a_required_san_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = create_ca(dir.path(), CA, KeyAlgorithm::EcdsaP256).expect("ca");
        let mut spec = leaf(
            "apiserver",
            "apiserver",
            CA,
            "x",
            "kube-apiserver",
            &[],
            Usage::Server,
        );
        spec.config.dns_names = vec!["kubernetes".into()];
        let (pem, key_pem) = issue(&ca, &spec.config, KeyAlgorithm::EcdsaP256).expect("issue");
        let key = KeyPair::from_pem(&key_pem).expect("key");
        spec.config.ips = vec!["10.0.0.9".parse().expect("ip")];
        let err = validate_leaf(&ca, &pem, &key, &spec).expect_err("missing SAN");
        assert_eq!(
            err.to_string(),
            "certificate apiserver is invalid: x509: certificate is valid for kubernetes, not 10.0.0.9"
        );
    }
}
