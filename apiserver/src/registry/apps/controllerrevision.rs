//! ControllerRevisions: data is mandatory and immutable.

use serde_json::Value;

use crate::error::FieldError;
use crate::registry::core::pod::nonnegative;
use crate::registry::validation::{
    get, int_of, name_is_dns_subdomain, validate_immutable_field, validate_object_meta,
    validate_object_meta_update,
};
use crate::registry::Strategy;

fn validate_revision(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, Some(true), name_is_dns_subdomain);
    if get(obj, "data").is_none() {
        errs.push(FieldError::required("data", "data is mandatory"));
    }
    errs.extend(nonnegative(int_of(obj, "revision"), "revision"));
    errs
}

/// `controllerrevisions`.
pub struct ControllerRevisionStrategy;

impl Strategy for ControllerRevisionStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_revision(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_revision(new));
        errs.extend(validate_immutable_field(
            new.get("data"),
            old.get("data"),
            "data",
        ));
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn revisions_need_data_that_never_changes() {
        struct Case {
            name: &'static str,
            obj: Value,
            want: Vec<&'static str>,
        }
        let cases = [
            Case {
                name: "valid",
                obj: json!({"data": {"spec": {}}, "revision": 1}),
                want: vec![],
            },
            Case {
                name: "no data",
                obj: json!({"revision": 1}),
                want: vec!["data: Required value: data is mandatory"],
            },
            Case {
                name: "negative",
                obj: json!({"data": {}, "revision": -1}),
                want: vec!["revision: Invalid value: -1: must be greater than or equal to 0"],
            },
        ];
        for c in cases {
            let mut o = c.obj;
            o["metadata"] = json!({"name": "r", "namespace": "d"});
            let got: Vec<String> = ControllerRevisionStrategy
                .validate(&o)
                .iter()
                .map(FieldError::message)
                .collect();
            assert_eq!(got, c.want, "{}", c.name);
        }
        let old =
            json!({"metadata": {"name": "r", "namespace": "d"}, "data": {"a": 1}, "revision": 1});
        let mut new = old.clone();
        new["data"] = json!({"a": 2});
        new["revision"] = json!(2);
        assert_eq!(
            ControllerRevisionStrategy.validate_update(&new, &old).len(),
            1
        );
    }
}
