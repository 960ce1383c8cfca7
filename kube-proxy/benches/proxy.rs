//! `make bench-proxy`: time to program one Service change with 1,000 and 10,000 Services
//! present, and a full sync of 10,000 Services, in both modes. Runs the real iptables-restore /
//! nft inside a throwaway network namespace, so the host's rules are never touched.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use kube_proxy::changes::{Endpoint, Protocol, ServiceKey, ServicePort};
use kube_proxy::{Config, Mode, NodePortAddresses, Options, Proxier};

const INNER: &str = "KUBE_PROXY_BENCH_INNER";
const CHANGES: usize = 20;

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

/// CPU seconds (user, system) of waited-for children so far: where a sync's time goes (the
/// iptables-restore / nft process vs. the kernel applying the transaction).
fn children_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: field 3 is f[0]; cutime and cstime are fields 16 and 17.
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    (tick(13), tick(14))
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
            let cpu0 = children_cpu();
            let t = Instant::now();
            proxier.sync(&all, true).expect("full sync");
            let full = t.elapsed();
            let cpu1 = children_cpu();
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
            let one = median(times);
            let cpu2 = children_cpu();
            println!(
                "{:<9} services={n:>6}  full sync {:>9.1} ms (goal < 2000 ms at 10,000)  one Service change median {:>7.2} ms (goal < 10 ms)",
                mode.as_str(),
                full.as_secs_f64() * 1e3,
                one.as_secs_f64() * 1e3,
            );
            println!(
                "          full sync: tool user {:.2} s, kernel {:.2} s; per change: tool user {:.1} ms, kernel {:.1} ms",
                cpu1.0 - cpu0.0,
                cpu1.1 - cpu0.1,
                (cpu2.0 - cpu1.0) * 1e3 / CHANGES as f64,
                (cpu2.1 - cpu1.1) * 1e3 / CHANGES as f64,
            );
        }
    }
    let _ = kube_proxy::cleanup();
}
