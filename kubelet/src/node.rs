//! The Node object: registration, status (capacity, conditions, nodeInfo), the Lease heartbeat,
//! and the CNI config for the node's podCIDR.

use std::collections::BTreeMap;
use std::net::{IpAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use component_base::Shutdown;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints,
    NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::chrono::Utc;
use kube::api::{Api, GetParams, Patch, PatchParams, PostParams};

use crate::cni;
use crate::cri::Runtime;
use crate::options::Config;

/// The kubelet version reported in nodeInfo (matches the apiserver's gitVersion).
pub const KUBELET_VERSION: &str = "v1.33.1";
/// Upstream's lease renew interval and duration.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
const LEASE_DURATION_SECONDS: i32 = 40;
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Status is posted at least this often even when nothing changed (upstream's
/// nodeStatusReportFrequency).
const REPORT_FREQUENCY: Duration = Duration::from_secs(300);

/// The node's IP: --node-ip, else the source address of the default route, else loopback.
pub fn detect_node_ip(configured: Option<IpAddr>) -> IpAddr {
    if let Some(ip) = configured {
        return ip;
    }
    // connect() on UDP only picks a route and a source address; nothing is sent.
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:53")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// MemTotal from /proc/meminfo, in bytes.
pub fn memory_capacity() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

fn ephemeral_storage(root: &Path) -> i64 {
    let probe = if root.exists() { root } else { Path::new("/") };
    rustix::fs::statvfs(probe)
        .map(|s| (s.f_blocks.saturating_mul(s.f_frsize)) as i64)
        .unwrap_or(0)
}

/// Registers the node and keeps its status and Lease fresh until `shutdown`.
pub struct NodeAgent {
    pub config: Config,
    pub client: kube::Client,
    pub runtime: Runtime,
    pub node_ip: IpAddr,
    pub runtime_version: String,
    /// Memory, disk and PID pressure as the eviction manager sees them.
    pub pressure: Arc<crate::eviction::State>,
}

impl NodeAgent {
    fn labels(&self) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> = [
            ("kubernetes.io/hostname", self.config.node_name.as_str()),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
            ("beta.kubernetes.io/os", "linux"),
            ("beta.kubernetes.io/arch", "amd64"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        labels.extend(self.config.node_labels.clone());
        labels
    }

    fn capacity(&self) -> BTreeMap<String, Quantity> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let q = |s: String| Quantity(s);
        [
            ("cpu", cpus.to_string()),
            ("memory", format!("{}Ki", memory_capacity() / 1024)),
            ("pods", self.config.max_pods.to_string()),
            (
                "ephemeral-storage",
                format!("{}Ki", ephemeral_storage(&self.config.root_dir) / 1024),
            ),
            ("hugepages-1Gi", "0".into()),
            ("hugepages-2Mi", "0".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), q(v)))
        .collect()
    }

    async fn conditions(&self, old: &[NodeCondition]) -> Vec<NodeCondition> {
        let now = Time(Utc::now());
        let (ready, message) = match self.runtime.status().await {
            Ok(status) => {
                let conditions = status.status.map(|s| s.conditions).unwrap_or_default();
                let failing: Vec<String> = conditions
                    .iter()
                    .filter(|c| !c.status)
                    .map(|c| {
                        format!(
                            "{}={} reason:{} message:{}",
                            c.r#type, c.status, c.reason, c.message
                        )
                    })
                    .collect();
                if failing.is_empty() {
                    (true, "kubelet is posting ready status".to_string())
                } else {
                    let what = if failing.iter().any(|f| f.starts_with("NetworkReady")) {
                        "container runtime network not ready"
                    } else {
                        "container runtime not ready"
                    };
                    (false, format!("{what}: {}", failing.join(", ")))
                }
            }
            Err(e) => (false, format!("container runtime is down: {e}")),
        };
        let make = |type_: &str, ok_status: &str, reason: &str, message: String| {
            let transition = old
                .iter()
                .find(|c| c.type_ == type_ && c.status == ok_status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            NodeCondition {
                type_: type_.to_string(),
                status: ok_status.to_string(),
                reason: Some(reason.to_string()),
                message: Some(message),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: Some(transition),
            }
        };
        vec![
            if self.pressure.memory_pressure() {
                make(
                    "MemoryPressure",
                    "True",
                    "KubeletHasInsufficientMemory",
                    "kubelet has insufficient memory available".into(),
                )
            } else {
                make(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available".into(),
                )
            },
            if self.pressure.disk_pressure() {
                make(
                    "DiskPressure",
                    "True",
                    "KubeletHasDiskPressure",
                    "kubelet has disk pressure".into(),
                )
            } else {
                make(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure".into(),
                )
            },
            if self.pressure.pid_pressure() {
                make(
                    "PIDPressure",
                    "True",
                    "KubeletHasInsufficientPID",
                    "kubelet has insufficient PID available".into(),
                )
            } else {
                make(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available".into(),
                )
            },
            if ready {
                make("Ready", "True", "KubeletReady", message)
            } else {
                make("Ready", "False", "KubeletNotReady", message)
            },
        ]
    }

    async fn images(&self) -> Vec<ContainerImage> {
        let mut images: Vec<ContainerImage> = self
            .runtime
            .list_images()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|i| {
                let mut names = i.repo_tags.clone();
                names.extend(i.repo_digests.clone());
                ContainerImage {
                    names: Some(names),
                    size_bytes: Some(i.size as i64),
                }
            })
            .collect();
        images.sort_by_key(|i| std::cmp::Reverse(i.size_bytes));
        images.truncate(50);
        images
    }

    async fn status(&self, old: Option<&NodeStatus>) -> NodeStatus {
        let capacity = self.capacity();
        let old_conditions = old.and_then(|s| s.conditions.clone()).unwrap_or_default();
        NodeStatus {
            capacity: Some(capacity.clone()),
            allocatable: Some(capacity),
            conditions: Some(self.conditions(&old_conditions).await),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: self.node_ip.to_string(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: self.config.node_name.clone(),
                },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: i32::from(self.config.server.port),
                }),
            }),
            node_info: Some(NodeSystemInfo {
                machine_id: read_trimmed("/etc/machine-id"),
                system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid"),
                boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
                kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
                os_image: os_image(),
                container_runtime_version: self.runtime_version.clone(),
                kubelet_version: KUBELET_VERSION.into(),
                kube_proxy_version: String::new(),
                operating_system: "linux".into(),
                architecture: "amd64".into(),
                ..Default::default()
            }),
            images: Some(self.images().await),
            ..Default::default()
        }
    }

    /// Creates the Node (or finds the existing one); returns it.
    async fn register(&self) -> Result<Node, kube::Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let taints = self.config.register_with_taints.clone();
        let node = Node {
            metadata: ObjectMeta {
                name: Some(self.config.node_name.clone()),
                labels: Some(self.labels()),
                annotations: Some(
                    [(
                        "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                        "true".to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: (!taints.is_empty()).then_some(taints),
                ..Default::default()
            }),
            status: None,
        };
        match api.create(&PostParams::default(), &node).await {
            Ok(created) => {
                tracing::info!(node = %self.config.node_name, "registered node");
                Ok(created)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                tracing::info!(node = %self.config.node_name, "node already registered");
                api.get(&self.config.node_name).await
            }
            Err(e) => Err(e),
        }
    }

    async fn post_status(&self, node: &Node) -> Result<Node, kube::Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let status = self.status(node.status.as_ref()).await;
        let patch = serde_json::json!({ "status": status });
        api.patch_status(
            &self.config.node_name,
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
    }

    /// Writes the CNI config when the node has a podCIDR (from the control plane or config).
    fn ensure_cni(&self, node: &Node) {
        let cidr = node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.clone())
            .or_else(|| self.config.pod_cidr.clone());
        let Some(cidr) = cidr else {
            return;
        };
        let ipam_dir = self.config.root_dir.join("cni").join("networks");
        let Some(conf) = cni::bridge_conflist(&cidr, &self.config.cni_bridge_name, &ipam_dir)
        else {
            tracing::warn!(pod_cidr = %cidr, "podCIDR is not an IPv4 CIDR; no CNI config written");
            return;
        };
        match cni::write_conflist(&self.config.cni_conf_dir, &conf) {
            Ok(true) => {
                tracing::info!(pod_cidr = %cidr, dir = %self.config.cni_conf_dir.display(), "wrote CNI config")
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "write CNI config"),
        }
    }

    /// Renews the node's Lease. `last` is the Lease as this kubelet last wrote it: it is
    /// updated directly, as upstream's lease controller does, and read first only when that
    /// write conflicts or nothing was written yet.
    async fn renew_lease(&self, node: &Node, last: &mut Option<Lease>) -> Result<(), kube::Error> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), NODE_LEASE_NAMESPACE);
        let name = &self.config.node_name;
        let now = MicroTime(Utc::now());
        let renew = |lease: &mut Lease| {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = Some(name.clone());
            spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
            spec.renew_time = Some(now.clone());
        };
        if let Some(mut lease) = last.take() {
            renew(&mut lease);
            match api.replace(name, &PostParams::default(), &lease).await {
                Ok(written) => {
                    *last = Some(written);
                    return Ok(());
                }
                Err(e) => tracing::debug!(error = %e, "node lease update failed; reading it"),
            }
        }
        match api.get_opt(name).await? {
            Some(mut lease) => {
                renew(&mut lease);
                *last = Some(api.replace(name, &PostParams::default(), &lease).await?);
            }
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(NODE_LEASE_NAMESPACE.into()),
                        owner_references: node.metadata.uid.clone().map(|uid| {
                            vec![OwnerReference {
                                api_version: "v1".into(),
                                kind: "Node".into(),
                                name: name.clone(),
                                uid,
                                ..Default::default()
                            }]
                        }),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(name.clone()),
                        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                        renew_time: Some(now),
                        ..Default::default()
                    }),
                };
                *last = Some(api.create(&PostParams::default(), &lease).await?);
            }
        }
        Ok(())
    }

    /// Registers (retrying), then posts status every --node-status-update-frequency when it
    /// changed (at least every 5 min) and renews the Lease every 10 s.
    pub async fn run(
        self: Arc<Self>,
        registered: tokio::sync::watch::Sender<bool>,
        shutdown: Shutdown,
    ) {
        let mut node = loop {
            match self.register().await {
                Ok(node) => break node,
                Err(e) => tracing::warn!(error = %e, "register node; retrying"),
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        };
        self.ensure_cni(&node);
        match self.post_status(&node).await {
            Ok(updated) => node = updated,
            Err(e) => tracing::warn!(error = %e, "post node status"),
        }
        registered.send_replace(true);
        let lease_agent = self.clone();
        let lease_node = node.clone();
        let lease_shutdown = shutdown.clone();
        let lease = tokio::spawn(async move {
            let mut last = None;
            loop {
                if let Err(e) = lease_agent.renew_lease(&lease_node, &mut last).await {
                    tracing::warn!(error = %e, "renew node lease");
                }
                tokio::select! {
                    _ = lease_shutdown.wait() => return,
                    _ = tokio::time::sleep(LEASE_RENEW) => {}
                }
            }
        });
        let api: Api<Node> = Api::all(self.client.clone());
        let mut last_posted = tokio::time::Instant::now();
        let mut last_key = status_key(node.status.as_ref());
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = tokio::time::sleep(self.config.node_status_update_frequency) => {}
            }
            // From the apiserver's watch cache (resourceVersion=0), as upstream's first try
            // does: the status is a strategic-merge patch, so a copy a moment old is enough.
            match api
                .get_with(&self.config.node_name, &GetParams::any())
                .await
            {
                Ok(current) => node = current,
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    // Deleted behind our back: register again, as upstream does on restart.
                    match self.register().await {
                        Ok(n) => node = n,
                        Err(e) => {
                            tracing::warn!(error = %e, "re-register node");
                            continue;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "get node");
                    continue;
                }
            }
            self.ensure_cni(&node);
            let fresh = self.status(node.status.as_ref()).await;
            let key = status_key(Some(&fresh));
            if key != last_key || last_posted.elapsed() >= REPORT_FREQUENCY {
                match self.post_status(&node).await {
                    Ok(updated) => {
                        last_key = status_key(updated.status.as_ref());
                        last_posted = tokio::time::Instant::now();
                    }
                    Err(e) => tracing::warn!(error = %e, "post node status"),
                }
            }
        }
        lease.abort();
    }
}

/// The parts of a node status whose change is worth a post (not heartbeat times).
fn status_key(status: Option<&NodeStatus>) -> String {
    let Some(s) = status else {
        return String::new();
    };
    let conditions: Vec<(String, String, Option<String>)> = s
        .conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.clone(), c.status.clone(), c.message.clone()))
        .collect();
    serde_json::json!({
        "conditions": conditions,
        "capacity": s.capacity,
        "addresses": s.addresses,
        "images": s.images.as_ref().map(|i| i.len()),
    })
    .to_string()
}
