//! Hollow nodes (kubemark's idea): many complete kubelets in one process, each on its own
//! in-memory CRI runtime ([`crate::cri::fake`]), so a thousand-node cluster fits on one VM.
//! Everything a kubelet says to the apiserver is real: registration, the Lease, status, pod
//! watches, pod status; only the containers are records.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use component_base::Shutdown;

use crate::cri::fake::FakeRuntime;
use crate::Options;

/// `hollow-node` flags.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "hollow-node",
    about = "Runs many kubelets on in-memory runtimes (scale tests)"
)]
pub struct HollowOptions {
    /// Kubeconfig every hollow kubelet uses (its user needs the node permissions).
    #[arg(long)]
    pub kubeconfig: String,
    /// How many nodes to run.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Node names are <prefix><index>.
    #[arg(long, default_value = "hollow-node-")]
    pub name_prefix: String,
    /// First node index (several processes can share one cluster).
    #[arg(long, default_value_t = 0)]
    pub first_index: usize,
    /// Working directory for the nodes' sockets, certificates and volumes.
    #[arg(long, default_value = "/tmp/hollow-nodes")]
    pub root_dir: PathBuf,
    /// Nodes started per second (0: all at once).
    #[arg(long, default_value_t = 200)]
    pub start_rate: u32,
    /// Node status update frequency of every kubelet.
    #[arg(long, default_value = "10s")]
    pub node_status_update_frequency: String,
    /// Extra kubelet flags given to every node (e.g. --max-pods=110), repeatable.
    #[arg(long = "kubelet-arg")]
    pub kubelet_args: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HollowError {
    #[error("kubelet options for {node}: {message}")]
    Options { node: String, message: String },
    #[error("fake runtime socket for {node}")]
    Socket {
        node: String,
        #[source]
        source: std::io::Error,
    },
}

/// The address range of node `index`: 10.(128 + index / 256).(index % 256).0/24, so 32,768 nodes
/// never overlap and never meet the default Service range.
pub fn pod_range(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 128 + (index / 256 % 128) as u8, (index % 256) as u8, 0)
}

/// Runs the nodes until `shutdown`.
pub async fn run(options: HollowOptions, shutdown: Shutdown) -> Result<(), HollowError> {
    let mut tasks = Vec::with_capacity(options.nodes);
    let pause = match options.start_rate {
        0 => Duration::ZERO,
        rate => Duration::from_secs(1) / rate,
    };
    for index in options.first_index..options.first_index + options.nodes {
        if shutdown.is_triggered() {
            break;
        }
        let name = format!("{}{index}", options.name_prefix);
        let dir = options.root_dir.join(&name);
        std::fs::create_dir_all(&dir).map_err(|source| HollowError::Socket {
            node: name.clone(),
            source,
        })?;
        let socket = dir.join("cri.sock");
        let stop = shutdown.clone();
        FakeRuntime::new(pod_range(index))
            .serve(&socket, async move { stop.wait().await })
            .await
            .map_err(|source| HollowError::Socket {
                node: name.clone(),
                source,
            })?;
        let mut args = vec![
            "kubelet".to_string(),
            format!("--kubeconfig={}", options.kubeconfig),
            format!("--hostname-override={name}"),
            format!("--root-dir={}", dir.join("root").display()),
            format!("--cert-dir={}", dir.join("pki").display()),
            format!("--container-runtime-endpoint=unix://{}", socket.display()),
            format!("--cni-conf-dir={}", dir.join("cni").display()),
            "--pod-network-routes=false".to_string(),
            "--healthz-port=0".to_string(),
            "--port=0".to_string(),
            "--address=127.0.0.1".to_string(),
            "--node-ip=127.0.0.1".to_string(),
            // The host's disk and memory are not the hollow nodes': no eviction, no image GC.
            "--eviction-hard=".to_string(),
            "--image-gc-high-threshold=100".to_string(),
            format!(
                "--node-status-update-frequency={}",
                options.node_status_update_frequency
            ),
        ];
        args.extend(options.kubelet_args.iter().cloned());
        let to_error = |message: String| HollowError::Options {
            node: name.clone(),
            message,
        };
        let mut config = Options::try_parse_from(&args)
            .map_err(|e| to_error(e.to_string()))?
            .into_config()
            .map_err(|e| to_error(e.to_string()))?;
        config.pod_logs_dir = dir.join("logs");
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::run(config, stop).await {
                tracing::error!(node = %name, error = %format!("{e:#}"), "hollow kubelet failed");
            }
        }));
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    tracing::info!(nodes = tasks.len(), "hollow nodes started");
    shutdown.wait().await;
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ranges_do_not_overlap() {
        assert_eq!(pod_range(0), Ipv4Addr::new(10, 128, 0, 0));
        assert_eq!(pod_range(255), Ipv4Addr::new(10, 128, 255, 0));
        assert_eq!(pod_range(256), Ipv4Addr::new(10, 129, 0, 0));
        assert_eq!(pod_range(999), Ipv4Addr::new(10, 131, 231, 0));
    }
}
