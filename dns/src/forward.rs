//! Forwarding of queries outside the cluster zone to upstream nameservers over UDP or TCP.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::metrics::Metrics;

/// Why no upstream answered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no upstream nameservers configured")]
    NoUpstreams,
    #[error("upstream {upstream}: {source}")]
    Exchange {
        upstream: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("upstream {upstream} did not answer within {timeout:?}")]
    Timeout {
        upstream: SocketAddr,
        timeout: Duration,
    },
}

/// Sends queries to the upstreams in turn (the starting one rotates), giving each `timeout`.
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    next: AtomicUsize,
    metrics: Metrics,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration, metrics: Metrics) -> Self {
        Self {
            upstreams,
            timeout,
            next: AtomicUsize::new(0),
            metrics,
        }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Relays `query` (wire format) and returns the first upstream's response, over TCP when
    /// `tcp` (the client's protocol, as CoreDNS's forward plugin does), else UDP.
    pub async fn exchange(&self, query: &[u8], tcp: bool) -> Result<Vec<u8>, Error> {
        if self.upstreams.is_empty() {
            return Err(Error::NoUpstreams);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = Error::NoUpstreams;
        for i in 0..self.upstreams.len() {
            let upstream = self.upstreams[(start + i) % self.upstreams.len()];
            let to = upstream.to_string();
            self.metrics
                .forward_requests
                .with_label_values(&[&to])
                .inc();
            let attempt = async {
                if tcp {
                    exchange_tcp(upstream, query).await
                } else {
                    exchange_udp(upstream, query).await
                }
            };
            let result = match tokio::time::timeout(self.timeout, attempt).await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(source)) => Err(Error::Exchange { upstream, source }),
                Err(_) => Err(Error::Timeout {
                    upstream,
                    timeout: self.timeout,
                }),
            };
            match result {
                Ok(response) => {
                    let rcode = response.get(3).map(|b| b & 0x0f).unwrap_or(0);
                    let rcode = hickory_proto::op::ResponseCode::from(0, rcode);
                    self.metrics
                        .forward_responses
                        .with_label_values(&[&to, &crate::metrics::rcode_label(rcode)])
                        .inc();
                    return Ok(response);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "upstream failed");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

async fn exchange_udp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Only the answer to this query (same ID) counts; stray datagrams are skipped.
        if n >= 12 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn exchange_tcp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(query.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "query too long"))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut response = vec![0u8; usize::from(len)];
    stream.read_exact(&mut response).await?;
    if response.len() < 12 || response[..2] != query[..2] {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "response does not match the query",
        ));
    }
    Ok(response)
}
