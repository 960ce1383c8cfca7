//! Command-line flags and the KubeletConfiguration file, merged (flags win) into a [`Config`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::core::v1::Taint;
use serde::Deserialize;

/// What was wrong with the flags or the config file.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error(
        "--kubeconfig is required (standalone mode without an apiserver is not supported yet)"
    )]
    NoKubeconfig,
    #[error("read --config {path}")]
    ReadConfig {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parse --config {path}: {message}")]
    ParseConfig { path: String, message: String },
    #[error("invalid value {value:?} for {field}: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: String,
    },
}

fn invalid(field: &'static str, value: &str, reason: impl Into<String>) -> OptionsError {
    OptionsError::Invalid {
        field,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The kubelet's flags (upstream names; values given here override the --config file).
#[derive(Parser, Debug, Clone, Default)]
#[command(
    name = "kubelet",
    version,
    about = "The kubelet is the primary node agent: it runs the pods bound to its node"
)]
pub struct Options {
    /// Path to a kubeconfig file for connecting to the API server (a system:node:<name> identity).
    #[arg(long, default_value = "")]
    pub kubeconfig: String,
    /// Path to a kubeconfig with bootstrap credentials: when --kubeconfig does not exist, the
    /// kubelet requests a client certificate with it (TLS bootstrap) and writes --kubeconfig.
    #[arg(long, default_value = "")]
    pub bootstrap_kubeconfig: String,
    /// Rotate the client certificate: request a new one from the certificates API as the
    /// current one nears expiry (rotateCertificates).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub rotate_certificates: Option<bool>,
    /// Path to a KubeletConfiguration (kubelet.config.k8s.io/v1beta1) YAML file.
    #[arg(long, default_value = "")]
    pub config: String,
    /// If non-empty, use this string as the node name instead of the hostname.
    #[arg(long, default_value = "")]
    pub hostname_override: String,
    /// IP address of the node (reported as InternalIP and used as the pods' hostIP).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Directory of static pod manifests, run without the apiserver (kubeadm: /etc/kubernetes/manifests).
    #[arg(long)]
    pub pod_manifest_path: Option<String>,
    /// Directory for the kubelet's files (pod directories, plugin state).
    #[arg(long, default_value = "/var/lib/kubelet")]
    pub root_dir: PathBuf,
    /// Directory for the kubelet's TLS certificates.
    #[arg(long, default_value = "/var/lib/kubelet/pki")]
    pub cert_dir: PathBuf,
    /// Labels to add when registering the node (key=value,...).
    #[arg(long, value_delimiter = ',')]
    pub node_labels: Vec<String>,
    /// Taints to register the node with (key=value:Effect,...).
    #[arg(long, value_delimiter = ',')]
    pub register_with_taints: Vec<String>,
    /// Number of pods that can run on this kubelet.
    #[arg(long)]
    pub max_pods: Option<u32>,
    /// Comma-separated DNS server IPs for the pods' resolv.conf.
    #[arg(long, value_delimiter = ',')]
    pub cluster_dns: Vec<IpAddr>,
    /// Cluster domain; pods get its search paths.
    #[arg(long)]
    pub cluster_domain: Option<String>,
    /// The sandbox image the runtime is configured with (kept from image garbage collection).
    #[arg(long, default_value = "registry.k8s.io/pause:3.10")]
    pub pod_infra_container_image: String,
    /// Driver for pod cgroups: only cgroupfs for now.
    #[arg(long)]
    pub cgroup_driver: Option<String>,
    /// Root cgroup for pods (the kubelet puts them under <root>/kubepods).
    #[arg(long)]
    pub cgroup_root: Option<String>,
    /// The CRI endpoint (unix socket) of the container runtime.
    #[arg(long)]
    pub container_runtime_endpoint: Option<String>,
    /// Port of the localhost healthz endpoint (0 disables it).
    #[arg(long)]
    pub healthz_port: Option<u16>,
    /// IP address of the healthz server.
    #[arg(long)]
    pub healthz_bind_address: Option<IpAddr>,
    /// Resolver configuration used as the basis of pods' DNS (dnsPolicy Default, and searches).
    #[arg(long)]
    pub resolv_conf: Option<String>,
    /// CIDR for pod IPs when no podCIDR is assigned by the control plane (standalone networking).
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// Directory the runtime reads CNI network configs from; the kubelet writes the bridge config
    /// for the node's podCIDR here.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// Name of the Linux bridge in the written CNI config (not an upstream flag: lets several
    /// kubelets share a host in tests).
    #[arg(long, default_value = "cni0")]
    pub cni_bridge_name: String,
    /// Keep routes to the other nodes' podCIDRs via their InternalIPs (not an upstream flag: this
    /// kubelet provides the pod network itself; turn off when a CNI add-on owns the routes).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pod_network_routes: bool,
    /// How often the node status is computed and posted when it changed.
    #[arg(long)]
    pub node_status_update_frequency: Option<String>,
    /// The port of the kubelet API server (logs, exec, pods, metrics).
    #[arg(long)]
    pub port: Option<u16>,
    /// The IP address the kubelet API server listens on (0.0.0.0 for all interfaces).
    #[arg(long)]
    pub address: Option<IpAddr>,
    /// Serving certificate of the kubelet API; without it a self-signed pair is kept in --cert-dir.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key of --tls-cert-file.
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// CA bundle that client certificates of the kubelet API must chain to.
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// Allow requests without credentials to the kubelet API (as system:anonymous).
    #[arg(long)]
    pub anonymous_auth: Option<bool>,
    /// Authenticate bearer tokens with a TokenReview to the apiserver.
    #[arg(long)]
    pub authentication_token_webhook: Option<bool>,
    /// AlwaysAllow or Webhook (SubjectAccessReview to the apiserver).
    #[arg(long)]
    pub authorization_mode: Option<String>,
    /// Max period between synchronizing running pods and their config (volume contents from
    /// ConfigMaps, Secrets and the downward API).
    #[arg(long)]
    pub sync_frequency: Option<String>,
    /// Hard eviction thresholds (signal<quantity or percent, comma-separated; "" disables).
    #[arg(long)]
    pub eviction_hard: Option<String>,
    /// How long a pressure condition stays after its signal cleared.
    #[arg(long)]
    pub eviction_pressure_transition_period: Option<String>,
    /// Image filesystem usage percent at which image garbage collection starts.
    #[arg(long)]
    pub image_gc_high_threshold: Option<u8>,
    /// Image filesystem usage percent image garbage collection frees down to.
    #[arg(long)]
    pub image_gc_low_threshold: Option<u8>,
    /// Minimum age of an unused image before it may be garbage collected.
    #[arg(long)]
    pub image_minimum_gc_age: Option<String>,
    /// How often image usage is checked (not an upstream flag: upstream's period is a fixed
    /// 5m; tests shorten it).
    #[arg(long)]
    pub image_gc_period: Option<String>,
}

/// The KubeletConfiguration fields this kubelet reads; unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KubeletConfiguration {
    kind: Option<String>,
    #[serde(rename = "clusterDNS")]
    cluster_dns: Option<Vec<String>>,
    cluster_domain: Option<String>,
    max_pods: Option<u32>,
    #[serde(rename = "podCIDR")]
    pod_cidr: Option<String>,
    pod_logs_dir: Option<String>,
    static_pod_path: Option<String>,
    healthz_port: Option<u16>,
    healthz_bind_address: Option<String>,
    cgroup_driver: Option<String>,
    cgroup_root: Option<String>,
    container_runtime_endpoint: Option<String>,
    register_with_taints: Option<Vec<Taint>>,
    node_status_update_frequency: Option<String>,
    sync_frequency: Option<String>,
    resolv_conf: Option<String>,
    node_labels: Option<BTreeMap<String, String>>,
    address: Option<String>,
    port: Option<u16>,
    tls_cert_file: Option<String>,
    tls_private_key_file: Option<String>,
    authentication: Option<AuthenticationConfig>,
    authorization: Option<AuthorizationConfig>,
    eviction_hard: Option<BTreeMap<String, String>>,
    eviction_pressure_transition_period: Option<String>,
    #[serde(rename = "imageGCHighThresholdPercent")]
    image_gc_high_threshold_percent: Option<u8>,
    #[serde(rename = "imageGCLowThresholdPercent")]
    image_gc_low_threshold_percent: Option<u8>,
    #[serde(rename = "imageMinimumGCAge")]
    image_minimum_gc_age: Option<String>,
    rotate_certificates: Option<bool>,
}

/// KubeletConfiguration `authentication`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthenticationConfig {
    x509: Option<X509Config>,
    webhook: Option<EnabledConfig>,
    anonymous: Option<EnabledConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct X509Config {
    #[serde(rename = "clientCAFile")]
    client_ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct EnabledConfig {
    enabled: Option<bool>,
}

/// KubeletConfiguration `authorization`.
#[derive(Debug, Default, Deserialize)]
struct AuthorizationConfig {
    mode: Option<String>,
}

/// Validated settings the kubelet runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub kubeconfig: PathBuf,
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// Rotate the client certificate (certificate.rs).
    pub rotate_certificates: bool,
    pub node_name: String,
    pub node_ip: Option<IpAddr>,
    pub root_dir: PathBuf,
    pub cert_dir: PathBuf,
    pub pod_logs_dir: PathBuf,
    pub static_pod_path: Option<PathBuf>,
    pub node_labels: BTreeMap<String, String>,
    pub register_with_taints: Vec<Taint>,
    pub max_pods: u32,
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    pub pod_infra_container_image: String,
    pub cgroup_root: String,
    pub runtime_endpoint: String,
    pub healthz: Option<std::net::SocketAddr>,
    pub resolv_conf: PathBuf,
    pub pod_cidr: Option<String>,
    pub cni_conf_dir: PathBuf,
    pub cni_bridge_name: String,
    pub pod_network_routes: bool,
    pub node_status_update_frequency: Duration,
    pub server: crate::server::ServerConfig,
    pub sync_frequency: Duration,
    pub eviction: crate::eviction::Config,
}

impl Options {
    /// Reads --config (if any), applies the flags over it and validates the result.
    pub fn into_config(self) -> Result<Config, OptionsError> {
        let file = if self.config.is_empty() {
            KubeletConfiguration::default()
        } else {
            let text = std::fs::read_to_string(&self.config).map_err(|source| {
                OptionsError::ReadConfig {
                    path: self.config.clone(),
                    source,
                }
            })?;
            let parsed: KubeletConfiguration =
                serde_yaml_ng::from_str(&text).map_err(|e| OptionsError::ParseConfig {
                    path: self.config.clone(),
                    message: e.to_string(),
                })?;
            if let Some(kind) = parsed
                .kind
                .as_deref()
                .filter(|k| *k != "KubeletConfiguration")
            {
                return Err(OptionsError::ParseConfig {
                    path: self.config.clone(),
                    message: format!("kind is {kind:?}, want \"KubeletConfiguration\""),
                });
            }
            parsed
        };
        self.merge(file)
    }

    fn merge(self, file: KubeletConfiguration) -> Result<Config, OptionsError> {
        if self.kubeconfig.is_empty() {
            return Err(OptionsError::NoKubeconfig);
        }
        let eviction = eviction_config(&self, &file)?;
        let node_name = if self.hostname_override.is_empty() {
            hostname()
        } else {
            self.hostname_override.clone()
        }
        .trim()
        .to_lowercase();
        if node_name.is_empty() || !is_dns_subdomain(&node_name) {
            return Err(invalid(
                "--hostname-override",
                &node_name,
                "a node name must be a lowercase RFC 1123 subdomain",
            ));
        }

        let server = server_config(&self, &file)?;

        let mut node_labels = file.node_labels.unwrap_or_default();
        for pair in self.node_labels.iter().filter(|s| !s.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| invalid("--node-labels", pair, "want key=value"))?;
            node_labels.insert(k.trim().to_string(), v.trim().to_string());
        }

        let mut taints = file.register_with_taints.unwrap_or_default();
        if !self.register_with_taints.is_empty() {
            taints = self
                .register_with_taints
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| parse_taint(s))
                .collect::<Result<_, _>>()?;
        }

        let cluster_dns = if self.cluster_dns.is_empty() {
            file.cluster_dns
                .unwrap_or_default()
                .iter()
                .map(|s| {
                    s.parse()
                        .map_err(|_| invalid("clusterDNS", s, "not an IP address"))
                })
                .collect::<Result<_, _>>()?
        } else {
            self.cluster_dns.clone()
        };

        let cgroup_driver = self
            .cgroup_driver
            .or(file.cgroup_driver)
            .unwrap_or_else(|| "cgroupfs".into());
        if cgroup_driver != "cgroupfs" {
            return Err(invalid(
                "--cgroup-driver",
                &cgroup_driver,
                "only cgroupfs is supported",
            ));
        }

        let healthz_port = self.healthz_port.or(file.healthz_port).unwrap_or(10248);
        let healthz_ip = match (self.healthz_bind_address, file.healthz_bind_address) {
            (Some(ip), _) => ip,
            (None, Some(s)) => s
                .parse()
                .map_err(|_| invalid("healthzBindAddress", &s, "not an IP address"))?,
            (None, None) => IpAddr::from([127, 0, 0, 1]),
        };

        let frequency = self
            .node_status_update_frequency
            .or(file.node_status_update_frequency)
            .unwrap_or_else(|| "10s".into());
        let node_status_update_frequency = component_base::duration::parse_go_duration(&frequency)
            .map_err(|e| invalid("--node-status-update-frequency", &frequency, e))?;

        let sync = self
            .sync_frequency
            .or(file.sync_frequency)
            .unwrap_or_else(|| "1m".into());
        let sync_frequency = component_base::duration::parse_go_duration(&sync)
            .map_err(|e| invalid("--sync-frequency", &sync, e))?;

        let pod_cidr = self.pod_cidr.or(file.pod_cidr).filter(|s| !s.is_empty());
        if let Some(cidr) = &pod_cidr {
            crate::cni::parse_ipv4_cidr(cidr).ok_or_else(|| {
                invalid(
                    "--pod-cidr",
                    cidr,
                    "want an IPv4 CIDR such as 10.244.1.0/24",
                )
            })?;
        }

        let runtime_endpoint = self
            .container_runtime_endpoint
            .or(file.container_runtime_endpoint)
            .unwrap_or_else(|| "unix:///run/containerd/containerd.sock".into());
        crate::cri::socket_path(&runtime_endpoint).map_err(|e| {
            invalid(
                "--container-runtime-endpoint",
                &runtime_endpoint,
                e.to_string(),
            )
        })?;

        if self.cni_bridge_name.is_empty() || self.cni_bridge_name.len() > 15 {
            return Err(invalid(
                "--cni-bridge-name",
                &self.cni_bridge_name,
                "an interface name has 1 to 15 characters",
            ));
        }

        Ok(Config {
            kubeconfig: PathBuf::from(&self.kubeconfig),
            bootstrap_kubeconfig: (!self.bootstrap_kubeconfig.is_empty())
                .then(|| PathBuf::from(&self.bootstrap_kubeconfig)),
            rotate_certificates: self
                .rotate_certificates
                .or(file.rotate_certificates)
                .unwrap_or(false),
            node_name,
            node_ip: self.node_ip,
            root_dir: self.root_dir,
            cert_dir: self.cert_dir,
            pod_logs_dir: file
                .pod_logs_dir
                .map_or_else(|| PathBuf::from("/var/log/pods"), PathBuf::from),
            static_pod_path: self
                .pod_manifest_path
                .or(file.static_pod_path)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            node_labels,
            register_with_taints: taints,
            max_pods: self.max_pods.or(file.max_pods).unwrap_or(110),
            cluster_dns,
            cluster_domain: self
                .cluster_domain
                .or(file.cluster_domain)
                .unwrap_or_default(),
            pod_infra_container_image: self.pod_infra_container_image,
            cgroup_root: self.cgroup_root.or(file.cgroup_root).unwrap_or_default(),
            runtime_endpoint,
            healthz: (healthz_port != 0)
                .then(|| std::net::SocketAddr::new(healthz_ip, healthz_port)),
            resolv_conf: PathBuf::from(
                self.resolv_conf
                    .or(file.resolv_conf)
                    .unwrap_or_else(|| "/etc/resolv.conf".into()),
            ),
            pod_cidr,
            cni_conf_dir: self.cni_conf_dir,
            cni_bridge_name: self.cni_bridge_name,
            pod_network_routes: self.pod_network_routes,
            node_status_update_frequency,
            server,
            sync_frequency,
            eviction,
        })
    }
}

/// --eviction-hard / evictionHard, the transition period and the image GC policy.
fn eviction_config(
    flags: &Options,
    file: &KubeletConfiguration,
) -> Result<crate::eviction::Config, OptionsError> {
    let hard_text = match (&flags.eviction_hard, &file.eviction_hard) {
        (Some(f), _) => f.clone(),
        (None, Some(map)) => map
            .iter()
            .map(|(k, v)| format!("{k}<{v}"))
            .collect::<Vec<_>>()
            .join(","),
        (None, None) => crate::eviction::DEFAULT_HARD.to_string(),
    };
    let hard = crate::eviction::parse_thresholds(&hard_text)
        .map_err(|e| invalid("--eviction-hard", &hard_text, e))?;
    let duration = |field: &'static str, value: Option<&String>, default: &str| {
        let text = value.map_or(default, |v| v.as_str());
        component_base::duration::parse_go_duration(text)
            .map_err(|e| invalid(field, text, e.to_string()))
    };
    let pressure_transition_period = duration(
        "--eviction-pressure-transition-period",
        flags
            .eviction_pressure_transition_period
            .as_ref()
            .or(file.eviction_pressure_transition_period.as_ref()),
        "5m",
    )?;
    let image_gc = crate::eviction::image_gc::Policy {
        high_threshold_percent: flags
            .image_gc_high_threshold
            .or(file.image_gc_high_threshold_percent)
            .unwrap_or(85),
        low_threshold_percent: flags
            .image_gc_low_threshold
            .or(file.image_gc_low_threshold_percent)
            .unwrap_or(80),
        minimum_age: duration(
            "--image-minimum-gc-age",
            flags
                .image_minimum_gc_age
                .as_ref()
                .or(file.image_minimum_gc_age.as_ref()),
            "2m",
        )?,
        period: duration("--image-gc-period", flags.image_gc_period.as_ref(), "5m")?,
    };
    image_gc.validate().map_err(|e| {
        invalid(
            "--image-gc-high-threshold",
            &image_gc.high_threshold_percent.to_string(),
            e,
        )
    })?;
    Ok(crate::eviction::Config {
        hard,
        pressure_transition_period,
        image_gc,
    })
}

/// The kubelet server's settings. Defaults differ as upstream's do: without a config file the
/// flag defaults apply (anonymous allowed, no token webhook, AlwaysAllow); a config file brings
/// the v1beta1 defaults (anonymous off, token webhook on, Webhook authorization).
fn server_config(
    flags: &Options,
    file: &KubeletConfiguration,
) -> Result<crate::server::ServerConfig, OptionsError> {
    let from_file = !flags.config.is_empty();
    let authn = file.authentication.as_ref();
    let address = match (flags.address, &file.address) {
        (Some(ip), _) => ip,
        (None, Some(s)) => s
            .parse()
            .map_err(|_| invalid("address", s, "not an IP address"))?,
        (None, None) => IpAddr::from([0, 0, 0, 0]),
    };
    let mode = flags
        .authorization_mode
        .clone()
        .or_else(|| file.authorization.as_ref().and_then(|a| a.mode.clone()))
        .unwrap_or_else(|| if from_file { "Webhook" } else { "AlwaysAllow" }.into());
    let authorization_mode = mode
        .parse()
        .map_err(|e: String| invalid("--authorization-mode", &mode, e))?;
    let tls_cert_file = flags
        .tls_cert_file
        .clone()
        .or_else(|| file.tls_cert_file.as_ref().map(PathBuf::from));
    let tls_private_key_file = flags
        .tls_private_key_file
        .clone()
        .or_else(|| file.tls_private_key_file.as_ref().map(PathBuf::from));
    if tls_cert_file.is_some() != tls_private_key_file.is_some() {
        return Err(invalid(
            "--tls-cert-file",
            &tls_cert_file
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            "--tls-cert-file and --tls-private-key-file go together",
        ));
    }
    Ok(crate::server::ServerConfig {
        address,
        port: flags.port.or(file.port).unwrap_or(10250),
        tls_cert_file,
        tls_private_key_file,
        client_ca_file: flags.client_ca_file.clone().or_else(|| {
            authn
                .and_then(|a| a.x509.as_ref())
                .and_then(|x| x.client_ca_file.as_ref())
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        }),
        anonymous_auth: flags
            .anonymous_auth
            .or_else(|| {
                authn
                    .and_then(|a| a.anonymous.as_ref())
                    .and_then(|e| e.enabled)
            })
            .unwrap_or(!from_file),
        webhook_authn: flags
            .authentication_token_webhook
            .or_else(|| {
                authn
                    .and_then(|a| a.webhook.as_ref())
                    .and_then(|e| e.enabled)
            })
            .unwrap_or(from_file),
        authorization_mode,
    })
}

/// `key=value:Effect` or `key:Effect` as --register-with-taints takes them.
fn parse_taint(spec: &str) -> Result<Taint, OptionsError> {
    let (kv, effect) = spec
        .rsplit_once(':')
        .ok_or_else(|| invalid("--register-with-taints", spec, "want key=value:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(invalid(
            "--register-with-taints",
            spec,
            "effect must be NoSchedule, PreferNoSchedule or NoExecute",
        ));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(invalid("--register-with-taints", spec, "empty key"));
    }
    Ok(Taint {
        key: key.to_string(),
        value,
        effect: effect.to_string(),
        time_added: None,
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Options {
        Options::parse_from(["kubelet", "--kubeconfig=/k", "--hostname-override=Node-1"])
    }

    #[test]
    fn flags_override_the_config_file_and_defaults_apply() {
        let file: KubeletConfiguration = serde_yaml_ng::from_str(
            "kind: KubeletConfiguration\nclusterDNS: [10.96.0.10]\nclusterDomain: cluster.local\nmaxPods: 50\npodLogsDir: /tmp/logs\nregisterWithTaints:\n- key: a\n  effect: NoSchedule\n",
        )
        .expect("yaml");
        let mut o = base();
        o.max_pods = Some(20);
        let c = o.merge(file).expect("valid");
        assert_eq!(c.node_name, "node-1");
        assert_eq!(c.max_pods, 20);
        assert_eq!(c.cluster_dns, vec![IpAddr::from([10, 96, 0, 10])]);
        assert_eq!(c.cluster_domain, "cluster.local");
        assert_eq!(c.pod_logs_dir, PathBuf::from("/tmp/logs"));
        assert_eq!(c.register_with_taints.len(), 1);
        assert_eq!(c.healthz, Some("127.0.0.1:10248".parse().expect("addr")));
        assert_eq!(c.runtime_endpoint, "unix:///run/containerd/containerd.sock");
        assert_eq!(c.node_status_update_frequency, Duration::from_secs(10));
        assert_eq!(c.sync_frequency, Duration::from_secs(60));
    }

    #[test]
    fn bad_values_are_rejected_with_the_field_named() {
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("taint without effect", vec!["--register-with-taints=a=b"]),
            (
                "unknown effect",
                vec!["--register-with-taints=a=b:Sometimes"],
            ),
            ("systemd driver", vec!["--cgroup-driver=systemd"]),
            (
                "tcp runtime",
                vec!["--container-runtime-endpoint=tcp://x:1"],
            ),
            ("bad cidr", vec!["--pod-cidr=10.0.0.0/33"]),
            ("bad node name", vec!["--hostname-override=a_b"]),
            ("bad label", vec!["--node-labels=novalue"]),
        ];
        for (name, extra) in cases {
            let mut args = vec!["kubelet", "--kubeconfig=/k"];
            if !extra[0].starts_with("--hostname-override") {
                args.push("--hostname-override=n");
            }
            args.extend(extra);
            let o = Options::parse_from(args);
            assert!(o.into_config().is_err(), "{name}");
        }
        assert!(matches!(
            Options::parse_from(["kubelet"]).into_config(),
            Err(OptionsError::NoKubeconfig)
        ));
    }

    #[test]
    fn server_defaults_follow_upstream_with_and_without_a_config_file() {
        use crate::server::AuthzMode;
        let c = base()
            .merge(KubeletConfiguration::default())
            .expect("valid");
        assert_eq!(c.server.port, 10250);
        assert_eq!(c.server.address, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(c.server.authorization_mode, AuthzMode::AlwaysAllow);
        assert!(c.server.anonymous_auth && !c.server.webhook_authn);

        let file: KubeletConfiguration = serde_yaml_ng::from_str(
            "kind: KubeletConfiguration\nport: 11250\naddress: 127.0.0.1\nauthentication:\n  x509:\n    clientCAFile: /ca.crt\n",
        )
        .expect("yaml");
        let mut o = base();
        o.config = "/etc/kubelet.yaml".into();
        let c = o.clone().merge(file).expect("valid");
        assert_eq!(c.server.port, 11250);
        assert_eq!(c.server.address, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(c.server.client_ca_file, Some(PathBuf::from("/ca.crt")));
        assert_eq!(c.server.authorization_mode, AuthzMode::Webhook);
        assert!(!c.server.anonymous_auth && c.server.webhook_authn);

        o.authorization_mode = Some("AlwaysAllow".into());
        o.anonymous_auth = Some(true);
        o.port = Some(1);
        let c = o
            .clone()
            .merge(KubeletConfiguration::default())
            .expect("valid");
        assert_eq!(c.server.authorization_mode, AuthzMode::AlwaysAllow);
        assert!(c.server.anonymous_auth);
        assert_eq!(c.server.port, 1);

        o.authorization_mode = Some("RBAC".into());
        assert!(o.clone().merge(KubeletConfiguration::default()).is_err());
        let mut o = base();
        o.tls_cert_file = Some("/c.crt".into());
        assert!(
            o.merge(KubeletConfiguration::default()).is_err(),
            "a cert needs its key"
        );
    }

    #[test]
    fn rotate_certificates_comes_from_the_flag_or_the_file_and_defaults_off() {
        let file =
            |yaml: &str| -> KubeletConfiguration { serde_yaml_ng::from_str(yaml).expect("yaml") };
        let c = base().merge(file("{}")).expect("valid");
        assert!(!c.rotate_certificates);
        let c = base()
            .merge(file("rotateCertificates: true"))
            .expect("valid");
        assert!(c.rotate_certificates);
        let flag = |arg: &str| {
            Options::parse_from(["kubelet", "--kubeconfig=/k", "--hostname-override=n", arg])
        };
        let c = flag("--rotate-certificates")
            .merge(file("{}"))
            .expect("valid");
        assert!(
            c.rotate_certificates,
            "a bare flag means true, as Go's bool flags"
        );
        let c = flag("--rotate-certificates=false")
            .merge(file("rotateCertificates: true"))
            .expect("valid");
        assert!(!c.rotate_certificates, "the flag wins over the file");
        assert!(Options::try_parse_from(["kubelet", "--rotate-certificates=maybe"]).is_err());
    }

    #[test]
    fn taints_parse_with_and_without_values() {
        let t = parse_taint("node-role.kubernetes.io/control-plane:NoSchedule").expect("taint");
        assert_eq!(t.key, "node-role.kubernetes.io/control-plane");
        assert_eq!(t.value, None);
        let t = parse_taint("dedicated=gpu:NoExecute").expect("taint");
        assert_eq!(t.value.as_deref(), Some("gpu"));
        assert_eq!(t.effect, "NoExecute");
    }
}
