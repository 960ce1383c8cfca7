//! exec, attach and portForward: the runtime's streaming server does the work. The kubelet asks
//! the CRI for a one-time URL and proxies the caller's upgrade request to it (SPDY or WebSocket,
//! whatever the runtime accepts), relays the 101 and splices the two connections.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::{full, text, Body};

/// Request headers that carry the upgrade negotiation and go to the backend as they are.
const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "x-stream-protocol-version",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "origin",
    "user-agent",
];

/// The query flags of exec/attach (`1` or `true`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StreamOptions {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    pub ports: Vec<i32>,
}

impl StreamOptions {
    pub fn parse(query: &str) -> Result<Self, String> {
        let mut o = StreamOptions::default();
        let on = |v: &str| matches!(v, "1" | "true" | "True" | "TRUE" | "t");
        for (k, v) in query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
        {
            let v = super::logs::percent_decode(v);
            match k {
                "command" => o.command.push(v),
                "input" | "stdin" => o.stdin = on(&v),
                "output" | "stdout" => o.stdout = on(&v),
                "error" | "stderr" => o.stderr = on(&v),
                "tty" => o.tty = on(&v),
                "port" => o
                    .ports
                    .push(v.parse().map_err(|_| format!("invalid port value {v:?}"))?),
                _ => {}
            }
        }
        if o.tty {
            // A terminal merges stderr into stdout.
            o.stderr = false;
        }
        Ok(o)
    }

    /// Upstream's check for exec and attach.
    pub fn validate_streams(&self) -> Result<(), String> {
        if !(self.stdin || self.stdout || self.stderr) {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        Ok(())
    }
}

/// Splits `http://host:port/path?query` into (authority, path and query).
pub fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return None;
    }
    Some((authority.to_string(), path.to_string()))
}

/// Proxies `req` (an upgrade request, normally) to the runtime's streaming `url`.
pub async fn proxy_to(mut req: Request<Incoming>, url: &str) -> Response<Body> {
    let Some((authority, path)) = split_url(url) else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the runtime returned an unsupported streaming URL {url:?}"),
        );
    };
    let failed = |e: &dyn std::fmt::Display| {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("error dialing the container runtime's streaming server {authority}: {e}"),
        )
    };
    let stream = match tokio::net::TcpStream::connect(authority.as_str()).await {
        Ok(s) => s,
        Err(e) => return failed(&e),
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => return failed(&e),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "streaming server connection ended");
        }
    });
    let mut out = Request::builder().method(req.method().clone()).uri(&path);
    if let Some(headers) = out.headers_mut() {
        copy_headers(req.headers(), headers, FORWARDED_REQUEST_HEADERS);
        if let Ok(host) = HeaderValue::from_str(&authority) {
            headers.insert(header::HOST, host);
        }
    }
    let Ok(out) = out.body(Empty::<Bytes>::new()) else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "build the streaming request",
        );
    };
    let client_upgrade = hyper::upgrade::on(&mut req);
    let mut resp = match sender.send_request(out).await {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let backend_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, backend_upgrade) {
                Ok((client, backend)) => {
                    let mut client = TokioIo::new(client);
                    let mut backend = TokioIo::new(backend);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
                }
                Err(e) => tracing::debug!(error = %e, "stream upgrade failed"),
            }
        });
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *r.headers_mut() = resp.headers().clone();
        return r;
    }
    // Not upgraded (e.g. a protocol the runtime does not speak): relay the answer, so the
    // client sees the upgrade failure and can fall back.
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    copy_headers(&headers, r.headers_mut(), &["content-type"]);
    r
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap, names: &[&'static str]) {
    for name in names {
        for v in from.get_all(*name) {
            to.append(header::HeaderName::from_static(name), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_options_parse_flags_commands_and_ports() {
        let o = StreamOptions::parse(
            "command=sh&command=-c&command=echo%20hi&stdin=true&stdout=1&stderr=1&tty=0",
        )
        .expect("valid");
        assert_eq!(o.command, vec!["sh", "-c", "echo hi"]);
        assert!(o.stdin && o.stdout && o.stderr && !o.tty);
        let o = StreamOptions::parse("stdout=1&stderr=1&tty=1").expect("valid");
        assert!(!o.stderr, "a tty has no separate stderr");
        assert_eq!(
            StreamOptions::parse("tty=1")
                .expect("valid")
                .validate_streams(),
            Err("you must specify at least 1 of stdin, stdout, stderr".into())
        );
        assert_eq!(
            StreamOptions::parse("port=80&port=8080")
                .expect("valid")
                .ports,
            vec![80, 8080]
        );
        assert!(StreamOptions::parse("port=http").is_err());
    }

    #[test]
    fn streaming_urls_split_into_authority_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:35000/exec/abc"),
            Some(("127.0.0.1:35000".into(), "/exec/abc".into()))
        );
        assert_eq!(
            split_url("http://[::1]:1/x?y=1"),
            Some(("[::1]:1".into(), "/x?y=1".into()))
        );
        assert_eq!(split_url("https://x/y"), None);
        assert_eq!(split_url("http:///y"), None);
    }
}
