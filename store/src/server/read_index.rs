//! Linearizable reads (ReadIndex), coalesced as etcd does: one quorum round serves every read
//! that was already waiting when the round started.

use std::time::Duration;

use component_base::Shutdown;
use openraft::error::RaftError as OpenRaftError;
use openraft::ServerState;
use proto::storepb;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::Status;

use super::errors;
use crate::raft::{NodeId, RaftNode};

type Waiter = oneshot::Sender<Result<(), Status>>;

/// The member's read barrier.
pub struct ReadIndex {
    tx: mpsc::UnboundedSender<Waiter>,
}

impl ReadIndex {
    /// Starts the round loop; it ends on shutdown (or when the barrier is dropped), and the
    /// handle lets the caller wait until it let go of the node.
    pub fn start(
        node: RaftNode,
        id: NodeId,
        timeout: Duration,
        shutdown: Shutdown,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.wait() => {}
                _ = run(node, id, timeout, rx) => {}
            }
        });
        (Self { tx }, task)
    }

    /// Returns once a read of local state would be linearizable.
    pub async fn barrier(&self) -> Result<(), Status> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).map_err(|_| errors::stopped())?;
        rx.await.map_err(|_| errors::stopped())?
    }
}

async fn run(
    node: RaftNode,
    id: NodeId,
    timeout: Duration,
    mut rx: mpsc::UnboundedReceiver<Waiter>,
) {
    while let Some(first) = rx.recv().await {
        // Everyone queued now arrived before the round below starts, so its index covers them;
        // later arrivals wait for the next round.
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let res = tokio::time::timeout(timeout, round(&node, id, timeout))
            .await
            .unwrap_or_else(|_| Err(errors::timeout()));
        for w in waiters {
            let _ = w.send(res.clone());
        }
    }
}

/// One ReadIndex round: the leader confirms its leadership with a quorum and names the log
/// index; this member then waits until it has applied that index.
async fn round(node: &RaftNode, id: NodeId, timeout: Duration) -> Result<(), Status> {
    let leader = wait_for_leader(node, id, timeout).await?;
    if leader == id {
        return node
            .raft
            .ensure_linearizable()
            .await
            .map(|_| ())
            .map_err(|e| match e {
                OpenRaftError::APIError(_) => {
                    Status::new(tonic::Code::Unavailable, "etcdserver: leader changed")
                }
                OpenRaftError::Fatal(_) => errors::stopped(),
            });
    }
    let mut peer = node.peer(leader).map_err(errors::internal)?;
    let resp = peer
        .read_index(storepb::ReadIndexRequest {})
        .await?
        .into_inner();
    if resp.error_code != 0 {
        return Err(Status::new(
            tonic::Code::from(resp.error_code as i32),
            resp.error_message,
        ));
    }
    node.wait_applied(resp.index)
        .await
        .map_err(|_| errors::timeout())
}

/// Waits (up to `timeout`) until some member is known to lead.
pub async fn wait_for_leader(
    node: &RaftNode,
    id: NodeId,
    timeout: Duration,
) -> Result<NodeId, Status> {
    let mut rx = node.raft.metrics();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        {
            let m = rx.borrow_and_update();
            if m.running_state.is_err() {
                return Err(errors::stopped());
            }
            match m.current_leader {
                // Metrics can still name us leader for a moment after we stepped down.
                Some(l) if l == id && m.state != ServerState::Leader => {}
                Some(l) => return Ok(l),
                None => {}
            }
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return Err(errors::no_leader());
        }
    }
}
