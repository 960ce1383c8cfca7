//! DaemonSets and StatefulSets against the real apiserver and kube-controller-manager, with the
//! test playing scheduler and kubelet: it binds daemon pods to the node their affinity names,
//! marks pods Running and Ready, finishes graceful deletions, and records what it saw.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "kcm/mod.rs"]
mod kcm;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kcm::{eventually, exists, ApiServer, Kcm};
use serde_json::Value;

/// One pod as the stand-in kubelet saw it.
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    node: Option<String>,
    ready: bool,
    deleting: bool,
    image: String,
}

type Snapshots = Arc<Mutex<Vec<Vec<Seen>>>>;

fn affinity_node(pod: &Value) -> Option<String> {
    let terms = pod["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        .as_array()?;
    terms
        .iter()
        .flat_map(|t| t["matchFields"].as_array().cloned().unwrap_or_default())
        .find(|f| f["key"] == "metadata.name" && f["operator"] == "In")
        .and_then(|f| f["values"][0].as_str().map(str::to_owned))
}

/// Plays scheduler and kubelet for `ns` until `stop`: binds pods pinned to a node, marks pods
/// Ready once they have existed for `ready_after`, force-finishes graceful deletions, and
/// appends every listing to `log`.
fn kubelet(
    server: &ApiServer,
    ns: &str,
    ready_after: Duration,
    log: Snapshots,
    stop: Arc<AtomicBool>,
) {
    let mut first_seen: HashMap<String, Instant> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let out = server.kubectl(&["get", "pods", "-n", ns, "-o", "json"]);
        if !out.success() {
            thread::sleep(Duration::from_millis(100));
            continue;
        }
        let items = out.json()["items"].as_array().cloned().unwrap_or_default();
        let seen: Vec<Seen> = items
            .iter()
            .map(|p| Seen {
                name: p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                node: p["spec"]["nodeName"].as_str().map(str::to_owned),
                ready: p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                }),
                deleting: p["metadata"]["deletionTimestamp"].is_string(),
                image: p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            })
            .collect();
        log.lock().expect("log").push(seen.clone());
        for (pod, s) in items.iter().zip(&seen) {
            let uid = pod["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let since = *first_seen.entry(uid).or_insert_with(Instant::now);
            if s.deleting {
                let _ = server.kubectl(&[
                    "delete",
                    "pod",
                    &s.name,
                    "-n",
                    ns,
                    "--grace-period=0",
                    "--force",
                ]);
                continue;
            }
            if s.node.is_none() {
                if let Some(node) = affinity_node(pod) {
                    let binding = serde_json::json!({
                        "apiVersion": "v1", "kind": "Binding",
                        "metadata": {"name": s.name},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
                    });
                    let path = format!("/api/v1/namespaces/{ns}/pods/{}/binding", s.name);
                    let _ = server.kubectl_stdin(
                        &["create", "--raw", &path, "-f", "-"],
                        &binding.to_string(),
                    );
                    continue;
                }
            }
            if !s.ready && since.elapsed() >= ready_after {
                let now = "2024-01-01T00:00:00Z";
                let patch = serde_json::json!({"status": {
                    "phase": "Running",
                    "conditions": [
                        {"type": "Ready", "status": "True", "lastTransitionTime": now},
                        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                    ],
                }});
                let _ = server.kubectl(&[
                    "patch",
                    "pod",
                    &s.name,
                    "-n",
                    ns,
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    &patch.to_string(),
                ]);
            }
        }
        thread::sleep(Duration::from_millis(150));
    }
}

fn node_yaml(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str, &str)]) -> String {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let taints: Vec<Value> = taints
        .iter()
        .map(|(k, v, e)| serde_json::json!({"key": k, "value": v, "effect": e}))
        .collect();
    serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "lastHeartbeatTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "2024-01-01T00:00:00Z"}],
        },
    })
    .to_string()
}

/// Registers a Ready node. The TaintNodesByCondition admission plugin gives every new node
/// `node.kubernetes.io/not-ready:NoSchedule` until the node lifecycle controller sees it Ready;
/// that controller is not running here, so the test lifts the taint in its place.
fn add_node(
    server: &ApiServer,
    name: &str,
    labels: &[(&str, &str)],
    taints: &[(&str, &str, &str)],
) {
    server.ok_stdin(&["create", "-f", "-"], &node_yaml(name, labels, taints));
    let node = server.json(&["get", "node", name]);
    if node["spec"]["taints"]
        .to_string()
        .contains("node.kubernetes.io/not-ready")
    {
        server.ok(&["taint", "node", name, "node.kubernetes.io/not-ready-"]);
    }
}

/// The live (not terminating) pods of the latest listing.
fn live(log: &Snapshots) -> Vec<Seen> {
    log.lock()
        .expect("log")
        .last()
        .map(|s| s.iter().filter(|p| !p.deleting).cloned().collect())
        .unwrap_or_default()
}

fn rollout_status(server: &ApiServer, ns: &str, what: &str) -> String {
    server.ok(&["rollout", "status", what, "-n", ns, "--timeout=90s"])
}

fn start_namespace(server: &ApiServer, ns: &str) {
    server.ok(&["create", "namespace", ns]);
    eventually("default service account", || {
        exists(server, &["get", "serviceaccount", "default", "-n", ns])
    });
}

const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {role: worker}
      tolerations: [{key: dedicated, operator: Equal, value: infra, effect: NoSchedule}]
      containers: [{name: c, image: "nginx:1"}]
"#;

#[test]
fn daemonset_runs_one_pod_per_eligible_node_and_rolls_out_within_max_unavailable() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &["--controllers=daemonset,serviceaccount"]);
    let ns = "ds";
    start_namespace(&server, ns);
    for (name, labels, taints) in [
        ("n1", vec![("role", "worker")], vec![]),
        ("n2", vec![("role", "worker")], vec![]),
        // Tainted, but the DaemonSet tolerates it.
        (
            "n3",
            vec![("role", "worker")],
            vec![("dedicated", "infra", "NoSchedule")],
        ),
        // Tainted without a toleration.
        (
            "n4",
            vec![("role", "worker")],
            vec![("gpu", "true", "NoSchedule")],
        ),
        // Not selected.
        ("n5", vec![("role", "db")], vec![]),
    ] {
        add_node(&server, name, &labels, &taints);
    }
    let log: Snapshots = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    thread::scope(|scope| {
        let (klog, kstop) = (log.clone(), stop.clone());
        let server = &server;
        scope.spawn(move || kubelet(server, ns, Duration::ZERO, klog, kstop));
        let _guard = StopOnDrop(stop.clone());

        server.ok_stdin(&["apply", "-n", ns, "-f", "-"], DAEMONSET);
        let nodes_with_pods = || {
            let mut nodes: Vec<String> = live(&log)
                .iter()
                .filter(|p| p.ready)
                .filter_map(|p| p.node.clone())
                .collect();
            nodes.sort();
            nodes
        };
        eventually("pods on n1, n2, n3", || {
            nodes_with_pods() == ["n1", "n2", "n3"]
        });
        rollout_status(server, ns, "ds/agent");
        let ds = server.json(&["get", "ds", "agent", "-n", ns]);
        assert_eq!(ds["status"]["desiredNumberScheduled"], 3, "{ds}");
        assert_eq!(ds["status"]["currentNumberScheduled"], 3, "{ds}");
        assert_eq!(ds["status"]["numberReady"], 3, "{ds}");
        assert_eq!(ds["status"]["updatedNumberScheduled"], 3, "{ds}");
        assert_eq!(ds["status"]["numberMisscheduled"], 0, "{ds}");
        assert_eq!(
            ds["status"]["observedGeneration"],
            ds["metadata"]["generation"]
        );
        // Created unbound with upstream's node pin and automatic tolerations.
        let pods = server.json(&["get", "pods", "-n", ns, "-l", "app=agent"]);
        for pod in pods["items"].as_array().expect("items") {
            assert!(affinity_node(pod).is_some(), "{pod}");
            let tolerations = pod["spec"]["tolerations"].to_string();
            for key in ["not-ready", "unreachable", "unschedulable", "disk-pressure"] {
                assert!(
                    tolerations.contains(&format!("node.kubernetes.io/{key}")),
                    "{tolerations}"
                );
            }
            assert!(pod["metadata"]["labels"]["controller-revision-hash"].is_string());
        }

        // A new node gets a pod; relabelling it away removes the pod again.
        add_node(server, "n6", &[("role", "worker")], &[]);
        eventually("pod on n6", || {
            nodes_with_pods() == ["n1", "n2", "n3", "n6"]
        });
        server.ok(&["label", "node", "n6", "role=db", "--overwrite"]);
        eventually("pod leaves n6", || {
            live(&log)
                .iter()
                .filter_map(|p| p.node.clone())
                .all(|n| n != "n6")
                && nodes_with_pods() == ["n1", "n2", "n3"]
        });
        // An untolerated NoExecute taint evicts.
        server.ok(&["taint", "node", "n2", "evict=now:NoExecute"]);
        eventually("pod evicted from n2", || nodes_with_pods() == ["n1", "n3"]);
        server.ok(&["taint", "node", "n2", "evict=now:NoExecute-"]);
        eventually("pod back on n2", || nodes_with_pods() == ["n1", "n2", "n3"]);
        rollout_status(server, ns, "ds/agent");

        // Roll out a new image: at most one of the three nodes without a ready pod at any time.
        let from = log.lock().expect("log").len();
        server.ok(&["set", "image", "ds/agent", "c=nginx:2", "-n", ns]);
        rollout_status(server, ns, "ds/agent");
        eventually("all pods at nginx:2", || {
            let pods = live(&log);
            pods.len() == 3 && pods.iter().all(|p| p.image == "nginx:2" && p.ready)
        });
        let snapshots = log.lock().expect("log")[from..].to_vec();
        for snapshot in &snapshots {
            let ready_nodes = snapshot
                .iter()
                .filter(|p| p.ready && !p.deleting && p.node.is_some())
                .count();
            assert!(ready_nodes >= 2, "maxUnavailable=1 exceeded: {snapshot:?}");
        }
        assert!(
            snapshots
                .iter()
                .any(|s| s.iter().filter(|p| p.ready && !p.deleting).count() == 2),
            "the rollout never took a node down, so the check above proved nothing"
        );

        // History and undo.
        let history = server.ok(&["rollout", "history", "ds/agent", "-n", ns]);
        assert!(history.contains('1') && history.contains('2'), "{history}");
        server.ok(&["rollout", "undo", "ds/agent", "-n", ns]);
        rollout_status(server, ns, "ds/agent");
        eventually("all pods back at nginx:1", || {
            let pods = live(&log);
            pods.len() == 3 && pods.iter().all(|p| p.image == "nginx:1" && p.ready)
        });
        let revisions = server.json(&["get", "controllerrevisions", "-n", ns, "-l", "app=agent"]);
        let mut numbers: Vec<(i64, String)> = revisions["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|r| {
                (
                    r["revision"].as_i64().unwrap_or(0),
                    r["data"]["spec"]["template"]["spec"]["containers"][0]["image"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
        numbers.sort();
        assert_eq!(numbers, [(2, "nginx:2".into()), (3, "nginx:1".into())]);
    });
}

const STATEFULSET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: "nginx:1"}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

/// The order in which pods first appear live with `image` in `snapshots`.
fn first_with_image(snapshots: &[Vec<Seen>], image: &str) -> Vec<String> {
    let mut order = Vec::new();
    for s in snapshots {
        for p in s.iter().filter(|p| p.image == image && !p.deleting) {
            if !order.contains(&p.name) {
                order.push(p.name.clone());
            }
        }
    }
    order
}

#[test]
fn statefulset_creates_in_order_updates_in_reverse_respects_partition_and_scales_down_from_the_top()
{
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &["--controllers=statefulset,serviceaccount"]);
    let ns = "sts";
    start_namespace(&server, ns);
    let log: Snapshots = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    thread::scope(|scope| {
        let (klog, kstop) = (log.clone(), stop.clone());
        let server = &server;
        // Pods turn Ready only after a second, so a controller that did not wait would be seen.
        scope.spawn(move || kubelet(server, ns, Duration::from_secs(1), klog, kstop));
        let _guard = StopOnDrop(stop.clone());

        server.ok_stdin(&["apply", "-n", ns, "-f", "-"], STATEFULSET);
        rollout_status(server, ns, "sts/web");
        eventually("three ready pods", || {
            live(&log).iter().filter(|p| p.ready).count() == 3
        });
        // Ordered creation: web-n+1 never existed before web-n was Ready.
        for snapshot in log.lock().expect("log").iter() {
            for p in snapshot {
                let ordinal: usize = p.name.trim_start_matches("web-").parse().expect("ordinal");
                if ordinal == 0 {
                    continue;
                }
                let before = format!("web-{}", ordinal - 1);
                assert!(
                    snapshot.iter().any(|q| q.name == before && q.ready),
                    "{} existed before {before} was ready: {snapshot:?}",
                    p.name
                );
            }
        }
        assert_eq!(
            first_with_image(&log.lock().expect("log"), "nginx:1"),
            ["web-0", "web-1", "web-2"]
        );

        // Identity and storage.
        let pod = server.json(&["get", "pod", "web-1", "-n", ns]);
        assert_eq!(pod["spec"]["hostname"], "web-1");
        assert_eq!(pod["spec"]["subdomain"], "web");
        assert_eq!(
            pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
            "web-1"
        );
        assert_eq!(
            pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
            "1"
        );
        let volumes = pod["spec"]["volumes"].to_string();
        assert!(volumes.contains("data-web-1"), "{volumes}");
        let claims = server.ok(&["get", "pvc", "-n", ns, "-o", "name"]);
        for i in 0..3 {
            assert!(
                claims.contains(&format!("persistentvolumeclaim/data-web-{i}")),
                "{claims}"
            );
        }
        let sts = server.json(&["get", "sts", "web", "-n", ns]);
        assert_eq!(sts["status"]["readyReplicas"], 3, "{sts}");
        assert_eq!(
            sts["status"]["currentRevision"],
            sts["status"]["updateRevision"]
        );
        assert_eq!(
            pod["metadata"]["labels"]["controller-revision-hash"],
            sts["status"]["updateRevision"]
        );

        // An image change updates pods from the highest ordinal down, one at a time.
        let from = log.lock().expect("log").len();
        server.ok(&["set", "image", "sts/web", "c=nginx:2", "-n", ns]);
        rollout_status(server, ns, "sts/web");
        eventually("all at nginx:2", || {
            let pods = live(&log);
            pods.len() == 3 && pods.iter().all(|p| p.image == "nginx:2" && p.ready)
        });
        let snapshots = log.lock().expect("log")[from..].to_vec();
        assert_eq!(
            first_with_image(&snapshots, "nginx:2"),
            ["web-2", "web-1", "web-0"]
        );
        for s in &snapshots {
            let down = 3 - s.iter().filter(|p| p.ready && !p.deleting).count();
            assert!(down <= 1, "more than one pod down during the update: {s:?}");
        }
        let sts = server.json(&["get", "sts", "web", "-n", ns]);
        assert_eq!(sts["status"]["updatedReplicas"], 3, "{sts}");
        assert_eq!(
            sts["status"]["currentRevision"],
            sts["status"]["updateRevision"]
        );

        // With partition 2 only web-2 moves to nginx:3.
        server.ok(&[
            "patch",
            "sts",
            "web",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":2}}}}"#,
        ]);
        server.ok(&["set", "image", "sts/web", "c=nginx:3", "-n", ns]);
        let out = rollout_status(server, ns, "sts/web");
        assert!(out.contains("partitioned roll out complete"), "{out}");
        eventually("web-2 at nginx:3 and ready", || {
            live(&log)
                .iter()
                .any(|p| p.name == "web-2" && p.image == "nginx:3" && p.ready)
        });
        let sts = server.json(&["get", "sts", "web", "-n", ns]);
        assert_eq!(sts["status"]["updatedReplicas"], 1, "{sts}");
        assert_ne!(
            sts["status"]["currentRevision"],
            sts["status"]["updateRevision"]
        );
        for name in ["web-0", "web-1"] {
            let pod = server.json(&["get", "pod", name, "-n", ns]);
            assert_eq!(pod["spec"]["containers"][0]["image"], "nginx:2", "{name}");
        }
        server.ok(&[
            "patch",
            "sts",
            "web",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
        ]);
        rollout_status(server, ns, "sts/web");
        eventually("all at nginx:3", || {
            let pods = live(&log);
            pods.len() == 3 && pods.iter().all(|p| p.image == "nginx:3" && p.ready)
        });

        // Scale down removes web-2 before web-1; claims stay.
        let from = log.lock().expect("log").len();
        server.ok(&["scale", "sts/web", "--replicas=1", "-n", ns]);
        eventually("one pod left", || {
            let pods = live(&log);
            pods.len() == 1 && pods[0].name == "web-0"
        });
        for s in &log.lock().expect("log")[from..] {
            let has = |n: &str| s.iter().any(|p| p.name == n);
            assert!(
                has("web-1") || !has("web-2"),
                "web-1 went before web-2: {s:?}"
            );
        }
        let claims = server.ok(&["get", "pvc", "-n", ns, "-o", "name"]);
        assert_eq!(claims.lines().count(), 3, "{claims}");

        // History and undo back to nginx:2.
        let history = server.ok(&["rollout", "history", "sts/web", "-n", ns]);
        assert!(history.contains('3'), "{history}");
        server.ok(&["rollout", "undo", "sts/web", "-n", ns]);
        rollout_status(server, ns, "sts/web");
        eventually("web-0 back at nginx:2", || {
            live(&log)
                .iter()
                .any(|p| p.name == "web-0" && p.image == "nginx:2" && p.ready)
        });
    });
}

/// `(name, uid, controller uid)` of the pods in `ns`, sorted by name.
fn pod_owners(server: &ApiServer, ns: &str) -> Vec<(String, String, String)> {
    let pods = server.json(&["get", "pods", "-n", ns]);
    let mut out: Vec<(String, String, String)> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let owner = p["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["controller"] == true)
                .map(|r| r["uid"].as_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                p["metadata"]["uid"].as_str().unwrap_or_default().to_owned(),
                owner,
            )
        })
        .collect();
    out.sort();
    out
}

/// Deletes `kind/name` with `--cascade=orphan`, re-creates it from `manifest` and checks that
/// the new owner adopts the very same pods (and its old revision) instead of replacing them.
fn orphan_and_readopt(server: &ApiServer, ns: &str, what: &str, manifest: &str, pods: usize) {
    let before = pod_owners(server, ns);
    assert_eq!(before.len(), pods, "{before:?}");
    let old_uid = server.json(&["get", what, "-n", ns])["metadata"]["uid"].clone();
    server.ok(&["delete", what, "-n", ns, "--cascade=orphan", "--wait=true"]);
    eventually(&format!("{what}'s pods orphaned"), || {
        let now = pod_owners(server, ns);
        now.len() == pods && now.iter().all(|(_, _, owner)| owner.is_empty())
    });
    server.ok_stdin(&["apply", "-n", ns, "-f", "-"], manifest);
    let new_uid = server.json(&["get", what, "-n", ns])["metadata"]["uid"].clone();
    assert_ne!(old_uid, new_uid);
    let new_uid = new_uid.as_str().expect("uid").to_owned();
    eventually(&format!("{what}'s pods adopted"), || {
        pod_owners(server, ns)
            .iter()
            .all(|(_, _, owner)| owner == &new_uid)
    });
    rollout_status(server, ns, what);
    let after = pod_owners(server, ns);
    let names_uids = |v: &[(String, String, String)]| -> Vec<(String, String)> {
        v.iter().map(|(n, u, _)| (n.clone(), u.clone())).collect()
    };
    assert_eq!(
        names_uids(&before),
        names_uids(&after),
        "{what} replaced its orphaned pods instead of adopting them"
    );
    let revisions = server.json(&["get", "controllerrevisions", "-n", ns]);
    let prefix = format!("{}-", what.split('/').nth(1).expect("kind/name"));
    let items: Vec<Value> = revisions["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .cloned()
        .collect();
    assert!(!items.is_empty(), "{revisions}");
    for r in &items {
        assert_eq!(
            r["metadata"]["ownerReferences"][0]["uid"], new_uid,
            "revision not adopted: {r}"
        );
    }
}

#[test]
fn daemonset_and_statefulset_recreated_after_orphaning_delete_adopt_their_pods() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(
        &server,
        &["--controllers=daemonset,statefulset,garbagecollector,serviceaccount"],
    );
    let ns = "adopt";
    start_namespace(&server, ns);
    for name in ["a1", "a2"] {
        add_node(&server, name, &[("role", "worker")], &[]);
    }
    let log: Snapshots = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    thread::scope(|scope| {
        let (klog, kstop) = (log.clone(), stop.clone());
        let server = &server;
        scope.spawn(move || kubelet(server, ns, Duration::ZERO, klog, kstop));
        let _guard = StopOnDrop(stop.clone());

        server.ok_stdin(&["apply", "-n", ns, "-f", "-"], DAEMONSET);
        rollout_status(server, ns, "ds/agent");
        orphan_and_readopt(server, ns, "ds/agent", DAEMONSET, 2);
        server.ok(&["delete", "ds/agent", "-n", ns, "--wait=true"]);
        eventually("daemon pods gone", || pod_owners(server, ns).is_empty());

        server.ok_stdin(&["apply", "-n", ns, "-f", "-"], STATEFULSET);
        rollout_status(server, ns, "sts/web");
        orphan_and_readopt(server, ns, "sts/web", STATEFULSET, 3);
    });
}

/// Stops the stand-in kubelet when the test body ends, also on panic.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
