//! DefaultStorageClass: claims that name no class get the cluster's default StorageClass.

use serde_json::{json, Value};

use super::helpers::str_at;
use super::{Attributes, Operation, Plugin};
use crate::error::ApiError;

/// StorageClass annotation marking the default class.
pub const IS_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_IS_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// Deprecated claim annotation naming a class, honoured as upstream does.
const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// Upstream `DefaultStorageClass`, reading `storage.k8s.io/storageclasses`.
pub struct DefaultStorageClass;

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// The default class: the newest of those annotated as default, ties broken by name.
fn default_class(attrs: &Attributes<'_>) -> Option<String> {
    let mut defaults: Vec<_> = attrs
        .source
        .list("storage.k8s.io", "storageclasses", "")
        .into_iter()
        .filter(|c| {
            annotation(c, IS_DEFAULT_CLASS_ANNOTATION) == Some("true")
                || annotation(c, BETA_IS_DEFAULT_CLASS_ANNOTATION) == Some("true")
        })
        .collect();
    // RFC 3339 timestamps in UTC sort as strings.
    defaults.sort_by(|a, b| {
        str_at(b, "/metadata/creationTimestamp")
            .cmp(str_at(a, "/metadata/creationTimestamp"))
            .then_with(|| str_at(a, "/metadata/name").cmp(str_at(b, "/metadata/name")))
    });
    defaults
        .first()
        .map(|c| str_at(c, "/metadata/name").to_string())
}

impl Plugin for DefaultStorageClass {
    fn name(&self) -> &'static str {
        "DefaultStorageClass"
    }

    fn admit(&self, attrs: &mut Attributes<'_>) -> Result<(), ApiError> {
        if attrs.operation != Operation::Create
            || !attrs.is("", "persistentvolumeclaims")
            || !attrs.subresource.is_empty()
        {
            return Ok(());
        }
        let Some(pvc) = attrs.obj() else {
            return Ok(());
        };
        let has_class = annotation(pvc, BETA_STORAGE_CLASS_ANNOTATION).is_some()
            || pvc
                .pointer("/spec/storageClassName")
                .is_some_and(|c| !c.is_null());
        if has_class {
            return Ok(());
        }
        let Some(class) = default_class(attrs) else {
            return Ok(());
        };
        let Some(pvc) = attrs.object.as_deref_mut() else {
            return Ok(());
        };
        if !pvc["spec"].is_object() {
            pvc["spec"] = json!({});
        }
        pvc["spec"]["storageClassName"] = json!(class);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn class(name: &str, default: bool, created: &str) -> Value {
        json!({"metadata": {"name": name, "creationTimestamp": created,
            "annotations": {IS_DEFAULT_CLASS_ANNOTATION: default.to_string()}}})
    }

    fn claim(spec: Value) -> Req {
        Req::new(
            Operation::Create,
            "",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
        )
        .ns("ns")
        .name("c")
        .object(json!({"metadata": {"name": "c"}, "spec": spec}))
    }

    #[test]
    fn the_newest_default_class_is_set() {
        let mut req = claim(json!({}))
            .with(
                "storage.k8s.io",
                "storageclasses",
                class("old", true, "2024-01-01T00:00:00Z"),
            )
            .with(
                "storage.k8s.io",
                "storageclasses",
                class("new", true, "2024-06-01T00:00:00Z"),
            )
            .with(
                "storage.k8s.io",
                "storageclasses",
                class("other", false, "2025-01-01T00:00:00Z"),
            );
        req.plugin(&DefaultStorageClass).unwrap();
        assert_eq!(req.object.unwrap()["spec"]["storageClassName"], "new");
    }

    #[test]
    fn an_explicit_class_even_empty_is_kept() {
        let mut req = claim(json!({"storageClassName": ""})).with(
            "storage.k8s.io",
            "storageclasses",
            class("std", true, "2024-01-01T00:00:00Z"),
        );
        req.plugin(&DefaultStorageClass).unwrap();
        assert_eq!(req.object.unwrap()["spec"]["storageClassName"], "");
    }

    #[test]
    fn without_a_default_class_nothing_changes() {
        let mut req = claim(json!({})).with(
            "storage.k8s.io",
            "storageclasses",
            class("std", false, "2024-01-01T00:00:00Z"),
        );
        req.plugin(&DefaultStorageClass).unwrap();
        assert!(req.object.unwrap()["spec"]
            .get("storageClassName")
            .is_none());
    }
}
