//! Node lifecycle against the real apiserver and kube-controller-manager: silent nodes go Unknown
//! and get tainted, pods leave per their tolerations, losing every node at once evicts nothing,
//! and node-ipam hands out distinct pod CIDRs.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "kcm/mod.rs"]
mod kcm;

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use k8s_openapi::chrono::{DateTime, Utc};
use kcm::{eventually, ApiServer, FakeNodes, Kcm};
use serde_json::{json, Value};

// ---- helpers over kubectl

/// Short node timings: Unknown after 4s of silence, checked every second.
const FAST_NODES: [&str; 3] = [
    "--node-monitor-grace-period=4s",
    "--node-monitor-period=1s",
    "--node-startup-grace-period=10s",
];

fn start_server() -> ApiServer {
    // Pods here carry exactly the tolerations the test gives them.
    ApiServer::start_with(&["--disable-admission-plugins=DefaultTolerationSeconds"])
}

/// A namespace whose default ServiceAccount (made by the controller-manager) exists.
fn namespace(server: &ApiServer, name: &str) -> String {
    server.ok(&["create", "namespace", name]);
    eventually("default service account", || {
        kcm::exists(server, &["get", "serviceaccount", "default", "-n", name])
    });
    name.to_owned()
}

fn pod(server: &ApiServer, ns: &str, name: &str, node: &str, tolerations: Value) {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
            "tolerations": tolerations,
        },
    });
    server.ok_stdin(&["apply", "-f", "-"], &pod.to_string());
}

fn unreachable_toleration(seconds: Option<i64>) -> Value {
    let mut t = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"});
    if let Some(s) = seconds {
        t["tolerationSeconds"] = json!(s);
    }
    json!([t])
}

fn get(server: &ApiServer, args: &[&str]) -> Option<Value> {
    let out = server.kubectl(&[args, &["-o", "json"]].concat());
    out.success().then(|| out.json())
}

fn node(server: &ApiServer, name: &str) -> Value {
    get(server, &["get", "node", name]).unwrap_or(Value::Null)
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn taint<'a>(node: &'a Value, key: &str, effect: &str) -> Option<&'a Value> {
    node["spec"]["taints"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key && t["effect"] == effect)
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
}

/// When the pod's deletion was requested (deletionTimestamp minus its grace period), if it was.
fn deletion_requested(server: &ApiServer, ns: &str, name: &str) -> Option<DateTime<Utc>> {
    let pod = get(server, &["get", "pod", name, "-n", ns])?;
    let at = pod["metadata"].get("deletionTimestamp").map(time)?;
    let grace = pod["metadata"]["deletionGracePeriodSeconds"]
        .as_i64()
        .unwrap_or(0);
    Some(at - k8s_openapi::chrono::TimeDelta::seconds(grace))
}

fn evicted(server: &ApiServer, ns: &str, name: &str) -> bool {
    match get(server, &["get", "pod", name, "-n", ns]) {
        Some(pod) => pod["metadata"]["deletionTimestamp"].is_string(),
        None => true,
    }
}

fn pod_ready(server: &ApiServer, ns: &str, name: &str) -> bool {
    get(server, &["get", "pod", name, "-n", ns])
        .is_some_and(|p| condition(&p, "Ready").is_some_and(|c| c["status"] == "True"))
}

/// Polls `cond` until it holds, running `invariant` (which panics on violation) every round.
fn eventually_while(desc: &str, mut invariant: impl FnMut(), mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + kcm::DEADLINE;
    loop {
        invariant();
        if cond() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {desc}");
        thread::sleep(Duration::from_millis(250));
    }
}

/// Runs `invariant` for `window`: for checking that something does not happen.
fn holds_for(window: Duration, mut invariant: impl FnMut()) {
    let end = Instant::now() + window;
    while Instant::now() < end {
        invariant();
        thread::sleep(Duration::from_millis(250));
    }
}

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

#[test]
fn silent_node_goes_unknown_gets_tainted_and_its_pods_leave_per_toleration() {
    let server = start_server();
    let nodes = FakeNodes::start(&server, &["n1", "n2", "n3"]);
    let _kcm = Kcm::start(&server, &FAST_NODES);
    let ns = namespace(&server, "lost");
    const N: i64 = 6;
    pod(&server, &ns, "evict-now", "n1", json!([]));
    pod(
        &server,
        &ns,
        "evict-later",
        "n1",
        unreachable_toleration(Some(N)),
    );
    pod(&server, &ns, "stays", "n1", unreachable_toleration(None));
    pod(&server, &ns, "healthy", "n2", json!([]));
    eventually("pods ready", || {
        ["evict-now", "evict-later", "stays", "healthy"]
            .iter()
            .all(|p| pod_ready(&server, &ns, p))
    });
    // Nothing on the live nodes is ever touched.
    let untouched = || {
        assert!(
            !evicted(&server, &ns, "healthy"),
            "pod on a live node evicted"
        );
        for n in ["n2", "n3"] {
            let node = node(&server, n);
            assert!(
                taint(&node, UNREACHABLE, "NoExecute").is_none(),
                "live node {n} tainted: {node}"
            );
        }
    };
    // Give the controller time to settle on healthy nodes first.
    holds_for(Duration::from_secs(3), untouched);

    nodes.stop_node("n1");
    eventually_while("n1 Ready=Unknown", untouched, || {
        let n1 = node(&server, "n1");
        condition(&n1, "Ready").is_some_and(|c| c["status"] == "Unknown")
    });
    let n1 = node(&server, "n1");
    let ready = condition(&n1, "Ready").expect("ready");
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    for c in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert_eq!(condition(&n1, c).expect(c)["status"], "Unknown", "{c}");
    }
    eventually_while("unreachable NoExecute taint", untouched, || {
        taint(&node(&server, "n1"), UNREACHABLE, "NoExecute").is_some()
    });
    let n1 = node(&server, "n1");
    let added = time(&taint(&n1, UNREACHABLE, "NoExecute").expect("taint")["timeAdded"]);
    eventually_while("unreachable NoSchedule taint", untouched, || {
        taint(&node(&server, "n1"), UNREACHABLE, "NoSchedule").is_some()
    });

    // No toleration: at once, with the event and the DisruptionTarget condition.
    eventually_while("evict-now evicted", untouched, || {
        evicted(&server, &ns, "evict-now")
    });
    let gone_at = deletion_requested(&server, &ns, "evict-now").expect("terminating");
    assert!(
        gone_at - added <= k8s_openapi::chrono::TimeDelta::seconds(5),
        "evicted {gone_at}, tainted {added}"
    );
    let p = get(&server, &["get", "pod", "evict-now", "-n", &ns]).expect("still terminating");
    let dt = condition(&p, "DisruptionTarget").expect("DisruptionTarget");
    assert_eq!(dt["status"], "True");
    assert_eq!(dt["reason"], "DeletionByTaintManager");
    let events = server.json(&["get", "events", "-n", &ns]);
    assert!(
        events["items"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| {
                e["reason"] == "TaintManagerEviction" && e["involvedObject"]["name"] == "evict-now"
            })),
        "{events}"
    );
    // Pods of the lost node are marked not ready.
    eventually_while("stays marked not ready", untouched, || {
        !pod_ready(&server, &ns, "stays")
    });

    // tolerationSeconds=N: not before timeAdded+N, not much after.
    eventually_while("evict-later evicted", untouched, || {
        evicted(&server, &ns, "evict-later")
    });
    let later_at = deletion_requested(&server, &ns, "evict-later").expect("terminating");
    let after = (later_at - added).num_seconds();
    assert!(
        (N..=N + 5).contains(&after),
        "evicted {after}s after the taint, want {N}..={}",
        N + 5
    );

    // Tolerating forever: stays, well past the others.
    holds_for(Duration::from_secs(4), || {
        untouched();
        assert!(
            !evicted(&server, &ns, "stays"),
            "pod tolerating forever evicted"
        );
    });

    // The kubelet comes back: Ready again, taints gone.
    nodes.resume_node("n1");
    eventually_while("n1 untainted", untouched, || {
        let n1 = node(&server, "n1");
        condition(&n1, "Ready").is_some_and(|c| c["status"] == "True")
            && taint(&n1, UNREACHABLE, "NoExecute").is_none()
            && taint(&n1, UNREACHABLE, "NoSchedule").is_none()
    });
    assert!(!evicted(&server, &ns, "stays"));

    // Cordoning is mirrored as the unschedulable NoSchedule taint, and uncordoning removes it.
    let unschedulable = "node.kubernetes.io/unschedulable";
    server.ok(&["cordon", "n3"]);
    eventually("unschedulable taint", || {
        taint(&node(&server, "n3"), unschedulable, "NoSchedule").is_some()
    });
    server.ok(&["uncordon", "n3"]);
    eventually("unschedulable taint removed", || {
        taint(&node(&server, "n3"), unschedulable, "NoSchedule").is_none()
    });
    nodes.stop();
}

#[test]
fn losing_every_node_at_once_evicts_nothing_until_one_returns() {
    let server = start_server();
    let nodes = FakeNodes::start(&server, &["a1", "a2"]);
    let _kcm = Kcm::start(&server, &FAST_NODES);
    let ns = namespace(&server, "outage");
    pod(&server, &ns, "p1", "a1", json!([]));
    pod(&server, &ns, "p2", "a2", json!([]));
    eventually("pods ready", || {
        pod_ready(&server, &ns, "p1") && pod_ready(&server, &ns, "p2")
    });
    let nothing_evicted = || {
        for (p, n) in [("p1", "a1"), ("p2", "a2")] {
            assert!(
                !evicted(&server, &ns, p),
                "{p} evicted in a full disruption"
            );
            let node = node(&server, n);
            assert!(
                taint(&node, UNREACHABLE, "NoExecute").is_none(),
                "{n} tainted NoExecute in a full disruption: {node}"
            );
        }
    };
    nodes.stop_nodes(&["a1", "a2"]);
    eventually_while("both nodes Unknown", nothing_evicted, || {
        ["a1", "a2"].iter().all(|n| {
            condition(&node(&server, n), "Ready").is_some_and(|c| c["status"] == "Unknown")
        })
    });
    // Several monitor periods with every node down: still nothing.
    holds_for(Duration::from_secs(8), nothing_evicted);

    // One node returns: the zone is no longer fully disrupted, so the other one's pods go.
    nodes.resume_node("a1");
    eventually("a2 tainted and p2 evicted", || {
        taint(&node(&server, "a2"), UNREACHABLE, "NoExecute").is_some()
            && evicted(&server, &ns, "p2")
    });
    assert!(!evicted(&server, &ns, "p1"));
    nodes.stop();
}

fn pod_cidrs(server: &ApiServer) -> Vec<(String, String, Vec<String>)> {
    let list = server.json(&["get", "nodes"]);
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|n| {
            let cidrs = n["spec"]["podCIDRs"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            (
                n["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                n["spec"]["podCIDR"].as_str().unwrap_or_default().to_owned(),
                cidrs,
            )
        })
        .collect()
}

fn bare_node(server: &ApiServer, name: &str, pod_cidr: Option<&str>) {
    let mut node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    if let Some(c) = pod_cidr {
        node["spec"] = json!({"podCIDR": c, "podCIDRs": [c]});
    }
    server.ok_stdin(&["create", "-f", "-"], &node.to_string());
}

#[test]
fn every_node_gets_a_distinct_pod_cidr_and_existing_ones_are_kept() {
    let server = ApiServer::start();
    // A node that already has a CIDR from an earlier run.
    bare_node(&server, "old", Some("10.244.0.0/24"));
    let _kcm = Kcm::start(
        &server,
        &[
            "--allocate-node-cidrs",
            "--cluster-cidr=10.244.0.0/16",
            "--controllers=node-ipam-controller",
        ],
    );
    for i in 0..5 {
        bare_node(&server, &format!("w{i}"), None);
    }
    eventually("all nodes have a pod cidr", || {
        let nodes = pod_cidrs(&server);
        nodes.len() == 6 && nodes.iter().all(|(_, c, _)| !c.is_empty())
    });
    let nodes = pod_cidrs(&server);
    let distinct: BTreeSet<&str> = nodes.iter().map(|(_, c, _)| c.as_str()).collect();
    assert_eq!(distinct.len(), 6, "{nodes:?}");
    for (name, cidr, cidrs) in &nodes {
        assert_eq!(cidrs, &vec![cidr.clone()], "{name}");
        assert!(
            cidr.starts_with("10.244.") && cidr.ends_with(".0/24"),
            "{name}: {cidr}"
        );
    }
    let old = nodes.iter().find(|(n, _, _)| n == "old").expect("old");
    assert_eq!(old.1, "10.244.0.0/24");
}

#[test]
fn exhausted_cluster_cidr_reports_cidr_not_available_until_a_node_is_deleted() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(
        &server,
        &[
            "--allocate-node-cidrs",
            "--cluster-cidr=10.10.0.0/23,fd00:10::/63",
            "--node-cidr-mask-size-ipv6=64",
            "--controllers=node-ipam-controller",
        ],
    );
    bare_node(&server, "x1", None);
    bare_node(&server, "x2", None);
    eventually("two nodes with dual-stack cidrs", || {
        let nodes = pod_cidrs(&server);
        nodes.len() == 2 && nodes.iter().all(|(_, _, c)| c.len() == 2)
    });
    let nodes = pod_cidrs(&server);
    let v4: BTreeSet<&str> = nodes.iter().map(|(_, _, c)| c[0].as_str()).collect();
    let v6: BTreeSet<&str> = nodes.iter().map(|(_, _, c)| c[1].as_str()).collect();
    assert_eq!(
        v4,
        BTreeSet::from(["10.10.0.0/24", "10.10.1.0/24"]),
        "{nodes:?}"
    );
    assert_eq!(v6, BTreeSet::from(["fd00:10::/64", "fd00:10:0:1::/64"]));

    bare_node(&server, "x3", None);
    eventually("CIDRNotAvailable event for x3", || {
        let events = server.json(&["get", "events", "-n", "default"]);
        events["items"].as_array().is_some_and(|e| {
            e.iter()
                .any(|e| e["reason"] == "CIDRNotAvailable" && e["involvedObject"]["name"] == "x3")
        })
    });
    assert!(pod_cidrs(&server)
        .iter()
        .any(|(n, c, _)| n == "x3" && c.is_empty()));
    let x1 = pod_cidrs(&server)
        .into_iter()
        .find(|(n, _, _)| n == "x1")
        .expect("x1");
    server.ok(&["delete", "node", "x1"]);
    eventually("x3 gets x1's cidrs", || {
        pod_cidrs(&server)
            .iter()
            .any(|(n, _, c)| n == "x3" && c == &x1.2)
    });
}
