//! create, update and patch: the admission steps every write of an object goes through.

use std::sync::Arc;

use serde_json::{json, Value};

use super::Ctx;
use crate::admission::{Attributes as AdmissionAttributes, Operation};
use crate::error::{ApiError, FieldError, Result};
use crate::http::negotiate::{self, BodyType};
use crate::http::response::Resp;
use crate::object;
use crate::storage::StorageError;

/// Conflicting writes retried before giving up (only when the client gave no precondition).
const MAX_RETRIES: usize = 16;

/// The field manager of a write: `?fieldManager=`, else the user agent's product, as upstream.
pub fn field_manager(ctx: &Ctx, default: &str) -> Result<String> {
    if let Some(m) = ctx.query.get("fieldManager") {
        if m.len() > 128 || m.chars().any(|c| c.is_control()) {
            return Err(ApiError::bad_request(
                "fieldManager: Invalid value: must be at most 128 printable characters",
            ));
        }
        return Ok(m.to_string());
    }
    if default.is_empty() {
        let ua = ctx.header("user-agent").unwrap_or("unknown");
        return Ok(ua.split('/').next().unwrap_or("unknown").to_string());
    }
    Ok(default.to_string())
}

fn check_type_meta(ctx: &Ctx, obj: &Value) -> Result<()> {
    let info = &ctx.entry.info;
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
        if av != info.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                info.api_version()
            )));
        }
    }
    if let Some(kind) = obj.get("kind").and_then(Value::as_str) {
        if kind != info.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                info.kind
            )));
        }
    }
    Ok(())
}

/// fieldValidation: unknown fields fail the request (Strict), warn (Warn, the default) or
/// are dropped silently (Ignore); they never reach the store: `obj` comes back pruned.
pub fn field_validation(ctx: &mut Ctx, obj: &mut Value) -> Result<()> {
    let mode = ctx
        .query
        .get("fieldValidation")
        .unwrap_or("Warn")
        .to_string();
    if !matches!(mode.as_str(), "Strict" | "Warn" | "Ignore") {
        return Err(ApiError::bad_request(format!(
            "fieldValidation parameter unsupported: {mode}"
        )));
    }
    let unknown = ctx.api.prune_reporting(&ctx.entry, obj);
    if unknown.is_empty() {
        return Ok(());
    }
    match mode.as_str() {
        "Strict" => {
            let list: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            Err(ApiError::bad_request(format!(
                "strict decoding error: {}",
                list.join(", ")
            )))
        }
        "Warn" => {
            for f in &unknown {
                ctx.warnings.push(format!("unknown field \"{f}\""));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Creates from the request body (POST on the collection).
pub async fn create(ctx: &mut Ctx) -> Result<Resp> {
    let mut obj = ctx.body_json()?;
    check_type_meta(ctx, &obj)?;
    field_validation(ctx, &mut obj)?;
    let manager = field_manager(ctx, "")?;
    // field_validation pruned the body already.
    let created = create_pruned(ctx, obj, &manager).await?;
    Ok(ctx.respond_shared(201, created))
}

/// Fills server-set metadata, runs the strategy and stores a new object.
pub async fn create_object(ctx: &mut Ctx, mut obj: Value, manager: &str) -> Result<Value> {
    ctx.api.clone().prune(&ctx.entry, &mut obj);
    let created = create_pruned(ctx, obj, manager).await?;
    Ok(Arc::try_unwrap(created).unwrap_or_else(|shared| (*shared).clone()))
}

/// [`create_object`] of an object without unknown fields; the stored object is shared with
/// the watch cache.
async fn create_pruned(ctx: &mut Ctx, mut obj: Value, manager: &str) -> Result<Arc<Value>> {
    let info = ctx.entry.info.clone();
    let api = ctx.api.clone();
    let ns = ctx.info.namespace.clone();
    {
        let meta = object::metadata_mut(&mut obj);
        if info.namespaced {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(b) if !b.is_empty() && b != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => {
                    meta.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            if let Some(g) = meta.get("generateName").and_then(Value::as_str) {
                if !g.is_empty() {
                    meta.insert("name".into(), json!(format!("{g}{}", random_suffix())));
                }
            }
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(object::now_rfc3339()));
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(f);
        }
        if ctx.entry.strategy.tracks_generation() {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
    }
    if info.namespaced {
        api.check_namespace_open(&ns).await?;
    }
    let strategy = ctx.entry.strategy.clone();
    strategy.default(&mut obj);
    admit(ctx, Operation::Create, Phase::Mutate, Some(&mut obj), None)?;
    strategy.prepare_for_create(&mut obj);
    if info.group == "certificates.k8s.io" && info.resource == "certificatesigningrequests" {
        set_requester(&mut obj, &ctx.user);
    }
    let name = object::name(&obj).to_string();
    let mut errs: Vec<FieldError> = Vec::new();
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    }
    errs.extend(strategy.validate(&obj));
    errs.extend(api.validate_custom(&ctx.entry, &obj));
    if !errs.is_empty() {
        return Err(ApiError::invalid(&info.group, &info.kind, &name, &errs));
    }
    admit(
        ctx,
        Operation::Create,
        Phase::Validate,
        Some(&mut obj),
        None,
    )?;
    strategy.canonicalize(&mut obj);
    // Server-side apply already recorded its own (Apply) ownership.
    if !is_apply(ctx) {
        api.update_managed_fields(&ctx.entry, None, &mut obj, manager, None);
    }
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(ctx.entry.info.api_version()));
        m.insert("kind".into(), json!(ctx.entry.info.kind));
    }
    let mut obj = api.to_storage(&ctx.entry, obj);
    let dry_run = ctx.dry_run();
    let allocated = api.allocate(&ctx.entry, &mut obj, None, dry_run).await?;
    if dry_run {
        return Ok(Arc::new(obj));
    }
    let key = ctx.key(&name);
    match api.storage.create(&key, &obj, &info.resource).await {
        Ok(rv) => {
            object::set_meta(&mut obj, "resourceVersion", json!(rv.to_string()));
            let obj = Arc::new(obj);
            ctx.entry.cacher.wrote(&key, rv, obj.clone());
            Ok(obj)
        }
        Err(e) => {
            api.release(&allocated.allocated).await;
            Err(e.to_api(&info.group, &info.resource, &name))
        }
    }
}

/// Five characters from upstream's generateName alphabet (no vowels, no confusables).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// PUT of a whole object.
pub async fn update(ctx: &mut Ctx) -> Result<Resp> {
    let mut body = ctx.body_json()?;
    check_type_meta(ctx, &body)?;
    field_validation(ctx, &mut body)?;
    let name = ctx.info.name.clone();
    let body_name = object::name(&body);
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if body_name.is_empty() {
        object::set_meta(&mut body, "name", json!(name));
    }
    let manager = field_manager(ctx, "")?;
    let sub = ctx.info.subresource.clone();
    let (obj, created) =
        update_object(ctx, &name, &manager, &sub, |_cur| Ok(Some(body.clone()))).await?;
    Ok(ctx.respond_object(if created { 201 } else { 200 }, obj))
}

/// A write that replaces `name` with what `mutate` makes of the current object (None when
/// it is missing). Returns the stored object and whether it was created.
pub async fn update_object<F>(
    ctx: &mut Ctx,
    name: &str,
    manager: &str,
    subresource: &str,
    mut mutate: F,
) -> Result<(Value, bool)>
where
    F: FnMut(Option<&Value>) -> Result<Option<Value>>,
{
    let info = ctx.entry.info.clone();
    let api = ctx.api.clone();
    let key = ctx.key(name);
    let read = |key: String| {
        let api = api.clone();
        let info = info.clone();
        async move {
            api.storage
                .get(&key, &info.resource)
                .await
                .map_err(|e| e.to_api(&info.group, &info.resource, name))
        }
    };
    // As upstream's GuaranteedUpdate: start from the watch cache's copy. The write is guarded
    // by the revision it was read at, so a stale copy costs a retry, never a wrong result; only
    // the answers that the copy alone would decide (a resourceVersion precondition that does
    // not match, an unchanged object, a missing object) are checked against the store first.
    let mut current = ctx
        .entry
        .cacher
        .get_at(&key)
        .map(|(obj, rev)| ((*obj).clone(), rev));
    let mut fresh = current.is_none();
    if fresh {
        current = read(key.clone()).await?;
    }
    for _ in 0..MAX_RETRIES {
        let Some((cur, cur_rev)) = current.take() else {
            let Some(mut new) = mutate(None)? else {
                return Err(ctx.not_found(name));
            };
            // Server-side apply creates missing objects on every resource.
            if !ctx.entry.strategy.allow_create_on_update() && !is_apply(ctx) {
                return Err(ctx.not_found(name));
            }
            if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            let created = create_object(ctx, new, manager).await?;
            return Ok((created, true));
        };
        // Strategies and the mutation see the served shape; the store compares and keeps the
        // stored one, and only `Ctx::present` converts on the way out.
        let stored = cur;
        let cur = api.from_storage(&ctx.entry, stored.clone());
        let Some(mut new) = mutate(Some(&cur))? else {
            return Err(ctx.not_found(name));
        };
        let requested_rv = object::resource_version(&new).to_string();
        let precondition = !requested_rv.is_empty();
        if precondition && requested_rv != cur_rev.to_string() {
            if !fresh {
                current = read(key.clone()).await?;
                fresh = true;
                continue;
            }
            return Err(ApiError::stale(&info.group, &info.resource, name));
        }
        if !precondition && !ctx.entry.strategy.allow_unconditional_update() {
            return Err(ApiError::invalid(
                &info.group,
                &info.kind,
                name,
                &[FieldError::invalid(
                    "metadata.resourceVersion",
                    json!(0),
                    "must be specified for an update",
                )],
            ));
        }
        api.prune(&ctx.entry, &mut new);
        prepare_update(ctx, &mut new, &cur, subresource);
        let strategy = ctx.entry.strategy.clone();
        if subresource.is_empty() {
            strategy.default(&mut new);
        }
        admit_update(ctx, Phase::Mutate, &mut new, &cur)?;
        if subresource.is_empty() {
            strategy.prepare_for_update(&mut new, &cur);
        }
        // A binding only sets spec.nodeName and the PodScheduled condition, which no pod
        // update may do (upstream's binding writes storage directly).
        let mut errs = if subresource == "binding" {
            Vec::new()
        } else {
            strategy.validate_update(&new, &cur)
        };
        errs.extend(api.validate_custom(&ctx.entry, &new));
        if !errs.is_empty() {
            return Err(ApiError::invalid(&info.group, &info.kind, name, &errs));
        }
        admit_update(ctx, Phase::Validate, &mut new, &cur)?;
        strategy.canonicalize(&mut new);
        bump_generation(ctx, &mut new, &cur);
        let sub = (!subresource.is_empty()).then_some(subresource);
        if !is_apply(ctx) {
            api.update_managed_fields(&ctx.entry, Some(&cur), &mut new, manager, sub);
        }
        let mut new = api.to_storage(&ctx.entry, new);
        // An unchanged object is not written again, unless it is encrypted with a key that
        // is no longer the first: rewriting is how keys rotate.
        if same_object(&new, &stored) && !api.storage.needs_rewrite(&key).await {
            if !fresh {
                current = read(key.clone()).await?;
                fresh = true;
                continue;
            }
            return Ok((stored, false));
        }
        let allocated = api
            .allocate(&ctx.entry, &mut new, Some(&stored), ctx.dry_run())
            .await?;
        if ctx.dry_run() {
            return Ok((new, false));
        }
        if finalized(&new) {
            return match api.storage.delete(&key, cur_rev, &info.resource).await {
                Ok(rv) => {
                    api.release_for(&ctx.entry, &new).await;
                    object::set_meta(&mut new, "resourceVersion", json!(rv.to_string()));
                    Ok((new, false))
                }
                Err(StorageError::Conflict(now)) if !precondition => {
                    current = now.map(|b| *b);
                    fresh = true;
                    continue;
                }
                Err(e) => Err(e.to_api(&info.group, &info.resource, name)),
            };
        }
        match api
            .storage
            .update(&key, &new, cur_rev, &info.resource)
            .await
        {
            Ok(rv) => {
                api.release(&allocated.released).await;
                object::set_meta(&mut new, "resourceVersion", json!(rv.to_string()));
                return Ok((new, false));
            }
            Err(StorageError::Conflict(now)) if !precondition => {
                api.release(&allocated.allocated).await;
                current = now.map(|b| *b);
                fresh = true;
            }
            Err(e) => {
                api.release(&allocated.allocated).await;
                return Err(e.to_api(&info.group, &info.resource, name));
            }
        }
    }
    Err(ApiError::stale(&info.group, &info.resource, name))
}

/// A server-side apply request (its field ownership is computed by the apply itself).
fn is_apply(ctx: &Ctx) -> bool {
    ctx.info.verb == "patch"
        && negotiate::body_type(ctx.header("content-type")).ok() == Some(BodyType::ApplyPatch)
}

/// True when a deleting object lost its last finalizer: the write completes the deletion.
fn finalized(obj: &Value) -> bool {
    let meta = obj.get("metadata");
    let deleting = meta.and_then(|m| m.get("deletionTimestamp")).is_some();
    let finalizers = meta
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|f| !f.is_empty())
        .unwrap_or(false);
    deleting && !finalizers
}

/// Equal apart from the bookkeeping a no-op write would change.
fn same_object(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    strip(a) == strip(b)
}

/// What no write may change, and the split between the main resource and `status`.
fn prepare_update(ctx: &Ctx, new: &mut Value, cur: &Value, subresource: &str) {
    let has_status = ctx.entry.info.has_status();
    if subresource == "status" {
        // Only status changes through /status: everything else stays as stored.
        let status = new.get("status").cloned();
        let managed = new
            .get("metadata")
            .and_then(|m| m.get("managedFields"))
            .cloned();
        let rv = object::resource_version(new).to_string();
        *new = cur.clone();
        match status {
            Some(s) => new["status"] = s,
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        if let Some(mf) = managed {
            object::set_meta(new, "managedFields", mf);
        }
        object::set_meta(new, "resourceVersion", json!(rv));
        return;
    }
    if has_status && subresource.is_empty() {
        match cur.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    let cur_meta = cur.get("metadata").cloned().unwrap_or(json!({}));
    let meta = object::metadata_mut(new);
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "generation",
    ] {
        match cur_meta.get(f) {
            Some(v) => {
                meta.insert(f.into(), v.clone());
            }
            None => {
                meta.remove(f);
            }
        }
    }
    meta.remove("selfLink");
}

/// generation counts spec changes (everything outside metadata and status).
fn bump_generation(ctx: &Ctx, new: &mut Value, cur: &Value) {
    if !ctx.entry.strategy.tracks_generation() {
        return;
    }
    let spec_of = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
            m.remove("apiVersion");
            m.remove("kind");
        }
        v
    };
    let gen = cur
        .get("metadata")
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let mut next = if spec_of(new) != spec_of(cur) {
        gen + 1
    } else {
        gen
    };
    // A strategy may have bumped it already (deployments count annotation changes too).
    if let Some(set) = new["metadata"]["generation"].as_i64() {
        next = next.max(set);
    }
    object::set_meta(new, "generation", json!(next));
}

/// PATCH in any of the four patch types.
pub async fn patch(ctx: &mut Ctx) -> Result<Resp> {
    let ty = negotiate::body_type(ctx.header("content-type"))?;
    let name = ctx.info.name.clone();
    let sub = ctx.info.subresource.clone();
    let (obj, created) = patch_object(ctx, &name, &sub, ty).await?;
    Ok(ctx.respond_object(if created { 201 } else { 200 }, obj))
}

/// Applies the request's patch to `name` (retrying on conflicts), returning the result.
pub async fn patch_object(
    ctx: &mut Ctx,
    name: &str,
    subresource: &str,
    ty: BodyType,
) -> Result<(Value, bool)> {
    let body = ctx.body.clone();
    if body.len() > super::MAX_BODY {
        return Err(ApiError::too_large(
            "Request entity too large: limit is 3145728",
        ));
    }
    let patch = match ty {
        BodyType::JsonPatch | BodyType::MergePatch | BodyType::StrategicMergePatch => {
            super::decode_body(&body, BodyType::Json)?
        }
        BodyType::ApplyPatch => super::decode_body(&body, BodyType::ApplyPatch)?,
        _ => {
            return Err(ApiError::unsupported_media_type(
                ctx.header("content-type").unwrap_or(""),
            ))
        }
    };
    if ty == BodyType::JsonPatch {
        if let Some(ops) = patch.as_array() {
            if ops.len() > crate::patch::MAX_JSON_PATCH_OPERATIONS {
                return Err(ApiError::too_large(format!(
                    "The allowed maximum operations in a JSON patch is {}, got {}",
                    crate::patch::MAX_JSON_PATCH_OPERATIONS,
                    ops.len()
                )));
            }
        }
    }
    if ty == BodyType::StrategicMergePatch && ctx.entry.info.custom {
        return Err(ApiError::unsupported_media_type(
            "application/strategic-merge-patch+json",
        ));
    }
    let force = ctx.query.flag("force");
    let manager =
        match ty {
            BodyType::ApplyPatch => match ctx.query.get("fieldManager") {
                Some(m) if !m.is_empty() => m.to_string(),
                _ => return Err(ApiError::bad_request(
                    "PATCH, application/apply-patch+yaml requests require fieldManager to be set",
                )),
            },
            _ => field_manager(ctx, "")?,
        };
    if ty == BodyType::ApplyPatch {
        let mut applied = patch.clone();
        check_type_meta(ctx, &applied)?;
        field_validation(ctx, &mut applied)?;
    }
    let api = ctx.api.clone();
    let entry = ctx.entry.clone();
    let mut patch_err: Option<ApiError> = None;
    let result = update_object(ctx, name, &manager, subresource, |cur| {
        let out = match (ty, cur) {
            (BodyType::ApplyPatch, cur) => api.apply(&entry, cur, &patch, &manager, force),
            (_, None) => return Ok(None),
            (BodyType::JsonPatch, Some(cur)) => {
                crate::patch::json_patch(cur, &patch).map_err(|e| patch_error(&e))
            }
            (BodyType::MergePatch, Some(cur)) => Ok(crate::patch::merge_patch(cur, &patch)),
            (_, Some(cur)) => api.strategic_merge(&entry, cur, &patch),
        };
        match out {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                patch_err = Some(e.clone());
                Err(e)
            }
        }
    })
    .await;
    if let Some(e) = patch_err {
        return Err(e);
    }
    result
}

/// Patch failures as upstream reports them.
fn patch_error(e: &crate::patch::PatchError) -> ApiError {
    match e {
        crate::patch::PatchError::TooManyOperations { .. } => ApiError::too_large(e.to_string()),
        _ => ApiError::new(422, "Invalid", e.to_string()),
    }
}

/// Which half of the admission chain to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Mutate,
    Validate,
}

/// Runs the admission chain's `phase` on a write of this request's resource; warnings go to
/// the client. On create the name comes from the object (it may still be empty with only
/// generateName).
/// A CertificateSigningRequest records who asked for it (the approvers' SubjectAccessReviews
/// ask about that user), overwriting whatever the body claimed, as upstream.
fn set_requester(obj: &mut Value, user: &crate::authn::UserInfo) {
    let spec = &mut obj["spec"];
    if !spec.is_object() {
        return;
    }
    spec["username"] = json!(user.name);
    spec["groups"] = json!(user.groups);
    match user.uid.as_str() {
        "" => {
            spec.as_object_mut().map(|m| m.remove("uid"));
        }
        uid => spec["uid"] = json!(uid),
    }
    if user.extra.is_empty() {
        spec.as_object_mut().map(|m| m.remove("extra"));
    } else {
        spec["extra"] = json!(user.extra);
    }
}

pub fn admit(
    ctx: &mut Ctx,
    operation: Operation,
    phase: Phase,
    object: Option<&mut Value>,
    old: Option<&Value>,
) -> Result<()> {
    let api = ctx.api.clone();
    let name = match (&object, old, operation) {
        (Some(o), _, Operation::Create) => object::name(o).to_string(),
        (_, Some(o), _) => object::name(o).to_string(),
        _ => ctx.info.name.clone(),
    };
    let mut attrs = AdmissionAttributes {
        operation,
        group: &ctx.entry.info.group,
        version: &ctx.entry.info.version,
        resource: &ctx.entry.info.resource,
        subresource: &ctx.info.subresource,
        kind: &ctx.entry.info.kind,
        namespace: &ctx.info.namespace,
        name: &name,
        object,
        old_object: old,
        user: &ctx.user,
        dry_run: ctx.dry_run(),
        source: &api.catalog,
    };
    match phase {
        Phase::Mutate => api.admission.mutate(&mut attrs)?,
        Phase::Validate => {
            // Deletes run both phases at once: there is no object to mutate.
            if operation == Operation::Delete {
                api.admission.mutate(&mut attrs)?;
            }
            let warnings = api.admission.validate(&attrs)?;
            if operation != Operation::Delete {
                if let Some(obj) = attrs.object.as_deref() {
                    crate::authz::check_rbac_write(&api, &ctx.user, &ctx.info, obj, old)?;
                }
            }
            ctx.warnings.extend(warnings);
        }
    }
    Ok(())
}

fn admit_update(ctx: &mut Ctx, phase: Phase, new: &mut Value, cur: &Value) -> Result<()> {
    admit(ctx, Operation::Update, phase, Some(new), Some(cur))
}
