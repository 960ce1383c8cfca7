//! etcd's Maintenance service: status, alarms, hashes, snapshot streaming, defragment.

use std::sync::Arc;

use proto::etcdserverpb::{
    self as pb, alarm_request::AlarmAction, maintenance_server::Maintenance,
};
use proto::storepb::{
    internal_raft_request::Request as Op, internal_raft_response::Response as Resp,
};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::errors;
use super::member::EtcdServer;

/// The etcd version this member reports: the API level it implements (3.5, incl. progress
/// requests), so clients that gate features on the version enable them.
pub const ETCD_VERSION: &str = "3.5.17";

const SNAPSHOT_CHUNK: usize = 32 * 1024;

pub struct MaintenanceService {
    pub server: Arc<EtcdServer>,
}

fn alarm_name(a: i32) -> &'static str {
    match pb::AlarmType::try_from(a) {
        Ok(pb::AlarmType::Nospace) => "NOSPACE",
        Ok(pb::AlarmType::Corrupt) => "CORRUPT",
        _ => "NONE",
    }
}

impl MaintenanceService {
    fn status(&self) -> pb::StatusResponse {
        let s = &self.server;
        let m = s.node.raft.metrics().borrow().clone();
        let learner = m
            .membership_config
            .membership()
            .learner_ids()
            .any(|l| l == s.id);
        let errors = s
            .mvcc
            .alarms()
            .iter()
            .map(|a| format!("memberID:{} alarm:{} ", a.member_id, alarm_name(a.alarm)))
            .collect();
        pb::StatusResponse {
            header: Some(s.current_header()),
            version: ETCD_VERSION.into(),
            db_size: s.mvcc.db_size() as i64,
            leader: m.current_leader.unwrap_or(0),
            raft_index: m.last_log_index.unwrap_or(0),
            raft_term: m.current_term,
            raft_applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            errors,
            db_size_in_use: s.mvcc.db_size_in_use() as i64,
            is_learner: learner,
        }
    }

    async fn alarm(&self, req: pb::AlarmRequest) -> Result<pb::AlarmResponse, Status> {
        match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Get) => Ok(pb::AlarmResponse {
                header: Some(self.server.current_header()),
                alarms: self.server.mvcc.alarms(),
            }),
            Ok(_) => {
                let pick = |r| match r {
                    Resp::Alarm(r) => Some(r),
                    _ => None,
                };
                self.server.write(Op::Alarm(req), pick).await
            }
            Err(_) => Err(Status::invalid_argument("etcdserver: unknown alarm action")),
        }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        req: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        let res = MaintenanceService::alarm(self, req.into_inner()).await;
        self.server
            .metrics
            .unary("etcdserverpb.Maintenance", "Alarm", &res);
        res.map(Response::new)
    }

    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let res = Ok(MaintenanceService::status(self));
        self.server
            .metrics
            .unary("etcdserverpb.Maintenance", "Status", &res);
        res.map(Response::new)
    }

    async fn defragment(
        &self,
        _req: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        // sled reclaims space of deleted entries itself as it rewrites segments; there is no
        // separate defragmentation step, so this only flushes.
        let res = self
            .server
            .mvcc
            .flush()
            .map(|_| pb::DefragmentResponse {
                header: Some(self.server.current_header()),
            })
            .map_err(|e| errors::from_mvcc(&e));
        self.server
            .metrics
            .unary("etcdserverpb.Maintenance", "Defragment", &res);
        res.map(Response::new)
    }

    async fn hash(
        &self,
        _req: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        let res = self
            .server
            .mvcc
            .hash_kv(0)
            .map(|(hash, _)| pb::HashResponse {
                header: Some(self.server.current_header()),
                hash,
            })
            .map_err(|e| errors::from_mvcc(&e));
        self.server
            .metrics
            .unary("etcdserverpb.Maintenance", "Hash", &res);
        res.map(Response::new)
    }

    async fn hash_kv(
        &self,
        req: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        let rev = req.into_inner().revision;
        let res = self
            .server
            .mvcc
            .hash_kv(rev)
            .map(|(hash, compact_revision)| pb::HashKvResponse {
                header: Some(self.server.current_header()),
                hash,
                compact_revision,
            })
            .map_err(|e| errors::from_mvcc(&e));
        self.server
            .metrics
            .unary("etcdserverpb.Maintenance", "HashKV", &res);
        res.map(Response::new)
    }

    type SnapshotStream = ReceiverStream<Result<pb::SnapshotResponse, Status>>;

    async fn snapshot(
        &self,
        _req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let server = self.server.clone();
        server
            .metrics
            .stream_started("etcdserverpb.Maintenance", "Snapshot");
        let blob = tokio::task::spawn_blocking({
            let mvcc = server.mvcc.clone();
            move || {
                mvcc.flush()?;
                mvcc.snapshot()
            }
        })
        .await
        .map_err(errors::internal)?
        .map_err(|e| errors::from_mvcc(&e))?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            // As etcd: the database bytes (a whole number of 512-byte pages, which etcdctl
            // checks) followed by their sha256, so a restore can verify them.
            let mut data = blob;
            data.resize(data.len().div_ceil(512) * 512, 0);
            let digest = Sha256::digest(&data);
            data.extend_from_slice(&digest);
            let total = data.len();
            let mut sent = 0usize;
            let mut code = tonic::Code::Ok;
            for chunk in data.chunks(SNAPSHOT_CHUNK) {
                sent += chunk.len();
                let resp = pb::SnapshotResponse {
                    header: Some(server.current_header()),
                    remaining_bytes: (total - sent) as u64,
                    blob: chunk.to_vec(),
                };
                if tx.send(Ok(resp)).await.is_err() {
                    code = tonic::Code::Cancelled;
                    break;
                }
            }
            server
                .metrics
                .stream_handled("etcdserverpb.Maintenance", "Snapshot", code);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn move_leader(
        &self,
        _req: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        // openraft 0.9 has no leadership transfer.
        let res: Result<pb::MoveLeaderResponse, Status> = Err(errors::not_capable());
        self.server
            .metrics
            .unary("etcdserverpb.Maintenance", "MoveLeader", &res);
        res.map(Response::new)
    }
}
