//! The metrics and health server end to end: plain, TLS and mutual TLS, and shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use component_base::http::handler;
use component_base::tls::{self, ALPN_H2, ALPN_HTTP, ALPN_HTTP1_1};
use component_base::{serve, Health, Reply, Shutdown};
use http::StatusCode;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A CA and the server and client certificates it signed, as PEM files in a temp dir.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn generate() -> TestResult<Self> {
        let dir = tempfile::tempdir()?;
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem);

        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::new())?;
        ca.distinguished_name.push(DnType::CommonName, "test-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        write("ca.crt", ca.self_signed(&ca_key)?.pem())?;
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate()?;
        let mut server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?;
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        write("server.crt", server.signed_by(&server_key, &issuer)?.pem())?;
        write("server.key", server_key.serialize_pem())?;

        let client_key = KeyPair::generate()?;
        let mut client = CertificateParams::new(Vec::new())?;
        client
            .distinguished_name
            .push(DnType::CommonName, "system:admin");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        write("client.crt", client.signed_by(&client_key, &issuer)?.pem())?;
        write("client.key", client_key.serialize_pem())?;

        Ok(Self { dir })
    }

    fn server_config(&self, client_ca: Option<&Path>) -> TestResult<Arc<rustls::ServerConfig>> {
        Ok(tls::server_config(
            &self.path("server.crt"),
            &self.path("server.key"),
            client_ca,
            ALPN_HTTP,
        )?)
    }

    fn client_config(
        &self,
        with_cert: bool,
        alpn: &[&[u8]],
    ) -> TestResult<Arc<rustls::ClientConfig>> {
        let (cert, key) = (self.path("client.crt"), self.path("client.key"));
        let identity = with_cert.then_some((cert.as_path(), key.as_path()));
        Ok(tls::client_config(
            Some(&self.path("ca.crt")),
            identity,
            alpn,
        )?)
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 GET written by hand; the server closes after answering.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
) -> TestResult<Response> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let raw = String::from_utf8(raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("no end of headers")?;
    let mut lines = head.lines();
    let status_line = lines.next().ok_or("no status line")?;
    let status = status_line
        .split(' ')
        .nth(1)
        .ok_or("no status code")?
        .parse()?;
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: body.to_owned(),
    })
}

async fn get(addr: SocketAddr, path: &str) -> TestResult<Response> {
    exchange(TcpStream::connect(addr).await?, path).await
}

async fn get_tls(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> TestResult<Response> {
    let tcp = TcpStream::connect(addr).await?;
    let stream = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    exchange(stream, path).await
}

struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
    shutdown: Shutdown,
}

async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> TestResult<Server> {
    let registry = prometheus::Registry::new();
    let requests =
        prometheus::IntCounter::new("test_requests_total", "Requests seen by the test.")?;
    registry.register(Box::new(requests.clone()))?;
    requests.inc();

    let health = Health::new();
    health.add_check("etcd", || Ok(()));

    let extra = handler(|path, query| async move {
        if path == "/health" {
            let body = format!(
                r#"{{"health":"true","query":{:?}}}"#,
                query.unwrap_or_default()
            );
            Reply::json(StatusCode::OK, body)
        } else {
            Reply::not_found()
        }
    });

    let shutdown = Shutdown::new();
    let (addr, task) = serve(
        "127.0.0.1:0".parse()?,
        tls,
        registry,
        health,
        Some(extra),
        shutdown.clone(),
    )
    .await?;
    Ok(Server {
        addr,
        task,
        shutdown,
    })
}

impl Server {
    async fn stop(self) -> TestResult {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(5), self.task).await??;
        Ok(())
    }
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_text_format() -> TestResult {
    let server = start(None).await?;
    let response = get(server.addr, "/metrics").await?;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        response
            .body
            .contains("# TYPE test_requests_total counter\n"),
        "{}",
        response.body
    );
    assert!(
        response.body.contains("\ntest_requests_total 1\n"),
        "{}",
        response.body
    );
    server.stop().await
}

#[tokio::test]
async fn healthz_answers_ok_and_lists_checks_when_verbose() -> TestResult {
    let server = start(None).await?;
    let response = get(server.addr, "/healthz").await?;
    assert_eq!((response.status, response.body.as_str()), (200, "ok"));
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );

    let response = get(server.addr, "/readyz?verbose").await?;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.body,
        "[+]ping ok\n[+]etcd ok\nreadyz check passed\n"
    );

    let response = get(server.addr, "/livez/etcd").await?;
    assert_eq!((response.status, response.body.as_str()), (200, "ok"));
    server.stop().await
}

#[tokio::test]
async fn failing_check_turns_healthz_into_500() -> TestResult {
    let registry = prometheus::Registry::new();
    let health = Health::new();
    let shutdown = Shutdown::new();
    let (addr, task) = serve(
        "127.0.0.1:0".parse()?,
        None,
        registry,
        health.clone(),
        None,
        shutdown.clone(),
    )
    .await?;
    // Checks added after the server started are seen too.
    health.add_check("etcd", || {
        Err("dial tcp 127.0.0.1:2379: connection refused".to_owned())
    });

    let response = get(addr, "/healthz").await?;
    assert_eq!(response.status, 500);
    assert_eq!(
        response.body,
        "[+]ping ok\n[-]etcd failed: reason withheld\nhealthz check failed\n"
    );
    let response = get(addr, "/healthz/etcd").await?;
    assert_eq!(response.status, 500);
    assert!(
        response.body.contains("connection refused"),
        "{}",
        response.body
    );

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), task).await??;
    Ok(())
}

#[tokio::test]
async fn unknown_path_is_404_and_extra_routes_are_delegated() -> TestResult {
    let server = start(None).await?;
    let response = get(server.addr, "/nope").await?;
    assert_eq!(
        (response.status, response.body.as_str()),
        (404, "404 page not found\n")
    );

    let response = get(server.addr, "/health?serializable=true").await?;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.body,
        r#"{"health":"true","query":"serializable=true"}"#
    );
    server.stop().await
}

#[tokio::test]
async fn unknown_path_without_extra_handler_is_404() -> TestResult {
    let shutdown = Shutdown::new();
    let (addr, task) = serve(
        "127.0.0.1:0".parse()?,
        None,
        prometheus::Registry::new(),
        Health::new(),
        None,
        shutdown.clone(),
    )
    .await?;
    assert_eq!(get(addr, "/health").await?.status, 404);
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), task).await??;
    Ok(())
}

#[tokio::test]
async fn tls_server_answers_a_client_that_trusts_its_ca() -> TestResult {
    let pki = Pki::generate()?;
    let server = start(Some(pki.server_config(None)?)).await?;
    let response = get_tls(
        server.addr,
        pki.client_config(false, &[ALPN_HTTP1_1])?,
        "/healthz",
    )
    .await?;
    assert_eq!((response.status, response.body.as_str()), (200, "ok"));
    let response = get_tls(
        server.addr,
        pki.client_config(false, &[ALPN_HTTP1_1])?,
        "/metrics",
    )
    .await?;
    assert!(response.body.contains("test_requests_total 1"));
    server.stop().await
}

#[tokio::test]
async fn tls_server_offers_h2_through_alpn() -> TestResult {
    let pki = Pki::generate()?;
    let server = start(Some(pki.server_config(None)?)).await?;
    let tcp = TcpStream::connect(server.addr).await?;
    let stream = TlsConnector::from(pki.client_config(false, &[ALPN_H2, ALPN_HTTP1_1])?)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(ALPN_H2));
    drop(stream);
    server.stop().await
}

#[tokio::test]
async fn client_ca_refuses_clients_without_a_certificate() -> TestResult {
    let pki = Pki::generate()?;
    let server = start(Some(pki.server_config(Some(&pki.path("ca.crt")))?)).await?;
    // With TLS 1.3 the refusal may arrive only after the client's handshake finished, as an
    // alert on the first read; either way no response comes back.
    let refused = get_tls(
        server.addr,
        pki.client_config(false, &[ALPN_HTTP1_1])?,
        "/healthz",
    )
    .await;
    let err = refused.expect_err("a client without a certificate is refused");
    assert!(err.to_string().contains("CertificateRequired"), "{err}");
    server.stop().await
}

#[tokio::test]
async fn client_ca_accepts_clients_with_a_certificate_it_signed() -> TestResult {
    let pki = Pki::generate()?;
    let server = start(Some(pki.server_config(Some(&pki.path("ca.crt")))?)).await?;
    let response = get_tls(
        server.addr,
        pki.client_config(true, &[ALPN_HTTP1_1])?,
        "/healthz",
    )
    .await?;
    assert_eq!((response.status, response.body.as_str()), (200, "ok"));
    server.stop().await
}

#[tokio::test]
async fn optional_client_cert_lets_anonymous_and_certified_clients_in() -> TestResult {
    let pki = Pki::generate()?;
    let config = tls::server_config_optional_client_cert(
        &pki.path("server.crt"),
        &pki.path("server.key"),
        &pki.path("ca.crt"),
        ALPN_HTTP,
    )?;
    let server = start(Some(config)).await?;
    for with_cert in [false, true] {
        let response = get_tls(
            server.addr,
            pki.client_config(with_cert, &[ALPN_HTTP1_1])?,
            "/healthz",
        )
        .await?;
        assert_eq!(response.status, 200, "with_cert={with_cert}");
    }
    server.stop().await
}

#[tokio::test]
async fn shutdown_stops_the_server_despite_an_idle_connection() -> TestResult {
    let server = start(None).await?;
    let addr = server.addr;
    let idle = TcpStream::connect(addr).await?;
    assert_eq!(get(addr, "/healthz").await?.status, 200);
    // Well under the grace period: idle connections must not hold shutdown up.
    server.stop().await?;
    drop(idle);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener still open"
    );
    Ok(())
}
