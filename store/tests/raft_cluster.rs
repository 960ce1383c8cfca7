//! In-process Raft clusters over real tonic on loopback: replication, snapshot catch-up, restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use openraft::ChangeMembers;
use proto::etcdserverpb as pb;
use proto::storepb::{self, internal_raft_request, InternalRaftRequest, InternalRaftResponse};
use store::mvcc::{Mvcc, Options};
use store::raft::{self, ForwardHandler, Member, NodeId, RaftConfig, RaftNode, Request};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const TOKEN: &str = "raft-cluster-test";
const TIMEOUT: Duration = Duration::from_secs(20);

/// Forwarding is the server module's business; these tests never forward.
struct NoForward;

#[tonic::async_trait]
impl ForwardHandler for NoForward {
    async fn propose(&self, _: InternalRaftRequest) -> Result<InternalRaftResponse, tonic::Status> {
        Err(tonic::Status::unimplemented("test"))
    }
    async fn read_index(&self) -> Result<storepb::ReadIndexResponse, tonic::Status> {
        Err(tonic::Status::unimplemented("test"))
    }
    async fn lease_keep_alive(
        &self,
        _: pb::LeaseKeepAliveRequest,
    ) -> Result<pb::LeaseKeepAliveResponse, tonic::Status> {
        Err(tonic::Status::unimplemented("test"))
    }
    async fn lease_time_to_live(
        &self,
        _: pb::LeaseTimeToLiveRequest,
    ) -> Result<pb::LeaseTimeToLiveResponse, tonic::Status> {
        Err(tonic::Status::unimplemented("test"))
    }
    async fn member_add(
        &self,
        _: pb::MemberAddRequest,
    ) -> Result<pb::MemberAddResponse, tonic::Status> {
        Err(tonic::Status::unimplemented("test"))
    }
    async fn member_remove(
        &self,
        _: pb::MemberRemoveRequest,
    ) -> Result<pb::MemberRemoveResponse, tonic::Status> {
        Err(tonic::Status::unimplemented("test"))
    }
}

/// One running member: its Raft node, its peer server and where its data lives.
struct Running {
    node: RaftNode,
    member: Member,
    dir: PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    server: JoinHandle<()>,
}

struct Cluster {
    _tmp: tempfile::TempDir,
    members: BTreeMap<NodeId, Running>,
    initial: BTreeMap<NodeId, Member>,
    snapshot_count: u64,
}

fn config(
    id: NodeId,
    initial: &BTreeMap<NodeId, Member>,
    new_cluster: bool,
    snapshot_count: u64,
) -> RaftConfig {
    RaftConfig {
        id,
        initial_members: initial.clone(),
        new_cluster,
        peer_tls: None,
        snapshot_count,
        heartbeat_interval_ms: 100,
        election_timeout_ms: 600,
        // Set by `run_member` from the member's directory.
        wal_dir: PathBuf::new(),
    }
}

async fn open_db(dir: &Path) -> anyhow::Result<sled::Db> {
    // A stopped member's db may still be held by tasks that are winding down.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        match sled::open(dir) {
            Ok(db) => return Ok(db),
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e).context("open sled"),
        }
    }
}

/// Starts a member on an already bound listener.
async fn run_member(
    listener: TcpListener,
    member: Member,
    dir: PathBuf,
    cfg: RaftConfig,
) -> anyhow::Result<Running> {
    let db = open_db(&dir.join("db")).await?;
    let cfg = RaftConfig {
        wal_dir: dir.join("wal"),
        ..cfg
    };
    let mvcc = Mvcc::open(
        &db,
        Options {
            quota_backend_bytes: 0,
        },
    )?;
    let node = raft::start(cfg, db, mvcc).await?;
    let svc = raft::peer_service(node.clone(), Arc::new(NoForward));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                async {
                    let _ = stopped.await;
                },
            )
            .await;
    });
    Ok(Running {
        node,
        member,
        dir,
        stop,
        server,
    })
}

async fn bind() -> anyhow::Result<(TcpListener, Member)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let member = Member {
        name: url.clone(),
        peer_urls: vec![url],
        client_urls: vec![],
    };
    Ok((listener, member))
}

impl Cluster {
    async fn start(size: usize, snapshot_count: u64) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let mut bound = Vec::new();
        for _ in 0..size {
            bound.push(bind().await?);
        }
        let initial: BTreeMap<NodeId, Member> = bound
            .iter()
            .map(|(_, m)| (raft::member_id(&m.peer_urls, TOKEN), m.clone()))
            .collect();
        let mut members = BTreeMap::new();
        for (listener, member) in bound {
            let id = raft::member_id(&member.peer_urls, TOKEN);
            let dir = tmp.path().join(format!("{id:x}"));
            let cfg = config(id, &initial, true, snapshot_count);
            members.insert(id, run_member(listener, member, dir, cfg).await?);
        }
        Ok(Self {
            _tmp: tmp,
            members,
            initial,
            snapshot_count,
        })
    }

    async fn leader(&self) -> anyhow::Result<&RaftNode> {
        let any = self.members.values().next().context("empty cluster")?;
        let m = any
            .node
            .raft
            .wait(Some(TIMEOUT))
            .metrics(|m| m.current_leader.is_some(), "a leader is elected")
            .await?;
        let id = m.current_leader.context("leader")?;
        let leader = &self.members.get(&id).context("leader is a member")?.node;
        leader
            .raft
            .wait(Some(TIMEOUT))
            .metrics(
                |m| m.current_leader == Some(id),
                "the leader knows it leads",
            )
            .await?;
        Ok(leader)
    }

    /// Puts through the leader; returns the log index of the entry. Like any client, retries
    /// when the member it picked turns out not to lead (an election was under way): nothing
    /// was appended then.
    async fn put(&self, key: &str, value: &str) -> anyhow::Result<u64> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let leader = self.leader().await?;
            let req = InternalRaftRequest {
                request: Some(internal_raft_request::Request::Put(pb::PutRequest {
                    key: key.as_bytes().to_vec(),
                    value: value.as_bytes().to_vec(),
                    ..Default::default()
                })),
            };
            match leader.raft.client_write(Request(req)).await {
                Ok(resp) if resp.data.0.error_code != 0 => {
                    bail!("put failed: {}", resp.data.0.error_message)
                }
                Ok(resp) => return Ok(resp.log_id.index),
                Err(e) if e.forward_to_leader().is_some() => {
                    if tokio::time::Instant::now() > deadline {
                        return Err(e.into());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Stops a member and waits until nothing holds its db any more.
    async fn stop(&mut self, id: NodeId) -> anyhow::Result<(Member, PathBuf)> {
        let r = self.members.remove(&id).context("no such member")?;
        r.node.raft.shutdown().await.context("raft shutdown")?;
        let _ = r.stop.send(());
        r.server.await?;
        Ok((r.member, r.dir))
    }
}

fn value_of(mvcc: &Mvcc, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let resp = mvcc.range(&pb::RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    })?;
    Ok(resp.kvs.into_iter().next().map(|kv| kv.value))
}

async fn assert_value_everywhere(
    nodes: &[&RaftNode],
    index: u64,
    key: &str,
    value: &str,
) -> anyhow::Result<()> {
    for n in nodes {
        n.wait_applied(index).await?;
        assert_eq!(
            value_of(&n.mvcc, key)?.as_deref(),
            Some(value.as_bytes()),
            "{key} on member {:x}",
            n.id
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_a_leader_and_replicate_a_put_to_every_mvcc() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, 1000).await?;
    let leader = cluster.leader().await?;
    assert_eq!(leader.members().len(), 3);
    assert!(leader.members().values().all(|(_, voter)| *voter));

    let index = cluster.put("/registry/pods/default/a", "v1").await?;
    let nodes: Vec<&RaftNode> = cluster.members.values().map(|r| &r.node).collect();
    assert_value_everywhere(&nodes, index, "/registry/pods/default/a", "v1").await?;

    // Every member agrees on who leads, and can hand out a client to every other member.
    let leader_id = leader.id;
    for n in &nodes {
        assert_eq!(n.current_leader(), Some(leader_id));
        assert!(n.current_term() >= 1);
        for other in cluster.members.keys() {
            n.peer(*other)?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_after_log_purge_catches_up_by_snapshot_install() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3, 10).await?;
    let mut last = 0;
    for i in 0..40 {
        last = cluster.put(&format!("/k/{i:02}"), &format!("v{i}")).await?;
    }
    let leader = cluster.leader().await?.clone();
    leader
        .raft
        .wait(Some(TIMEOUT))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index > 1),
            "the leader purged its log",
        )
        .await?;

    // etcd `member add`: start the new member with `existing` state, then the leader adds it
    // as a learner (blocking until it caught up) and promotes it to voter.
    let (listener, member) = bind().await?;
    let id = raft::member_id(&member.peer_urls, TOKEN);
    let dir = cluster._tmp.path().join(format!("{id:x}"));
    let cfg = config(id, &cluster.initial, false, cluster.snapshot_count);
    let new = run_member(listener, member.clone(), dir, cfg).await?;
    leader.raft.add_learner(id, member, true).await?;
    leader
        .raft
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        .await?;

    new.node.wait_applied(last).await?;
    let metrics = new.node.raft.metrics().borrow().clone();
    assert!(
        metrics.snapshot.is_some(),
        "the new member installed a snapshot"
    );
    assert_eq!(
        value_of(&new.node.mvcc, "/k/00")?.as_deref(),
        Some(&b"v0"[..])
    );
    assert_eq!(
        value_of(&new.node.mvcc, "/k/39")?.as_deref(),
        Some(&b"v39"[..])
    );
    assert!(leader.members().get(&id).is_some_and(|(_, voter)| *voter));
    cluster.members.insert(id, new);

    let index = cluster.put("/after", "join").await?;
    let nodes: Vec<&RaftNode> = cluster.members.values().map(|r| &r.node).collect();
    assert_value_everywhere(&nodes, index, "/after", "join").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_keeps_its_log_and_vote_and_rejoins() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3, 1000).await?;
    let index = cluster.put("/before", "restart").await?;
    let nodes: Vec<&RaftNode> = cluster.members.values().map(|r| &r.node).collect();
    assert_value_everywhere(&nodes, index, "/before", "restart").await?;

    let leader_id = cluster.leader().await?.id;
    let follower = *cluster
        .members
        .keys()
        .find(|id| **id != leader_id)
        .context("a follower")?;
    let before = cluster.members[&follower]
        .node
        .raft
        .metrics()
        .borrow()
        .clone();
    let (member, dir) = cluster.stop(follower).await?;

    // What the stopped member persisted: the same vote and at least the same log.
    {
        let db = open_db(&dir.join("db")).await?;
        let log = raft::LogStore::open(&db, &dir.join("wal"))?;
        assert_eq!(log.read_vote()?, Some(before.vote));
        let last = log.log_state()?.last_log_id.map(|l| l.index);
        assert!(
            last >= before.last_log_index,
            "log {last:?} < {:?}",
            before.last_log_index
        );
    }

    // Restarted with the same flags (`new`): the cluster is not initialized again.
    let listener = TcpListener::bind(member.peer_urls[0].trim_start_matches("http://")).await?;
    let cfg = config(follower, &cluster.initial, true, cluster.snapshot_count);
    let restarted = run_member(listener, member, dir, cfg).await?;
    restarted.node.wait_applied(index).await?;
    assert_eq!(
        value_of(&restarted.node.mvcc, "/before")?.as_deref(),
        Some(&b"restart"[..])
    );
    cluster.members.insert(follower, restarted);

    let index = cluster.put("/after", "restart").await?;
    let nodes: Vec<&RaftNode> = cluster.members.values().map(|r| &r.node).collect();
    assert_value_everywhere(&nodes, index, "/after", "restart").await?;
    Ok(())
}
