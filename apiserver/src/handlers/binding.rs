//! POST pods/{name}/binding written straight to storage, as upstream's BindingREST: only
//! spec.nodeName, the binding's annotations and the PodScheduled condition change, so the
//! pod is not pruned, defaulted or validated again and gets no managedFields entry.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::write::{admit, Phase};
use super::Ctx;
use crate::admission::Operation;
use crate::error::{ApiError, Result};
use crate::object;
use crate::storage::StorageError;

/// Conflicting writes retried before giving up (the binding's own preconditions, if any,
/// are checked again on every try).
const MAX_RETRIES: usize = 16;

/// What a Binding asks for.
#[derive(Debug, Default)]
pub struct Binding<'a> {
    pub node: &'a str,
    /// metadata.uid of the Binding: the pod must still be that pod.
    pub uid: Option<&'a str>,
    /// metadata.resourceVersion of the Binding: the pod must not have changed since.
    pub resource_version: Option<&'a str>,
    /// metadata.annotations of the Binding, copied onto the pod.
    pub annotations: Option<&'a Map<String, Value>>,
}

impl<'a> Binding<'a> {
    /// The parts of a Binding body that bind `node` (the caller checked target.name).
    pub fn from_body(body: &'a Value, node: &'a str) -> Self {
        let meta = body.get("metadata");
        let nonempty = |f: &str| {
            meta.and_then(|m| m.get(f))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        Self {
            node,
            uid: nonempty("uid"),
            resource_version: nonempty("resourceVersion"),
            annotations: meta
                .and_then(|m| m.get("annotations"))
                .and_then(Value::as_object),
        }
    }
}

/// Sets spec.nodeName and PodScheduled=True in one write, refusing a pod that is already
/// bound, being deleted or still gated.
pub async fn bind_pod(ctx: &mut Ctx, name: &str, binding: &Binding<'_>) -> Result<()> {
    let info = ctx.entry.info.clone();
    let api = ctx.api.clone();
    let key = ctx.key(name);
    // The scheduler found the pod through this cache, so it is nearly always there; a stale
    // copy costs one retry, as the write is guarded by the revision it was read at.
    let mut current = match ctx.entry.cacher.get_at(&key) {
        Some(c) => Some(c),
        None => api
            .storage
            .get(&key, &info.resource)
            .await
            .map_err(|e| e.to_api(&info.group, &info.resource, name))?
            .map(|(obj, rev)| (Arc::new(obj), rev)),
    };
    let now = object::now_rfc3339();
    for _ in 0..MAX_RETRIES {
        let Some((cur, rev)) = current.take() else {
            return Err(ctx.not_found(name));
        };
        check(&info.resource, name, &cur, rev, binding)?;
        let mut new = (*cur).clone();
        assign(&mut new, binding, &now);
        admit(
            ctx,
            Operation::Update,
            Phase::Mutate,
            Some(&mut new),
            Some(&cur),
        )?;
        admit(
            ctx,
            Operation::Update,
            Phase::Validate,
            Some(&mut new),
            Some(&cur),
        )?;
        ctx.entry.strategy.canonicalize(&mut new);
        if ctx.dry_run() {
            return Ok(());
        }
        match api.storage.update(&key, &new, rev, &info.resource).await {
            Ok(rev) => {
                object::set_meta(&mut new, "resourceVersion", json!(rev.to_string()));
                ctx.entry.cacher.wrote(&key, rev, Arc::new(new));
                return Ok(());
            }
            Err(StorageError::Conflict(fresh)) => {
                current = fresh.map(|b| {
                    let (obj, rev) = *b;
                    (Arc::new(obj), rev)
                });
            }
            Err(e) => return Err(e.to_api(&info.group, &info.resource, name)),
        }
    }
    Err(ApiError::stale(&info.group, &info.resource, name))
}

/// The binding's preconditions and the pod states no binding may change.
fn check(resource: &str, name: &str, pod: &Value, rev: i64, b: &Binding<'_>) -> Result<()> {
    let conflict = |why: &str| ApiError::conflict("", resource, name, why);
    if let Some(uid) = b.uid {
        let actual = object::meta_str(pod, "uid").unwrap_or("");
        if actual != uid {
            return Err(conflict(&format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
            )));
        }
    }
    if let Some(rv) = b.resource_version {
        if rv != rev.to_string() {
            return Err(conflict(&format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {rev}"
            )));
        }
    }
    if pod
        .get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|t| !t.is_null())
    {
        return Err(conflict(
            "pod is being deleted, cannot be assigned to a host",
        ));
    }
    let spec = pod.get("spec");
    if let Some(existing) = spec
        .and_then(|s| s.get("nodeName"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        return Err(conflict(&format!(
            "pod {name} is already assigned to node \"{existing}\""
        )));
    }
    if spec
        .and_then(|s| s.get("schedulingGates"))
        .and_then(Value::as_array)
        .is_some_and(|g| !g.is_empty())
    {
        return Err(conflict(&format!(
            "pod {name} has non-empty .spec.schedulingGates"
        )));
    }
    Ok(())
}

/// The node, the binding's annotations and PodScheduled=True (replacing an earlier
/// PodScheduled in place; its transition time stays if it was already True).
fn assign(pod: &mut Value, b: &Binding<'_>, now: &str) {
    if !pod.is_object() {
        return;
    }
    let Some(root) = pod.as_object_mut() else {
        return;
    };
    spec_of(root).insert("nodeName".into(), json!(b.node));
    if let Some(extra) = b.annotations.filter(|a| !a.is_empty()) {
        let meta = child_object(root, "metadata");
        let annotations = child_object(meta, "annotations");
        for (k, v) in extra {
            annotations.insert(k.clone(), v.clone());
        }
    }
    let status = child_object(root, "status");
    if !status.get("conditions").is_some_and(Value::is_array) {
        status.insert("conditions".into(), json!([]));
    }
    let Some(conditions) = status.get_mut("conditions").and_then(Value::as_array_mut) else {
        return;
    };
    let mut scheduled = json!({
        "type": "PodScheduled",
        "status": "True",
        "lastProbeTime": null,
        "lastTransitionTime": now,
    });
    match conditions.iter_mut().find(|c| c["type"] == "PodScheduled") {
        Some(existing) => {
            if existing["status"] == "True" {
                if let Some(t) = existing.get("lastTransitionTime") {
                    scheduled["lastTransitionTime"] = t.clone();
                }
            }
            *existing = scheduled;
        }
        None => conditions.push(scheduled),
    }
}

fn spec_of(root: &mut Map<String, Value>) -> &mut Map<String, Value> {
    child_object(root, "spec")
}

/// `map[field]` as an object, made one if it is missing or not an object.
fn child_object<'m>(map: &'m mut Map<String, Value>, field: &str) -> &'m mut Map<String, Value> {
    let slot = map.entry(field).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("made an object above")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(extra: Value) -> Value {
        let mut p = json!({
            "metadata": {"name": "p", "uid": "u1", "resourceVersion": "7"},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        });
        if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                p.insert(k.clone(), v.clone());
            }
        }
        p
    }

    #[test]
    fn binding_sets_node_annotations_and_appends_pod_scheduled() {
        let mut p = pod(json!({}));
        let ann = json!({"a": "b"});
        let b = Binding {
            node: "n1",
            annotations: ann.as_object(),
            ..Default::default()
        };
        assign(&mut p, &b, "2026-01-01T00:00:00Z");
        assert_eq!(p["spec"]["nodeName"], "n1");
        assert_eq!(p["metadata"]["annotations"]["a"], "b");
        assert_eq!(
            p["status"]["conditions"],
            json!([{"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                    "lastTransitionTime": "2026-01-01T00:00:00Z"}])
        );
    }

    #[test]
    fn binding_replaces_unschedulable_condition_in_place() {
        let mut p = pod(json!({"status": {"conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "lastTransitionTime": "2020-01-01T00:00:00Z"},
            {"type": "Other", "status": "True"},
        ]}}));
        let b = Binding {
            node: "n1",
            ..Default::default()
        };
        assign(&mut p, &b, "2026-01-01T00:00:00Z");
        let conds = p["status"]["conditions"].as_array().expect("conditions");
        assert_eq!(conds.len(), 2);
        assert_eq!(conds[0]["type"], "PodScheduled");
        assert_eq!(conds[0]["status"], "True");
        assert!(conds[0].get("reason").is_none(), "{conds:?}");
        assert_eq!(conds[0]["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert_eq!(conds[1]["type"], "Other");
    }

    #[test]
    fn binding_refuses_bound_deleting_gated_and_mismatched_pods() {
        let b = Binding {
            node: "n1",
            ..Default::default()
        };
        let cases = [
            (
                "already bound",
                pod(json!({"spec": {"nodeName": "n0"}})),
                "pod p is already assigned to node \"n0\"",
            ),
            (
                "being deleted",
                pod(
                    json!({"metadata": {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z"}}),
                ),
                "pod is being deleted, cannot be assigned to a host",
            ),
            (
                "gated",
                pod(json!({"spec": {"schedulingGates": [{"name": "g"}]}})),
                "pod p has non-empty .spec.schedulingGates",
            ),
        ];
        for (name, p, want) in cases {
            let err = check("pods", "p", &p, 7, &b).expect_err(name);
            assert_eq!(err.code, 409, "{name}");
            assert!(err.message.contains(want), "{name}: {}", err.message);
        }
        let uid = Binding {
            node: "n1",
            uid: Some("other"),
            ..Default::default()
        };
        let err = check("pods", "p", &pod(json!({})), 7, &uid).expect_err("uid");
        assert!(err
            .message
            .contains("UID in precondition: other, UID in object meta: u1"));
        let rv = Binding {
            node: "n1",
            resource_version: Some("6"),
            ..Default::default()
        };
        let err = check("pods", "p", &pod(json!({})), 7, &rv).expect_err("rv");
        assert!(err.message.contains("ResourceVersion in precondition: 6"));
        let ok = Binding {
            node: "n1",
            uid: Some("u1"),
            resource_version: Some("7"),
            ..Default::default()
        };
        check("pods", "p", &pod(json!({})), 7, &ok).expect("matching preconditions");
    }
}
