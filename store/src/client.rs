//! The store as its users (the apiserver) see it: etcd v3 operations behind one trait, served
//! by a gRPC client to etcd-compatible endpoints ([`GrpcStore`]) or by a member embedded in the
//! same process ([`crate::server::EmbeddedStore`]), so callers never depend on sled or Raft.

use std::path::PathBuf;
use std::pin::Pin;

use proto::etcdserverpb::{
    self as pb, kv_client::KvClient, lease_client::LeaseClient,
    maintenance_client::MaintenanceClient, watch_client::WatchClient,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Status;

/// Responses of one watch stream.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

/// etcd v3 operations, with etcd's request and response messages and its errors as `Status`.
#[tonic::async_trait]
pub trait KvStore: Send + Sync + 'static {
    async fn range(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse, Status>;
    async fn put(&self, req: pb::PutRequest) -> Result<pb::PutResponse, Status>;
    async fn delete_range(
        &self,
        req: pb::DeleteRangeRequest,
    ) -> Result<pb::DeleteRangeResponse, Status>;
    async fn txn(&self, req: pb::TxnRequest) -> Result<pb::TxnResponse, Status>;
    async fn compact(&self, req: pb::CompactionRequest) -> Result<pb::CompactionResponse, Status>;
    async fn lease_grant(
        &self,
        req: pb::LeaseGrantRequest,
    ) -> Result<pb::LeaseGrantResponse, Status>;
    async fn lease_revoke(
        &self,
        req: pb::LeaseRevokeRequest,
    ) -> Result<pb::LeaseRevokeResponse, Status>;
    async fn status(&self) -> Result<pb::StatusResponse, Status>;
    /// Opens a watch stream with `first` (normally a create request) already queued; further
    /// create, cancel and progress requests go in through the sender. The first request must
    /// be queued before the call is awaited: etcd answers the call only once it has one.
    async fn watch(
        &self,
        first: pb::WatchRequest,
    ) -> Result<(mpsc::Sender<pb::WatchRequest>, WatchStream), Status>;
}

/// Client TLS to the store (`--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`).
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// Why connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no endpoints given")]
    NoEndpoints,
    #[error("invalid endpoint {0:?}")]
    Endpoint(String, #[source] tonic::transport::Error),
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tls configuration")]
    Tls(#[source] tonic::transport::Error),
}

/// The store over gRPC, balanced across the given endpoints.
#[derive(Clone)]
pub struct GrpcStore {
    kv: KvClient<Channel>,
    watch: WatchClient<Channel>,
    lease: LeaseClient<Channel>,
    maintenance: MaintenanceClient<Channel>,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|source| ConnectError::Read {
        path: path.clone(),
        source,
    })
}

impl GrpcStore {
    /// Endpoints as `--etcd-servers` gives them (`https://host:port`); connections are lazy.
    pub fn connect(endpoints: &[String], tls: Option<&ClientTls>) -> Result<Self, ConnectError> {
        if endpoints.is_empty() {
            return Err(ConnectError::NoEndpoints);
        }
        let tls_config = match tls {
            Some(t) => {
                let mut c = ClientTlsConfig::new();
                if let Some(ca) = &t.ca_file {
                    c = c.ca_certificate(Certificate::from_pem(read(ca)?));
                }
                if let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) {
                    c = c.identity(Identity::from_pem(read(cert)?, read(key)?));
                }
                Some(c)
            }
            None => None,
        };
        let mut list = Vec::new();
        for e in endpoints {
            let url = if e.contains("://") {
                e.clone()
            } else {
                format!("http://{e}")
            };
            let mut ep = Endpoint::from_shared(url.clone())
                .map_err(|err| ConnectError::Endpoint(e.clone(), err))?
                .tcp_nodelay(true);
            if let Some(c) = &tls_config {
                ep = ep.tls_config(c.clone()).map_err(ConnectError::Tls)?;
            }
            list.push(ep);
        }
        let channel = if list.len() == 1 {
            list.remove(0).connect_lazy()
        } else {
            Channel::balance_list(list.into_iter())
        };
        let max = usize::MAX;
        Ok(Self {
            kv: KvClient::new(channel.clone()).max_decoding_message_size(max),
            watch: WatchClient::new(channel.clone()).max_decoding_message_size(max),
            lease: LeaseClient::new(channel.clone()),
            maintenance: MaintenanceClient::new(channel),
        })
    }
}

#[tonic::async_trait]
impl KvStore for GrpcStore {
    async fn range(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse, Status> {
        Ok(self.kv.clone().range(req).await?.into_inner())
    }
    async fn put(&self, req: pb::PutRequest) -> Result<pb::PutResponse, Status> {
        Ok(self.kv.clone().put(req).await?.into_inner())
    }
    async fn delete_range(
        &self,
        req: pb::DeleteRangeRequest,
    ) -> Result<pb::DeleteRangeResponse, Status> {
        Ok(self.kv.clone().delete_range(req).await?.into_inner())
    }
    async fn txn(&self, req: pb::TxnRequest) -> Result<pb::TxnResponse, Status> {
        Ok(self.kv.clone().txn(req).await?.into_inner())
    }
    async fn compact(&self, req: pb::CompactionRequest) -> Result<pb::CompactionResponse, Status> {
        Ok(self.kv.clone().compact(req).await?.into_inner())
    }
    async fn lease_grant(
        &self,
        req: pb::LeaseGrantRequest,
    ) -> Result<pb::LeaseGrantResponse, Status> {
        Ok(self.lease.clone().lease_grant(req).await?.into_inner())
    }
    async fn lease_revoke(
        &self,
        req: pb::LeaseRevokeRequest,
    ) -> Result<pb::LeaseRevokeResponse, Status> {
        Ok(self.lease.clone().lease_revoke(req).await?.into_inner())
    }
    async fn status(&self) -> Result<pb::StatusResponse, Status> {
        Ok(self
            .maintenance
            .clone()
            .status(pb::StatusRequest {})
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
        let stream = self
            .watch
            .clone()
            .watch(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok((tx, Box::pin(stream)))
    }
}
