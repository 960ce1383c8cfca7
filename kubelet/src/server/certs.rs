//! The kubelet's serving certificate when --tls-cert-file is not given: like upstream, a
//! self-signed pair `kubelet.crt`/`kubelet.key` in --cert-dir, generated once and reused.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

use super::ServerError;

pub const CERT_FILE: &str = "kubelet.crt";
pub const KEY_FILE: &str = "kubelet.key";

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Returns `<cert_dir>/kubelet.crt` and `kubelet.key`, generating a self-signed pair for
/// `host` and `ips` first when neither exists.
pub fn ensure_self_signed(
    cert_dir: &Path,
    host: &str,
    ips: &[IpAddr],
) -> Result<(PathBuf, PathBuf), ServerError> {
    let cert = cert_dir.join(CERT_FILE);
    let key = cert_dir.join(KEY_FILE);
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let mut names = vec![host.to_string(), "localhost".to_string()];
    names.extend(ips.iter().map(IpAddr::to_string));
    let (cert_pem, key_pem) = generate(host, &names).map_err(ServerError::GenerateCert)?;
    fs::create_dir_all(cert_dir).map_err(io_error(cert_dir))?;
    write(&key, key_pem.as_bytes(), 0o600)?;
    write(&cert, cert_pem.as_bytes(), 0o644)?;
    tracing::info!(cert = %cert.display(), "generated self-signed kubelet serving certificate");
    Ok((cert, key))
}

fn generate(host: &str, names: &[String]) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    // Upstream names it <host>-ca@<unix time> and lets it sign itself.
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{host}-ca@{now}"));
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write(path: &Path, data: &[u8], mode: u32) -> Result<(), ServerError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io_error(path))?;
    f.write_all(data).map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_is_written_once_and_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ips = [IpAddr::from([127, 0, 0, 1])];
        let (cert, key) = ensure_self_signed(dir.path(), "node-a", &ips).expect("generates");
        let first = fs::read_to_string(&cert).expect("cert");
        assert!(first.contains("BEGIN CERTIFICATE"));
        assert!(fs::read_to_string(&key)
            .expect("key")
            .contains("PRIVATE KEY"));
        let (again, _) = ensure_self_signed(dir.path(), "node-a", &ips).expect("reuses");
        assert_eq!(fs::read_to_string(again).expect("cert"), first);
    }
}
