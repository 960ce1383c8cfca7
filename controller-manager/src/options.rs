//! Command-line flags with upstream names and defaults, validated into a [`Config`].

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::registry;

/// What was wrong with the flags.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("invalid duration {value:?} for --{flag} (want e.g. 15s, 1m30s, 500ms)")]
    Duration { flag: &'static str, value: String },
    #[error("{0:?} is not a known controller name (see --help for --controllers)")]
    UnknownController(String),
    #[error("--leader-elect-resource-lock={0}: only \"leases\" is supported")]
    ResourceLock(String),
    #[error("--leader-elect-renew-deadline must be shorter than --leader-elect-lease-duration")]
    RenewDeadline,
    #[error("invalid cidr {value:?} for --{flag}")]
    Cidr { flag: &'static str, value: String },
}

/// kube-controller-manager's flags.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "kube-controller-manager",
    version,
    about = "The Kubernetes controller manager runs the core control loops"
)]
pub struct Options {
    /// Path to a kubeconfig file with authorization and master location information.
    #[arg(long, default_value = "")]
    pub kubeconfig: String,
    /// The URL of the Kubernetes API server (overrides any value in the kubeconfig).
    #[arg(long, default_value = "")]
    pub master: String,
    /// kubeconfig for delegated authentication (TokenReview) on the secure port; empty: --kubeconfig.
    #[arg(long, default_value = "")]
    pub authentication_kubeconfig: String,
    /// kubeconfig for delegated authorization (SubjectAccessReview); empty: --kubeconfig.
    #[arg(long, default_value = "")]
    pub authorization_kubeconfig: String,
    /// Paths served without authentication or authorization.
    #[arg(long, value_delimiter = ',', default_value = "/healthz,/readyz,/livez")]
    pub authorization_always_allow_paths: Vec<String>,
    /// Client-certificate authentication of the secure port.
    #[command(flatten)]
    pub cert_auth: component_base::delegated::CertFlags,
    /// The IP address on which to listen for the --secure-port port.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// The port on which to serve HTTPS with authentication and authorization; 0 picks a free one.
    #[arg(long, default_value_t = 10257)]
    pub secure_port: u16,
    /// File containing the default x509 serving certificate.
    #[arg(long, default_value = "")]
    pub tls_cert_file: String,
    /// File containing the default x509 private key matching --tls-cert-file.
    #[arg(long, default_value = "")]
    pub tls_private_key_file: String,
    /// Directory for the self-signed serving certificate when --tls-cert-file is not set.
    #[arg(long, default_value = "")]
    pub cert_dir: String,
    /// Start a leader election client and gain leadership before executing the main loop.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// How long non-leader candidates wait after observing a renewal before taking over.
    #[arg(long, default_value = "15s")]
    pub leader_elect_lease_duration: String,
    /// How long the acting leader retries refreshing leadership before giving up.
    #[arg(long, default_value = "10s")]
    pub leader_elect_renew_deadline: String,
    /// How long clients wait between attempts to acquire or renew leadership.
    #[arg(long, default_value = "2s")]
    pub leader_elect_retry_period: String,
    /// The type of resource object used for locking; only `leases`.
    #[arg(long, default_value = "leases")]
    pub leader_elect_resource_lock: String,
    /// The name of the resource object used for locking.
    #[arg(long, default_value = "kube-controller-manager")]
    pub leader_elect_resource_name: String,
    /// The namespace of the resource object used for locking.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    /// Controllers to enable: `*` enables the on-by-default ones, `foo` enables foo, `-foo`
    /// disables foo.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    /// Deployments allowed to sync concurrently.
    #[arg(long, default_value_t = 5)]
    pub concurrent_deployment_syncs: u16,
    /// ReplicaSets allowed to sync concurrently.
    #[arg(long, default_value_t = 5)]
    pub concurrent_replicaset_syncs: u16,
    /// Service endpoints syncing operations done concurrently.
    #[arg(long, default_value_t = 5)]
    pub concurrent_endpoint_syncs: u16,
    /// Service endpointslice syncing operations done concurrently.
    #[arg(long, default_value_t = 5)]
    pub concurrent_service_endpoint_syncs: u16,
    /// Namespace objects allowed to sync concurrently.
    #[arg(long, default_value_t = 10)]
    pub concurrent_namespace_syncs: u16,
    /// ServiceAccount objects allowed to sync concurrently.
    #[arg(long, default_value_t = 5)]
    pub concurrent_serviceaccount_token_syncs: u16,
    /// Garbage collector workers allowed to sync concurrently.
    #[arg(long, default_value_t = 20)]
    pub concurrent_gc_syncs: u16,
    /// Job objects allowed to sync concurrently.
    #[arg(long, default_value_t = 5)]
    pub concurrent_job_syncs: u16,
    /// CronJob objects allowed to sync concurrently.
    #[arg(long, default_value_t = 5)]
    pub concurrent_cron_job_syncs: u16,
    /// DaemonSet objects allowed to sync concurrently.
    #[arg(long, default_value_t = 2)]
    pub concurrent_daemonset_syncs: u16,
    /// StatefulSet objects allowed to sync concurrently.
    #[arg(long, default_value_t = 5)]
    pub concurrent_statefulset_syncs: u16,
    /// ResourceQuota objects allowed to sync concurrently.
    #[arg(long, default_value_t = 5)]
    pub concurrent_resource_quota_syncs: u16,
    /// The period for syncing quota usage status in the system.
    #[arg(long, default_value = "5m")]
    pub resource_quota_sync_period: String,
    /// The period for syncing persistent volumes and persistent volume claims.
    #[arg(long, default_value = "15s")]
    pub pvclaimbinder_sync_period: String,
    /// ttl-after-finished workers allowed to sync concurrently.
    #[arg(long, default_value_t = 5)]
    pub concurrent_ttl_after_finished_syncs: u16,
    /// Number of terminated pods that can exist before the pod garbage collector starts deleting
    /// them; 0 disables that deletion.
    #[arg(long, default_value_t = 12500)]
    pub terminated_pod_gc_threshold: i32,
    /// Whether the garbage collector runs.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_garbage_collector: bool,
    /// CIDR range for pods in the cluster.
    #[arg(long, default_value = "")]
    pub cluster_cidr: String,
    /// Whether pod CIDRs are allocated and set on nodes.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allocate_node_cidrs: bool,
    /// Mask size for node CIDRs in a single-stack cluster (0: 24 for IPv4, 64 for IPv6).
    #[arg(long, default_value_t = 0)]
    pub node_cidr_mask_size: u8,
    /// Mask size for IPv4 node CIDRs in a dual-stack cluster (0: 24).
    #[arg(long, default_value_t = 0)]
    pub node_cidr_mask_size_ipv4: u8,
    /// Mask size for IPv6 node CIDRs in a dual-stack cluster (0: 64).
    #[arg(long, default_value_t = 0)]
    pub node_cidr_mask_size_ipv6: u8,
    /// CIDR range for Services in the cluster.
    #[arg(long, default_value = "")]
    pub service_cluster_ip_range: String,
    /// How long a node may stay unresponsive before it is marked unhealthy (upstream v1.32+: 50s).
    #[arg(long, default_value = "50s")]
    pub node_monitor_grace_period: String,
    /// How long a starting node may stay unresponsive before it is marked unhealthy.
    #[arg(long, default_value = "1m0s")]
    pub node_startup_grace_period: String,
    /// Nodes per second tainted for eviction when their zone is healthy.
    #[arg(long, default_value_t = 0.1)]
    pub node_eviction_rate: f32,
    /// Nodes per second tainted for eviction when their zone is unhealthy (0 in zones of at most
    /// --large-cluster-size-threshold nodes).
    #[arg(long, default_value_t = 0.01)]
    pub secondary_node_eviction_rate: f32,
    /// Fraction of a zone's nodes (at least 3) that must be not Ready for it to be unhealthy.
    #[arg(long, default_value_t = 0.55)]
    pub unhealthy_zone_threshold: f32,
    /// Zones above this many nodes use --secondary-node-eviction-rate when unhealthy.
    #[arg(long, default_value_t = 50)]
    pub large_cluster_size_threshold: i32,
    /// How often node status is checked.
    #[arg(long, default_value = "5s")]
    pub node_monitor_period: String,
    /// PEM-encoded private key used to sign service account tokens.
    #[arg(long, default_value = "")]
    pub service_account_private_key_file: String,
    /// Root certificate authority published as `kube-root-ca.crt` in every namespace.
    #[arg(long, default_value = "")]
    pub root_ca_file: String,
    /// PEM x509 CA certificate used to issue cluster-scoped certificates.
    #[arg(long, default_value = "")]
    pub cluster_signing_cert_file: String,
    /// PEM private key of --cluster-signing-cert-file.
    #[arg(long, default_value = "")]
    pub cluster_signing_key_file: String,
    /// Maximum validity of signed certificates.
    #[arg(long, default_value = "8760h")]
    pub cluster_signing_duration: String,
    /// Use an individual service account credential for each controller.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub use_service_account_credentials: bool,
    /// QPS to use while talking with the apiserver (a token bucket per client, as client-go).
    #[arg(long, default_value_t = 20.0)]
    pub kube_api_qps: f32,
    /// Burst to use while talking with the apiserver.
    #[arg(long, default_value_t = 30)]
    pub kube_api_burst: u32,
    /// Content type of requests sent to the apiserver (accepted; JSON is used).
    #[arg(long, default_value = "application/vnd.kubernetes.protobuf")]
    pub kube_api_content_type: String,
    /// The cluster name (accepted).
    #[arg(long, default_value = "kubernetes")]
    pub cluster_name: String,
    /// Log verbosity (accepted; use RUST_LOG).
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,
}

/// Validated settings for [`crate::run`].
#[derive(Debug, Clone)]
pub struct Config {
    /// kubeconfig path; empty means in-cluster or `$KUBECONFIG`.
    pub kubeconfig: Option<PathBuf>,
    /// Delegated authentication's kubeconfig (`None`: the main client).
    pub authentication_kubeconfig: Option<PathBuf>,
    /// Delegated authorization's kubeconfig (`None`: the main client).
    pub authorization_kubeconfig: Option<PathBuf>,
    /// Paths the secure port serves to anyone.
    pub always_allow_paths: Vec<String>,
    /// Client-certificate authentication of the secure port.
    pub cert_auth: component_base::delegated::CertFlags,
    /// apiserver URL override.
    pub master: Option<String>,
    /// HTTPS listen address.
    pub bind_address: IpAddr,
    /// HTTPS port (0 = any).
    pub secure_port: u16,
    /// Serving certificate and key; self-signed when absent.
    pub tls_cert_and_key: Option<(PathBuf, PathBuf)>,
    /// Where a generated self-signed certificate is written.
    pub cert_dir: Option<PathBuf>,
    /// Leader election, if enabled.
    pub leader_election: Option<LeaderElection>,
    /// The controllers to start, by full upstream name.
    pub controllers: BTreeSet<&'static str>,
    /// Worker counts.
    pub concurrency: Concurrency,
    /// Pod CIDR of the cluster.
    pub cluster_cidr: Option<String>,
    /// Whether node-ipam assigns podCIDRs.
    pub allocate_node_cidrs: bool,
    /// --node-cidr-mask-size (0 when unset).
    pub node_cidr_mask_size: u8,
    /// --node-cidr-mask-size-ipv4 (0 when unset).
    pub node_cidr_mask_size_ipv4: u8,
    /// --node-cidr-mask-size-ipv6 (0 when unset).
    pub node_cidr_mask_size_ipv6: u8,
    /// Service CIDR.
    pub service_cluster_ip_range: Option<String>,
    /// Node monitor grace period.
    pub node_monitor_grace_period: Duration,
    /// Node monitor period.
    pub node_monitor_period: Duration,
    /// Grace period of nodes that never posted status.
    pub node_startup_grace_period: Duration,
    /// Eviction (NoExecute tainting) rate of a healthy zone, nodes per second.
    pub node_eviction_rate: f32,
    /// Eviction rate of a partially disrupted large zone.
    pub secondary_node_eviction_rate: f32,
    /// Not-ready fraction that makes a zone partially disrupted.
    pub unhealthy_zone_threshold: f32,
    /// Zone size above which the secondary rate applies.
    pub large_cluster_size_threshold: i32,
    /// Service-account signing key.
    pub service_account_private_key_file: Option<PathBuf>,
    /// CA bundle published to every namespace.
    pub root_ca_file: Option<PathBuf>,
    /// Cluster signing CA certificate and key.
    pub cluster_signing: Option<(PathBuf, PathBuf)>,
    /// Whether each controller uses its own service-account token.
    pub use_service_account_credentials: bool,
    /// Client QPS and burst (recorded; not enforced by kube-rs).
    pub kube_api_qps: f32,
    /// Client burst.
    pub kube_api_burst: u32,
    /// Full recalculation period of every ResourceQuota's usage.
    pub resource_quota_sync_period: Duration,
    /// Resync period of the persistentvolume-binder's claims and volumes.
    pub pvclaimbinder_sync_period: Duration,
    /// Longest validity of certificates the csrsigning controller issues.
    pub cluster_signing_duration: Duration,
    /// Terminated pods kept before podgc deletes the oldest (0 = never).
    pub terminated_pod_gc_threshold: i32,
}

/// Leader-election settings.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    /// Lease namespace.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// Election timings.
    pub timings: component_base::leaderelection::Timings,
}

/// Worker counts per controller.
#[derive(Debug, Clone, Copy)]
pub struct Concurrency {
    /// deployment workers.
    pub deployment: u16,
    /// replicaset workers.
    pub replicaset: u16,
    /// endpoints workers.
    pub endpoints: u16,
    /// endpointslice workers.
    pub endpointslice: u16,
    /// namespace workers.
    pub namespace: u16,
    /// serviceaccount workers.
    pub serviceaccount: u16,
    /// garbage collector workers.
    pub gc: u16,
    /// resourcequota workers.
    pub resource_quota: u16,
    /// job workers.
    pub job: u16,
    /// cronjob workers.
    pub cronjob: u16,
    /// ttl-after-finished workers.
    pub ttl_after_finished: u16,
    /// daemonset workers.
    pub daemonset: u16,
    /// statefulset workers.
    pub statefulset: u16,
}

impl Default for Concurrency {
    fn default() -> Self {
        Self {
            deployment: 5,
            replicaset: 5,
            endpoints: 5,
            endpointslice: 5,
            namespace: 10,
            serviceaccount: 5,
            gc: 20,
            resource_quota: 5,
            job: 5,
            cronjob: 5,
            ttl_after_finished: 5,
            daemonset: 2,
            statefulset: 5,
        }
    }
}

/// Parses a Go duration flag (`15s`, `1m30s`, `500ms`, `0`) into `flag`'s error.
pub fn parse_duration(flag: &'static str, value: &str) -> Result<Duration, OptionsError> {
    component_base::duration::parse_go_duration(value.trim()).map_err(|_| OptionsError::Duration {
        flag,
        value: value.to_owned(),
    })
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn check_cidrs(flag: &'static str, value: &str) -> Result<(), OptionsError> {
    for cidr in value.split(',').filter(|c| !c.is_empty()) {
        let ok = cidr
            .split_once('/')
            .is_some_and(|(ip, bits)| ip.parse::<IpAddr>().is_ok() && bits.parse::<u8>().is_ok());
        if !ok {
            return Err(OptionsError::Cidr {
                flag,
                value: cidr.to_owned(),
            });
        }
    }
    Ok(())
}

impl Options {
    /// Validates the flags into a [`Config`].
    pub fn into_config(self) -> Result<Config, OptionsError> {
        let lease = parse_duration(
            "leader-elect-lease-duration",
            &self.leader_elect_lease_duration,
        )?;
        let renew = parse_duration(
            "leader-elect-renew-deadline",
            &self.leader_elect_renew_deadline,
        )?;
        let retry = parse_duration("leader-elect-retry-period", &self.leader_elect_retry_period)?;
        if self.leader_elect_resource_lock != "leases" {
            return Err(OptionsError::ResourceLock(self.leader_elect_resource_lock));
        }
        if self.leader_elect && renew >= lease {
            return Err(OptionsError::RenewDeadline);
        }
        check_cidrs("cluster-cidr", &self.cluster_cidr)?;
        check_cidrs("service-cluster-ip-range", &self.service_cluster_ip_range)?;
        let mut controllers = registry::select(&self.controllers)?;
        if !self.enable_garbage_collector {
            controllers.remove(registry::GARBAGE_COLLECTOR);
        }
        let path = |s: &str| non_empty(s).map(PathBuf::from);
        Ok(Config {
            authentication_kubeconfig: path(&self.authentication_kubeconfig),
            authorization_kubeconfig: path(&self.authorization_kubeconfig),
            always_allow_paths: self.authorization_always_allow_paths.clone(),
            cert_auth: self.cert_auth.clone(),
            kubeconfig: path(&self.kubeconfig),
            master: non_empty(&self.master),
            bind_address: self.bind_address,
            secure_port: self.secure_port,
            tls_cert_and_key: path(&self.tls_cert_file).zip(path(&self.tls_private_key_file)),
            cert_dir: path(&self.cert_dir),
            leader_election: self.leader_elect.then(|| LeaderElection {
                namespace: self.leader_elect_resource_namespace.clone(),
                name: self.leader_elect_resource_name.clone(),
                timings: component_base::leaderelection::Timings {
                    lease_duration: lease,
                    renew_deadline: renew,
                    retry_period: retry,
                },
            }),
            controllers,
            concurrency: Concurrency {
                deployment: self.concurrent_deployment_syncs.max(1),
                replicaset: self.concurrent_replicaset_syncs.max(1),
                endpoints: self.concurrent_endpoint_syncs.max(1),
                endpointslice: self.concurrent_service_endpoint_syncs.max(1),
                namespace: self.concurrent_namespace_syncs.max(1),
                serviceaccount: self.concurrent_serviceaccount_token_syncs.max(1),
                gc: self.concurrent_gc_syncs.max(1),
                resource_quota: self.concurrent_resource_quota_syncs.max(1),
                job: self.concurrent_job_syncs.max(1),
                cronjob: self.concurrent_cron_job_syncs.max(1),
                ttl_after_finished: self.concurrent_ttl_after_finished_syncs.max(1),
                daemonset: self.concurrent_daemonset_syncs.max(1),
                statefulset: self.concurrent_statefulset_syncs.max(1),
            },
            cluster_cidr: non_empty(&self.cluster_cidr),
            allocate_node_cidrs: self.allocate_node_cidrs,
            node_cidr_mask_size: self.node_cidr_mask_size,
            node_cidr_mask_size_ipv4: self.node_cidr_mask_size_ipv4,
            node_cidr_mask_size_ipv6: self.node_cidr_mask_size_ipv6,
            service_cluster_ip_range: non_empty(&self.service_cluster_ip_range),
            node_monitor_grace_period: parse_duration(
                "node-monitor-grace-period",
                &self.node_monitor_grace_period,
            )?,
            node_monitor_period: parse_duration("node-monitor-period", &self.node_monitor_period)?,
            node_startup_grace_period: parse_duration(
                "node-startup-grace-period",
                &self.node_startup_grace_period,
            )?,
            node_eviction_rate: self.node_eviction_rate,
            secondary_node_eviction_rate: self.secondary_node_eviction_rate,
            unhealthy_zone_threshold: self.unhealthy_zone_threshold,
            large_cluster_size_threshold: self.large_cluster_size_threshold,
            service_account_private_key_file: path(&self.service_account_private_key_file),
            root_ca_file: path(&self.root_ca_file),
            cluster_signing: path(&self.cluster_signing_cert_file)
                .zip(path(&self.cluster_signing_key_file)),
            use_service_account_credentials: self.use_service_account_credentials,
            kube_api_qps: self.kube_api_qps,
            kube_api_burst: self.kube_api_burst,
            resource_quota_sync_period: parse_duration(
                "resource-quota-sync-period",
                &self.resource_quota_sync_period,
            )?,
            pvclaimbinder_sync_period: parse_duration(
                "pvclaimbinder-sync-period",
                &self.pvclaimbinder_sync_period,
            )?,
            cluster_signing_duration: parse_duration(
                "cluster-signing-duration",
                &self.cluster_signing_duration,
            )?,
            terminated_pod_gc_threshold: self.terminated_pod_gc_threshold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, OptionsError> {
        let mut all = vec!["kube-controller-manager"];
        all.extend(args);
        Options::try_parse_from(all)
            .expect("flags parse")
            .into_config()
    }

    #[test]
    fn durations_parse_like_go() {
        let cases = [
            ("15s", 15_000),
            ("1m30s", 90_000),
            ("500ms", 500),
            ("1.5s", 1_500),
            ("2h", 7_200_000),
            ("0", 0),
        ];
        for (value, millis) in cases {
            let d = parse_duration("x", value).expect(value);
            assert_eq!(d.as_millis(), millis, "{value}");
        }
        for bad in ["", "15", "abc", "1x"] {
            assert!(parse_duration("x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_match_upstream() {
        let c = parse(&[]).expect("defaults are valid");
        assert_eq!(c.secure_port, 10257);
        let le = c.leader_election.expect("leader election on by default");
        assert_eq!(
            (le.namespace.as_str(), le.name.as_str()),
            ("kube-system", "kube-controller-manager")
        );
        assert_eq!(
            le.timings,
            component_base::leaderelection::Timings::default()
        );
        assert!(c.controllers.contains("deployment-controller"));
        assert!(!c.controllers.contains("bootstrap-signer-controller"));
    }

    #[test]
    fn leader_elect_false_disables_election() {
        let c = parse(&["--leader-elect=false"]).expect("valid");
        assert!(c.leader_election.is_none());
    }

    #[test]
    fn controllers_flag_enables_and_disables_by_name_or_alias() {
        let c = parse(&["--controllers=*,-deployment,bootstrapsigner"]).expect("valid");
        assert!(!c.controllers.contains("deployment-controller"));
        assert!(c.controllers.contains("replicaset-controller"));
        assert!(c.controllers.contains("bootstrap-signer-controller"));
        let c = parse(&["--controllers=namespace-controller,serviceaccount"]).expect("valid");
        let names: Vec<_> = c.controllers.iter().copied().collect();
        assert_eq!(names, ["namespace-controller", "serviceaccount-controller"]);
        assert!(matches!(
            parse(&["--controllers=nope"]),
            Err(OptionsError::UnknownController(_))
        ));
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(parse(&["--leader-elect-lease-duration=x"]).is_err());
        assert!(parse(&["--leader-elect-resource-lock=endpoints"]).is_err());
        assert!(parse(&["--leader-elect-renew-deadline=20s"]).is_err());
        assert!(parse(&["--cluster-cidr=10.0.0.0"]).is_err());
        assert!(parse(&["--cluster-cidr=10.244.0.0/16", "--allocate-node-cidrs"]).is_ok());
    }
}
