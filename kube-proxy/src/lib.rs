//! kube-proxy: watches Services and EndpointSlices and programs their virtual IPs into the
//! node's packet filter (iptables or nftables), incrementally and atomically.

pub mod changes;
pub mod conntrack;
pub mod healthz;
pub mod iptables;
pub mod metrics;
pub mod nftables;
pub mod options;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::sync::Notify;

use component_base::Shutdown;

pub use options::Options;

use changes::{ServiceKey, ServicePort, Tracker};
use healthz::ProxyHealth;
use metrics::Metrics;

/// How often a full resync rewrites every rule even without errors (upstream's one hour).
pub const FULL_SYNC_PERIOD: Duration = Duration::from_secs(3600);

/// What kube-proxy failed at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to run {tool}")]
    Spawn {
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{tool} failed: {stderr}")]
    Tool { tool: &'static str, stderr: String },
    #[error("nf_tables transaction failed: {what}")]
    Netlink {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to load kubeconfig")]
    Kubeconfig(#[source] kube::config::KubeconfigError),
    #[error("failed to infer the apiserver configuration")]
    InferConfig(#[source] kube::config::InferConfigError),
    #[error("failed to create the apiserver client")]
    Client(#[source] kube::Error),
    #[error("failed to register metrics")]
    Metrics(#[source] prometheus::Error),
    #[error("failed to serve {what}")]
    Serve {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to serve metrics")]
    MetricsServer(#[source] component_base::Error),
}

/// The proxy mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Iptables,
    Nftables,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Iptables => "iptables",
            Mode::Nftables => "nftables",
        }
    }
}

/// Which node addresses NodePorts answer on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodePortAddresses {
    /// Every local address (upstream's default when the list is empty).
    All,
    /// Local addresses inside these IPv4 CIDRs.
    Cidrs(Vec<(Ipv4Addr, u8)>),
}

impl NodePortAddresses {
    /// Parses --nodeport-addresses; `primary` and IPv6 CIDRs fall back to every local address of
    /// the family that is programmed.
    pub fn parse(list: &[String]) -> Result<Self, options::OptionsError> {
        let mut cidrs = Vec::new();
        for s in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            if s == "primary" || s.contains(':') {
                return Ok(Self::All);
            }
            match options::parse_cidr(s) {
                Some(c) => cidrs.push(c),
                None => {
                    return Err(options::OptionsError::Invalid(format!(
                        "KubeProxyConfiguration.NodePortAddresses[0]: Invalid value: {s:?}: must be a valid CIDR or \"primary\""
                    )))
                }
            }
        }
        Ok(if cidrs.is_empty() {
            Self::All
        } else {
            Self::Cidrs(cidrs)
        })
    }

    /// Whether 127.0.0.1 is a NodePort address.
    pub fn includes_loopback(&self) -> bool {
        match self {
            Self::All => true,
            Self::Cidrs(c) => c
                .iter()
                .any(|(ip, len)| cidr_contains(*ip, *len, Ipv4Addr::LOCALHOST)),
        }
    }
}

/// Runs `tool args` with `input` on stdin (one iptables-restore or nft transaction); its stderr
/// becomes the error when it fails.
fn feed(tool: &'static str, args: &[&str], input: &str) -> Result<(), Error> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let spawn = |source| Error::Spawn { tool, source };
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).map_err(spawn)?;
    }
    let out = child.wait_with_output().map_err(spawn)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        tracing::debug!(%stderr, input, "{tool} failed");
        return Err(Error::Tool { tool, stderr });
    }
    Ok(())
}

fn cidr_contains(net: Ipv4Addr, len: u8, ip: Ipv4Addr) -> bool {
    if len == 0 {
        return true;
    }
    let mask = u32::MAX << (32 - u32::from(len));
    u32::from(net) & mask == u32::from(ip) & mask
}

/// The settings rule rendering depends on.
#[derive(Clone, Debug)]
pub struct RuleConfig {
    pub cluster_cidrs: Vec<(Ipv4Addr, u8)>,
    pub masquerade_all: bool,
    pub masquerade_mark: u32,
}

/// What a sync wrote: rule counts per table, bytes of input.
#[derive(Clone, Debug, Default)]
pub struct SyncReport {
    pub rules: Vec<(&'static str, usize)>,
    pub bytes: usize,
}

/// The validated configuration of one kube-proxy.
#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    pub kubeconfig: Option<PathBuf>,
    pub master: Option<String>,
    pub hostname: String,
    pub bind_address: Option<IpAddr>,
    pub cluster_cidrs: Vec<(Ipv4Addr, u8)>,
    pub healthz_bind_address: Option<SocketAddr>,
    pub metrics_bind_address: Option<SocketAddr>,
    pub nodeport_addresses: NodePortAddresses,
    pub masquerade_all: bool,
    pub masquerade_mark: u32,
    pub localhost_node_ports: bool,
    pub sync_period: Duration,
    pub min_sync_period: Duration,
    pub cleanup: bool,
}

impl Config {
    pub fn rule_config(&self) -> RuleConfig {
        RuleConfig {
            cluster_cidrs: self.cluster_cidrs.clone(),
            masquerade_all: self.masquerade_all,
            masquerade_mark: self.masquerade_mark,
        }
    }
}

/// One proxier per mode.
pub enum Proxier {
    Iptables(iptables::Proxier),
    Nftables(nftables::Proxier),
}

impl Proxier {
    pub fn new(config: &Config) -> Self {
        match config.mode {
            Mode::Iptables => Self::Iptables(iptables::Proxier::new(
                config.rule_config(),
                config.nodeport_addresses.clone(),
                config.localhost_node_ports,
            )),
            Mode::Nftables => Self::Nftables(nftables::Proxier::new(
                config.rule_config(),
                config.nodeport_addresses.clone(),
            )),
        }
    }

    /// Programs `changes`; `full` rewrites everything (see the per-mode `sync`).
    pub fn sync(
        &mut self,
        changes: &BTreeMap<ServiceKey, Vec<ServicePort>>,
        full: bool,
    ) -> Result<SyncReport, Error> {
        match self {
            Self::Iptables(p) => p.sync(changes, full),
            Self::Nftables(p) => p.sync(changes, full),
        }
    }
}

/// Removes every chain, rule and table either mode created (`--cleanup`).
pub fn cleanup() -> Result<(), Error> {
    let ipt = iptables::cleanup();
    let nft = nftables::cleanup();
    ipt.and(nft)
}

async fn client(config: &Config) -> Result<Client, Error> {
    let mut kc = match &config.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(Error::Kubeconfig)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(Error::Kubeconfig)?
        }
        None => kube::Config::infer().await.map_err(Error::InferConfig)?,
    };
    if let Some(master) = &config.master {
        if let Ok(uri) = master.parse() {
            kc.cluster_url = uri;
        }
    }
    Client::try_from(kc).map_err(Error::Client)
}

/// Shared between the watch tasks and the sync loop.
struct Shared {
    tracker: Mutex<Tracker>,
    notify: Notify,
    health: ProxyHealth,
    metrics: Metrics,
}

impl Shared {
    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.health.queued();
        self.metrics.last_queued_timestamp.set(unix_now());
        self.notify.notify_one();
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Runs kube-proxy until `shutdown` (or, with `cleanup`, removes its rules and returns).
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), Error> {
    if config.cleanup {
        return cleanup();
    }
    let metrics = Metrics::new().map_err(Error::Metrics)?;
    let health = ProxyHealth::new(config.sync_period * 2);
    if let Some(addr) = config.healthz_bind_address {
        healthz::serve(addr, health.clone(), shutdown.clone())
            .await
            .map_err(|source| Error::Serve {
                what: "healthz",
                source,
            })?;
    }
    if let Some(addr) = config.metrics_bind_address {
        let mode = config.mode.as_str();
        let extra = component_base::http::handler(move |path, _query| async move {
            match path.as_str() {
                "/proxyMode" => component_base::Reply::text(http::StatusCode::OK, mode),
                _ => component_base::Reply::not_found(),
            }
        });
        component_base::serve(
            addr,
            None,
            metrics.registry.clone(),
            component_base::Health::new(),
            Some(extra),
            shutdown.clone(),
        )
        .await
        .map_err(Error::MetricsServer)?;
    }
    let client = client(&config).await?;
    tracing::info!(mode = config.mode.as_str(), hostname = %config.hostname, "starting kube-proxy");

    let shared = Arc::new(Shared {
        tracker: Mutex::new(Tracker::default()),
        notify: Notify::new(),
        health,
        metrics,
    });
    let services: Api<Service> = Api::all(client.clone());
    let slices: Api<EndpointSlice> = Api::all(client);
    let watch_cfg = watcher::Config::default().labels(changes::WATCH_LABEL_SELECTOR);
    let svc_task = tokio::spawn(watch(
        services,
        watch_cfg.clone(),
        shared.clone(),
        |t, o| t.apply_service(o),
        |t, o| t.delete_service(&o),
        |t, all| t.replace_services(all),
    ));
    let slice_task = tokio::spawn(watch(
        slices,
        watch_cfg,
        shared.clone(),
        |t, o| t.apply_slice(o),
        |t, o| t.delete_slice(&o),
        |t, all| t.replace_slices(all),
    ));

    sync_loop(&config, &shared, shutdown).await;
    svc_task.abort();
    slice_task.abort();
    Ok(())
}

async fn watch<K>(
    api: Api<K>,
    cfg: watcher::Config,
    shared: Arc<Shared>,
    apply: fn(&mut Tracker, K),
    delete: fn(&mut Tracker, K),
    replace: fn(&mut Tracker, Vec<K>),
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    let mut buffer: Vec<K> = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => buffer.clear(),
            Ok(Event::InitApply(o)) => buffer.push(o),
            Ok(Event::InitDone) => {
                replace(&mut shared.tracker(), std::mem::take(&mut buffer));
                shared.changed();
            }
            Ok(Event::Apply(o)) => {
                apply(&mut shared.tracker(), o);
                shared.changed();
            }
            Ok(Event::Delete(o)) => {
                delete(&mut shared.tracker(), o);
                shared.changed();
            }
            Err(e) => tracing::warn!(error = %e, "watch failed; retrying"),
        }
    }
}

async fn sync_loop(config: &Config, shared: &Shared, shutdown: Shutdown) {
    let mut proxier = Proxier::new(config);
    let mut installed: BTreeMap<ServiceKey, Vec<ServicePort>> = BTreeMap::new();
    let mut last_sync: Option<Instant> = None;
    let mut last_full: Option<Instant> = None;
    let mut need_full = true;
    let mut retry = false;
    loop {
        let wait = if retry {
            config.min_sync_period.max(Duration::from_secs(1))
        } else {
            config.sync_period
        };
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = shared.notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        if let Some(t) = last_sync {
            let rest = config.min_sync_period.saturating_sub(t.elapsed());
            if !rest.is_zero() {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = tokio::time::sleep(rest) => {}
                }
            }
        }
        let full = need_full || last_full.is_none_or(|t| t.elapsed() >= FULL_SYNC_PERIOD);
        let (changes, triggers, dirty_count) = {
            let mut tracker = shared.tracker();
            if !tracker.synced() {
                continue;
            }
            let (dirty, triggers) = tracker.take_dirty();
            let dirty_count = dirty.len();
            let keys: BTreeSet<ServiceKey> = if full {
                let mut k = tracker.all_keys();
                k.extend(dirty);
                k.extend(installed.keys().cloned());
                k
            } else {
                dirty
            };
            let changes: BTreeMap<ServiceKey, Vec<ServicePort>> = keys
                .into_iter()
                .map(|k| {
                    let ports = tracker.service_ports(&k, &config.hostname);
                    (k, ports)
                })
                .collect();
            (changes, triggers, dirty_count)
        };
        if !full && changes.is_empty() {
            shared.health.updated();
            continue;
        }
        let start = Instant::now();
        let result = tokio::task::block_in_place(|| proxier.sync(&changes, full));
        let elapsed = start.elapsed().as_secs_f64();
        last_sync = Some(Instant::now());
        let m = &shared.metrics;
        match result {
            Ok(report) => {
                m.sync_duration.observe(elapsed);
                if full {
                    m.sync_full_duration.observe(elapsed);
                    last_full = Some(Instant::now());
                } else {
                    m.sync_partial_duration.observe(elapsed);
                }
                m.last_sync_timestamp.set(unix_now());
                m.service_changes.inc_by(dirty_count as f64);
                m.endpoint_changes.inc_by(triggers.len() as f64);
                for (table, n) in &report.rules {
                    m.rules_total.with_label_values(&[table]).set(*n as f64);
                }
                let now = SystemTime::now();
                for t in triggers {
                    if let Ok(d) = now.duration_since(t) {
                        m.network_programming.observe(d.as_secs_f64());
                    }
                }
                let mut stale = BTreeSet::new();
                for (k, ports) in &changes {
                    let old = installed.get(k).map(Vec::as_slice).unwrap_or(&[]);
                    stale.extend(conntrack::stale(old, ports));
                }
                if !stale.is_empty() {
                    tokio::task::block_in_place(|| conntrack::delete(&stale));
                }
                for (k, ports) in changes {
                    if ports.is_empty() {
                        installed.remove(&k);
                    } else {
                        installed.insert(k, ports);
                    }
                }
                need_full = false;
                retry = false;
                shared.health.updated();
                tracing::debug!(
                    full,
                    services = installed.len(),
                    seconds = elapsed,
                    "synced proxy rules"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, full, "failed to sync proxy rules; retrying with a full sync");
                m.restore_failures.inc();
                need_full = true;
                retry = true;
            }
        }
    }
}
