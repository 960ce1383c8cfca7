//! kube-proxy end to end: the real binary in a throwaway network namespace, fed by the real
//! apiserver, proven with real traffic from pod namespaces (iptables and nftables modes).

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;
mod lab;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::ApiServer;
use lab::{is_root, wait_for, Lab};

const WEB_IP: &str = "10.96.100.10";
const EMPTY_IP: &str = "10.96.100.11";
const STICKY_IP: &str = "10.96.100.12";
const LOCAL_IP: &str = "10.96.100.13";
const DNS_IP: &str = "10.96.100.53";
const NODE_NAME: &str = "node-a";

fn kube_proxy_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kube-proxy")
}

/// A Service without selector at a fixed cluster IP.
fn service(name: &str, ip: &str, extra_spec: &str, proto: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  clusterIP: {ip}\n  ports:\n  - name: p\n    port: 80\n    targetPort: 8080\n    protocol: {proto}\n{extra_spec}"
    )
}

/// An EndpointSlice for `svc` with (ip, nodeName, ready) endpoints on `port`.
fn slice(svc: &str, proto: &str, port: u16, eps: &[(&str, &str, bool)]) -> String {
    let mut s = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {svc}-1\n  namespace: default\n  labels:\n    kubernetes.io/service-name: {svc}\n  annotations:\n    endpoints.kubernetes.io/last-change-trigger-time: \"{}\"\naddressType: IPv4\nports:\n- name: p\n  port: {port}\n  protocol: {proto}\nendpoints:\n",
        now_rfc3339()
    );
    if eps.is_empty() {
        s = s.replace("endpoints:\n", "endpoints: []\n");
    }
    for (ip, node, ready) in eps {
        s.push_str(&format!(
            "- addresses: [\"{ip}\"]\n  nodeName: {node}\n  conditions:\n    ready: {ready}\n"
        ));
    }
    s
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after epoch")
        .as_secs();
    let t = kube_proxy::healthz::go_time(std::time::UNIX_EPOCH + Duration::from_secs(secs));
    // "2024-03-01 09:00:00 +0000 UTC" -> "2024-03-01T09:00:00Z"
    let mut parts = t.split(' ');
    format!(
        "{}T{}Z",
        parts.next().expect("date"),
        parts.next().expect("time")
    )
}

fn apply(server: &ApiServer, yaml: &str) {
    server.ok_stdin(&["apply", "-f", "-"], yaml);
}

/// Sum of the packet counters of every rule in an iptables chain of the node.
fn chain_packets(lab: &Lab, table: &str, chain: &str) -> u64 {
    let out = lab.sh(
        &lab.node,
        &format!("iptables -w -t {table} -L {chain} -n -v -x"),
    );
    out.lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

struct Proxy {
    id: usize,
    metrics: String,
    healthz: String,
}

fn start_proxy(lab: &mut Lab, server: &ApiServer, mode: &str) -> Proxy {
    let kubeconfig = server.kubeconfig_for_cert("system:kube-proxy", &[]);
    let apiserver: SocketAddr = format!("127.0.0.1:{}", server.port)
        .parse()
        .expect("apiserver addr");
    let kubeconfig = lab.node_kubeconfig(&kubeconfig, apiserver);
    let node = lab.node.clone();
    let metrics = format!("{}:10249", lab.node_ip);
    let healthz = format!("{}:10256", lab.node_ip);
    let id = lab.spawn(
        &node,
        &[
            kube_proxy_bin(),
            &format!("--kubeconfig={}", kubeconfig.display()),
            &format!("--proxy-mode={mode}"),
            &format!("--hostname-override={NODE_NAME}"),
            "--cluster-cidr=10.244.0.0/16",
            &format!("--metrics-bind-address={metrics}"),
            &format!("--healthz-bind-address={healthz}"),
            "--iptables-min-sync-period=0s",
            "-v=4",
        ],
        "kube-proxy.log",
    );
    let proxy = Proxy {
        id,
        metrics: format!("http://{metrics}/metrics"),
        healthz: format!("http://{healthz}/healthz"),
    };
    let started = Instant::now();
    wait_for_log_free(lab, &proxy, started);
    proxy
}

fn wait_for_log_free(lab: &mut Lab, proxy: &Proxy, started: Instant) {
    let node = lab.node.clone();
    loop {
        if let Ok(Some(status)) = lab.child(proxy.id).try_wait() {
            panic!(
                "kube-proxy exited with {status}:\n{}",
                lab.log("kube-proxy.log")
            );
        }
        let ok = lab
            .curl(&node, &proxy.metrics)
            .ok()
            .and_then(|m| metric(&m, "kubeproxy_sync_proxy_rules_last_timestamp_seconds"));
        if ok.unwrap_or(0.0) > 0.0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "kube-proxy never synced:\n{}",
            lab.log("kube-proxy.log")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Answers seen for `n` requests from `ns` to `url` (errors as "ERR<code>").
fn answers(lab: &Lab, ns: &str, url: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| match lab.curl(ns, url) {
            Ok(b) => b,
            Err(c) => format!("ERR{c}"),
        })
        .collect()
}

/// Counts the UDP conntrack entries in the node namespace DNATed to `endpoint`.
fn conntrack_to(lab: &Lab, endpoint: &str) -> usize {
    let out = lab.try_sh(&lab.node, "conntrack -L -p udp 2>/dev/null");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("dst={DNS_IP}")) && l.contains(&format!("src={endpoint} ")))
        .count()
}

/// Everything the issue asks of one mode, in one lab (the apiserver start dominates the cost).
fn traffic_suite(mode: &str) {
    if !is_root() {
        eprintln!("skipping: kube-proxy traffic tests need root (network namespaces, iptables)");
        return;
    }
    let server = ApiServer::start();
    let mut lab = Lab::new(3);
    let node = lab.node.clone();
    let (p0, p1, client) = (
        lab.pods[0].ip.to_string(),
        lab.pods[1].ip.to_string(),
        lab.pods[2].ns.clone(),
    );
    let pod0_ns = lab.pods[0].ns.clone();
    lab.http_server(0, 8080, "pod0");
    lab.http_server(1, 8080, "pod1");

    // A user's chain and rule, and a user's nft table, that must survive everything.
    lab.sh(
        &node,
        "iptables -w -N USER-CHAIN && iptables -w -A USER-CHAIN -j RETURN && \
         iptables -w -I INPUT -s 192.0.2.1 -j USER-CHAIN && \
         nft add table ip user-table && nft add chain ip user-table user-chain",
    );

    apply(
        &server,
        &service(
            "web",
            WEB_IP,
            "  type: NodePort\n  externalIPs: [\"203.0.113.10\"]\n",
            "TCP",
        )
        .replace(
            "targetPort: 8080\n",
            "targetPort: 8080\n    nodePort: 30080\n",
        ),
    );
    apply(
        &server,
        &slice(
            "web",
            "TCP",
            8080,
            &[(&p0, NODE_NAME, true), (&p1, "node-b", true)],
        ),
    );
    apply(&server, &service("empty", EMPTY_IP, "", "TCP"));
    apply(
        &server,
        &service("sticky", STICKY_IP, "  sessionAffinity: ClientIP\n", "TCP"),
    );
    apply(
        &server,
        &slice(
            "sticky",
            "TCP",
            8080,
            &[(&p0, NODE_NAME, true), (&p1, "node-b", true)],
        ),
    );
    apply(
        &server,
        &service(
            "local",
            LOCAL_IP,
            "  type: NodePort\n  internalTrafficPolicy: Local\n  externalTrafficPolicy: Local\n",
            "TCP",
        )
        .replace(
            "targetPort: 8080\n",
            "targetPort: 8080\n    nodePort: 30081\n",
        ),
    );
    apply(
        &server,
        &slice(
            "local",
            "TCP",
            8080,
            &[(&p0, NODE_NAME, true), (&p1, "node-b", true)],
        ),
    );

    apply(&server, &service("dns", DNS_IP, "", "UDP"));
    apply(
        &server,
        &slice(
            "dns",
            "UDP",
            5353,
            &[(&p0, NODE_NAME, true), (&p1, "node-b", true)],
        ),
    );
    let proxy = start_proxy(&mut lab, &server, mode);
    let web = format!("http://{WEB_IP}/");

    // ClusterIP balances across both endpoints.
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 2 && Instant::now() < deadline {
        if let Ok(b) = lab.curl(&client, &web) {
            seen.insert(b);
        }
    }
    assert_eq!(
        seen,
        BTreeSet::from(["pod0".to_owned(), "pod1".to_owned()]),
        "ClusterIP must reach both backends; log:\n{}",
        lab.log("kube-proxy.log")
    );

    // NodePort on the node address, from the host (outside the cluster).
    let body = lab.curl_host(&format!("http://{}:30080/", lab.node_ip));
    assert!(
        body == "pod0" || body == "pod1",
        "NodePort answered {body:?}"
    );
    if mode == "iptables" {
        // And on 127.0.0.1 of the node (route_localnet), as upstream's iptables mode.
        let b = lab.curl(&node, "http://127.0.0.1:30080/");
        assert!(
            matches!(b.as_deref(), Ok("pod0") | Ok("pod1")),
            "localhost NodePort: {b:?}"
        );
    }

    // No endpoints: refused at once, not a hang.
    let t = Instant::now();
    let r = lab.curl(&client, &format!("http://{EMPTY_IP}/"));
    assert_eq!(
        r,
        Err(7),
        "connection to a Service without endpoints must be refused"
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "refusal took {:?}",
        t.elapsed()
    );

    // ClientIP affinity sticks to one backend.
    let sticky = answers(&lab, &client, &format!("http://{STICKY_IP}/"), 8);
    assert!(
        sticky.iter().all(|a| a == &sticky[0]) && sticky[0].starts_with("pod"),
        "affinity answers {sticky:?}"
    );

    // internalTrafficPolicy Local: only the endpoint on this node.
    let local = answers(&lab, &client, &format!("http://{LOCAL_IP}/"), 8);
    assert!(local.iter().all(|a| a == "pod0"), "local answers {local:?}");

    // externalTrafficPolicy Local: the NodePort, from off the node, also only reaches pod0.
    for _ in 0..6 {
        let b = lab.curl_host(&format!("http://{}:30081/", lab.node_ip));
        assert_eq!(
            b, "pod0",
            "externalTrafficPolicy Local reached a remote endpoint"
        );
    }

    // An external IP, reached from a pod (routed through the node).
    let b = lab.curl(&client, "http://203.0.113.10/");
    assert!(
        matches!(b.as_deref(), Ok("pod0") | Ok("pod1")),
        "external IP answered {b:?}"
    );

    // Hairpin: pod0 reaches itself through the Service.
    let mut hairpin = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !hairpin && Instant::now() < deadline {
        hairpin = lab.curl(&pod0_ns, &web).as_deref() == Ok("pod0");
    }
    assert!(hairpin, "a backend must reach itself through its Service");

    // Metrics and healthz before the next change.
    let health = lab.curl(&node, &proxy.healthz).expect("healthz answers");
    let health: serde_json::Value = serde_json::from_str(&health).expect("healthz JSON");
    assert!(health["lastUpdated"].is_string() && health["currentTime"].is_string());
    let m1 = lab.curl(&node, &proxy.metrics).expect("metrics");
    let last1 =
        metric(&m1, "kubeproxy_sync_proxy_rules_last_timestamp_seconds").expect("last sync");
    let np1 = metric(&m1, "kubeproxy_network_programming_duration_seconds_count").unwrap_or(0.0);
    if mode == "iptables" {
        assert!(
            metric(&m1, "kubeproxy_sync_proxy_rules_iptables{table=\"nat\"}").unwrap_or(0.0) > 0.0
        );
    }

    // Incremental: give "empty" an endpoint; web's chain keeps its counters (iptables) or its
    // rule handles (nftables), i.e. it was not rewritten.
    let web_before = web_fingerprint(&lab, mode);
    std::thread::sleep(Duration::from_millis(1100));
    apply(
        &server,
        &slice("empty", "TCP", 8080, &[(&p1, "node-b", true)]),
    );
    wait_for("empty answers", Duration::from_secs(20), || {
        lab.curl(&client, &format!("http://{EMPTY_IP}/")).as_deref() == Ok("pod1")
    });
    let web_after = web_fingerprint(&lab, mode);
    assert_eq!(
        web_before, web_after,
        "an unrelated Service's chain was rewritten"
    );
    let m2 = lab.curl(&node, &proxy.metrics).expect("metrics");
    let last2 =
        metric(&m2, "kubeproxy_sync_proxy_rules_last_timestamp_seconds").expect("last sync");
    assert!(
        last2 > last1,
        "last sync timestamp must advance ({last1} -> {last2})"
    );
    let np2 = metric(&m2, "kubeproxy_network_programming_duration_seconds_count").unwrap_or(0.0);
    assert!(
        np2 > np1,
        "network programming latency must be observed ({np1} -> {np2})"
    );
    assert!(
        metric(
            &m2,
            "kubeproxy_sync_partial_proxy_rules_duration_seconds_count"
        )
        .unwrap_or(0.0)
            >= 1.0
    );

    // UDP conntrack: the removed endpoint's entries go, the other's stay. (The Service was
    // programmed by the first sync, so the cleanup for a UDP Service that just got endpoints
    // cannot race these flows.)
    wait_for(
        "udp entries to both endpoints",
        Duration::from_secs(30),
        || {
            // Each redirection is a new socket, so a new source port and a new flow.
            let _ = lab.try_sh(
                &client,
                &format!("bash -c 'for i in 1 2 3 4 5 6; do echo x > /dev/udp/{DNS_IP}/80; done'"),
            );
            conntrack_to(&lab, &p0) > 0 && conntrack_to(&lab, &p1) > 0
        },
    );
    apply(
        &server,
        &slice("dns", "UDP", 5353, &[(&p1, "node-b", true)]),
    );
    wait_for("stale udp entries deleted", Duration::from_secs(20), || {
        conntrack_to(&lab, &p0) == 0
    });
    let remaining = conntrack_to(&lab, &p1);
    assert!(
        remaining > 0,
        "the remaining endpoint's entries must stay; conntrack:\n{}\nlog:\n{}",
        String::from_utf8_lossy(&lab.try_sh(&node, "conntrack -L -p udp").stdout),
        lab.log("kube-proxy.log")
            .lines()
            .filter(|l| l.contains("conntrack") || l.contains("synced"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // A rollout: web's endpoints change (pod0 goes away). Traffic follows at once; in
    // nftables mode only the endpoint ranges change (over netlink), not web's rules.
    let web_before = web_fingerprint(&lab, mode);
    apply(
        &server,
        &slice("web", "TCP", 8080, &[(&p1, "node-b", true)]),
    );
    wait_for(
        "web answers only from pod1",
        Duration::from_secs(20),
        || answers(&lab, &client, &web, 6).iter().all(|a| a == "pod1"),
    );
    if mode == "nftables" {
        assert_eq!(
            web_before,
            web_fingerprint(&lab, mode),
            "a rollout rewrote the Service's rules"
        );
    }
    let b = lab.curl_host(&format!("http://{}:30080/", lab.node_ip));
    assert_eq!(b, "pod1", "NodePort after the rollout");

    // The user's rules survived every sync.
    assert_user_rules(&lab);

    // --cleanup removes everything kube-proxy created and nothing else.
    lab.kill(proxy.id);
    let out = lab.try_sh(&node, &format!("{} --cleanup", kube_proxy_bin()));
    assert!(
        out.status.success(),
        "--cleanup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let save = lab.sh(&node, "iptables-save");
    assert!(
        !save.contains("KUBE-"),
        "KUBE-* rules left after --cleanup:\n{save}"
    );
    let tables = lab.sh(&node, "nft list tables");
    assert!(
        !tables.contains("kube-proxy"),
        "kube-proxy table left: {tables}"
    );
    assert_user_rules(&lab);
}

fn assert_user_rules(lab: &Lab) {
    let save = lab.sh(&lab.node, "iptables-save -t filter");
    assert!(save.contains(":USER-CHAIN"), "user chain gone:\n{save}");
    assert!(
        save.contains("-A INPUT -s 192.0.2.1/32 -j USER-CHAIN"),
        "user rule gone:\n{save}"
    );
    assert!(
        save.contains("-A USER-CHAIN -j RETURN"),
        "user chain emptied:\n{save}"
    );
    let nft = lab.sh(&lab.node, "nft list table ip user-table");
    assert!(nft.contains("user-chain"), "user nft table changed:\n{nft}");
}

/// What proves web's rules were not rewritten: packet counters of its KUBE-SVC chain
/// (iptables) or the handles of its service chain's rules (nftables).
fn web_fingerprint(lab: &Lab, mode: &str) -> String {
    if mode == "iptables" {
        let chain = format!(
            "KUBE-SVC-{}",
            kube_proxy::changes::hash16("default/web:ptcp")
        );
        let n = chain_packets(lab, "nat", &chain);
        assert!(n > 0, "web's chain must have counted packets");
        n.to_string()
    } else {
        let chain = kube_proxy::nftables::service_chain("default/web:p", "tcp");
        lab.sh(
            &lab.node,
            &format!("nft -a list chain ip kube-proxy {chain} | grep -o 'handle [0-9]*'"),
        )
    }
}

#[test]
fn iptables_mode_serves_cluster_ips_node_ports_and_cleans_up() {
    traffic_suite("iptables");
}

#[test]
fn nftables_mode_serves_cluster_ips_node_ports_and_cleans_up() {
    traffic_suite("nftables");
}

#[test]
fn bad_flags_exit_64() {
    let out = std::process::Command::new(kube_proxy_bin())
        .arg("--no-such-flag")
        .output()
        .expect("run kube-proxy");
    assert_eq!(out.status.code(), Some(64));
    let out = std::process::Command::new(kube_proxy_bin())
        .arg("--proxy-mode=ipvs")
        .output()
        .expect("run kube-proxy");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ipvs"));
}
