//! Reaching kubelets: pods/log and nodes/proxy are proxied to the node's kubelet API
//! (status.addresses by --kubelet-preferred-address-types, port from
//! status.daemonEndpoints.kubeletEndpoint), over TLS with --kubelet-client-certificate/-key.
//! The kubelet's serving certificate is verified against --kubelet-certificate-authority; as
//! upstream, without that flag it is not verified.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use tokio_stream::wrappers::ReceiverStream;

pub mod archive;
pub mod spdy;
pub mod translator;
pub mod tunnel;

use crate::error::{ApiError, FieldError, Result};
use crate::http::response::{self, Resp};
use crate::server::ApiServer;

/// Upstream's address preference when --kubelet-preferred-address-types is not given, except
/// that InternalIP comes first: node hostnames often do not resolve from the apiserver.
pub const DEFAULT_ADDRESS_TYPES: &[&str] = &[
    "InternalIP",
    "Hostname",
    "InternalDNS",
    "ExternalDNS",
    "ExternalIP",
];

/// Accepts any serving certificate (upstream's behaviour without a kubelet CA); signatures are
/// still checked so the handshake proves the peer holds the key it presented.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(api: &ApiServer) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::internal(format!("kubelet client tls: {e}")))?;
    let builder = match &api.config.kubelet_certificate_authority {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = component_base::tls::load_certs(ca)
                .map_err(|e| ApiError::internal(format!("kubelet certificate authority: {e}")))?;
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    ApiError::internal(format!("kubelet certificate authority: {e}"))
                })?;
            }
            builder.with_root_certificates(roots)
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider))),
    };
    let mut config = match &api.config.kubelet_client_cert {
        Some(pair) => {
            let certs = component_base::tls::load_certs(&pair.cert_file)
                .map_err(|e| ApiError::internal(format!("kubelet client certificate: {e}")))?;
            let key = component_base::tls::load_private_key(&pair.key_file)
                .map_err(|e| ApiError::internal(format!("kubelet client key: {e}")))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| ApiError::internal(format!("kubelet client certificate: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// host:port of the kubelet of `node` (a Node object).
pub fn kubelet_address(node: &Value, preferred: &[String]) -> Option<(String, u16)> {
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(10250);
    let addresses = node["status"]["addresses"].as_array()?;
    let defaults: Vec<String>;
    let order: &[String] = if preferred.is_empty() {
        defaults = DEFAULT_ADDRESS_TYPES
            .iter()
            .map(|s| s.to_string())
            .collect();
        &defaults
    } else {
        preferred
    };
    order.iter().find_map(|t| {
        addresses
            .iter()
            .find(|a| a["type"] == t.as_str())
            .and_then(|a| a["address"].as_str())
            .filter(|a| !a.is_empty())
            .map(|a| (a.to_string(), port))
    })
}

async fn read_node(api: &ApiServer, name: &str) -> Result<Value> {
    let entry = api
        .catalog
        .find("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("nodes are not served"))?;
    let key = entry.key("", name);
    let got = api
        .storage
        .get(&key, "nodes")
        .await
        .map_err(|e| e.to_api("", "nodes", name))?;
    got.map(|(o, _)| o)
        .ok_or_else(|| ApiError::not_found("", "nodes", name))
}

/// The kubelet's answer: status, content type and a streamed body.
pub struct KubeletResponse {
    pub status: StatusCode,
    pub content_type: Option<header::HeaderValue>,
    pub body: hyper::body::Incoming,
}

/// Request headers that carry an upgrade negotiation; they go to the kubelet as they are
/// (never the client's Authorization or impersonation headers).
const UPGRADE_HEADERS: &[&str] = &[
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

/// Response headers of a 101 that the client needs to finish its handshake.
const SWITCHING_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "x-stream-protocol-version",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// An HTTP/1.1 connection to the kubelet of `node_name` (upgrades allowed); returns the sender
/// and the `host:port` it reached.
async fn connect(api: &ApiServer, node_name: &str) -> Result<(Sender, String)> {
    let node = read_node(api, node_name).await?;
    let (host, port) = kubelet_address(&node, &api.config.kubelet_preferred_address_types)
        .ok_or_else(|| {
            ApiError::service_unavailable(format!(
                "no preferred addresses found; known addresses: {}",
                node["status"]["addresses"]
            ))
        })?;
    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::internal(format!(
            "error dialing backend: dial tcp {host}:{port}: {e}"
        ))
    };
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| unreachable(&e))?;
    let _ = stream.set_nodelay(true);
    let server_name = ServerName::try_from(host.clone()).map_err(|e| unreachable(&e))?;
    let tls = tokio_rustls::TlsConnector::from(client_config(api)?)
        .connect(server_name, stream)
        .await
        .map_err(|e| unreachable(&e))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "kubelet connection ended");
        }
    });
    Ok((sender, format!("{host}:{port}")))
}

fn dial_error(authority: &str, e: &dyn std::fmt::Display) -> ApiError {
    ApiError::internal(format!("error dialing backend: {authority}: {e}"))
}

/// Sends one request to the kubelet of `node_name`.
pub async fn request(
    api: &ApiServer,
    node_name: &str,
    method: Method,
    path_and_query: &str,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<KubeletResponse> {
    let (mut sender, authority) = connect(api, node_name).await?;
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(header::HOST, authority.as_str());
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    let req = req
        .body(Full::new(body))
        .map_err(|e| ApiError::bad_request(format!("invalid proxy path: {e}")))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| dial_error(&authority, &e))?;
    let (parts, body) = resp.into_parts();
    Ok(KubeletResponse {
        status: parts.status,
        content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
        body,
    })
}

/// Passes an upgrade request (exec, attach, portforward, proxy) to the kubelet: on 101 the
/// client's and the kubelet's connections are spliced; any other answer is relayed, so the
/// client sees an upgrade failure (kubectl then falls back from WebSocket to SPDY).
pub async fn upgrade(
    api: &ApiServer,
    node_name: &str,
    method: Method,
    path_and_query: &str,
    headers: &http::HeaderMap,
    client: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Resp> {
    let Some(client) = client else {
        return Err(ApiError::bad_request("Upgrade request required"));
    };
    let (mut sender, authority) = connect(api, node_name).await?;
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(header::HOST, authority.as_str());
    if let Some(h) = req.headers_mut() {
        for name in UPGRADE_HEADERS {
            for v in headers.get_all(*name) {
                h.append(header::HeaderName::from_static(name), v.clone());
            }
        }
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .map_err(|e| ApiError::bad_request(format!("invalid proxy path: {e}")))?;
    let mut resp = sender
        .send_request(req)
        .await
        .map_err(|e| dial_error(&authority, &e))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut r = hyper::Response::new(response::full(body));
        *r.status_mut() = status;
        if let Some(ct) = content_type {
            r.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        return Ok(r);
    }
    let backend = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        match tokio::try_join!(client, backend) {
            Ok((client, backend)) => {
                let mut client = TokioIo::new(client);
                let mut backend = TokioIo::new(backend);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
            }
            Err(e) => tracing::debug!(error = %e, "stream upgrade failed"),
        }
    });
    let mut r = hyper::Response::new(response::full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for name in SWITCHING_HEADERS {
        for v in resp.headers().get_all(*name) {
            r.headers_mut()
                .append(header::HeaderName::from_static(name), v.clone());
        }
    }
    Ok(r)
}

/// pods/portforward asked for over WebSocket (`SPDY/3.1+portforward.k8s.io`): the kubelet
/// side is upgraded to SPDY and the client's WebSocket messages carry its bytes.
pub async fn port_forward_tunnel(
    api: &ApiServer,
    node_name: &str,
    path_and_query: &str,
    headers: &http::HeaderMap,
    client: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Resp> {
    let result = tunnel_port_forward(api, node_name, path_and_query, headers, client).await;
    let code = match &result {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.code,
    };
    api.metrics.stream_tunnel_request(code);
    result
}

async fn tunnel_port_forward(
    api: &ApiServer,
    node_name: &str,
    path_and_query: &str,
    headers: &http::HeaderMap,
    client: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Resp> {
    let (Some(client), Some(key)) = (
        client,
        headers
            .get(header::SEC_WEBSOCKET_KEY)
            .and_then(|v| v.to_str().ok()),
    ) else {
        return Err(ApiError::bad_request("Upgrade request required"));
    };
    let accept = tunnel::accept_key(key);
    let (mut sender, authority) = connect(api, node_name).await?;
    let req = hyper::Request::builder()
        .method(Method::POST)
        .uri(path_and_query)
        .header(header::HOST, authority.as_str())
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", tunnel::PORT_FORWARD_SPDY)
        .body(Full::new(Bytes::new()))
        .map_err(|e| ApiError::bad_request(format!("invalid proxy path: {e}")))?;
    let mut resp = sender
        .send_request(req)
        .await
        .map_err(|e| dial_error(&authority, &e))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(error_from(KubeletResponse {
            status: resp.status(),
            content_type: None,
            body: resp.into_body(),
        })
        .await);
    }
    let backend = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        match tokio::try_join!(client, backend) {
            Ok((client, backend)) => {
                tunnel::pump(TokioIo::new(client), TokioIo::new(backend)).await
            }
            Err(e) => tracing::debug!(error = %e, "port-forward tunnel upgrade failed"),
        }
    });
    let mut r = hyper::Response::new(response::full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        header::HeaderValue::from_static(tunnel::PORT_FORWARD_TUNNEL),
    );
    Ok(r)
}

/// Whether the request asks for a protocol upgrade.
pub fn is_upgrade(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
        && headers.contains_key(header::UPGRADE)
}

/// pods/exec, pods/attach, pods/portforward: the kubelet path for the pod, with upstream's
/// checks and messages.
pub fn stream_location(
    pod: &Value,
    namespace: &str,
    name: &str,
    subresource: &str,
    query: &crate::http::request::Query,
) -> Result<(String, String)> {
    let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    if subresource == "portforward" {
        let mut path = format!("/portForward/{}/{}", encode(namespace), encode(name));
        let ports: Vec<String> = query
            .all("ports")
            .iter()
            .flat_map(|p| p.split(','))
            .filter(|p| !p.is_empty())
            .map(|p| format!("port={}", encode(p)))
            .collect();
        if !ports.is_empty() {
            path.push('?');
            path.push_str(&ports.join("&"));
        }
        return Ok((node.to_string(), path));
    }
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if matches!(phase, "Succeeded" | "Failed") {
        let verb = if subresource == "exec" {
            "exec into"
        } else {
            "attach to"
        };
        return Err(ApiError::bad_request(format!(
            "cannot {verb} a container in a completed pod; current phase is {phase}"
        )));
    }
    let container = log_container(pod, name, query.get("container").unwrap_or_default())?;
    let mut params = Vec::new();
    for cmd in query.all("command") {
        params.push(format!("command={}", encode(cmd)));
    }
    for key in ["stdin", "stdout", "stderr", "tty"] {
        if query.flag(key) && query.has(key) {
            params.push(format!("{key}=1"));
        }
    }
    let mut path = format!(
        "/{subresource}/{}/{}/{}",
        encode(namespace),
        encode(name),
        encode(&container)
    );
    if !params.is_empty() {
        path.push('?');
        path.push_str(&params.join("&"));
    }
    Ok((node.to_string(), path))
}

/// The kubelet's body streamed to our client; ends quietly when the kubelet's does.
pub fn stream_response(k: KubeletResponse, default_type: &'static str) -> Resp {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::result::Result<Frame<Bytes>, Infallible>>(16);
    let mut body = k.body;
    tokio::spawn(async move {
        loop {
            // A client that leaves a quiet `logs -f` is noticed here, not at the next line;
            // dropping the kubelet's body then ends its side too.
            let frame = tokio::select! {
                _ = tx.closed() => break,
                frame = body.frame() => frame,
            };
            let Some(Ok(frame)) = frame else { break };
            if let Ok(data) = frame.into_data() {
                if tx.send(Ok(Frame::data(data))).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut r = hyper::Response::new(StreamBody::new(ReceiverStream::new(rx)).boxed());
    *r.status_mut() = k.status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        k.content_type
            .unwrap_or(header::HeaderValue::from_static(default_type)),
    );
    r
}

/// A kubelet error answer as upstream's generic server response.
pub async fn error_from(k: KubeletResponse) -> ApiError {
    let code = k.status.as_u16();
    let body = k
        .body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&body).trim().to_string();
    let reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    };
    ApiError::new(code, reason, message)
}

/// The container `kubectl logs` means, with upstream's messages.
pub fn log_container(pod: &Value, name: &str, requested: &str) -> Result<String> {
    let names = |key: &str| -> Vec<String> {
        pod["spec"][key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let containers = names("containers");
    let init = names("initContainers");
    let ephemeral = names("ephemeralContainers");
    if requested.is_empty() {
        return match containers.len() {
            1 => Ok(containers[0].clone()),
            0 => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}"
            ))),
            _ => {
                let mut msg = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    containers.join(" ")
                );
                if !init.is_empty() {
                    msg.push_str(&format!(
                        " or one of the init containers: [{}]",
                        init.join(" ")
                    ));
                }
                if !ephemeral.is_empty() {
                    msg.push_str(&format!(
                        " or one of the ephemeral containers: [{}]",
                        ephemeral.join(" ")
                    ));
                }
                Err(ApiError::bad_request(msg))
            }
        };
    }
    if containers
        .iter()
        .chain(&init)
        .chain(&ephemeral)
        .any(|c| c == requested)
    {
        Ok(requested.to_string())
    } else {
        Err(ApiError::bad_request(format!(
            "container {requested} is not valid for pod {name}"
        )))
    }
}

/// Upstream's ValidatePodLogOptions, plus the integer parsing its decoder does.
pub fn validate_log_options(name: &str, query: &crate::http::request::Query) -> Result<()> {
    let int = |key: &str| -> Result<Option<i64>> {
        match query.get(key) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))
            }),
        }
    };
    let mut errs = Vec::new();
    if let Some(n) = int("tailLines")?.filter(|n| *n < 0) {
        errs.push(FieldError::invalid(
            "tailLines",
            n.into(),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(n) = int("limitBytes")?.filter(|n| *n < 1) {
        errs.push(FieldError::invalid(
            "limitBytes",
            n.into(),
            "must be greater than 0",
        ));
    }
    let since_seconds = int("sinceSeconds")?;
    if since_seconds.is_some() && query.has("sinceTime") {
        errs.push(FieldError::forbidden(
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        ));
    } else if let Some(n) = since_seconds.filter(|n| *n < 1) {
        errs.push(FieldError::invalid(
            "sinceSeconds",
            n.into(),
            "must be greater than 0",
        ));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("", "PodLogOptions", name, &errs))
    }
}

/// `pods/log`: the kubelet's /containerLogs, streamed.
pub async fn pod_log(
    api: &ApiServer,
    pod: &Value,
    namespace: &str,
    name: &str,
    query: &crate::http::request::Query,
) -> Result<Resp> {
    validate_log_options(name, query)?;
    let container = log_container(pod, name, query.get("container").unwrap_or_default())?;
    let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if node.is_empty() {
        // Upstream answers an empty log for a pod not yet scheduled.
        return Ok(response::with_type(200, "text/plain", Bytes::new()));
    }
    let mut params = Vec::new();
    for key in [
        "follow",
        "previous",
        "timestamps",
        "tailLines",
        "limitBytes",
        "sinceSeconds",
        "sinceTime",
    ] {
        if let Some(v) = query.get(key) {
            if matches!(key, "follow" | "previous" | "timestamps") && !query.flag(key) {
                continue;
            }
            let v = if v.is_empty() { "true" } else { v };
            params.push(format!("{key}={}", encode(v)));
        }
    }
    let mut path = format!(
        "/containerLogs/{}/{}/{}",
        encode(namespace),
        encode(name),
        encode(&container)
    );
    if !params.is_empty() {
        path.push('?');
        path.push_str(&params.join("&"));
    }
    let k = request(api, node, Method::GET, &path, None, Bytes::new()).await?;
    if k.status != StatusCode::OK {
        return Err(error_from(k).await);
    }
    Ok(stream_response(k, "text/plain"))
}

/// Percent-encodes what may not appear raw in a path segment or query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_kubelet_is_found_by_preferred_address_type_and_daemon_port() {
        let node = json!({"status": {
            "addresses": [
                {"type": "Hostname", "address": "node-a"},
                {"type": "InternalIP", "address": "10.0.0.5"},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 11250}},
        }});
        assert_eq!(
            kubelet_address(&node, &[]),
            Some(("10.0.0.5".into(), 11250))
        );
        assert_eq!(
            kubelet_address(&node, &["Hostname".into(), "InternalIP".into()]),
            Some(("node-a".into(), 11250))
        );
        assert_eq!(kubelet_address(&node, &["ExternalIP".into()]), None);
        let bare = json!({"status": {"addresses": [{"type": "InternalIP", "address": "1.2.3.4"}]}});
        assert_eq!(kubelet_address(&bare, &[]), Some(("1.2.3.4".into(), 10250)));
    }

    #[test]
    fn log_options_are_validated_like_upstream() {
        use crate::http::request::Query;
        let cases = [
            ("tailLines=3&limitBytes=1&sinceSeconds=5", None),
            (
                "tailLines=-1",
                Some((422, "PodLogOptions \"p\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0")),
            ),
            (
                "limitBytes=0",
                Some((422, "PodLogOptions \"p\" is invalid: limitBytes: Invalid value: 0: must be greater than 0")),
            ),
            (
                "sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z",
                Some((422, "PodLogOptions \"p\" is invalid: : Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified")),
            ),
            ("tailLines=x", Some((400, "strconv.ParseInt: parsing \"x\": invalid syntax"))),
        ];
        for (query, want) in cases {
            let got = validate_log_options("p", &Query::parse(Some(query)))
                .err()
                .map(|e| (e.code, e.message));
            assert_eq!(got, want.map(|(c, m)| (c, m.to_string())), "{query}");
        }
    }

    #[test]
    fn log_container_defaults_and_errors_like_upstream() {
        let one = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(log_container(&one, "p", "").expect("defaulted"), "a");
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        assert_eq!(
            log_container(&two, "p", "").expect_err("ambiguous").message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        assert_eq!(log_container(&two, "p", "i").expect("init"), "i");
        let e = log_container(&two, "p", "zz").expect_err("unknown");
        assert_eq!(e.code, 400);
        assert_eq!(e.message, "container zz is not valid for pod p");
    }
}
