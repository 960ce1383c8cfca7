//! The etcd v3 gRPC services and the member that ties MVCC, Raft and leases together.

mod batcher;
mod cluster;
mod embedded;
pub mod errors;
mod kv;
mod lease;
mod lessor;
mod maintenance;
mod member;
pub mod metrics;
mod read_index;
mod watch;

use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use component_base::shutdown::Shutdown;
use proto::etcdserverpb as pb;
use proto::storepb::{self, internal_raft_request::Request as Op, InternalRaftRequest};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

pub use embedded::EmbeddedStore;
pub use kv::check_txn;
pub use maintenance::ETCD_VERSION;
pub use member::{EtcdServer, Limits};

use crate::mvcc::{Mvcc, Options as MvccOptions};
use crate::raft::{self, member_id, Member, NodeId, RaftConfig};

/// Why the member could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("opening data dir {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("mvcc")]
    Mvcc(#[from] crate::mvcc::MvccError),
    #[error("raft")]
    Raft(#[from] raft::RaftError),
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("reading tls file {path}")]
    TlsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("component base")]
    Base(#[from] component_base::Error),
    #[error("metrics")]
    Metrics(#[from] prometheus::Error),
    #[error("transport")]
    Transport(#[from] tonic::transport::Error),
}

/// A URL a member listens on or advertises: `http(s)://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub raw: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl Url {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let bad = || Error::Config(format!("invalid URL {raw:?} (want http(s)://host:port)"));
        let (tls, rest) = if let Some(r) = raw.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = raw.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = port.parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            raw: raw.to_string(),
            tls,
            host,
            port,
        })
    }

    /// The socket address to bind for this URL.
    /// `localhost` binds 127.0.0.1 (not ::1), so the usual `--endpoints=127.0.0.1:2379` works.
    pub fn socket_addr(&self) -> Result<SocketAddr, Error> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| Error::Config(format!("resolving {}: {e}", self.raw)))?
            .collect();
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| Error::Config(format!("{} resolves to nothing", self.raw)))
    }
}

/// TLS files for one side (client or peer), as etcd's flags give them.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
}

/// How automatic compaction retains history (etcd's --auto-compaction-*).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep this much wall-clock history.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

/// A member's whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client_urls: Vec<Url>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<Url>,
    pub initial_advertise_peer_urls: Vec<String>,
    /// name -> peer URLs.
    pub initial_cluster: BTreeMap<String, Vec<String>>,
    pub initial_cluster_new: bool,
    pub initial_cluster_token: String,
    pub listen_metrics_urls: Vec<Url>,
    pub client_tls: Option<TlsFiles>,
    pub peer_tls: Option<TlsFiles>,
    pub quota_backend_bytes: u64,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub snapshot_count: u64,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub auto_compaction: Option<AutoCompaction>,
    pub watch_progress_notify_interval: Duration,
}

impl Config {
    /// A single member on loopback with etcd's defaults and the given data dir; ports as given
    /// (0 picks free ones: peers are then only reachable by this member itself).
    pub fn single(data_dir: PathBuf, client_port: u16, peer_port: u16) -> Self {
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        Self {
            name: "default".into(),
            data_dir,
            listen_client_urls: vec![Url::parse(&client).expect("static url")],
            advertise_client_urls: vec![client],
            listen_peer_urls: vec![Url::parse(&peer).expect("static url")],
            initial_advertise_peer_urls: vec![peer.clone()],
            initial_cluster: [("default".to_string(), vec![peer])].into_iter().collect(),
            initial_cluster_new: true,
            initial_cluster_token: "etcd-cluster".into(),
            listen_metrics_urls: vec![],
            client_tls: None,
            peer_tls: None,
            quota_backend_bytes: 2 * 1024 * 1024 * 1024,
            max_request_bytes: 1536 * 1024,
            max_txn_ops: 128,
            snapshot_count: 10_000,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            auto_compaction: None,
            watch_progress_notify_interval: Duration::from_secs(600),
        }
    }
}

/// A started member: its bound addresses and the handle to its state.
pub struct Running {
    pub server: Arc<EtcdServer>,
    pub client_addrs: Vec<SocketAddr>,
    pub peer_addrs: Vec<SocketAddr>,
    pub metrics_addrs: Vec<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Waits for every server task to finish (after shutdown triggered) and stops Raft.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        if let Err(e) = self.server.node.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        if let Err(e) = self.server.mvcc.flush() {
            tracing::warn!(error = %e, "final flush");
        }
    }
}

/// Runs a member until `shutdown` triggers.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), Error> {
    let running = start(config, shutdown).await?;
    running.wait().await;
    Ok(())
}

/// Accepted connections with Nagle off: a small gRPC reply must not wait ~40 ms for the
/// peer's delayed ACK (tonic's own `tcp_nodelay` only covers listeners it binds itself).
fn incoming(l: TcpListener) -> TcpIncoming {
    TcpIncoming::from(l).with_nodelay(Some(true))
}

fn read(path: &PathBuf) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::TlsFile {
        path: path.clone(),
        source,
    })
}

fn tonic_tls(t: &TlsFiles) -> Result<ServerTlsConfig, Error> {
    let mut cfg = ServerTlsConfig::new()
        .identity(Identity::from_pem(read(&t.cert_file)?, read(&t.key_file)?));
    if let Some(ca) = &t.trusted_ca_file {
        cfg = cfg
            .client_ca_root(Certificate::from_pem(read(ca)?))
            .client_auth_optional(!t.client_cert_auth);
    }
    Ok(cfg)
}

/// Opens the data dir, starts Raft and every listener, and returns once they are bound.
pub async fn start(config: Config, shutdown: Shutdown) -> Result<Running, Error> {
    let member_dir = config.data_dir.join("member");
    std::fs::create_dir_all(&member_dir)
        .map_err(|e| Error::Config(format!("creating {}: {e}", member_dir.display())))?;
    let db_path = member_dir.join("db");
    let db = sled::Config::new()
        .path(&db_path)
        .cache_capacity(256 * 1024 * 1024)
        // No timer flush: the Raft log is in its own write-ahead log (`member/wal`), synced
        // before anything is acknowledged; the state machine flushes this db in the background
        // at most once a second after applying, and snapshots flush it before the log may be
        // purged. sled's 500 ms flusher only added wake-ups of its IO threads.
        .flush_every_ms(None)
        .open()
        .map_err(|source| Error::DataDir {
            path: db_path.clone(),
            source,
        })?;
    let mvcc = Mvcc::open(
        &db,
        MvccOptions {
            quota_backend_bytes: config.quota_backend_bytes,
        },
    )?;

    let token = config.initial_cluster_token.clone();
    let id = member_id(&config.initial_advertise_peer_urls, &token);
    let cluster_id = member_id(&[], &token);
    let mut initial_members = BTreeMap::new();
    for (name, urls) in &config.initial_cluster {
        // Every initial member must propose the very same membership (openraft requires it),
        // so client URLs are left out here and published by each member once it runs.
        let mid = member_id(urls, &token);
        let client_urls = vec![];
        initial_members.insert(
            mid,
            Member {
                name: name.clone(),
                peer_urls: urls.clone(),
                client_urls,
            },
        );
    }
    if config.initial_cluster_new && !initial_members.contains_key(&id) {
        return Err(Error::Config(format!(
            "--initial-cluster has no member with this member's --initial-advertise-peer-urls {:?}",
            config.initial_advertise_peer_urls
        )));
    }
    let peer_tls = config.peer_tls.as_ref().map(|t| raft::PeerTls {
        cert_file: t.cert_file.clone(),
        key_file: t.key_file.clone(),
        trusted_ca_file: t.trusted_ca_file.clone().unwrap_or_default(),
    });
    let raft_cfg = RaftConfig {
        id,
        initial_members,
        new_cluster: config.initial_cluster_new,
        peer_tls,
        snapshot_count: config.snapshot_count,
        heartbeat_interval_ms: config.heartbeat_interval.as_millis() as u64,
        election_timeout_ms: config.election_timeout.as_millis() as u64,
        wal_dir: member_dir.join("wal"),
    };
    // Bind peers first so the others can reach us as soon as Raft starts talking.
    let mut peer_listeners = Vec::new();
    for u in &config.listen_peer_urls {
        let addr = u.socket_addr()?;
        peer_listeners.push(
            TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })?,
        );
    }
    let node = raft::start(raft_cfg, db, mvcc).await?;
    let metrics = metrics::Metrics::new(ETCD_VERSION)?;
    component_base::metrics::register_process_collector(&metrics.registry)?;
    let limits = Limits {
        max_request_bytes: config.max_request_bytes,
        max_txn_ops: config.max_txn_ops,
        request_timeout: Duration::from_secs(5) + 2 * config.election_timeout,
        quota_backend_bytes: config.quota_backend_bytes,
    };
    // Both loops hold Raft (and so the data dir) and are awaited by `Running::wait`.
    let (batcher, batcher_task) = batcher::Batcher::start(node.raft.clone(), shutdown.clone());
    let (reads, reads_task) =
        read_index::ReadIndex::start(node.clone(), id, limits.request_timeout, shutdown.clone());
    let server = Arc::new(EtcdServer::new(
        id,
        cluster_id,
        token,
        config.name.clone(),
        config.advertise_client_urls.clone(),
        node.clone(),
        lessor::Lessor::new(config.election_timeout),
        limits,
        metrics.clone(),
        batcher,
        reads,
    ));
    metrics.bind(Arc::downgrade(&server));

    let mut tasks = vec![batcher_task, reads_task];
    let mut peer_addrs = Vec::new();
    for l in peer_listeners {
        peer_addrs.push(l.local_addr().map_err(|source| Error::Bind {
            addr: ([0, 0, 0, 0], 0).into(),
            source,
        })?);
        let mut builder = Server::builder();
        if let Some(t) = &config.peer_tls {
            builder = builder.tls_config(tonic_tls(t)?)?;
        }
        let svc = raft::peer_service(node.clone(), Arc::new(Forward(server.clone())))
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let router = builder.add_service(svc);
        let sd = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming(l), async move { sd.wait().await })
                .await
            {
                tracing::error!(error = %e, "peer server failed");
            }
        }));
    }

    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let mut client_addrs = Vec::new();
    let max_in = config.max_request_bytes + 512 * 1024;
    for u in &config.listen_client_urls {
        let addr = u.socket_addr()?;
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        client_addrs.push(
            l.local_addr()
                .map_err(|source| Error::Bind { addr, source })?,
        );
        let mut builder = Server::builder().tcp_nodelay(true);
        if u.tls {
            let t = config.client_tls.as_ref().ok_or_else(|| {
                Error::Config(format!(
                    "{} is https but --cert-file/--key-file are not set",
                    u.raw
                ))
            })?;
            builder = builder.tls_config(tonic_tls(t)?)?;
        }
        let router = builder
            .add_service(
                pb::kv_server::KvServer::new(kv::KvService {
                    server: server.clone(),
                })
                .max_decoding_message_size(max_in),
            )
            .add_service(
                pb::watch_server::WatchServer::new(watch::WatchService {
                    server: server.clone(),
                    progress_interval: config.watch_progress_notify_interval,
                    shutdown: shutdown.clone(),
                })
                .max_decoding_message_size(max_in),
            )
            .add_service(
                pb::lease_server::LeaseServer::new(lease::LeaseService {
                    server: server.clone(),
                    shutdown: shutdown.clone(),
                })
                .max_decoding_message_size(max_in),
            )
            .add_service(
                pb::cluster_server::ClusterServer::new(cluster::ClusterService {
                    server: server.clone(),
                })
                .max_decoding_message_size(max_in),
            )
            .add_service(
                pb::maintenance_server::MaintenanceServer::new(maintenance::MaintenanceService {
                    server: server.clone(),
                })
                .max_decoding_message_size(max_in),
            );
        let sd = shutdown.clone();
        let mut ready = ready_rx.clone();
        tasks.push(tokio::spawn(async move {
            // As etcd: clients are served once this member has published itself to the
            // cluster (connections wait in the listen backlog until then).
            tokio::select! {
                _ = sd.wait() => return,
                r = ready.wait_for(|r| *r) => if r.is_err() { return },
            }
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming(l), async move { sd.wait().await })
                .await
            {
                tracing::error!(error = %e, "client server failed");
            }
        }));
    }

    let mut metrics_addrs = Vec::new();
    for u in &config.listen_metrics_urls {
        let tls = if u.tls {
            let t = config.client_tls.as_ref().ok_or_else(|| {
                Error::Config(format!(
                    "{} is https but --cert-file/--key-file are not set",
                    u.raw
                ))
            })?;
            let ca = if t.client_cert_auth {
                t.trusted_ca_file.as_deref()
            } else {
                None
            };
            Some(component_base::tls::server_config(
                &t.cert_file,
                &t.key_file,
                ca,
                component_base::tls::ALPN_HTTP,
            )?)
        } else {
            None
        };
        let health = component_base::health::Health::new();
        {
            let s = server.clone();
            health.add_check("leader", move || {
                if s.leader().is_some() {
                    Ok(())
                } else {
                    Err("no leader".into())
                }
            });
        }
        let s = server.clone();
        let extra = component_base::http::handler(move |path: String, _query: Option<String>| {
            let s = s.clone();
            async move {
                if path != "/health" {
                    return component_base::http::Reply::not_found();
                }
                // etcd's /health: healthy with a leader and no alarms.
                let leader = s.leader().is_some();
                let healthy = leader && s.mvcc.alarms().is_empty();
                let reason = if !leader {
                    "RAFT NO LEADER"
                } else if healthy {
                    ""
                } else {
                    "ALARM"
                };
                let body = format!("{{\"health\":\"{healthy}\",\"reason\":\"{reason}\"}}");
                let status = if healthy {
                    http::StatusCode::OK
                } else {
                    http::StatusCode::SERVICE_UNAVAILABLE
                };
                component_base::http::Reply::json(status, body)
            }
        });
        let (addr, task) = component_base::http::serve(
            u.socket_addr()?,
            tls,
            metrics.registry.clone(),
            health,
            Some(extra),
            shutdown.clone(),
        )
        .await?;
        metrics_addrs.push(addr);
        tasks.push(task);
    }

    tasks.push(tokio::spawn(lessor::Lessor::run(
        server.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(tick_only_with_peers(
        server.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(count_leader_changes(
        server.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(publish_attributes(
        server.clone(),
        shutdown.clone(),
        ready_tx,
    )));
    if let Some(ac) = config.auto_compaction.clone() {
        tasks.push(tokio::spawn(auto_compact(
            server.clone(),
            ac,
            shutdown.clone(),
        )));
    }
    tracing::info!(
        member = format!("{id:x}"),
        name = %config.name,
        client = ?client_addrs,
        peer = ?peer_addrs,
        metrics = ?metrics_addrs,
        "kube-store member started"
    );
    Ok(Running {
        server,
        client_addrs,
        peer_addrs,
        metrics_addrs,
        tasks,
    })
}

/// What a follower's forwarded requests do on the leader.
struct Forward(Arc<EtcdServer>);

#[tonic::async_trait]
impl raft::ForwardHandler for Forward {
    async fn propose(
        &self,
        req: InternalRaftRequest,
    ) -> Result<storepb::InternalRaftResponse, tonic::Status> {
        self.0.propose_local(req).await
    }

    async fn read_index(&self) -> Result<storepb::ReadIndexResponse, tonic::Status> {
        Ok(self.0.read_index_local().await)
    }

    async fn lease_keep_alive(
        &self,
        req: pb::LeaseKeepAliveRequest,
    ) -> Result<pb::LeaseKeepAliveResponse, tonic::Status> {
        if !self.0.is_leader() {
            return Err(errors::no_leader());
        }
        lease::keep_alive_once(&self.0, req).await
    }

    async fn lease_time_to_live(
        &self,
        req: pb::LeaseTimeToLiveRequest,
    ) -> Result<pb::LeaseTimeToLiveResponse, tonic::Status> {
        if !self.0.is_leader() {
            return Err(errors::no_leader());
        }
        Ok(lease::time_to_live_local(&self.0, &req))
    }

    async fn member_add(
        &self,
        req: pb::MemberAddRequest,
    ) -> Result<pb::MemberAddResponse, tonic::Status> {
        cluster::member_add_local(&self.0, req).await
    }

    async fn member_remove(
        &self,
        req: pb::MemberRemoveRequest,
    ) -> Result<pb::MemberRemoveResponse, tonic::Status> {
        cluster::member_remove_local(&self.0, req).await
    }
}

/// A lone member that leads has no one to send heartbeats to and no election to time out, so
/// Raft's timer (every 1.5 heartbeat intervals) is stopped while that holds; it runs again as
/// soon as the membership has anyone else or the member stops leading. An idle single-member
/// store then wakes only for requests.
async fn tick_only_with_peers(server: Arc<EtcdServer>, shutdown: Shutdown) {
    // Server metrics change only with leadership and membership; the full metrics change with
    // every append and apply, and waking this task for each put costs a thread hand-off.
    let mut rx = server.node.raft.server_metrics();
    let mut ticking = true;
    loop {
        let alone = {
            let m = rx.borrow_and_update();
            let membership = m.membership_config.membership();
            m.current_leader == Some(server.id)
                && membership.nodes().all(|(id, _)| *id == server.id)
        };
        if alone == ticking {
            ticking = !alone;
            server.node.raft.runtime_config().tick(ticking);
            tracing::debug!(ticking, "raft timer");
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            r = rx.changed() => if r.is_err() { return },
        }
    }
}

async fn count_leader_changes(server: Arc<EtcdServer>, shutdown: Shutdown) {
    let mut rx = server.node.raft.server_metrics();
    let mut last: Option<NodeId> = None;
    loop {
        let leader = rx.borrow_and_update().current_leader;
        if leader.is_some() && leader != last {
            server.metrics.leader_changes.inc();
            last = leader;
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            r = rx.changed() => if r.is_err() { return },
        }
    }
}

/// etcd's publish: once in the cluster, record our name and client URLs in the membership,
/// then let the client listeners serve.
async fn publish_attributes(
    server: Arc<EtcdServer>,
    shutdown: Shutdown,
    ready: tokio::sync::watch::Sender<bool>,
) {
    let mut metrics = server.node.raft.server_metrics();
    loop {
        let current = {
            let m = metrics.borrow_and_update();
            m.current_leader.and_then(|_| {
                m.membership_config
                    .membership()
                    .get_node(&server.id)
                    .cloned()
            })
        };
        match current {
            Some(m) if m.name == server.name && m.client_urls == server.client_urls => {
                let _ = ready.send(true);
                return;
            }
            Some(_) => {
                let req = InternalRaftRequest {
                    request: Some(Op::MemberAttributes(storepb::MemberAttributes {
                        id: server.id,
                        name: server.name.clone(),
                        client_urls: server.client_urls.clone(),
                    })),
                };
                if let Err(e) = server.propose(req).await {
                    tracing::debug!(error = %e, "publishing member attributes; will retry");
                    tokio::select! {
                        _ = shutdown.wait() => return,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
                continue;
            }
            None => {}
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            r = metrics.changed() => if r.is_err() { return },
        }
    }
}

/// The leader compacts history older than the retention (etcd's auto-compaction).
async fn auto_compact(server: Arc<EtcdServer>, mode: AutoCompaction, shutdown: Shutdown) {
    let (sample_every, keep) = match &mode {
        AutoCompaction::Periodic(d) => ((*d / 10).max(Duration::from_secs(1)), *d),
        AutoCompaction::Revision(_) => (Duration::from_secs(300), Duration::ZERO),
    };
    let mut samples: VecDeque<(tokio::time::Instant, i64)> = VecDeque::new();
    let mut tick = tokio::time::interval(sample_every);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        let now = tokio::time::Instant::now();
        let rev = server.mvcc.revision();
        samples.push_back((now, rev));
        let target = match &mode {
            AutoCompaction::Revision(n) => rev - n,
            AutoCompaction::Periodic(_) => {
                let mut t = 0;
                while let Some((at, r)) = samples.front().copied() {
                    if now.duration_since(at) >= keep {
                        t = r;
                        samples.pop_front();
                    } else {
                        break;
                    }
                }
                t
            }
        };
        if !server.is_leader() || target <= server.mvcc.compact_revision() || target <= 0 {
            continue;
        }
        let req = InternalRaftRequest {
            request: Some(Op::Compaction(pb::CompactionRequest {
                revision: target,
                physical: false,
            })),
        };
        match server.propose(req).await {
            Ok(_) => tracing::info!(revision = target, "auto-compacted"),
            Err(e) => tracing::warn!(error = %e, revision = target, "auto-compaction failed"),
        }
    }
}
