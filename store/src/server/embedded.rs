//! A member embedded in the caller's process, reached through [`KvStore`] by direct calls into
//! the same service code the gRPC server runs (no sockets, no encoding).

use std::sync::Arc;
use std::time::Duration;

use component_base::Shutdown;
use proto::etcdserverpb::{
    self as pb, kv_server::Kv, lease_server::Lease, maintenance_server::Maintenance,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Status};

use super::{kv, lease, maintenance, watch, EtcdServer};
use crate::client::{KvStore, WatchStream};

/// The store served by this process's own member.
pub struct EmbeddedStore {
    kv: kv::KvService,
    lease: lease::LeaseService,
    maintenance: maintenance::MaintenanceService,
    watch: watch::WatchService,
}

impl EmbeddedStore {
    /// Serves `server` (e.g. `Running::server` from [`super::start`]) until `shutdown`.
    pub fn new(server: Arc<EtcdServer>, shutdown: Shutdown, progress_interval: Duration) -> Self {
        Self {
            kv: kv::KvService {
                server: server.clone(),
            },
            lease: lease::LeaseService {
                server: server.clone(),
                shutdown: shutdown.clone(),
            },
            maintenance: maintenance::MaintenanceService {
                server: server.clone(),
            },
            watch: watch::WatchService {
                server,
                progress_interval,
                shutdown,
            },
        }
    }
}

#[tonic::async_trait]
impl KvStore for EmbeddedStore {
    async fn range(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse, Status> {
        Ok(Kv::range(&self.kv, Request::new(req)).await?.into_inner())
    }
    async fn put(&self, req: pb::PutRequest) -> Result<pb::PutResponse, Status> {
        Ok(Kv::put(&self.kv, Request::new(req)).await?.into_inner())
    }
    async fn delete_range(
        &self,
        req: pb::DeleteRangeRequest,
    ) -> Result<pb::DeleteRangeResponse, Status> {
        Ok(Kv::delete_range(&self.kv, Request::new(req))
            .await?
            .into_inner())
    }
    async fn txn(&self, req: pb::TxnRequest) -> Result<pb::TxnResponse, Status> {
        Ok(Kv::txn(&self.kv, Request::new(req)).await?.into_inner())
    }
    async fn compact(&self, req: pb::CompactionRequest) -> Result<pb::CompactionResponse, Status> {
        Ok(Kv::compact(&self.kv, Request::new(req)).await?.into_inner())
    }
    async fn lease_grant(
        &self,
        req: pb::LeaseGrantRequest,
    ) -> Result<pb::LeaseGrantResponse, Status> {
        Ok(Lease::lease_grant(&self.lease, Request::new(req))
            .await?
            .into_inner())
    }
    async fn lease_revoke(
        &self,
        req: pb::LeaseRevokeRequest,
    ) -> Result<pb::LeaseRevokeResponse, Status> {
        Ok(Lease::lease_revoke(&self.lease, Request::new(req))
            .await?
            .into_inner())
    }
    async fn status(&self) -> Result<pb::StatusResponse, Status> {
        let req = Request::new(pb::StatusRequest {});
        Ok(Maintenance::status(&self.maintenance, req)
            .await?
            .into_inner())
    }
    async fn watch(
        &self,
        first: pb::WatchRequest,
    ) -> Result<(mpsc::Sender<pb::WatchRequest>, WatchStream), Status> {
        let (tx, rx) = mpsc::channel(16);
        tx.try_send(first)
            .map_err(|_| Status::internal("watch request queue"))?;
        let responses = self.watch.open(ReceiverStream::new(rx).map(Ok));
        Ok((tx, Box::pin(responses)))
    }
}
