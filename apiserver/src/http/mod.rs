//! The HTTP front: public paths, authentication, authorization, inflight limits, and
//! routing to discovery, OpenAPI, metrics and the resource handlers.

pub mod negotiate;
pub mod request;
pub mod response;
mod server;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use serde_json::json;

pub use server::serve;

use crate::error::ApiError;
use crate::handlers::{self, Ctx};
use crate::server::ApiServer;
use request::{Query, RequestInfo};
use response::Resp;

/// The gitVersion this server reports: within kubectl 1.32's supported skew.
pub const GIT_VERSION: &str = "v1.33.1";

fn version() -> serde_json::Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}

/// Serves one request.
pub async fn handle(
    api: Arc<ApiServer>,
    parts: Parts,
    body: Bytes,
    peer_cert: Option<&[u8]>,
) -> Resp {
    let start = Instant::now();
    let path = parts.uri.path().to_string();
    let query = Query::parse(parts.uri.query());
    let info = RequestInfo::parse(&parts.method, &path, &query);
    let query_dry_run = query.all("dryRun").iter().any(|v| v == "All");
    let (resp, verb_label) = route(&api, &parts, body, peer_cert, &path, query, info.clone()).await;
    let (group, version, resource, subresource, scope) = match &info {
        Some(i) => (
            i.group.as_str(),
            i.version.as_str(),
            i.resource.as_str(),
            i.subresource.as_str(),
            crate::metrics::scope(&i.namespace, &i.name, true, i.verb == "create"),
        ),
        None => ("", "", "", "", ""),
    };
    let dry_run = if query_dry_run { "All" } else { "" };
    api.metrics.observe_request(
        &crate::metrics::RequestLabels {
            verb: &verb_label,
            dry_run,
            group,
            version,
            resource,
            subresource,
            scope,
        },
        resp.status().as_u16(),
        0,
        start.elapsed(),
    );
    resp
}

/// Upstream's metric verb: LIST/WATCH split from GET, APPLY from PATCH.
fn metric_verb(
    method: &http::Method,
    info: Option<&RequestInfo>,
    content_type: Option<&str>,
) -> String {
    match info.map(|i| i.verb.as_str()) {
        Some("list") => "LIST".into(),
        Some("watch") => "WATCH".into(),
        Some("connect") => "CONNECT".into(),
        Some("patch")
            if content_type
                .map(|c| c.starts_with("application/apply-patch"))
                .unwrap_or(false) =>
        {
            "APPLY".into()
        }
        _ => method.as_str().to_string(),
    }
}

async fn route(
    api: &Arc<ApiServer>,
    parts: &Parts,
    body: Bytes,
    peer_cert: Option<&[u8]>,
    path: &str,
    query: Query,
    info: Option<RequestInfo>,
) -> (Resp, String) {
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok());
    let verb = metric_verb(&parts.method, info.as_ref(), header("content-type"));
    // Public paths.
    if parts.method == http::Method::GET || parts.method == http::Method::HEAD {
        if let Some(reply) = api.health.respond(path, parts.uri.query()) {
            return (
                response::with_type(reply.status.as_u16(), &reply.content_type, reply.body),
                verb,
            );
        }
        if path == "/version" || path == "/version/" {
            return (response::json(200, &version()), verb);
        }
    }
    let Some(user) = api.authn.authenticate(peer_cert, header("authorization")) else {
        return (response::error(&ApiError::unauthorized()), verb);
    };
    // Upstream's default policy lets every authenticated user read discovery and OpenAPI.
    let discovery = info.is_none()
        && matches!(parts.method, http::Method::GET | http::Method::HEAD)
        && (path == "/api"
            || path == "/apis"
            || path.starts_with("/api/")
            || path.starts_with("/apis/")
            || path.starts_with("/openapi/"));
    if !discovery && !crate::authn::is_allowed(&user) {
        let msg = match &info {
            Some(i) => crate::authn::forbidden_message(
                &user,
                &i.verb,
                &i.group,
                &i.resource,
                &i.subresource,
                &i.namespace,
                &i.name,
            ),
            None => format!(
                "forbidden: User \"{}\" cannot {} path \"{path}\"",
                user.name,
                parts.method.as_str().to_lowercase()
            ),
        };
        let mut e = ApiError::forbidden(msg);
        if let Some(i) = &info {
            let mut d = json!({"kind": i.resource});
            if !i.name.is_empty() {
                d["name"] = json!(i.name);
            }
            if !i.group.is_empty() {
                d["group"] = json!(i.group);
            }
            e = e.with_details(d);
        }
        return (response::error(&e), verb);
    }
    let long_running = info
        .as_ref()
        .map(|i| {
            i.verb == "watch"
                || i.verb == "connect"
                || (i.subresource == "log" && query.flag("follow"))
        })
        .unwrap_or(false);
    let mutating = !matches!(
        parts.method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    );
    let _permit = if long_running {
        None
    } else {
        match api.limiter.try_acquire(mutating) {
            Some(p) => Some(p),
            None => return (response::error(&ApiError::too_many_requests(1)), verb),
        }
    };
    if let Some(info) = info {
        let Some(entry) = api.catalog.find(&info.group, &info.version, &info.resource) else {
            return (response::error(&not_found_path(path)), verb);
        };
        if info.namespace.is_empty()
            && entry.info.namespaced
            && !matches!(info.verb.as_str(), "list" | "watch" | "deletecollection")
        {
            return (response::error(&not_found_path(path)), verb);
        }
        if !entry.info.namespaced && !info.namespace.is_empty() {
            return (response::error(&not_found_path(path)), verb);
        }
        if !entry.info.verbs.contains(&info.verb) && info.subresource.is_empty() {
            return (
                response::error(&ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                )),
                verb,
            );
        }
        let ctx = Ctx {
            api: api.clone(),
            entry,
            info,
            query,
            headers: parts.headers.clone(),
            body,
            user,
            warnings: Vec::new(),
        };
        let fut = handlers::handle(ctx);
        if long_running {
            return (fut.await, verb);
        }
        return match tokio::time::timeout(api.config.request_timeout, fut).await {
            Ok(r) => (r, verb),
            Err(_) => (
                response::error(&ApiError::timeout(
                    "request did not complete within the allowed duration",
                )),
                verb,
            ),
        };
    }
    (nonresource(api, parts, path), verb)
}

fn not_found_path(_path: &str) -> ApiError {
    ApiError::new(404, "NotFound", "the server could not find the requested resource")
        .with_details(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]}))
}

/// Discovery, OpenAPI and metrics.
fn nonresource(api: &ApiServer, parts: &Parts, path: &str) -> Resp {
    let accept = parts.headers.get("accept").and_then(|v| v.to_str().ok());
    let parts_v: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let server_address = format!("{}:{}", api.config.advertise_address, api.secure_port());
    match parts_v.as_slice() {
        ["metrics"] => {
            let reply = component_base::metrics::reply(&api.registry);
            response::with_type(reply.status.as_u16(), &reply.content_type, reply.body)
        }
        ["api"] => match crate::discovery::wants_aggregated(accept) {
            Some(v) => aggregated(api, true, v),
            None => response::json(200, &crate::discovery::api_versions(&server_address)),
        },
        ["apis"] => match crate::discovery::wants_aggregated(accept) {
            Some(v) => aggregated(api, false, v),
            None => response::json(200, &crate::discovery::api_group_list(&api.catalog)),
        },
        ["api", v] => match crate::discovery::resource_list(&api.catalog, "", v) {
            Some(l) => response::json(200, &l),
            None => response::error(&not_found_path(path)),
        },
        ["apis", g] => match crate::discovery::api_group(&api.catalog, g) {
            Some(l) => response::json(200, &l),
            None => response::error(&not_found_path(path)),
        },
        ["apis", g, v] => match crate::discovery::resource_list(&api.catalog, g, v) {
            Some(l) => response::json(200, &l),
            None => response::error(&not_found_path(path)),
        },
        ["openapi", "v2"] => {
            if accept
                .map(|a| a.contains("protobuf") && !a.contains("json"))
                .unwrap_or(false)
            {
                return response::error(&ApiError::not_acceptable(
                    "only application/json is served",
                ));
            }
            response::with_type(200, "application/json", api.openapi_v2())
        }
        ["openapi", "v3"] => response::with_type(200, "application/json", api.openapi_v3_root()),
        ["openapi", "v3", rest @ ..] => {
            let gv = rest.join("/");
            match api.openapi_v3(&gv) {
                Some(doc) => {
                    let mut r = response::with_type(200, "application/json", doc);
                    r.headers_mut().insert(
                        "Cache-Control",
                        http::HeaderValue::from_static("public, immutable"),
                    );
                    r
                }
                None => response::text(404, "404 page not found\n"),
            }
        }
        _ => response::text(404, "404 page not found\n"),
    }
}

fn aggregated(api: &ApiServer, core: bool, version: &str) -> Resp {
    let doc = crate::discovery::aggregated(&api.catalog, core, version);
    let ty = if version == "v2beta1" {
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
    } else {
        crate::discovery::AGGREGATED_TYPE
    };
    let mut r = response::with_type(200, ty, serde_json::to_vec(&doc).expect("serializable"));
    r.headers_mut()
        .insert("Vary", http::HeaderValue::from_static("Accept"));
    r
}
