//! kubelet: registers the node, runs the pods bound to it on a CRI v1 runtime and reports their
//! status to the apiserver.

pub mod bootstrap;
pub mod certificate;
pub mod cni;
pub mod credentials;
pub mod cri;
pub mod events;
pub mod eviction;
pub mod hollow;
pub mod log_archive;
pub mod masquerade;
pub mod node;
pub mod options;
pub mod pleg;
pub mod pod;
pub mod probes;
pub mod routes;
pub mod server;
pub mod static_pods;
pub mod volumes;

use std::sync::Arc;
use std::time::Duration;

use component_base::{Health, Shutdown};
use kube::config::{KubeConfigOptions, Kubeconfig};

pub use options::{Config, Options};

use crate::pod::spec::{NodeContext, ResolvConf};
use crate::pod::worker::Shared;

/// Why the kubelet could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("read kubeconfig {path}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("build the apiserver client")]
    Client(#[source] kube::Error),
    #[error("container runtime")]
    Runtime(#[source] cri::CriError),
    #[error("healthz server")]
    Serve(#[source] component_base::Error),
    #[error("kubelet server")]
    Server(#[source] server::ServerError),
    #[error("TLS bootstrap")]
    Bootstrap(#[source] bootstrap::BootstrapError),
}

async fn client(config: &Config) -> Result<kube::Client, Error> {
    let path = config.kubeconfig.display().to_string();
    let kubeconfig_error = |source| Error::Kubeconfig {
        path: path.clone(),
        source,
    };
    let kubeconfig = Kubeconfig::read_from(&config.kubeconfig).map_err(kubeconfig_error)?;
    let client_config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(kubeconfig_error)?;
    kube::Client::try_from(client_config).map_err(Error::Client)
}

/// Runs the kubelet until `shutdown` triggers. Pods keep running after it returns.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), Error> {
    if let Some(boot) = &config.bootstrap_kubeconfig {
        // As upstream: bootstrap again when the kubeconfig's certificate has expired (or is
        // missing), if the bootstrap credentials are there to do it with.
        let bootstrap_needed = !config.kubeconfig.exists()
            || (boot.exists() && !bootstrap::kubeconfig_still_valid(&config.kubeconfig).await);
        if bootstrap_needed {
            tokio::select! {
                r = bootstrap::run(&config.kubeconfig, boot, &config.cert_dir, &config.node_name) => r.map_err(Error::Bootstrap)?,
                _ = shutdown.wait() => return Ok(()),
            }
        }
    }
    let rotation = if config.rotate_certificates {
        certificate::start(
            &config.kubeconfig,
            config.bootstrap_kubeconfig.as_deref(),
            &config.cert_dir,
            &config.node_name,
        )
        .await
    } else {
        Ok(None)
    };
    // Without rotation the kubelet still runs on the kubeconfig's credentials as they are.
    let client = match rotation {
        Ok(Some((client, manager))) => {
            tokio::spawn(manager.run(shutdown.clone()));
            client
        }
        Ok(None) => {
            if config.rotate_certificates {
                tracing::warn!(kubeconfig = %config.kubeconfig.display(), "rotateCertificates is set but the kubeconfig has no client certificate; not rotating");
            }
            client(&config).await?
        }
        Err(e) => {
            tracing::warn!(error = %certificate::chain(&e), "cannot rotate the client certificate; using the kubeconfig's credentials as they are");
            client(&config).await?
        }
    };
    log_archive::init(&config.root_dir);
    let runtime = cri::Runtime::new(&config.runtime_endpoint).map_err(Error::Runtime)?;
    let version = loop {
        match runtime.version().await {
            Ok(v) => break v,
            Err(e) => {
                tracing::warn!(endpoint = %config.runtime_endpoint, error = %e, "container runtime not answering; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    tracing::info!(
        runtime = %version.runtime_name,
        runtime_version = %version.runtime_version,
        node = %config.node_name,
        "connected to the container runtime"
    );

    let health = Health::new();
    let mut servers = Vec::new();
    if let Some(addr) = config.healthz {
        let (bound, task) = component_base::serve(
            addr,
            None,
            prometheus::Registry::new(),
            health.clone(),
            None,
            shutdown.clone(),
        )
        .await
        .map_err(Error::Serve)?;
        tracing::info!(addr = %bound, "serving healthz");
        servers.push(task);
    }

    let node_ip = node::detect_node_ip(config.node_ip);
    let pleg = Arc::new(pleg::Pleg::new(runtime.clone()));
    let (_, server_task) = server::start(
        &config.server,
        &config.cert_dir,
        &config.node_name,
        node_ip,
        client.clone(),
        runtime.clone(),
        pleg.clone(),
        shutdown.clone(),
    )
    .await
    .map_err(Error::Server)?;
    servers.push(server_task);
    let host_dns =
        ResolvConf::parse(&std::fs::read_to_string(&config.resolv_conf).unwrap_or_default());
    let eviction_state = Arc::new(eviction::State::default());
    let image_gc = Arc::new(eviction::image_gc::ImageGc::new(
        runtime.clone(),
        config.eviction.image_gc.clone(),
        config.pod_infra_container_image.clone(),
    ));
    tokio::spawn(image_gc.clone().run(shutdown.clone()));
    tokio::spawn(
        eviction::Manager {
            config: config.eviction.clone(),
            state: eviction_state.clone(),
            runtime: runtime.clone(),
            client: client.clone(),
            node_name: config.node_name.clone(),
            root_dir: config.root_dir.clone(),
            cgroup_root: config.cgroup_root.clone(),
            images: image_gc,
        }
        .run(shutdown.clone()),
    );
    let shared = Arc::new(Shared {
        runtime: runtime.clone(),
        client: client.clone(),
        node: NodeContext {
            node_name: config.node_name.clone(),
            node_ip,
            cluster_dns: config.cluster_dns.clone(),
            cluster_domain: config.cluster_domain.clone(),
            host_dns,
            pod_logs_dir: config.pod_logs_dir.clone(),
            cgroup_root: config.cgroup_root.clone(),
            memory_capacity: node::memory_capacity(),
            root_dir: config.root_dir.clone(),
            sync_frequency: config.sync_frequency,
        },
        runtime_name: version.runtime_name.clone(),
        events: events::Recorder::start(client.clone(), config.node_name.clone()),
        evictions: eviction_state.clone(),
        pleg,
    });

    if config.pod_network_routes {
        let routes = routes::Routes::new(
            client.clone(),
            config.node_name.clone(),
            config.pod_cidr.clone(),
        );
        tokio::spawn(routes.run(shutdown.clone()));
    }
    let client_for_mirrors = client.clone();
    let agent = Arc::new(node::NodeAgent {
        config: config.clone(),
        client,
        runtime,
        node_ip,
        runtime_version: format!("{}://{}", version.runtime_name, version.runtime_version),
        pressure: eviction_state,
    });
    let (registered_tx, _registered_rx) = tokio::sync::watch::channel(false);
    let node_task = tokio::spawn(agent.run(registered_tx, shutdown.clone()));
    // Static pods start from the manifests alone; nothing here waits for the apiserver.
    let statics = match &config.static_pod_path {
        Some(dir) => {
            let (rx, task) =
                static_pods::watch_dir(dir.clone(), config.node_name.clone(), shutdown.clone());
            tokio::spawn(task);
            rx
        }
        None => tokio::sync::watch::channel(static_pods::StaticPods::new()).1,
    };
    let (mirrors_tx, mirrors_rx) = tokio::sync::watch::channel(None);
    tokio::spawn(static_pods::manage_mirrors(
        client_for_mirrors,
        config.node_name.clone(),
        statics.clone(),
        mirrors_rx,
        shutdown.clone(),
    ));
    pod::run(
        shared,
        config.node_name.clone(),
        statics,
        mirrors_tx,
        shutdown.clone(),
    )
    .await;
    shutdown.wait().await;
    let _ = node_task.await;
    for task in servers {
        let _ = task.await;
    }
    Ok(())
}
