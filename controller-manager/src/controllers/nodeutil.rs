//! What the node controllers share: upstream's well-known taint keys, toleration matching and
//! core/v1 Events as upstream's event recorder writes them.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::chrono::Utc;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;

/// Node is not ready (Ready=False).
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Node is unreachable (Ready=Unknown).
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Node reports MemoryPressure.
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
/// Node reports DiskPressure.
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
/// Node reports PIDPressure.
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
/// Node reports NetworkUnavailable.
pub const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
/// Node is cordoned (spec.unschedulable).
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// The NoExecute effect.
pub const NO_EXECUTE: &str = "NoExecute";
/// The NoSchedule effect.
pub const NO_SCHEDULE: &str = "NoSchedule";

/// Whether `toleration` tolerates `taint`, as upstream's `Toleration.ToleratesTaint`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            // An empty key with Equal matches nothing (validation rejects it anyway).
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// Writes a core/v1 Event about `object` (best effort: failures are logged, never returned).
pub async fn record_event(
    client: &Client,
    component: &str,
    object: ObjectReference,
    type_: &str,
    reason: &str,
    message: String,
) {
    let namespace = object
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_owned());
    let now = Utc::now();
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    // A repeat of an event this process recorded bumps its count, as client-go's
    // EventCorrelator does, instead of adding one more Event object each time.
    let key = format!(
        "{component}\0{:?}\0{:?}\0{:?}\0{:?}\0{type_}\0{reason}\0{message}",
        object.kind, object.namespace, object.name, object.uid
    );
    let seen = recorded()
        .lock()
        .map(|m| m.get(&key).cloned())
        .ok()
        .flatten();
    if let Some((name, count)) = seen {
        let patch = serde_json::json!({"count": count + 1, "lastTimestamp": Time(now)});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                remember(key, name, count + 1);
                return;
            }
            Err(e) => tracing::debug!(reason, error = %e, "bumping event count failed"),
        }
    }
    let name = format!(
        "{}.{:x}",
        object.name.as_deref().unwrap_or("unknown"),
        now.timestamp_nanos_opt().unwrap_or_default()
    );
    let event = Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: object,
        reason: Some(reason.to_owned()),
        message: Some(message),
        type_: Some(type_.to_owned()),
        source: Some(EventSource {
            component: Some(component.to_owned()),
            host: None,
        }),
        reporting_component: Some(component.to_owned()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Event::default()
    };
    match api.create(&PostParams::default(), &event).await {
        Ok(created) => {
            if let Some(name) = created.metadata.name {
                remember(key, name, 1);
            }
        }
        Err(e) => tracing::debug!(reason, error = %e, "failed to record event"),
    }
}

/// Events recorded by this process: key -> (Event name, count).
fn recorded() -> &'static std::sync::Mutex<std::collections::HashMap<String, (String, i32)>> {
    static RECORDED: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, (String, i32)>>,
    > = std::sync::OnceLock::new();
    RECORDED.get_or_init(Default::default)
}

/// Remembers an event; the cache is bounded (cleared when full, as an LRU would shed it).
fn remember(key: String, name: String, count: i32) {
    const MAX: usize = 4096;
    if let Ok(mut m) = recorded().lock() {
        if m.len() >= MAX && !m.contains_key(&key) {
            m.clear();
        }
        m.insert(key, (name, count));
    }
}

/// A reference to a Node for events (upstream sets the node's name as its UID).
pub fn node_ref(name: &str) -> ObjectReference {
    ObjectReference {
        kind: Some("Node".into()),
        api_version: Some("v1".into()),
        name: Some(name.to_owned()),
        uid: Some(name.to_owned()),
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn toleration(key: &str, op: &str, value: Option<&str>, effect: Option<&str>) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.into()),
            operator: Some(op.into()),
            value: value.map(Into::into),
            effect: effect.map(Into::into),
            toleration_seconds: None,
        }
    }

    #[test]
    fn tolerations_match_taints_as_upstream() {
        let t = taint(TAINT_UNREACHABLE, None, NO_EXECUTE);
        let cases = [
            (
                "exists on key",
                toleration(TAINT_UNREACHABLE, "Exists", None, Some(NO_EXECUTE)),
                true,
            ),
            (
                "any effect",
                toleration(TAINT_UNREACHABLE, "Exists", None, None),
                true,
            ),
            (
                "other effect",
                toleration(TAINT_UNREACHABLE, "Exists", None, Some(NO_SCHEDULE)),
                false,
            ),
            (
                "other key",
                toleration(TAINT_NOT_READY, "Exists", None, None),
                false,
            ),
            ("wildcard", toleration("", "Exists", None, None), true),
            (
                "equal empty value",
                toleration(TAINT_UNREACHABLE, "Equal", None, None),
                true,
            ),
            (
                "equal other value",
                toleration(TAINT_UNREACHABLE, "Equal", Some("x"), None),
                false,
            ),
        ];
        for (name, tol, want) in cases {
            assert_eq!(tolerates(&tol, &t), want, "{name}");
        }
    }
}
