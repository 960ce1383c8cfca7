//! Stand-in kubelets for suites without real nodes: Node objects whose Lease and Ready condition
//! stay fresh, and pods bound to them marked Running and Ready.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::chrono::Utc;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::{ApiServer, User};

/// One fake node: its name, CPU capacity, extra labels and taints.
#[derive(Clone, Debug)]
pub struct FakeNode {
    pub name: String,
    pub cpu: String,
    pub labels: Value,
    pub taints: Value,
}

impl FakeNode {
    /// A node with 4 CPUs, 8Gi and no extra labels or taints.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            cpu: "4".to_owned(),
            labels: json!({}),
            taints: json!([]),
        }
    }

    pub fn cpu(mut self, cpu: &str) -> Self {
        self.cpu = cpu.to_owned();
        self
    }

    pub fn labels(mut self, labels: Value) -> Self {
        self.labels = labels;
        self
    }

    pub fn taints(mut self, taints: Value) -> Self {
        self.taints = taints;
        self
    }
}

/// Stand-in kubelets: registers nodes, keeps each one's Lease and Ready heartbeat fresh every
/// half second until the node is stopped, marks pods bound to running nodes Running and Ready, and
/// finishes their graceful deletions (as a kubelet does once containers are gone).
pub struct FakeNodes {
    stopped: Arc<Mutex<HashSet<String>>>,
    quit: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

const HEARTBEAT: Duration = Duration::from_millis(500);

impl FakeNodes {
    /// Creates `nodes` (Ready, 4 CPUs) and starts heartbeating them.
    pub fn start(server: &ApiServer, nodes: &[&str]) -> Self {
        let nodes: Vec<FakeNode> = nodes.iter().map(|n| FakeNode::new(n)).collect();
        Self::start_nodes(server, &nodes)
    }

    /// Creates `nodes` as described and starts heartbeating them.
    pub fn start_nodes(server: &ApiServer, nodes: &[FakeNode]) -> Self {
        let kubeconfig = server.kubeconfig(User::Admin);
        let specs = nodes.to_vec();
        let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let stopped = Arc::new(Mutex::new(HashSet::new()));
        let quit = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (stopped, quit) = (stopped.clone(), quit.clone());
            thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let client = client(&kubeconfig).await;
                    for node in &specs {
                        create_node(&client, node).await;
                    }
                    let _ = ready_tx.send(());
                    while !quit.load(Ordering::Relaxed) {
                        // One snapshot per round, so nodes stopped together stop together.
                        let stopped_now = stopped.lock().expect("lock").clone();
                        let running: Vec<&String> =
                            names.iter().filter(|n| !stopped_now.contains(*n)).collect();
                        for name in &running {
                            heartbeat(&client, name).await;
                        }
                        tend_pods(&client, &running).await;
                        tokio::time::sleep(HEARTBEAT).await;
                    }
                });
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("fake nodes registered");
        Self {
            stopped,
            quit,
            thread: Some(thread),
        }
    }

    /// The kubelet of `name` goes silent: no Lease renewals, no status, no pod care.
    pub fn stop_node(&self, name: &str) {
        self.stopped.lock().expect("lock").insert(name.to_owned());
    }

    /// Every node in `names` goes silent in the same instant.
    pub fn stop_nodes(&self, names: &[&str]) {
        let mut stopped = self.stopped.lock().expect("lock");
        stopped.extend(names.iter().map(|n| n.to_string()));
    }

    /// The kubelet of `name` comes back.
    pub fn resume_node(&self, name: &str) {
        self.stopped.lock().expect("lock").remove(name);
    }

    /// Stops every kubelet and the background thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.quit.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FakeNodes {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("client config");
    kube::Client::try_from(config).expect("client")
}

async fn create_node(client: &kube::Client, spec: &FakeNode) {
    let name = spec.name.as_str();
    let mut labels = json!({
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
    });
    if let Some(extra) = spec.labels.as_object() {
        for (k, v) in extra {
            labels[k] = v.clone();
        }
    }
    let resources = json!({"cpu": spec.cpu, "memory": "8Gi", "pods": "110"});
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": spec.taints},
        "status": {"capacity": resources, "allocatable": resources},
    }))
    .expect("node");
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    heartbeat(client, name).await;
}

async fn heartbeat(client: &kube::Client, name: &str) {
    let now = Utc::now();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40},
    }))
    .expect("lease");
    let mut current = match leases.get_opt(name).await {
        Ok(Some(l)) => l,
        Ok(None) => match leases.create(&PostParams::default(), &lease).await {
            Ok(l) => l,
            Err(_) => return,
        },
        Err(_) => return,
    };
    current.spec.get_or_insert_with(Default::default).renew_time = Some(MicroTime(now));
    let _ = leases.replace(name, &PostParams::default(), &current).await;
    let stamp = now.to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true);
    let condition = |type_: &str, status: &str, reason: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": reason,
               "lastHeartbeatTime": stamp, "lastTransitionTime": stamp})
    };
    let patch = json!({"status": {"conditions": [
        condition("Ready", "True", "KubeletReady"),
        condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        condition("PIDPressure", "False", "KubeletHasSufficientPID"),
    ]}});
    let _ = Api::<Node>::all(client.clone())
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await;
}

async fn tend_pods(client: &kube::Client, running: &[&String]) {
    let Ok(pods) = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
    else {
        return;
    };
    for pod in pods {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        if !node.is_some_and(|n| running.iter().any(|r| **r == n)) {
            continue;
        }
        let (Some(ns), Some(name)) = (pod.metadata.namespace.clone(), pod.metadata.name.clone())
        else {
            continue;
        };
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if pod.metadata.deletion_timestamp.is_some() {
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            };
            let _ = api.delete(&name, &dp).await;
            continue;
        }
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if !ready {
            let now = Utc::now().to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true);
            let patch = json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            ]}});
            let _ = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                .await;
        }
    }
}
