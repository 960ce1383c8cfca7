//! Namespaces: the `kubernetes` finalizer, the name label, phase Active.

use serde_json::{json, Value};

use crate::error::FieldError;
use crate::registry::validation::{
    arr_of, child_mut, invalid_each, is_qualified_name, name_is_dns_label, set_field,
    validate_object_meta, validate_object_meta_update,
};
use crate::registry::Strategy;

/// Finalizer names that need no domain.
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// `spec.finalizers` entries: qualified names, standard unless domain-prefixed.
pub fn validate_finalizer_name(name: &str, path: &str) -> Vec<FieldError> {
    let mut errs = invalid_each(path, name, is_qualified_name(name));
    if errs.is_empty() && !name.contains('/') && !STANDARD_FINALIZERS.contains(&name) {
        errs.push(FieldError::invalid(
            path,
            json!(name),
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
    errs
}

/// `namespaces`.
pub struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    fn default(&self, obj: &mut Value) {
        // SetDefaults_Namespace: the name label always mirrors the name.
        let name = crate::object::name(obj).to_string();
        if !name.is_empty() {
            let meta = child_mut(obj, "metadata");
            child_mut(meta, "labels")["kubernetes.io/metadata.name"] = json!(name);
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        let spec = child_mut(obj, "spec");
        let has_kube = arr_of(spec, "finalizers")
            .iter()
            .any(|f| f.as_str() == Some("kubernetes"));
        if !has_kube {
            let mut f = arr_of(spec, "finalizers").to_vec();
            f.push(json!("kubernetes"));
            spec["finalizers"] = Value::Array(f);
        }
        set_field(obj, "status", json!({"phase": "Active"}));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta(obj, Some(false), name_is_dns_label);
        let empty = json!({});
        let spec = obj.get("spec").unwrap_or(&empty);
        for f in arr_of(spec, "finalizers") {
            errs.extend(validate_finalizer_name(
                f.as_str().unwrap_or(""),
                "spec.finalizers",
            ));
        }
        errs
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // spec.finalizers only change through the finalize subresource.
        let finalizers = old.get("spec").and_then(|s| s.get("finalizers")).cloned();
        let spec = child_mut(new, "spec");
        match finalizers {
            Some(f) => spec["finalizers"] = f,
            None => {
                if let Some(m) = spec.as_object_mut() {
                    m.remove("finalizers");
                }
            }
        }
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(self.validate(new));
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_get_finalizer_label_and_phase() {
        let mut ns = json!({"metadata": {"name": "team-a"}});
        NamespaceStrategy.default(&mut ns);
        NamespaceStrategy.prepare_for_create(&mut ns);
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team-a"
        );
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        assert!(NamespaceStrategy.validate(&ns).is_empty());
    }

    #[test]
    fn namespace_names_must_be_dns_labels() {
        struct Case {
            name: &'static str,
            ns: &'static str,
            errors: usize,
        }
        let cases = [
            Case {
                name: "label",
                ns: "kube-system",
                errors: 0,
            },
            Case {
                name: "dots",
                ns: "a.b",
                errors: 1,
            },
            Case {
                name: "upper",
                ns: "Prod",
                errors: 1,
            },
        ];
        for c in cases {
            let obj = json!({"metadata": {"name": c.ns}});
            assert_eq!(
                NamespaceStrategy.validate(&obj).len(),
                c.errors,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn updates_keep_spec_finalizers() {
        let old = json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["kubernetes"]}});
        let mut new = json!({"metadata": {"name": "a"}, "spec": {}});
        NamespaceStrategy.prepare_for_update(&mut new, &old);
        assert_eq!(new["spec"]["finalizers"], json!(["kubernetes"]));
    }

    #[test]
    fn unqualified_custom_finalizers_are_rejected() {
        let errs = validate_finalizer_name("custom", "spec.finalizers");
        assert_eq!(errs.len(), 1);
        assert!(validate_finalizer_name("example.com/custom", "spec.finalizers").is_empty());
    }
}
