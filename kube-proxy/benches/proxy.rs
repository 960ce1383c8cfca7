//! `make bench-proxy`: time to program one Service change with 1,000 and 10,000 Services
//! present, and a full sync of 10,000 Services, in both modes. Runs the real iptables-restore /
//! nft (and the nftables proxier's netlink batches) inside a throwaway network namespace, so
//! the host's rules are never touched. Also prints, without a goal, the time of a structural
//! change (a Service added).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use kube_proxy::changes::{Endpoint, Protocol, ServiceKey, ServicePort};
use kube_proxy::{Config, Mode, NodePortAddresses, Options, Proxier};

const INNER: &str = "KUBE_PROXY_BENCH_INNER";
const CHANGES: usize = 20;
const STRUCTURAL: usize = 5;

fn main() {
    if std::env::var_os(INNER).is_some() {
        inner();
        return;
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !uid {
        eprintln!("bench-proxy: skipped, needs root (it creates a network namespace)");
        return;
    }
    let ns = format!("kpbench-{}", std::process::id());
    let status = Command::new("ip").args(["netns", "add", &ns]).status();
    assert!(matches!(status, Ok(s) if s.success()), "ip netns add {ns}");
    let exe = std::env::current_exe().expect("bench executable");
    let result = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(exe)
        .env(INNER, "1")
        .status();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    assert!(matches!(result, Ok(s) if s.success()), "bench failed");
}

fn port(i: usize, generation: u8) -> (ServiceKey, Vec<ServicePort>) {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 10 + i as u32);
    let ep = |n: u32| Endpoint {
        ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, 0, 0)) + (i as u32 * 4) % 60000 + n),
        port: 8080 + u16::from(generation),
        ready: true,
        serving: true,
        terminating: false,
        local: false,
    };
    let name = format!("svc-{i}");
    (
        ("bench".to_owned(), name.clone()),
        vec![ServicePort {
            namespace: "bench".into(),
            name,
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ip: ip,
            port: 80,
            node_port: (i < 2000).then(|| 30000 + i as u16),
            external_ips: vec![],
            affinity_seconds: None,
            external_local: false,
            internal_local: false,
            endpoints: vec![ep(1), ep(2)],
        }],
    )
}

fn config(mode: Mode) -> Config {
    let mut c = Config::from_options(&<Options as clap::Parser>::parse_from([
        "kube-proxy",
        "--hostname-override=bench",
        "--cluster-cidr=10.244.0.0/16",
    ]))
    .expect("bench config");
    c.mode = mode;
    c.nodeport_addresses = NodePortAddresses::All;
    c
}

/// CPU seconds of waited-for children so far (user, system: the iptables-restore / nft
/// process vs. the kernel applying its transaction) and of this process (user, system: the
/// proxier's rendering vs. the kernel applying what it sent over netlink).
fn cpu() -> [f64; 4] {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: field 3 is f[0]; utime, stime, cutime, cstime are 14 to 17.
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    [tick(13), tick(14), tick(11), tick(12)]
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn inner() {
    // BENCH_MODES=iptables,nftables (default both).
    let modes = std::env::var("BENCH_MODES").unwrap_or_else(|_| "iptables,nftables".into());
    for mode in [Mode::Iptables, Mode::Nftables] {
        if !modes.split(',').any(|m| m == mode.as_str()) {
            continue;
        }
        for n in [1_000usize, 10_000] {
            let _ = kube_proxy::cleanup();
            let mut proxier = Proxier::new(&config(mode));
            let all: BTreeMap<ServiceKey, Vec<ServicePort>> = (0..n).map(|i| port(i, 0)).collect();
            let cpu0 = cpu();
            let t = Instant::now();
            proxier.sync(&all, true).expect("full sync");
            let full = t.elapsed();
            let cpu1 = cpu();
            let mut times = Vec::new();
            for c in 0..CHANGES {
                // Change one Service's endpoints (new target port), as a rollout would.
                let change: BTreeMap<ServiceKey, Vec<ServicePort>> =
                    [port((c * 37) % n, 1 + (c % 2) as u8)]
                        .into_iter()
                        .collect();
                let t = Instant::now();
                proxier.sync(&change, false).expect("partial sync");
                times.push(t.elapsed());
            }
            let cpu2 = cpu();
            let one = median(times);
            if mode == Mode::Nftables {
                // The changes are in the kernel: each changed Service's two endpoint ranges
                // carry its new target port.
                let out = Command::new("nft")
                    .args(["list", "table", "ip", "kube-proxy"])
                    .output()
                    .expect("nft list");
                let table = String::from_utf8_lossy(&out.stdout);
                let moved = table.matches(" . 8081").count() + table.matches(" . 8082").count();
                assert_eq!(moved, 2 * CHANGES, "endpoint ranges on the new ports");
            }
            println!(
                "{:<9} services={n:>6}  full sync {:>9.1} ms (goal < 2000 ms at 10,000)  one Service change median {:>7.2} ms (goal < 10 ms)",
                mode.as_str(),
                full.as_secs_f64() * 1e3,
                one.as_secs_f64() * 1e3,
            );
            let per_change = |i: usize| (cpu2[i] - cpu1[i]) * 1e3 / CHANGES as f64;
            println!(
                "          full sync: tool user {:.2} s, kernel {:.2} s, proxy user {:.2} s, kernel {:.2} s",
                cpu1[0] - cpu0[0],
                cpu1[1] - cpu0[1],
                cpu1[2] - cpu0[2],
                cpu1[3] - cpu0[3],
            );
            println!(
                "          per change: tool user {:.1} ms, kernel {:.1} ms, proxy user {:.1} ms, kernel {:.1} ms",
                per_change(0),
                per_change(1),
                per_change(2),
                per_change(3),
            );
            // For comparison, structural changes (no goal): a new Service with endpoints, as
            // partial syncs.
            let cpu3 = cpu();
            let mut added = Vec::new();
            for c in 0..STRUCTURAL {
                let change: BTreeMap<ServiceKey, Vec<ServicePort>> =
                    [port(n + c, 0)].into_iter().collect();
                let t = Instant::now();
                proxier.sync(&change, false).expect("partial sync");
                added.push(t.elapsed());
            }
            let cpu4 = cpu();
            let per_add = |i: usize| (cpu4[i] - cpu3[i]) * 1e3 / STRUCTURAL as f64;
            println!(
                "          one Service added (structural) median {:.2} ms: tool user {:.1} ms, kernel {:.1} ms, proxy user {:.1} ms, kernel {:.1} ms",
                median(added).as_secs_f64() * 1e3,
                per_add(0),
                per_add(1),
                per_add(2),
                per_add(3),
            );
        }
    }
    let _ = kube_proxy::cleanup();
}
