//! Subresources: status, scale, binding, eviction, finalize, ephemeralcontainers, and the
//! kubelet-backed streams (log, exec, attach, portforward, proxy).

use serde_json::{json, Value};

use super::write::{self, update_object};
use super::Ctx;
use crate::error::{ApiError, Result};
use crate::http::negotiate::{self, BodyType};
use crate::http::response::{self, Resp};
use crate::object;

pub async fn handle(ctx: &mut Ctx) -> Result<Resp> {
    let sub = ctx.info.subresource.clone();
    let Some(desc) = ctx.entry.info.subresource(&sub).cloned() else {
        return Err(ApiError::not_found(
            ctx.group(),
            &format!("{}/{sub}", ctx.resource()),
            &ctx.info.name,
        ));
    };
    let verb = ctx.info.verb.clone();
    let allowed = match verb.as_str() {
        "get" => desc.verbs.iter().any(|v| v == "get"),
        "update" => desc.verbs.iter().any(|v| v == "update"),
        "patch" => desc.verbs.iter().any(|v| v == "patch"),
        "create" => desc.verbs.iter().any(|v| v == "create"),
        "connect" => true,
        _ => false,
    };
    if !allowed {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({}/{sub})",
            ctx.resource()
        )));
    }
    match sub.as_str() {
        "status" | "approval" | "ephemeralcontainers" | "resize" => {
            status_like(ctx, &sub, &verb).await
        }
        "finalize" => finalize(ctx).await,
        "scale" => scale(ctx, &verb).await,
        "binding" => binding(ctx).await,
        "eviction" => eviction(ctx).await,
        "token" => super::reviews::token_request(ctx).await,
        _ => streams(ctx).await,
    }
}

/// `status` (and the pod-spec slices with the same shape): GET reads the object, writes
/// change only that part.
async fn status_like(ctx: &mut Ctx, sub: &str, verb: &str) -> Result<Resp> {
    let name = ctx.info.name.clone();
    match verb {
        "get" => {
            let obj = super::read(ctx, &name).await?;
            Ok(ctx.respond_object(200, obj))
        }
        "update" => {
            let body = ctx.body_json()?;
            let manager = write::field_manager(ctx, "")?;
            let store_sub = if matches!(sub, "status" | "approval") {
                "status"
            } else {
                ""
            };
            let field = sub.to_string();
            let (obj, _) = update_object(ctx, &name, &manager, store_sub, |cur| {
                let Some(cur) = cur else { return Ok(None) };
                Ok(Some(merge_slice(cur, &body, &field)))
            })
            .await?;
            Ok(ctx.respond_object(200, obj))
        }
        _ => {
            let ty = negotiate::body_type(ctx.header("content-type"))?;
            let store_sub = if matches!(sub, "status" | "approval") {
                "status"
            } else {
                ""
            };
            let (obj, _) = write::patch_object(ctx, &name, store_sub, ty).await?;
            Ok(ctx.respond_object(200, obj))
        }
    }
}

/// The current object with `body`'s part for subresource `sub` taken over.
fn merge_slice(cur: &Value, body: &Value, sub: &str) -> Value {
    let mut out = cur.clone();
    match sub {
        "status" => {
            out["status"] = body.get("status").cloned().unwrap_or(json!({}));
            if cur["kind"] == "CertificateSigningRequest" {
                // Approval happens only through the approval subresource: the Approved and
                // Denied conditions stay as they were.
                let approval =
                    |c: &Value| matches!(c["type"].as_str(), Some("Approved" | "Denied"));
                let mut conditions: Vec<Value> = cur["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| approval(c))
                    .cloned()
                    .collect();
                conditions.extend(
                    out["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|c| !approval(c))
                        .cloned(),
                );
                out["status"]["conditions"] = json!(conditions);
            }
            let rv = object::resource_version(body);
            if !rv.is_empty() {
                object::set_meta(&mut out, "resourceVersion", json!(rv));
            }
        }
        // certificatesigningrequests/approval: only the conditions change.
        "approval" => {
            out["status"]["conditions"] = body
                .get("status")
                .and_then(|s| s.get("conditions"))
                .cloned()
                .unwrap_or(json!([]));
        }
        "ephemeralcontainers" => {
            out["spec"]["ephemeralContainers"] = body
                .get("spec")
                .and_then(|s| s.get("ephemeralContainers"))
                .cloned()
                .unwrap_or(json!([]));
        }
        _ => {
            if let Some(cs) = body.get("spec").and_then(|s| s.get("containers")) {
                out["spec"]["containers"] = cs.clone();
            }
        }
    }
    out
}

/// PUT namespaces/{name}/finalize: only spec.finalizers changes; an emptied list lets a
/// terminating namespace go.
async fn finalize(ctx: &mut Ctx) -> Result<Resp> {
    let body = ctx.body_json()?;
    let name = ctx.info.name.clone();
    let manager = write::field_manager(ctx, "")?;
    let finalizers = body
        .get("spec")
        .and_then(|s| s.get("finalizers"))
        .cloned()
        .unwrap_or(json!([]));
    let api = ctx.api.clone();
    let key = ctx.key(&name);
    let (obj, _) = update_object(ctx, &name, &manager, "finalize", |cur| {
        let Some(cur) = cur else { return Ok(None) };
        let mut out = cur.clone();
        out["spec"]["finalizers"] = finalizers.clone();
        Ok(Some(out))
    })
    .await?;
    let empty = obj["spec"]["finalizers"]
        .as_array()
        .map(|a| a.is_empty())
        .unwrap_or(true);
    let deleting = obj["metadata"].get("deletionTimestamp").is_some();
    let meta_finalizers = obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| !a.is_empty())
        .unwrap_or(false);
    if empty && deleting && !meta_finalizers {
        let rv: i64 = object::resource_version(&obj).parse().unwrap_or(0);
        let _ = api.storage.delete(&key, rv, "namespaces").await;
    }
    Ok(ctx.respond_object(200, obj))
}

/// The autoscaling/v1 Scale view of a workload.
async fn scale(ctx: &mut Ctx, verb: &str) -> Result<Resp> {
    let name = ctx.info.name.clone();
    let info = ctx.entry.info.clone();
    let paths = ctx.entry.custom.as_ref().and_then(|c| c.scale.clone());
    let scale_json = |r: Value| response::json(200, &r);
    match verb {
        "get" => {
            let obj = super::read(ctx, &name).await?;
            Ok(scale_json(crate::scale::to_scale(
                &info,
                &obj,
                paths.as_ref(),
            )?))
        }
        _ => {
            let manager = write::field_manager(ctx, "")?;
            let body = if verb == "update" {
                Some(ctx.body_json()?)
            } else {
                None
            };
            let ty = negotiate::body_type(ctx.header("content-type"))?;
            let patch = if verb == "patch" {
                Some(super::decode_body(
                    &ctx.body,
                    if ty == BodyType::ApplyPatch {
                        BodyType::ApplyPatch
                    } else {
                        BodyType::Json
                    },
                )?)
            } else {
                None
            };
            let info2 = info.clone();
            let (obj, _) = update_object(ctx, &name, &manager, "", |cur| {
                let Some(cur) = cur else { return Ok(None) };
                let current_scale = crate::scale::to_scale(&info2, cur, paths.as_ref())?;
                let wanted = match (&body, &patch) {
                    (Some(b), _) => b.clone(),
                    (None, Some(p)) => match ty {
                        BodyType::JsonPatch => crate::patch::json_patch(&current_scale, p)
                            .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?,
                        _ => crate::patch::merge_patch(&current_scale, p),
                    },
                    _ => current_scale.clone(),
                };
                let mut out = cur.clone();
                crate::scale::apply_scale(&info2, &mut out, &wanted, paths.as_ref())?;
                Ok(Some(out))
            })
            .await?;
            Ok(scale_json(crate::scale::to_scale(
                &info,
                &obj,
                paths.as_ref(),
            )?))
        }
    }
}

/// POST pods/{name}/binding: assigns the pod to a node, once.
async fn binding(ctx: &mut Ctx) -> Result<Resp> {
    let body = ctx.body_json()?;
    let name = ctx.info.name.clone();
    let target = body
        .get("target")
        .and_then(|t| t.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if target.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            &name,
            &[crate::error::FieldError::required("target.name", "")],
        ));
    }
    let binding = super::binding::Binding::from_body(&body, &target);
    super::binding::bind_pod(ctx, &name, &binding).await?;
    Ok(response::json(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// POST pods/{name}/eviction: a graceful delete, subject to disruption budgets.
async fn eviction(ctx: &mut Ctx) -> Result<Resp> {
    let body = ctx.body_json()?;
    let name = ctx.info.name.clone();
    let mut opts = super::delete::DeleteOptions::default();
    if let Some(d) = body.get("deleteOptions") {
        opts.grace_period = d.get("gracePeriodSeconds").and_then(Value::as_i64);
        opts.dry_run = d
            .get("dryRun")
            .and_then(Value::as_array)
            .map(|a| a.iter().any(|v| v == "All"))
            .unwrap_or(false);
    }
    ctx.api.check_disruption(&ctx.info.namespace, &name).await?;
    super::delete::delete_object(ctx, &name, &opts).await?;
    Ok(response::json(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// log/exec/attach/portforward/proxy go to the pod's kubelet.
async fn streams(ctx: &mut Ctx) -> Result<Resp> {
    let name = ctx.info.name.clone();
    let obj = match super::read(ctx, &name).await {
        // A deleted pod's logs may still be in its last node's archive.
        Err(e) if e.code == 404 && ctx.resource() == "pods" && ctx.info.subresource == "log" => {
            return crate::kubelet::archive::deleted_pod_log(
                &ctx.api,
                &ctx.info.namespace,
                &name,
                &ctx.query,
                e,
            )
            .await
        }
        r => r?,
    };
    match (ctx.resource(), ctx.info.subresource.as_str()) {
        ("pods", "log") => {
            return crate::kubelet::pod_log(&ctx.api, &obj, &ctx.info.namespace, &name, &ctx.query)
                .await
        }
        ("nodes", "proxy") => return node_proxy(ctx, &name).await,
        ("pods", sub @ ("exec" | "attach" | "portforward")) => {
            let (node, path) =
                crate::kubelet::stream_location(&obj, &ctx.info.namespace, &name, sub, &ctx.query)?;
            let upgrade = ctx.upgrade.take();
            let method = ctx.method.clone();
            if sub == "portforward"
                && crate::kubelet::tunnel::wants_websocket_protocol(
                    &ctx.headers,
                    crate::kubelet::tunnel::PORT_FORWARD_TUNNEL,
                )
            {
                return crate::kubelet::port_forward_tunnel(
                    &ctx.api,
                    &node,
                    &path,
                    &ctx.headers,
                    upgrade,
                )
                .await;
            }
            if sub != "portforward" && crate::kubelet::translator::negotiate(&ctx.headers).is_some()
            {
                let streams = crate::kubelet::translator::Streams::from_query(&ctx.query);
                return crate::kubelet::translator::exec_or_attach(
                    &ctx.api,
                    &node,
                    &path,
                    &ctx.headers,
                    upgrade,
                    streams,
                )
                .await;
            }
            return crate::kubelet::upgrade(&ctx.api, &node, method, &path, &ctx.headers, upgrade)
                .await;
        }
        _ => {}
    }
    if ctx.resource() == "pods" {
        let node = obj["spec"]["nodeName"].as_str().unwrap_or("");
        if node.is_empty() {
            return Err(ApiError::bad_request(format!(
                "pod {name} does not have a host assigned"
            )));
        }
    }
    Err(ApiError::service_unavailable(format!(
        "{}/{} is served through the kubelet, which this apiserver does not reach yet",
        ctx.resource(),
        ctx.info.subresource
    )))
}

/// nodes/{name}/proxy/{path}: the request goes to the kubelet as it is; its answer comes back
/// as it is.
async fn node_proxy(ctx: &mut Ctx, name: &str) -> Result<Resp> {
    let mut path = String::new();
    for segment in &ctx.info.rest {
        path.push('/');
        path.push_str(&crate::kubelet::encode(segment));
    }
    if path.is_empty() {
        path.push('/');
    }
    let mut query: Vec<String> = Vec::new();
    for (k, values) in ctx.query.pairs() {
        for v in values {
            query.push(format!(
                "{}={}",
                crate::kubelet::encode(k),
                crate::kubelet::encode(v)
            ));
        }
    }
    if !query.is_empty() {
        query.sort();
        path.push('?');
        path.push_str(&query.join("&"));
    }
    let method = ctx.method.clone();
    if crate::kubelet::is_upgrade(&ctx.headers) {
        let upgrade = ctx.upgrade.take();
        return crate::kubelet::upgrade(&ctx.api, name, method, &path, &ctx.headers, upgrade).await;
    }
    let content_type = ctx.header("content-type").map(str::to_string);
    let k = crate::kubelet::request(
        &ctx.api,
        name,
        method,
        &path,
        content_type.as_deref(),
        ctx.body.clone(),
    )
    .await?;
    Ok(crate::kubelet::stream_response(k, "text/plain"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_approval_changes_only_through_the_approval_subresource() {
        let cur = json!({
            "kind": "CertificateSigningRequest",
            "spec": {"signerName": "kubernetes.io/kube-apiserver-client", "username": "bob"},
            "status": {"conditions": [{"type": "Approved", "status": "True"}]},
        });
        // A status update cannot drop or add approval, but can add other conditions.
        let body = json!({"status": {"conditions": [
            {"type": "Denied", "status": "True"},
            {"type": "Failed", "status": "True"},
        ], "certificate": "Y2VydA=="}});
        let out = merge_slice(&cur, &body, "status");
        let types: Vec<&str> = out["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["Approved", "Failed"]);
        assert_eq!(out["status"]["certificate"], "Y2VydA==");
        // The approval subresource takes the conditions and nothing else.
        let body = json!({
            "spec": {"username": "mallory"},
            "status": {"conditions": [{"type": "Denied", "status": "True"}], "certificate": "eA=="},
        });
        let out = merge_slice(&cur, &body, "approval");
        assert_eq!(out["spec"]["username"], "bob");
        assert_eq!(out["status"]["conditions"][0]["type"], "Denied");
        assert!(out["status"]["certificate"].is_null());
    }
}
