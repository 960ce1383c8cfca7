//! PersistentVolumes and PersistentVolumeClaims: defaults, access modes, sizes, immutability.

use serde_json::{json, Value};

use crate::error::FieldError;
use crate::registry::quantity;
use crate::registry::validation::{
    arr_of, get, invalid_each, name_is_dns_subdomain, obj_of, remove, semantic_eq, set_default,
    set_default_str, set_field, str_of, validate_immutable_field, validate_label_selector,
    validate_object_meta, validate_object_meta_update,
};
use crate::registry::Strategy;

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const RECLAIM_POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
/// Fields of a PV spec that are not its volume source.
const PV_SPEC_FIELDS: &[&str] = &[
    "capacity",
    "accessModes",
    "claimRef",
    "persistentVolumeReclaimPolicy",
    "storageClassName",
    "mountOptions",
    "volumeMode",
    "nodeAffinity",
    "volumeAttributesClassName",
];

fn validate_access_modes(spec: &Value, path: &str, required_detail: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let modes = arr_of(spec, "accessModes");
    if modes.is_empty() {
        errs.push(FieldError::required(path, required_detail));
    }
    for m in modes {
        let m = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&m) {
            errs.push(FieldError::not_supported(path, json!(m), ACCESS_MODES));
        }
    }
    if modes.len() > 1 && modes.iter().any(|m| m.as_str() == Some("ReadWriteOncePod")) {
        errs.push(FieldError::forbidden(
            path,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
    errs
}

fn validate_positive(v: &Value, path: &str) -> Vec<FieldError> {
    match quantity::validate_format(v, path) {
        Err(e) => vec![e],
        Ok(q) if q.nanos <= 0 => {
            vec![FieldError::invalid(
                path,
                json!(q.canonical()),
                "must be greater than zero",
            )]
        }
        Ok(_) => Vec::new(),
    }
}

fn validate_volume_mode(spec: &Value, path: &str) -> Vec<FieldError> {
    match get(spec, "volumeMode").and_then(Value::as_str) {
        Some(m) if !VOLUME_MODES.contains(&m) => {
            vec![FieldError::not_supported(path, json!(m), VOLUME_MODES)]
        }
        _ => Vec::new(),
    }
}

fn validate_pv(pv: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(pv, Some(false), name_is_dns_subdomain);
    let empty = json!({});
    let spec = pv.get("spec").unwrap_or(&empty);
    errs.extend(validate_access_modes(spec, "spec.accessModes", ""));
    let capacity = obj_of(spec, "capacity");
    if capacity.is_none_or(|c| c.is_empty()) {
        errs.push(FieldError::required("spec.capacity", ""));
    }
    if !capacity.is_some_and(|c| c.contains_key("storage") && c.len() == 1) {
        errs.push(FieldError::not_supported(
            "spec.capacity",
            spec.get("capacity").cloned().unwrap_or(Value::Null),
            &["storage"],
        ));
    }
    for (k, v) in capacity.into_iter().flatten() {
        errs.extend(validate_positive(v, &format!("spec.capacity[{k}]")));
    }
    let policy = str_of(spec, "persistentVolumeReclaimPolicy");
    if !policy.is_empty() && !RECLAIM_POLICIES.contains(&policy) {
        errs.push(FieldError::not_supported(
            "spec.persistentVolumeReclaimPolicy",
            json!(policy),
            RECLAIM_POLICIES,
        ));
    }
    let class = str_of(spec, "storageClassName");
    if !class.is_empty() {
        errs.extend(invalid_each(
            "spec.storageClassName",
            class,
            name_is_dns_subdomain(class, false),
        ));
    }
    errs.extend(validate_volume_mode(spec, "spec.volumeMode"));
    let sources: Vec<&String> = spec
        .as_object()
        .map(|m| {
            m.keys()
                .filter(|k| !PV_SPEC_FIELDS.contains(&k.as_str()))
                .collect()
        })
        .unwrap_or_default();
    match sources.as_slice() {
        [] => errs.push(FieldError::required("spec", "must specify a volume type")),
        [_] => {}
        [_, extra @ ..] => {
            for s in extra {
                errs.push(FieldError::forbidden(
                    format!("spec.{s}"),
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
    if let Some(h) = get(spec, "hostPath") {
        if str_of(h, "path").is_empty() {
            errs.push(FieldError::required("spec.hostPath.path", ""));
        }
    }
    errs
}

/// `persistentvolumes`.
pub struct PersistentVolumeStrategy;

impl Strategy for PersistentVolumeStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
            set_default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
            set_default_str(spec, "volumeMode", "Filesystem");
            quantity::canonicalize_list(spec.get_mut("capacity"));
            if let Some(h) = spec.get_mut("hostPath").filter(|h| h.is_object()) {
                set_default(h, "type", json!(""));
            }
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        set_field(obj, "status", json!({"phase": "Pending"}));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_pv(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_pv(new));
        let source = |pv: &Value| {
            let mut s = pv.get("spec").cloned().unwrap_or(json!({}));
            for f in PV_SPEC_FIELDS {
                remove(&mut s, f);
            }
            s
        };
        if !semantic_eq(Some(&source(new)), Some(&source(old))) {
            errs.push(FieldError::forbidden(
                "spec.persistentvolumesource",
                "spec.persistentvolumesource is immutable after creation",
            ));
        }
        let (ns, os) = (new.get("spec"), old.get("spec"));
        errs.extend(validate_immutable_field(
            ns.and_then(|s| s.get("volumeMode")),
            os.and_then(|s| s.get("volumeMode")),
            "volumeMode",
        ));
        if let Some(old_aff) = os.and_then(|s| get(s, "nodeAffinity")) {
            errs.extend(validate_immutable_field(
                ns.and_then(|s| s.get("nodeAffinity")),
                Some(old_aff),
                "nodeAffinity",
            ));
        }
        errs
    }
}

/// Upstream's `ValidatePersistentVolumeClaimSpec` at `path` (`spec`, or a claim template's).
pub fn validate_pvc_spec(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = validate_access_modes(
        spec,
        &format!("{path}.accessModes"),
        "at least 1 access mode is required",
    );
    if let Some(sel) = get(spec, "selector") {
        errs.extend(validate_label_selector(
            Some(sel),
            &format!("{path}.selector"),
        ));
    }
    let storage_path = format!("{path}.resources[storage]");
    match spec.pointer("/resources/requests/storage") {
        None | Some(Value::Null) => errs.push(FieldError::required(storage_path, "")),
        Some(v) => errs.extend(validate_positive(v, &storage_path)),
    }
    if let Some(class) = get(spec, "storageClassName").and_then(Value::as_str) {
        if !class.is_empty() {
            errs.extend(invalid_each(
                &format!("{path}.storageClassName"),
                class,
                name_is_dns_subdomain(class, false),
            ));
        }
    }
    errs.extend(validate_volume_mode(spec, &format!("{path}.volumeMode")));
    errs
}

/// `SetDefaults_PersistentVolumeClaimSpec` plus canonical quantities.
pub fn default_pvc_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default_str(spec, "volumeMode", "Filesystem");
    if let Some(r) = spec.get_mut("resources") {
        quantity::canonicalize_list(r.get_mut("requests"));
        quantity::canonicalize_list(r.get_mut("limits"));
    }
}

fn validate_pvc(pvc: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(pvc, Some(true), name_is_dns_subdomain);
    let empty = json!({});
    errs.extend(validate_pvc_spec(pvc.get("spec").unwrap_or(&empty), "spec"));
    errs
}

/// `persistentvolumeclaims`.
pub struct PersistentVolumeClaimStrategy;

impl Strategy for PersistentVolumeClaimStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec") {
            default_pvc_spec(spec);
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        set_field(obj, "status", json!({"phase": "Pending"}));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_pvc(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_pvc(new));
        let mut ns = new.get("spec").cloned().unwrap_or(json!({}));
        let mut os = old.get("spec").cloned().unwrap_or(json!({}));
        // The binder sets volumeName once; the default class may be filled in later.
        if str_of(&os, "volumeName").is_empty() {
            remove(&mut ns, "volumeName");
            remove(&mut os, "volumeName");
        }
        let beta_class = old
            .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
            .is_some();
        if get(&os, "storageClassName").is_none() && !beta_class {
            remove(&mut ns, "storageClassName");
        }
        let bound = new.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
        if bound {
            // Bound claims may be expanded and change their attributes class.
            for s in [&mut ns, &mut os] {
                if let Some(r) = s
                    .pointer_mut("/resources/requests")
                    .and_then(Value::as_object_mut)
                {
                    r.remove("storage");
                }
                remove(s, "volumeAttributesClassName");
            }
        }
        if !semantic_eq(Some(&ns), Some(&os)) {
            errs.push(FieldError::forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
        let size = |v: &Value| quantity::lookup(v.pointer("/spec/resources/requests"), "storage");
        if let (Some(n), Some(o)) = (size(new), size(old)) {
            if n < o {
                errs.push(FieldError::forbidden(
                    "spec.resources.requests.storage",
                    "field can not be less than previous value",
                ));
            }
        }
        errs.extend(validate_immutable_field(
            new.pointer("/spec/volumeMode"),
            old.pointer("/spec/volumeMode"),
            "volumeMode",
        ));
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn persistent_volumes_need_modes_capacity_and_a_source() {
        struct Case {
            name: &'static str,
            spec: Value,
            want: Vec<&'static str>,
        }
        let cases = [
            Case { name: "valid", spec: json!({"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}, "hostPath": {"path": "/data"}}), want: vec![] },
            Case { name: "no modes", spec: json!({"capacity": {"storage": "1Gi"}, "hostPath": {"path": "/data"}}), want: vec!["spec.accessModes: Required value"] },
            Case { name: "bad mode", spec: json!({"accessModes": ["Sometimes"], "capacity": {"storage": "1Gi"}, "hostPath": {"path": "/d"}}),
                want: vec!["spec.accessModes: Unsupported value: \"Sometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\""] },
            Case { name: "no source", spec: json!({"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}), want: vec!["spec: Required value: must specify a volume type"] },
            Case { name: "zero size", spec: json!({"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "0"}, "hostPath": {"path": "/d"}}),
                want: vec!["spec.capacity[storage]: Invalid value: \"0\": must be greater than zero"] },
        ];
        for c in cases {
            let mut pv = json!({"metadata": {"name": "pv1"}, "spec": c.spec});
            PersistentVolumeStrategy.default(&mut pv);
            assert_eq!(
                messages(&PersistentVolumeStrategy.validate(&pv)),
                c.want,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn claims_need_modes_and_storage() {
        struct Case {
            name: &'static str,
            spec: Value,
            want: Vec<&'static str>,
        }
        let cases = [
            Case {
                name: "valid",
                spec: json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}),
                want: vec![],
            },
            Case {
                name: "nothing",
                spec: json!({}),
                want: vec![
                    "spec.accessModes: Required value: at least 1 access mode is required",
                    "spec.resources[storage]: Required value",
                ],
            },
        ];
        for c in cases {
            let mut pvc = json!({"metadata": {"name": "c", "namespace": "d"}, "spec": c.spec});
            PersistentVolumeClaimStrategy.default(&mut pvc);
            assert_eq!(
                messages(&PersistentVolumeClaimStrategy.validate(&pvc)),
                c.want,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn claims_only_grow_when_bound() {
        let mut old = json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        PersistentVolumeClaimStrategy.default(&mut old);
        PersistentVolumeClaimStrategy.prepare_for_create(&mut old);
        let mut grow = old.clone();
        grow["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert_eq!(
            PersistentVolumeClaimStrategy.validate_update(&grow, &old)[0].field,
            "spec"
        );
        old["status"]["phase"] = json!("Bound");
        grow["status"]["phase"] = json!("Bound");
        grow["spec"]["volumeName"] = json!("pv1");
        assert!(PersistentVolumeClaimStrategy
            .validate_update(&grow, &old)
            .is_empty());
        let mut shrink = old.clone();
        shrink["spec"]["resources"]["requests"]["storage"] = json!("512Mi");
        assert_eq!(
            messages(&PersistentVolumeClaimStrategy.validate_update(&shrink, &old)),
            vec!["spec.resources.requests.storage: Forbidden: field can not be less than previous value"]
        );
    }
}
