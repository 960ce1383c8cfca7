//! kube-apiserver flags with upstream names and defaults, validated into a [`Config`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

/// A flag value that cannot be used; `main` prints it and exits with code 64.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    #[error("invalid value {value:?} for --{flag}: {reason}")]
    InvalidFlag {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("--{given} requires --{missing}")]
    MissingPair {
        given: &'static str,
        missing: &'static str,
    },
}

fn invalid(flag: &'static str, value: &str, reason: impl Into<String>) -> OptionsError {
    OptionsError::InvalidFlag {
        flag,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// The command line of kube-apiserver.
///
/// Flags that take lists accept them comma separated, as upstream does. Values that need more
/// than a type check (ranges, durations, modes) are kept as text here and checked by
/// [`Options::into_config`], so every bad value is reported the same way.
#[derive(Debug, Clone, Parser)]
#[command(name = "kube-apiserver", version, about = "The Kubernetes API server")]
pub struct Options {
    /// The port on which to serve HTTPS with authentication and authorization (0 picks a free
    /// port).
    #[arg(long, default_value_t = 6443)]
    pub secure_port: u16,

    /// The IP address on which to listen for the --secure-port port.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,

    /// The IP address on which to advertise the apiserver to members of the cluster. Defaults
    /// to --bind-address if that is specific, else to the host's first non-loopback IPv4.
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,

    /// File containing the default x509 certificate for HTTPS (CA certs, if any, concatenated
    /// after the server cert). Without it a self-signed pair is kept in --cert-dir.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,

    /// File containing the default x509 private key matching --tls-cert-file.
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,

    /// The directory where the self-signed TLS certs are kept; ignored with --tls-cert-file.
    #[arg(long, default_value = "/var/run/kubernetes")]
    pub cert_dir: PathBuf,

    /// Clients presenting a certificate signed by one of these authorities are authenticated
    /// with the certificate's CommonName as user and Organizations as groups.
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,

    /// Static bearer tokens: CSV lines `token,user,uid,"group1,group2"`.
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,

    /// etcd servers to connect to (scheme://ip:port), comma separated. When empty, objects are
    /// kept in an embedded store under --data-dir.
    #[arg(long, value_delimiter = ',')]
    pub etcd_servers: Vec<String>,

    /// SSL Certificate Authority file used to secure etcd communication.
    #[arg(long)]
    pub etcd_cafile: Option<PathBuf>,

    /// SSL certification file used to secure etcd communication.
    #[arg(long)]
    pub etcd_certfile: Option<PathBuf>,

    /// SSL key file used to secure etcd communication.
    #[arg(long)]
    pub etcd_keyfile: Option<PathBuf>,

    /// The prefix to prepend to all resource paths in etcd.
    #[arg(long, default_value = "/registry")]
    pub etcd_prefix: String,

    /// Not an upstream flag: where the embedded store keeps its data when --etcd-servers is
    /// empty.
    #[arg(long, default_value = "/var/lib/kube-apiserver/store")]
    pub data_dir: PathBuf,

    /// A CIDR notation IPv4 range from which to assign service cluster IPs. Upstream has no
    /// default; this is kubeadm's.
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,

    /// A port range to reserve for services with NodePort visibility: `30000-32767`,
    /// `30000+2767` or a single port.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,

    /// The maximum number of non-mutating requests in flight at a given time (0: no limit).
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: usize,

    /// The maximum number of mutating requests in flight at a given time (0: no limit).
    #[arg(long, default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,

    /// How long a non-long-running request may take before the server times it out (Go
    /// duration such as `1m0s`).
    #[arg(long, default_value = "1m0s")]
    pub request_timeout: String,

    /// How often the store's history is compacted (Go duration; 0 disables).
    #[arg(long, default_value = "5m0s")]
    pub etcd_compaction_interval: String,

    /// Minimum number of seconds a watch may stay open; the server picks a random timeout
    /// between this and twice it to spread reconnects.
    #[arg(long, default_value_t = 1800)]
    pub min_request_timeout: u64,

    /// Ordered list of authorization plugins: AlwaysAllow, AlwaysDeny, Node, RBAC.
    #[arg(long, default_value = "Node,RBAC")]
    pub authorization_mode: String,

    /// Path to a client cert file for TLS to kubelets.
    #[arg(long)]
    pub kubelet_client_certificate: Option<PathBuf>,

    /// Path to a client key file for TLS to kubelets.
    #[arg(long)]
    pub kubelet_client_key: Option<PathBuf>,

    /// Path to a cert file for the certificate authority of kubelets' serving certificates
    /// (without it they are not verified).
    #[arg(long)]
    pub kubelet_certificate_authority: Option<PathBuf>,

    /// Files with PEM public keys used to verify ServiceAccount tokens (repeatable).
    #[arg(long, action = ArgAction::Append)]
    pub service_account_key_file: Vec<PathBuf>,

    /// Path to the private key used to sign ServiceAccount tokens.
    #[arg(long)]
    pub service_account_signing_key_file: Option<PathBuf>,

    /// Identifier of the ServiceAccount token issuer (repeatable; the first one issues).
    #[arg(long, action = ArgAction::Append)]
    pub service_account_issuer: Vec<String>,

    /// Admission plugins to enable in addition to the default ones.
    #[arg(long, value_delimiter = ',')]
    pub enable_admission_plugins: Vec<String>,

    /// Admission plugins to disable even if they are on by default.
    #[arg(long, value_delimiter = ',')]
    pub disable_admission_plugins: Vec<String>,

    /// If true, allow privileged containers.
    #[arg(long, default_value = "false", num_args = 0..=1, default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub allow_privileged: bool,

    /// Number for the log level verbosity.
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,

    /// The storage backend for persistence; only etcd3 exists.
    #[arg(long, default_value = "etcd3")]
    pub storage_backend: String,

    /// Accepted because kubeadm's manifest passes it; bootstrap tokens are not served yet.
    #[arg(long, default_value = "false", num_args = 0..=1, default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub enable_bootstrap_token_auth: bool,

    /// Accepted because kubeadm's manifest passes it; the front proxy is not served yet.
    #[arg(long)]
    pub proxy_client_cert_file: Option<PathBuf>,

    /// Accepted because kubeadm's manifest passes it; the front proxy is not served yet.
    #[arg(long)]
    pub proxy_client_key_file: Option<PathBuf>,

    /// Accepted because kubeadm's manifest passes it; request headers are not trusted yet.
    #[arg(long)]
    pub requestheader_client_ca_file: Option<PathBuf>,

    /// Accepted because kubeadm's manifest passes it.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,

    /// Accepted because kubeadm's manifest passes it.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_extra_headers_prefix: Vec<String>,

    /// Accepted because kubeadm's manifest passes it.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_group_headers: Vec<String>,

    /// Accepted because kubeadm's manifest passes it.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_username_headers: Vec<String>,

    /// Node address types tried in order to reach kubelets (pods/log, nodes/proxy).
    #[arg(long, value_delimiter = ',')]
    pub kubelet_preferred_address_types: Vec<String>,

    /// Serve requests without credentials as system:anonymous (authorization still applies;
    /// the default policy grants only the health and version endpoints).
    #[arg(long, default_value = "true", num_args = 0..=1, default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub anonymous_auth: bool,

    /// Audiences an API token must carry; defaults to the service-account issuers.
    #[arg(long, value_delimiter = ',')]
    pub api_audiences: Vec<String>,

    /// Upper bound for the lifetime of tokens from TokenRequest (Go duration; empty = none).
    #[arg(long, default_value = "")]
    pub service_account_max_token_expiration: String,

    /// Issue pod-bound tokens asked for with the kubelet's default lifetime for a year, with
    /// a warnafter claim, as upstream.
    #[arg(long, default_value = "true", num_args = 0..=1, default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub service_account_extend_token_expiration: bool,

    /// Overrides the jwks_uri of the OpenID discovery document.
    #[arg(long)]
    pub service_account_jwks_uri: Option<String>,

    /// Write audit events to this file (`-` = stdout); empty disables audit logging.
    #[arg(long)]
    pub audit_log_path: Option<String>,

    /// The audit Policy (audit.k8s.io/v1) deciding what is logged at which level.
    #[arg(long)]
    pub audit_policy_file: Option<PathBuf>,

    /// Rotate the audit log when it reaches this many megabytes (0 = never).
    #[arg(long, default_value_t = 0)]
    pub audit_log_maxsize: u64,

    /// Old audit log files to keep (0 = all).
    #[arg(long, default_value_t = 0)]
    pub audit_log_maxbackup: usize,

    /// Days to keep old audit log files (0 = forever).
    #[arg(long, default_value_t = 0)]
    pub audit_log_maxage: u64,

    /// Format of the audit log; only `json` is supported.
    #[arg(long, default_value = "json")]
    pub audit_log_format: String,

    /// EncryptionConfiguration (apiserver.config.k8s.io/v1) for data at rest.
    #[arg(long)]
    pub encryption_provider_config: Option<PathBuf>,

    /// tolerationSeconds DefaultTolerationSeconds gives pods for node.kubernetes.io/not-ready.
    #[arg(long, default_value_t = 300)]
    pub default_not_ready_toleration_seconds: i64,

    /// tolerationSeconds DefaultTolerationSeconds gives pods for node.kubernetes.io/unreachable.
    #[arg(long, default_value_t = 300)]
    pub default_unreachable_toleration_seconds: i64,
}

/// `--requestheader-*` as given.
#[derive(Debug, Clone, Default)]
pub struct RequestHeaderInfo {
    pub client_ca_file: Option<PathBuf>,
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_headers_prefix: Vec<String>,
}

/// A certificate file and the private key file that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKeyPair {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

pub use crate::authz::chain::AuthorizationMode;

/// The IPv4 range Service cluster IPs are taken from (--service-cluster-ip-range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceRange {
    /// The network address (host bits zero).
    pub network: Ipv4Addr,
    pub prefix_len: u8,
}

/// Upstream refuses ranges with more than 2^20 addresses because the allocator keeps a bitmap.
const MIN_SERVICE_PREFIX_LEN: u8 = 12;
/// A /31 or /32 has no address left once network and broadcast are set aside.
const MAX_SERVICE_PREFIX_LEN: u8 = 30;

impl ServiceRange {
    /// Parses `a.b.c.d/n`; host bits are cleared as Go's `ParseCIDR` does.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| "must be a CIDR such as 10.96.0.0/12".to_owned())?;
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let IpAddr::V4(ip) = ip else {
            return Err("only IPv4 service ranges are supported".to_owned());
        };
        let prefix_len: u8 = len
            .parse()
            .ok()
            .filter(|n| *n <= 32)
            .ok_or_else(|| format!("{len:?} is not a prefix length between 0 and 32"))?;
        if prefix_len < MIN_SERVICE_PREFIX_LEN {
            return Err(format!(
                "range is too large; for 32-bit addresses, the mask must be >= {MIN_SERVICE_PREFIX_LEN}"
            ));
        }
        if prefix_len > MAX_SERVICE_PREFIX_LEN {
            return Err(format!(
                "range is too small; the mask must be <= {MAX_SERVICE_PREFIX_LEN}"
            ));
        }
        let mask = u32::MAX << (32 - u32::from(prefix_len));
        Ok(Self {
            network: Ipv4Addr::from(u32::from(ip) & mask),
            prefix_len,
        })
    }

    /// How many addresses can be allocated: all but the network and broadcast addresses.
    pub fn size(&self) -> u32 {
        (1u32 << (32 - u32::from(self.prefix_len))) - 2
    }

    /// The `n`th allocatable address, counting from 0 at network + 1.
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        (n < self.size()).then(|| Ipv4Addr::from(u32::from(self.network) + 1 + n))
    }

    /// The first allocatable address, which upstream gives to the `kubernetes` Service.
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Whether `ip` is an allocatable address of this range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let offset = u32::from(ip).wrapping_sub(u32::from(self.network));
        offset >= 1 && offset <= self.size()
    }
}

impl fmt::Display for ServiceRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// The ports NodePort Services may use (--service-node-port-range), both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePortRange {
    pub min: u16,
    pub max: u16,
}

impl NodePortRange {
    /// Parses upstream's forms: `30000-32767`, `30000+2767` and a single port.
    pub fn parse(s: &str) -> Result<Self, String> {
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("{p:?} is not a port number"))
        };
        let (min, max) = if let Some((a, b)) = s.split_once('-') {
            (port(a)?, port(b)?)
        } else if let Some((a, b)) = s.split_once('+') {
            let base = port(a)?;
            let offset = port(b)?;
            let max = base
                .checked_add(offset)
                .ok_or_else(|| "range ends above port 65535".to_owned())?;
            (base, max)
        } else {
            let p = port(s)?;
            (p, p)
        };
        if max < min {
            return Err(format!("end port {max} is below start port {min}"));
        }
        Ok(Self { min, max })
    }

    /// How many ports the range holds.
    pub fn size(&self) -> u32 {
        u32::from(self.max) - u32::from(self.min) + 1
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.min..=self.max).contains(&port)
    }
}

impl fmt::Display for NodePortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

/// Validated settings the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind_address: SocketAddr,
    pub advertise_address: IpAddr,
    /// The serving certificate; `None` means a self-signed pair in `cert_dir`.
    pub serving_cert: Option<CertKeyPair>,
    pub cert_dir: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub token_auth_file: Option<PathBuf>,
    /// Empty means the embedded store under `data_dir`.
    pub etcd_servers: Vec<String>,
    pub etcd_ca_file: Option<PathBuf>,
    pub etcd_client_cert: Option<CertKeyPair>,
    pub etcd_prefix: String,
    pub data_dir: PathBuf,
    pub service_cluster_ip_range: ServiceRange,
    pub service_node_port_range: NodePortRange,
    /// 0 means no limit.
    pub max_requests_inflight: usize,
    /// 0 means no limit.
    pub max_mutating_requests_inflight: usize,
    pub request_timeout: Duration,
    pub min_request_timeout: Duration,
    pub etcd_compaction_interval: Duration,
    pub authorization_modes: Vec<AuthorizationMode>,
    pub kubelet_client_cert: Option<CertKeyPair>,
    /// Node address types tried in order to reach kubelets (empty: kubelet::DEFAULT_ADDRESS_TYPES).
    pub kubelet_preferred_address_types: Vec<String>,
    /// CA bundle for kubelets' serving certificates (none: not verified, as upstream).
    pub kubelet_certificate_authority: Option<PathBuf>,
    pub service_account_key_files: Vec<PathBuf>,
    pub service_account_signing_key_file: Option<PathBuf>,
    pub service_account_issuers: Vec<String>,
    pub enable_admission_plugins: Vec<String>,
    pub disable_admission_plugins: Vec<String>,
    pub allow_privileged: bool,
    pub verbosity: u8,
    pub anonymous_auth: bool,
    pub enable_bootstrap_token_auth: bool,
    pub api_audiences: Vec<String>,
    pub service_account_max_token_expiration: Option<Duration>,
    pub service_account_extend_token_expiration: bool,
    pub service_account_jwks_uri: Option<String>,
    pub audit: Option<AuditConfig>,
    pub encryption_provider_config: Option<PathBuf>,
    pub default_not_ready_toleration_seconds: i64,
    pub default_unreachable_toleration_seconds: i64,
    /// The front proxy's CA and header names (`--requestheader-*`), published with the client
    /// CA in the extension-apiserver-authentication ConfigMap.
    pub requestheader: RequestHeaderInfo,
}

/// Where and what to audit (--audit-*).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub log_path: String,
    pub policy_file: Option<PathBuf>,
    pub max_size_mb: u64,
    pub max_backups: usize,
    pub max_age_days: u64,
}

impl Config {
    /// A config for in-process tests: `127.0.0.1:0`, embedded store in `data_dir`, self-signed
    /// certificate in `data_dir/certs`, upstream defaults otherwise.
    pub fn for_tests(data_dir: PathBuf) -> Config {
        Config {
            bind_address: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            advertise_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            serving_cert: None,
            cert_dir: data_dir.join("certs"),
            client_ca_file: None,
            token_auth_file: None,
            etcd_servers: Vec::new(),
            etcd_ca_file: None,
            etcd_client_cert: None,
            etcd_prefix: "/registry".to_owned(),
            data_dir,
            service_cluster_ip_range: ServiceRange {
                network: Ipv4Addr::new(10, 96, 0, 0),
                prefix_len: 12,
            },
            service_node_port_range: NodePortRange {
                min: 30000,
                max: 32767,
            },
            max_requests_inflight: 400,
            max_mutating_requests_inflight: 200,
            request_timeout: Duration::from_secs(60),
            min_request_timeout: Duration::from_secs(1800),
            etcd_compaction_interval: Duration::from_secs(300),
            authorization_modes: vec![AuthorizationMode::Node, AuthorizationMode::Rbac],
            kubelet_client_cert: None,
            kubelet_preferred_address_types: Vec::new(),
            kubelet_certificate_authority: None,
            service_account_key_files: Vec::new(),
            service_account_signing_key_file: None,
            service_account_issuers: Vec::new(),
            enable_admission_plugins: Vec::new(),
            disable_admission_plugins: Vec::new(),
            allow_privileged: false,
            verbosity: 0,
            anonymous_auth: true,
            enable_bootstrap_token_auth: false,
            api_audiences: Vec::new(),
            service_account_max_token_expiration: None,
            service_account_extend_token_expiration: true,
            service_account_jwks_uri: None,
            audit: None,
            encryption_provider_config: None,
            default_not_ready_toleration_seconds: 300,
            default_unreachable_toleration_seconds: 300,
            requestheader: RequestHeaderInfo::default(),
        }
    }
}

fn pair(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    cert_flag: &'static str,
    key_flag: &'static str,
) -> Result<Option<CertKeyPair>, OptionsError> {
    match (cert, key) {
        (Some(cert_file), Some(key_file)) => Ok(Some(CertKeyPair {
            cert_file,
            key_file,
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(OptionsError::MissingPair {
            given: cert_flag,
            missing: key_flag,
        }),
        (None, Some(_)) => Err(OptionsError::MissingPair {
            given: key_flag,
            missing: cert_flag,
        }),
    }
}

fn check_etcd_servers(servers: &[String]) -> Result<(), OptionsError> {
    for server in servers {
        let rest = server
            .strip_prefix("https://")
            .or_else(|| server.strip_prefix("http://"));
        if rest.is_none_or(str::is_empty) {
            return Err(invalid(
                "etcd-servers",
                server,
                "must be a URL such as https://127.0.0.1:2379",
            ));
        }
    }
    Ok(())
}

impl Options {
    /// Checks every flag and resolves defaults that depend on the host.
    pub fn into_config(self) -> Result<Config, OptionsError> {
        let service_cluster_ip_range = ServiceRange::parse(&self.service_cluster_ip_range)
            .map_err(|e| {
                invalid(
                    "service-cluster-ip-range",
                    &self.service_cluster_ip_range,
                    e,
                )
            })?;
        let service_node_port_range = NodePortRange::parse(&self.service_node_port_range)
            .map_err(|e| invalid("service-node-port-range", &self.service_node_port_range, e))?;
        let request_timeout = parse_go_duration(&self.request_timeout)
            .map_err(|e| invalid("request-timeout", &self.request_timeout, e))?;
        let etcd_compaction_interval =
            parse_go_duration(&self.etcd_compaction_interval).map_err(|e| {
                invalid(
                    "etcd-compaction-interval",
                    &self.etcd_compaction_interval,
                    e,
                )
            })?;
        let authorization_modes = crate::authz::chain::parse_modes(&self.authorization_mode)
            .map_err(|e| {
                invalid(
                    "authorization-mode",
                    &self.authorization_mode,
                    e.to_string(),
                )
            })?;
        if self.storage_backend != "etcd3" {
            return Err(invalid(
                "storage-backend",
                &self.storage_backend,
                "only etcd3 is supported",
            ));
        }
        let etcd_servers: Vec<String> = self
            .etcd_servers
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        check_etcd_servers(&etcd_servers)?;
        if self.etcd_prefix.is_empty() {
            return Err(invalid("etcd-prefix", "", "must not be empty"));
        }

        let serving_cert = pair(
            self.tls_cert_file,
            self.tls_private_key_file,
            "tls-cert-file",
            "tls-private-key-file",
        )?;
        let etcd_client_cert = pair(
            self.etcd_certfile,
            self.etcd_keyfile,
            "etcd-certfile",
            "etcd-keyfile",
        )?;
        let kubelet_client_cert = pair(
            self.kubelet_client_certificate,
            self.kubelet_client_key,
            "kubelet-client-certificate",
            "kubelet-client-key",
        )?;

        let service_account_max_token_expiration =
            match self.service_account_max_token_expiration.trim() {
                "" => None,
                d => Some(
                    parse_go_duration(d)
                        .map_err(|e| invalid("service-account-max-token-expiration", d, e))?,
                ),
            };
        if self.audit_log_format != "json" {
            return Err(invalid(
                "audit-log-format",
                &self.audit_log_format,
                "only json is supported",
            ));
        }
        let audit = match self.audit_log_path.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(path) => Some(AuditConfig {
                log_path: path.to_owned(),
                policy_file: self.audit_policy_file.clone(),
                max_size_mb: self.audit_log_maxsize,
                max_backups: self.audit_log_maxbackup,
                max_age_days: self.audit_log_maxage,
            }),
        };

        let advertise_address = match self.advertise_address {
            Some(ip) if !ip.is_unspecified() => ip,
            _ if !self.bind_address.is_unspecified() => self.bind_address,
            _ => IpAddr::V4(host_ipv4().unwrap_or(Ipv4Addr::LOCALHOST)),
        };

        Ok(Config {
            bind_address: SocketAddr::new(self.bind_address, self.secure_port),
            advertise_address,
            serving_cert,
            cert_dir: self.cert_dir,
            client_ca_file: self.client_ca_file,
            token_auth_file: self.token_auth_file,
            etcd_servers,
            etcd_ca_file: self.etcd_cafile,
            etcd_client_cert,
            etcd_prefix: self.etcd_prefix,
            data_dir: self.data_dir,
            service_cluster_ip_range,
            service_node_port_range,
            max_requests_inflight: self.max_requests_inflight,
            max_mutating_requests_inflight: self.max_mutating_requests_inflight,
            request_timeout,
            min_request_timeout: Duration::from_secs(self.min_request_timeout),
            etcd_compaction_interval,
            authorization_modes,
            kubelet_client_cert,
            kubelet_preferred_address_types: self.kubelet_preferred_address_types.clone(),
            kubelet_certificate_authority: self.kubelet_certificate_authority.clone(),
            service_account_key_files: self.service_account_key_file,
            service_account_signing_key_file: self.service_account_signing_key_file,
            service_account_issuers: self.service_account_issuer,
            enable_admission_plugins: self.enable_admission_plugins,
            disable_admission_plugins: self.disable_admission_plugins,
            allow_privileged: self.allow_privileged,
            verbosity: self.verbosity,
            anonymous_auth: self.anonymous_auth,
            enable_bootstrap_token_auth: self.enable_bootstrap_token_auth,
            api_audiences: self
                .api_audiences
                .into_iter()
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect(),
            service_account_max_token_expiration,
            service_account_extend_token_expiration: self.service_account_extend_token_expiration,
            service_account_jwks_uri: self.service_account_jwks_uri,
            audit,
            encryption_provider_config: self.encryption_provider_config,
            default_not_ready_toleration_seconds: self.default_not_ready_toleration_seconds,
            default_unreachable_toleration_seconds: self.default_unreachable_toleration_seconds,
            requestheader: RequestHeaderInfo {
                client_ca_file: self.requestheader_client_ca_file,
                allowed_names: self.requestheader_allowed_names,
                username_headers: self.requestheader_username_headers,
                group_headers: self.requestheader_group_headers,
                extra_headers_prefix: self.requestheader_extra_headers_prefix,
            },
        })
    }
}

/// The host's first non-loopback IPv4: the source address of the default route, else the
/// first local address the kernel lists.
fn host_ipv4() -> Option<Ipv4Addr> {
    usable(default_route_source()).or_else(|| {
        let trie = std::fs::read_to_string("/proc/net/fib_trie").ok()?;
        local_ipv4s_from_fib_trie(&trie).into_iter().next()
    })
}

fn usable(ip: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
    ip.filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

/// Connecting a UDP socket sends nothing; it only asks the kernel which source address the
/// default route would use, which is how upstream picks its host interface too.
fn default_route_source() -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    match socket.local_addr().ok()?.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    }
}

/// Local (`/32 host LOCAL`) non-loopback addresses from /proc/net/fib_trie, in kernel order.
fn local_ipv4s_from_fib_trie(trie: &str) -> Vec<Ipv4Addr> {
    let mut found = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in trie.lines() {
        let line = line.trim_start_matches([' ', '|', '+', '-']).trim();
        if line.contains("host LOCAL") {
            if let Some(ip) = usable(last) {
                if !found.contains(&ip) {
                    found.push(ip);
                }
            }
        } else if let Ok(ip) = line.parse::<Ipv4Addr>() {
            last = Some(ip);
        }
    }
    found
}

/// Parses a boolean as Go's `strconv.ParseBool` does, so `--allow-privileged=true` works.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid boolean {s:?}")),
    }
}

pub use component_base::duration::parse_go_duration;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Options {
        let mut argv = vec!["kube-apiserver"];
        argv.extend_from_slice(args);
        Options::try_parse_from(argv).expect("flags parse")
    }

    #[test]
    fn defaults_match_upstream() {
        let config = parse(&["--bind-address=127.0.0.1"])
            .into_config()
            .expect("valid");
        assert_eq!(config.bind_address, "127.0.0.1:6443".parse().expect("addr"));
        assert_eq!(config.advertise_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(config.cert_dir, PathBuf::from("/var/run/kubernetes"));
        assert_eq!(config.etcd_prefix, "/registry");
        assert_eq!(
            config.data_dir,
            PathBuf::from("/var/lib/kube-apiserver/store")
        );
        assert_eq!(config.service_cluster_ip_range.to_string(), "10.96.0.0/12");
        assert_eq!(
            config.service_cluster_ip_range.first_ip(),
            Ipv4Addr::new(10, 96, 0, 1)
        );
        assert_eq!(config.service_node_port_range.to_string(), "30000-32767");
        assert_eq!(config.max_requests_inflight, 400);
        assert_eq!(config.max_mutating_requests_inflight, 200);
        assert_eq!(config.request_timeout, Duration::from_secs(60));
        assert_eq!(config.min_request_timeout, Duration::from_secs(1800));
        assert_eq!(
            config.authorization_modes,
            vec![AuthorizationMode::Node, AuthorizationMode::Rbac]
        );
        assert!(config.serving_cert.is_none());
        assert!(config.etcd_servers.is_empty());
        assert!(!config.allow_privileged);
    }

    #[test]
    fn kubeadm_style_flags_are_accepted() {
        let config = parse(&[
            "--advertise-address=192.168.1.10",
            "--allow-privileged=true",
            "--authorization-mode=Node,RBAC",
            "--client-ca-file=/etc/kubernetes/pki/ca.crt",
            "--enable-admission-plugins=NodeRestriction",
            "--enable-bootstrap-token-auth=true",
            "--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt",
            "--etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt",
            "--etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key",
            "--etcd-servers=https://127.0.0.1:2379,https://10.0.0.2:2379",
            "--kubelet-client-certificate=/etc/kubernetes/pki/apiserver-kubelet-client.crt",
            "--kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key",
            "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
            "--proxy-client-cert-file=/etc/kubernetes/pki/front-proxy-client.crt",
            "--proxy-client-key-file=/etc/kubernetes/pki/front-proxy-client.key",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-username-headers=X-Remote-User",
            "--secure-port=6443",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file=/etc/kubernetes/pki/sa.pub",
            "--service-account-signing-key-file=/etc/kubernetes/pki/sa.key",
            "--service-cluster-ip-range=10.96.0.0/12",
            "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
            "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key",
            "--v=2",
        ])
        .into_config()
        .expect("valid");
        assert_eq!(
            config.advertise_address,
            "192.168.1.10".parse::<IpAddr>().expect("ip")
        );
        assert!(config.allow_privileged);
        assert_eq!(config.etcd_servers.len(), 2);
        assert_eq!(
            config.etcd_client_cert.map(|p| p.key_file),
            Some(PathBuf::from(
                "/etc/kubernetes/pki/apiserver-etcd-client.key"
            ))
        );
        assert_eq!(
            config.serving_cert.map(|p| p.cert_file),
            Some(PathBuf::from("/etc/kubernetes/pki/apiserver.crt"))
        );
        assert_eq!(config.service_account_key_files.len(), 1);
        assert_eq!(config.enable_admission_plugins, vec!["NodeRestriction"]);
        assert_eq!(config.verbosity, 2);
    }

    #[test]
    fn a_bare_bool_flag_means_true() {
        assert!(parse(&["--allow-privileged"]).allow_privileged);
        assert!(!parse(&["--allow-privileged=false"]).allow_privileged);
    }

    #[test]
    fn a_specific_bind_address_is_advertised() {
        let config = parse(&["--bind-address=10.1.2.3"])
            .into_config()
            .expect("valid");
        assert_eq!(
            config.advertise_address,
            "10.1.2.3".parse::<IpAddr>().expect("ip")
        );
    }

    #[test]
    fn bad_values_are_reported_with_the_flag_name() {
        let cases: &[(&str, &[&str], &str)] = &[
            (
                "ipv6 range",
                &["--service-cluster-ip-range=fd00::/108"],
                "service-cluster-ip-range",
            ),
            (
                "huge range",
                &["--service-cluster-ip-range=10.0.0.0/8"],
                "service-cluster-ip-range",
            ),
            (
                "reversed ports",
                &["--service-node-port-range=32767-30000"],
                "service-node-port-range",
            ),
            ("no unit", &["--request-timeout=60"], "request-timeout"),
            (
                "unknown mode",
                &["--authorization-mode=ABAC"],
                "authorization-mode",
            ),
            (
                "twice",
                &["--authorization-mode=RBAC,RBAC"],
                "authorization-mode",
            ),
            ("backend", &["--storage-backend=etcd2"], "storage-backend"),
            (
                "etcd url",
                &["--etcd-servers=127.0.0.1:2379"],
                "etcd-servers",
            ),
        ];
        for (name, args, flag) in cases {
            let err = parse(args).into_config().expect_err(name);
            assert!(
                matches!(&err, OptionsError::InvalidFlag { flag: f, .. } if f == flag),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn a_cert_without_its_key_is_refused() {
        let err = parse(&["--tls-cert-file=/a.crt"])
            .into_config()
            .expect_err("pair needed");
        assert_eq!(
            err.to_string(),
            "--tls-cert-file requires --tls-private-key-file"
        );
    }

    #[test]
    fn service_range_hands_out_addresses_after_the_network_address() {
        let range = ServiceRange::parse("10.96.0.1/12").expect("valid");
        assert_eq!(range.network, Ipv4Addr::new(10, 96, 0, 0));
        assert_eq!(range.size(), (1 << 20) - 2);
        assert_eq!(range.nth(0), Some(Ipv4Addr::new(10, 96, 0, 1)));
        assert_eq!(range.nth(255), Some(Ipv4Addr::new(10, 96, 1, 0)));
        assert_eq!(
            range.nth(range.size() - 1),
            Some(Ipv4Addr::new(10, 111, 255, 254))
        );
        assert_eq!(range.nth(range.size()), None);
        assert!(range.contains(Ipv4Addr::new(10, 100, 0, 1)));
        assert!(!range.contains(Ipv4Addr::new(10, 96, 0, 0)));
        assert!(!range.contains(Ipv4Addr::new(10, 111, 255, 255)));
    }

    #[test]
    fn node_port_range_accepts_upstream_forms() {
        let cases = [
            ("30000-32767", 30000, 32767),
            ("30000+2767", 30000, 32767),
            ("31000", 31000, 31000),
        ];
        for (text, min, max) in cases {
            assert_eq!(
                NodePortRange::parse(text),
                Ok(NodePortRange { min, max }),
                "{text}"
            );
        }
        assert!(NodePortRange::parse("65000+1000").is_err());
        assert!(NodePortRange::parse("a-b").is_err());
    }

    #[test]
    fn go_durations_parse_like_time_parse_duration() {
        let cases = [
            ("1m0s", Duration::from_secs(60)),
            ("30s", Duration::from_secs(30)),
            ("1h", Duration::from_secs(3600)),
            ("2h45m", Duration::from_secs(9900)),
            ("1.5h", Duration::from_secs(5400)),
            ("300ms", Duration::from_millis(300)),
            ("1us", Duration::from_micros(1)),
            ("1µs", Duration::from_micros(1)),
            (".5s", Duration::from_millis(500)),
            ("0", Duration::ZERO),
            ("1.0000000009s", Duration::from_secs(1)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_go_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "1", "s", "1x", "-1s", "1..5s", ".s", "3000000h"] {
            assert!(parse_go_duration(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn fib_trie_local_addresses_skip_loopback() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.0.2.15\n        /32 host LOCAL\n\
                    Local:\n     |-- 127.0.0.1\n        /32 host LOCAL\n     |-- 10.0.2.15\n        \
                    /32 host LOCAL\n     |-- 172.17.0.1\n        /32 host LOCAL\n";
        assert_eq!(
            local_ipv4s_from_fib_trie(trie),
            vec![Ipv4Addr::new(10, 0, 2, 15), Ipv4Addr::new(172, 17, 0, 1)]
        );
    }

    #[test]
    fn test_config_binds_an_ephemeral_loopback_port() {
        let config = Config::for_tests(PathBuf::from("/tmp/x"));
        assert_eq!(config.bind_address.port(), 0);
        assert!(config.bind_address.ip().is_loopback());
        assert_eq!(config.cert_dir, PathBuf::from("/tmp/x/certs"));
    }
}
