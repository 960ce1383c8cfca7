//! Two real kube-scheduler processes with leader election against the real kube-apiserver:
//! exactly one holds Lease kube-system/kube-scheduler and schedules; after `kill -9` of the
//! leader the standby takes the lease over and schedules new pods, and no pod's nodeName ever
//! changes (each pod is bound once).

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{free_port, ApiServer, User};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, watcher, Event as WatchEvent};
use kube::{Client, Config};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(60);

struct Scheduler {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Scheduler {
    fn start(server: &ApiServer, name: &str) -> Self {
        let kubeconfig = server.kubeconfig_for_cert("system:kube-scheduler", &[]);
        let port = free_port();
        let log = server.dir().join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_kube-scheduler"))
            .args([
                format!("--kubeconfig={}", kubeconfig.display()),
                "--bind-address=127.0.0.1".to_string(),
                format!("--secure-port={port}"),
                // Leader election is on by default; short timings keep the test quick.
                "--leader-elect-lease-duration=4s".to_string(),
                "--leader-elect-renew-deadline=3s".to_string(),
                "--leader-elect-retry-period=1s".to_string(),
                format!("--cert-dir={}", server.dir().join(name).display()),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .spawn()
            .expect("spawn kube-scheduler");
        Self { child, log, port }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` on the secure port as the admin (only /healthz, /readyz and /livez are open
    /// to anonymous callers).
    fn curl(&self, path: &str) -> String {
        let out = Command::new("curl")
            .args([
                "-sk",
                "--max-time",
                "10",
                "-H",
                &format!("Authorization: Bearer {}", common::ADMIN_TOKEN),
                &format!("https://127.0.0.1:{}{path}", self.port),
            ])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- {} (tail) ---", self.log.display());
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

async fn client(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    Client::try_from(config).expect("kube client")
}

async fn fake_node(nodes: &Api<Node>, name: &str) {
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
    }))
    .expect("node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    let status = json!({"status": {
        "capacity": {"cpu": "8", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "8", "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "fake", "lastHeartbeatTime": "2024-01-01T00:00:00Z",
            "lastTransitionTime": "2024-01-01T00:00:00Z"}],
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("node status");
    nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"taints": []}})),
        )
        .await
        .expect("node taints");
}

async fn create_pods(pods: &Api<Pod>, prefix: &str, n: usize) {
    for i in 0..n {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{prefix}-{i}")},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
    }
}

async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
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

async fn holder(leases: &Api<Lease>) -> Option<(String, i32)> {
    let spec = leases.get("kube-scheduler").await.ok()?.spec?;
    Some((
        spec.holder_identity.filter(|h| !h.is_empty())?,
        spec.lease_transitions.unwrap_or(0),
    ))
}

/// Every nodeName each pod was ever seen with, from a watch started before any binding.
type Seen = Arc<Mutex<HashMap<String, Vec<String>>>>;

fn record_node_names(pods: Api<Pod>) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let out = seen.clone();
    let task = tokio::spawn(async move {
        let mut stream = watcher(pods, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            let pod = match ev {
                Ok(WatchEvent::Apply(p) | WatchEvent::InitApply(p)) => p,
                _ => continue,
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            let Some(node) = pod.spec.and_then(|s| s.node_name) else {
                continue;
            };
            let mut seen = out.lock().expect("lock");
            let names = seen.entry(name).or_default();
            if names.last() != Some(&node) {
                names.push(node);
            }
        }
    });
    (seen, task)
}

async fn bound(seen: &Seen, prefix: &str, n: usize) -> Option<()> {
    let seen = seen.lock().expect("lock");
    (0..n)
        .all(|i| seen.contains_key(&format!("{prefix}-{i}")))
        .then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_schedules_and_a_standby_takes_over_after_kill_9() {
    let server = ApiServer::start();
    let ns = server.namespace("sched-leader");
    let admin = client(&server.kubeconfig(User::Admin)).await;
    let nodes: Api<Node> = Api::all(admin.clone());
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let leases: Api<Lease> = Api::namespaced(admin.clone(), "kube-system");
    fake_node(&nodes, "node-a").await;
    fake_node(&nodes, "node-b").await;
    let (seen, watch) = record_node_names(pods.clone());

    let mut scheds = vec![
        Scheduler::start(&server, "sched-1"),
        Scheduler::start(&server, "sched-2"),
    ];
    let (leader_id, transitions) = wait_for("a lease holder", async || holder(&leases).await).await;
    let leader = wait_for("the holder's identity in its log", async || {
        scheds.iter().position(|s| s.log().contains(&leader_id))
    })
    .await;
    let standby = 1 - leader;
    // Both candidates announced themselves; only the holder's identity is in one log.
    wait_for("the standby's candidacy", async || {
        scheds[standby]
            .log()
            .contains("attempting to acquire leader lease")
            .then_some(())
    })
    .await;
    assert!(!scheds[standby].log().contains(&leader_id));

    create_pods(&pods, "before", 5).await;
    wait_for("pods bound by the leader", async || {
        bound(&seen, "before", 5).await
    })
    .await;
    assert!(
        !scheds[standby].log().contains("caches synced; scheduling"),
        "the standby must not schedule:\n{}",
        scheds[standby].log()
    );
    assert_eq!(holder(&leases).await.map(|h| h.0), Some(leader_id.clone()));
    let health = scheds[leader].curl("/healthz?verbose");
    assert!(health.contains("[+]leaderElection ok"), "{health}");
    assert_eq!(scheds[leader].curl("/healthz/leaderElection"), "ok");
    assert_eq!(scheds[standby].curl("/healthz/leaderElection"), "ok");

    // kill -9: no release, so the standby waits out the lease duration.
    scheds[leader].child.kill().expect("kill -9 the leader");
    scheds[leader].child.wait().expect("reap the leader");
    create_pods(&pods, "after", 5).await;

    let (new_id, new_transitions) = wait_for("the standby takes the lease", async || {
        holder(&leases).await.filter(|(id, _)| *id != leader_id)
    })
    .await;
    assert!(scheds[standby].log().contains(&new_id));
    assert_eq!(new_transitions, transitions + 1);
    wait_for("new pods bound by the new leader", async || {
        bound(&seen, "after", 5).await
    })
    .await;
    assert!(scheds[standby].log().contains("caches synced; scheduling"));

    // Give stray bindings a moment to show up in the watch, then check nothing moved.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 10, "{seen:?}");
    for (pod, names) in &seen {
        assert_eq!(names.len(), 1, "{pod} changed nodes: {names:?}");
    }
    for i in 0..5 {
        let p = pods.get(&format!("before-{i}")).await.expect("pod");
        assert_eq!(
            p.spec.and_then(|s| s.node_name).as_deref(),
            seen[&format!("before-{i}")].first().map(String::as_str)
        );
    }
    watch.abort();
    drop(scheds.pop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_leader_election_flags_exit_64_with_the_field() {
    let out = Command::new(env!("CARGO_BIN_EXE_kube-scheduler"))
        .args([
            "--leader-elect-lease-duration=5s",
            "--leader-elect-renew-deadline=10s",
        ])
        .output()
        .expect("run kube-scheduler");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("leaderElection.leaseDuration"), "{stderr}");
}
