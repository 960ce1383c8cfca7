//! kube-dns: the cluster DNS server. Answers `<zone>` (default cluster.local) and the reverse
//! zones from watches of Services, EndpointSlices and Namespaces, forwards everything else.

pub mod forward;
pub mod index;
pub mod metrics;
pub mod options;
pub mod server;
pub mod watch;
pub mod zone;

use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;
use kube::config::{KubeConfigOptions, Kubeconfig};
use prometheus::Registry;
use tokio::net::{TcpListener, UdpSocket};

use component_base::http::{handler, Reply};
use component_base::{Health, Shutdown};

pub use options::{Config, Options};

/// Why kube-dns could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to load kubeconfig")]
    Kubeconfig(#[source] kube::config::KubeconfigError),
    #[error("failed to infer client configuration")]
    InferConfig(#[source] kube::config::InferConfigError),
    #[error("failed to build the apiserver client")]
    Client(#[source] kube::Error),
    #[error("failed to listen for DNS on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to register metrics")]
    Metrics(#[source] prometheus::Error),
    #[error(transparent)]
    Serve(#[from] component_base::Error),
}

/// Runs kube-dns until `shutdown` triggers.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), Error> {
    let registry = Registry::new();
    let metrics = metrics::Metrics::register(&registry).map_err(Error::Metrics)?;
    component_base::metrics::register_process_collector(&registry)?;

    let cache = watch::Cache::default();
    let mut servers = Vec::new();
    if let Some(addr) = config.health_addr {
        let health = handler(|path, _query| async move {
            match path.as_str() {
                "/health" => Reply::text(StatusCode::OK, "OK"),
                _ => Reply::not_found(),
            }
        });
        let (bound, task) = component_base::serve(
            addr,
            None,
            Registry::new(),
            Health::new(),
            Some(health),
            shutdown.clone(),
        )
        .await?;
        tracing::info!(addr = %bound, "serving /health");
        servers.push(task);
    }
    if let Some(addr) = config.ready_addr {
        let ready_cache = cache.clone();
        let ready = handler(move |path, _query| {
            let synced = ready_cache.is_synced();
            async move {
                match (path.as_str(), synced) {
                    ("/ready", true) => Reply::text(StatusCode::OK, "OK"),
                    // CoreDNS names the plugins that are not ready yet.
                    ("/ready", false) => Reply::text(StatusCode::SERVICE_UNAVAILABLE, "kubernetes"),
                    _ => Reply::not_found(),
                }
            }
        });
        let (bound, task) = component_base::serve(
            addr,
            None,
            Registry::new(),
            Health::new(),
            Some(ready),
            shutdown.clone(),
        )
        .await?;
        tracing::info!(addr = %bound, "serving /ready");
        servers.push(task);
    }
    if let Some(addr) = config.metrics_addr {
        let (_, task) =
            component_base::serve(addr, None, registry, Health::new(), None, shutdown.clone())
                .await?;
        servers.push(task);
    }

    let upstreams = match &config.upstreams {
        Some(u) => u.clone(),
        None => match std::fs::read_to_string(&config.resolv_conf) {
            Ok(text) => options::parse_resolv_conf(&text, config.dns_addr),
            Err(e) => {
                tracing::warn!(
                    path = %config.resolv_conf.display(),
                    error = %e,
                    "cannot read resolv.conf; names outside the cluster will fail"
                );
                Vec::new()
            }
        },
    };
    tracing::info!(?upstreams, "forwarding names outside the cluster zone");

    let client = client(&config).await?;
    let watcher = tokio::spawn(watch::run(client, cache.clone(), shutdown.clone()));

    let (udp, tcp) = bind(config.dns_addr).await?;
    let bound = udp.local_addr().map_err(|source| Error::Bind {
        addr: config.dns_addr,
        source,
    })?;
    let host = if bound.ip().is_unspecified() {
        String::new()
    } else {
        bound.ip().to_string()
    };
    let handler = Arc::new(server::Handler {
        zone: zone::Zone {
            domain: config.cluster_domain.clone(),
            ttl: config.ttl,
        },
        cache,
        forwarder: forward::Forwarder::new(upstreams, config.upstream_timeout, metrics.clone()),
        metrics,
        server: format!("dns://{host}:{}", bound.port()),
    });
    tracing::info!(addr = %bound, zone = %config.cluster_domain, "serving DNS over UDP and TCP");
    let udp_task = tokio::spawn(server::serve_udp(udp, handler.clone(), shutdown.clone()));
    let tcp_task = tokio::spawn(server::serve_tcp(tcp, handler, shutdown.clone()));

    shutdown.wait().await;
    let _ = udp_task.await;
    let _ = tcp_task.await;
    let _ = watcher.await;
    for task in servers {
        let _ = task.await;
    }
    tracing::info!("kube-dns stopped");
    Ok(())
}

/// Binds UDP and TCP on one port (with port 0, TCP takes the port UDP got).
async fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), Error> {
    let bind_error = |source| Error::Bind { addr, source };
    let udp = UdpSocket::bind(addr).await.map_err(bind_error)?;
    let port = udp.local_addr().map_err(bind_error)?.port();
    let tcp = TcpListener::bind(SocketAddr::new(addr.ip(), port))
        .await
        .map_err(bind_error)?;
    Ok((udp, tcp))
}

async fn client(config: &Config) -> Result<kube::Client, Error> {
    let kc = match &config.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(Error::Kubeconfig)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(Error::Kubeconfig)?
        }
        None => kube::Config::infer().await.map_err(Error::InferConfig)?,
    };
    kube::Client::try_from(kc).map_err(Error::Client)
}
