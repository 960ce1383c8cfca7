//! The eviction manager: every [`MONITORING_INTERVAL`] it observes the node's signals
//! (`memory.available`, `nodefs.available`, `nodefs.inodesFree`, `imagefs.available`,
//! `imagefs.inodesFree`, `pid.available`) against the hard thresholds (`--eviction-hard`,
//! upstream's defaults), reports MemoryPressure/DiskPressure/PIDPressure through the node's
//! conditions (held for `--eviction-pressure-transition-period` after the signal clears),
//! reclaims node-level resources first under disk pressure (unused images), and otherwise evicts
//! one pod per interval, ranked as upstream: for memory and disk, pods using more than they
//! request first, then lower priority, then usage above requests; for PIDs, lower priority
//! first, then more processes. The pod's worker carries the eviction out (phase Failed, reason
//! Evicted, upstream's message, an Evicted event, a DisruptionTarget condition).
//!
//! `memory.available` is the node's MemAvailable (/proc/meminfo) rather than upstream's
//! cgroup working-set arithmetic; pod usage is the CRI's container stats. `pid.available` is, as
//! upstream, the smaller of `kernel.pid_max` and `kernel.threads-max` less the node's tasks
//! (/proc/loadavg); a pod's processes are its cgroup's `pids.current`.

pub mod image_gc;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use component_base::Shutdown;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::Api;

use crate::cri::Runtime;
use crate::pod::resources::parse_quantity;

/// How often signals are observed (upstream's evictionMonitoringPeriod).
pub const MONITORING_INTERVAL: Duration = Duration::from_secs(10);

/// Upstream's default hard thresholds.
pub const DEFAULT_HARD: &str =
    "memory.available<100Mi,nodefs.available<10%,imagefs.available<15%,nodefs.inodesFree<5%";

/// A signal the manager observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    MemoryAvailable,
    NodeFsAvailable,
    NodeFsInodesFree,
    ImageFsAvailable,
    ImageFsInodesFree,
    PidAvailable,
}

/// The node condition a signal reports through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pressure {
    Memory,
    Disk,
    Pid,
}

impl Signal {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "memory.available" => Signal::MemoryAvailable,
            "nodefs.available" => Signal::NodeFsAvailable,
            "nodefs.inodesFree" => Signal::NodeFsInodesFree,
            "imagefs.available" => Signal::ImageFsAvailable,
            "imagefs.inodesFree" => Signal::ImageFsInodesFree,
            "pid.available" => Signal::PidAvailable,
            _ => return None,
        })
    }

    /// The resource a pod is ranked and reported by.
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
            _ => "ephemeral-storage",
        }
    }

    pub fn pressure(self) -> Pressure {
        match self {
            Signal::MemoryAvailable => Pressure::Memory,
            Signal::PidAvailable => Pressure::Pid,
            _ => Pressure::Disk,
        }
    }

    /// How the signal's quantities print: bytes in binary units, counts in decimal ones.
    fn format(self, value: u64) -> String {
        match self {
            Signal::PidAvailable | Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => {
                format_count(value)
            }
            _ => format_quantity(value),
        }
    }
}

/// How much must stay available: an absolute quantity or a share of capacity.
#[derive(Debug, Clone, PartialEq)]
pub enum Amount {
    Quantity { bytes: i64, text: String },
    Percent(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub amount: Amount,
}

impl Threshold {
    /// The amount in the signal's unit given its capacity.
    fn value(&self, capacity: u64) -> u64 {
        match &self.amount {
            Amount::Quantity { bytes, .. } => (*bytes).max(0) as u64,
            Amount::Percent(p) => (capacity as f64 * p / 100.0) as u64,
        }
    }

    fn text(&self, capacity: u64) -> String {
        match &self.amount {
            Amount::Quantity { text, .. } => text.clone(),
            Amount::Percent(_) => self.signal.format(self.value(capacity)),
        }
    }
}

/// Parses `--eviction-hard` (`signal<quantity|percent,...`); an empty string disables
/// eviction, as upstream's `--eviction-hard=""`.
pub fn parse_thresholds(spec: &str) -> Result<Vec<Threshold>, String> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (signal, value) = item
            .split_once('<')
            .ok_or_else(|| format!("invalid eviction threshold {item:?}: want signal<value"))?;
        let signal = Signal::parse(signal.trim())
            .ok_or_else(|| format!("unsupported eviction signal {:?}", signal.trim()))?;
        out.push(Threshold {
            signal,
            amount: parse_amount(value.trim())?,
        });
    }
    Ok(out)
}

fn parse_amount(value: &str) -> Result<Amount, String> {
    if let Some(p) = value.strip_suffix('%') {
        let p: f64 = p
            .parse()
            .map_err(|_| format!("invalid percentage {value:?}"))?;
        if !(0.0..=100.0).contains(&p) {
            return Err(format!(
                "eviction percentage threshold must be >= 0% and <= 100%: {value}"
            ));
        }
        return Ok(Amount::Percent(p));
    }
    let bytes = parse_quantity(value, 1.0).ok_or_else(|| format!("invalid quantity {value:?}"))?;
    if bytes < 0 {
        return Err(format!("eviction threshold must be positive: {value}"));
    }
    Ok(Amount::Quantity {
        bytes,
        text: value.to_string(),
    })
}

/// A byte count as a Kubernetes quantity (Ki when it divides evenly).
pub fn format_quantity(bytes: u64) -> String {
    if bytes != 0 && bytes % 1024 == 0 {
        format!("{}Ki", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

/// A count as a decimal Kubernetes quantity (k, M, G when it divides evenly).
pub fn format_count(n: u64) -> String {
    for (scale, suffix) in [(1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")] {
        if n != 0 && n % scale == 0 {
            return format!("{}{suffix}", n / scale);
        }
    }
    n.to_string()
}

/// What one observation saw: (available, capacity) per signal.
pub type Observations = HashMap<Signal, (u64, u64)>;

/// The thresholds crossed in `obs`.
pub fn crossed<'t>(thresholds: &'t [Threshold], obs: &Observations) -> Vec<&'t Threshold> {
    thresholds
        .iter()
        .filter(|t| {
            obs.get(&t.signal)
                .is_some_and(|(available, capacity)| *available < t.value(*capacity))
        })
        .collect()
}

/// One pod as the ranking sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub uid: String,
    pub priority: i32,
    /// Usage and request of the ranked resource, per container: (name, usage, request).
    pub containers: Vec<(String, u64, u64)>,
    /// The pod's processes (ranked by under PID pressure).
    pub processes: u64,
}

impl Candidate {
    fn usage(&self) -> u64 {
        self.containers.iter().map(|c| c.1).sum()
    }

    fn request(&self) -> u64 {
        self.containers.iter().map(|c| c.2).sum()
    }

    fn exceeds(&self) -> bool {
        self.usage() > self.request()
    }
}

/// Upstream's order: under PID pressure lower priority first, then more processes; otherwise
/// exceeding requests first, then lower priority, then more usage above requests.
pub fn rank(pods: &mut [Candidate], pressure: Pressure) {
    if pressure == Pressure::Pid {
        pods.sort_by(|a, b| {
            a.priority
                .cmp(&b.priority)
                .then(b.processes.cmp(&a.processes))
        });
        return;
    }
    pods.sort_by(|a, b| {
        b.exceeds()
            .cmp(&a.exceeds())
            .then(a.priority.cmp(&b.priority))
            .then_with(|| {
                let over = |c: &Candidate| c.usage() as i128 - c.request() as i128;
                over(b).cmp(&over(a))
            })
    });
}

/// Upstream's eviction message; it names containers only for memory and disk.
pub fn message(signal: Signal, threshold: &str, available: u64, pod: &Candidate) -> String {
    let resource = signal.resource();
    let mut m = format!(
        "The node was low on resource: {resource}. Threshold quantity: {threshold}, available: {}. ",
        signal.format(available)
    );
    if signal.pressure() == Pressure::Pid {
        return m;
    }
    for (name, usage, request) in &pod.containers {
        if usage > request {
            m.push_str(&format!(
                "Container {name} was using {}, request is {}, has larger consumption of {resource}. ",
                format_quantity(*usage),
                format_quantity(*request)
            ));
        }
    }
    m
}

/// Eviction settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub hard: Vec<Threshold>,
    pub pressure_transition_period: Duration,
    pub image_gc: image_gc::Policy,
}

/// What the manager shares with the node agent (pressure conditions) and pod workers
/// (evictions to carry out).
#[derive(Debug, Default)]
pub struct State {
    memory_pressure: AtomicBool,
    disk_pressure: AtomicBool,
    pid_pressure: AtomicBool,
    requests: Mutex<HashMap<String, String>>,
    /// Bumped on every request, so that pod workers wake to carry it out.
    requested: tokio::sync::watch::Sender<u64>,
}

impl State {
    pub fn memory_pressure(&self) -> bool {
        self.memory_pressure.load(Ordering::Relaxed)
    }

    pub fn disk_pressure(&self) -> bool {
        self.disk_pressure.load(Ordering::Relaxed)
    }

    pub fn pid_pressure(&self) -> bool {
        self.pid_pressure.load(Ordering::Relaxed)
    }

    fn flag(&self, pressure: Pressure) -> &AtomicBool {
        match pressure {
            Pressure::Memory => &self.memory_pressure,
            Pressure::Disk => &self.disk_pressure,
            Pressure::Pid => &self.pid_pressure,
        }
    }

    /// The eviction message for pod `uid`, once.
    pub fn take(&self, uid: &str) -> Option<String> {
        self.requests.lock().ok()?.remove(uid)
    }

    /// Changes whenever an eviction is requested.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.requested.subscribe()
    }

    fn request(&self, uid: &str, message: String) {
        if let Ok(mut r) = self.requests.lock() {
            r.insert(uid.to_string(), message);
        }
        self.requested.send_modify(|n| *n += 1);
    }

    fn pending(&self) -> bool {
        self.requests.lock().map(|r| !r.is_empty()).unwrap_or(false)
    }
}

/// Everything the manager needs.
pub struct Manager {
    pub config: Config,
    pub state: Arc<State>,
    pub runtime: Runtime,
    pub client: kube::Client,
    pub node_name: String,
    pub root_dir: PathBuf,
    /// `--cgroup-root`, under which each pod's cgroup (and its `pids.current`) is.
    pub cgroup_root: String,
    pub images: Arc<image_gc::ImageGc>,
}

/// `pid.available`'s (available, capacity): the smaller of `kernel.pid_max` and
/// `kernel.threads-max`, less the tasks /proc/loadavg counts.
fn pids() -> Option<(u64, u64)> {
    let read =
        |path: &str| -> Option<u64> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    let max = read("/proc/sys/kernel/pid_max")?.min(read("/proc/sys/kernel/threads-max")?);
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some((max.saturating_sub(tasks_in_loadavg(&loadavg)?), max))
}

/// The task count of /proc/loadavg's fourth field (`running/total`).
fn tasks_in_loadavg(loadavg: &str) -> Option<u64> {
    loadavg
        .split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

/// The tasks in pod `uid`'s cgroup: `pids.current` of the pids hierarchy (cgroup v1) or of the
/// unified one (v2).
fn pod_processes(cgroup_root: &str, qos: &str, uid: &str) -> u64 {
    let relative = crate::pod::resources::pod_cgroup_parent(cgroup_root, qos, uid);
    let relative = relative.trim_start_matches('/');
    ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
        .iter()
        .find_map(|h| {
            std::fs::read_to_string(std::path::Path::new(h).join(relative).join("pids.current"))
                .ok()?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn statvfs(path: &std::path::Path) -> Option<(u64, u64, u64, u64)> {
    let s = rustix::fs::statvfs(path).ok()?;
    let frsize = s.f_frsize.max(1);
    Some((
        s.f_bavail * frsize,
        s.f_blocks * frsize,
        s.f_favail,
        s.f_files,
    ))
}

impl Manager {
    async fn observe(&self) -> Observations {
        let mut obs = Observations::new();
        if let Some((_, available)) = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| crate::server::stats::parse_meminfo(&t))
        {
            obs.insert(
                Signal::MemoryAvailable,
                (available, crate::node::memory_capacity().max(0) as u64),
            );
        }
        if let Some((avail, cap, ifree, inodes)) = statvfs(&self.root_dir) {
            obs.insert(Signal::NodeFsAvailable, (avail, cap));
            obs.insert(Signal::NodeFsInodesFree, (ifree, inodes));
        }
        let image_fs = self
            .runtime
            .image_fs_info()
            .await
            .ok()
            .and_then(|fs| fs.into_iter().next())
            .map(|(mount, _)| PathBuf::from(mount))
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| self.root_dir.clone());
        if let Some((avail, cap, ifree, inodes)) = statvfs(&image_fs) {
            obs.insert(Signal::ImageFsAvailable, (avail, cap));
            obs.insert(Signal::ImageFsInodesFree, (ifree, inodes));
        }
        if let Some(pids) = pids() {
            obs.insert(Signal::PidAvailable, pids);
        }
        obs
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) {
        let mut last_met: HashMap<Pressure, Instant> = HashMap::new();
        loop {
            self.tick(&mut last_met).await;
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(MONITORING_INTERVAL) => {}
            }
        }
    }

    async fn tick(&self, last_met: &mut HashMap<Pressure, Instant>) {
        let mut obs = self.observe().await;
        let mut met = crossed(&self.config.hard, &obs);
        let now = Instant::now();
        for t in &met {
            last_met.insert(t.signal.pressure(), now);
        }
        for pressure in [Pressure::Memory, Pressure::Disk, Pressure::Pid] {
            let held = last_met
                .get(&pressure)
                .is_some_and(|t| now.duration_since(*t) < self.config.pressure_transition_period);
            if self.state.flag(pressure).swap(held, Ordering::Relaxed) != held {
                tracing::info!(?pressure, held, "node pressure changed");
            }
        }
        if met.is_empty() || self.state.pending() {
            return;
        }
        // Disk: reclaim unused images before evicting anyone.
        if met.iter().any(|t| t.signal.pressure() == Pressure::Disk) {
            let freed = self.images.delete_unused(u64::MAX).await;
            if freed > 0 {
                obs = self.observe().await;
                met = crossed(&self.config.hard, &obs);
                if met.is_empty() {
                    tracing::info!(freed, "disk pressure relieved by removing unused images");
                    return;
                }
            }
        }
        // Memory first, as upstream orders its signals.
        let Some(threshold) = met
            .iter()
            .find(|t| t.signal.pressure() == Pressure::Memory)
            .or_else(|| met.first())
            .copied()
        else {
            return;
        };
        let (available, capacity) = obs.get(&threshold.signal).copied().unwrap_or_default();
        match self.pick(threshold.signal).await {
            Ok(Some(pod)) => {
                let message = message(threshold.signal, &threshold.text(capacity), available, &pod);
                tracing::warn!(pod_uid = %pod.uid, %message, "evicting pod");
                self.state.request(&pod.uid, message);
            }
            Ok(None) => tracing::info!(
                signal = ?threshold.signal,
                "eviction threshold met but no pod to evict"
            ),
            Err(e) => tracing::warn!(error = %e, "list pods for eviction"),
        }
    }

    /// The pod to evict for `signal`: ranked among this node's running, non-static pods.
    async fn pick(&self, signal: Signal) -> Result<Option<Candidate>, kube::Error> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let list = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={}", self.node_name)))
            .await?;
        let stats = self
            .runtime
            .list_container_stats()
            .await
            .map(|s| crate::server::stats::container_usage(&s))
            .unwrap_or_default();
        let mut candidates: Vec<Candidate> = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .filter(|p| {
                // Mirror pods stand for static pods, which the kubelet does not evict.
                !p.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"))
            })
            .map(|p| candidate(p, signal, &stats, &self.cgroup_root))
            .collect();
        rank(&mut candidates, signal.pressure());
        Ok(candidates.into_iter().next())
    }
}

fn candidate(
    pod: &Pod,
    signal: Signal,
    stats: &[crate::server::stats::ContainerUsage],
    cgroup_root: &str,
) -> Candidate {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let memory = signal.pressure() == Pressure::Memory;
    let resource = if memory {
        "memory"
    } else {
        "ephemeral-storage"
    };
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let request = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .and_then(|q| parse_quantity(&q.0, 1.0))
                .unwrap_or(0)
                .max(0) as u64;
            let usage = stats
                .iter()
                .filter(|s| s.pod_uid == uid && s.container == c.name)
                .map(|s| {
                    if memory {
                        s.memory_working_set
                    } else {
                        s.rootfs_used.unwrap_or(0)
                    }
                })
                .max()
                .unwrap_or(0);
            (c.name.clone(), usage, request)
        })
        .collect();
    let processes = if signal.pressure() == Pressure::Pid {
        pod_processes(cgroup_root, crate::pod::resources::qos_class(pod), &uid)
    } else {
        0
    };
    Candidate {
        uid,
        priority: pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
        containers,
        processes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_default_thresholds_parse() {
        let t = parse_thresholds(DEFAULT_HARD).expect("valid");
        assert_eq!(t.len(), 4);
        assert_eq!(t[0].signal, Signal::MemoryAvailable);
        assert_eq!(
            t[0].amount,
            Amount::Quantity {
                bytes: 100 * 1024 * 1024,
                text: "100Mi".into()
            }
        );
        assert_eq!(t[1].amount, Amount::Percent(10.0));
        assert!(parse_thresholds("").expect("empty disables").is_empty());
        assert!(parse_thresholds("memory.available>1Gi").is_err());
        assert!(parse_thresholds("cpu.available<1").is_err());
        assert!(parse_thresholds("nodefs.available<120%").is_err());
    }

    #[test]
    fn thresholds_cross_by_quantity_or_share_of_capacity() {
        let t = parse_thresholds("memory.available<1Gi,nodefs.available<10%").expect("valid");
        let mut obs = Observations::new();
        obs.insert(Signal::MemoryAvailable, (2 << 30, 8 << 30));
        obs.insert(Signal::NodeFsAvailable, (5, 100));
        let met: Vec<Signal> = crossed(&t, &obs).iter().map(|t| t.signal).collect();
        assert_eq!(met, vec![Signal::NodeFsAvailable]);
        obs.insert(Signal::MemoryAvailable, (512 << 20, 8 << 30));
        obs.insert(Signal::NodeFsAvailable, (50, 100));
        let met: Vec<Signal> = crossed(&t, &obs).iter().map(|t| t.signal).collect();
        assert_eq!(met, vec![Signal::MemoryAvailable]);
    }

    fn pod(uid: &str, priority: i32, usage: u64, request: u64) -> Candidate {
        Candidate {
            uid: uid.into(),
            priority,
            containers: vec![("c".into(), usage, request)],
            processes: 0,
        }
    }

    #[test]
    fn pods_over_their_requests_go_first_then_low_priority_then_most_over() {
        let mut pods = vec![
            pod("within-request", 0, 100, 200),
            pod("besteffort-small", 0, 10, 0),
            pod("besteffort-big", 0, 50, 0),
            pod("important-over", 1000, 500, 0),
            pod("low-priority-within", -10, 100, 200),
        ];
        rank(&mut pods, Pressure::Memory);
        let order: Vec<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
        assert_eq!(
            order,
            [
                "besteffort-big",
                "besteffort-small",
                "important-over",
                "low-priority-within",
                "within-request"
            ]
        );
    }

    #[test]
    fn the_message_names_the_threshold_and_containers_over_their_request() {
        let p = Candidate {
            uid: "u".into(),
            priority: 0,
            containers: vec![("main".into(), 2048, 0), ("quiet".into(), 10, 4096)],
            processes: 3,
        };
        assert_eq!(
            message(Signal::MemoryAvailable, "100Mi", 51200, &p),
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Ki. \
             Container main was using 2Ki, request is 0, has larger consumption of memory. "
        );
    }

    #[test]
    fn pid_pressure_ranks_by_priority_then_processes_and_names_no_container() {
        let pids = |uid: &str, priority: i32, processes: u64| Candidate {
            uid: uid.into(),
            priority,
            containers: vec![("c".into(), 1 << 30, 0)],
            processes,
        };
        let mut pods = vec![
            pids("few", 0, 2),
            pids("important-many", 1000, 500),
            pids("many", 0, 40),
            pids("low-priority-one", -5, 1),
        ];
        rank(&mut pods, Pressure::Pid);
        let order: Vec<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
        assert_eq!(order, ["low-priority-one", "many", "few", "important-many"]);
        let t = parse_thresholds("pid.available<10%").expect("valid");
        assert_eq!(t[0].signal, Signal::PidAvailable);
        assert_eq!(t[0].text(4_194_304), "419430");
        assert_eq!(
            message(Signal::PidAvailable, "1k", 4_000, &pods[0]),
            "The node was low on resource: pids. Threshold quantity: 1k, available: 4k. "
        );
    }

    #[test]
    fn loadavg_gives_the_node_task_count() {
        assert_eq!(
            tasks_in_loadavg("0.52 0.58 0.59 3/1234 56789\n"),
            Some(1234)
        );
        assert_eq!(tasks_in_loadavg("garbage"), None);
        let (available, capacity) = pids().expect("/proc is readable");
        assert!(
            available > 0 && available < capacity,
            "{available}/{capacity}"
        );
    }
}
