//! The apiserver client whose TLS client certificate can be swapped while it runs: a rustls
//! certificate resolver over a shared slot, and a connector that closes every connection it
//! opened when the certificate changes.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use futures::StreamExt as _;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kube::client::ConfigExt as _;
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tower::{BoxError, ServiceBuilder};

/// The client certificate every new TLS handshake presents, and the generation counter that
/// tells open connections to close when it changes.
pub struct ClientCertificate {
    current: RwLock<Arc<CertifiedKey>>,
    generation: watch::Sender<u64>,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("generation", &*self.generation.borrow())
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    pub fn new(key: Arc<CertifiedKey>) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(key),
            generation: watch::channel(0).0,
        })
    }

    /// Presents `key` from now on and closes every connection opened before (upstream's
    /// kubelet closes all its connections after a rotation, so the old certificate stops being
    /// used at once rather than when long watches end).
    pub fn set(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
        self.generation.send_modify(|g| *g += 1);
    }

    /// How many times the certificate was replaced.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesClientCert for ClientCertificate {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A kube client for `config` (its server, CA, timeouts, headers; its own client certificate
/// is ignored) that presents `cert`. The stack is kube's default one (base URI, auth, extra
/// headers, timeouts over hyper-rustls over hyper's HTTP connector) with two changes: the
/// certificate comes from the slot, and TLS session resumption is off, since a resumed session
/// would carry the identity of the certificate it was made with (client-go does not resume
/// either).
pub fn client(
    mut config: kube::Config,
    cert: Arc<ClientCertificate>,
) -> Result<kube::Client, kube::Error> {
    config.auth_info.client_certificate = None;
    config.auth_info.client_certificate_data = None;
    config.auth_info.client_key = None;
    config.auth_info.client_key_data = None;
    let mut tls = config.rustls_client_config()?;
    tls.client_auth_cert_resolver = cert.clone();
    tls.resumption = rustls::client::Resumption::disabled();

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let tracking = Tracking {
        inner: http,
        cert: cert.clone(),
    };
    let mut https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
            kube::Error::RustlsTls(kube::client::RustlsTlsError::InvalidServerName(e))
        })?;
        https = https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let https = https.enable_http1().wrap_connector(tracking);
    let mut timeouts = hyper_timeout::TimeoutConnector::new(https);
    timeouts.set_connect_timeout(config.connect_timeout);
    timeouts.set_read_timeout(config.read_timeout);
    timeouts.set_write_timeout(config.write_timeout);
    let http_client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Builder::new(TokioExecutor::new()).build(timeouts);

    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(http_client);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// hyper's HTTP connector, with every connection tied to the certificate generation it was
/// opened under.
#[derive(Clone)]
struct Tracking {
    inner: HttpConnector,
    cert: Arc<ClientCertificate>,
}

impl tower::Service<http::Uri> for Tracking {
    type Response = Tracked;
    type Error = <HttpConnector as tower::Service<http::Uri>>::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Tracked, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        // Subscribed before connecting: a rotation during the handshake closes this one too.
        let changes = WatchStream::from_changes(self.cert.generation.subscribe());
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            Ok(Tracked {
                io,
                changes,
                closed: false,
            })
        })
    }
}

/// A TCP connection that fails every read and write once the certificate changed. hyper polls
/// the reads of idle pooled connections too, so those end at once and leave the pool.
struct Tracked {
    io: TokioIo<TcpStream>,
    changes: WatchStream<u64>,
    closed: bool,
}

impl Tracked {
    /// Notes a certificate change (registering the task's waker for the next one).
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.closed {
            if let Poll::Ready(Some(_)) = self.changes.poll_next_unpin(cx) {
                self.closed = true;
            }
        }
        if self.closed {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the client certificate was rotated",
            ))
        } else {
            Ok(())
        }
    }
}

impl Read for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl Write for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }
}

impl Connection for Tracked {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}
