//! Group commit on the leader: proposals that arrive together share one Raft entry, so one log
//! flush acknowledges many clients. openraft 0.9 flushes each client write on its own; the
//! batch is applied request by request, each with its own revision, exactly as if unbatched.

use component_base::Shutdown;
use openraft::error::{ClientWriteError, RaftError as OpenRaftError};
use prost::Message;
use proto::storepb::internal_raft_request::Request as Op;
use proto::storepb::internal_raft_response::Response as Resp;
use proto::storepb::{InternalRaftBatch, InternalRaftRequest, InternalRaftResponse};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::Status;

use super::errors;
use crate::raft::{Raft, Request};

const MAX_BATCH: usize = 1024;
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

struct Proposal {
    req: InternalRaftRequest,
    reply: oneshot::Sender<Result<InternalRaftResponse, Status>>,
}

/// The leader's proposal queue.
pub struct Batcher {
    tx: mpsc::Sender<Proposal>,
}

impl Batcher {
    /// Starts the batching task; it ends on shutdown (or when the batcher is dropped), and
    /// the handle lets the caller wait until it let go of Raft.
    pub fn start(raft: Raft, shutdown: Shutdown) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let task = tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.wait() => {}
                _ = run(raft, rx) => {}
            }
        });
        (Self { tx }, task)
    }

    /// Proposes `req` and returns what applying it produced.
    pub async fn propose(&self, req: InternalRaftRequest) -> Result<InternalRaftResponse, Status> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Proposal { req, reply })
            .await
            .map_err(|_| errors::stopped())?;
        rx.await.map_err(|_| errors::stopped())?
    }
}

/// One batch in Raft at a time: while it is flushed, replicated and applied, new proposals
/// queue up and leave together in the next one. (Measured: more batches in flight only split
/// them smaller, since openraft flushes each entry on its own, on one member and on three.)
async fn run(raft: Raft, mut rx: mpsc::Receiver<Proposal>) {
    while let Some(first) = rx.recv().await {
        let mut bytes = first.req.encoded_len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.req.encoded_len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        submit(&raft, batch).await;
    }
}

async fn submit(raft: &Raft, mut batch: Vec<Proposal>) {
    if batch.len() == 1 {
        if let Some(p) = batch.pop() {
            let _ = p.reply.send(write(raft, p.req).await);
        }
        return;
    }
    let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.req, p.reply)).unzip();
    let req = InternalRaftRequest {
        request: Some(Op::Batch(InternalRaftBatch { requests })),
    };
    match write(raft, req).await {
        Ok(InternalRaftResponse {
            response: Some(Resp::Batch(b)),
            ..
        }) if b.responses.len() == replies.len() => {
            for (reply, resp) in replies.into_iter().zip(b.responses) {
                let _ = reply.send(Ok(resp));
            }
        }
        Ok(other) => {
            let e = errors::internal(format!("batch applied as {other:?}"));
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

async fn write(raft: &Raft, req: InternalRaftRequest) -> Result<InternalRaftResponse, Status> {
    match raft.client_write(Request(req)).await {
        Ok(resp) => Ok(resp.data.0),
        // Either we were not leader when it arrived (nothing appended), or leadership was lost
        // after it was appended (it may still commit): the client must treat it as
        // indeterminate, exactly like etcd's "leader changed".
        Err(OpenRaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(Status::new(
            tonic::Code::Unavailable,
            "etcdserver: leader changed",
        )),
        Err(OpenRaftError::APIError(e)) => Err(errors::internal(e)),
        Err(OpenRaftError::Fatal(_)) => Err(errors::stopped()),
    }
}
