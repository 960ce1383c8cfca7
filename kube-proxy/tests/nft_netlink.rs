//! The nftables proxier's netlink path against the running kernel: each test re-executes
//! itself inside a throwaway network namespace (root only), programs the `kube-proxy` table
//! and reads it back with `nft`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;

use kube_proxy::changes::{Endpoint, Protocol, ServiceKey, ServicePort};
use kube_proxy::nftables::netlink::{Batch, Conn, Element};
use kube_proxy::{Config, Mode, NodePortAddresses, Options, Proxier};

const INNER: &str = "KUBE_PROXY_NETLINK_TEST_INNER";

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Runs `body` inside a new network namespace: returns true in the parent after the child
/// (this test binary, filtered to `name`) passed there, false in the child.
fn in_netns(name: &str) -> bool {
    in_netns_with(name, &[])
}

/// Whether the calling test should run its body here: false when not root (skipped) and in
/// the parent, which re-ran the test inside a fresh network namespace.
fn inside_netns(name: &str) -> bool {
    if !is_root() {
        eprintln!("skipping: needs root (network namespace)");
        return false;
    }
    !in_netns(name)
}

/// Runs `f` with no `nft` binary reachable on PATH, so only the netlink path can work.
fn without_nft<T>(f: impl FnOnce() -> T) -> T {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::set_var("PATH", "/nonexistent");
    let out = f();
    std::env::set_var("PATH", path);
    out
}

/// As `in_netns`, running the child through `wrapper` (a command prefix).
fn in_netns_with(name: &str, wrapper: &[&str]) -> bool {
    if std::env::var_os(INNER).is_some() {
        return false;
    }
    let ns = format!("kpnl-{}-{}", std::process::id(), name.len());
    let ok = Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip netns add {ns}");
    let exe = std::env::current_exe().expect("test executable");
    let out = Command::new("ip")
        .args(["netns", "exec", &ns])
        .args(wrapper)
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .output();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let out = out.expect("run the test in the namespace");
    assert!(
        out.status.success(),
        "{name} failed in its namespace:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

fn nft(args: &[&str]) -> String {
    let out = Command::new("nft").args(args).output().expect("run nft");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `nft list <kind> ip kube-proxy <name>`: one set or map of the table.
fn listed(kind: &str, name: &str) -> String {
    nft(&["list", kind, "ip", "kube-proxy", name])
}

fn nft_input(input: &str) {
    use std::io::Write as _;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run nft");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write nft input");
    assert!(
        child.wait().expect("nft").success(),
        "nft -f - failed:\n{input}"
    );
}

fn elements_line(listing: &str) -> String {
    // `elements = { a, b,\n c }` may wrap; join everything after "elements = ".
    let Some(start) = listing.find("elements = {") else {
        return String::new();
    };
    let rest = &listing[start + "elements = {".len()..];
    let end = rest.find('}').expect("closing brace");
    rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A hash set's elements, in sorted order (nft lists them in hash order).
fn sorted_elements(listing: &str) -> String {
    let line = elements_line(listing);
    let mut v: Vec<&str> = line.split(", ").filter(|e| !e.is_empty()).collect();
    v.sort();
    v.join(", ")
}

#[test]
fn netlink_batch_writes_interval_map_elements_as_nft_would() {
    if !inside_netns("netlink_batch_writes_interval_map_elements_as_nft_would") {
        return;
    }
    nft_input(
        "add table ip kube-proxy\n\
         add map ip kube-proxy m { typeof numgen random mod 65536 : ip daddr . th dport ; flags interval ; }\n\
         add set ip kube-proxy pairs { type ipv4_addr . ipv4_addr ; }\n\
         add element ip kube-proxy m { 0-65535 : 10.9.9.9 . 1, 65536-131071 : 10.9.9.8 . 2 }\n",
    );
    let mut conn = Conn::open().expect("netlink socket");
    // Replace the first slice (adjacent to the second) with three ranges.
    let mut b = Batch::new("kube-proxy");
    let mut old = Element::range_start(0, Ipv4Addr::new(10, 9, 9, 9), 1);
    old.data = None;
    b.delete("m", &[old, Element::range_end(65536)]);
    b.add(
        "m",
        &[
            Element::range_start(0, Ipv4Addr::new(10, 244, 0, 1), 8080),
            Element::range_end(21846),
            Element::range_start(21846, Ipv4Addr::new(10, 244, 0, 2), 8081),
            Element::range_end(43691),
            Element::range_start(43691, Ipv4Addr::new(10, 244, 0, 3), 8082),
            Element::range_end(65536),
        ],
    );
    let ip = Ipv4Addr::new(10, 244, 0, 7);
    b.add("pairs", &[Element::addr_pair(ip, ip)]);
    conn.commit(&b).expect("netlink batch");
    assert_eq!(
        elements_line(&listed("map", "m")),
        "0-21845 : 10.244.0.1 . 8080, 21846-43690 : 10.244.0.2 . 8081, 43691-65535 : 10.244.0.3 . 8082, 65536-131071 : 10.9.9.8 . 2"
    );
    assert_eq!(
        elements_line(&listed("set", "pairs")),
        "10.244.0.7 . 10.244.0.7"
    );

    // A batch that fails half way changes nothing and reports the errno.
    let mut b = Batch::new("kube-proxy");
    b.delete("pairs", &[Element::addr_pair(ip, ip)]);
    b.flush("m");
    b.add("no-such-map", &[Element::addr_pair(ip, ip)]);
    let err = conn.commit(&b).expect_err("a missing map fails the batch");
    let text = format!("{err}");
    assert!(text.contains("no-such-map"), "{text}");
    match err {
        kube_proxy::Error::Netlink { source, .. } => {
            assert_eq!(source.raw_os_error(), Some(2), "ENOENT: {source}")
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(elements_line(&listed("map", "m")).contains("10.244.0.2"));
    assert_eq!(
        elements_line(&listed("set", "pairs")),
        "10.244.0.7 . 10.244.0.7"
    );
    // The same socket goes on working after the failure; a second slice's delete leaves the
    // adjacent first one whole.
    let mut b = Batch::new("kube-proxy");
    b.delete("pairs", &[Element::addr_pair(ip, ip)]);
    let mut second = Element::range_start(65536, Ipv4Addr::new(10, 9, 9, 8), 2);
    second.data = None;
    b.delete("m", &[second, Element::range_end(131072)]);
    conn.commit(&b).expect("delete");
    assert_eq!(elements_line(&listed("set", "pairs")), "");
    assert_eq!(
        elements_line(&listed("map", "m")),
        "0-21845 : 10.244.0.1 . 8080, 21846-43690 : 10.244.0.2 . 8081, 43691-65535 : 10.244.0.3 . 8082"
    );
    nft(&["delete", "table", "ip", "kube-proxy"]);
}

fn port(i: u32, ips: &[u8], target: u16) -> (ServiceKey, Vec<ServicePort>) {
    let name = format!("svc-{i}");
    let eps = ips
        .iter()
        .map(|last| Endpoint {
            ip: Ipv4Addr::new(10, 244, i as u8, *last),
            port: target,
            ready: true,
            serving: true,
            terminating: false,
            local: false,
        })
        .collect();
    (
        ("ns".to_owned(), name.clone()),
        vec![ServicePort {
            namespace: "ns".into(),
            name,
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ip: Ipv4Addr::new(10, 96, 0, 10 + i as u8),
            port: 80,
            node_port: None,
            external_ips: vec![],
            affinity_seconds: None,
            external_local: false,
            internal_local: false,
            endpoints: eps,
        }],
    )
}

fn config() -> Config {
    let mut c = Config::from_options(&<Options as clap::Parser>::parse_from([
        "kube-proxy",
        "--hostname-override=test",
        "--cluster-cidr=10.244.0.0/16",
    ]))
    .expect("config");
    c.mode = Mode::Nftables;
    c.nodeport_addresses = NodePortAddresses::All;
    c
}

#[test]
fn rollout_is_programmed_over_netlink_without_rewriting_rules() {
    if !inside_netns("rollout_is_programmed_over_netlink_without_rewriting_rules") {
        return;
    }
    let mut proxier = Proxier::new(&config());
    let all: BTreeMap<ServiceKey, Vec<ServicePort>> = [port(1, &[1, 2], 8080), port(2, &[1], 8080)]
        .into_iter()
        .collect();
    proxier.sync(&all, true).expect("full sync");
    let chain = kube_proxy::nftables::service_chain("ns/svc-1:http", "tcp");
    let handles = || nft(&["-a", "list", "chain", "ip", "kube-proxy", &chain]);
    let before = handles();
    assert!(before.contains("numgen random mod 65536"), "{before}");
    // nft leaves out `offset 0`.
    let offset: u32 = before
        .split("offset ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map_or(0, |o| o.parse().expect("numeric offset"));
    assert!(before.contains("map @endpoint-ranges-tcp-0"), "{before}");
    let slice = |want: &str| {
        let ranges = elements_line(&listed("map", "endpoint-ranges-tcp-0"));
        let mine: Vec<&str> = ranges
            .split(", ")
            .filter(|r| {
                r.split('-')
                    .next()
                    .and_then(|s| s.parse::<u32>().ok())
                    .is_some_and(|s| s >= offset && s < offset + 65536)
            })
            .collect();
        assert_eq!(mine.join(", "), want, "all ranges: {ranges}");
    };
    slice(&format!(
        "{}-{} : 10.244.1.1 . 8080, {}-{} : 10.244.1.2 . 8080",
        offset,
        offset + 32767,
        offset + 32768,
        offset + 65535
    ));
    assert_eq!(
        sorted_elements(&listed("set", "hairpin-endpoints")),
        "10.244.1.1 . 10.244.1.1, 10.244.1.2 . 10.244.1.2, 10.244.2.1 . 10.244.2.1"
    );

    // Without nft on PATH only the netlink path can program the rollout: new pods (one IP
    // kept, one gone, one new) on a new port.
    let (synced, needs_nft) = without_nft(|| {
        let rollout: BTreeMap<ServiceKey, Vec<ServicePort>> =
            [port(1, &[2, 3, 4], 9090)].into_iter().collect();
        let synced = proxier.sync(&rollout, false);
        // A structural change (a new Service) still needs nft: proves the PATH trick bites.
        let structural: BTreeMap<ServiceKey, Vec<ServicePort>> =
            [port(3, &[1], 8080)].into_iter().collect();
        (synced, proxier.sync(&structural, false))
    });
    synced.expect("rollout over netlink");
    assert!(
        matches!(needs_nft, Err(kube_proxy::Error::Spawn { .. })),
        "{needs_nft:?}"
    );

    assert_eq!(handles(), before, "the Service's rules were rewritten");
    let rolled_out = format!(
        "{}-{} : 10.244.1.2 . 9090, {}-{} : 10.244.1.3 . 9090, {}-{} : 10.244.1.4 . 9090",
        offset,
        offset + 21844,
        offset + 21845,
        offset + 43689,
        offset + 43690,
        offset + 65535
    );
    slice(&rolled_out);

    // After an error kube-proxy syncs everything; ids and rules stay.
    let all: BTreeMap<ServiceKey, Vec<ServicePort>> = [
        port(1, &[2, 3, 4], 9090),
        port(2, &[1], 8080),
        port(3, &[1], 8080),
    ]
    .into_iter()
    .collect();
    proxier.sync(&all, true).expect("full sync");
    slice(&rolled_out);
    assert_eq!(
        sorted_elements(&listed("set", "hairpin-endpoints")),
        "10.244.1.2 . 10.244.1.2, 10.244.1.3 . 10.244.1.3, 10.244.1.4 . 10.244.1.4, \
         10.244.2.1 . 10.244.2.1, 10.244.3.1 . 10.244.3.1"
    );

    // A structural change with new endpoints (a new target port, and the Service becomes
    // externally reachable): the chain moves to a new id, written before the nft transaction,
    // and the old slice is deleted after it.
    let mut moved = port(1, &[5], 7070);
    moved.1[0].node_port = Some(30001);
    proxier
        .sync(&[moved].into_iter().collect(), false)
        .expect("structural partial sync");
    let after = handles();
    assert_ne!(after, before, "the chain must be rewritten for its new id");
    slice("");
    assert!(after.contains("map @endpoint-ranges-tcp-0"), "{after}");
    let all_ranges = listed("map", "endpoint-ranges-tcp-0");
    assert!(all_ranges.contains(": 10.244.1.5 . 7070"), "{all_ranges}");

    // Removing the Service's endpoints is structural (reject instead of the chain) and goes
    // through nft; its ranges are deleted after it.
    let gone: BTreeMap<ServiceKey, Vec<ServicePort>> = [port(1, &[], 9090)].into_iter().collect();
    proxier.sync(&gone, false).expect("structural partial sync");
    let ranges = elements_line(&listed("map", "endpoint-ranges-tcp-0"));
    assert!(!ranges.contains("10.244.1."), "{ranges}");
    assert!(
        ranges.contains("10.244.2.1") && ranges.contains("10.244.3.1"),
        "{ranges}"
    );
    let chains = nft(&["list", "chains", "ip"]);
    assert!(!chains.contains(&format!("chain {chain} ")), "{chains}");
    assert_eq!(
        sorted_elements(&listed("set", "hairpin-endpoints")),
        "10.244.2.1 . 10.244.2.1, 10.244.3.1 . 10.244.3.1"
    );
    kube_proxy::cleanup().expect("cleanup");
}

#[test]
fn partial_syncs_past_one_map_of_ids_create_the_next_map() {
    if !inside_netns("partial_syncs_past_one_map_of_ids_create_the_next_map") {
        return;
    }
    let mut proxier = Proxier::new(&config());
    proxier
        .sync(&[port(0, &[1], 8080)].into_iter().collect(), true)
        .expect("full sync");
    // 130 more dispatching chains in one partial sync: ids 1..=130, so the map of ids
    // 128..255 is created in the same transaction as the chains that use it.
    let many: BTreeMap<ServiceKey, Vec<ServicePort>> =
        (1..=130).map(|i| port(i, &[1, 2], 8080)).collect();
    proxier.sync(&many, false).expect("partial sync");
    let second = listed("map", "endpoint-ranges-tcp-1");
    let ranges = elements_line(&second);
    // Ids 128, 129 and 130 have two ranges each.
    assert_eq!(ranges.split(", ").count(), 6, "{second}");
    // Which Service has the last of them (Services get ids in key order).
    let last: u32 = ranges
        .rsplit(": 10.244.")
        .next()
        .and_then(|r| r.split('.').next())
        .and_then(|n| n.parse().ok())
        .expect("an endpoint address");
    // A rollout of a Service in that map goes over netlink again.
    let rollout =
        without_nft(|| proxier.sync(&[port(last, &[3], 9090)].into_iter().collect(), false));
    rollout.expect("rollout over netlink");
    let ranges = elements_line(&listed("map", "endpoint-ranges-tcp-1"));
    assert_eq!(ranges.split(", ").count(), 5, "{ranges}");
    assert!(
        ranges.contains(&format!(": 10.244.{last}.3 . 9090")),
        "{ranges}"
    );
    kube_proxy::cleanup().expect("cleanup");
}

#[test]
fn a_rollout_too_big_for_one_netlink_batch_goes_through_nft() {
    if !inside_netns("a_rollout_too_big_for_one_netlink_batch_goes_through_nft") {
        return;
    }
    let mut proxier = Proxier::new(&config());
    let big = |target: u16| {
        let (key, mut ports) = port(1, &[], target);
        ports[0].endpoints = (0..3000u32)
            .map(|n| Endpoint {
                ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 250, 0, 0)) + n),
                port: target,
                ready: true,
                serving: true,
                terminating: false,
                local: false,
            })
            .collect();
        (key, ports)
    };
    proxier
        .sync(
            &[big(8080), port(2, &[1], 8080)].into_iter().collect(),
            true,
        )
        .expect("full sync");
    let count = |port: u16| {
        elements_line(&listed("map", "endpoint-ranges-tcp-0"))
            .split(", ")
            .filter(|e| e.ends_with(&format!(" . {port}")))
            .count()
    };
    assert_eq!(count(8080), 3001);
    // 3,000 endpoints on a new port: ~170 KiB of elements, more than one batch may carry.
    let without = without_nft(|| proxier.sync(&[big(9090)].into_iter().collect(), false));
    assert!(
        matches!(without, Err(kube_proxy::Error::Spawn { .. })),
        "{without:?}"
    );
    // kube-proxy follows an error with a full sync; here the same change is retried as a
    // partial one, which nft applies.
    proxier
        .sync(&[big(9090)].into_iter().collect(), false)
        .expect("partial sync through nft");
    assert_eq!(count(9090), 3000);
    assert_eq!(count(8080), 1, "only svc-2's range stays on 8080");
    kube_proxy::cleanup().expect("cleanup");
}

#[test]
fn a_batch_refused_as_a_whole_reports_the_errno() {
    if !is_root() {
        eprintln!("skipping: needs root (network namespace)");
        return;
    }
    // Without CAP_NET_ADMIN the kernel refuses the batch begin itself.
    if in_netns_with(
        "a_batch_refused_as_a_whole_reports_the_errno",
        &["setpriv", "--bounding-set", "-net_admin", "--"],
    ) {
        return;
    }
    let mut conn = Conn::open().expect("netlink socket");
    let mut b = Batch::new("kube-proxy");
    let ip = Ipv4Addr::new(10, 0, 0, 1);
    b.add("hairpin-endpoints", &[Element::addr_pair(ip, ip)]);
    match conn.commit(&b) {
        Err(kube_proxy::Error::Netlink { what, source }) => {
            assert_eq!(source.raw_os_error(), Some(1), "EPERM: {what}: {source}");
        }
        other => panic!("expected EPERM, got {other:?}"),
    }
}
