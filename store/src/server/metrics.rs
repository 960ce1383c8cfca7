//! Prometheus metrics under etcd's names, so etcd dashboards and alerts work unchanged.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use super::member::EtcdServer;
use crate::metrics::{buckets_disk, BACKEND_COMMIT, BACKEND_SNAPSHOT, WAL_FSYNC};

/// The member's metrics and the registry they are exposed from.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub leader_changes: IntCounter,
    pub proposals_failed: IntCounter,
    pub proposals_pending: IntGauge,
    pub proposal_duration: Histogram,
    pub grpc_started: IntCounterVec,
    pub grpc_handled: IntCounterVec,
    pub grpc_msg_received: IntCounterVec,
    pub grpc_msg_sent: IntCounterVec,
    pub watch_streams: IntGauge,
    pub watchers: IntGauge,
    pub slow_watchers: IntGauge,
    live: Arc<Live>,
}

impl Metrics {
    pub fn new(version: &str) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let leader_changes = IntCounter::new(
            "etcd_server_leader_changes_seen_total",
            "The number of leader changes seen.",
        )?;
        let proposals_failed = IntCounter::new(
            "etcd_server_proposals_failed_total",
            "The total number of failed proposals seen.",
        )?;
        let proposals_pending = IntGauge::new(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
        )?;
        let proposal_duration = Histogram::with_opts(
            HistogramOpts::new(
                "etcd_server_proposal_duration_seconds",
                "The latency of proposals from submission to applied response.",
            )
            .buckets(buckets_disk()),
        )?;
        let labels = ["grpc_type", "grpc_service", "grpc_method"];
        let grpc_started = IntCounterVec::new(
            Opts::new(
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
            ),
            &labels,
        )?;
        let grpc_handled = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
            ),
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        )?;
        let grpc_msg_received = IntCounterVec::new(
            Opts::new(
                "grpc_server_msg_received_total",
                "Total number of RPC stream messages received on the server.",
            ),
            &labels,
        )?;
        let grpc_msg_sent = IntCounterVec::new(
            Opts::new(
                "grpc_server_msg_sent_total",
                "Total number of gRPC stream messages sent by the server.",
            ),
            &labels,
        )?;
        let watch_streams = IntGauge::new(
            "etcd_debugging_mvcc_watch_streams",
            "Total number of watch streams.",
        )?;
        let watchers = IntGauge::new("etcd_debugging_mvcc_watchers", "Total number of watchers.")?;
        let slow_watchers = IntGauge::new(
            "etcd_debugging_mvcc_slow_watchers",
            "Total number of unsynced slow watchers.",
        )?;
        let version_gauge = GaugeVec::new(
            Opts::new(
                "etcd_server_version",
                "Which version is running. 1 for 'server_version' label with current version.",
            ),
            &["server_version"],
        )?;
        version_gauge.with_label_values(&[version]).set(1.0);

        let live = Arc::new(Live::new()?);
        registry.register(Box::new(leader_changes.clone()))?;
        registry.register(Box::new(proposals_failed.clone()))?;
        registry.register(Box::new(proposals_pending.clone()))?;
        registry.register(Box::new(proposal_duration.clone()))?;
        registry.register(Box::new(grpc_started.clone()))?;
        registry.register(Box::new(grpc_handled.clone()))?;
        registry.register(Box::new(grpc_msg_received.clone()))?;
        registry.register(Box::new(grpc_msg_sent.clone()))?;
        registry.register(Box::new(watch_streams.clone()))?;
        registry.register(Box::new(watchers.clone()))?;
        registry.register(Box::new(slow_watchers.clone()))?;
        registry.register(Box::new(version_gauge))?;
        registry.register(Box::new(WAL_FSYNC.clone()))?;
        registry.register(Box::new(BACKEND_COMMIT.clone()))?;
        registry.register(Box::new(BACKEND_SNAPSHOT.clone()))?;
        registry.register(Box::new(LiveCollector(live.clone())))?;
        Ok(Self {
            registry,
            leader_changes,
            proposals_failed,
            proposals_pending,
            proposal_duration,
            grpc_started,
            grpc_handled,
            grpc_msg_received,
            grpc_msg_sent,
            watch_streams,
            watchers,
            slow_watchers,
            live,
        })
    }

    /// Lets scrape-time gauges read the member.
    pub fn bind(&self, server: Weak<EtcdServer>) {
        let _ = self.live.server.set(server);
    }

    pub fn observe_proposal(&self, took: Duration, ok: bool) {
        self.proposal_duration.observe(took.as_secs_f64());
        if !ok {
            self.proposals_failed.inc();
        }
    }

    /// Counts a finished unary RPC the way go-grpc-prometheus does.
    pub fn unary<T>(&self, service: &str, method: &str, res: &Result<T, tonic::Status>) {
        self.grpc_started
            .with_label_values(&["unary", service, method])
            .inc();
        self.grpc_msg_received
            .with_label_values(&["unary", service, method])
            .inc();
        let code = match res {
            Ok(_) => {
                self.grpc_msg_sent
                    .with_label_values(&["unary", service, method])
                    .inc();
                tonic::Code::Ok
            }
            Err(s) => s.code(),
        };
        self.grpc_handled
            .with_label_values(&["unary", service, method, code_name(code)])
            .inc();
    }

    pub fn stream_started(&self, service: &str, method: &str) {
        self.grpc_started
            .with_label_values(&["bidi_stream", service, method])
            .inc();
    }

    pub fn stream_handled(&self, service: &str, method: &str, code: tonic::Code) {
        self.grpc_handled
            .with_label_values(&["bidi_stream", service, method, code_name(code)])
            .inc();
    }
}

/// grpc-go's names for status codes, as they appear in `grpc_code` labels.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

/// Gauges read from the member at scrape time.
struct Live {
    server: OnceLock<Weak<EtcdServer>>,
    has_leader: IntGauge,
    is_leader: IntGauge,
    is_learner: IntGauge,
    db_size: IntGauge,
    db_in_use: IntGauge,
    quota: IntGauge,
    revision: IntGauge,
    compact_revision: IntGauge,
    committed: IntCounter,
    applied: IntCounter,
    server_id: GaugeVec,
}

impl Live {
    fn new() -> Result<Self, prometheus::Error> {
        Ok(Self {
            server: OnceLock::new(),
            has_leader: IntGauge::new("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.")?,
            is_leader: IntGauge::new("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.")?,
            is_learner: IntGauge::new("etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.")?,
            db_size: IntGauge::new("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.")?,
            db_in_use: IntGauge::new("etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.")?,
            quota: IntGauge::new("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.")?,
            revision: IntGauge::new("etcd_debugging_mvcc_current_revision", "The current revision of store.")?,
            compact_revision: IntGauge::new("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.")?,
            committed: IntCounter::new("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.")?,
            applied: IntCounter::new("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.")?,
            server_id: GaugeVec::new(Opts::new("etcd_server_id", "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID."), &["server_id"])?,
        })
    }

    fn gauges(&self) -> [&dyn Collector; 11] {
        [
            &self.has_leader,
            &self.is_leader,
            &self.is_learner,
            &self.db_size,
            &self.db_in_use,
            &self.quota,
            &self.revision,
            &self.compact_revision,
            &self.committed,
            &self.applied,
            &self.server_id,
        ]
    }

    fn refresh(&self) {
        let Some(server) = self.server.get().and_then(Weak::upgrade) else {
            return;
        };
        let m = server.node.raft.metrics().borrow().clone();
        self.has_leader.set(i64::from(m.current_leader.is_some()));
        self.is_leader
            .set(i64::from(m.current_leader == Some(server.id)));
        let learner = m
            .membership_config
            .membership()
            .learner_ids()
            .any(|l| l == server.id);
        self.is_learner.set(i64::from(learner));
        self.db_size.set(server.mvcc.db_size() as i64);
        self.db_in_use.set(server.mvcc.db_size_in_use() as i64);
        self.quota.set(server.limits.quota_backend_bytes as i64);
        self.revision.set(server.mvcc.revision());
        self.compact_revision.set(server.mvcc.compact_revision());
        // Raft indexes only grow (a restart starts the counters again, as a counter may).
        let committed = m.last_log_index.unwrap_or(0);
        self.committed
            .inc_by(committed.saturating_sub(self.committed.get()));
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        self.applied
            .inc_by(applied.saturating_sub(self.applied.get()));
        self.server_id
            .with_label_values(&[&format!("{:x}", server.id)])
            .set(1.0);
    }
}

struct LiveCollector(Arc<Live>);

impl Collector for LiveCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.0.gauges().into_iter().flat_map(|g| g.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.0.refresh();
        self.0
            .gauges()
            .into_iter()
            .flat_map(|g| g.collect())
            .collect()
    }
}
