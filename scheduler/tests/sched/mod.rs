//! What the scheduler e2e suites share: the kube-scheduler process, a kube-rs client, fake
//! Node objects and pods, and polling.

#![allow(dead_code, unused_imports)]

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use crate::common::{free_port, ApiServer, User};
pub use k8s_openapi::api::core::v1::{Node, Pod};
pub use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
pub use kube::{Client, Config};
pub use serde_json::json;

pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn scheduler_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kube-scheduler"))
}

pub struct SchedulerProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for SchedulerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!("--- kube-scheduler log (tail) ---");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

pub async fn client(path: &std::path::Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    Client::try_from(config).expect("kube client")
}

/// Creates a Ready node with allocatable resources, then removes the not-ready taint as the
/// node-lifecycle controller would.
pub async fn fake_node(
    nodes: &Api<Node>,
    name: &str,
    cpu: &str,
    labels: serde_json::Value,
    taints: serde_json::Value,
) {
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = json!(name);
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
    }))
    .expect("node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    let status = json!({"status": {
        "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "fake", "lastHeartbeatTime": "2024-01-01T00:00:00Z",
            "lastTransitionTime": "2024-01-01T00:00:00Z"}],
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("node status");
    let spec = json!({"spec": {"taints": taints}});
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .expect("node taints");
}

pub fn pod(name: &str, cpu: &str, spec_extra: serde_json::Value) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox",
        "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name}, "spec": spec}))
    .expect("pod")
}

pub async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn node_of(pods: &Api<Pod>, name: &str) -> Option<String> {
    pods.get(name).await.ok()?.spec?.node_name
}

pub struct Cluster {
    pub server: ApiServer,
    pub ns: String,
    pub admin: Client,
    pub port: u16,
    pub _sched: SchedulerProcess,
}

pub async fn cluster(ns: &str) -> Cluster {
    let server = ApiServer::start();
    let ns = server.namespace(ns);
    let admin = client(&server.kubeconfig(User::Admin)).await;
    let kubeconfig = server.kubeconfig_for_cert("system:kube-scheduler", &[]);
    let port = free_port();
    let err = server.dir().join("kube-scheduler.err");
    let child = Command::new(scheduler_binary())
        .args([
            format!("--kubeconfig={}", kubeconfig.display()),
            "--bind-address=127.0.0.1".to_string(),
            format!("--secure-port={port}"),
            "--leader-elect=false".to_string(),
            format!("--cert-dir={}", server.dir().join("sched-certs").display()),
        ])
        .stdin(Stdio::null())
        .stdout(File::create(server.dir().join("kube-scheduler.out")).expect("log"))
        .stderr(File::create(&err).expect("log"))
        .env("RUST_LOG", "info,scheduler=debug")
        .spawn()
        .expect("spawn kube-scheduler");
    Cluster {
        server,
        ns,
        admin,
        port,
        _sched: SchedulerProcess { child, log: err },
    }
}
