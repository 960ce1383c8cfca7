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
    let mut audit = None;
    let (resp, verb_label) = route(
        &api,
        &parts,
        body.clone(),
        peer_cert,
        &path,
        query,
        info.clone(),
        &mut audit,
    )
    .await;
    let resp = match audit {
        Some(ctx) => {
            let streaming = info
                .as_ref()
                .is_some_and(|i| i.verb == "watch" || i.verb == "connect");
            let protobuf = parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.starts_with("application/vnd.kubernetes.protobuf"));
            finish_audit(ctx, resp, &body, protobuf, streaming).await
        }
        None => resp,
    };
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

/// Writes the audit event of a finished request; error bodies (and, at RequestResponse level,
/// every non-streaming body) are read back to be recorded.
/// Streams (watches) are recorded when their response starts, without the body.
async fn finish_audit(
    mut ctx: crate::audit::AuditContext,
    resp: Resp,
    request: &Bytes,
    protobuf: bool,
    streaming: bool,
) -> Resp {
    use http_body_util::BodyExt;
    let code = resp.status().as_u16();
    ctx.response_started(code);
    let wants_body = code >= 400 || ctx.wants_response_object();
    // The audit log records JSON; protobuf bodies (kubectl create ...) are converted.
    let converted = protobuf
        .then(|| crate::protobuf::decode(request).ok())
        .flatten()
        .and_then(|v| serde_json::to_vec(&v).ok());
    let request_body = match &converted {
        Some(json) => Some(&json[..]),
        None => (!request.is_empty() && !protobuf).then_some(&request[..]),
    };
    if !wants_body || streaming {
        ctx.complete(code, None, request_body, None);
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(never) => match never {},
    };
    let status: Option<serde_json::Value> = if code >= 400 {
        serde_json::from_slice(&bytes).ok()
    } else {
        None
    };
    ctx.complete(code, status.as_ref(), request_body, Some(&bytes));
    http::Response::from_parts(parts, response::full(bytes))
}

/// Decides `info` (or the non-resource `path`) for `user` through the authorizer chain.
fn authorize(
    api: &ApiServer,
    user: &crate::authn::UserInfo,
    method: &http::Method,
    path: &str,
    query: &Query,
    info: Option<&RequestInfo>,
) -> crate::authz::Decision {
    let method_verb = method.as_str().to_ascii_lowercase();
    let selector = query
        .get("fieldSelector")
        .map(crate::authz::node::parse_field_selector)
        .unwrap_or_default();
    // Upstream authorizes a list/watch narrowed to one name as a request for that name.
    let selected_name = selector
        .iter()
        .find(|r| r.field == "metadata.name" && r.op == crate::authz::node::FieldOp::Equals)
        .map(|r| r.value.as_str());
    let attrs = match info {
        Some(i) => crate::authz::Attributes {
            user,
            // Upstream has no "connect" verb: exec, attach, portforward and proxy are
            // authorized with the verb of their HTTP method (POST create, GET get, ...), except
            // that a pod's exec/attach/portforward over WebSocket (a GET) needs "create" as
            // over SPDY (upstream's AuthorizePodWebsocketUpgradeCreatePermission, on by default).
            verb: if i.verb == "connect" {
                if *method == http::Method::GET
                    && i.resource == "pods"
                    && matches!(i.subresource.as_str(), "exec" | "attach" | "portforward")
                {
                    "create"
                } else {
                    connect_verb(method)
                }
            } else {
                &i.verb
            },
            resource_request: true,
            namespace: &i.namespace,
            api_group: &i.group,
            api_version: &i.version,
            resource: &i.resource,
            subresource: &i.subresource,
            name: match selected_name {
                Some(n) if i.name.is_empty() && matches!(i.verb.as_str(), "list" | "watch") => n,
                _ => &i.name,
            },
            path,
        },
        None => crate::authz::Attributes {
            user,
            verb: &method_verb,
            resource_request: false,
            namespace: "",
            api_group: "",
            api_version: "",
            resource: "",
            subresource: "",
            name: "",
            path,
        },
    };
    api.authz
        .authorize_with_field_selector(&attrs, &selector, &api.catalog)
}

/// The authorization verb of a connect request, from its HTTP method.
fn connect_verb(method: &http::Method) -> &'static str {
    match *method {
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "get",
    }
}

#[allow(clippy::too_many_arguments)]
async fn route(
    api: &Arc<ApiServer>,
    parts: &Parts,
    body: Bytes,
    peer_cert: Option<&[u8]>,
    path: &str,
    query: Query,
    info: Option<RequestInfo>,
    audit: &mut Option<crate::audit::AuditContext>,
) -> (Resp, String) {
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok());
    let verb = metric_verb(&parts.method, info.as_ref(), header("content-type"));
    let Some(user) = api
        .authn
        .authenticate(peer_cert, header("authorization"), &api.catalog)
    else {
        return (response::error(&ApiError::unauthorized()), verb);
    };
    // Public paths: upstream's system:public-info-viewer grants them to everyone.
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
    // Anonymous requests (--anonymous-auth, on by default) are authorized like any other as
    // system:anonymous in system:unauthenticated: RBAC decides, as for kubeadm's cluster-info
    // in kube-public, and a denial is upstream's 403.
    // `kubectl --as`: the request runs as the impersonated user once the requester may be it.
    let (user, requester) = match crate::impersonation::apply(api, &user, &parts.headers) {
        Ok(Some(impersonated)) => (impersonated, Some(user)),
        Ok(None) => (user, None),
        Err(e) => return (response::error(&e), verb),
    };
    let decision = authorize(api, &user, &parts.method, path, &query, info.as_ref());
    if let Some(auditor) = &api.audit {
        let attrs = match &info {
            Some(i) => crate::audit::RequestAttrs::resource(
                i.verb.clone(),
                crate::audit::ResourceAttrs {
                    group: i.group.clone(),
                    version: i.version.clone(),
                    resource: i.resource.clone(),
                    subresource: i.subresource.clone(),
                    namespace: i.namespace.clone(),
                    name: i.name.clone(),
                },
                path,
            ),
            None => crate::audit::RequestAttrs::non_resource(parts.method.as_str(), path),
        };
        let uri = parts.uri.to_string();
        let meta = crate::audit::RequestMeta {
            request_uri: &uri,
            user_agent: header("user-agent").unwrap_or(""),
            audit_id: header("audit-id"),
            x_forwarded_for: header("x-forwarded-for"),
            x_real_ip: header("x-real-ip"),
            long_running: info
                .as_ref()
                .is_some_and(|i| i.verb == "watch" || i.verb == "connect"),
            ..Default::default()
        };
        if let Some(mut ctx) = auditor.begin(&attrs, requester.as_ref().unwrap_or(&user), &meta) {
            if requester.is_some() {
                ctx.set_impersonated_user(&user);
            }
            let reason = match &decision {
                crate::authz::Decision::Allow(r)
                | crate::authz::Decision::Deny(r)
                | crate::authz::Decision::NoOpinion(r) => r.clone(),
            };
            ctx.set_authorization(decision.is_allowed(), &reason);
            *audit = Some(ctx);
        }
    }
    if !decision.is_allowed() {
        let reason = match &decision {
            crate::authz::Decision::Deny(r) | crate::authz::Decision::NoOpinion(r) => r.as_str(),
            crate::authz::Decision::Allow(_) => "",
        };
        let mut msg = match &info {
            Some(i) => crate::authn::forbidden_message(
                &user,
                if i.verb == "connect" {
                    connect_verb(&parts.method)
                } else {
                    &i.verb
                },
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
        if !reason.is_empty() {
            msg = format!("{msg}: {reason}");
        }
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
    // Like upstream's max-in-flight filter, system:masters is never throttled (nor counted),
    // so an administrator can always get in to fix an overloaded cluster.
    let _permit = if long_running || user.in_group(crate::authn::SYSTEM_MASTERS) {
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
            method: parts.method.clone(),
            upgrade: parts.extensions.get::<hyper::upgrade::OnUpgrade>().cloned(),
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
        [".well-known", "openid-configuration"] | ["openid", "v1", "jwks"] => {
            let authority = api.authn.service_accounts();
            let doc = match (parts_v.as_slice(), authority) {
                ([".well-known", _], Some(a)) => {
                    a.openid_configuration().map(|d| (d, "application/json"))
                }
                (["openid", ..], Some(a)) if a.openid_configuration().is_some() => {
                    Some((a.jwks(), crate::serviceaccount::JWKS_CONTENT_TYPE))
                }
                _ => None,
            };
            match doc {
                Some((doc, ty)) => {
                    let body = serde_json::to_vec(&doc).unwrap_or_default();
                    let mut r = response::with_type(200, ty, body);
                    r.headers_mut().insert(
                        "Cache-Control",
                        http::HeaderValue::from_static(
                            crate::serviceaccount::DISCOVERY_CACHE_CONTROL,
                        ),
                    );
                    r
                }
                None => response::text(404, "404 page not found\n"),
            }
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
