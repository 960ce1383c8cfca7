//! The kubelet server on --port (10250): HTTPS with client-certificate or TokenReview
//! authentication and SubjectAccessReview authorization, serving /healthz, /pods, /metrics and
//! /containerLogs, which the apiserver's pods/log and nodes/proxy reach.

pub mod auth;
pub mod certs;
pub mod logs;
pub mod stats;
pub mod stream;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use component_base::Shutdown;
use futures::StreamExt;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use prometheus::{Encoder, IntGauge, IntGaugeVec, Opts, Registry};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::cri::{api, Runtime};
pub use auth::AuthzMode;
use auth::{Auth, Denied};

pub type Body = UnsyncBoxBody<Bytes, Infallible>;
type Resp = Response<Body>;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generate the self-signed serving certificate")]
    GenerateCert(#[source] rcgen::Error),
    #[error("tls setup")]
    Tls(#[source] component_base::Error),
    #[error("listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The server's settings (KubeletConfiguration address, port, tls*, authentication, authorization).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub address: IpAddr,
    pub port: u16,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
    pub anonymous_auth: bool,
    pub webhook_authn: bool,
    pub authorization_mode: AuthzMode,
}

/// What the handlers read: the pods bound to this node (a watch of its own), the runtime and
/// the reviewer.
struct State {
    runtime: Runtime,
    pleg: Arc<crate::pleg::Pleg>,
    pods: Store<Pod>,
    auth: Auth,
    node_name: String,
}

/// Binds the server and serves it until `shutdown`; returns the bound address and the task.
// Each argument is one of the kubelet's parts the server reads; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    config: &ServerConfig,
    cert_dir: &std::path::Path,
    node_name: &str,
    node_ip: IpAddr,
    client: kube::Client,
    runtime: Runtime,
    pleg: Arc<crate::pleg::Pleg>,
    shutdown: Shutdown,
) -> Result<(SocketAddr, JoinHandle<()>), ServerError> {
    let (cert, key) = match (&config.tls_cert_file, &config.tls_private_key_file) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => certs::ensure_self_signed(cert_dir, node_name, &[node_ip])?,
    };
    let alpn: &[&[u8]] = &[component_base::tls::ALPN_HTTP1_1];
    let tls = match &config.client_ca_file {
        Some(ca) => component_base::tls::server_config_optional_client_cert(&cert, &key, ca, alpn),
        None => component_base::tls::server_config(&cert, &key, None, alpn),
    }
    .map_err(ServerError::Tls)?;
    let addr = SocketAddr::new(config.address, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;

    let (pods, writer) = reflector::store();
    let watch_config = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    let pod_events = reflector::reflector(
        writer,
        watcher::watcher(Api::<Pod>::all(client.clone()), watch_config).default_backoff(),
    );
    let state = Arc::new(State {
        runtime,
        pleg,
        pods,
        auth: Auth::new(
            client,
            node_name.to_string(),
            config.anonymous_auth,
            config.webhook_authn,
            config.authorization_mode,
        ),
        node_name: node_name.to_string(),
    });
    let acceptor = TlsAcceptor::from(tls);
    let task = tokio::spawn(async move {
        let watch = pod_events.for_each(|_| std::future::ready(()));
        tokio::pin!(watch);
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = &mut watch => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        connections.spawn(connection(stream, acceptor.clone(), state.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        connections.shutdown().await;
    });
    tracing::info!(addr = %bound, "serving the kubelet API");
    Ok((bound, task))
}

async fn connection(stream: tokio::net::TcpStream, acceptor: TlsAcceptor, state: Arc<State>) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "tls handshake failed");
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
    let service = service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        let peer_cert = peer_cert.clone();
        async move {
            Ok::<_, Infallible>(handle(state, peer_cert.as_deref().map(Vec::as_slice), req).await)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "connection ended");
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

fn text(status: StatusCode, body: impl Into<String>) -> Resp {
    let mut body: String = body.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(value: &serde_json::Value) -> Resp {
    let mut r = Response::new(full(value.to_string()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// A streamed body fed by `rx`.
fn channel_body(rx: mpsc::Receiver<Bytes>) -> Body {
    let chunks = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    StreamBody::new(chunks).boxed_unsync()
}

async fn handle(state: Arc<State>, peer_cert: Option<&[u8]>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user = match state
        .auth
        .check(peer_cert, authorization, req.method(), &path)
        .await
    {
        Ok(user) => user,
        Err(Denied::Unauthorized) => return text(StatusCode::UNAUTHORIZED, "Unauthorized"),
        Err(Denied::Forbidden(m)) => return text(StatusCode::FORBIDDEN, m),
        Err(Denied::Failed(m)) => return text(StatusCode::INTERNAL_SERVER_ERROR, m),
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    tracing::debug!(user = %user.name, %path, "kubelet api request");
    let method = req.method().clone();
    match (&method, segments.as_slice()) {
        (&Method::GET | &Method::POST, ["exec" | "attach", ns, pod, container]) => {
            let attach = segments[0] == "attach";
            exec_or_attach(&state, attach, ns, pod, container, &query, req).await
        }
        (&Method::GET | &Method::POST, ["portForward", ns, pod]) => {
            port_forward(&state, ns, pod, &query, req).await
        }
        (&Method::GET | &Method::HEAD, ["healthz"]) => text(StatusCode::OK, "ok"),
        (&Method::GET, ["pods"] | ["pods", ""]) => pods(&state).await,
        (&Method::GET, ["metrics"]) => metrics(&state).await,
        (&Method::GET, ["metrics", "resource"]) => resource_usage(&state, false).await,
        (&Method::GET, ["stats", "summary"]) => resource_usage(&state, true).await,
        (&Method::GET, ["containerLogs", ns, pod, container]) => {
            container_logs(&state, ns, pod, container, &query).await
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

async fn synced_pods(state: &State) -> Store<Pod> {
    let _ = tokio::time::timeout(Duration::from_secs(10), state.pods.wait_until_ready()).await;
    state.pods.clone()
}

async fn pods(state: &State) -> Resp {
    let store = synced_pods(state).await;
    let mut items: Vec<Pod> = store.state().iter().map(|p| (**p).clone()).collect();
    items.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    json(&serde_json::json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": items,
    }))
}

async fn metrics(state: &State) -> Resp {
    let registry = Registry::new();
    let gauge = |name: &str, help: &str| {
        let g = IntGauge::new(name, help).expect("static metric names are valid");
        let _ = registry.register(Box::new(g.clone()));
        g
    };
    let node_name = IntGaugeVec::new(
        Opts::new(
            "kubelet_node_name",
            "The node's name. The count is always 1.",
        ),
        &["node"],
    )
    .expect("static metric names are valid");
    let _ = registry.register(Box::new(node_name.clone()));
    node_name.with_label_values(&[&state.node_name]).set(1);
    for collector in state.pleg.metrics() {
        let _ = registry.register(collector);
    }
    let running_pods = gauge(
        "kubelet_running_pods",
        "Number of pods that have a running pod sandbox",
    );
    let containers = IntGaugeVec::new(
        Opts::new(
            "kubelet_running_containers",
            "Number of containers currently running",
        ),
        &["container_state"],
    )
    .expect("static metric names are valid");
    let _ = registry.register(Box::new(containers.clone()));
    if let Ok(sandboxes) = state.runtime.list_pod_sandbox(None).await {
        let ready = sandboxes
            .iter()
            .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
            .count();
        running_pods.set(ready as i64);
    }
    if let Ok(list) = state.runtime.list_containers(None).await {
        for s in [
            api::ContainerState::ContainerCreated,
            api::ContainerState::ContainerRunning,
            api::ContainerState::ContainerExited,
            api::ContainerState::ContainerUnknown,
        ] {
            let label = match s {
                api::ContainerState::ContainerCreated => "created",
                api::ContainerState::ContainerRunning => "running",
                api::ContainerState::ContainerExited => "exited",
                api::ContainerState::ContainerUnknown => "unknown",
            };
            let n = list.iter().filter(|c| c.state == s as i32).count();
            containers.with_label_values(&[label]).set(n as i64);
        }
    }
    gauge(
        "kubelet_pod_network_routes",
        "Number of routes to other nodes' podCIDRs the kubelet keeps (protocol 75)",
    )
    .set(crate::routes::programmed());
    crate::certificate::register_metrics(&registry);
    let mut out = Vec::new();
    if prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .is_err()
    {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "encode metrics");
    }
    let mut r = Response::new(full(out));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// /stats/summary (JSON) or /metrics/resource (Prometheus text).
async fn resource_usage(state: &State, summary: bool) -> Resp {
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default();
    let stats = match state.runtime.list_container_stats().await {
        Ok(s) => s,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to get container stats: {e}"),
            )
        }
    };
    let containers = stats::container_usage(&stats);
    let node = stats::node_usage(now);
    if summary {
        return json(&stats::summary(&state.node_name, &node, &containers));
    }
    let mut r = Response::new(full(stats::resource_metrics(&node, &containers)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Looks up a pod the kubelet runs.
fn find_pod(store: &Store<Pod>, ns: &str, name: &str) -> Option<Arc<Pod>> {
    store.get(&ObjectRef::new(name).within(ns))
}

fn spec_has_container(pod: &Pod, name: &str) -> bool {
    pod.spec.as_ref().is_some_and(|s| {
        s.containers.iter().any(|c| c.name == name)
            || s.init_containers.iter().flatten().any(|c| c.name == name)
            || s.ephemeral_containers
                .iter()
                .flatten()
                .any(|c| c.name == name)
    })
}

fn container_status<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .chain(status.ephemeral_container_statuses.iter().flatten())
        .find(|s| s.name == name)
}

/// The runtime ID part of `containerd://<id>`.
fn runtime_id(container_id: &str) -> &str {
    container_id
        .split_once("://")
        .map_or(container_id, |(_, id)| id)
}

/// Which container instance's log to read, with upstream's messages when there is none.
pub fn log_container_id(pod: &Pod, container: &str, previous: bool) -> Result<String, String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let Some(status) = container_status(pod, container) else {
        return Err(format!(
            "container {container:?} in pod {pod_name:?} is not available"
        ));
    };
    let state = status.state.clone().unwrap_or_default();
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.container_id.clone().unwrap_or_default());
    let terminated_err = || format!("container {container:?} in pod {pod_name:?} is terminated");
    let id = if previous {
        match last.filter(|id| !id.is_empty()) {
            Some(id) => id,
            None => {
                return Err(format!(
                    "previous terminated container {container:?} in pod {pod_name:?} not found"
                ))
            }
        }
    } else if let Some(running) = &state.running {
        let _ = running;
        status.container_id.clone().unwrap_or_default()
    } else if let Some(terminated) = &state.terminated {
        match terminated.container_id.clone().filter(|id| !id.is_empty()) {
            Some(id) => id,
            None => last
                .filter(|id| !id.is_empty())
                .ok_or_else(terminated_err)?,
        }
    } else if let Some(last) = last {
        if last.is_empty() {
            return Err(terminated_err());
        }
        last
    } else if let Some(waiting) = &state.waiting {
        let reason = waiting.reason.clone().unwrap_or_default();
        let why = match reason.as_str() {
            "ErrImagePull" => "image can't be pulled".to_string(),
            "ImagePullBackOff" => "trying and failing to pull image".to_string(),
            _ => reason,
        };
        return Err(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: {why}"
        ));
    } else {
        return Err(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start - no logs yet"
        ));
    };
    if id.is_empty() {
        return Err(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start - no logs yet"
        ));
    }
    Ok(runtime_id(&id).to_string())
}

async fn container_logs(
    state: &Arc<State>,
    ns: &str,
    pod_name: &str,
    container: &str,
    query: &str,
) -> Resp {
    let opts = match logs::LogOptions::parse(query, SystemTime::now()) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let store = synced_pods(state).await;
    let Some(pod) = find_pod(&store, ns, pod_name) else {
        // A deleted pod: its logs may be in the archive.
        return match crate::log_archive::find(ns, pod_name, container) {
            Ok(path) => {
                let (tx, rx) = mpsc::channel(16);
                tokio::spawn(async move {
                    if let Err(e) = logs::stream(path, opts, tx, || async { false }).await {
                        tracing::debug!(error = %e, "archived log stream ended");
                    }
                });
                let mut r = Response::new(channel_body(rx));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain"),
                );
                r
            }
            Err(message) => text(StatusCode::NOT_FOUND, message),
        };
    };
    if !spec_has_container(&pod, container) {
        return text(
            StatusCode::NOT_FOUND,
            format!("container {container:?} not found in pod {pod_name:?}"),
        );
    }
    let id = match log_container_id(&pod, container, opts.previous) {
        Ok(id) => id,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let status = match state.runtime.container_status(&id).await {
        Ok(s) => s,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("failed to get container status {id:?}: {e}"),
            )
        }
    };
    let path = PathBuf::from(&status.log_path);
    if let Err(e) = tokio::fs::metadata(&path).await {
        return text(
            StatusCode::BAD_REQUEST,
            format!("failed to open log file {:?}: {e}", status.log_path),
        );
    }
    let (tx, rx) = mpsc::channel(16);
    let runtime = state.runtime.clone();
    tokio::spawn(async move {
        let running = || {
            let runtime = runtime.clone();
            let id = id.clone();
            async move {
                runtime
                    .container_status(&id)
                    .await
                    .is_ok_and(|s| s.state == api::ContainerState::ContainerRunning as i32)
            }
        };
        if let Err(e) = logs::stream(path, opts, tx, running).await {
            tracing::debug!(error = %e, "container log stream ended");
        }
    });
    let mut r = Response::new(channel_body(rx));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    r
}

/// The running instance of `container` in `pod`, from the runtime.
async fn running_container(state: &State, pod: &Pod, container: &str) -> Option<String> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let filter = api::ContainerFilter {
        state: Some(api::ContainerStateValue {
            state: api::ContainerState::ContainerRunning as i32,
        }),
        label_selector: [
            (crate::pod::spec::POD_UID_LABEL.to_string(), uid),
            (
                crate::pod::spec::CONTAINER_NAME_LABEL.to_string(),
                container.to_string(),
            ),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let list = state.runtime.list_containers(Some(filter)).await.ok()?;
    list.into_iter().max_by_key(|c| c.created_at).map(|c| c.id)
}

async fn exec_or_attach(
    state: &Arc<State>,
    attach: bool,
    ns: &str,
    pod_name: &str,
    container: &str,
    query: &str,
    req: Request<Incoming>,
) -> Resp {
    let opts = match stream::StreamOptions::parse(query) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    if let Err(e) = opts.validate_streams() {
        return text(StatusCode::BAD_REQUEST, e);
    }
    let store = synced_pods(state).await;
    let Some(pod) = find_pod(&store, ns, pod_name) else {
        return text(StatusCode::NOT_FOUND, "pod does not exist");
    };
    let Some(id) = running_container(state, &pod, container).await else {
        return text(
            StatusCode::NOT_FOUND,
            format!("container not found ({container:?})"),
        );
    };
    let url = if attach {
        state
            .runtime
            .attach(api::AttachRequest {
                container_id: id,
                stdin: opts.stdin,
                tty: opts.tty,
                stdout: opts.stdout,
                stderr: opts.stderr,
            })
            .await
    } else {
        if opts.command.is_empty() {
            return text(StatusCode::BAD_REQUEST, "you must specify a command");
        }
        state
            .runtime
            .exec(api::ExecRequest {
                container_id: id,
                cmd: opts.command.clone(),
                tty: opts.tty,
                stdin: opts.stdin,
                stdout: opts.stdout,
                stderr: opts.stderr,
            })
            .await
    };
    match url {
        Ok(url) => stream::proxy_to(req, &url).await,
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn port_forward(
    state: &Arc<State>,
    ns: &str,
    pod_name: &str,
    query: &str,
    req: Request<Incoming>,
) -> Resp {
    let opts = match stream::StreamOptions::parse(query) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let store = synced_pods(state).await;
    let Some(pod) = find_pod(&store, ns, pod_name) else {
        return text(StatusCode::NOT_FOUND, "pod does not exist");
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let filter = api::PodSandboxFilter {
        state: Some(api::PodSandboxStateValue {
            state: api::PodSandboxState::SandboxReady as i32,
        }),
        label_selector: [(crate::pod::spec::POD_UID_LABEL.to_string(), uid)]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let sandbox = match state.runtime.list_pod_sandbox(Some(filter)).await {
        Ok(list) => list.into_iter().max_by_key(|s| s.created_at),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let Some(sandbox) = sandbox else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod {pod_name:?} has no running sandbox"),
        );
    };
    match state.runtime.port_forward(&sandbox.id, opts.ports).await {
        Ok(url) => stream::proxy_to(req, &url).await,
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        PodStatus,
    };

    fn pod(status: ContainerStatus) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("web".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                container_statuses: Some(vec![status]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn terminated(id: &str) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id: Some(id.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_log_comes_from_the_current_or_the_previous_instance() {
        let running = ContainerStatus {
            name: "main".into(),
            container_id: Some("containerd://new".into()),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..Default::default()
            }),
            last_state: Some(terminated("containerd://old")),
            ..Default::default()
        };
        let p = pod(running);
        assert_eq!(log_container_id(&p, "main", false), Ok("new".into()));
        assert_eq!(log_container_id(&p, "main", true), Ok("old".into()));
        assert_eq!(
            log_container_id(&p, "other", false),
            Err("container \"other\" in pod \"web\" is not available".into())
        );

        let backoff = ContainerStatus {
            name: "main".into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("CrashLoopBackOff".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            last_state: Some(terminated("containerd://dead")),
            ..Default::default()
        };
        assert_eq!(
            log_container_id(&pod(backoff), "main", false),
            Ok("dead".into()),
            "a crash-looping container shows its last run"
        );

        let first_run = ContainerStatus {
            name: "main".into(),
            container_id: Some("containerd://c1".into()),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            log_container_id(&pod(first_run), "main", true),
            Err("previous terminated container \"main\" in pod \"web\" not found".into())
        );

        let pulling = ContainerStatus {
            name: "main".into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("ErrImagePull".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            log_container_id(&pod(pulling), "main", false),
            Err(
                "container \"main\" in pod \"web\" is waiting to start: image can't be pulled"
                    .into()
            )
        );
    }
}
