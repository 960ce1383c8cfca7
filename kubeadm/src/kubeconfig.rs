//! The kubeconfig files of the control plane: admin.conf, super-admin.conf, kubelet.conf,
//! controller-manager.conf, scheduler.conf, each with an embedded client certificate.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::pki::{self, Ca, CertConfig, Usage};
use crate::Error;

/// One kubeconfig file kubeadm writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The phase name (`kubeadm init phase kubeconfig <name>`).
    pub phase: &'static str,
    pub file: &'static str,
    /// What `kubeadm certs renew` says it renewed (None: not renewed by kubeadm).
    pub long_name: Option<&'static str>,
}

pub const ADMIN: Spec = Spec {
    phase: "admin",
    file: "admin.conf",
    long_name: Some(
        "certificate embedded in the kubeconfig file for the admin to use and for kubeadm itself",
    ),
};
pub const SUPER_ADMIN: Spec = Spec {
    phase: "super-admin",
    file: "super-admin.conf",
    long_name: Some("certificate embedded in the kubeconfig file for the super-admin"),
};
pub const KUBELET: Spec = Spec {
    phase: "kubelet",
    file: "kubelet.conf",
    long_name: None,
};
pub const CONTROLLER_MANAGER: Spec = Spec {
    phase: "controller-manager",
    file: "controller-manager.conf",
    long_name: Some(
        "certificate embedded in the kubeconfig file for the controller manager to use",
    ),
};
pub const SCHEDULER: Spec = Spec {
    phase: "scheduler",
    file: "scheduler.conf",
    long_name: Some("certificate embedded in the kubeconfig file for the scheduler manager to use"),
};
/// In upstream's order.
pub const ALL: [Spec; 5] = [ADMIN, SUPER_ADMIN, KUBELET, CONTROLLER_MANAGER, SCHEDULER];

/// The user and server a kubeconfig is for.
pub fn identity(cfg: &Config, spec: Spec) -> (CertConfig, String) {
    let client = |cn: String, orgs: Vec<&str>| CertConfig {
        common_name: cn,
        organizations: orgs.into_iter().map(String::from).collect(),
        dns_names: vec![],
        ips: vec![],
        usage: Usage::Client,
    };
    match spec.phase {
        "admin" => (
            client("kubernetes-admin".into(), vec![pki::CLUSTER_ADMINS_GROUP]),
            cfg.control_plane_url(),
        ),
        "super-admin" => (
            client("kubernetes-super-admin".into(), vec![pki::SYSTEM_MASTERS]),
            cfg.control_plane_url(),
        ),
        "kubelet" => (
            client(
                format!("system:node:{}", cfg.node_name),
                vec!["system:nodes"],
            ),
            cfg.control_plane_url(),
        ),
        "controller-manager" => (
            client("system:kube-controller-manager".into(), vec![]),
            cfg.local_endpoint(),
        ),
        _ => (
            client("system:kube-scheduler".into(), vec![]),
            cfg.local_endpoint(),
        ),
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub clusters: Vec<NamedCluster>,
    pub contexts: Vec<NamedContext>,
    #[serde(rename = "current-context")]
    pub current_context: String,
    pub kind: String,
    #[serde(default)]
    pub preferences: serde_json::Map<String, serde_json::Value>,
    pub users: Vec<NamedUser>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct NamedCluster {
    pub cluster: Cluster,
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Cluster {
    #[serde(rename = "certificate-authority-data")]
    pub certificate_authority_data: String,
    pub server: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct NamedContext {
    pub context: Context,
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Context {
    pub cluster: String,
    pub user: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    pub user: User,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct User {
    #[serde(rename = "client-certificate-data")]
    pub client_certificate_data: String,
    #[serde(rename = "client-key-data")]
    pub client_key_data: String,
}

pub fn build(
    cluster_name: &str,
    server: &str,
    ca_pem: &str,
    user: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Kubeconfig {
    let context = format!("{user}@{cluster_name}");
    Kubeconfig {
        api_version: "v1".into(),
        clusters: vec![NamedCluster {
            cluster: Cluster {
                certificate_authority_data: STANDARD.encode(ca_pem),
                server: server.into(),
            },
            name: cluster_name.into(),
        }],
        contexts: vec![NamedContext {
            context: Context {
                cluster: cluster_name.into(),
                user: user.into(),
            },
            name: context.clone(),
        }],
        current_context: context,
        kind: "Config".into(),
        preferences: Default::default(),
        users: vec![NamedUser {
            name: user.into(),
            user: User {
                client_certificate_data: STANDARD.encode(cert_pem),
                client_key_data: STANDARD.encode(key_pem),
            },
        }],
    }
}

pub fn path(cfg: &Config, spec: Spec) -> PathBuf {
    cfg.kubernetes_dir.join(spec.file)
}

pub fn load(file: &Path) -> Result<Kubeconfig, Error> {
    let text =
        std::fs::read_to_string(file).map_err(|e| Error::Io(format!("reading {:?}", file), e))?;
    serde_yaml_ng::from_str(&text)
        .map_err(|e| Error::Kubeconfig(format!("failed to load kubeconfig {:?}: {e}", file)))
}

fn write(file: &Path, kc: &Kubeconfig) -> Result<(), Error> {
    let text = serde_yaml_ng::to_string(kc)
        .map_err(|e| Error::Kubeconfig(format!("failed to serialize kubeconfig: {e}")))?;
    pki::write_file(file, text.as_bytes(), 0o600)
}

/// The PEM client certificate embedded in a kubeconfig's current user.
pub fn client_cert_pem(kc: &Kubeconfig) -> Result<String, Error> {
    let user = kc
        .contexts
        .iter()
        .find(|c| c.name == kc.current_context)
        .map(|c| c.context.user.clone())
        .unwrap_or_default();
    let u = kc
        .users
        .iter()
        .find(|u| u.name == user)
        .or(kc.users.first())
        .ok_or_else(|| Error::Kubeconfig("kubeconfig has no users".into()))?;
    let bytes = STANDARD
        .decode(&u.user.client_certificate_data)
        .map_err(|e| Error::Kubeconfig(format!("invalid client-certificate-data: {e}")))?;
    String::from_utf8(bytes)
        .map_err(|e| Error::Kubeconfig(format!("invalid client-certificate-data: {e}")))
}

/// Writes one kubeconfig unless an existing one matches the CA and server (upstream's reuse rule).
pub fn ensure(cfg: &Config, ca: &Ca, spec: Spec) -> Result<(), Error> {
    let file = path(cfg, spec);
    let (cert, server) = identity(cfg, spec);
    if file.exists() {
        let existing = load(&file)?;
        let cluster = existing
            .clusters
            .first()
            .ok_or_else(|| Error::Kubeconfig(format!("kubeconfig {:?} has no clusters", file)))?;
        let ca_pem = STANDARD
            .decode(&cluster.cluster.certificate_authority_data)
            .unwrap_or_default();
        let same_ca = pki::pem_to_der(&String::from_utf8_lossy(&ca_pem), "kubeconfig CA")
            .is_ok_and(|der| der == ca.cert_der);
        if !same_ca {
            return Err(Error::Kubeconfig(format!(
                "a kubeconfig file {:?} exists already but has got the wrong CA cert",
                file
            )));
        }
        if cluster.cluster.server != server {
            return Err(Error::Kubeconfig(format!(
                "a kubeconfig file {:?} exists already but has an unexpected API Server URL: expected: {server}, got: {}",
                file, cluster.cluster.server
            )));
        }
        println!(
            "[kubeconfig] Using existing kubeconfig file: {:?}",
            file.display().to_string()
        );
        return Ok(());
    }
    println!("[kubeconfig] Writing {:?} kubeconfig file", spec.file);
    let (cert_pem, key_pem) = pki::issue(ca, &cert, cfg.key_algorithm)?;
    let kc = build(
        &cfg.cluster_name,
        &server,
        &ca.cert_pem,
        &cert.common_name,
        &cert_pem,
        &key_pem,
    );
    write(&file, &kc)
}

/// Reissues the client certificate embedded in a kubeconfig, keeping everything else.
pub fn renew(file: &Path, ca: &Ca, alg: crate::config::KeyAlgorithm) -> Result<(), Error> {
    let mut kc = load(file)?;
    let what = format!("{:?}", file);
    let der = pki::pem_to_der(&client_cert_pem(&kc)?, &what)?;
    let config = pki::describe(&pki::parse_cert(&der, &what)?).config;
    let (cert_pem, key_pem) = pki::issue(ca, &config, alg)?;
    for u in &mut kc.users {
        u.user.client_certificate_data = STANDARD.encode(&cert_pem);
        u.user.client_key_data = STANDARD.encode(&key_pem);
    }
    write(file, &kc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_has_kubectls_shape() {
        let kc = build(
            "kubernetes",
            "https://10.0.0.1:6443",
            "CA",
            "kubernetes-admin",
            "C",
            "K",
        );
        let y = serde_yaml_ng::to_string(&kc).expect("yaml");
        assert!(
            y.contains("current-context: kubernetes-admin@kubernetes"),
            "{y}"
        );
        assert!(y.contains("certificate-authority-data: Q0E="), "{y}");
        assert!(y.contains("server: https://10.0.0.1:6443"), "{y}");
        assert!(y.contains("client-key-data: Sw=="), "{y}");
        let back: Kubeconfig = serde_yaml_ng::from_str(&y).expect("parse");
        assert_eq!(client_cert_pem(&back).expect("cert"), "C");
    }
}
