//! kube-scheduler: watches pods and nodes through the apiserver and binds pending pods to nodes
//! with upstream's scheduling framework and default plugins.

pub mod cache;
pub mod config;
pub mod framework;
pub mod leader_election;
pub mod metrics;
pub mod options;
pub mod plugins;
pub mod queue;
pub mod scheduler;
pub mod server;
pub mod volumes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use component_base::leaderelection::{self, Ended, LeaderElector, LeaseLock};
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
    /// The lease was lost; the process exits so a standby takes over (as upstream).
    #[error("leaderelection lost")]
    LeadershipLost,
}

/// Upstream kube-scheduler's client defaults (clientConnection.qps/burst).
pub const DEFAULT_QPS: f32 = 50.0;
/// See [`DEFAULT_QPS`].
pub const DEFAULT_BURST: i32 = 100;

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
    /// Leader election settings; `None` when disabled.
    pub leader_election: Option<leader_election::Settings>,
    /// Delegated authentication's kubeconfig (`None`: the main client).
    pub authentication_kubeconfig: Option<PathBuf>,
    /// Delegated authorization's kubeconfig (`None`: the main client).
    pub authorization_kubeconfig: Option<PathBuf>,
    /// Paths the secure port serves to anyone.
    pub always_allow_paths: Vec<String>,
    /// Client-certificate authentication of the secure port.
    pub cert_auth: component_base::delegated::CertFlags,
    /// Client-side rate limit: requests per second (negative: unlimited).
    pub qps: f32,
    /// Client-side rate limit: burst.
    pub burst: u32,
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
        let leader_election = leader_election::resolve(o, scheduler.leader_election.as_ref())?;
        // As upstream, --kube-api-qps/--kube-api-burst are honoured only without --config;
        // 0 means the default.
        let (qps, burst) = match o.config {
            Some(_) => {
                let cc = scheduler.client_connection.clone().unwrap_or_default();
                (cc.qps, cc.burst)
            }
            None => (o.kube_api_qps, o.kube_api_burst),
        };
        if let Some(p) = scheduler.parallelism {
            if p <= 0 {
                return Err(config::ConfigError::Invalid(format!(
                    "parallelism: Invalid value: {p}: should be an integer greater than 0"
                ))
                .into());
            }
        }
        let qps = qps.filter(|q| *q != 0.0).unwrap_or(DEFAULT_QPS);
        let burst = burst.filter(|b| *b != 0).unwrap_or(DEFAULT_BURST);
        let burst = u32::try_from(burst).map_err(|_| {
            config::ConfigError::Invalid(format!(
                "clientConnection.burst: Invalid value: {burst}: must be non-negative"
            ))
        })?;
        Ok(Self {
            kubeconfig,
            master: o.master.clone(),
            secure_addr: (o.secure_port != 0)
                .then(|| SocketAddr::new(o.bind_address, o.secure_port)),
            tls,
            cert_dir: o.cert_dir.clone(),
            leader_election,
            authentication_kubeconfig: o.authentication_kubeconfig.clone(),
            authorization_kubeconfig: o.authorization_kubeconfig.clone(),
            always_allow_paths: o.authorization_always_allow_paths.clone(),
            cert_auth: o.cert_auth.clone(),
            qps,
            burst,
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
    let builder = kube::client::ClientBuilder::try_from(kc).map_err(Error::Client)?;
    Ok(
        match component_base::ratelimit::RateLimitLayer::new(cfg.qps, cfg.burst) {
            Some(layer) => builder.with_layer(&layer).build(),
            None => builder.build(),
        },
    )
}

/// The secure port's reviewer: TokenReview and SubjectAccessReview through
/// --authentication-kubeconfig / --authorization-kubeconfig, else the main client.
async fn delegated_auth(
    cfg: &Config,
    main: &kube::Client,
) -> Result<Arc<component_base::delegated::DelegatedAuth>, Error> {
    async fn from(path: Option<&PathBuf>, main: &kube::Client) -> Result<kube::Client, Error> {
        let Some(path) = path else {
            return Ok(main.clone());
        };
        let kubeconfig = Kubeconfig::read_from(path).map_err(Error::Kubeconfig)?;
        let kc = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(Error::Kubeconfig)?;
        kube::Client::try_from(kc).map_err(Error::Client)
    }
    Ok(component_base::delegated::DelegatedAuth::with_certs(
        from(cfg.authentication_kubeconfig.as_ref(), main).await?,
        from(cfg.authorization_kubeconfig.as_ref(), main).await?,
        cfg.always_allow_paths.clone(),
        cfg.cert_auth.cert_auth().map_err(Error::Serve)?,
    ))
}

/// A running scheduler: the secure port's address (if served) and its state.
pub struct Running {
    /// The bound secure address.
    pub secure_addr: Option<SocketAddr>,
    /// The scheduler.
    pub scheduler: Arc<scheduler::Scheduler>,
}

/// Starts the scheduler and returns once it is serving. The informers run at once (so a
/// standby's caches are warm); the scheduling loop runs only while this instance holds the
/// lease when leader election is on. The handle ends when `shutdown` triggers or, with
/// [`Error::LeadershipLost`], when the lease is lost.
pub async fn start(
    mut cfg: Config,
    shutdown: Shutdown,
) -> Result<(Running, tokio::task::JoinHandle<Result<(), Error>>), Error> {
    if let Some(p) = cfg.scheduler.parallelism {
        framework::parallel::set_parallelism(usize::try_from(p).unwrap_or(1));
    }
    let client = client(&cfg).await?;
    if cfg.secure_addr.is_some() {
        // The client CAs the flags leave out come from the apiserver's
        // extension-apiserver-authentication ConfigMap, as upstream's delegated authentication.
        let dir = std::env::temp_dir().join(format!("kube-scheduler-{}-authn", std::process::id()));
        cfg.cert_auth = cfg
            .cert_auth
            .clone()
            .with_cluster_lookup(&client, &dir, std::time::Duration::from_secs(60))
            .await;
    }
    let volumes = Arc::new(volumes::VolumeStore::default());
    let frameworks =
        config::build_frameworks(&cfg.scheduler, Some(client.clone()), volumes.clone())?;
    for fw in &frameworks {
        tracing::info!(profile = %fw.scheduler_name, plugins = %fw.describe(), "profile");
    }
    let metrics = metrics::Metrics::new().map_err(Error::Metrics)?;
    let sched = scheduler::Scheduler::new(client.clone(), frameworks, metrics.clone(), volumes);
    let elector = cfg.leader_election.as_ref().map(|le| {
        let lock = LeaseLock {
            namespace: le.namespace.clone(),
            name: le.name.clone(),
            identity: leaderelection::default_identity(),
        };
        LeaderElector::new(client.clone(), lock, le.timings)
    });
    let watchdog = elector.as_ref().map(LeaderElector::watchdog);
    let secure_addr = match cfg.secure_addr {
        Some(addr) => Some(
            server::serve(
                addr,
                &cfg,
                sched.clone(),
                &metrics,
                watchdog,
                delegated_auth(&cfg, &client).await?,
                shutdown.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(sched.clone().run_node_informer());
    tasks.spawn(sched.clone().run_pod_informer());
    tasks.spawn(sched.clone().run_volume_informers());
    tasks.spawn(sched.clone().run_flusher());
    tasks.spawn(sched.clone().run_event_sink());
    let queue = sched.queue.clone();
    let looper = sched.clone();
    let handle = tokio::spawn(async move {
        let result = match elector {
            None => {
                looper.run_loop(shutdown.clone()).await;
                Ok(())
            }
            Some(elector) => {
                let ended = elector
                    .run(shutdown.clone(), move |leading| looper.run_loop(leading))
                    .await;
                match ended {
                    Ended::LeadershipLost => Err(Error::LeadershipLost),
                    Ended::Shutdown | Ended::Finished => Ok(()),
                }
            }
        };
        queue.close();
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        result
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
    match handle.await {
        Ok(result) => result,
        // The task only ends by returning; a panic has already been reported.
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> Result<Config, Error> {
        let o = Options::parse_from(std::iter::once("kube-scheduler").chain(args.iter().copied()));
        Config::from_options(&o)
    }

    #[test]
    fn client_limits_come_from_flags_without_config_and_from_the_file_with_it() {
        let c = config(&[]).expect("defaults");
        assert_eq!((c.qps, c.burst), (50.0, 100));
        let c = config(&["--kube-api-qps=200", "--kube-api-burst=300"]).expect("flags");
        assert_eq!((c.qps, c.burst), (200.0, 300));
        assert!(config(&["--kube-api-burst=-1"]).is_err());

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.yaml");
        std::fs::write(
            &path,
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
             clientConnection:\n  qps: 70\n  burst: 140\nleaderElection:\n  leaderElect: true\n  \
             resourceName: from-file\n",
        )
        .expect("write config");
        let flag = format!("--config={}", path.display());
        // As upstream, the deprecated client flags are ignored with --config.
        let c = config(&[&flag, "--kube-api-qps=999"]).expect("config file");
        assert_eq!((c.qps, c.burst), (70.0, 140));
        let le = c.leader_election.expect("leader election on");
        assert_eq!(
            (le.namespace.as_str(), le.name.as_str()),
            ("kube-system", "from-file")
        );
        let c = config(&[&flag, "--leader-elect=false"]).expect("flag over file");
        assert!(c.leader_election.is_none());
    }
}
