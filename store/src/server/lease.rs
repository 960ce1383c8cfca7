//! etcd's Lease service: grants and revokes go through Raft; keep-alives and remaining TTLs
//! are the leader's (followers forward them), as in etcd.

use std::sync::Arc;

use proto::etcdserverpb::{self as pb, lease_server::Lease};
use proto::storepb::{
    internal_raft_request::Request as Op, internal_raft_response::Response as Resp,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::errors;
use super::lessor::MAX_LEASE_TTL;
use super::member::EtcdServer;

pub struct LeaseService {
    pub server: Arc<EtcdServer>,
    /// Ends keep-alive streams, so a graceful stop does not wait on them.
    pub shutdown: component_base::Shutdown,
}

impl LeaseService {
    async fn grant(
        &self,
        mut req: pb::LeaseGrantRequest,
    ) -> Result<pb::LeaseGrantResponse, Status> {
        if req.ttl > MAX_LEASE_TTL {
            return Err(errors::lease_ttl_too_large());
        }
        req.ttl = req.ttl.max(self.server.lessor.min_ttl);
        if req.id == 0 {
            req.id = self.server.new_lease_id();
        }
        let (id, ttl) = (req.id, req.ttl);
        let pick = |r| match r {
            Resp::LeaseGrant(r) => Some(r),
            _ => None,
        };
        let mut r = self.server.write(Op::LeaseGrant(req), pick).await?;
        r.id = id;
        r.ttl = ttl;
        Ok(r)
    }

    async fn revoke(&self, req: pb::LeaseRevokeRequest) -> Result<pb::LeaseRevokeResponse, Status> {
        let id = req.id;
        let pick = |r| match r {
            Resp::LeaseRevoke(r) => Some(r),
            _ => None,
        };
        let r = self.server.write(Op::LeaseRevoke(req), pick).await?;
        self.server.lessor.revoked(id);
        Ok(r)
    }

    async fn time_to_live(
        &self,
        req: pb::LeaseTimeToLiveRequest,
    ) -> Result<pb::LeaseTimeToLiveResponse, Status> {
        match self.server.wait_for_leader().await? {
            l if l == self.server.id => Ok(time_to_live_local(&self.server, &req)),
            l => {
                let mut peer = self.server.node.peer(l).map_err(errors::internal)?;
                let mut r = peer.lease_time_to_live(req).await?.into_inner();
                r.header = Some(self.server.current_header());
                Ok(r)
            }
        }
    }
}

/// The leader's answer to TimeToLive (TTL -1 for an unknown lease, as etcd).
pub fn time_to_live_local(
    server: &EtcdServer,
    req: &pb::LeaseTimeToLiveRequest,
) -> pb::LeaseTimeToLiveResponse {
    let header = Some(server.current_header());
    match server.mvcc.lease(req.id) {
        Some(l) => pb::LeaseTimeToLiveResponse {
            header,
            id: l.id,
            ttl: server.lessor.remaining(l.id, l.ttl),
            granted_ttl: l.ttl,
            keys: if req.keys { l.keys } else { Vec::new() },
        },
        None => pb::LeaseTimeToLiveResponse {
            header,
            id: req.id,
            ttl: -1,
            ..Default::default()
        },
    }
}

/// One keep-alive, on the leader or forwarded to it.
pub async fn keep_alive_once(
    server: &EtcdServer,
    req: pb::LeaseKeepAliveRequest,
) -> Result<pb::LeaseKeepAliveResponse, Status> {
    match server.wait_for_leader().await? {
        l if l == server.id => {
            let ttl = server.lessor.renew(server, req.id);
            Ok(pb::LeaseKeepAliveResponse {
                header: Some(server.current_header()),
                id: req.id,
                ttl,
            })
        }
        l => {
            let mut peer = server.node.peer(l).map_err(errors::internal)?;
            let mut r = peer.lease_keep_alive(req).await?.into_inner();
            r.header = Some(server.current_header());
            Ok(r)
        }
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let res = self.grant(req.into_inner()).await;
        self.server
            .metrics
            .unary("etcdserverpb.Lease", "LeaseGrant", &res);
        res.map(Response::new)
    }

    async fn lease_revoke(
        &self,
        req: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let res = self.revoke(req.into_inner()).await;
        self.server
            .metrics
            .unary("etcdserverpb.Lease", "LeaseRevoke", &res);
        res.map(Response::new)
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<pb::LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let server = self.server.clone();
        let shutdown = self.shutdown.clone();
        server
            .metrics
            .stream_started("etcdserverpb.Lease", "LeaseKeepAlive");
        tokio::spawn(async move {
            let code = loop {
                let msg = tokio::select! {
                    _ = shutdown.wait() => break tonic::Code::Unavailable,
                    msg = inbound.message() => msg,
                };
                match msg {
                    Ok(Some(req)) => {
                        let resp = keep_alive_once(&server, req).await;
                        let failed = resp.is_err();
                        if tx.send(resp).await.is_err() || failed {
                            break tonic::Code::Cancelled;
                        }
                    }
                    Ok(None) => break tonic::Code::Ok,
                    Err(s) => break s.code(),
                }
            };
            server
                .metrics
                .stream_handled("etcdserverpb.Lease", "LeaseKeepAlive", code);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let res = self.time_to_live(req.into_inner()).await;
        self.server
            .metrics
            .unary("etcdserverpb.Lease", "LeaseTimeToLive", &res);
        res.map(Response::new)
    }

    async fn lease_leases(
        &self,
        _req: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let res = async {
            self.server.linearizable_barrier().await?;
            let leases = self
                .server
                .mvcc
                .lease_ttls()
                .into_iter()
                .map(|(id, _)| pb::LeaseStatus { id })
                .collect();
            Ok(pb::LeaseLeasesResponse {
                header: Some(self.server.current_header()),
                leases,
            })
        }
        .await;
        self.server
            .metrics
            .unary("etcdserverpb.Lease", "LeaseLeases", &res);
        res.map(Response::new)
    }
}
