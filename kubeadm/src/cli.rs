//! kubeadm's command tree (clap derive), with upstream's command, phase and flag names.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;

/// kubeadm: easily bootstrap a secure Kubernetes cluster.
#[derive(Debug, Parser)]
#[command(name = "kubeadm", version, long_about = None)]
pub struct Cli {
    /// The directory kubeadm treats as the host's root: every path it reads or writes
    /// (/etc/kubernetes, /var/lib/etcd, --cert-dir...) is placed under it, and the manifests
    /// and kubeconfigs it writes name those real paths. Unlike upstream's --rootfs, no chroot.
    #[arg(long, global = true, env = "KUBEADM_ROOTFS", value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run this command in order to set up the Kubernetes control plane
    Init(Box<InitCmd>),
    /// Commands related to handling kubernetes certificates
    Certs {
        #[command(subcommand)]
        command: CertsCmd,
    },
    /// Performs a best effort revert of changes made to this host by 'kubeadm init' or 'kubeadm join'
    Reset(ResetArgs),
    /// Print the version of kubeadm
    Version {
        /// Output format; available options are 'yaml', 'json' and 'short'
        #[arg(short = 'o', long, default_value = "")]
        output: String,
    },
}

/// Flags of `kubeadm init` shared by its phases.
#[derive(Debug, Clone, Args, Default)]
pub struct InitFlags {
    /// Path to a kubeadm configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The path where to save and store the certificates. (default "/etc/kubernetes/pki")
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
    /// Choose a specific Kubernetes version for the control plane. (default "v1.33.0")
    #[arg(long)]
    pub kubernetes_version: Option<String>,
    /// The IP address the API Server will advertise it's listening on. If not set the default network interface will be used.
    #[arg(long)]
    pub apiserver_advertise_address: Option<IpAddr>,
    /// Port for the API Server to bind to. (default 6443)
    #[arg(long)]
    pub apiserver_bind_port: Option<u16>,
    /// Optional extra Subject Alternative Names (SANs) to use for the API Server serving certificate. Can be both IP addresses and DNS names.
    #[arg(long, value_delimiter = ',')]
    pub apiserver_cert_extra_sans: Vec<String>,
    /// Specify the node name.
    #[arg(long)]
    pub node_name: Option<String>,
    /// Specify range of IP addresses for the pod network. If set, the control plane will automatically allocate CIDRs for every node.
    #[arg(long)]
    pub pod_network_cidr: Option<String>,
    /// Use alternative range of IP address for service VIPs. (default "10.96.0.0/12")
    #[arg(long)]
    pub service_cidr: Option<String>,
    /// Use alternative domain for services, e.g. "myorg.internal". (default "cluster.local")
    #[arg(long)]
    pub service_dns_domain: Option<String>,
    /// Specify a stable IP address or DNS name for the control plane.
    #[arg(long)]
    pub control_plane_endpoint: Option<String>,
    /// Choose a container registry to pull control plane images from. (default "localhost/kube-rs-fleet")
    #[arg(long)]
    pub image_repository: Option<String>,
    /// List of phases to be skipped
    #[arg(long, value_delimiter = ',')]
    pub skip_phases: Vec<String>,
    /// A list of checks whose errors will be shown as warnings. Example: 'IsPrivilegedUser,Swap'. Value 'all' ignores errors from all checks.
    #[arg(long, value_delimiter = ',')]
    pub ignore_preflight_errors: Vec<String>,
}

impl InitFlags {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config_file: self.config.clone(),
            cert_dir: self.cert_dir.clone(),
            kubernetes_version: self.kubernetes_version.clone(),
            advertise_address: self.apiserver_advertise_address,
            bind_port: self.apiserver_bind_port,
            cert_extra_sans: self.apiserver_cert_extra_sans.clone(),
            node_name: self.node_name.clone(),
            pod_network_cidr: self.pod_network_cidr.clone(),
            service_cidr: self.service_cidr.clone(),
            service_dns_domain: self.service_dns_domain.clone(),
            control_plane_endpoint: self.control_plane_endpoint.clone(),
            image_repository: self.image_repository.clone(),
            skip_phases: self.skip_phases.clone(),
            ignore_preflight_errors: self.ignore_preflight_errors.clone(),
            allow_unset_address: false,
        }
    }
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct InitCmd {
    #[command(flatten)]
    pub flags: InitFlags,
    #[command(subcommand)]
    pub sub: Option<InitSub>,
}

#[derive(Debug, Subcommand)]
pub enum InitSub {
    /// Use this command to invoke single phase of the init workflow
    Phase {
        #[command(subcommand)]
        phase: Phase,
    },
}

pub const CERT_PHASES: [&str; 12] = [
    "all",
    "ca",
    "apiserver",
    "apiserver-kubelet-client",
    "front-proxy-ca",
    "front-proxy-client",
    "etcd-ca",
    "etcd-server",
    "etcd-peer",
    "etcd-healthcheck-client",
    "apiserver-etcd-client",
    "sa",
];

pub const KUBECONFIG_PHASES: [&str; 6] = [
    "all",
    "admin",
    "super-admin",
    "kubelet",
    "controller-manager",
    "scheduler",
];

pub const CONTROL_PLANE_PHASES: [&str; 4] = ["all", "apiserver", "controller-manager", "scheduler"];

#[derive(Debug, Subcommand)]
pub enum Phase {
    /// Run pre-flight checks
    Preflight {
        #[command(flatten)]
        flags: InitFlags,
    },
    /// Certificate generation
    Certs {
        #[arg(value_parser = PossibleValuesParser::new(CERT_PHASES))]
        which: String,
        #[command(flatten)]
        flags: InitFlags,
    },
    /// Generate all kubeconfig files necessary to establish the control plane and the admin kubeconfig file
    Kubeconfig {
        #[arg(value_parser = PossibleValuesParser::new(KUBECONFIG_PHASES))]
        which: String,
        #[command(flatten)]
        flags: InitFlags,
    },
    /// Generate all static Pod manifest files necessary to establish the control plane
    #[command(name = "control-plane")]
    ControlPlane {
        #[arg(value_parser = PossibleValuesParser::new(CONTROL_PLANE_PHASES))]
        which: String,
        #[command(flatten)]
        flags: InitFlags,
    },
    /// Generate static Pod manifest file for local etcd (here: kube-store)
    Etcd {
        #[arg(value_parser = PossibleValuesParser::new(["local"]))]
        which: String,
        #[command(flatten)]
        flags: InitFlags,
    },
}

/// Flags of `kubeadm certs ...`.
#[derive(Debug, Clone, Args)]
pub struct CertsFlags {
    /// Path to a kubeadm configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The path where to save the certificates (default "/etc/kubernetes/pki")
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
}

impl CertsFlags {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config_file: self.config.clone(),
            cert_dir: self.cert_dir.clone(),
            allow_unset_address: true,
            ..Default::default()
        }
    }
}

pub const RENEW_NAMES: [&str; 12] = [
    "all",
    "admin.conf",
    "apiserver",
    "apiserver-etcd-client",
    "apiserver-kubelet-client",
    "controller-manager.conf",
    "etcd-healthcheck-client",
    "etcd-peer",
    "etcd-server",
    "front-proxy-client",
    "scheduler.conf",
    "super-admin.conf",
];

#[derive(Debug, Subcommand)]
pub enum CertsCmd {
    /// Check certificates expiration for a Kubernetes cluster
    CheckExpiration {
        #[command(flatten)]
        flags: CertsFlags,
    },
    /// Renew certificates for a Kubernetes cluster
    Renew {
        #[arg(value_parser = PossibleValuesParser::new(RENEW_NAMES))]
        which: String,
        #[command(flatten)]
        flags: CertsFlags,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ResetArgs {
    /// The path to the directory where the certificates are stored. If specified, clean this directory. (default "/etc/kubernetes/pki")
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
    /// Reset the node without prompting for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn phases_parse_with_upstream_names() {
        let cli = Cli::try_parse_from([
            "kubeadm",
            "--rootfs",
            "/tmp/r",
            "init",
            "phase",
            "certs",
            "etcd-healthcheck-client",
            "--cert-dir",
            "/p",
        ])
        .expect("parses");
        assert_eq!(cli.rootfs, Some(PathBuf::from("/tmp/r")));
        let Command::Init(init) = cli.command else {
            panic!("wrong command");
        };
        let Some(InitSub::Phase {
            phase: Phase::Certs { which, flags },
        }) = init.sub
        else {
            panic!("wrong phase");
        };
        assert_eq!(which, "etcd-healthcheck-client");
        assert_eq!(flags.cert_dir, Some(PathBuf::from("/p")));
        assert!(Cli::try_parse_from(["kubeadm", "init", "phase", "certs", "nope"]).is_err());
        assert!(Cli::try_parse_from(["kubeadm", "init", "phase", "control-plane", "all"]).is_ok());
        assert!(Cli::try_parse_from(["kubeadm", "certs", "renew", "admin.conf"]).is_ok());
    }
}
