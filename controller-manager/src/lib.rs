//! kube-controller-manager: shared informers, named controllers and leader election around them.

pub mod clientbuilder;
pub mod context;
pub mod controllers;
pub mod informers;
pub mod options;
pub mod registry;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use component_base::leaderelection::{self, Ended, LeaderElector, LeaseLock};
use component_base::{Health, Shutdown};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;

pub use clientbuilder::ClientBuilder;
pub use context::ControllerContext;
pub use informers::SharedInformers;
pub use options::{Config, Options};

/// What stopped the controller manager.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to load kubeconfig {path}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("failed to infer client configuration")]
    InferConfig(#[source] kube::config::InferConfigError),
    #[error("invalid --master url {0:?}")]
    Master(String),
    #[error("failed to build kubernetes client")]
    Client(#[source] kube::Error),
    #[error("failed to set up serving")]
    Serve(#[source] component_base::Error),
    #[error("failed to generate self-signed serving certificate")]
    SelfSigned(#[source] rcgen::Error),
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to register metrics")]
    Metrics(#[source] component_base::Error),
    #[error("failed to build a controller's client")]
    ClientBuilder(#[from] clientbuilder::Error),
    #[error("leaderelection lost")]
    LeadershipLost,
}

/// Builds the client from `--kubeconfig`/`--master` (or in-cluster/`$KUBECONFIG`).
pub async fn client(config: &Config) -> Result<Client, Error> {
    limited(client_config(config).await?, config)
}

/// A client under `--kube-api-qps`/`--kube-api-burst`, each with its own bucket as upstream.
fn limited(kube_config: kube::Config, config: &Config) -> Result<Client, Error> {
    component_base::ratelimit::client(kube_config, config.kube_api_qps, config.kube_api_burst)
        .map_err(Error::Client)
}

/// The client settings from `--kubeconfig`/`--master` (or in-cluster/`$KUBECONFIG`).
pub async fn client_config(config: &Config) -> Result<kube::Config, Error> {
    kubeconfig_config(config.kubeconfig.as_deref(), config.master.as_deref()).await
}

/// A client from `kubeconfig`, or `fallback` when none is given.
async fn client_or(kubeconfig: Option<&Path>, fallback: &Client) -> Result<Client, Error> {
    match kubeconfig {
        Some(path) => {
            Client::try_from(kubeconfig_config(Some(path), None).await?).map_err(Error::Client)
        }
        None => Ok(fallback.clone()),
    }
}

async fn kubeconfig_config(
    kubeconfig: Option<&Path>,
    master: Option<&str>,
) -> Result<kube::Config, Error> {
    let mut kube_config = match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
                path: path.to_owned(),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|source| Error::Kubeconfig {
                    path: path.to_owned(),
                    source,
                })?
        }
        None => kube::Config::infer().await.map_err(Error::InferConfig)?,
    };
    if let Some(master) = master {
        kube_config.cluster_url = master
            .parse()
            .map_err(|_| Error::Master(master.to_owned()))?;
    }
    Ok(kube_config)
}

/// Runs the controller manager until `shutdown` triggers or leadership is lost.
pub async fn run(mut config: Config, shutdown: Shutdown) -> Result<(), Error> {
    let kube_config = client_config(&config).await?;
    let client = limited(kube_config.clone(), &config)?;
    // The client CAs the flags leave out come from the apiserver's
    // extension-apiserver-authentication ConfigMap, as upstream's delegated authentication.
    let authn = client_or(config.authentication_kubeconfig.as_deref(), &client).await?;
    config.cert_auth = config
        .cert_auth
        .clone()
        .with_cluster_lookup(
            &authn,
            &std::env::temp_dir().join(format!(
                "kube-controller-manager-{}-authn",
                std::process::id()
            )),
            std::time::Duration::from_secs(60),
        )
        .await;
    let builder = if config.use_service_account_credentials {
        let dir = token_dir(config.cert_dir.as_deref());
        Some(ClientBuilder::new(
            client.clone(),
            &kube_config,
            (config.kube_api_qps, config.kube_api_burst),
            dir,
            shutdown.clone(),
        )?)
    } else {
        None
    };
    let registry = prometheus::Registry::new();
    component_base::metrics::register_process_collector(&registry).map_err(Error::Metrics)?;
    let health = Health::new();
    let tls = serving_tls(&config)?;
    let addr = SocketAddr::new(config.bind_address, config.secure_port);
    let delegated = component_base::delegated::DelegatedAuth::with_certs(
        client_or(config.authentication_kubeconfig.as_deref(), &client).await?,
        client_or(config.authorization_kubeconfig.as_deref(), &client).await?,
        config.always_allow_paths.clone(),
        config.cert_auth.cert_auth().map_err(Error::Serve)?,
    );
    let (bound, server) = component_base::serve_guarded(
        addr,
        Some(tls),
        registry,
        health.clone(),
        None,
        Some(delegated.guard()),
        shutdown.clone(),
    )
    .await
    .map_err(Error::Serve)?;
    tracing::info!(addr = %bound, "serving securely");

    let config = Arc::new(config);
    let result = match config.leader_election.clone() {
        None => {
            run_controllers(client, builder, config, health, shutdown.clone()).await;
            Ok(())
        }
        Some(le) => {
            let lock = LeaseLock {
                namespace: le.namespace.clone(),
                name: le.name.clone(),
                identity: leaderelection::default_identity(),
            };
            let elector = LeaderElector::new(client.clone(), lock, le.timings);
            let ended = elector
                .run(shutdown.clone(), move |leading| {
                    run_controllers(client, builder, config, health, leading)
                })
                .await;
            match ended {
                Ended::LeadershipLost => Err(Error::LeadershipLost),
                Ended::Shutdown | Ended::Finished => Ok(()),
            }
        }
    };
    shutdown.trigger();
    let _ = server.await;
    result
}

/// Constructs every enabled controller, starts the shared informers, then runs the controllers
/// until `shutdown` triggers. With a `builder` (`--use-service-account-credentials`) each
/// controller writes as its own ServiceAccount; the shared informers read as the manager.
pub async fn run_controllers(
    client: Client,
    builder: Option<Arc<ClientBuilder>>,
    config: Arc<Config>,
    health: Health,
    shutdown: Shutdown,
) {
    let informers = Arc::new(SharedInformers::new(client.clone()));
    let ctx = ControllerContext {
        client,
        informers: informers.clone(),
        config: config.clone(),
        shutdown: shutdown.clone(),
    };
    let mut loops = Vec::new();
    for descriptor in registry::descriptors() {
        if !config.controllers.contains(descriptor.name) {
            continue;
        }
        let Some(constructor) = descriptor.constructor else {
            tracing::warn!(
                controller = descriptor.name,
                "controller is not implemented; skipping"
            );
            continue;
        };
        let ctx = match (
            &builder,
            clientbuilder::service_account_for(descriptor.name),
        ) {
            (Some(builder), Some(account)) => match builder.client(account).await {
                Ok(client) => ControllerContext {
                    client,
                    ..ctx.clone()
                },
                Err(e) => {
                    tracing::error!(controller = descriptor.name, error = %e, "failed to build the controller's client");
                    continue;
                }
            },
            _ => ctx.clone(),
        };
        match constructor(&ctx) {
            Ok(fut) => {
                tracing::info!(controller = descriptor.name, "started controller");
                loops.push(fut);
            }
            Err(e) => {
                tracing::error!(controller = descriptor.name, error = %e, "failed to start controller");
            }
        }
    }
    informers.start();
    let sync_view = informers.clone();
    health.add_readiness_check("informer-sync", move || {
        let unsynced = sync_view.unsynced();
        if unsynced.is_empty() {
            Ok(())
        } else {
            Err(format!("informers not synced: {}", unsynced.join(",")))
        }
    });
    let handles: Vec<_> = loops.into_iter().map(tokio::spawn).collect();
    shutdown.wait().await;
    for handle in handles {
        // Controllers stop on the same signal; give them a moment, then drop them.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), handle).await;
    }
}

/// Where the controllers' tokens are kept: `<cert-dir>/tokens`, else a per-process temp dir.
fn token_dir(cert_dir: Option<&Path>) -> PathBuf {
    match cert_dir {
        Some(dir) => dir.join("tokens"),
        None => std::env::temp_dir().join(format!(
            "kube-controller-manager-{}-tokens",
            std::process::id()
        )),
    }
}

fn serving_tls(config: &Config) -> Result<Arc<rustls::ServerConfig>, Error> {
    let (cert, key) = match &config.tls_cert_and_key {
        Some((cert, key)) => (cert.clone(), key.clone()),
        None => self_signed(config.cert_dir.as_deref())?,
    };
    let client_cas = config.cert_auth.ca_files();
    component_base::tls::server_config_optional_client_certs(
        &cert,
        &key,
        &client_cas.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
        component_base::tls::ALPN_HTTP,
    )
    .map_err(Error::Serve)
}

/// Writes (or reuses) a self-signed certificate for localhost, as upstream does in --cert-dir.
fn self_signed(cert_dir: Option<&Path>) -> Result<(PathBuf, PathBuf), Error> {
    let dir = cert_dir.map(Path::to_path_buf).unwrap_or_else(|| {
        std::env::temp_dir().join(format!("kube-controller-manager-{}", std::process::id()))
    });
    let cert = dir.join("kube-controller-manager.crt");
    let key = dir.join("kube-controller-manager.key");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(&dir).map_err(|source| Error::Write {
        path: dir.clone(),
        source,
    })?;
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let generated = rcgen::generate_simple_self_signed(names).map_err(Error::SelfSigned)?;
    let write = |path: &Path, pem: String| {
        std::fs::write(path, pem).map_err(|source| Error::Write {
            path: path.to_owned(),
            source,
        })
    };
    write(&cert, generated.cert.pem())?;
    write(&key, generated.signing_key.serialize_pem())?;
    Ok((cert, key))
}
