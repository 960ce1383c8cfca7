//! The daemons' observability server: `/metrics`, health paths and extra routes over HTTP(S).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus::Registry;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::{metrics, Error, Health, Shutdown};

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an HTTP/1 client has to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests may run after shutdown before their connections are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// A response as status, content type and body: what health checks, `/metrics` and
/// [`Handler`]s produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Bytes,
}

impl Reply {
    pub fn new(
        status: StatusCode,
        content_type: impl Into<String>,
        body: impl Into<Bytes>,
    ) -> Self {
        Self {
            status,
            content_type: content_type.into(),
            body: body.into(),
        }
    }

    /// A `text/plain; charset=utf-8` reply.
    pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Self::new(status, TEXT_PLAIN, body)
    }

    /// An `application/json` reply.
    pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Self::new(status, "application/json", body)
    }

    /// The 404 Go's ServeMux gives, which upstream components answer for unknown paths.
    pub fn not_found() -> Self {
        Self::text(StatusCode::NOT_FOUND, "404 page not found\n")
    }
}

/// A boxed reply future, as [`Handler`]s return.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Serves the paths [`serve`] does not know: called with the request path and raw query.
pub type Handler = Arc<dyn Fn(String, Option<String>) -> ReplyFuture + Send + Sync>;

/// Wraps an async fn `(path, query) -> Reply` as a [`Handler`].
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(String, Option<String>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    Arc::new(move |path, query| Box::pin(f(path, query)))
}

/// What a [`Guard`] decides on: the request's path and headers, and the client certificate
/// (DER) the TLS handshake verified, if the client presented one.
#[derive(Debug, Clone)]
pub struct Access {
    pub path: String,
    pub headers: http::HeaderMap,
    pub client_cert: Option<Arc<Vec<u8>>>,
}

/// Admits or refuses a request before it is routed; `Err` is the reply sent instead (401/403).
pub type Guard =
    Arc<dyn Fn(Access) -> Pin<Box<dyn Future<Output = Result<(), Reply>> + Send>> + Send + Sync>;

struct State {
    registry: Registry,
    health: Health,
    extra: Option<Handler>,
    guard: Option<Guard>,
}

/// Binds `addr` and serves `/metrics` from `registry`, the [`Health`] paths, and any other path
/// through `extra` (else 404), over TLS when `tls` is given, HTTP/1.1 and HTTP/2 either way.
///
/// Returns the bound address (useful with port 0) and the server task, which ends once
/// `shutdown` has triggered and open connections have finished (or the grace period ran out).
pub async fn serve(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    registry: Registry,
    health: Health,
    extra: Option<Handler>,
    shutdown: Shutdown,
) -> Result<(SocketAddr, JoinHandle<()>), Error> {
    serve_guarded(addr, tls, registry, health, extra, None, shutdown).await
}

/// [`serve`], with every request first passed through `guard` (e.g. delegated authentication
/// and authorization) when one is given.
pub async fn serve_guarded(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    registry: Registry,
    health: Health,
    extra: Option<Handler>,
    guard: Option<Guard>,
    shutdown: Shutdown,
) -> Result<(SocketAddr, JoinHandle<()>), Error> {
    let bind_error = |source| Error::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    let state = Arc::new(State {
        registry,
        health,
        extra,
        guard,
    });
    let acceptor = tls.map(TlsAcceptor::from);
    tracing::info!(addr = %bound, tls = acceptor.is_some(), "serving metrics and health");
    let task = tokio::spawn(accept_loop(listener, acceptor, state, shutdown));
    Ok((bound, task))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    state: Arc<State>,
    shutdown: Shutdown,
) {
    let mut connections = JoinSet::new();
    let stopped = shutdown.wait();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(
                        stream,
                        peer,
                        acceptor.clone(),
                        state.clone(),
                        shutdown.clone(),
                    ));
                }
                Err(e) => {
                    // Usually out of file descriptors; back off instead of spinning.
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
        tracing::warn!("dropping connections still open after the shutdown grace period");
        connections.shutdown().await;
    }
    tracing::info!("metrics and health server stopped");
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    state: Arc<State>,
    shutdown: Shutdown,
) {
    let Some(acceptor) = acceptor else {
        return serve_connection(stream, peer, None, state, shutdown).await;
    };
    let handshake = tokio::select! {
        result = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => result,
        _ = shutdown.wait() => return,
    };
    // Handshake failures are the client's doing (no or a bad certificate), so only debug.
    match handshake {
        Ok(Ok(tls)) => {
            let client_cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|c| Arc::new(c.to_vec()));
            serve_connection(tls, peer, client_cert, state, shutdown).await
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
        Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    client_cert: Option<Arc<Vec<u8>>>,
    state: Arc<State>,
    shutdown: Shutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let state = state.clone();
        let client_cert = client_cert.clone();
        async move { Ok::<_, Infallible>(route(&state, request, client_cert).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

async fn route(
    state: &State,
    request: Request<Incoming>,
    client_cert: Option<Arc<Vec<u8>>>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let query = request.uri().query();
    tracing::trace!(method = %request.method(), path, "request");
    if let Some(guard) = &state.guard {
        let access = Access {
            path: path.to_owned(),
            headers: request.headers().clone(),
            client_cert,
        };
        if let Err(refused) = guard(access).await {
            return into_response(refused);
        }
    }
    let reply = if path == "/metrics" {
        metrics::reply(&state.registry)
    } else if let Some(reply) = state.health.respond(path, query) {
        reply
    } else if let Some(extra) = &state.extra {
        extra(path.to_owned(), query.map(str::to_owned)).await
    } else {
        Reply::not_found()
    };
    into_response(reply)
}

fn into_response(reply: Reply) -> Response<Full<Bytes>> {
    let content_type = HeaderValue::try_from(reply.content_type).unwrap_or_else(|_| {
        tracing::warn!("handler returned an invalid content type; sending octet-stream");
        HeaderValue::from_static("application/octet-stream")
    });
    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, content_type);
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
