//! The `RaftPeer` gRPC service: Raft RPCs into openraft, forwarded client RPCs to the server.

use std::sync::Arc;

use proto::etcdserverpb as pb;
use proto::storepb::{self, InternalRaftRequest, InternalRaftResponse, RaftMessage};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::{ForwardHandler, Raft};

/// Serves this member's side of the peer protocol.
pub struct PeerService {
    pub(crate) raft: Raft,
    pub(crate) forward: Arc<dyn ForwardHandler>,
}

fn decode<T: DeserializeOwned>(msg: Request<RaftMessage>) -> Result<T, Status> {
    bincode::deserialize(&msg.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("decoding raft message: {e}")))
}

/// Encodes openraft's whole result, errors included: the sender maps them to `RemoteError`.
fn encode<T: Serialize>(res: &T) -> Result<Response<RaftMessage>, Status> {
    let data = bincode::serialize(res)
        .map_err(|e| Status::internal(format!("encoding raft message: {e}")))?;
    Ok(Response::new(RaftMessage { data }))
}

#[tonic::async_trait]
impl storepb::raft_peer_server::RaftPeer for PeerService {
    async fn append_entries(
        &self,
        r: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let res = self.raft.append_entries(decode(r)?).await;
        encode(&res)
    }

    async fn vote(&self, r: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let res = self.raft.vote(decode(r)?).await;
        encode(&res)
    }

    async fn install_snapshot(
        &self,
        r: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let res = self.raft.install_snapshot(decode(r)?).await;
        encode(&res)
    }

    async fn propose(
        &self,
        r: Request<InternalRaftRequest>,
    ) -> Result<Response<InternalRaftResponse>, Status> {
        self.forward
            .propose(r.into_inner())
            .await
            .map(Response::new)
    }

    async fn read_index(
        &self,
        _r: Request<storepb::ReadIndexRequest>,
    ) -> Result<Response<storepb::ReadIndexResponse>, Status> {
        self.forward.read_index().await.map(Response::new)
    }

    async fn lease_keep_alive(
        &self,
        r: Request<pb::LeaseKeepAliveRequest>,
    ) -> Result<Response<pb::LeaseKeepAliveResponse>, Status> {
        self.forward
            .lease_keep_alive(r.into_inner())
            .await
            .map(Response::new)
    }

    async fn lease_time_to_live(
        &self,
        r: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        self.forward
            .lease_time_to_live(r.into_inner())
            .await
            .map(Response::new)
    }

    async fn member_add(
        &self,
        r: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        self.forward
            .member_add(r.into_inner())
            .await
            .map(Response::new)
    }

    async fn member_remove(
        &self,
        r: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        self.forward
            .member_remove(r.into_inner())
            .await
            .map(Response::new)
    }
}
