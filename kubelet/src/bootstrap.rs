//! TLS bootstrap (`--bootstrap-kubeconfig`): with the bootstrap token's credentials the kubelet
//! posts a CertificateSigningRequest for its client certificate (signer
//! `kubernetes.io/kube-apiserver-client-kubelet`, CN `system:node:<name>`, O `system:nodes`,
//! an ECDSA P-256 key), waits for it to be approved and issued, stores certificate and key as
//! `<cert-dir>/kubelet-client-<date>.pem` with the `kubelet-client-current.pem` symlink, as
//! upstream does, and writes `--kubeconfig` pointing at that file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use sha2::Digest as _;

pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const CURRENT: &str = "kubelet-client-current.pem";

/// Why the TLS bootstrap failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("read bootstrap kubeconfig {path}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("the bootstrap kubeconfig has no cluster")]
    NoCluster,
    #[error("build the bootstrap client")]
    Client(#[source] kube::Error),
    #[error("generate the key and certificate request")]
    Key(#[source] rcgen::Error),
    #[error("certificate signing request {name} was {how}: {message}")]
    Refused {
        name: String,
        how: String,
        message: String,
    },
    #[error("write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> BootstrapError + '_ {
    move |source| BootstrapError::Write {
        path: path.display().to_string(),
        source,
    }
}

/// The kubeconfig the kubelet uses after the bootstrap (upstream's shape).
pub fn kubeconfig_yaml(server: &str, ca_data: &str, cert_file: &Path) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca_data}\n    server: {server}\n  name: default-cluster\ncontexts:\n- context:\n    cluster: default-cluster\n    namespace: default\n    user: default-auth\n  name: default-context\ncurrent-context: default-context\nkind: Config\npreferences: {{}}\nusers:\n- name: default-auth\n  user:\n    client-certificate: {c}\n    client-key: {c}\n",
        c = cert_file.display()
    )
}

/// A key and a CSR (PEM) for `node`.
pub fn request(node: &str) -> Result<(String, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// A client with the credentials of the kubeconfig at `path`, and the server URL and CA data
/// (base64) a kubeconfig written after the bootstrap needs.
pub async fn client_from(path: &Path) -> Result<(kube::Client, String, String), BootstrapError> {
    let kubeconfig_error = |source| BootstrapError::Kubeconfig {
        path: path.display().to_string(),
        source,
    };
    let kc = Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
    let cluster = kc
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .ok_or(BootstrapError::NoCluster)?;
    let server = cluster.server.clone().unwrap_or_default();
    let ca_data = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(d), _) => d.clone(),
        (None, Some(f)) => base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(f).map_err(write_err(Path::new(f)))?),
        (None, None) => String::new(),
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(kubeconfig_error)?;
    let client = kube::Client::try_from(config).map_err(BootstrapError::Client)?;
    Ok((client, server, ca_data))
}

/// The CertificateSigningRequest for the node's client certificate: `name` as the bootstrap
/// names it, or a generated `csr-<suffix>` name as upstream's certificate manager asks for.
pub fn csr_object(csr_pem: &str, name: Option<String>) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: name.is_none().then(|| "csr-".to_string()),
            name,
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.as_bytes().to_vec()),
            signer_name: SIGNER.into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..Default::default()
        },
        status: None,
    }
}

/// The bootstrap's CSR name: a digest of the request, so a restarted bootstrap finds its own.
fn digest_name(csr_pem: &str) -> String {
    let digest = sha2::Sha256::digest(csr_pem.as_bytes());
    format!(
        "node-csr-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
    )
    .to_lowercase()
    .replace('_', "-")
}

/// Waits until CSR `name` carries a certificate; a Denied or Failed condition, or the CSR
/// going away, ends the wait with an error. Other API errors are retried.
pub async fn wait_issued(
    csrs: &Api<CertificateSigningRequest>,
    name: &str,
) -> Result<Vec<u8>, BootstrapError> {
    loop {
        match csrs.get(name).await {
            Ok(c) => {
                let status = c.status.unwrap_or_default();
                for cond in status.conditions.unwrap_or_default() {
                    if (cond.type_ == "Denied" || cond.type_ == "Failed") && cond.status == "True" {
                        return Err(BootstrapError::Refused {
                            name: name.to_string(),
                            how: cond.type_.to_lowercase(),
                            message: cond.message.unwrap_or_default(),
                        });
                    }
                }
                if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
                    return Ok(cert.0);
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                return Err(BootstrapError::Refused {
                    name: name.to_string(),
                    how: "deleted".into(),
                    message: "the request is gone".into(),
                })
            }
            Err(e) => {
                tracing::debug!(csr = %name, error = %e, "reading the certificate signing request")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether the kubeconfig at `path` holds a client certificate that is still valid (upstream's
/// check before it decides to bootstrap again): a missing or unreadable file, no certificate or
/// an expired one all mean no.
pub async fn kubeconfig_still_valid(path: &Path) -> bool {
    let Ok(kc) = Kubeconfig::read_from(path) else {
        return false;
    };
    let Ok(config) = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await
    else {
        return false;
    };
    let auth = &config.auth_info;
    let pem = match (&auth.client_certificate_data, &auth.client_certificate) {
        (Some(data), _) => base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .ok(),
        (None, Some(file)) => std::fs::read(file).ok(),
        (None, None) => None,
    };
    let Some(pem) = pem else {
        return false;
    };
    match crate::certificate::validity(&pem) {
        Ok((_, not_after)) if std::time::SystemTime::now() < not_after => true,
        Ok((_, not_after)) => {
            tracing::warn!(kubeconfig = %path.display(), not_after = %crate::certificate::rfc3339(not_after), "the client certificate of the kubeconfig has expired");
            false
        }
        Err(_) => false,
    }
}

/// Runs the bootstrap: requests the client certificate with the bootstrap credentials, stores
/// it in `cert_dir` and writes `kubeconfig` pointing at it.
pub async fn run(
    kubeconfig: &Path,
    bootstrap: &Path,
    cert_dir: &Path,
    node: &str,
) -> Result<(), BootstrapError> {
    let (client, server, ca_data) = client_from(bootstrap).await?;
    let (key_pem, csr_pem) = request(node).map_err(BootstrapError::Key)?;
    let name = digest_name(&csr_pem);
    let csrs: Api<CertificateSigningRequest> = Api::all(client);
    let csr = csr_object(&csr_pem, Some(name.clone()));
    // Post until the apiserver answers (it may still be starting).
    loop {
        match csrs.create(&PostParams::default(), &csr).await {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 409 => break,
            Err(e) => {
                tracing::warn!(error = %e, "posting the certificate signing request failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    tracing::info!(csr = %name, "waiting for the client certificate to be issued");
    let cert = wait_issued(&csrs, &name).await?;
    let file = store(cert_dir, &cert, key_pem.as_bytes())?;
    let text = kubeconfig_yaml(&server, &ca_data, &file);
    if let Some(dir) = kubeconfig.parent() {
        std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    }
    write_private(kubeconfig, text.as_bytes())?;
    tracing::info!(kubeconfig = %kubeconfig.display(), "TLS bootstrap done");
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), BootstrapError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(write_err(&tmp))?;
    f.write_all(data).map_err(write_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(write_err(path))
}

/// Writes `kubelet-client-<date>.pem` (certificate then key) and points the
/// `kubelet-client-current.pem` symlink at it; returns the symlink's path.
pub fn store(cert_dir: &Path, cert: &[u8], key: &[u8]) -> Result<PathBuf, BootstrapError> {
    std::fs::create_dir_all(cert_dir).map_err(write_err(cert_dir))?;
    let now = time::OffsetDateTime::now_utc();
    let dated = cert_dir.join(format!(
        "kubelet-client-{:04}-{:02}-{:02}-{:02}-{:02}-{:02}.pem",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    ));
    let mut pem = cert.to_vec();
    if !pem.ends_with(b"\n") {
        pem.push(b'\n');
    }
    pem.extend_from_slice(key);
    write_private(&dated, &pem)?;
    let current = cert_dir.join(CURRENT);
    let tmp = cert_dir.join(format!(".{CURRENT}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&dated, &tmp).map_err(write_err(&tmp))?;
    std::fs::rename(&tmp, &current).map_err(write_err(&current))?;
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    use x509_parser::prelude::FromDer as _;

    #[test]
    fn the_request_names_the_node_in_system_nodes() {
        let (key, csr) = request("worker-1").expect("csr");
        assert!(key.contains("PRIVATE KEY"));
        let der = rustls_pemfile_free_decode(&csr);
        let (_, parsed) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&der)
                .expect("parse csr");
        let subject = parsed.certification_request_info.subject.to_string();
        assert!(subject.contains("CN=system:node:worker-1"), "{subject}");
        assert!(subject.contains("O=system:nodes"), "{subject}");
    }

    fn rustls_pemfile_free_decode(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("base64")
    }

    #[test]
    fn the_current_symlink_points_at_the_dated_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let current = store(dir.path(), b"CERT", b"KEY").expect("store");
        assert_eq!(current, dir.path().join(CURRENT));
        assert_eq!(std::fs::read(&current).expect("read"), b"CERT\nKEY");
        let target = std::fs::read_link(&current).expect("symlink");
        assert!(target
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("kubelet-client-2")));
    }
}
