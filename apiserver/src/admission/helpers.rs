//! Small readers over JSON pods shared by the plugins: containers, resource sums, references.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::registry::quantity::{self, Quantity};

/// Annotation the kubelet puts on mirror pods of static pods.
pub(crate) const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The string at JSON pointer `ptr`, or "".
pub(crate) fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// The array at JSON pointer `ptr`, or an empty slice.
pub(crate) fn arr_at<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Whether the pod carries the mirror-pod annotation.
pub(crate) fn is_mirror_pod(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(MIRROR_POD_ANNOTATION))
}

/// Init containers, containers and ephemeral containers of a pod spec, in that order
/// (pod-security's visiting order).
pub(crate) fn all_containers(spec: &Value) -> impl Iterator<Item = &Value> {
    arr_at(spec, "/initContainers")
        .iter()
        .chain(arr_at(spec, "/containers"))
        .chain(arr_at(spec, "/ephemeralContainers"))
}

/// Resource quantities by name; unparsable entries are left out.
pub(crate) type ResourceList = BTreeMap<String, Quantity>;

/// A JSON resource list (`{"cpu": "100m"}`) as quantities.
pub(crate) fn resource_list(v: Option<&Value>) -> ResourceList {
    quantity::list(v).into_iter().collect()
}

/// `a += b`, key by key; keys only in `b` are added.
pub(crate) fn add_into(a: &mut ResourceList, b: &ResourceList) {
    for (k, q) in b {
        a.entry(k.clone())
            .and_modify(|v| *v = v.add(q))
            .or_insert(*q);
    }
}

/// `a = max(a, b)`, key by key.
fn max_into(a: &mut ResourceList, b: &ResourceList) {
    for (k, q) in b {
        match a.get_mut(k) {
            Some(v) if *v >= *q => {}
            Some(v) => *v = *q,
            None => {
                a.insert(k.clone(), *q);
            }
        }
    }
}

/// The value in milli-units, rounded up as upstream's `MilliValue`.
pub(crate) fn milli(q: &Quantity) -> i128 {
    let per_milli = 1_000_000;
    let whole = q.nanos.div_euclid(per_milli);
    if q.nanos.rem_euclid(per_milli) != 0 {
        whole + 1
    } else {
        whole
    }
}

fn container_list(c: &Value, which: &str) -> ResourceList {
    resource_list(c.pointer(&format!("/resources/{which}")))
}

/// Requests (`which` = "requests") or limits of the whole pod as component-helpers computes
/// them: containers plus sidecars, or the largest init container (with the sidecars started
/// before it) if that is more. Pod overhead is left out.
pub(crate) fn pod_aggregate(spec: &Value, which: &str) -> ResourceList {
    let mut total = ResourceList::new();
    for c in arr_at(spec, "/containers") {
        add_into(&mut total, &container_list(c, which));
    }
    let mut sidecars = ResourceList::new();
    let mut init_max = ResourceList::new();
    for c in arr_at(spec, "/initContainers") {
        let own = container_list(c, which);
        let effective = if str_at(c, "/restartPolicy") == "Always" {
            add_into(&mut total, &own);
            add_into(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut e = own;
            add_into(&mut e, &sidecars);
            e
        };
        max_into(&mut init_max, &effective);
    }
    max_into(&mut total, &init_max);
    total
}

/// Upstream's `utilerrors.NewAggregate(errs).Error()`: one message bare, several
/// de-duplicated in brackets.
pub(crate) fn aggregate(msgs: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for m in msgs {
        if !seen.contains(&m.as_str()) {
            seen.push(m);
        }
    }
    match seen.as_slice() {
        [] => String::new(),
        [one] => (*one).to_string(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// Whether the pod references a secret anywhere upstream's `VisitPodSecretNames` looks.
pub(crate) fn references_secrets(pod: &Value) -> bool {
    let spec = &pod["spec"];
    if !arr_at(spec, "/imagePullSecrets").is_empty() {
        return true;
    }
    for c in all_containers(spec) {
        if arr_at(c, "/envFrom")
            .iter()
            .any(|e| e.get("secretRef").is_some_and(|r| !r.is_null()))
        {
            return true;
        }
        if arr_at(c, "/env").iter().any(|e| {
            e.pointer("/valueFrom/secretKeyRef")
                .is_some_and(|r| !r.is_null())
        }) {
            return true;
        }
    }
    const SECRET_VOLUME_REFS: &[&str] = &[
        "/secret",
        "/azureFile/secretName",
        "/cephfs/secretRef",
        "/cinder/secretRef",
        "/flexVolume/secretRef",
        "/rbd/secretRef",
        "/scaleIO/secretRef",
        "/iscsi/secretRef",
        "/storageos/secretRef",
        "/csi/nodePublishSecretRef",
    ];
    for v in arr_at(spec, "/volumes") {
        if SECRET_VOLUME_REFS
            .iter()
            .any(|p| v.pointer(p).is_some_and(|r| !r.is_null()))
        {
            return true;
        }
        if arr_at(v, "/projected/sources")
            .iter()
            .any(|s| s.get("secret").is_some_and(|r| !r.is_null()))
        {
            return true;
        }
    }
    false
}

/// Whether the pod references a config map anywhere upstream's `VisitPodConfigmapNames` looks.
pub(crate) fn references_configmaps(pod: &Value) -> bool {
    let spec = &pod["spec"];
    for c in all_containers(spec) {
        if arr_at(c, "/envFrom")
            .iter()
            .any(|e| e.get("configMapRef").is_some_and(|r| !r.is_null()))
        {
            return true;
        }
        if arr_at(c, "/env").iter().any(|e| {
            e.pointer("/valueFrom/configMapKeyRef")
                .is_some_and(|r| !r.is_null())
        }) {
            return true;
        }
    }
    arr_at(spec, "/volumes").iter().any(|v| {
        v.get("configMap").is_some_and(|r| !r.is_null())
            || arr_at(v, "/projected/sources")
                .iter()
                .any(|s| s.get("configMap").is_some_and(|r| !r.is_null()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Quantity {
        quantity::parse(s).unwrap()
    }

    #[test]
    fn pod_requests_take_the_larger_of_containers_and_init_containers() {
        let spec = json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m"}}},
                {"name": "b", "resources": {"requests": {"cpu": "200m", "memory": "1Gi"}}}
            ],
            "initContainers": [
                {"name": "i", "resources": {"requests": {"cpu": "1"}}}
            ]
        });
        let r = pod_aggregate(&spec, "requests");
        assert_eq!(r["cpu"], q("1"));
        assert_eq!(r["memory"], q("1Gi"));
    }

    #[test]
    fn sidecars_add_to_the_containers() {
        let spec = json!({
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
            "initContainers": [
                {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}}
            ]
        });
        assert_eq!(pod_aggregate(&spec, "requests")["cpu"], q("150m"));
    }

    #[test]
    fn milli_rounds_up() {
        assert_eq!(milli(&q("1.0001m")), 2);
        assert_eq!(milli(&q("2")), 2000);
    }

    #[test]
    fn aggregate_brackets_several_distinct_messages() {
        assert_eq!(aggregate(&["a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "b".into()]), "[a, b]");
    }

    #[test]
    fn secret_and_configmap_references_are_found() {
        let p = json!({"spec": {"containers": [{"name": "c", "env": [
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
        ]}]}});
        assert!(references_secrets(&p));
        assert!(!references_configmaps(&p));
        let p = json!({"spec": {"volumes": [{"name": "v", "projected": {"sources": [
            {"configMap": {"name": "cm"}}
        ]}}]}});
        assert!(references_configmaps(&p));
        assert!(!references_secrets(&p));
    }
}
