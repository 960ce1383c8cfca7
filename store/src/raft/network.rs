//! Raft RPCs to other members over their tonic `RaftPeer` service, on cached channels.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError as OpenRaftError,
    RemoteError, Timeout, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RPCTypes, RaftNetwork, RaftNetworkFactory};
use proto::storepb::raft_peer_client::RaftPeerClient;
use proto::storepb::RaftMessage;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::{Member, NodeId, PeerTls, RaftError, TypeConfig};

/// Largest peer message either side accepts. One etcd request is at most 1.5 MiB, snapshot
/// chunks are 3 MiB; larger AppendEntries batches are split before sending.
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// AppendEntries batches above this are split (openraft retries with fewer entries).
const SPLIT_APPEND_BYTES: usize = 16 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One channel per member, shared by Raft replication and request forwarding.
#[derive(Clone)]
pub struct Channels {
    tls: Option<ClientTlsConfig>,
    cache: Arc<Mutex<HashMap<NodeId, (String, Channel)>>>,
}

impl Channels {
    /// Reads the peer certificates now, so a bad path fails at start rather than at first use.
    pub fn new(tls: Option<&PeerTls>) -> Result<Self, RaftError> {
        let tls = match tls {
            None => None,
            Some(t) => {
                let read = |p: &std::path::Path| {
                    std::fs::read(p)
                        .map_err(|e| RaftError::Transport(format!("reading {}: {e}", p.display())))
                };
                let ca = Certificate::from_pem(read(&t.trusted_ca_file)?);
                let identity = Identity::from_pem(read(&t.cert_file)?, read(&t.key_file)?);
                Some(ClientTlsConfig::new().ca_certificate(ca).identity(identity))
            }
        };
        Ok(Self {
            tls,
            cache: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The channel to member `id` at `url`; connects lazily and reconnects on its own.
    pub fn channel(&self, id: NodeId, url: &str) -> Result<Channel, RaftError> {
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| RaftError::Transport("channel cache poisoned".into()))?;
        if let Some((cached_url, ch)) = cache.get(&id) {
            if cached_url == url {
                return Ok(ch.clone());
            }
        }
        let mut ep = Endpoint::from_shared(url.to_string())
            .map_err(|e| RaftError::Transport(format!("peer url {url}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        if url.starts_with("https://") {
            let tls = self.tls.clone().ok_or_else(|| {
                RaftError::Transport(format!(
                    "peer url {url} is https but no peer TLS is configured"
                ))
            })?;
            ep = ep
                .tls_config(tls)
                .map_err(|e| RaftError::Transport(format!("peer tls for {url}: {e}")))?;
        }
        let ch = ep.connect_lazy();
        cache.insert(id, (url.to_string(), ch.clone()));
        Ok(ch)
    }

    /// A `RaftPeer` client to member `id` at `url`.
    pub fn client(&self, id: NodeId, url: &str) -> Result<RaftPeerClient<Channel>, RaftError> {
        Ok(RaftPeerClient::new(self.channel(id, url)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

/// Creates a [`PeerNetwork`] per replication target.
#[derive(Clone)]
pub struct NetworkFactory {
    pub(crate) id: NodeId,
    pub(crate) channels: Channels,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerNetwork {
        PeerNetwork {
            id: self.id,
            target,
            node: node.clone(),
            channels: self.channels.clone(),
        }
    }
}

/// Raft RPCs to one member.
pub struct PeerNetwork {
    id: NodeId,
    target: NodeId,
    node: Member,
    channels: Channels,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, Member, OpenRaftError<NodeId, E>>>;

impl PeerNetwork {
    fn unreachable<E: std::error::Error>(
        &self,
        msg: String,
    ) -> RPCError<NodeId, Member, OpenRaftError<NodeId, E>> {
        RPCError::Unreachable(Unreachable::new(&RaftError::Transport(msg)))
    }

    /// Sends one bincode-encoded request and decodes `Result<Resp, RaftError<E>>`.
    async fn call<Req, Resp, E, F, Fut>(
        &self,
        action: RPCTypes,
        req: &Req,
        option: &RPCOption,
        send: F,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        F: FnOnce(RaftPeerClient<Channel>, RaftMessage) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftMessage>, tonic::Status>>,
    {
        let Some(url) = self.node.peer_urls.first() else {
            return Err(self.unreachable(format!("member {:x} has no peer url", self.target)));
        };
        let client = self
            .channels
            .client(self.target, url)
            .map_err(|e| self.unreachable(e.to_string()))?;
        let data =
            bincode::serialize(req).map_err(|e| RPCError::Network(NetworkError::new(&*e)))?;
        let ttl = option.hard_ttl();
        let resp = match tokio::time::timeout(ttl, send(client, RaftMessage { data })).await {
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.id,
                    target: self.target,
                    timeout: ttl,
                }));
            }
            Ok(Err(status)) => {
                return Err(status_to_rpc_error(
                    self.id,
                    self.target,
                    action,
                    ttl,
                    status,
                ))
            }
            Ok(Ok(resp)) => resp.into_inner(),
        };
        let decoded: Result<Resp, OpenRaftError<NodeId, E>> = bincode::deserialize(&resp.data)
            .map_err(|e| RPCError::Network(NetworkError::new(&*e)))?;
        decoded.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

/// Failures to reach the member back off (Unreachable); transient stream failures retry.
fn status_to_rpc_error<E: std::error::Error>(
    id: NodeId,
    target: NodeId,
    action: RPCTypes,
    ttl: Duration,
    status: tonic::Status,
) -> RPCError<NodeId, Member, OpenRaftError<NodeId, E>> {
    use tonic::Code;
    let err = RaftError::Transport(format!("{}: {}", status.code(), status.message()));
    match status.code() {
        Code::DeadlineExceeded => RPCError::Timeout(Timeout {
            action,
            id,
            target,
            timeout: ttl,
        }),
        Code::Cancelled | Code::Aborted | Code::ResourceExhausted | Code::Unknown => {
            RPCError::Network(NetworkError::new(&err))
        }
        _ => RPCError::Unreachable(Unreachable::new(&err)),
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        if rpc.entries.len() > 1 {
            let size: usize = rpc.entries.iter().map(entry_size).sum();
            if size > SPLIT_APPEND_BYTES {
                let hint = (rpc.entries.len() as u64 / 2).max(1);
                return Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(hint),
                ));
            }
        }
        self.call(
            RPCTypes::AppendEntries,
            &rpc,
            &option,
            |mut c, m| async move { c.append_entries(m).await },
        )
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(
            RPCTypes::InstallSnapshot,
            &rpc,
            &option,
            |mut c, m| async move { c.install_snapshot(m).await },
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(RPCTypes::Vote, &rpc, &option, |mut c, m| async move {
            c.vote(m).await
        })
        .await
    }
}

/// Approximate encoded size of an entry (the request payload dominates).
fn entry_size(e: &openraft::Entry<TypeConfig>) -> usize {
    match &e.payload {
        openraft::EntryPayload::Normal(r) => prost::Message::encoded_len(&r.0) + 64,
        _ => 256,
    }
}
