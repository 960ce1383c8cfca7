//! The HTTPS listener: TLS (HTTP/1.1 and HTTP/2), the client certificate of each
//! connection, and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::server::{ApiServer, Error};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Binds --bind-address:--secure-port and serves until shutdown.
pub async fn serve(api: Arc<ApiServer>) -> Result<(SocketAddr, JoinHandle<()>), Error> {
    let addr = api.config.bind_address;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })?;
    let tls = tls_config(&api)?;
    tracing::info!(addr = %bound, "serving securely");
    let task = tokio::spawn(accept_loop(listener, TlsAcceptor::from(tls), api));
    Ok((bound, task))
}

fn tls_config(api: &ApiServer) -> Result<Arc<rustls::ServerConfig>, Error> {
    let c = &api.config;
    let (cert, key) = match &c.serving_cert {
        Some(pair) => (pair.cert_file.clone(), pair.key_file.clone()),
        None => {
            let mut hosts = vec!["localhost".to_string()];
            if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
                let h = h.trim();
                if !h.is_empty() {
                    hosts.push(h.to_string());
                }
            }
            let ips = vec![
                std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                c.advertise_address,
                std::net::IpAddr::V4(c.service_cluster_ip_range.first_ip()),
            ];
            crate::certs::ensure_self_signed(&c.cert_dir, &hosts, &ips).map_err(Error::Certs)?
        }
    };
    let alpn: &[&[u8]] = &[b"h2", b"http/1.1"];
    match &c.client_ca_file {
        Some(ca) => component_base::tls::server_config_optional_client_cert(&cert, &key, ca, alpn),
        None => component_base::tls::server_config(&cert, &key, None, alpn),
    }
    .map_err(Error::Tls)
}

/// Largest body drained (and discarded) before a 413 is sent.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// The whole body, or Err past the 3 MiB limit once the rest has been drained: a client
/// still sending when the answer comes (HTTP/2) would otherwise see a reset, not the 413.
async fn read_body(mut body: Incoming) -> Result<bytes::Bytes, ()> {
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return Err(()) };
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= crate::handlers::MAX_BODY {
                buf.extend_from_slice(&data);
            } else if seen > DRAIN_LIMIT {
                return Err(());
            }
        }
    }
    if seen > crate::handlers::MAX_BODY {
        return Err(());
    }
    Ok(buf.freeze())
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, api: Arc<ApiServer>) {
    let shutdown = api.shutdown.clone();
    let mut connections = JoinSet::new();
    let stopped = shutdown.wait();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection(stream, peer, acceptor.clone(), api.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "failed to accept connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        connections.shutdown().await;
    }
    tracing::info!("secure server stopped");
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    api: Arc<ApiServer>,
) {
    let shutdown = api.shutdown.clone();
    let tls = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => r,
        _ = shutdown.wait() => return,
    };
    let tls = match tls {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "tls handshake failed");
            return;
        }
        Err(_) => return,
    };
    let peer_cert: Option<Arc<Vec<u8>>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| Arc::new(c.as_ref().to_vec()));
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let api = api.clone();
        let peer_cert = peer_cert.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = match read_body(body).await {
                Ok(b) => b,
                Err(()) => {
                    let e = crate::error::ApiError::too_large(
                        "Request entity too large: limit is 3145728",
                    );
                    return Ok::<_, Infallible>(crate::http::response::error(&e));
                }
            };
            Ok::<_, Infallible>(
                super::handle(api, parts, bytes, peer_cert.as_deref().map(Vec::as_slice)).await,
            )
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await;
        }
    }
}
