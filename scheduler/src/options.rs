//! Command-line flags, named and defaulted as upstream kube-scheduler's.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{ArgAction, Parser};

/// kube-scheduler flags.
#[derive(Clone, Debug, Parser)]
#[command(name = "kube-scheduler", about = "Schedules pods onto nodes", version)]
pub struct Options {
    /// Path to a KubeSchedulerConfiguration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Path to a kubeconfig with the apiserver location and credentials.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The apiserver address (overrides the kubeconfig).
    #[arg(long)]
    pub master: Option<String>,
    /// kubeconfig for delegated authentication (TokenReview) on the secure port; unset:
    /// --kubeconfig.
    #[arg(long)]
    pub authentication_kubeconfig: Option<PathBuf>,
    /// kubeconfig for delegated authorization (SubjectAccessReview); unset: --kubeconfig.
    #[arg(long)]
    pub authorization_kubeconfig: Option<PathBuf>,
    /// Paths served without authentication or authorization.
    #[arg(long, value_delimiter = ',', default_value = "/healthz,/readyz,/livez")]
    pub authorization_always_allow_paths: Vec<String>,
    /// Client-certificate authentication of the secure port.
    #[command(flatten)]
    pub cert_auth: component_base::delegated::CertFlags,
    /// Address the secure port listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// HTTPS port for /healthz, /livez, /readyz, /metrics and /debug/pending (0 disables).
    #[arg(long, default_value_t = 10259)]
    pub secure_port: u16,
    /// Serving certificate (PEM); self-signed when unset.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// Serving key (PEM).
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// Where the self-signed certificate is written.
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
    /// Elect a leader before scheduling (default true). Leader election flags set explicitly
    /// override the `leaderElection` section of `--config`, as upstream.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          require_equals = true)]
    pub leader_elect: Option<bool>,
    /// How long non-leaders wait after the last renewal before taking over (default 15s).
    #[arg(long)]
    pub leader_elect_lease_duration: Option<String>,
    /// How long the leader retries renewing before giving up (default 10s).
    #[arg(long)]
    pub leader_elect_renew_deadline: Option<String>,
    /// How long candidates wait between attempts (default 2s).
    #[arg(long)]
    pub leader_elect_retry_period: Option<String>,
    /// Leader election resource lock; only `leases` is supported (default leases).
    #[arg(long)]
    pub leader_elect_resource_lock: Option<String>,
    /// Leader election lease name (default kube-scheduler).
    #[arg(long)]
    pub leader_elect_resource_name: Option<String>,
    /// Leader election lease namespace (default kube-system).
    #[arg(long)]
    pub leader_elect_resource_namespace: Option<String>,
    /// Client QPS towards the apiserver (default 50; ignored with `--config`, as upstream).
    #[arg(long)]
    pub kube_api_qps: Option<f32>,
    /// Client burst towards the apiserver (default 100; ignored with `--config`, as upstream).
    #[arg(long)]
    pub kube_api_burst: Option<i32>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_defaults_and_leader_elect_forms() {
        let o = Options::parse_from(["kube-scheduler"]);
        assert_eq!(o.secure_port, 10259);
        assert_eq!(o.bind_address.to_string(), "0.0.0.0");
        assert_eq!(o.leader_elect, None);
        let o = Options::parse_from([
            "kube-scheduler",
            "--leader-elect=false",
            "--kube-api-qps=100",
            "-v=4",
        ]);
        assert_eq!(o.leader_elect, Some(false));
        assert_eq!(o.kube_api_qps, Some(100.0));
        assert_eq!(o.log_level(), "debug");
        let o = Options::parse_from(["kube-scheduler", "--leader-elect"]);
        assert_eq!(o.leader_elect, Some(true));
        assert!(Options::try_parse_from(["kube-scheduler", "--secure-port=x"]).is_err());
    }
}
