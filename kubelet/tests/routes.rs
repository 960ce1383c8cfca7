//! The kubelet's routes to the other nodes' podCIDRs (`--pod-network-routes`, protocol 75) and
//! its masquerade chain (no NAT between pods), with the real apiserver, containerd and kubelet
//! binary, all inside a throwaway network namespace: the test binary re-runs itself there (`ip
//! netns exec`), so the apiserver is on the namespace's loopback and every route and iptables
//! rule the kubelet writes stays in the namespace.
//!
//! Needs root (ip netns add); the namespace has a link on 198.18.0.1/24 (the benchmarking
//! range) standing in for the nodes' L2 network.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "common/containerd.rs"]
mod containerd;

#[path = "common/kubelet.rs"]
mod kubelet_process;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{eventually, ApiServer};
use containerd::Containerd;
use kubelet_process::Kubelet;

/// The kubelet's routing protocol number (kubelet::routes::ROUTE_PROTOCOL).
const PROTO: &str = "75";
const WAIT: Duration = Duration::from_secs(60);
/// This suite's pod networks (10.100-149.x.0/24) and bridge names.
const NET: (u32, &str) = (100, "krt");
/// Set in the re-run inside the namespace.
const INSIDE: &str = "KUBELET_ROUTES_NETNS";

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace with lo and a link `krt0` on 198.18.0.1/24; deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Self {
        let name = format!(
            "krt-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        // A veth pair with both ends inside (the machine may lack the dummy link type).
        ip(&[
            "-n", &ns.0, "link", "add", "krt0", "type", "veth", "peer", "name", "krt1",
        ]);
        ip(&["-n", &ns.0, "addr", "add", "198.18.0.1/24", "dev", "krt0"]);
        ip(&["-n", &ns.0, "link", "set", "krt1", "up"]);
        ip(&["-n", &ns.0, "link", "set", "krt0", "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Runs the ignored test `name` of this binary inside a fresh namespace; fails if it fails.
fn run_inside(name: &str) {
    let ns = Netns::new();
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(exe)
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INSIDE, &ns.0)
        .output()
        .expect("run the test inside the namespace");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{name} inside {}:\n{text}",
        ns.0
    );
}

/// Our routes: (destination, gateway) from `ip route show proto 75`.
fn our_routes() -> BTreeSet<(String, String)> {
    ip(&["route", "show", "proto", PROTO])
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let via = words.iter().position(|w| *w == "via")?;
            Some((words[0].to_string(), words.get(via + 1)?.to_string()))
        })
        .collect()
}

fn routes(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|(d, v)| (d.to_string(), v.to_string()))
        .collect()
}

#[track_caller]
fn wait_routes(want: &BTreeSet<(String, String)>) {
    eventually("the kubelet's routes", WAIT, || {
        let got = our_routes();
        if &got == want {
            Ok(())
        } else {
            Err(format!("want {want:?}\ngot  {got:?}"))
        }
    });
}

/// The nat table as `iptables-save -t nat` prints it (inside the namespace).
fn nat_table() -> String {
    let out = Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .expect("run iptables-save");
    assert!(
        out.status.success(),
        "iptables-save: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The rules of the kubelet's masquerade chain, and how many times POSTROUTING jumps to it;
/// `None` when the chain does not exist.
fn masquerade_chain() -> Option<(Vec<String>, usize)> {
    let nat = nat_table();
    let chain = kubelet::masquerade::CHAIN;
    if !nat.lines().any(|l| l.starts_with(&format!(":{chain} "))) {
        return None;
    }
    let rules = nat
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("-A {chain} ")))
        .map(str::to_string)
        .collect();
    let jumps = nat
        .lines()
        .filter(|l| {
            l.starts_with("-A POSTROUTING ")
                && l.ends_with(&format!("-j {chain}"))
                && l.contains(kubelet::masquerade::JUMP_COMMENT)
        })
        .count();
    Some((rules, jumps))
}

/// The chain wanted for this kubelet's range `own` and the nodes' ranges `others`: RETURN for
/// every pod range (sorted, own included) and multicast, then MASQUERADE from the own range.
fn masquerade_rules(own: &str, others: &[&str]) -> Vec<String> {
    let mut ranges: BTreeSet<&str> = others.iter().copied().collect();
    ranges.insert(own);
    let mut sorted: Vec<&str> = ranges.into_iter().collect();
    // The chain lists the ranges in numeric order.
    sorted.sort_by_key(|r| {
        r.split(['.', '/'])
            .map(|p| p.parse::<u32>().unwrap_or(0))
            .collect::<Vec<_>>()
    });
    let mut rules: Vec<String> = sorted.iter().map(|r| format!("-d {r} -j RETURN")).collect();
    rules.push("-d 224.0.0.0/4 -j RETURN".to_string());
    rules.push(format!("-s {own} -j MASQUERADE"));
    rules
}

#[track_caller]
fn wait_masquerade(want: &[String]) {
    eventually(
        "the kubelet's masquerade chain",
        WAIT,
        || match masquerade_chain() {
            Some((rules, 1)) if rules == want => Ok(()),
            got => Err(format!("want {want:?} with one jump\ngot  {got:?}")),
        },
    );
}

/// A Node with `pod_cidr` (may be empty) and InternalIP `address`, as an admin creates it.
fn create_node(server: &ApiServer, name: &str, pod_cidr: &str, address: &str) {
    let spec = if pod_cidr.is_empty() {
        serde_json::json!({})
    } else {
        serde_json::json!({"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]})
    };
    let node = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": spec,
    });
    server.ok_stdin(&["create", "-f", "-"], &node.to_string());
    set_address(server, name, address);
}

fn set_address(server: &ApiServer, name: &str, address: &str) {
    let patch = serde_json::json!({"status": {"addresses": [
        {"type": "InternalIP", "address": address},
        {"type": "Hostname", "address": name},
    ]}});
    server.ok(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);
}

/// Lets nodes list and watch all Nodes, which the Node authorizer alone does not (a node reads
/// only its own Node); kubeadm init creates the same binding.
fn allow_nodes_to_list_nodes(server: &ApiServer) {
    let name = "kubeadm:kubelet-pod-network-routes";
    server.ok(&[
        "create",
        "clusterrole",
        name,
        "--verb=get,list,watch",
        "--resource=nodes",
    ]);
    server.ok(&[
        "create",
        "clusterrolebinding",
        name,
        &format!("--clusterrole={name}"),
        "--group=system:nodes",
    ]);
}

fn node_kubeconfig(server: &ApiServer) -> impl FnOnce(&str) -> std::path::PathBuf + '_ {
    |node| server.kubeconfig_for_cert(&format!("system:node:{node}"), &["system:nodes"])
}

#[test]
fn routes_follow_other_nodes_pod_cidrs() {
    run_inside("routes_follow_other_nodes_pod_cidrs_in_netns");
}

#[test]
#[ignore = "runs inside a network namespace, started by routes_follow_other_nodes_pod_cidrs"]
fn routes_follow_other_nodes_pod_cidrs_in_netns() {
    assert!(
        std::env::var_os(INSIDE).is_some(),
        "run through the outer test"
    );
    let server = ApiServer::start();
    let containerd = Containerd::start();
    // 10.<k>.x.0/24: the kubelet's own range is 10.<k>.<small>.0/24, the fake nodes' above 200.
    let k = NET.0 + std::process::id() % 50;
    let net = |third: u32| format!("10.{k}.{third}.0/24");

    // Routes of others: one the fake node "foreign" also claims, one nobody claims; and a
    // stale route of ours for a node that no longer exists.
    ip(&[
        "route",
        "add",
        &net(204),
        "via",
        "198.18.0.99",
        "proto",
        "static",
    ]);
    ip(&["route", "add", &net(250), "via", "198.18.0.98"]);
    ip(&[
        "route",
        "add",
        &net(205),
        "via",
        "198.18.0.16",
        "proto",
        PROTO,
    ]);
    let foreign_before = ip(&[
        "route",
        "show",
        "table",
        "main",
        "root",
        &format!("10.{k}.0.0/16"),
    ])
    .lines()
    .filter(|l| !l.contains(&format!("proto {PROTO}")))
    .map(str::to_string)
    .collect::<Vec<_>>();
    assert_eq!(foreign_before.len(), 2, "{foreign_before:?}");

    // An open kubelet API, for /metrics without client certificates.
    let open_api = [
        "--anonymous-auth=true".to_string(),
        "--authorization-mode=AlwaysAllow".to_string(),
    ];
    let kubelet = Kubelet::start(
        &containerd,
        "routes",
        NET,
        node_kubeconfig(&server),
        &open_api,
    );
    server.wait_node_ready(&kubelet.node, WAIT);

    create_node(&server, "node-a", &net(201), "198.18.0.11");
    create_node(&server, "node-b", &net(202), "198.18.0.12");
    // Off-link next hop: not on any subnet of this namespace.
    create_node(&server, "node-off", &net(203), "198.19.5.5");
    // Another owner's route holds this destination.
    create_node(&server, "node-foreign", &net(204), "198.18.0.15");
    // The kubelet's own range.
    create_node(&server, "node-own", &kubelet.pod_cidr, "198.18.0.14");
    // A range and no address yet / an address and no range yet.
    create_node(&server, "node-late", "", "198.18.0.17");

    // The Node authorizer lets a node read only its own Node: without RBAC for listing nodes
    // the kubelet says so, and nothing is touched (not even the stale route).
    eventually("the kubelet to report it cannot list nodes", WAIT, || {
        let logs = kubelet.logs();
        if logs.contains("cannot list Nodes for the pod network routes") {
            Ok(())
        } else {
            Err(logs)
        }
    });
    assert_eq!(our_routes(), routes(&[(&net(205), "198.18.0.16")]));
    assert_eq!(masquerade_chain(), None, "{}", nat_table());

    allow_nodes_to_list_nodes(&server);
    // The first full list deletes the stale route and adds the on-link, non-conflicting ones.
    wait_routes(&routes(&[
        (&net(201), "198.18.0.11"),
        (&net(202), "198.18.0.12"),
    ]));
    // Pod to pod stays unmasqueraded for every node's range, routed or not (off-link, another
    // owner's route, the own range listed by another Node); the rest from the own range is
    // masqueraded. POSTROUTING jumps to the chain once.
    let own = kubelet.pod_cidr.clone();
    wait_masquerade(&masquerade_rules(
        &own,
        &[&net(201), &net(202), &net(203), &net(204)],
    ));

    // The kubelet API's /metrics counts them.
    let port = kubelet
        .args
        .iter()
        .find_map(|a| a.strip_prefix("--port="))
        .expect("the harness sets --port")
        .to_string();
    eventually("kubelet_pod_network_routes 2", WAIT, || {
        let out = Command::new("curl")
            .args(["-sk", &format!("https://127.0.0.1:{port}/metrics")])
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.lines().any(|l| l == "kubelet_pod_network_routes 2") {
            Ok(())
        } else {
            Err(text)
        }
    });

    // A new InternalIP moves the route; a podCIDR set later adds one.
    set_address(&server, "node-a", "198.18.0.21");
    server.ok(&[
        "patch",
        "node",
        "node-late",
        "--type=merge",
        "-p",
        &serde_json::json!({"spec": {"podCIDR": net(206), "podCIDRs": [net(206)]}}).to_string(),
    ]);
    wait_routes(&routes(&[
        (&net(201), "198.18.0.21"),
        (&net(202), "198.18.0.12"),
        (&net(206), "198.18.0.17"),
    ]));
    wait_masquerade(&masquerade_rules(
        &own,
        &[&net(201), &net(202), &net(203), &net(204), &net(206)],
    ));

    // A deleted node loses its route; a node recreated with another range moves it.
    server.ok(&["delete", "node", "node-b"]);
    server.ok(&["delete", "node", "node-late"]);
    create_node(&server, "node-late", &net(207), "198.18.0.17");
    wait_routes(&routes(&[
        (&net(201), "198.18.0.21"),
        (&net(207), "198.18.0.17"),
    ]));
    wait_masquerade(&masquerade_rules(
        &own,
        &[&net(201), &net(203), &net(204), &net(207)],
    ));

    // Someone flushes the chain and deletes the jump: the periodic reconcile (30 s) puts both
    // back, the jump still once.
    let chain = kubelet::masquerade::CHAIN;
    let iptables = |args: &[&str]| {
        let out = Command::new("iptables")
            .args(args)
            .output()
            .expect("run iptables");
        assert!(
            out.status.success(),
            "iptables {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    iptables(&["-w", "-t", "nat", "-F", chain]);
    let mut delete = vec!["-w", "-t", "nat", "-D", "POSTROUTING"];
    delete.extend(kubelet::masquerade::jump_spec());
    iptables(&delete);
    assert_eq!(masquerade_chain(), Some((Vec::new(), 0)));
    wait_masquerade(&masquerade_rules(
        &own,
        &[&net(201), &net(203), &net(204), &net(207)],
    ));

    // Others' routes were never touched, and no route of ours shares their destinations.
    let foreign_after = ip(&[
        "route",
        "show",
        "table",
        "main",
        "root",
        &format!("10.{k}.0.0/16"),
    ])
    .lines()
    .filter(|l| !l.contains(&format!("proto {PROTO}")))
    .map(str::to_string)
    .collect::<Vec<_>>();
    assert_eq!(foreign_after, foreign_before);
    let logs = kubelet.logs();
    for (node, why) in [
        ("node-off", "not on a subnet of this host"),
        ("node-foreign", "a route of another owner"),
        ("node-own", "overlaps this node's"),
    ] {
        assert!(
            logs.lines().any(|l| l.contains(node) && l.contains(why)),
            "no skip logged for {node}:\n{logs}"
        );
    }

    // A kubelet stops; its routes stay (pods keep running). Another one with routes off, on the
    // same cluster, installs none.
    drop(kubelet);
    ip(&["route", "flush", "proto", PROTO]);
    // The chain stays too; kubeadm reset's removal deletes the jump and the chain.
    assert!(masquerade_chain().is_some());
    assert!(kubelet::masquerade::remove().expect("remove the masquerade chain"));
    assert_eq!(masquerade_chain(), None, "{}", nat_table());
    assert!(!nat_table().contains(chain), "{}", nat_table());
    assert!(!kubelet::masquerade::remove().expect("nothing left to remove"));
    let off = Kubelet::start(
        &containerd,
        "routes-off",
        NET,
        node_kubeconfig(&server),
        &["--pod-network-routes=false".to_string()],
    );
    server.wait_node_ready(&off.node, WAIT);
    // A negative: watch for a bounded time (the enabled kubelet routed within a second).
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert_eq!(our_routes(), BTreeSet::new(), "{}", off.logs());
        assert!(!nat_table().contains(chain), "{}", nat_table());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!off.logs().contains("pod network route"), "{}", off.logs());
}
