//! The DNS listeners (UDP and TCP) and the per-query path: parse, answer from the cluster zone
//! or forward, truncate for UDP, count.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use component_base::Shutdown;

use crate::forward::Forwarder;
use crate::metrics::{self, Metrics};
use crate::watch::Cache;
use crate::zone::{self, Zone};

/// The UDP payload size this server advertises in EDNS (the DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;
/// Classic DNS's UDP limit for clients without EDNS.
const CLASSIC_UDP_SIZE: usize = 512;
/// How long an idle TCP connection stays open (CoreDNS's read timeout).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Queries handled at once; UDP queries beyond are dropped, TCP connections wait.
const MAX_IN_FLIGHT: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    fn label(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

/// Answers one query message; shared by every listener task.
pub struct Handler {
    pub zone: Zone,
    pub cache: Cache,
    pub forwarder: Forwarder,
    pub metrics: Metrics,
    /// The `server` label, e.g. `dns://:53`.
    pub server: String,
}

impl Handler {
    /// The wire-format response to `packet`, or `None` to stay silent (not a query, or too
    /// short to answer).
    pub async fn handle(&self, packet: &[u8], proto: Proto, peer: SocketAddr) -> Option<Vec<u8>> {
        let started = Instant::now();
        let request = match Message::from_vec(packet) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "malformed query");
                // With a readable header the client learns why; anything shorter is noise.
                if packet.len() < 12 || packet[2] & 0x80 != 0 {
                    return None;
                }
                let id = u16::from_be_bytes([packet[0], packet[1]]);
                let reply = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
                return self.finish(reply, None, proto, peer, "", "other", started);
            }
        };
        if request.message_type() == MessageType::Response {
            return None;
        }
        let qtype_label = request
            .queries()
            .first()
            .map(|q| metrics::type_label(&q.query_type().to_string()).to_owned())
            .unwrap_or_else(|| "other".to_owned());
        let (response, plugin) = self.answer(&request, packet, proto).await;
        self.finish(
            response,
            Some(&request),
            proto,
            peer,
            plugin,
            &qtype_label,
            started,
        )
    }

    async fn answer(
        &self,
        request: &Message,
        packet: &[u8],
        proto: Proto,
    ) -> (Message, &'static str) {
        if request.op_code() != OpCode::Query {
            return (reply(request, ResponseCode::NotImp), "");
        }
        let [query] = request.queries() else {
            return (reply(request, ResponseCode::FormErr), "");
        };
        let lower = query.name().to_lowercase().to_ascii();
        if self.zone.relative(&lower).is_some() {
            return (self.cluster(request, query).await, "kubernetes");
        }
        if query.query_type() == RecordType::PTR
            && query.query_class() == DNSClass::IN
            && zone::is_reverse(&lower)
            && self.cache.is_synced()
        {
            if let Some(answer) = self.zone.reverse(&self.cache.index(), query.name()) {
                let mut response = reply(request, ResponseCode::NoError);
                response.set_authoritative(true);
                response.insert_answers(answer.answers);
                return (response, "kubernetes");
            }
        }
        (self.forward(request, packet, proto).await, "forward")
    }

    async fn cluster(&self, request: &Message, query: &Query) -> Message {
        if !self.cache.is_synced() {
            // As CoreDNS before its first sync: no answer is better than a wrong NXDOMAIN.
            return reply(request, ResponseCode::ServFail);
        }
        if query.query_class() != DNSClass::IN {
            return reply(request, ResponseCode::Refused);
        }
        let index = self.cache.index();
        let answer = self.zone.resolve(&index, query.name(), query.query_type());
        drop(index);
        let mut response = reply(request, answer.rcode);
        response.set_authoritative(true);
        let mut answers = answer.answers;
        if let Some(target) = answer.chase {
            answers.extend(self.chase(target, query.query_type()).await);
        }
        response.insert_answers(answers);
        response.insert_name_servers(answer.authority);
        response.insert_additionals(answer.additionals);
        response
    }

    /// Resolves the out-of-zone target of an ExternalName CNAME upstream, best effort.
    async fn chase(&self, target: Name, qtype: RecordType) -> Vec<hickory_proto::rr::Record> {
        let mut query = Message::new();
        query
            .set_id(rand_id())
            .set_recursion_desired(true)
            .add_query(Query::query(target, qtype));
        let Ok(bytes) = query.to_vec() else {
            return Vec::new();
        };
        match self.forwarder.exchange(&bytes, false).await {
            Ok(raw) => Message::from_vec(&raw)
                .map(|mut m| m.take_answers())
                .unwrap_or_default(),
            Err(e) => {
                tracing::debug!(error = %e, "resolving an ExternalName target failed");
                Vec::new()
            }
        }
    }

    async fn forward(&self, request: &Message, packet: &[u8], proto: Proto) -> Message {
        match self.forwarder.exchange(packet, proto == Proto::Tcp).await {
            Ok(raw) => match Message::from_vec(&raw) {
                Ok(response) => response,
                Err(e) => {
                    tracing::debug!(error = %e, "unparsable upstream response");
                    reply(request, ResponseCode::ServFail)
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "forwarding failed");
                reply(request, ResponseCode::ServFail)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        response: Message,
        request: Option<&Message>,
        proto: Proto,
        peer: SocketAddr,
        plugin: &str,
        qtype: &str,
        started: Instant,
    ) -> Option<Vec<u8>> {
        let family = if peer.is_ipv4() { "1" } else { "2" };
        let limit = match (proto, request) {
            (Proto::Tcp, _) => usize::from(u16::MAX),
            (Proto::Udp, Some(r)) if r.extensions().is_some() => usize::from(r.max_payload()),
            (Proto::Udp, _) => CLASSIC_UDP_SIZE,
        };
        let mut bytes = match response.to_vec() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "failed to encode a response");
                let mut failed = response.clone();
                failed.take_answers();
                failed.take_name_servers();
                failed.take_additionals();
                failed.set_response_code(ResponseCode::ServFail);
                failed.to_vec().ok()?
            }
        };
        if bytes.len() > limit {
            // Too big for the client's UDP buffer: send the header with TC so it retries on TCP.
            bytes = response.truncate().to_vec().ok()?;
        }
        let server = self.server.as_str();
        let m = &self.metrics;
        m.requests
            .with_label_values(&[server, metrics::ZONE, "", proto.label(), family, qtype])
            .inc();
        let request_size = match (proto, request) {
            (Proto::Tcp, _) => 65535.0,
            (Proto::Udp, Some(r)) => f64::from(r.max_payload()),
            (Proto::Udp, None) => 512.0,
        };
        m.request_size
            .with_label_values(&[server, metrics::ZONE, "", proto.label()])
            .observe(request_size);
        m.responses
            .with_label_values(&[
                server,
                metrics::ZONE,
                "",
                &metrics::rcode_label(response.response_code()),
                plugin,
            ])
            .inc();
        m.response_size
            .with_label_values(&[server, metrics::ZONE, "", proto.label()])
            .observe(bytes.len() as f64);
        m.duration
            .with_label_values(&[server, metrics::ZONE, "", qtype])
            .observe(started.elapsed().as_secs_f64());
        Some(bytes)
    }
}

/// A response skeleton for `request`: same ID, question, RD and opcode; RA set; EDNS echoed.
fn reply(request: &Message, rcode: ResponseCode) -> Message {
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .set_checking_disabled(request.checking_disabled())
        .set_response_code(rcode);
    response.add_queries(request.queries().iter().cloned());
    if request.extensions().is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        response.set_edns(edns);
    }
    response
}

fn rand_id() -> u16 {
    // Chased lookups go to a fresh socket per query, so the ID only needs to vary.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ (nanos >> 16)) as u16
}

/// Counts a query task that panicked (the listener itself keeps serving).
fn count_panic(handler: &Handler, done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(error = %e, "a query task panicked");
            handler.metrics.panics.inc();
        }
    }
}

/// Serves UDP on `socket` until shutdown.
pub async fn serve_udp(socket: UdpSocket, handler: Arc<Handler>, shutdown: Shutdown) {
    let socket = Arc::new(socket);
    let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; 65535];
    loop {
        let received = tokio::select! {
            _ = shutdown.wait() => break,
            r = socket.recv_from(&mut buf) => r,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                count_panic(&handler, done);
                continue;
            }
        };
        let (n, peer) = match received {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some systems; keep serving.
                tracing::debug!(error = %e, "udp receive failed");
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many queries in flight, dropping one");
            continue;
        };
        let packet = buf[..n].to_vec();
        let socket = socket.clone();
        let handler = handler.clone();
        tasks.spawn(async move {
            let _permit = permit;
            if let Some(response) = handler.handle(&packet, Proto::Udp, peer).await {
                if let Err(e) = socket.send_to(&response, peer).await {
                    tracing::debug!(%peer, error = %e, "udp send failed");
                }
            }
        });
    }
    tasks.shutdown().await;
}

/// Serves DNS over TCP on `listener` until shutdown.
pub async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>, shutdown: Shutdown) {
    let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait() => break,
            a = listener.accept() => a,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                count_panic(&handler, done);
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = handler.clone();
        let limit = limit.clone();
        tasks.spawn(async move {
            let Ok(_permit) = limit.acquire_owned().await else {
                return;
            };
            if let Err(e) = tcp_connection(stream, peer, &handler).await {
                tracing::debug!(%peer, error = %e, "tcp connection ended");
            }
        });
    }
    tasks.shutdown().await;
}

async fn tcp_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: &Handler,
) -> std::io::Result<()> {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_u16()).await {
            Ok(Ok(len)) => len,
            // EOF or idle: the client is done.
            Ok(Err(_)) | Err(_) => return Ok(()),
        };
        let mut packet = vec![0u8; usize::from(len)];
        tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut packet))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
        let Some(response) = handler.handle(&packet, Proto::Tcp, peer).await else {
            // Nothing sensible to say on this stream; close it.
            return Ok(());
        };
        let Ok(len) = u16::try_from(response.len()) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(response.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&response);
        stream.write_all(&framed).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_echo_the_question_and_edns() {
        let mut request = Message::new();
        request
            .set_id(7)
            .set_recursion_desired(true)
            .add_query(Query::query(
                Name::from_ascii("a.example.").expect("name"),
                RecordType::A,
            ));
        request.set_edns(Edns::new());
        let response = reply(&request, ResponseCode::ServFail);
        assert_eq!(response.id(), 7);
        assert_eq!(response.message_type(), MessageType::Response);
        assert!(response.recursion_desired() && response.recursion_available());
        assert_eq!(response.queries(), request.queries());
        assert_eq!(response.max_payload(), EDNS_PAYLOAD);
    }
}
