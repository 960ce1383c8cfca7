//! delete and deletecollection: preconditions, graceful pod deletion, finalizers and the
//! propagation policy recorded for the garbage collector.

use serde_json::{json, Value};

use super::Ctx;
use crate::error::{ApiError, Result};
use crate::http::response::{self, Resp};
use crate::object;
use crate::storage::StorageError;

/// DeleteOptions from the body (JSON) or the query.
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    pub fn from_request(ctx: &Ctx) -> Result<Self> {
        let mut o = DeleteOptions::default();
        if !ctx.body.is_empty() {
            let body = ctx.body_json()?;
            o.grace_period = body.get("gracePeriodSeconds").and_then(Value::as_i64);
            o.propagation = body
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string);
            if body.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
                o.propagation.get_or_insert_with(|| "Orphan".into());
            }
            if let Some(p) = body.get("preconditions") {
                o.uid = p.get("uid").and_then(Value::as_str).map(str::to_string);
                o.resource_version = p
                    .get("resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            o.dry_run = body
                .get("dryRun")
                .and_then(Value::as_array)
                .map(|a| a.iter().any(|v| v == "All"))
                .unwrap_or(false);
        }
        if let Some(g) = ctx.query.get("gracePeriodSeconds") {
            o.grace_period =
                Some(g.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid gracePeriodSeconds: {g}"))
                })?);
        }
        if let Some(p) = ctx.query.get("propagationPolicy") {
            o.propagation = Some(p.to_string());
        }
        if ctx.dry_run() {
            o.dry_run = true;
        }
        if let Some(p) = &o.propagation {
            if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
                return Err(ApiError::invalid(
                    "",
                    "DeleteOptions",
                    "",
                    &[crate::error::FieldError::not_supported(
                        "propagationPolicy",
                        json!(p),
                        &["Foreground", "Background", "Orphan"],
                    )],
                ));
            }
        }
        Ok(o)
    }
}

pub async fn delete(ctx: &mut Ctx) -> Result<Resp> {
    let opts = DeleteOptions::from_request(ctx)?;
    let name = ctx.info.name.clone();
    let (obj, _gone) = delete_object(ctx, &name, &opts).await?;
    Ok(ctx.respond_object(200, obj))
}

/// Deletes `name` or marks it deleting; returns the stored object and whether it is gone.
pub async fn delete_object(
    ctx: &mut Ctx,
    name: &str,
    opts: &DeleteOptions,
) -> Result<(Value, bool)> {
    let info = ctx.entry.info.clone();
    let api = ctx.api.clone();
    let key = ctx.key(name);
    for _ in 0..16 {
        let Some((cur, rev)) = api
            .storage
            .get(&key, &info.resource)
            .await
            .map_err(|e| e.to_api(&info.group, &info.resource, name))?
        else {
            return Err(ctx.not_found(name));
        };
        if let Some(uid) = &opts.uid {
            if object::meta_str(&cur, "uid") != Some(uid.as_str()) {
                return Err(ApiError::conflict(
                    &info.group,
                    &info.resource,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        object::meta_str(&cur, "uid").unwrap_or("")
                    ),
                ));
            }
        }
        if let Some(rv) = &opts.resource_version {
            if *rv != rev.to_string() {
                return Err(ApiError::conflict(
                    &info.group,
                    &info.resource,
                    name,
                    &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {rev}"),
                ));
            }
        }
        super::write::admit(
            ctx,
            crate::admission::Operation::Delete,
            super::write::Phase::Validate,
            None,
            Some(&cur),
        )?;
        let mut next = cur.clone();
        let mut pending = false;
        let deleting = cur
            .get("metadata")
            .and_then(|m| m.get("deletionTimestamp"))
            .is_some();
        // Finalizers the garbage collector acts on, per propagation policy.
        match opts.propagation.as_deref() {
            Some("Orphan") => {
                add_finalizer(&mut next, "orphan");
                pending = true;
            }
            Some("Foreground") => {
                add_finalizer(&mut next, "foregroundDeletion");
                pending = true;
            }
            _ => {}
        }
        let has_finalizers = next
            .get("metadata")
            .and_then(|m| m.get("finalizers"))
            .and_then(Value::as_array)
            .map(|f| !f.is_empty())
            .unwrap_or(false);
        let grace = graceful_period(&info.group, &info.resource, &cur, opts);
        if info.group.is_empty() && info.resource == "namespaces" {
            // The namespace controller empties it and removes the "kubernetes" finalizer.
            if !deleting {
                object::set_meta(&mut next, "deletionTimestamp", json!(object::now_rfc3339()));
                object::set_meta(&mut next, "deletionGracePeriodSeconds", json!(0));
                next["status"]["phase"] = json!("Terminating");
            }
            let spec_finalizers = next
                .get("spec")
                .and_then(|s| s.get("finalizers"))
                .and_then(Value::as_array)
                .map(|f| !f.is_empty())
                .unwrap_or(false);
            pending = pending || spec_finalizers || has_finalizers;
        } else if has_finalizers || grace > 0 {
            if !deleting {
                let when =
                    std::time::SystemTime::now() + std::time::Duration::from_secs(grace as u64);
                object::set_meta(
                    &mut next,
                    "deletionTimestamp",
                    json!(object::format_rfc3339(when)),
                );
                object::set_meta(&mut next, "deletionGracePeriodSeconds", json!(grace));
            } else if grace > 0 {
                // A shorter grace period may replace a longer one.
                let old = cur["metadata"]["deletionGracePeriodSeconds"]
                    .as_i64()
                    .unwrap_or(grace);
                if grace < old {
                    let when =
                        std::time::SystemTime::now() + std::time::Duration::from_secs(grace as u64);
                    object::set_meta(
                        &mut next,
                        "deletionTimestamp",
                        json!(object::format_rfc3339(when)),
                    );
                    object::set_meta(&mut next, "deletionGracePeriodSeconds", json!(grace));
                }
            }
            pending = true;
        }
        if opts.dry_run {
            return Ok((next, !pending));
        }
        if pending {
            if next == cur {
                return Ok((cur, false));
            }
            match api.storage.update(&key, &next, rev, &info.resource).await {
                Ok(new_rev) => {
                    object::set_meta(&mut next, "resourceVersion", json!(new_rev.to_string()));
                    return Ok((next, false));
                }
                Err(StorageError::Conflict(_)) => continue,
                Err(e) => return Err(e.to_api(&info.group, &info.resource, name)),
            }
        }
        match api.storage.delete(&key, rev, &info.resource).await {
            Ok(_) => {
                api.release_for(&ctx.entry, &cur).await;
                return Ok((cur, true));
            }
            Err(StorageError::Conflict(_)) => continue,
            Err(StorageError::NotFound) => return Err(ctx.not_found(name)),
            Err(e) => return Err(e.to_api(&info.group, &info.resource, name)),
        }
    }
    Err(ApiError::stale(&info.group, &info.resource, name))
}

fn add_finalizer(obj: &mut Value, f: &str) {
    let meta = object::metadata_mut(obj);
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    let arr = list.as_array_mut().expect("just made an array");
    if !arr.iter().any(|v| v == f) {
        arr.push(json!(f));
    }
}

/// Seconds a deletion waits: only pods bound to a node wait for their kubelet.
fn graceful_period(group: &str, resource: &str, obj: &Value, opts: &DeleteOptions) -> i64 {
    if !(group.is_empty() && resource == "pods") {
        return 0;
    }
    let scheduled = obj
        .get("spec")
        .and_then(|s| s.get("nodeName"))
        .and_then(Value::as_str)
        .map(|n| !n.is_empty())
        .unwrap_or(false);
    let phase = obj
        .get("status")
        .and_then(|s| s.get("phase"))
        .and_then(Value::as_str);
    if !scheduled || matches!(phase, Some("Succeeded" | "Failed")) {
        return 0;
    }
    opts.grace_period
        .unwrap_or_else(|| {
            obj.get("spec")
                .and_then(|s| s.get("terminationGracePeriodSeconds"))
                .and_then(Value::as_i64)
                .unwrap_or(30)
        })
        .max(0)
}

/// DELETE on a collection: every object matching the selectors.
pub async fn delete_collection(ctx: &mut Ctx) -> Result<Resp> {
    let opts = DeleteOptions::from_request(ctx)?;
    let items = super::list::select_consistent(ctx).await?;
    let mut deleted = Vec::new();
    for obj in items.0 {
        let name = object::name(&obj).to_string();
        let ns = object::namespace(&obj).to_string();
        let saved_ns = std::mem::replace(&mut ctx.info.namespace, ns);
        match delete_object(ctx, &name, &opts).await {
            Ok((o, _)) => deleted.push(ctx.present(o)),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
        ctx.info.namespace = saved_ns;
    }
    let list = json!({
        "kind": ctx.entry.info.list_kind,
        "apiVersion": ctx.entry.info.api_version(),
        "metadata": {},
        "items": deleted,
    });
    Ok(response::json(200, &list))
}
