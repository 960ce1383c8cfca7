//! etcd's Cluster service over openraft membership: member add/remove/update/promote/list.

use std::collections::BTreeSet;
use std::sync::Arc;

use openraft::ChangeMembers;
use proto::etcdserverpb::{self as pb, cluster_server::Cluster};
use tonic::{Request, Response, Status};

use super::errors;
use super::member::EtcdServer;
use crate::raft::{member_id, Member, NodeId};

pub struct ClusterService {
    pub server: Arc<EtcdServer>,
}

/// The membership as etcd lists it, sorted by id.
pub fn members(server: &EtcdServer) -> Vec<pb::Member> {
    let m = server.node.raft.metrics();
    let m = m.borrow();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, node)| pb::Member {
            id: *id,
            name: node.name.clone(),
            peer_ur_ls: node.peer_urls.clone(),
            client_ur_ls: node.client_urls.clone(),
            is_learner: !voters.contains(id),
        })
        .collect()
}

fn valid_url(u: &str) -> bool {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"));
    match rest.and_then(|r| r.rsplit_once(':')) {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    }
}

fn raft_err(e: impl std::fmt::Display) -> Status {
    Status::new(tonic::Code::Unavailable, format!("etcdserver: {e}"))
}

/// How long a membership change waits for an earlier one to finish.
const CHANGE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Raft's change_membership, queued behind a change still in progress instead of failing: a
/// new member publishes its name (itself a membership change) while the add that admitted it
/// may still wait for its vote, as when a single member grows to two. etcd applies membership
/// changes one after another the same way.
pub(crate) async fn change_membership(
    server: &EtcdServer,
    change: ChangeMembers<NodeId, Member>,
    retain: bool,
) -> Result<(), Status> {
    use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
    let deadline = tokio::time::Instant::now() + CHANGE_WAIT;
    loop {
        match server
            .node
            .raft
            .change_membership(change.clone(), retain)
            .await
        {
            Ok(_) => return Ok(()),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_),
            ))) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(raft_err(e)),
        }
    }
}

/// Member add on the leader.
pub async fn member_add_local(
    server: &EtcdServer,
    req: pb::MemberAddRequest,
) -> Result<pb::MemberAddResponse, Status> {
    if req.peer_ur_ls.is_empty() || !req.peer_ur_ls.iter().all(|u| valid_url(u)) {
        return Err(errors::member_bad_urls());
    }
    let id = member_id(&req.peer_ur_ls, &server.cluster_token);
    let existing = members(server);
    if existing.iter().any(|m| m.id == id) {
        return Err(errors::member_exist());
    }
    if existing
        .iter()
        .any(|m| m.peer_ur_ls.iter().any(|u| req.peer_ur_ls.contains(u)))
    {
        return Err(errors::peer_url_exist());
    }
    let node = Member {
        name: String::new(),
        peer_urls: req.peer_ur_ls.clone(),
        client_urls: vec![],
    };
    server
        .node
        .raft
        .add_learner(id, node, false)
        .await
        .map_err(raft_err)?;
    if !req.is_learner {
        let change = ChangeMembers::AddVoterIds([id].into_iter().collect());
        change_membership(server, change, false).await?;
    }
    let members = members(server);
    let member = members.iter().find(|m| m.id == id).cloned();
    Ok(pb::MemberAddResponse {
        header: Some(server.current_header()),
        member,
        members,
    })
}

/// Member remove on the leader.
pub async fn member_remove_local(
    server: &EtcdServer,
    req: pb::MemberRemoveRequest,
) -> Result<pb::MemberRemoveResponse, Status> {
    let existing = members(server);
    let Some(target) = existing.iter().find(|m| m.id == req.id) else {
        return Err(errors::member_not_found());
    };
    let ids: BTreeSet<NodeId> = [req.id].into_iter().collect();
    if !target.is_learner {
        change_membership(server, ChangeMembers::RemoveVoters(ids.clone()), false).await?;
    }
    if members(server).iter().any(|m| m.id == req.id) {
        change_membership(server, ChangeMembers::RemoveNodes(ids), false).await?;
    }
    Ok(pb::MemberRemoveResponse {
        header: Some(server.current_header()),
        members: members(server),
    })
}

impl ClusterService {
    async fn add(&self, req: pb::MemberAddRequest) -> Result<pb::MemberAddResponse, Status> {
        match self.server.wait_for_leader().await? {
            l if l == self.server.id => member_add_local(&self.server, req).await,
            l => {
                let mut peer = self.server.node.peer(l).map_err(errors::internal)?;
                Ok(peer.member_add(req).await?.into_inner())
            }
        }
    }

    async fn remove(
        &self,
        req: pb::MemberRemoveRequest,
    ) -> Result<pb::MemberRemoveResponse, Status> {
        match self.server.wait_for_leader().await? {
            l if l == self.server.id => member_remove_local(&self.server, req).await,
            l => {
                let mut peer = self.server.node.peer(l).map_err(errors::internal)?;
                Ok(peer.member_remove(req).await?.into_inner())
            }
        }
    }

    async fn update(
        &self,
        req: pb::MemberUpdateRequest,
    ) -> Result<pb::MemberUpdateResponse, Status> {
        if self.server.wait_for_leader().await? != self.server.id {
            // Rare operation; etcd clients retry on another endpoint.
            return Err(Status::new(
                tonic::Code::FailedPrecondition,
                "etcdserver: not leader",
            ));
        }
        if !req.peer_ur_ls.iter().all(|u| valid_url(u)) || req.peer_ur_ls.is_empty() {
            return Err(errors::member_bad_urls());
        }
        let node = {
            let m = self.server.node.raft.metrics();
            let m = m.borrow();
            m.membership_config.membership().get_node(&req.id).cloned()
        };
        let Some(mut node) = node else {
            return Err(errors::member_not_found());
        };
        node.peer_urls = req.peer_ur_ls;
        let change = ChangeMembers::SetNodes([(req.id, node)].into_iter().collect());
        change_membership(&self.server, change, true).await?;
        Ok(pb::MemberUpdateResponse {
            header: Some(self.server.current_header()),
            members: members(&self.server),
        })
    }

    async fn promote(
        &self,
        req: pb::MemberPromoteRequest,
    ) -> Result<pb::MemberPromoteResponse, Status> {
        if self.server.wait_for_leader().await? != self.server.id {
            return Err(Status::new(
                tonic::Code::FailedPrecondition,
                "etcdserver: not leader",
            ));
        }
        let target = members(&self.server).into_iter().find(|m| m.id == req.id);
        match target {
            None => return Err(errors::member_not_found()),
            Some(m) if !m.is_learner => return Err(errors::member_not_learner()),
            Some(_) => {}
        }
        let change = ChangeMembers::AddVoterIds([req.id].into_iter().collect());
        change_membership(&self.server, change, false).await?;
        Ok(pb::MemberPromoteResponse {
            header: Some(self.server.current_header()),
            members: members(&self.server),
        })
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let res = self.add(req.into_inner()).await;
        self.server
            .metrics
            .unary("etcdserverpb.Cluster", "MemberAdd", &res);
        res.map(Response::new)
    }

    async fn member_remove(
        &self,
        req: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let res = self.remove(req.into_inner()).await;
        self.server
            .metrics
            .unary("etcdserverpb.Cluster", "MemberRemove", &res);
        res.map(Response::new)
    }

    async fn member_update(
        &self,
        req: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let res = self.update(req.into_inner()).await;
        self.server
            .metrics
            .unary("etcdserverpb.Cluster", "MemberUpdate", &res);
        res.map(Response::new)
    }

    async fn member_list(
        &self,
        req: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let req = req.into_inner();
        let res = async {
            if req.linearizable {
                self.server.linearizable_barrier().await?;
            }
            Ok(pb::MemberListResponse {
                header: Some(self.server.current_header()),
                members: members(&self.server),
            })
        }
        .await;
        self.server
            .metrics
            .unary("etcdserverpb.Cluster", "MemberList", &res);
        res.map(Response::new)
    }

    async fn member_promote(
        &self,
        req: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let res = self.promote(req.into_inner()).await;
        self.server
            .metrics
            .unary("etcdserverpb.Cluster", "MemberPromote", &res);
        res.map(Response::new)
    }
}
