//! The kubeadm configuration: InitConfiguration/ClusterConfiguration files (v1beta3, v1beta4),
//! command-line overrides, defaults, and the root directory every host path lives under.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

/// Upstream's default Kubernetes version for this release line (k8s-openapi's v1_33 API).
pub const DEFAULT_KUBERNETES_VERSION: &str = "v1.33.0";
/// Where the project's own component images are named (built locally by a later phase).
pub const DEFAULT_IMAGE_REPOSITORY: &str = "localhost/kube-rs-fleet";
pub const DEFAULT_SERVICE_SUBNET: &str = "10.96.0.0/12";
pub const DEFAULT_DNS_DOMAIN: &str = "cluster.local";
pub const DEFAULT_BIND_PORT: u16 = 6443;
pub const DEFAULT_CERT_DIR: &str = "/etc/kubernetes/pki";
pub const DEFAULT_ETCD_DATA_DIR: &str = "/var/lib/etcd";
pub const DEFAULT_CLUSTER_NAME: &str = "kubernetes";
pub const KUBERNETES_DIR: &str = "/etc/kubernetes";
/// nodeRegistration.criSocket's default: containerd's socket.
pub const DEFAULT_CRI_SOCKET: &str = "unix:///run/containerd/containerd.sock";

/// The directory kubeadm treats as `/`. Unlike upstream's `--rootfs` (which chroots), every
/// host path kubeadm reads, writes or puts into a manifest or kubeconfig is prefixed with it,
/// so components started from the generated manifests on this host find their files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root(PathBuf);

impl Root {
    pub fn new(dir: Option<&Path>) -> Self {
        Root(
            dir.map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/")),
        )
    }

    /// The real location of an absolute path like `/etc/kubernetes`.
    pub fn host(&self, path: impl AsRef<Path>) -> PathBuf {
        let p = path.as_ref();
        let rel = p.strip_prefix("/").unwrap_or(p);
        if rel.as_os_str().is_empty() {
            return self.0.clone();
        }
        self.0.join(rel)
    }

    pub fn is_real_root(&self) -> bool {
        self.0 == Path::new("/")
    }
}

/// Key algorithm of every generated key (ClusterConfiguration.encryptionAlgorithm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    EcdsaP256,
    EcdsaP384,
}

impl KeyAlgorithm {
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "ECDSA-P256" => Ok(Self::EcdsaP256),
            "ECDSA-P384" => Ok(Self::EcdsaP384),
            "RSA-2048" | "RSA-3072" | "RSA-4096" => Err(Error::Config(format!(
                "encryptionAlgorithm {s:?} is not supported: keys are generated with ring, which cannot create RSA keys; use ECDSA-P256 or ECDSA-P384"
            ))),
            other => Err(Error::Config(format!(
                "invalid encryptionAlgorithm {other:?}, supported values are ECDSA-P256, ECDSA-P384"
            ))),
        }
    }

    pub fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

/// Flags of `kubeadm init` and its phases that map onto the configuration.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub cert_dir: Option<PathBuf>,
    pub kubernetes_version: Option<String>,
    pub advertise_address: Option<IpAddr>,
    pub bind_port: Option<u16>,
    pub cert_extra_sans: Vec<String>,
    pub node_name: Option<String>,
    pub pod_network_cidr: Option<String>,
    pub service_cidr: Option<String>,
    pub service_dns_domain: Option<String>,
    pub control_plane_endpoint: Option<String>,
    pub image_repository: Option<String>,
    pub skip_phases: Vec<String>,
    pub ignore_preflight_errors: Vec<String>,
    pub cri_socket: Option<String>,
    pub token: Option<String>,
    pub token_ttl: Option<String>,
    /// Commands that do not need the advertise address (certs, reset) fall back to 0.0.0.0
    /// instead of failing on a host without a default route.
    pub allow_unset_address: bool,
}

/// The effective, defaulted configuration; every path in it is already a host path (under the root).
#[derive(Debug, Clone)]
pub struct Config {
    pub root: Root,
    pub kubernetes_version: String,
    pub cluster_name: String,
    pub cert_dir: PathBuf,
    pub kubernetes_dir: PathBuf,
    pub manifests_dir: PathBuf,
    pub advertise_address: IpAddr,
    pub bind_port: u16,
    pub node_name: String,
    pub control_plane_endpoint: Option<String>,
    pub cert_sans: Vec<String>,
    pub service_subnet: String,
    pub pod_subnet: Option<String>,
    pub dns_domain: String,
    pub image_repository: String,
    pub key_algorithm: KeyAlgorithm,
    pub etcd_data_dir: PathBuf,
    pub etcd_extra_args: Vec<(String, String)>,
    pub etcd_server_cert_sans: Vec<String>,
    pub etcd_peer_cert_sans: Vec<String>,
    pub apiserver_extra_args: Vec<(String, String)>,
    pub controller_manager_extra_args: Vec<(String, String)>,
    pub scheduler_extra_args: Vec<(String, String)>,
    pub skip_phases: Vec<String>,
    pub ignore_preflight_errors: Vec<String>,
    /// nodeRegistration.criSocket (`unix://...`).
    pub cri_socket: String,
    /// nodeRegistration.kubeletExtraArgs, written into kubeadm-flags.env.
    pub kubelet_extra_args: Vec<(String, String)>,
    /// nodeRegistration.taints; None means upstream's default (the control-plane taint).
    pub node_taints: Option<Vec<k8s_openapi::api::core::v1::Taint>>,
    /// A KubeletConfiguration document of --config, merged over kubeadm's defaults.
    pub kubelet_configuration: Option<serde_yaml_ng::Value>,
    /// bootstrapTokens[0].token, or --token.
    pub token: Option<String>,
    /// bootstrapTokens[0].ttl, or --token-ttl (Go duration; default 24h0m0s).
    pub token_ttl: Option<String>,
}

/// `extraArgs`: a list of name/value pairs in v1beta4, a map in v1beta3.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum ExtraArgs {
    List(Vec<Arg>),
    Map(std::collections::BTreeMap<String, String>),
}

#[derive(Debug, Clone, Deserialize)]
struct Arg {
    name: String,
    value: String,
}

impl ExtraArgs {
    fn into_pairs(self) -> Vec<(String, String)> {
        match self {
            ExtraArgs::List(v) => v.into_iter().map(|a| (a.name, a.value)).collect(),
            ExtraArgs::Map(m) => m.into_iter().collect(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InitConfiguration {
    #[serde(default, rename = "localAPIEndpoint")]
    local_api_endpoint: Option<ApiEndpoint>,
    #[serde(default)]
    node_registration: Option<NodeRegistration>,
    #[serde(default)]
    skip_phases: Vec<String>,
    #[serde(default)]
    bootstrap_tokens: Vec<BootstrapTokenSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BootstrapTokenSpec {
    token: Option<String>,
    ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiEndpoint {
    advertise_address: Option<String>,
    bind_port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeRegistration {
    name: Option<String>,
    #[serde(default)]
    ignore_preflight_errors: Vec<String>,
    cri_socket: Option<String>,
    kubelet_extra_args: Option<ExtraArgs>,
    taints: Option<Vec<k8s_openapi::api::core::v1::Taint>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterConfiguration {
    kubernetes_version: Option<String>,
    cluster_name: Option<String>,
    certificates_dir: Option<String>,
    control_plane_endpoint: Option<String>,
    image_repository: Option<String>,
    encryption_algorithm: Option<String>,
    networking: Option<Networking>,
    api_server: Option<ApiServer>,
    controller_manager: Option<Component>,
    scheduler: Option<Component>,
    etcd: Option<Etcd>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Networking {
    service_subnet: Option<String>,
    pod_subnet: Option<String>,
    dns_domain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiServer {
    extra_args: Option<ExtraArgs>,
    #[serde(default, rename = "certSANs")]
    cert_sans: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Component {
    extra_args: Option<ExtraArgs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Etcd {
    local: Option<LocalEtcd>,
    external: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LocalEtcd {
    data_dir: Option<String>,
    extra_args: Option<ExtraArgs>,
    #[serde(default, rename = "serverCertSANs")]
    server_cert_sans: Vec<String>,
    #[serde(default, rename = "peerCertSANs")]
    peer_cert_sans: Vec<String>,
}

const API_GROUP: &str = "kubeadm.k8s.io";
const API_VERSIONS: [&str; 2] = ["v1beta3", "v1beta4"];

/// Splits a kubeadm config file into its InitConfiguration and ClusterConfiguration.
fn parse_documents(text: &str, file: &Path) -> Result<Documents, Error> {
    let mut init = InitConfiguration::default();
    let mut cluster = ClusterConfiguration::default();
    let mut kubelet = None;
    let bad = |e: String| Error::Config(format!("unable to read config from {:?}: {e}", file));
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = serde_yaml_ng::Value::deserialize(doc).map_err(|e| bad(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let api_version = value
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let kind = value
            .get("kind")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        if kind.is_empty() {
            return Err(bad("Object 'Kind' is missing".into()));
        }
        let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
        if group != API_GROUP {
            if kind == "KubeletConfiguration" {
                kubelet = Some(value);
            }
            // KubeProxyConfiguration: not read yet.
            continue;
        }
        if !API_VERSIONS.contains(&version) {
            return Err(bad(format!(
                "no kind {kind:?} is registered for version {api_version:?}"
            )));
        }
        match kind.as_str() {
            "InitConfiguration" => {
                init = serde_yaml_ng::from_value(value).map_err(|e| bad(e.to_string()))?
            }
            "ClusterConfiguration" => {
                cluster = serde_yaml_ng::from_value(value).map_err(|e| bad(e.to_string()))?
            }
            "JoinConfiguration" | "ResetConfiguration" | "UpgradeConfiguration" => {}
            other => {
                return Err(bad(format!(
                    "no kind {other:?} is registered for version {api_version:?}"
                )))
            }
        }
    }
    Ok((init, cluster, kubelet))
}

type Documents = (
    InitConfiguration,
    ClusterConfiguration,
    Option<serde_yaml_ng::Value>,
);

/// The node's hostname, lowercased as kubeadm does for the node name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// The address of the interface holding the default route (no packet is sent).
fn default_address() -> Result<IpAddr, Error> {
    let probe = || -> std::io::Result<IpAddr> {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        sock.connect((Ipv4Addr::new(8, 8, 8, 8), 53))?;
        Ok(sock.local_addr()?.ip())
    };
    probe().map_err(|e| {
        Error::Config(format!(
            "unable to select an IP from default routes: {e}; set --apiserver-advertise-address"
        ))
    })
}

/// The first address of a CIDR plus `offset` (the apiserver's Service IP is offset 1).
pub fn cidr_ip(cidr: &str, offset: u32) -> Result<IpAddr, Error> {
    let bad = || Error::Config(format!("couldn't parse CIDR {cidr:?}"));
    let (ip, bits) = cidr.split_once('/').ok_or_else(bad)?;
    let bits: u32 = bits.parse().map_err(|_| bad())?;
    match ip.parse::<IpAddr>().map_err(|_| bad())? {
        IpAddr::V4(v4) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            let base = u32::from(v4) & mask;
            Ok(IpAddr::V4(Ipv4Addr::from(base.wrapping_add(offset))))
        }
        IpAddr::V6(v6) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            let base = u128::from(v6) & mask;
            Ok(IpAddr::V6(base.wrapping_add(u128::from(offset)).into()))
        }
        _ => Err(bad()),
    }
}

/// Flags that cannot be combined with --config, as upstream refuses to mix them.
fn mixed_flags(o: &Overrides) -> Vec<&'static str> {
    let mut v = vec![];
    let mut add = |set: bool, name| {
        if set {
            v.push(name)
        }
    };
    add(o.cert_dir.is_some(), "cert-dir");
    add(o.kubernetes_version.is_some(), "kubernetes-version");
    add(o.advertise_address.is_some(), "apiserver-advertise-address");
    add(o.bind_port.is_some(), "apiserver-bind-port");
    add(!o.cert_extra_sans.is_empty(), "apiserver-cert-extra-sans");
    add(o.pod_network_cidr.is_some(), "pod-network-cidr");
    add(o.service_cidr.is_some(), "service-cidr");
    add(o.service_dns_domain.is_some(), "service-dns-domain");
    add(o.control_plane_endpoint.is_some(), "control-plane-endpoint");
    add(o.image_repository.is_some(), "image-repository");
    add(o.cri_socket.is_some(), "cri-socket");
    add(o.token.is_some(), "token");
    add(o.token_ttl.is_some(), "token-ttl");
    v
}

impl Config {
    /// Reads --config (if any), applies the flags and upstream's defaults.
    pub fn load(root: Root, o: Overrides) -> Result<Config, Error> {
        let (init, cluster, kubelet_configuration) = match &o.config_file {
            Some(file) => {
                let mixed = mixed_flags(&o);
                if !mixed.is_empty() {
                    return Err(Error::Config(format!(
                        "can not mix '--config' with arguments [{}]",
                        mixed.join(" ")
                    )));
                }
                let text = std::fs::read_to_string(file).map_err(|e| {
                    Error::Config(format!("unable to read config from {file:?}: {e}"))
                })?;
                parse_documents(&text, file)?
            }
            None => Default::default(),
        };
        let endpoint = init.local_api_endpoint.unwrap_or_default();
        let first_token = init.bootstrap_tokens.into_iter().next().unwrap_or_default();
        let node = init.node_registration.unwrap_or_default();
        let networking = cluster.networking.unwrap_or_default();
        let api_server = cluster.api_server.unwrap_or_default();
        let etcd = cluster.etcd.unwrap_or_default();
        if etcd.external.is_some() {
            return Err(Error::Config(
                "external etcd is not supported: kubeadm runs the local kube-store".into(),
            ));
        }
        let local = etcd.local.unwrap_or_default();

        let advertise_address = match o.advertise_address {
            Some(ip) => ip,
            None => match endpoint.advertise_address.as_deref() {
                Some(s) if !s.is_empty() => s.parse().map_err(|_| {
                    Error::Config(format!(
                        "localAPIEndpoint.advertiseAddress: Invalid value: {s:?}: could not parse IP"
                    ))
                })?,
                _ if o.allow_unset_address => {
                    default_address().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
                }
                _ => default_address()?,
            },
        };
        let cert_dir = o
            .cert_dir
            .or(cluster.certificates_dir.map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CERT_DIR));
        if !cert_dir.is_absolute() {
            return Err(Error::Config(format!(
                "certificatesDir: Invalid value: {:?}: path must be absolute",
                cert_dir.display().to_string()
            )));
        }
        let etcd_data_dir = PathBuf::from(
            local
                .data_dir
                .unwrap_or_else(|| DEFAULT_ETCD_DATA_DIR.to_string()),
        );
        let mut kubernetes_version = o
            .kubernetes_version
            .or(cluster.kubernetes_version)
            .unwrap_or_else(|| DEFAULT_KUBERNETES_VERSION.to_string());
        if !kubernetes_version.starts_with('v') {
            kubernetes_version = format!("v{kubernetes_version}");
        }
        let key_algorithm = KeyAlgorithm::parse(
            cluster
                .encryption_algorithm
                .as_deref()
                .unwrap_or("ECDSA-P256"),
        )?;
        let service_subnet = o
            .service_cidr
            .or(networking.service_subnet)
            .unwrap_or_else(|| DEFAULT_SERVICE_SUBNET.to_string());
        cidr_ip(&service_subnet, 1)?;
        let pod_subnet = o.pod_network_cidr.or(networking.pod_subnet);
        if let Some(p) = &pod_subnet {
            cidr_ip(p, 0)?;
        }
        let mut cert_sans = api_server.cert_sans;
        cert_sans.extend(o.cert_extra_sans);
        let mut skip_phases = init.skip_phases;
        skip_phases.extend(o.skip_phases);
        let mut ignore = node.ignore_preflight_errors;
        ignore.extend(o.ignore_preflight_errors);
        let pairs = |a: Option<ExtraArgs>| a.map(ExtraArgs::into_pairs).unwrap_or_default();
        Ok(Config {
            kubernetes_dir: root.host(KUBERNETES_DIR),
            manifests_dir: root.host(Path::new(KUBERNETES_DIR).join("manifests")),
            cert_dir: root.host(&cert_dir),
            etcd_data_dir: root.host(&etcd_data_dir),
            root,
            kubernetes_version,
            cluster_name: cluster
                .cluster_name
                .unwrap_or_else(|| DEFAULT_CLUSTER_NAME.to_string()),
            advertise_address,
            bind_port: o
                .bind_port
                .or(endpoint.bind_port)
                .unwrap_or(DEFAULT_BIND_PORT),
            node_name: o
                .node_name
                .or(node.name)
                .map(|n| n.to_lowercase())
                .unwrap_or_else(hostname),
            control_plane_endpoint: o
                .control_plane_endpoint
                .or(cluster.control_plane_endpoint)
                .filter(|s| !s.is_empty()),
            cert_sans,
            service_subnet,
            pod_subnet,
            dns_domain: o
                .service_dns_domain
                .or(networking.dns_domain)
                .unwrap_or_else(|| DEFAULT_DNS_DOMAIN.to_string()),
            image_repository: o
                .image_repository
                .or(cluster.image_repository)
                .unwrap_or_else(|| DEFAULT_IMAGE_REPOSITORY.to_string()),
            key_algorithm,
            etcd_extra_args: pairs(local.extra_args),
            etcd_server_cert_sans: local.server_cert_sans,
            etcd_peer_cert_sans: local.peer_cert_sans,
            apiserver_extra_args: pairs(api_server.extra_args),
            controller_manager_extra_args: pairs(
                cluster.controller_manager.and_then(|c| c.extra_args),
            ),
            scheduler_extra_args: pairs(cluster.scheduler.and_then(|c| c.extra_args)),
            skip_phases,
            ignore_preflight_errors: ignore,
            cri_socket: o
                .cri_socket
                .or(node.cri_socket)
                .unwrap_or_else(|| DEFAULT_CRI_SOCKET.to_string()),
            kubelet_extra_args: pairs(node.kubelet_extra_args),
            node_taints: node.taints,
            kubelet_configuration,
            token: o.token.or(first_token.token),
            token_ttl: o.token_ttl.or(first_token.ttl),
        })
    }

    /// The apiserver's in-cluster Service IP (first address of the service subnet + 1).
    pub fn apiserver_service_ip(&self) -> Result<IpAddr, Error> {
        let first = self
            .service_subnet
            .split(',')
            .next()
            .unwrap_or(&self.service_subnet);
        cidr_ip(first.trim(), 1)
    }

    /// `https://host:port` of this control-plane node's apiserver.
    pub fn local_endpoint(&self) -> String {
        format!(
            "https://{}",
            join_host_port(&self.advertise_address.to_string(), self.bind_port)
        )
    }

    /// The endpoint for kubeconfigs of cluster-wide users: controlPlaneEndpoint if set.
    pub fn control_plane_url(&self) -> String {
        match &self.control_plane_endpoint {
            Some(ep)
                if ep.contains(':') && !ep.starts_with('[') && ep.parse::<IpAddr>().is_err() =>
            {
                format!("https://{ep}")
            }
            Some(ep) if ep.starts_with('[') => format!("https://{ep}"),
            Some(ep) => format!("https://{}", join_host_port(ep, self.bind_port)),
            None => self.local_endpoint(),
        }
    }

    /// The value of a flag for the local store, after extraArgs.
    pub fn etcd_arg(&self, name: &str) -> Option<&str> {
        self.etcd_extra_args
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn should_skip(&self, phase: &str) -> bool {
        self.skip_phases
            .iter()
            .any(|p| p == phase || phase.split('/').next().is_some_and(|top| p == top))
    }
}

pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_prefixes_absolute_paths() {
        let r = Root::new(Some(Path::new("/tmp/x")));
        assert_eq!(
            r.host("/etc/kubernetes"),
            PathBuf::from("/tmp/x/etc/kubernetes")
        );
        assert_eq!(r.host("/"), PathBuf::from("/tmp/x"));
        assert_eq!(Root::new(None).host("/etc"), PathBuf::from("/etc"));
    }

    #[test]
    fn service_ip_is_first_address_plus_one() {
        assert_eq!(cidr_ip("10.96.0.0/12", 1).ok(), "10.96.0.1".parse().ok());
        assert_eq!(cidr_ip("10.100.5.7/16", 1).ok(), "10.100.0.1".parse().ok());
        assert_eq!(cidr_ip("fd00::/108", 1).ok(), "fd00::1".parse().ok());
        assert!(cidr_ip("10.96.0.0", 1).is_err());
        assert!(cidr_ip("10.96.0.0/33", 1).is_err());
    }

    #[test]
    fn v1beta4_list_and_v1beta3_map_extra_args_both_parse() {
        let text = r#"
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 127.0.0.1
  bindPort: 7443
nodeRegistration:
  name: Node-A
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
networking:
  podSubnet: 10.244.0.0/16
apiServer:
  certSANs: [example.com]
  extraArgs:
  - name: etcd-servers
    value: https://127.0.0.1:12379
etcd:
  local:
    extraArgs:
      listen-client-urls: https://127.0.0.1:12379
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
"#;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, text).expect("write");
        let c = Config::load(
            Root::new(Some(dir.path())),
            Overrides {
                config_file: Some(file),
                ..Default::default()
            },
        )
        .expect("load");
        assert_eq!(c.bind_port, 7443);
        assert_eq!(c.node_name, "node-a");
        assert_eq!(c.pod_subnet.as_deref(), Some("10.244.0.0/16"));
        assert_eq!(c.cert_sans, vec!["example.com"]);
        assert_eq!(
            c.apiserver_extra_args,
            vec![(
                "etcd-servers".to_string(),
                "https://127.0.0.1:12379".to_string()
            )]
        );
        assert_eq!(
            c.etcd_arg("listen-client-urls"),
            Some("https://127.0.0.1:12379")
        );
        assert_eq!(c.cert_dir, dir.path().join("etc/kubernetes/pki"));
    }

    #[test]
    fn config_and_flags_do_not_mix() {
        let err = Config::load(
            Root::new(None),
            Overrides {
                config_file: Some("/nonexistent".into()),
                bind_port: Some(1),
                ..Default::default()
            },
        )
        .expect_err("mixing is refused");
        assert_eq!(
            err.to_string(),
            "can not mix '--config' with arguments [apiserver-bind-port]"
        );
    }

    #[test]
    fn rsa_is_refused_with_a_reason() {
        assert!(KeyAlgorithm::parse("RSA-2048")
            .expect_err("no RSA")
            .to_string()
            .contains("cannot create RSA keys"));
        assert_eq!(
            KeyAlgorithm::parse("ECDSA-P384").ok(),
            Some(KeyAlgorithm::EcdsaP384)
        );
    }

    #[test]
    fn skip_phases_match_parents_and_children() {
        let mut c = Config::load(
            Root::new(Some(Path::new("/tmp"))),
            Overrides {
                advertise_address: Some("127.0.0.1".parse().expect("ip")),
                ..Default::default()
            },
        )
        .expect("load");
        c.skip_phases = vec!["certs".into(), "kubeconfig/admin".into()];
        assert!(c.should_skip("certs/ca"));
        assert!(c.should_skip("kubeconfig/admin"));
        assert!(!c.should_skip("kubeconfig/scheduler"));
        assert!(!c.should_skip("preflight"));
    }
}
