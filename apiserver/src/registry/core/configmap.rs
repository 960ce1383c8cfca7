//! ConfigMaps: key format, the 1MiB limit and `immutable`.

use serde_json::{json, Value};

use crate::error::FieldError;
use crate::registry::core::secret::base64_decode;
use crate::registry::validation::{
    bool_of, invalid_each, is_config_map_key, name_is_dns_subdomain, obj_of, semantic_eq, too_long,
    validate_object_meta, validate_object_meta_update,
};
use crate::registry::Strategy;

/// Upstream's `MaxSecretSize`, shared by ConfigMaps.
pub const MAX_SIZE: usize = 1024 * 1024;

fn validate_config_map(cm: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(cm, Some(true), name_is_dns_subdomain);
    let binary = obj_of(cm, "binaryData");
    let mut total = 0;
    for (k, v) in obj_of(cm, "data").into_iter().flatten() {
        let path = format!("data[{k}]");
        errs.extend(invalid_each(&path, k, is_config_map_key(k)));
        if binary.is_some_and(|b| b.contains_key(k)) {
            errs.push(FieldError::invalid(
                path.as_str(),
                json!(k),
                "duplicate of key present in binaryData",
            ));
        }
        total += v.as_str().map(str::len).unwrap_or(0);
    }
    for (k, v) in binary.into_iter().flatten() {
        let path = format!("binaryData[{k}]");
        errs.extend(invalid_each(&path, k, is_config_map_key(k)));
        match base64_decode(v.as_str().unwrap_or("")) {
            Ok(bytes) => total += bytes.len(),
            Err(at) => errs.push(FieldError::invalid(
                path.as_str(),
                json!("<binary data redacted>"),
                format!("illegal base64 data at input byte {at}"),
            )),
        }
    }
    if total > MAX_SIZE {
        errs.push(too_long("", MAX_SIZE));
    }
    errs
}

/// Upstream's rule for `immutable: true` objects (ConfigMaps and Secrets).
pub fn validate_immutable_object(
    new: &Value,
    old: &Value,
    data_fields: &[&str],
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !bool_of(old, "immutable") {
        return errs;
    }
    if !bool_of(new, "immutable") {
        errs.push(FieldError::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for f in data_fields {
        if !semantic_eq(new.get(*f), old.get(*f)) {
            errs.push(FieldError::forbidden(
                *f,
                "field is immutable when `immutable` is set",
            ));
        }
    }
    errs
}

/// `configmaps`.
pub struct ConfigMapStrategy;

impl Strategy for ConfigMapStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_config_map(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_immutable_object(new, old, &["data", "binaryData"]));
        errs.extend(validate_config_map(new));
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_map_keys_and_size_are_checked() {
        struct Case {
            name: &'static str,
            cm: Value,
            fields: Vec<&'static str>,
        }
        let big = "x".repeat(MAX_SIZE + 1);
        let cases = [
            Case {
                name: "valid",
                cm: json!({"data": {"app.conf": "x"}, "binaryData": {"b": "AAE="}}),
                fields: vec![],
            },
            Case {
                name: "bad key",
                cm: json!({"data": {"a/b": "x"}}),
                fields: vec!["data[a/b]"],
            },
            Case {
                name: "key in both",
                cm: json!({"data": {"k": "x"}, "binaryData": {"k": "AA=="}}),
                fields: vec!["data[k]"],
            },
            Case {
                name: "bad base64",
                cm: json!({"binaryData": {"k": "!!"}}),
                fields: vec!["binaryData[k]"],
            },
            Case {
                name: "too big",
                cm: json!({"data": {"k": big}}),
                fields: vec![""],
            },
        ];
        for c in cases {
            let mut cm = c.cm;
            cm["metadata"] = json!({"name": "c", "namespace": "default"});
            let errs = ConfigMapStrategy.validate(&cm);
            let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(fields, c.fields, "{}", c.name);
        }
    }

    #[test]
    fn immutable_config_maps_keep_their_data() {
        let old = json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"a": "1"}});
        let mut new = old.clone();
        new["data"]["a"] = json!("2");
        let msgs: Vec<String> = ConfigMapStrategy
            .validate_update(&new, &old)
            .iter()
            .map(FieldError::message)
            .collect();
        assert_eq!(
            msgs,
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
        let mut unset = old.clone();
        unset["immutable"] = json!(false);
        assert_eq!(
            ConfigMapStrategy.validate_update(&unset, &old)[0].field,
            "immutable"
        );
    }
}
