//! kube-scheduler: watches pods and nodes through the apiserver and binds pending pods to nodes
//! with upstream's scheduling framework and default plugins.

pub mod cache;
pub mod config;
pub mod framework;
pub mod metrics;
pub mod options;
pub mod plugins;
pub mod queue;
pub mod scheduler;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use component_base::Shutdown;
use kube::config::{KubeConfigOptions, Kubeconfig};

pub use options::Options;

/// What can stop the scheduler from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The kubeconfig could not be loaded.
    #[error("failed to load kubeconfig")]
    Kubeconfig(#[source] kube::config::KubeconfigError),
    /// No kubeconfig and no in-cluster config.
    #[error("failed to infer client configuration")]
    InferConfig(#[source] kube::config::InferConfigError),
    /// The client could not be built.
    #[error("failed to build apiserver client")]
    Client(#[source] kube::Error),
    /// Metrics registration failed.
    #[error("failed to register metrics")]
    Metrics(#[source] prometheus::Error),
    /// The secure port could not be set up.
    #[error("failed to serve the secure port")]
    Serve(#[source] component_base::Error),
    /// The self-signed certificate could not be written.
    #[error("failed to create a self-signed certificate")]
    SelfSigned(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Validated settings the scheduler runs with.
pub struct Config {
    /// The scheduler configuration (profiles).
    pub scheduler: config::KubeSchedulerConfiguration,
    /// The kubeconfig to use (else inferred).
    pub kubeconfig: Option<PathBuf>,
    /// Apiserver URL override.
    pub master: Option<String>,
    /// Where to serve HTTPS (None: disabled).
    pub secure_addr: Option<SocketAddr>,
    /// Serving cert and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Where a self-signed certificate goes.
    pub cert_dir: Option<PathBuf>,
    /// Whether leader election was asked for.
    pub leader_elect: bool,
}

impl Config {
    /// Validates flags (and reads `--config`).
    pub fn from_options(o: &Options) -> Result<Self, Error> {
        let scheduler = match o.config.as_ref() {
            Some(p) => config::load(&p.to_string_lossy())?,
            None => config::KubeSchedulerConfiguration::default(),
        };
        let kubeconfig = o.kubeconfig.clone().or_else(|| {
            scheduler
                .client_connection
                .as_ref()
                .and_then(|c| c.kubeconfig.clone())
                .filter(|k| !k.is_empty())
                .map(PathBuf::from)
        });
        let tls = match (&o.tls_cert_file, &o.tls_private_key_file) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => {
                return Err(config::ConfigError::Invalid(
                    "--tls-cert-file and --tls-private-key-file go together".into(),
                )
                .into())
            }
        };
        let leader_elect = scheduler
            .leader_election
            .as_ref()
            .and_then(|l| l.leader_elect)
            .unwrap_or(o.leader_elect)
            && o.leader_elect;
        Ok(Self {
            kubeconfig,
            master: o.master.clone(),
            secure_addr: (o.secure_port != 0)
                .then(|| SocketAddr::new(o.bind_address, o.secure_port)),
            tls,
            cert_dir: o.cert_dir.clone(),
            leader_elect,
            scheduler,
        })
    }
}

async fn client(cfg: &Config) -> Result<kube::Client, Error> {
    let mut kc = match cfg.kubeconfig.as_ref() {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(Error::Kubeconfig)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(Error::Kubeconfig)?
        }
        None => kube::Config::infer().await.map_err(Error::InferConfig)?,
    };
    if let Some(master) = cfg.master.as_ref().and_then(|m| m.parse().ok()) {
        kc.cluster_url = master;
    }
    // TODO(client-rate-limit): honour --kube-api-qps/--kube-api-burst with a token bucket
    // layer; kube-rs has no client-side limiter.
    kube::Client::try_from(kc).map_err(Error::Client)
}

/// A running scheduler: the secure port's address (if served) and its state.
pub struct Running {
    /// The bound secure address.
    pub secure_addr: Option<SocketAddr>,
    /// The scheduler.
    pub scheduler: Arc<scheduler::Scheduler>,
}

/// Starts the scheduler and returns once it is serving; it stops when `shutdown` triggers.
pub async fn start(
    cfg: Config,
    shutdown: Shutdown,
) -> Result<(Running, tokio::task::JoinHandle<()>), Error> {
    let client = client(&cfg).await?;
    let frameworks = config::build_frameworks(&cfg.scheduler, Some(client.clone()))?;
    for fw in &frameworks {
        tracing::info!(profile = %fw.scheduler_name, plugins = %fw.describe(), "profile");
    }
    let metrics = metrics::Metrics::new().map_err(Error::Metrics)?;
    let sched = scheduler::Scheduler::new(client, frameworks, metrics.clone());
    let secure_addr = match cfg.secure_addr {
        Some(addr) => {
            Some(server::serve(addr, &cfg, sched.clone(), &metrics, shutdown.clone()).await?)
        }
        None => None,
    };
    if cfg.leader_elect {
        // TODO(leader-election): acquire the kube-system/kube-scheduler Lease through the shared
        // component-base leader election module once it lands; until then this instance
        // schedules as if it were the leader.
        tracing::warn!("leader election is not implemented yet; running as leader");
    }
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(sched.clone().run_node_informer());
    tasks.spawn(sched.clone().run_pod_informer());
    tasks.spawn(sched.clone().run_flusher());
    tasks.spawn(sched.clone().run_loop());
    let queue = sched.queue.clone();
    let handle = tokio::spawn(async move {
        shutdown.wait().await;
        queue.close();
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    });
    Ok((
        Running {
            secure_addr,
            scheduler: sched,
        },
        handle,
    ))
}

/// Runs the scheduler until `shutdown` triggers.
pub async fn run(cfg: Config, shutdown: Shutdown) -> Result<(), Error> {
    let (_running, handle) = start(cfg, shutdown).await?;
    let _ = handle.await;
    Ok(())
}
