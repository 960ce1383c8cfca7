//! Self-signed serving certificate kept in --cert-dir when no --tls-cert-file is given.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

/// File names upstream uses inside --cert-dir (`PairName` "apiserver").
pub const CERT_FILE: &str = "apiserver.crt";
pub const KEY_FILE: &str = "apiserver.key";

/// Upstream backdates by an hour so peers with a slightly slow clock accept the certificate.
const BACKDATE_SECONDS: i64 = 3600;
/// Upstream's self-signed certificates last a year.
const VALID_SECONDS: i64 = 365 * 24 * 3600;

/// Why the serving certificate could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("error reading {present}, certificate and key must be supplied as a pair but {missing} is missing")]
    HalfPair { present: PathBuf, missing: PathBuf },
    #[error("cannot create certificate directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate self-signed certificate")]
    Generate(#[source] rcgen::Error),
    #[error("invalid subject alternative name {name:?}")]
    InvalidName {
        name: String,
        #[source]
        source: rcgen::Error,
    },
}

/// The names the apiserver must answer to: in-cluster Service names, localhost, the host name,
/// the advertise address and the `kubernetes` Service IP. The advertise address comes first so
/// it names the certificate, as upstream's does.
pub fn default_sans(
    advertise_address: IpAddr,
    service_ip: Ipv4Addr,
    hostname: Option<&str>,
) -> (Vec<String>, Vec<IpAddr>) {
    let mut hosts: Vec<String> = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    if let Some(name) = hostname.map(str::trim).filter(|n| !n.is_empty()) {
        if !hosts.iter().any(|h| h == name) {
            hosts.push(name.to_owned());
        }
    }
    let mut ips = Vec::new();
    for ip in [
        advertise_address,
        IpAddr::V4(service_ip),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        if !ip.is_unspecified() && !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    (hosts, ips)
}

/// This host's name as the kernel knows it.
pub fn hostname() -> Option<String> {
    let name = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_lowercase())
}

/// Returns `<cert_dir>/apiserver.crt` and `apiserver.key`, generating them first if neither
/// exists: a fresh CA signs a one-year serving certificate for `hosts` and `ips`, and the
/// certificate file holds the leaf followed by that CA so clients can pin it.
///
/// Existing files are reused as they are, like upstream, so a restart keeps the identity that
/// clients already trust.
pub fn ensure_self_signed(
    cert_dir: &Path,
    hosts: &[String],
    ips: &[IpAddr],
) -> Result<(PathBuf, PathBuf), CertError> {
    let cert_path = cert_dir.join(CERT_FILE);
    let key_path = cert_dir.join(KEY_FILE);
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => return Ok((cert_path, key_path)),
        (true, false) => {
            return Err(CertError::HalfPair {
                present: cert_path,
                missing: key_path,
            })
        }
        (false, true) => {
            return Err(CertError::HalfPair {
                present: key_path,
                missing: cert_path,
            })
        }
        (false, false) => {}
    }

    let (cert_pem, key_pem) = generate(hosts, ips)?;
    fs::create_dir_all(cert_dir).map_err(|source| CertError::CreateDir {
        path: cert_dir.to_owned(),
        source,
    })?;
    // The key goes first: a crash between the two writes then leaves a pair that is refused
    // loudly rather than a certificate whose key is gone.
    write_new(&key_path, key_pem.as_bytes(), 0o600)?;
    write_new(&cert_path, cert_pem.as_bytes(), 0o644)?;
    tracing::info!(
        cert = %cert_path.display(),
        key = %key_path.display(),
        "generated self-signed cert"
    );
    Ok((cert_path, key_path))
}

/// File name of the generated service-account signing key in --cert-dir.
pub const SA_KEY_FILE: &str = "sa.key";

/// Returns `<cert_dir>/sa.key`, generating an ECDSA P-256 key first if it is missing: the
/// service-account signing key of a one-machine start, kept so tokens survive restarts.
pub fn ensure_service_account_key(cert_dir: &Path) -> Result<PathBuf, CertError> {
    let path = cert_dir.join(SA_KEY_FILE);
    if path.exists() {
        return Ok(path);
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(CertError::Generate)?;
    fs::create_dir_all(cert_dir).map_err(|source| CertError::CreateDir {
        path: cert_dir.to_owned(),
        source,
    })?;
    write_new(&path, key.serialize_pem().as_bytes(), 0o600)?;
    Ok(path)
}

/// Writes through a temporary file and a rename so readers never see half a PEM.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

/// The name upstream puts in the subject: the first IP, else the first host name.
fn subject_host(hosts: &[String], ips: &[IpAddr]) -> String {
    ips.first()
        .map(IpAddr::to_string)
        .or_else(|| hosts.first().cloned())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn generate(hosts: &[String], ips: &[IpAddr]) -> Result<(String, String), CertError> {
    let now = OffsetDateTime::now_utc();
    let not_before = now - time::Duration::seconds(BACKDATE_SECONDS);
    let not_after = now + time::Duration::seconds(VALID_SECONDS);
    let host = subject_host(hosts, ips);
    let stamp = now.unix_timestamp();

    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name(&format!("{host}-ca@{stamp}"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_key = KeyPair::generate().map_err(CertError::Generate)?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(CertError::Generate)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::default();
    params.distinguished_name = name(&format!("{host}@{stamp}"));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    for host in hosts {
        let dns = host
            .as_str()
            .try_into()
            .map_err(|source| CertError::InvalidName {
                name: host.clone(),
                source,
            })?;
        params.subject_alt_names.push(SanType::DnsName(dns));
    }
    params
        .subject_alt_names
        .extend(ips.iter().copied().map(SanType::IpAddress));
    let key = KeyPair::generate().map_err(CertError::Generate)?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(CertError::Generate)?;

    Ok((
        format!("{}{}", cert.pem(), ca_cert.pem()),
        key.serialize_pem(),
    ))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use x509_parser::prelude::*;

    fn pem_blocks(text: &str) -> Vec<Vec<u8>> {
        x509_parser::pem::Pem::iter_from_buffer(text.as_bytes())
            .map(|p| p.expect("pem").contents)
            .collect()
    }

    fn sans() -> (Vec<String>, Vec<IpAddr>) {
        default_sans(
            "192.168.1.10".parse().expect("ip"),
            Ipv4Addr::new(10, 96, 0, 1),
            Some("node-a"),
        )
    }

    #[test]
    fn generates_a_chain_with_every_name_and_a_private_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = dir.path().join("certs");
        let (hosts, ips) = sans();
        let (cert, key) = ensure_self_signed(&certs, &hosts, &ips).expect("generates");
        assert_eq!(cert, certs.join("apiserver.crt"));
        assert_eq!(key, certs.join("apiserver.key"));
        let mode = fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let blocks = pem_blocks(&fs::read_to_string(&cert).expect("cert"));
        assert_eq!(blocks.len(), 2, "leaf then CA");
        let (_, leaf) = X509Certificate::from_der(&blocks[0]).expect("leaf");
        let (_, ca) = X509Certificate::from_der(&blocks[1]).expect("ca");
        assert!(ca.is_ca());
        assert!(!leaf.is_ca());
        assert_eq!(leaf.issuer(), ca.subject());
        let cn = leaf
            .subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .expect("cn");
        assert!(cn.starts_with("192.168.1.10@"), "{cn}");

        let san = leaf
            .subject_alternative_name()
            .expect("parses")
            .expect("present");
        let mut names = Vec::new();
        let mut addrs = Vec::new();
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push(d.to_string()),
                GeneralName::IPAddress(b) => addrs.push(b.to_vec()),
                _ => {}
            }
        }
        for want in [
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "localhost",
            "node-a",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
        for want in [
            vec![192, 168, 1, 10],
            vec![10, 96, 0, 1],
            vec![127, 0, 0, 1],
        ] {
            assert!(addrs.contains(&want), "{want:?} missing");
        }
        assert!(addrs.iter().any(|a| a.len() == 16), "::1 missing");

        let key_pem = fs::read_to_string(&key).expect("key");
        let key_pair = KeyPair::from_pem(&key_pem).expect("key parses");
        assert_eq!(
            key_pair.public_key_raw(),
            leaf.public_key().subject_public_key.data.as_ref()
        );
    }

    #[test]
    fn existing_files_are_reused_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (hosts, ips) = sans();
        let (cert, _) = ensure_self_signed(dir.path(), &hosts, &ips).expect("generates");
        let first = fs::read(&cert).expect("cert");
        ensure_self_signed(dir.path(), &hosts, &ips).expect("reuses");
        assert_eq!(fs::read(&cert).expect("cert"), first);
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(CERT_FILE), "x").expect("write");
        let err = ensure_self_signed(dir.path(), &[], &[]).expect_err("half pair");
        assert!(matches!(err, CertError::HalfPair { .. }), "{err}");
    }

    #[test]
    fn default_sans_skip_duplicates_and_unspecified_addresses() {
        let (hosts, ips) = default_sans(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            Ipv4Addr::new(10, 96, 0, 1),
            Some("localhost"),
        );
        assert_eq!(hosts.iter().filter(|h| *h == "localhost").count(), 1);
        assert_eq!(ips[0], IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(ips.len(), 3);
        let (_, ips) = default_sans(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Ipv4Addr::new(10, 96, 0, 1),
            None,
        );
        assert_eq!(ips[0], IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1)));
    }
}
