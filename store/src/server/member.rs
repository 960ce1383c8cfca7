//! The member: ties MVCC, Raft and the lessor together behind etcd's request semantics.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use openraft::ServerState;
use proto::etcdserverpb as pb;
use proto::storepb::{self, InternalRaftRequest, InternalRaftResponse};
use tonic::Status;

use super::batcher::Batcher;
use super::errors;
use super::lessor::Lessor;
use super::metrics::Metrics;
use super::read_index::{self, ReadIndex};
use crate::mvcc::Mvcc;
use crate::raft::{NodeId, RaftNode};

/// Request limits, as etcd's flags.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `--max-request-bytes`: larger requests get "request is too large".
    pub max_request_bytes: usize,
    /// `--max-txn-ops`: more operations in one Txn branch get "too many operations".
    pub max_txn_ops: usize,
    /// How long a proposal or a linearizable read may take before "request timed out".
    pub request_timeout: Duration,
    /// `--quota-backend-bytes`, reported in metrics.
    pub quota_backend_bytes: u64,
}

/// An etcd response carrying a header.
pub trait WithHeader {
    fn header_mut(&mut self) -> &mut Option<pb::ResponseHeader>;
}

macro_rules! with_header {
    ($($t:ty),*) => {
        $(impl WithHeader for $t {
            fn header_mut(&mut self) -> &mut Option<pb::ResponseHeader> {
                &mut self.header
            }
        })*
    };
}
with_header!(
    pb::PutResponse,
    pb::DeleteRangeResponse,
    pb::TxnResponse,
    pb::CompactionResponse,
    pb::LeaseGrantResponse,
    pb::LeaseRevokeResponse,
    pb::AlarmResponse
);

/// One kube-store member as its services see it.
pub struct EtcdServer {
    pub id: NodeId,
    pub cluster_id: u64,
    pub cluster_token: String,
    pub name: String,
    pub client_urls: Vec<String>,
    pub node: RaftNode,
    pub mvcc: Mvcc,
    pub lessor: Lessor,
    pub limits: Limits,
    pub metrics: Metrics,
    next_lease_id: AtomicI64,
    batcher: Batcher,
    reads: ReadIndex,
}

impl EtcdServer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: NodeId,
        cluster_id: u64,
        cluster_token: String,
        name: String,
        client_urls: Vec<String>,
        node: RaftNode,
        lessor: Lessor,
        limits: Limits,
        metrics: Metrics,
        batcher: Batcher,
        reads: ReadIndex,
    ) -> Self {
        // Lease ids: member bits on top, a time-seeded counter below, always positive, so two
        // members (or a restarted member) never hand out the same id.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let seed = ((id as i64 & 0x7fff) << 48) | ((now_ms << 8) & ((1 << 48) - 1));
        let mvcc = node.mvcc.clone();
        Self {
            id,
            cluster_id,
            cluster_token,
            name,
            client_urls,
            node,
            mvcc,
            lessor,
            limits,
            metrics,
            next_lease_id: AtomicI64::new(seed.max(1)),
            batcher,
            reads,
        }
    }

    /// A response header at `revision`.
    pub fn header(&self, revision: i64) -> pb::ResponseHeader {
        pb::ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.id,
            revision,
            raft_term: self.term(),
        }
    }

    /// A header at the current revision.
    pub fn current_header(&self) -> pb::ResponseHeader {
        self.header(self.mvcc.revision())
    }

    pub fn fill_header(&self, header: &mut Option<pb::ResponseHeader>) {
        let rev = header
            .as_ref()
            .map(|h| h.revision)
            .unwrap_or_else(|| self.mvcc.revision());
        *header = Some(self.header(rev));
    }

    pub fn term(&self) -> u64 {
        self.node.current_term()
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.node.current_leader()
    }

    pub fn is_leader(&self) -> bool {
        let m = self.node.raft.server_metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    pub fn new_lease_id(&self) -> i64 {
        self.next_lease_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Rejects requests over `--max-request-bytes`.
    pub fn check_size(&self, req: &impl prost::Message) -> Result<(), Status> {
        if req.encoded_len() > self.limits.max_request_bytes {
            return Err(errors::request_too_large());
        }
        Ok(())
    }

    /// Replicates `op` (size-checked) and returns the response `pick` selects from what applying
    /// it produced, with this member's header.
    pub async fn write<T: WithHeader>(
        &self,
        op: storepb::internal_raft_request::Request,
        pick: fn(storepb::internal_raft_response::Response) -> Option<T>,
    ) -> Result<T, Status> {
        let req = InternalRaftRequest { request: Some(op) };
        self.check_size(&req)?;
        let mut resp = self
            .propose(req)
            .await?
            .response
            .and_then(pick)
            .ok_or_else(|| errors::internal("unexpected apply response"))?;
        self.fill_header(resp.header_mut());
        Ok(resp)
    }

    /// Replicates `req` and returns what applying it produced, forwarding to the leader when
    /// this member is not the leader. A proposal whose fate is unknown fails with Unavailable:
    /// it is never retried here, because it may already have been applied.
    pub async fn propose(&self, req: InternalRaftRequest) -> Result<InternalRaftResponse, Status> {
        let started = std::time::Instant::now();
        let res = tokio::time::timeout(self.limits.request_timeout, self.propose_inner(req))
            .await
            .unwrap_or_else(|_| Err(errors::timeout()));
        self.metrics
            .observe_proposal(started.elapsed(), res.is_ok());
        res.and_then(errors::check_applied)
    }

    async fn propose_inner(
        &self,
        req: InternalRaftRequest,
    ) -> Result<InternalRaftResponse, Status> {
        match self.wait_for_leader().await? {
            leader if leader == self.id => self.propose_local(req).await,
            leader => {
                let mut peer = self.node.peer(leader).map_err(errors::internal)?;
                peer.propose(req).await.map(tonic::Response::into_inner)
            }
        }
    }

    /// Proposes on this member, which believes it is the leader.
    pub async fn propose_local(
        &self,
        req: InternalRaftRequest,
    ) -> Result<InternalRaftResponse, Status> {
        if let Some(storepb::internal_raft_request::Request::MemberAttributes(attrs)) = &req.request
        {
            return self.publish_attributes(attrs.clone()).await;
        }
        let lease_change = match &req.request {
            Some(storepb::internal_raft_request::Request::LeaseGrant(g)) => {
                Some((g.id, Some(g.ttl)))
            }
            Some(storepb::internal_raft_request::Request::LeaseRevoke(r)) => Some((r.id, None)),
            _ => None,
        };
        let resp = self.batcher.propose(req).await?;
        // The leader owns lease clocks: start or stop one as the change is applied.
        if resp.error_code == 0 {
            match lease_change {
                Some((id, Some(ttl))) => self.lessor.granted(id, ttl),
                Some((id, None)) => self.lessor.revoked(id),
                None => {}
            }
        }
        Ok(resp)
    }

    /// Waits (up to the request timeout) until some member is known to lead.
    pub async fn wait_for_leader(&self) -> Result<NodeId, Status> {
        read_index::wait_for_leader(&self.node, self.id, self.limits.request_timeout).await
    }

    /// Makes a following local read linearizable (ReadIndex, coalesced across readers).
    pub async fn linearizable_barrier(&self) -> Result<(), Status> {
        self.reads.barrier().await
    }

    /// The leader's side of ReadIndex for a follower.
    pub async fn read_index_local(&self) -> storepb::ReadIndexResponse {
        match self.node.raft.get_read_log_id().await {
            Ok((read, _applied)) => storepb::ReadIndexResponse {
                index: read.map(|l| l.index).unwrap_or(0),
                term: self.term(),
                ..Default::default()
            },
            Err(e) => storepb::ReadIndexResponse {
                error_code: tonic::Code::Unavailable as u32,
                error_message: format!("etcdserver: read index failed: {e}"),
                ..Default::default()
            },
        }
    }

    /// etcd's "publish": the leader records a member's name and client URLs in the membership.
    async fn publish_attributes(
        &self,
        attrs: storepb::MemberAttributes,
    ) -> Result<InternalRaftResponse, Status> {
        let current = {
            let m = self.node.raft.metrics();
            let m = m.borrow();
            m.membership_config
                .membership()
                .get_node(&attrs.id)
                .cloned()
        };
        let Some(mut member) = current else {
            return Err(errors::member_not_found());
        };
        if member.name == attrs.name && member.client_urls == attrs.client_urls {
            return Ok(InternalRaftResponse::default());
        }
        member.name = attrs.name;
        member.client_urls = attrs.client_urls;
        let change = openraft::ChangeMembers::SetNodes([(attrs.id, member)].into_iter().collect());
        super::cluster::change_membership(self, change, true).await?;
        Ok(InternalRaftResponse::default())
    }
}
