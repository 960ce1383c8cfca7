//! `make bench-kubelet`: the kubelet's pod startup latency on real containerd beside the raw CRI
//! baseline, its memory with 20 pods, and the hollow-node scale run.
//!
//! - **startup** (real containerd, the release kubelet and kube-apiserver): 50 pods created one
//!   after another, then 3 bursts of 20 created at once; each pod's latency is from the
//!   benchmark's create call until a watch sees it Running. The baseline does the same work
//!   straight through the CRI on the same containerd (RunPodSandbox with the same CNI network,
//!   CreateContainer, StartContainer), 50 times one after another and 20 at once; each kubelet
//!   burst is followed by a raw CRI burst, so load from outside weighs on both alike. Each phase
//!   starts once the previous phase's sandboxes are gone from the runtime (the kubelet tears
//!   pods down after their grace-0 deletion has already removed them from the API;
//!   BENCH_NO_TEARDOWN_WAIT=1 starts as soon as the API is empty, as the bench did before
//!   2026-11-23). After the last burst (20 pods running) the kubelet's RSS is read from /proc,
//!   and the CPU the kubelet, containerd and the apiserver spent on the bursts from
//!   /proc/<pid>/stat. BENCH_TIMELINE=1 prints each burst pod's timeline as the benchmark's
//!   watch saw it; KUBELET_RUST_LOG=info,kubelet::timeline=debug with KEEP_TEST_DIRS=1 keeps
//!   the kubelet's side of it in its log.
//!   Goals: p99 <= 1 s, RSS <= 30 MiB.
//! - **hollow** (the release kube-apiserver, kube-scheduler and kube-controller-manager's node
//!   lifecycle controller, `hollow-node` running 1,000
//!   kubelets on in-memory runtimes): from the start of `hollow-node` until every node is
//!   Ready, then 10,000 pods (one pause container, no service-account token, as kubemark's
//!   density pods) created through the API until every one is Running. Goal: both within 60 s.
//!
//! Env: BENCH_ONLY ("startup" or "hollow"), BENCH_HOLLOW_NODES (1000), BENCH_HOLLOW_PODS
//! (10000), BENCH_CONCURRENCY (64), KUBELET_BIN / KUBE_APISERVER_BIN / KUBE_SCHEDULER_BIN,
//! BENCH_TIMELINE, BENCH_NO_TEARDOWN_WAIT, KUBELET_RUST_LOG.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "../tests/common/containerd.rs"]
mod containerd;

#[path = "../tests/common/kubelet.rs"]
mod kubelet_process;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use kubelet::cri::{api, Runtime};
use serde_json::json;

use common::{free_port, ApiServer};
use containerd::{Containerd, BUSYBOX_IMAGE};
use kubelet_process::Kubelet;

const GOAL_P99: Duration = Duration::from_secs(1);
const GOAL_RSS_MIB: f64 = 30.0;
const GOAL_HOLLOW: Duration = Duration::from_secs(60);
const PHASE_TIMEOUT: Duration = Duration::from_secs(300);

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn enabled(case: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|c| c.trim() == case))
}

async fn client(path: &Path) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Nearest-rank percentile of ascending durations.
fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

/// Resident memory of a process in MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// CPU seconds (user + system) a process used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

struct Latencies {
    case: String,
    samples: Vec<Duration>,
}

impl Latencies {
    fn row(&self, baseline: Option<&Latencies>) -> String {
        let mut s = self.samples.clone();
        s.sort();
        let p50 = pct(&s, 0.5);
        let p99 = pct(&s, 0.99);
        let ratio = baseline.map_or(String::from("-"), |b| {
            let mut bs = b.samples.clone();
            bs.sort();
            format!("{:.1}x", p99.as_secs_f64() / pct(&bs, 0.99).as_secs_f64())
        });
        format!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            self.case,
            s.len(),
            ms(p50),
            ms(pct(&s, 0.9)),
            ms(p99),
            ms(GOAL_P99),
            ratio
        )
    }
}

// ---------------------------------------------------------------------------------------------
// startup: real containerd

fn busybox_pod(name: &str, node: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": BUSYBOX_IMAGE, "imagePullPolicy": "Never",
                "command": ["sleep", "3600"]}],
        },
    }))?)
}

/// Each pod's states as the watch saw them change (phase, and the first container's state),
/// with the instant each was first seen; printed with BENCH_TIMELINE=1.
type Timelines = Arc<Mutex<HashMap<String, Vec<(Instant, String)>>>>;

/// A pod's state for the timeline: `Pending`, `Pending/ContainerCreating`, `Running`, ...
fn state_of(p: &Pod) -> String {
    let status = p.status.as_ref();
    let phase = status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "-".into());
    let waiting = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.clone());
    match waiting {
        Some(reason) => format!("{phase}/{reason}"),
        None => phase,
    }
}

/// Running pods of `ns` as a watch sees them: name -> the instant it was first seen Running.
async fn watch_running(
    client: Client,
    ns: String,
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    timelines: Timelines,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let mut rv = "0".to_string();
    loop {
        let mut stream = pods
            .watch(&WatchParams::default().timeout(290), &rv)
            .await?
            .boxed();
        while let Some(ev) = stream.try_next().await? {
            let p = match ev {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => p,
                WatchEvent::Bookmark(b) => {
                    rv = b.metadata.resource_version;
                    continue;
                }
                _ => continue,
            };
            if let Some(v) = p.metadata.resource_version.clone() {
                rv = v;
            }
            let state = state_of(&p);
            {
                let mut timelines = timelines.lock().expect("timelines");
                let line = timelines
                    .entry(p.metadata.name.clone().unwrap_or_default())
                    .or_default();
                if line.last().is_none_or(|(_, s)| *s != state) {
                    line.push((Instant::now(), state));
                }
            }
            let running = p
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|phase| phase == "Running");
            if running {
                let now = Instant::now();
                seen.lock()
                    .expect("seen")
                    .entry(p.metadata.name.clone().unwrap_or_default())
                    .or_insert(now);
            }
        }
    }
}

async fn wait_for(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Creates `names` at once and returns each one's create -> Running latency. With
/// BENCH_TIMELINE set, prints each pod's timeline (create sent and answered, the states the
/// watch saw) in ms from the first create, and that instant's wall clock to match the
/// kubelet's log (KUBELET_RUST_LOG=info,kubelet::timeline=debug KEEP_TEST_DIRS=1).
async fn start_pods(
    pods: &Api<Pod>,
    node: &str,
    names: &[String],
    seen: &Arc<Mutex<HashMap<String, Instant>>>,
    timelines: &Timelines,
) -> anyhow::Result<Vec<Duration>> {
    let start = Instant::now();
    let wall = k8s_openapi::chrono::Utc::now();
    let created = futures::future::try_join_all(names.iter().map(|name| async move {
        let pod = busybox_pod(name, node)?;
        let t0 = Instant::now();
        pods.create(&PostParams::default(), &pod).await?;
        anyhow::Ok((name.clone(), t0, t0.elapsed()))
    }))
    .await?;
    wait_for("pods Running", PHASE_TIMEOUT, || {
        let seen = seen.lock().expect("seen");
        names.iter().all(|n| seen.contains_key(n))
    })
    .await?;
    if names.len() > 1 && std::env::var_os("BENCH_TIMELINE").is_some() {
        let timelines = timelines.lock().expect("timelines");
        println!(
            "timeline from {} (ms from the first create):",
            wall.to_rfc3339()
        );
        for (name, t0, took) in &created {
            let at = |i: Instant| i.saturating_duration_since(start).as_millis();
            let states: Vec<String> = timelines
                .get(name)
                .into_iter()
                .flatten()
                .map(|(i, state)| format!("{state}@{}", at(*i)))
                .collect();
            println!(
                "  {name}: create sent {} answered {} | {}",
                at(*t0),
                at(*t0 + *took),
                states.join(" ")
            );
        }
    }
    let seen = seen.lock().expect("seen");
    Ok(created
        .into_iter()
        .map(|(name, t0, _)| seen[&name].duration_since(t0))
        .collect())
}

/// Deletes `names` and waits until the kubelet has removed their sandboxes from the runtime:
/// a grace-0 delete takes the objects out of the API at once, and the next phase must not
/// start while the kubelet is still tearing these pods down (the raw CRI baseline removes
/// its sandboxes before each phase too).
async fn delete_all(
    pods: &Api<Pod>,
    names: &[String],
    rt: &Runtime,
    ns: &str,
) -> anyhow::Result<()> {
    delete_objects(pods, names).await?;
    if std::env::var_os("BENCH_NO_TEARDOWN_WAIT").is_some() {
        return Ok(());
    }
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let left = rt
            .list_pod_sandbox(None)
            .await?
            .iter()
            .filter(|s| s.metadata.as_ref().is_some_and(|m| m.namespace == ns))
            .count();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("{left} sandboxes still in the runtime after deletion");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn delete_objects(pods: &Api<Pod>, names: &[String]) -> anyhow::Result<()> {
    for name in names {
        let _ = pods
            .delete(name, &DeleteParams::default().grace_period(0))
            .await;
    }
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let left = pods.list(&Default::default()).await?.items.len();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("{left} pods still present after deletion");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The raw CRI path for one pod, as the kubelet would take it: sandbox on the node's CNI
/// network, then the container.
async fn cri_pod(rt: &Runtime, name: &str, logs: &Path) -> anyhow::Result<(Duration, String)> {
    let uid = format!("bench-{name}");
    let sandbox_config = api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: uid.clone(),
            namespace: "cri-baseline".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: logs.join(&uid).display().to_string(),
        labels: HashMap::from([("bench".to_string(), "cri".to_string())]),
        linux: Some(api::LinuxPodSandboxConfig::default()),
        ..Default::default()
    };
    let t0 = Instant::now();
    let sandbox = rt.run_pod_sandbox(sandbox_config.clone()).await?;
    let container = rt
        .create_container(
            &sandbox,
            api::ContainerConfig {
                metadata: Some(api::ContainerMetadata {
                    name: "c".into(),
                    attempt: 0,
                }),
                image: Some(api::ImageSpec {
                    image: BUSYBOX_IMAGE.into(),
                    ..Default::default()
                }),
                command: vec!["sleep".into(), "3600".into()],
                log_path: "c/0.log".into(),
                linux: Some(api::LinuxContainerConfig::default()),
                ..Default::default()
            },
            sandbox_config,
        )
        .await?;
    rt.start_container(&container).await?;
    Ok((t0.elapsed(), sandbox))
}

async fn cri_remove(rt: &Runtime, sandboxes: &[String]) -> anyhow::Result<()> {
    for id in sandboxes {
        rt.stop_pod_sandbox(id).await?;
        rt.remove_pod_sandbox(id).await?;
    }
    Ok(())
}

/// The apiserver, containerd and kubelet are made (and dropped) outside the async runtime:
/// the containerd harness tears down through a runtime of its own.
fn startup(rt: &tokio::runtime::Runtime, lines: &mut Vec<String>) -> anyhow::Result<()> {
    let server = ApiServer::start();
    let containerd = Containerd::start();
    let kubelet = Kubelet::start(
        &containerd,
        "bench",
        (10, "kbb"),
        |node| server.kubeconfig_for_cert(&format!("system:node:{node}"), &["system:nodes"]),
        &[],
    );
    rt.block_on(measure_startup(&server, &containerd, &kubelet, lines))
}

async fn measure_startup(
    server: &ApiServer,
    containerd: &Containerd,
    kubelet: &Kubelet,
    lines: &mut Vec<String>,
) -> anyhow::Result<()> {
    let admin = client(&server.kubeconfig(common::User::Admin)).await?;
    let nodes: Api<Node> = Api::all(admin.clone());
    let node = kubelet.node.clone();
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let ready = nodes.get_opt(&node).await?.is_some_and(|n| {
            n.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "node {node} never became Ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ns = server.namespace("bench");
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let rt = Runtime::new(&containerd.endpoint())?;
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let timelines = Timelines::default();
    let watcher = tokio::spawn(watch_running(
        admin.clone(),
        ns.clone(),
        seen.clone(),
        timelines.clone(),
    ));

    // Warm-up: the first pod pays for the CNI bridge and image unpacking.
    let warm = vec!["warm".to_string()];
    start_pods(&pods, &node, &warm, &seen, &timelines).await?;
    delete_all(&pods, &warm, &rt, &ns).await?;

    let mut sequential = Latencies {
        case: "kubelet: 50 pods one after another".into(),
        samples: Vec::new(),
    };
    for i in 0..50 {
        let names = vec![format!("seq-{i:02}")];
        sequential
            .samples
            .extend(start_pods(&pods, &node, &names, &seen, &timelines).await?);
    }
    let seq_names: Vec<String> = (0..50).map(|i| format!("seq-{i:02}")).collect();
    delete_all(&pods, &seq_names, &rt, &ns).await?;

    // The raw CRI baseline on the same containerd, through the network the kubelet set up.
    let logs = containerd.dir().join("cri-baseline-logs");
    let mut cri_seq = Latencies {
        case: "raw CRI: 50 pods one after another".into(),
        samples: Vec::new(),
    };
    let mut sandboxes = Vec::new();
    for i in 0..50 {
        let (d, id) = cri_pod(&rt, &format!("seq-{i}"), &logs).await?;
        cri_seq.samples.push(d);
        sandboxes.push(id);
    }
    cri_remove(&rt, &sandboxes).await?;

    // Each kubelet burst is followed by a raw CRI burst, so that other load on the machine
    // weighs on both alike.
    let mut bursts = Latencies {
        case: "kubelet: 3 bursts of 20 pods".into(),
        samples: Vec::new(),
    };
    let mut cri_burst = Latencies {
        case: "raw CRI: 3 bursts of 20 pods".into(),
        samples: Vec::new(),
    };
    let mut rss = 0.0;
    // CPU seconds the kubelet, containerd (without its shims) and the apiserver spend on the
    // bursts, from the first create to the last pod Running, deletions not included; and
    // containerd's over the raw CRI bursts.
    let kubelet_pid = kubelet.child.as_ref().map(|c| c.id());
    let pids = [kubelet_pid, containerd.pid(), server.pid()];
    let mut burst_cpu = [0.0; 3];
    let mut cri_burst_cpu = 0.0;
    for b in 0..3 {
        let names: Vec<String> = (0..20).map(|i| format!("burst{b}-{i:02}")).collect();
        let cpu0 = pids.map(|p| p.map_or(0.0, cpu_secs));
        let samples = start_pods(&pods, &node, &names, &seen, &timelines).await?;
        for (i, p) in pids.iter().enumerate() {
            burst_cpu[i] += p.map_or(0.0, cpu_secs) - cpu0[i];
        }
        bursts.samples.extend(samples.iter().copied());
        if b == 2 {
            // 20 pods running: settle a moment so the reading is not a creation peak.
            tokio::time::sleep(Duration::from_secs(5)).await;
            rss = kubelet.child.as_ref().map_or(0.0, |c| rss_mib(c.id()));
        }
        delete_all(&pods, &names, &rt, &ns).await?;

        let cpu0 = pids[1].map_or(0.0, cpu_secs);
        let results =
            futures::future::try_join_all(names.iter().map(|name| cri_pod(&rt, name, &logs)))
                .await?;
        cri_burst_cpu += pids[1].map_or(0.0, cpu_secs) - cpu0;
        let ids: Vec<String> = results.iter().map(|(_, id)| id.clone()).collect();
        let cri_samples: Vec<Duration> = results.into_iter().map(|(d, _)| d).collect();
        cri_remove(&rt, &ids).await?;
        if std::env::var_os("BENCH_TIMELINE").is_some() {
            let max_ms = |v: &[Duration]| ms(v.iter().copied().max().unwrap_or_default());
            println!(
                "burst {b}: kubelet max {} ms, raw CRI max {} ms",
                max_ms(&samples),
                max_ms(&cri_samples)
            );
        }
        cri_burst.samples.extend(cri_samples);
    }
    watcher.abort();

    lines.push(
        "\n### kubelet pod startup on containerd (create -> Running seen by a watch)\n".into(),
    );
    lines.push(
        "| case | pods | p50 ms | p90 ms | p99 ms | goal p99 ms | p99 / raw CRI p99 |".into(),
    );
    lines.push("|---|---:|---:|---:|---:|---:|---:|".into());
    lines.push(sequential.row(Some(&cri_seq)));
    lines.push(bursts.row(Some(&cri_burst)));
    lines.push(cri_seq.row(None));
    lines.push(cri_burst.row(None));
    lines.push(format!(
        "\nkubelet RSS with 20 pods running: {rss:.1} MiB (goal <= {GOAL_RSS_MIB:.0} MiB, {:.2}x)",
        rss / GOAL_RSS_MIB
    ));
    lines.push(format!(
        "\nCPU over the 3 bursts (create to all Running): kubelet {:.2} s, containerd {:.2} s \
         (shims not counted), kube-apiserver {:.2} s; containerd {:.2} s over the raw CRI bursts.",
        burst_cpu[0], burst_cpu[1], burst_cpu[2], cri_burst_cpu
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// hollow: 1,000 kubelets on in-memory runtimes

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn binary(env: &str, built: &str) -> PathBuf {
    std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(built))
}

fn scheduler(server: &ApiServer, dir: &Path) -> anyhow::Result<Process> {
    let kubeconfig = server.kubeconfig_for_cert("system:kube-scheduler", &[]);
    let bin = std::env::var_os("KUBE_SCHEDULER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::sibling_binary("kube-scheduler"));
    let child = Command::new(&bin)
        .args([
            format!("--kubeconfig={}", kubeconfig.display()),
            "--bind-address=127.0.0.1".to_string(),
            format!("--secure-port={}", free_port()),
            "--leader-elect=false".to_string(),
            "--kube-api-qps=5000".to_string(),
            "--kube-api-burst=5000".to_string(),
            format!("--cert-dir={}", dir.join("sched-certs").display()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("kube-scheduler.log"))?)
        .env("RUST_LOG", "warn")
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    Ok(Process(child))
}

/// The release kube-controller-manager with only the node lifecycle controller, which lifts
/// the not-ready taint the nodes register with.
fn controller_manager(server: &ApiServer, dir: &Path) -> anyhow::Result<Process> {
    let kubeconfig = server.kubeconfig_for_cert("system:kube-controller-manager", &[]);
    let bin = std::env::var_os("KUBE_CONTROLLER_MANAGER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::sibling_binary("kube-controller-manager"));
    let child = Command::new(&bin)
        .args([
            format!("--kubeconfig={}", kubeconfig.display()),
            "--bind-address=127.0.0.1".to_string(),
            format!("--secure-port={}", free_port()),
            "--leader-elect=false".to_string(),
            "--controllers=nodelifecycle".to_string(),
            "--use-service-account-credentials=true".to_string(),
            "--kube-api-qps=5000".to_string(),
            "--kube-api-burst=5000".to_string(),
            format!("--root-ca-file={}", server.pki.ca_cert.display()),
            format!("--cert-dir={}", dir.join("kcm-certs").display()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("kube-controller-manager.log"))?)
        .env("RUST_LOG", "warn")
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    Ok(Process(child))
}

fn pause_pod(name: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "automountServiceAccountToken": false,
            "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}],
        },
    }))?)
}

/// Counts Ready nodes (and Running pods) from watches.
async fn count<K>(
    api: Api<K>,
    done: impl Fn(&K) -> bool + Send + 'static,
    into: Arc<Mutex<HashSet<String>>>,
) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut rv = "0".to_string();
    loop {
        let mut stream = api
            .watch(&WatchParams::default().timeout(290), &rv)
            .await?
            .boxed();
        while let Some(ev) = stream.try_next().await? {
            let obj = match ev {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => o,
                WatchEvent::Bookmark(b) => {
                    rv = b.metadata.resource_version;
                    continue;
                }
                _ => continue,
            };
            if let Some(v) = obj.meta().resource_version.clone() {
                rv = v;
            }
            if done(&obj) {
                into.lock()
                    .expect("count")
                    .insert(obj.meta().name.clone().unwrap_or_default());
            }
        }
    }
}

async fn hollow(lines: &mut Vec<String>) -> anyhow::Result<()> {
    let n_nodes: usize = env_num("BENCH_HOLLOW_NODES", 1000);
    let n_pods: usize = env_num("BENCH_HOLLOW_PODS", 10_000);
    let concurrency: usize = env_num("BENCH_CONCURRENCY", 64);
    let server = ApiServer::start();
    let dir = tempfile::Builder::new()
        .prefix("kube-bench-hollow-")
        .tempdir()?;
    let _scheduler = scheduler(&server, dir.path())?;
    let _kcm = controller_manager(&server, dir.path())?;
    let admin = client(&server.kubeconfig(common::User::Admin)).await?;
    let ns = server.namespace("hollow");

    let ready_nodes = Arc::new(Mutex::new(HashSet::new()));
    let node_watch = tokio::spawn(count(
        Api::<Node>::all(admin.clone()),
        |n: &Node| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        },
        ready_nodes.clone(),
    ));
    let running_pods = Arc::new(Mutex::new(HashSet::new()));
    let pod_watch = tokio::spawn(count(
        Api::<Pod>::namespaced(admin.clone(), &ns),
        |p: &Pod| {
            p.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|phase| phase == "Running")
        },
        running_pods.clone(),
    ));

    // Every hollow kubelet uses one admin credential: the Node authorizer would need a
    // certificate per node, which is setup cost, not kubelet work.
    let kubeconfig = server.kubeconfig(common::User::Admin);
    let t0 = Instant::now();
    let hollow = Process(
        Command::new(binary("HOLLOW_NODE_BIN", env!("CARGO_BIN_EXE_hollow-node")))
            .args([
                format!("--kubeconfig={}", kubeconfig.display()),
                format!("--nodes={n_nodes}"),
                format!("--root-dir={}", dir.path().join("nodes").display()),
                "--start-rate=0".to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(dir.path().join("hollow-node.log"))?)
            .env("RUST_LOG", "warn")
            .spawn()
            .context("spawn hollow-node")?,
    );
    let api_pid = server.pid();
    let api_cpu0 = api_pid.map_or(0.0, cpu_secs);
    let ready = wait_for("hollow nodes Ready", PHASE_TIMEOUT, || {
        ready_nodes.lock().expect("count").len() >= n_nodes
    })
    .await;
    let nodes_ready = t0.elapsed();
    let nodes_rss = rss_mib(hollow.0.id());
    ready?;

    let t1 = Instant::now();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    futures::stream::iter(0..n_pods)
        .map(|i| {
            let pods = pods.clone();
            async move {
                pods.create(&PostParams::default(), &pause_pod(&format!("p-{i:05}"))?)
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await?;
    let created = t1.elapsed();
    let running = wait_for("pods Running", PHASE_TIMEOUT, || {
        running_pods.lock().expect("count").len() >= n_pods
    })
    .await;
    let pods_running = t1.elapsed();
    let total = t0.elapsed();
    let hollow_rss = rss_mib(hollow.0.id());
    let hollow_cpu = cpu_secs(hollow.0.id());
    let api_cpu = api_pid.map_or(0.0, cpu_secs) - api_cpu0;
    running?;
    // Steady state: what keeping the pods running costs the kubelets (relists, resyncs, node
    // status and leases), with nothing else happening.
    let steady_secs = env_num("BENCH_HOLLOW_STEADY_SECS", 10u64) as f64;
    let steady_cpu0 = cpu_secs(hollow.0.id());
    tokio::time::sleep(Duration::from_secs_f64(steady_secs)).await;
    let steady_cpu = (cpu_secs(hollow.0.id()) - steady_cpu0) / steady_secs;
    node_watch.abort();
    pod_watch.abort();

    lines.push(format!(
        "\n### hollow nodes: {n_nodes} kubelets on in-memory runtimes, {n_pods} pods\n"
    ));
    lines.push("| phase | seconds | goal s | ratio |".into());
    lines.push("|---|---:|---:|---:|".into());
    let goal = GOAL_HOLLOW.as_secs_f64();
    let row = |what: &str, d: Duration| {
        format!(
            "| {what} | {:.1} | {goal:.0} | {:.2}x |",
            d.as_secs_f64(),
            d.as_secs_f64() / goal
        )
    };
    lines.push(row(
        &format!("{n_nodes} nodes Ready (from hollow-node start)"),
        nodes_ready,
    ));
    lines.push(format!(
        "| {n_pods} pods created through the API | {:.1} | | |",
        created.as_secs_f64()
    ));
    lines.push(row(
        &format!("{n_pods} pods Running (from the first create)"),
        pods_running,
    ));
    lines.push(row("total", total));
    lines.push(format!(
        "\nhollow-node process: RSS {nodes_rss:.0} MiB with the nodes Ready, {hollow_rss:.0} MiB \
         with the pods Running ({:.1} MiB per node), {hollow_cpu:.1} CPU s; apiserver {api_cpu:.1} \
         CPU s over the run.",
        hollow_rss / n_nodes as f64
    ));
    lines.push(format!(
        "\nSteady state over {steady_secs:.0} s with the pods Running: hollow-node {:.0} ms CPU per \
         second, {:.0} µs CPU per pod per second.",
        steady_cpu * 1000.0,
        steady_cpu * 1e6 / n_pods.max(1) as f64
    ));
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut lines = Vec::new();
    let started = Instant::now();
    if enabled("startup") {
        startup(&rt, &mut lines)?;
    }
    if enabled("hollow") {
        rt.block_on(hollow(&mut lines))?;
    }
    for line in &lines {
        println!("{line}");
    }
    println!("\nTotal run {:.0}s.", started.elapsed().as_secs_f64());
    Ok(())
}
