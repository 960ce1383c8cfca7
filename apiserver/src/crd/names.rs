//! Name rules CRDs and custom resources share: DNS labels and subdomains, and object metadata.

use serde_json::{json, Value};

use crate::error::FieldError;
use crate::object;

// One implementation of the name rules: the registry's.
pub use crate::registry::validation::{
    is_dns1035_label as dns1035_label, is_dns1123_label as dns1123_label,
    is_dns1123_subdomain as dns1123_subdomain, name_is_dns_subdomain,
};

/// Upstream's `ValidateObjectMeta` (the registry's checks) with a name rule that may capture
/// (a CRD's name must equal `<plural>.<group>`). `name_fn` gets the name and whether it is a
/// generateName prefix, and returns what is wrong with it.
pub fn validate_object_meta(
    obj: &Value,
    namespaced: bool,
    name_fn: &dyn Fn(&str, bool) -> Vec<String>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(gen) = object::meta_str(obj, "generateName").filter(|g| !g.is_empty()) {
        for msg in name_fn(gen, true) {
            errs.push(FieldError::invalid(
                "metadata.generateName",
                json!(gen),
                msg,
            ));
        }
    }
    // A missing name is reported by the generic create path, which checks it for every
    // resource; reporting it here too would list the cause twice.
    let name = object::name(obj);
    if !name.is_empty() {
        for msg in name_fn(name, false) {
            errs.push(FieldError::invalid("metadata.name", json!(name), msg));
        }
    }
    errs.extend(crate::registry::validation::validate_object_meta(
        obj,
        Some(namespaced),
        |_, _| Vec::new(),
    ));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_accept_dotted_lowercase_names_only() {
        assert!(dns1123_subdomain("widgets.example.com").is_empty());
        assert!(!dns1123_subdomain("Widgets.example.com").is_empty());
        assert!(!dns1123_subdomain("a..b").is_empty());
        assert!(!dns1123_subdomain("").is_empty());
        assert_eq!(dns1123_subdomain(&"a".repeat(254)).len(), 1);
    }

    #[test]
    fn dns1035_labels_must_start_with_a_letter_and_print_upstream_text() {
        assert!(dns1035_label("v1beta1").is_empty());
        assert_eq!(
            dns1035_label("1v"),
            vec!["a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_string()]
        );
        assert!(!dns1035_label("v1-").is_empty());
    }

    #[test]
    fn generate_name_prefixes_may_end_in_a_dash() {
        assert!(name_is_dns_subdomain("web-", true).is_empty());
        assert!(!name_is_dns_subdomain("web-", false).is_empty());
    }

    #[test]
    fn cluster_scoped_objects_may_not_carry_a_namespace() {
        let o = json!({"metadata": {"name": "x", "namespace": "default"}});
        let errs = validate_object_meta(&o, false, &name_is_dns_subdomain);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "metadata.namespace");
        let errs = validate_object_meta(&json!({"metadata": {}}), true, &name_is_dns_subdomain);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["metadata.namespace"]);
    }
}
