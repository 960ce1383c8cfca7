//! Command-line flags and the KubeProxyConfiguration file, named and defaulted as upstream's.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};
use serde::Deserialize;

use crate::{Config, Mode, NodePortAddresses};

/// The config file's apiVersion.
pub const CONFIG_API_VERSION: &str = "kubeproxy.config.k8s.io/v1alpha1";

/// kube-proxy flags. Flags given explicitly override the `--config` file.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "kube-proxy",
    about = "Programs Service virtual IPs into the node's packet filter",
    version
)]
pub struct Options {
    /// Path to a KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1) file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Path to a kubeconfig with the apiserver location and credentials (else in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The apiserver address (overrides the kubeconfig).
    #[arg(long)]
    pub master: Option<String>,
    /// Which proxy mode to use: iptables (default) or nftables.
    #[arg(long)]
    pub proxy_mode: Option<String>,
    /// The CIDR range of the pods in the cluster; traffic to a Service from outside it is
    /// masqueraded.
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// The node name to use instead of the hostname (matched against EndpointSlice nodeName).
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// Primary IP of the node (0.0.0.0: detect).
    #[arg(long)]
    pub bind_address: Option<IpAddr>,
    /// host:port for the health check server (default 0.0.0.0:10256; empty disables).
    #[arg(long)]
    pub healthz_bind_address: Option<String>,
    /// host:port for the metrics server (default 127.0.0.1:10249; empty disables).
    #[arg(long)]
    pub metrics_bind_address: Option<String>,
    /// CIDRs (or `primary`) of the node addresses NodePorts answer on (default: all local).
    #[arg(long, value_delimiter = ',')]
    pub nodeport_addresses: Option<Vec<String>>,
    /// Masquerade all traffic sent to Service cluster IPs.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          require_equals = true)]
    pub masquerade_all: Option<bool>,
    /// Maximum interval between rule syncs (default 30s).
    #[arg(long)]
    pub iptables_sync_period: Option<String>,
    /// Minimum interval between rule syncs (default 1s).
    #[arg(long)]
    pub iptables_min_sync_period: Option<String>,
    /// Remove every rule kube-proxy created, then exit.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          require_equals = true)]
    pub cleanup: Option<bool>,
    /// Log verbosity (klog's -v); mapped onto tracing levels.
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,
}

impl Options {
    /// The tracing default filter for the verbosity.
    pub fn log_level(&self) -> &'static str {
        match self.verbosity {
            0..=2 => "info",
            3..=4 => "debug",
            _ => "trace",
        }
    }
}

/// What is wrong with the flags or the config file.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("failed to read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to decode config file {path}: {source}")]
    Decode {
        path: PathBuf,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// `clientConnection` of the config file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientConnection {
    pub kubeconfig: String,
    pub qps: Option<f32>,
    pub burst: Option<i32>,
}

/// `iptables` / `nftables` of the config file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RulesConfig {
    pub masquerade_all: Option<bool>,
    pub masquerade_bit: Option<i32>,
    pub localhost_node_ports: Option<bool>,
    pub sync_period: Option<String>,
    pub min_sync_period: Option<String>,
}

/// The parts of KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1) this proxy uses;
/// other upstream fields are accepted and ignored.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KubeProxyConfiguration {
    pub api_version: String,
    pub kind: String,
    pub bind_address: String,
    pub healthz_bind_address: Option<String>,
    pub metrics_bind_address: Option<String>,
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: String,
    pub hostname_override: String,
    pub client_connection: ClientConnection,
    pub iptables: RulesConfig,
    pub nftables: RulesConfig,
    pub mode: String,
    /// kubeadm writes `null` here.
    pub node_port_addresses: Option<Vec<String>>,
}

/// Parses a KubeProxyConfiguration document.
pub fn parse_config(text: &str, path: PathBuf) -> Result<KubeProxyConfiguration, OptionsError> {
    let cfg: KubeProxyConfiguration =
        serde_yaml_ng::from_str(text).map_err(|source| OptionsError::Decode {
            path: path.clone(),
            source,
        })?;
    if cfg.kind != "KubeProxyConfiguration" || cfg.api_version != CONFIG_API_VERSION {
        return Err(OptionsError::Invalid(format!(
            "failed to decode config file {}: no kind {:?} is registered for version {:?}",
            path.display(),
            cfg.kind,
            cfg.api_version
        )));
    }
    Ok(cfg)
}

fn duration(field: &str, s: &str) -> Result<Duration, OptionsError> {
    component_base::duration::parse_go_duration(s)
        .map_err(|e| OptionsError::Invalid(format!("invalid value for {field}: {e}")))
}

fn addr(field: &str, s: &str, default_port: u16) -> Result<Option<SocketAddr>, OptionsError> {
    if s.is_empty() {
        return Ok(None);
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(Some(a));
    }
    // Upstream also accepts a bare IP and adds the default port.
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Some(SocketAddr::new(ip, default_port)));
    }
    Err(OptionsError::Invalid(format!(
        "{field}: Invalid value: {s:?}: must be IP:port"
    )))
}

/// Parses an IPv4 CIDR such as `10.244.0.0/16`.
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    (len <= 32).then_some((ip, len))
}

impl Config {
    /// Merges the config file (if any) and the explicitly given flags over upstream's defaults.
    pub fn from_options(o: &Options) -> Result<Self, OptionsError> {
        let file = match &o.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| OptionsError::Read {
                    path: path.clone(),
                    source,
                })?;
                Some(parse_config(&text, path.clone())?)
            }
            None => None,
        };
        let file = file.unwrap_or_default();

        let mode_s = o
            .proxy_mode
            .clone()
            .unwrap_or_else(|| file.mode.clone())
            .to_ascii_lowercase();
        let mode = match mode_s.as_str() {
            "" | "iptables" => Mode::Iptables,
            "nftables" => Mode::Nftables,
            other => {
                return Err(OptionsError::Invalid(format!(
                    "KubeProxyConfiguration.Mode: Invalid value: {other:?}: must be iptables or nftables"
                )))
            }
        };
        let rules = match mode {
            Mode::Iptables => &file.iptables,
            Mode::Nftables => &file.nftables,
        };

        let cluster_cidr_s = o
            .cluster_cidr
            .clone()
            .unwrap_or_else(|| file.cluster_cidr.clone());
        let mut cluster_cidrs = Vec::new();
        for c in cluster_cidr_s.split(',').filter(|c| !c.is_empty()) {
            match parse_cidr(c.trim()) {
                Some(c) => cluster_cidrs.push(c),
                // IPv6 CIDRs are accepted and ignored: only the IPv4 family is programmed.
                None if c.contains(':') => {}
                None => {
                    return Err(OptionsError::Invalid(format!(
                        "KubeProxyConfiguration.DetectLocal.ClusterCIDRs: Invalid value: {c:?}: must be a valid CIDR"
                    )))
                }
            }
        }

        let hostname = o
            .hostname_override
            .clone()
            .filter(|h| !h.is_empty())
            .or_else(|| Some(file.hostname_override.clone()).filter(|h| !h.is_empty()))
            .unwrap_or_else(os_hostname)
            .trim()
            .to_ascii_lowercase();

        // An empty field in the file is defaulted (as upstream's defaulting does, and kubeadm
        // writes `""`); only an explicit empty flag disables the server.
        let healthz = o
            .healthz_bind_address
            .clone()
            .or(file.healthz_bind_address.clone().filter(|a| !a.is_empty()))
            .unwrap_or_else(|| "0.0.0.0:10256".to_owned());
        let metrics = o
            .metrics_bind_address
            .clone()
            .or(file.metrics_bind_address.clone().filter(|a| !a.is_empty()))
            .unwrap_or_else(|| "127.0.0.1:10249".to_owned());

        let nodeport_s = o
            .nodeport_addresses
            .clone()
            .unwrap_or_else(|| file.node_port_addresses.clone().unwrap_or_default());
        let nodeport_addresses = NodePortAddresses::parse(&nodeport_s)?;

        // Zero in the file means "default" (upstream's defaulting; kubeadm writes `0s`); flags
        // are taken as given.
        let period = |flag: &Option<String>,
                      file: &Option<String>,
                      field: &str,
                      default: Duration|
         -> Result<Duration, OptionsError> {
            if let Some(f) = flag {
                return duration(field, f);
            }
            match file {
                Some(f) if !f.is_empty() => {
                    let d = duration(field, f)?;
                    Ok(if d.is_zero() { default } else { d })
                }
                _ => Ok(default),
            }
        };
        let sync_period = period(
            &o.iptables_sync_period,
            &rules.sync_period,
            "syncPeriod",
            Duration::from_secs(30),
        )?;
        let min_sync_period = period(
            &o.iptables_min_sync_period,
            &rules.min_sync_period,
            "minSyncPeriod",
            Duration::from_secs(1),
        )?;
        if sync_period.is_zero() {
            return Err(OptionsError::Invalid(
                "KubeProxyConfiguration.IPTables.SyncPeriod: Invalid value: \"0s\": must be greater than 0".into(),
            ));
        }
        if min_sync_period > sync_period {
            return Err(OptionsError::Invalid(
                "KubeProxyConfiguration.IPTables.MinSyncPeriod: Invalid value: must be less than or equal to syncPeriod".into(),
            ));
        }
        let masquerade_bit = rules.masquerade_bit.unwrap_or(14);
        if !(0..=31).contains(&masquerade_bit) {
            return Err(OptionsError::Invalid(format!(
                "KubeProxyConfiguration.IPTables.MasqueradeBit: Invalid value: {masquerade_bit}: must be within the range [0, 31]"
            )));
        }
        let kubeconfig = o.kubeconfig.clone().or_else(|| {
            Some(file.client_connection.kubeconfig.clone())
                .filter(|k| !k.is_empty())
                .map(PathBuf::from)
        });
        let bind_address = match o.bind_address {
            Some(ip) => Some(ip),
            None if file.bind_address.is_empty() => None,
            None => Some(file.bind_address.parse().map_err(|_| {
                OptionsError::Invalid(format!(
                    "KubeProxyConfiguration.BindAddress: Invalid value: {:?}: not a valid textual representation of an IP address",
                    file.bind_address
                ))
            })?),
        };

        Ok(Config {
            mode,
            kubeconfig,
            master: o.master.clone(),
            hostname,
            bind_address,
            cluster_cidrs,
            healthz_bind_address: addr("healthzBindAddress", &healthz, 10256)?,
            metrics_bind_address: addr("metricsBindAddress", &metrics, 10249)?,
            nodeport_addresses,
            masquerade_all: o.masquerade_all.or(rules.masquerade_all).unwrap_or(false),
            masquerade_mark: 1u32 << masquerade_bit,
            localhost_node_ports: rules.localhost_node_ports.unwrap_or(true),
            sync_period,
            min_sync_period,
            cleanup: o.cleanup.unwrap_or(false),
        })
    }
}

fn os_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, OptionsError> {
        let mut all = vec!["kube-proxy"];
        all.extend(args);
        Config::from_options(&Options::try_parse_from(all).expect("flags parse"))
    }

    #[test]
    fn upstream_defaults() {
        let c = config(&["--hostname-override=Node-1"]).expect("valid");
        assert_eq!(c.mode, Mode::Iptables);
        assert_eq!(c.hostname, "node-1");
        assert_eq!(
            c.healthz_bind_address,
            Some("0.0.0.0:10256".parse().expect("addr"))
        );
        assert_eq!(
            c.metrics_bind_address,
            Some("127.0.0.1:10249".parse().expect("addr"))
        );
        assert_eq!(c.sync_period, Duration::from_secs(30));
        assert_eq!(c.min_sync_period, Duration::from_secs(1));
        assert_eq!(c.masquerade_mark, 0x4000);
        assert!(!c.masquerade_all);
        assert!(!c.cleanup);
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(config(&["--proxy-mode=ipvs"]).is_err());
        assert!(config(&["--cluster-cidr=10.0.0.0/99"]).is_err());
        assert!(config(&["--iptables-sync-period=x"]).is_err());
        assert!(config(&["--metrics-bind-address=nope"]).is_err());
        assert!(Options::try_parse_from(["kube-proxy", "--no-such-flag"]).is_err());
    }

    /// The document kubeadm (v1.33) writes into the kube-proxy ConfigMap.
    const KUBEADM_CONFIG: &str = r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
bindAddress: 0.0.0.0
bindAddressHardFail: false
clientConnection:
  acceptContentTypes: ""
  burst: 0
  contentType: ""
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 0
clusterCIDR: 10.244.0.0/16
configSyncPeriod: 0s
conntrack:
  maxPerCore: null
  min: null
  tcpBeLiberal: false
  tcpCloseWaitTimeout: null
  tcpEstablishedTimeout: null
  udpStreamTimeout: 0s
  udpTimeout: 0s
detectLocal:
  bridgeInterface: ""
  interfaceNamePrefix: ""
detectLocalMode: ""
enableProfiling: false
healthzBindAddress: ""
hostnameOverride: ""
iptables:
  localhostNodePorts: null
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
ipvs:
  excludeCIDRs: null
  minSyncPeriod: 0s
  scheduler: ""
  strictARP: false
  syncPeriod: 0s
  tcpFinTimeout: 0s
  tcpTimeout: 0s
  udpTimeout: 0s
kind: KubeProxyConfiguration
logging:
  flushFrequency: 0
  options:
    json:
      infoBufferSize: "0"
    text:
      infoBufferSize: "0"
  verbosity: 0
metricsBindAddress: ""
mode: ""
nftables:
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
nodePortAddresses: null
oomScoreAdj: null
portRange: ""
showHiddenMetricsForVersion: ""
winkernel:
  enableDSR: false
  forwardHealthCheckVip: false
  networkName: ""
  rootHnsEndpointName: ""
  sourceVip: ""
"#;

    #[test]
    fn kubeadm_config_map_document_loads_with_upstream_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.conf");
        std::fs::write(&path, KUBEADM_CONFIG).expect("write");
        let p = path.to_string_lossy().into_owned();
        let c = config(&["--config", &p, "--hostname-override=worker-1"]).expect("valid");
        assert_eq!(c.mode, Mode::Iptables);
        assert_eq!(c.hostname, "worker-1");
        assert_eq!(c.cluster_cidrs, vec![(Ipv4Addr::new(10, 244, 0, 0), 16)]);
        assert_eq!(
            c.kubeconfig,
            Some(PathBuf::from("/var/lib/kube-proxy/kubeconfig.conf"))
        );
        assert_eq!(c.sync_period, Duration::from_secs(30));
        assert_eq!(c.min_sync_period, Duration::from_secs(1));
        assert_eq!(c.masquerade_mark, 0x4000);
        assert!(c.localhost_node_ports);
        assert_eq!(c.nodeport_addresses, NodePortAddresses::All);
        assert_eq!(
            c.healthz_bind_address,
            Some("0.0.0.0:10256".parse().expect("addr"))
        );
        assert_eq!(
            c.metrics_bind_address,
            Some("127.0.0.1:10249".parse().expect("addr"))
        );
    }

    #[test]
    fn flags_override_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.conf");
        std::fs::write(
            &path,
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n\
             mode: nftables\nclusterCIDR: 10.244.0.0/16\nclientConnection:\n  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf\n\
             nftables:\n  syncPeriod: 10s\n  minSyncPeriod: 0s\nmetricsBindAddress: 0.0.0.0:10249\nhealthzBindAddress: \"\"\nconntrack:\n  maxPerCore: 0\n",
        )
        .expect("write");
        let p = path.to_string_lossy().into_owned();
        let c = config(&["--config", &p, "--hostname-override=n1"]).expect("valid");
        assert_eq!(c.mode, Mode::Nftables);
        assert_eq!(c.cluster_cidrs, vec![(Ipv4Addr::new(10, 244, 0, 0), 16)]);
        assert_eq!(
            c.kubeconfig,
            Some(PathBuf::from("/var/lib/kube-proxy/kubeconfig.conf"))
        );
        assert_eq!(c.sync_period, Duration::from_secs(10));
        // 0s in the file is defaulted, as upstream; "" bind addresses too.
        assert_eq!(c.min_sync_period, Duration::from_secs(1));
        assert_eq!(
            c.healthz_bind_address,
            Some("0.0.0.0:10256".parse().expect("addr"))
        );
        assert_eq!(
            c.metrics_bind_address,
            Some("0.0.0.0:10249".parse().expect("addr"))
        );
        assert_eq!(c.hostname, "n1");
        let c = config(&["--config", &p, "--proxy-mode=iptables"]).expect("valid");
        assert_eq!(c.mode, Mode::Iptables);

        std::fs::write(&path, "apiVersion: v1\nkind: Pod\n").expect("write");
        assert!(config(&["--config", &p]).is_err());
    }
}
