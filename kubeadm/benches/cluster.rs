//! `make bench-cluster`: the idle footprint of the whole control plane on one node.
//!
//! What kubeadm/tests/cluster.rs does to bring a cluster up: a private containerd, then
//! `kubeadm init --config ... --binaries-dir ...` into a temporary root with free ports, so the
//! supervised kubelet runs kube-store, kube-apiserver, kube-controller-manager and
//! kube-scheduler as static pods and the addon phase deploys kube-proxy and kube-dns. Once the
//! node is Ready and the pods run, the benchmark waits a settle period and then samples every
//! process for the measurement window:
//!
//! - **RSS**: `VmRSS` (and `RssAnon`) from /proc/<pid>/status every few seconds; the value at
//!   the end of the window, the largest sample, and `VmHWM` (the peak since the process started,
//!   start-up included).
//! - **CPU**: the process's own user and system time over the window (utime, stime, and the
//!   cutime and cstime of children it reaped, e.g. kube-proxy's iptables-restore, all from
//!   /proc/<pid>/stat), divided by the window's wall time, in % of one core. These are the
//!   measured processes' own CPU seconds, so other load on the machine does not inflate them.
//!
//! The control-plane total (kube-store + kube-apiserver + kube-controller-manager +
//! kube-scheduler) is compared with upstream v1.26 + etcd idle on this kind of VM (~463 MiB,
//! shared/reference/performance.md) and with issue 7's goals (<= 100 MiB, < 1 % of a core).
//! The kubelet, kube-proxy, kube-dns and containerd (with its shims) are reported beside it.
//!
//! Everything runs in a throwaway network namespace (the benchmark re-executes itself under
//! `nsenter --net`), so the cluster's kube-proxy programs its own iptables, not the host's, and
//! no host port is taken. `kubeadm reset -f` and the containerd teardown run on exit, also on
//! Ctrl-C.
//!
//! Env: BENCH_IDLE_SECS (600, the window), BENCH_SETTLE_SECS (60, before the window),
//! BENCH_SAMPLE_SECS (5), BENCH_HOST_NETNS=1 (no namespace of its own), and the binaries:
//! KUBE_STORE_BIN, KUBE_APISERVER_BIN, KUBE_CONTROLLER_MANAGER_BIN, KUBE_SCHEDULER_BIN,
//! KUBELET_BIN, KUBE_PROXY_BIN, KUBE_DNS_BIN (default: next to the kubeadm cargo bench built,
//! i.e. target/release; `make bench-cluster` builds them first).

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "../../kubelet/tests/common/containerd.rs"]
mod containerd;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{binaries_dir, free_port, kubeadm, kubeadm_ok, kubectl_run, pids_with};
use containerd::Containerd;

/// Upstream v1.26 control plane with etcd, idle, on this kind of VM.
const REFERENCE_TOTAL_MIB: f64 = 463.0;
const REFERENCE_APISERVER_MIB: f64 = 287.0;
const GOAL_TOTAL_MIB: f64 = 100.0;
const GOAL_CPU_PERCENT: f64 = 1.0;
const SLOW: Duration = Duration::from_secs(300);
/// Set in the re-executed benchmark: the namespace it runs in.
const NETNS_ENV: &str = "BENCH_CLUSTER_NETNS";

const CONTROL_PLANE: [&str; 4] = [
    "kube-store",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];
const NODE: [&str; 3] = ["kubelet", "kube-proxy", "kube-dns"];
const RUNTIME: &str = "containerd + shims";

static STOP: AtomicBool = AtomicBool::new(false);

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Ctrl-C and SIGTERM set STOP instead of killing the process, so the guards' drops (reset,
/// containerd teardown) run.
fn catch_signals() {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("signal runtime");
        rt.block_on(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let _ = ready_tx.send(());
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            eprintln!("bench-cluster: interrupted, cleaning up");
            STOP.store(true, Ordering::SeqCst);
            // Later signals are swallowed while the cleanup runs.
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
        });
    });
    let _ = ready_rx.recv();
}

fn check_stop() {
    if STOP.load(Ordering::SeqCst) {
        panic!("interrupted");
    }
}

/// Sleeps in short steps, giving up early on Ctrl-C.
fn sleep(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        check_stop();
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(200)));
    }
}

/// Polls `f` until it returns Some; None after the deadline.
fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        sleep(Duration::from_millis(500));
    }
}

fn wait_for<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    poll(timeout, f).unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

fn kubectl_out(kc: &Path, args: &[&str]) -> Option<String> {
    let r = kubectl_run(kc, args);
    r.ok.then_some(r.stdout)
}

/// Runs this benchmark again inside a fresh network namespace and deletes it afterwards.
fn rerun_in_netns() -> i32 {
    let name = format!("bench-cluster-{}", std::process::id());
    let ip = |args: &[&str]| {
        let ok = Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip {args:?} failed (root and iproute2 needed)");
    };
    ip(&["netns", "add", &name]);
    ip(&["-n", &name, "link", "set", "lo", "up"]);
    let me = std::env::current_exe().expect("own path");
    // nsenter, not `ip netns exec`: that also remounts /sys, which hides the cgroup mounts
    // runc needs.
    let status = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{name}"))
        .arg("--")
        .arg(me)
        .args(std::env::args_os().skip(1))
        .env(NETNS_ENV, &name)
        .status();
    let _ = Command::new("ip").args(["netns", "del", &name]).status();
    match status {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => {
            eprintln!("bench-cluster: nsenter: {e}");
            1
        }
    }
}

fn main() {
    catch_signals();
    if std::env::var_os(NETNS_ENV).is_none() && std::env::var_os("BENCH_HOST_NETNS").is_none() {
        std::process::exit(rerun_in_netns());
    }
    run();
}

// ---------------------------------------------------------------------------------------------
// the cluster

/// `kubeadm reset -f` on drop (before the containerd teardown), whatever happened.
struct Reset {
    root: PathBuf,
    cri: String,
}

impl Drop for Reset {
    fn drop(&mut self) {
        let r = kubeadm(
            &self.root,
            &["reset", "-f", &format!("--cri-socket={}", self.cri)],
        );
        if std::thread::panicking() || !r.ok {
            let log =
                std::fs::read_to_string(self.root.join("var/log/kubelet.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- kubelet log (last 60 lines)\n{}\n--- reset\n{}{}",
                lines[lines.len().saturating_sub(60)..].join("\n"),
                r.stdout,
                r.stderr
            );
        } else {
            eprintln!("bench-cluster: kubeadm reset -f done");
        }
    }
}

fn config(containerd: &Containerd, node: &str, bridge: &str) -> String {
    let [api, client, peer, metrics, kcm, sched, healthz, kport] =
        std::array::from_fn(|_| free_port());
    let pod_subnet = format!("10.{}.0.0/16", 150 + std::process::id() % 50);
    format!(
        r#"apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 127.0.0.1
  bindPort: {api}
bootstrapTokens:
- token: abcdef.0123456789abcdef
nodeRegistration:
  name: {node}
  criSocket: {cri}
  kubeletExtraArgs:
  - name: cni-conf-dir
    value: {cni}
  - name: cni-bridge-name
    value: {bridge}
  - name: node-ip
    value: 127.0.0.1
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
networking:
  podSubnet: {pod_subnet}
apiServer:
  extraArgs:
  - name: etcd-servers
    value: https://127.0.0.1:{client}
controllerManager:
  extraArgs:
  - name: secure-port
    value: "{kcm}"
scheduler:
  extraArgs:
  - name: secure-port
    value: "{sched}"
etcd:
  local:
    extraArgs:
    - name: listen-client-urls
      value: https://127.0.0.1:{client}
    - name: advertise-client-urls
      value: https://127.0.0.1:{client}
    - name: listen-peer-urls
      value: https://127.0.0.1:{peer}
    - name: initial-advertise-peer-urls
      value: https://127.0.0.1:{peer}
    - name: initial-cluster
      value: {node}=https://127.0.0.1:{peer}
    - name: listen-metrics-urls
      value: http://127.0.0.1:{metrics}
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
healthzPort: {healthz}
port: {kport}
address: 127.0.0.1
# A test machine's disk may be nearly full: no eviction or image GC of the cluster's pods.
evictionHard: {{}}
imageGCHighThresholdPercent: 100
"#,
        cri = containerd.endpoint(),
        cni = containerd.cni_conf_dir.display(),
    )
}

/// `name=phase` of every kube-system pod.
fn kube_system_pods(kc: &Path) -> Option<String> {
    kubectl_out(
        kc,
        &[
            "get",
            "pods",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.phase}{\"\\n\"}{end}",
        ],
    )
}

// ---------------------------------------------------------------------------------------------
// /proc

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// (start time, utime + stime + cutime + cstime) in clock ticks; None if gone or a zombie.
fn stat_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f.first() == Some(&"Z") {
        return None;
    }
    // After the command: state is field 3 (index 0 here), utime 14, stime 15, cutime 16,
    // cstime 17, starttime 22.
    let n = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    Some((n(22)?, n(14)? + n(15)? + n(16)? + n(17)?))
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The processes to measure, by component: the containers' main processes (the task PIDs of
/// this benchmark's containerd, named by their argv[0]), the kubelet (its pid file) and the
/// runtime itself.
fn find_processes(containerd: &Containerd, root: &Path) -> BTreeMap<String, Vec<u32>> {
    let mut found: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let tasks = containerd.ctr(&["tasks", "ls"]);
    for line in String::from_utf8_lossy(&tasks.stdout).lines().skip(1) {
        let mut cols = line.split_whitespace();
        let (Some(_id), Some(pid), Some("RUNNING")) = (cols.next(), cols.next(), cols.next())
        else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let argv0 = cmdline(pid).into_iter().next().unwrap_or_default();
        let base = argv0.rsplit('/').next().unwrap_or_default().to_string();
        if CONTROL_PLANE.contains(&base.as_str()) || NODE.contains(&base.as_str()) {
            found.entry(base).or_default().push(pid);
        }
    }
    if let Some(pid) = std::fs::read_to_string(root.join("run/kubeadm/kubelet.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
    {
        found.entry("kubelet".into()).or_default().push(pid);
    }
    let dir = containerd.dir().display().to_string();
    let socket = containerd.socket.display().to_string();
    let mut runtime: Vec<u32> = pids_with(&["containerd", "--config", &dir]);
    runtime.extend(pids_with(&["containerd-shim", &socket]));
    runtime.retain(|p| {
        cmdline(*p)
            .first()
            .is_some_and(|a| a.ends_with("containerd") || a.contains("containerd-shim"))
    });
    found.insert(RUNTIME.into(), runtime);
    found
}

// ---------------------------------------------------------------------------------------------
// sampling

struct Proc {
    pid: u32,
    start: u64,
    cpu_first: u64,
    cpu_last: u64,
    rss_kib: u64,
    anon_kib: u64,
    hwm_kib: u64,
    alive: bool,
}

impl Proc {
    fn new(pid: u32) -> Option<Self> {
        let (start, cpu) = stat_ticks(pid)?;
        let mut p = Proc {
            pid,
            start,
            cpu_first: cpu,
            cpu_last: cpu,
            rss_kib: 0,
            anon_kib: 0,
            hwm_kib: 0,
            alive: true,
        };
        p.sample();
        Some(p)
    }

    /// Reads the counters again; false once the process is gone (or its PID reused).
    fn sample(&mut self) -> bool {
        if !self.alive {
            return false;
        }
        match stat_ticks(self.pid) {
            Some((start, cpu)) if start == self.start => {
                self.cpu_last = cpu;
                self.rss_kib = status_kib(self.pid, "VmRSS:").unwrap_or(self.rss_kib);
                self.anon_kib = status_kib(self.pid, "RssAnon:").unwrap_or(self.anon_kib);
                self.hwm_kib = status_kib(self.pid, "VmHWM:").unwrap_or(self.hwm_kib);
            }
            _ => self.alive = false,
        }
        self.alive
    }
}

#[derive(Default)]
struct Component {
    procs: Vec<Proc>,
    /// Sum of the live processes' RSS at each sample.
    rss_max_kib: u64,
    restarts: usize,
}

impl Component {
    fn live(&self) -> impl Iterator<Item = &Proc> {
        self.procs.iter().filter(|p| p.alive)
    }
    fn rss_kib(&self) -> u64 {
        self.live().map(|p| p.rss_kib).sum()
    }
    fn anon_kib(&self) -> u64 {
        self.live().map(|p| p.anon_kib).sum()
    }
    fn hwm_kib(&self) -> u64 {
        self.live().map(|p| p.hwm_kib).sum()
    }
    fn cpu_ticks(&self) -> u64 {
        self.procs
            .iter()
            .map(|p| p.cpu_last.saturating_sub(p.cpu_first))
            .sum()
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Samples every component each `every` for `window`; processes that appear later (a
/// restarted container) are picked up and counted as restarts.
fn measure(
    containerd: &Containerd,
    root: &Path,
    window: Duration,
    every: Duration,
) -> (BTreeMap<String, Component>, Duration) {
    let mut comps: BTreeMap<String, Component> = BTreeMap::new();
    for (name, pids) in find_processes(containerd, root) {
        let c = comps.entry(name).or_default();
        c.procs.extend(pids.into_iter().filter_map(Proc::new));
        c.rss_max_kib = c.rss_kib();
    }
    for name in CONTROL_PLANE.iter().chain(NODE.iter()) {
        if comps.get(*name).is_none_or(|c| c.procs.is_empty()) {
            println!("  warning: no {name} process found");
        }
    }
    let started = Instant::now();
    let mut next = started;
    let mut samples = 0;
    while started.elapsed() < window {
        next += every;
        sleep(next.saturating_duration_since(Instant::now()));
        let mut lost = false;
        for c in comps.values_mut() {
            for p in &mut c.procs {
                if p.alive && !p.sample() {
                    lost = true;
                    c.restarts += 1;
                }
            }
        }
        if lost {
            // A container or the kubelet restarted: measure its new process from here on.
            for (name, pids) in find_processes(containerd, root) {
                let c = comps.entry(name.clone()).or_default();
                for pid in pids {
                    if !c.procs.iter().any(|p| p.pid == pid && p.alive) {
                        println!("  {name}: new process {pid} during the window");
                        c.procs.extend(Proc::new(pid));
                    }
                }
            }
        }
        for c in comps.values_mut() {
            c.rss_max_kib = c.rss_max_kib.max(c.rss_kib());
        }
        samples += 1;
        if samples % (60 / every.as_secs().max(1)).max(1) == 0 {
            let cp: u64 = CONTROL_PLANE
                .iter()
                .filter_map(|n| comps.get(*n))
                .map(Component::rss_kib)
                .sum();
            println!(
                "  {:>4.0} s: control plane RSS {:.1} MiB",
                started.elapsed().as_secs_f64(),
                mib(cp)
            );
        }
    }
    (comps, started.elapsed())
}

// ---------------------------------------------------------------------------------------------

fn run() {
    let window = Duration::from_secs(env_num("BENCH_IDLE_SECS", 600));
    let settle = Duration::from_secs(env_num("BENCH_SETTLE_SECS", 60));
    let every = Duration::from_secs(env_num("BENCH_SAMPLE_SECS", 5).max(1));
    println!(
        "bench-cluster: network namespace {}",
        std::env::var(NETNS_ENV).unwrap_or_else(|_| "(host)".into())
    );
    let containerd = Containerd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).expect("root");
    println!("binaries:");
    let bin = binaries_dir(dir.path());
    for entry in std::fs::read_dir(&bin).into_iter().flatten().flatten() {
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        println!(
            "  {}: {}",
            entry.file_name().to_string_lossy(),
            target.display()
        );
    }
    let _reset = Reset {
        root: root.clone(),
        cri: containerd.endpoint(),
    };
    let pid = std::process::id();
    let node = format!("bench-{pid}");
    let bridge = format!("kbench{}", pid % 100_000);
    containerd
        .bridges
        .lock()
        .expect("bridges")
        .push(bridge.clone());
    let cfg = dir.path().join("kubeadm.yaml");
    std::fs::write(&cfg, config(&containerd, &node, &bridge)).expect("config");

    let t = Instant::now();
    kubeadm_ok(
        &root,
        &[
            "init",
            "--config",
            &cfg.display().to_string(),
            &format!("--binaries-dir={}", bin.display()),
            "--ignore-preflight-errors=IsPrivilegedUser,Swap",
        ],
    );
    println!("kubeadm init: {:.1} s", t.elapsed().as_secs_f64());
    check_stop();
    let kc = root.join("etc/kubernetes/admin.conf");
    wait_for("node Ready", SLOW, || {
        kubectl_out(
            &kc,
            &[
                "get",
                "node",
                &node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        )
        .filter(|s| s == "True")
    });
    let mirrors: Vec<String> = CONTROL_PLANE
        .iter()
        .map(|c| format!("{c}-{node}={}", "Running"))
        .collect();
    wait_for("the four mirror pods Running", SLOW, || {
        let out = kube_system_pods(&kc)?;
        mirrors
            .iter()
            .all(|m| out.lines().any(|l| l == m))
            .then_some(())
    });
    // The addons are reported beside the control plane; the measurement goes on without them.
    for addon in ["kube-proxy-", "kube-dns-"] {
        let running = poll(Duration::from_secs(120), || {
            kube_system_pods(&kc)?
                .lines()
                .any(|l| l.starts_with(addon) && l.ends_with("=Running"))
                .then_some(())
        });
        if running.is_none() {
            println!(
                "  warning: no {addon}* pod Running after 120 s:\n{}",
                kube_system_pods(&kc).unwrap_or_default()
            );
        }
    }
    println!(
        "cluster up after {:.1} s; settling {} s, then sampling every {} s for {} s",
        t.elapsed().as_secs_f64(),
        settle.as_secs(),
        every.as_secs(),
        window.as_secs()
    );
    sleep(settle);
    let (comps, elapsed) = measure(&containerd, &root, window, every);
    let pods = kube_system_pods(&kc).unwrap_or_default();
    report(&comps, elapsed, window, settle);
    println!("\nkube-system pods at the end:\n{pods}");
}

fn report(
    comps: &BTreeMap<String, Component>,
    elapsed: Duration,
    window: Duration,
    settle: Duration,
) {
    let hz = clock_ticks();
    let secs = elapsed.as_secs_f64();
    let cpu_percent = |c: &Component| c.cpu_ticks() as f64 / hz / secs * 100.0;
    println!(
        "\n### Idle footprint after {settle_s} s settle + {w} s window (RSS in MiB; CPU = own utime+stime over the window)\n",
        settle_s = settle.as_secs(),
        w = window.as_secs()
    );
    println!(
        "| component | RSS end | RSS max | VmHWM | anon end | CPU % of a core | CPU s | restarts |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let empty = Component::default();
    let row = |name: &str, c: &Component| {
        let n = c.live().count();
        let name = if n > 1 && name != RUNTIME {
            format!("{name} ({n} processes)")
        } else if name == RUNTIME {
            format!("containerd + {} shims", n.saturating_sub(1))
        } else {
            name.to_string()
        };
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {} |",
            mib(c.rss_kib()),
            mib(c.rss_max_kib),
            mib(c.hwm_kib()),
            mib(c.anon_kib()),
            cpu_percent(c),
            c.cpu_ticks() as f64 / hz,
            c.restarts
        );
    };
    let (mut rss, mut rss_max, mut hwm, mut anon, mut ticks) = (0, 0, 0, 0, 0);
    for name in CONTROL_PLANE {
        let c = comps.get(name).unwrap_or(&empty);
        row(name, c);
        rss += c.rss_kib();
        rss_max += c.rss_max_kib;
        hwm += c.hwm_kib();
        anon += c.anon_kib();
        ticks += c.cpu_ticks();
    }
    let total_cpu = ticks as f64 / hz / secs * 100.0;
    println!(
        "| **control plane** | **{:.1}** | {:.1} | {:.1} | {:.1} | **{:.2}** | {:.2} | |",
        mib(rss),
        mib(rss_max),
        mib(hwm),
        mib(anon),
        total_cpu,
        ticks as f64 / hz
    );
    for name in NODE.iter().chain([RUNTIME].iter()) {
        row(name, comps.get(*name).unwrap_or(&empty));
    }
    let total = mib(rss);
    let apiserver = mib(comps.get("kube-apiserver").unwrap_or(&empty).rss_kib());
    let met = |ok: bool| if ok { "met" } else { "**not met**" };
    println!("\n| | this run | upstream v1.26 + etcd | ratio | goal | status |");
    println!("|---|---:|---:|---:|---:|---|");
    println!(
        "| control plane RSS (end) | {total:.1} MiB | ~{REFERENCE_TOTAL_MIB:.0} MiB | {:.2}x | <= {GOAL_TOTAL_MIB:.0} MiB | {} |",
        total / REFERENCE_TOTAL_MIB,
        met(total <= GOAL_TOTAL_MIB)
    );
    println!(
        "| control plane RSS (max sample) | {:.1} MiB | | | <= {GOAL_TOTAL_MIB:.0} MiB | {} |",
        mib(rss_max),
        met(mib(rss_max) <= GOAL_TOTAL_MIB)
    );
    println!(
        "| kube-apiserver RSS (end) | {apiserver:.1} MiB | ~{REFERENCE_APISERVER_MIB:.0} MiB | {:.2}x | | |",
        apiserver / REFERENCE_APISERVER_MIB
    );
    println!(
        "| control plane CPU | {total_cpu:.2} % of a core | | | < {GOAL_CPU_PERCENT:.0} % | {} |",
        met(total_cpu < GOAL_CPU_PERCENT)
    );
}
