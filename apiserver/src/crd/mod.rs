//! CustomResourceDefinitions (apiextensions.k8s.io/v1): their strategy, and the custom resources they serve.

pub mod names;
pub mod schema;
mod served;
mod validation;

use serde_json::{json, Map, Value};

use crate::error::FieldError;
use crate::object;
use crate::registry::Strategy;

pub use schema::{check_schema, SchemaChecker};
pub use served::{served_resources, CustomResource, CustomResourceStrategy};
pub use validation::{validate_crd, validate_crd_status, validate_crd_update};

/// Whether condition `kind` (`Established`, `NamesAccepted`, ...) is `True` in `status.conditions`.
pub fn condition_is_true(crd: &Value, kind: &str) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        .is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True"))
}

/// Whether the CRD's resources have been served (upstream's `Established` condition).
pub fn is_established(crd: &Value) -> bool {
    condition_is_true(crd, "Established")
}

/// v1 defaulting: `singular` is the lower-cased kind, `listKind` is `<Kind>List`,
/// conversion is `None`, and a webhook service listens on 443.
pub fn set_defaults(crd: &mut Value) {
    let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let empty = |v: Option<&Value>| v.and_then(Value::as_str).is_none_or(str::is_empty);
        if empty(names.get("singular")) {
            names.insert("singular".into(), json!(kind.to_lowercase()));
        }
        if empty(names.get("listKind")) && !kind.is_empty() {
            names.insert("listKind".into(), json!(format!("{kind}List")));
        }
    }
    match spec.get_mut("conversion") {
        None | Some(Value::Null) => {
            spec.insert("conversion".into(), json!({"strategy": "None"}));
        }
        Some(conversion) => {
            if let Some(svc) = conversion
                .pointer_mut("/webhook/clientConfig/service")
                .and_then(Value::as_object_mut)
            {
                svc.entry("port").or_insert(json!(443));
            }
        }
    }
}

fn status_mut(crd: &mut Value) -> Option<&mut Map<String, Value>> {
    let map = crd.as_object_mut()?;
    let status = map
        .entry("status")
        .or_insert_with(|| Value::Object(Map::new()));
    if !status.is_object() {
        *status = Value::Object(Map::new());
    }
    status.as_object_mut()
}

/// `SetCRDCondition`: the transition time moves only when the status does.
fn set_condition(
    crd: &mut Value,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
) {
    let Some(st) = status_mut(crd) else {
        return;
    };
    let conditions = st.entry("conditions").or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else {
        return;
    };
    let existing = list
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind));
    match existing {
        Some(c) => {
            let moved = c.get("status").and_then(Value::as_str) != Some(status)
                || c.get("lastTransitionTime").is_none_or(Value::is_null);
            if moved {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!(status);
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        None => list.push(json!({
            "type": kind,
            "status": status,
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        })),
    }
}

/// Adds the storage version to `status.storedVersions`, which records every version objects
/// may still be stored in.
fn record_storage_version(crd: &mut Value) {
    let Some(storage) = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        })
        .and_then(|v| v.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return;
    };
    let Some(st) = status_mut(crd) else {
        return;
    };
    let stored = st.entry("storedVersions").or_insert_with(|| json!([]));
    if !stored.is_array() {
        *stored = json!([]);
    }
    if let Some(list) = stored.as_array_mut() {
        if !list.iter().any(|v| v.as_str() == Some(storage.as_str())) {
            list.push(json!(storage));
        }
    }
}

/// What upstream's naming, establishing and API-approval controllers write a moment after a
/// CRD is stored, done in the same write here so the resources are usable on return. Name
/// conflicts with other CRDs of the group are not detected: they need every CRD at hand.
fn accept_names(crd: &mut Value, now: &str) {
    let names = crd
        .pointer("/spec/names")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(st) = status_mut(crd) {
        st.insert("acceptedNames".into(), names);
    }
    set_condition(
        crd,
        "NamesAccepted",
        "True",
        "NoConflicts",
        "no conflicts found",
        now,
    );
    set_condition(
        crd,
        "Established",
        "True",
        "InitialNamesAccepted",
        "the initial names have been accepted",
        now,
    );
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("");
    if validation::is_protected_group(group) {
        let (state, message) = validation::approval_state(crd);
        let (status, reason) = match state {
            validation::Approval::Approved => ("True", "ApprovedAnnotation"),
            validation::Approval::Bypassed => ("False", "UnapprovedAnnotation"),
            validation::Approval::Missing => ("False", "MissingAnnotation"),
            validation::Approval::Invalid => ("False", "InvalidAnnotation"),
        };
        set_condition(
            crd,
            "KubernetesAPIApprovalPolicyConformant",
            status,
            reason,
            &message,
            now,
        );
    }
}

/// customresourcedefinitions.apiextensions.k8s.io.
#[derive(Debug, Clone, Copy)]
pub struct CrdStrategy {
    checker: SchemaChecker,
}

impl Default for CrdStrategy {
    fn default() -> Self {
        Self::new()
    }
}

impl CrdStrategy {
    /// With the built-in schema checks ([`check_schema`]).
    pub fn new() -> Self {
        Self {
            checker: check_schema,
        }
    }

    /// With another checker for each version's `openAPIV3Schema`, e.g. a full structural
    /// schema validator.
    pub fn with_schema_checker(checker: SchemaChecker) -> Self {
        Self { checker }
    }
}

impl Strategy for CrdStrategy {
    fn default(&self, obj: &mut Value) {
        set_defaults(obj);
    }

    /// Status is the server's: it starts over, with the storage version recorded and the
    /// names accepted.
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.insert("status".into(), json!({}));
        }
        record_storage_version(obj);
        accept_names(obj, &object::now_rfc3339());
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_crd(obj, self.checker)
    }

    /// Status is carried over from the stored object, then brought up to date with the new
    /// spec (storage version, accepted names). Call this after any generic status reset.
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        let status = old.get("status").cloned().unwrap_or_else(|| json!({}));
        if let Some(map) = new.as_object_mut() {
            map.insert("status".into(), status);
        }
        record_storage_version(new);
        accept_names(new, &object::now_rfc3339());
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        validate_crd_update(new, old, self.checker)
    }

    fn allow_unconditional_update(&self) -> bool {
        false
    }

    fn tracks_generation(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [
                    {"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                         "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
                         "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}},
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                         "statusReplicasPath": ".status.replicas"}},
                     "additionalPrinterColumns": [{"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}]}
                ]
            }
        })
    }

    /// The object as the generic store validates it: defaulted and prepared.
    fn created(mut c: Value) -> Value {
        let s = CrdStrategy::new();
        Strategy::default(&s, &mut c);
        s.prepare_for_create(&mut c);
        c
    }

    fn errors(c: &Value) -> Vec<String> {
        CrdStrategy::new()
            .validate(c)
            .iter()
            .map(FieldError::message)
            .collect()
    }

    fn fields(c: &Value) -> Vec<String> {
        CrdStrategy::new()
            .validate(c)
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_complete_crd_is_valid() {
        assert_eq!(errors(&created(crd())), Vec::<String>::new());
    }

    #[test]
    fn defaults_fill_singular_list_kind_and_conversion() {
        let c = created(crd());
        assert_eq!(c["spec"]["names"]["singular"], "widget");
        assert_eq!(c["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(c["spec"]["conversion"], json!({"strategy": "None"}));
    }

    #[test]
    fn creation_accepts_names_and_establishes_at_once() {
        let c = created(crd());
        assert_eq!(c["status"]["acceptedNames"], c["spec"]["names"]);
        assert_eq!(c["status"]["storedVersions"], json!(["v1"]));
        let conds = c["status"]["conditions"].as_array().expect("conditions");
        assert_eq!(conds[0]["type"], "NamesAccepted");
        assert_eq!(conds[0]["reason"], "NoConflicts");
        assert_eq!(conds[1]["type"], "Established");
        assert_eq!(conds[1]["reason"], "InitialNamesAccepted");
        assert!(conds
            .iter()
            .all(|c| c["status"] == "True" && c["lastTransitionTime"].is_string()));
        assert!(is_established(&c));
        assert!(CrdStrategy::new().tracks_generation());
    }

    #[test]
    fn the_name_must_be_plural_dot_group() {
        let mut c = crd();
        c["metadata"]["name"] = json!("widget.example.com");
        assert_eq!(
            errors(&created(c)),
            vec!["metadata.name: Invalid value: \"widget.example.com\": must be spec.names.plural+\".\"+spec.group"]
        );
    }

    #[test]
    fn exactly_one_version_is_stored() {
        let mut c = crd();
        let mut v2 = c["spec"]["versions"][0].clone();
        v2["name"] = json!("v2");
        c["spec"]["versions"]
            .as_array_mut()
            .expect("versions")
            .push(v2);
        let errs = errors(&created(c));
        assert_eq!(errs.len(), 2);
        assert!(errs[0].starts_with("spec.versions: Invalid value: [{"));
        assert!(errs[0].ends_with(": must have exactly one version marked as storage version"));
        // Only the first storage version is recorded, as upstream records it.
        assert_eq!(
            errs[1],
            "status.storedVersions: Invalid value: [\"v1\"]: must have the storage version v2"
        );
    }

    #[test]
    fn version_names_must_be_unique() {
        let mut c = crd();
        let mut dup = c["spec"]["versions"][0].clone();
        dup["storage"] = json!(false);
        c["spec"]["versions"]
            .as_array_mut()
            .expect("versions")
            .push(dup);
        let errs = errors(&created(c));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].ends_with("must contain unique version names"));
    }

    #[test]
    fn no_versions_means_no_storage_version() {
        let mut c = crd();
        c["spec"]["versions"] = json!([]);
        assert_eq!(
            fields(&created(c)),
            vec!["spec.versions", "status.storedVersions"]
        );
    }

    #[test]
    fn every_version_needs_a_schema() {
        let mut c = crd();
        c["spec"]["versions"][0]
            .as_object_mut()
            .expect("version")
            .remove("schema");
        assert_eq!(
            errors(&created(c)),
            vec!["spec.versions[0].schema.openAPIV3Schema: Required value"]
        );
    }

    #[test]
    fn schemas_must_be_structural() {
        let mut c = crd();
        c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["x"] = json!({});
        assert_eq!(
            errors(&created(c)),
            vec!["spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[x].type: Required value: must not be empty for specified object fields"]
        );
    }

    #[test]
    fn a_status_subresource_needs_an_object_root_with_plain_fields() {
        let mut c = crd();
        c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["anyOf"] =
            json!([{"required": ["spec"]}]);
        let errs = errors(&created(c));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("spec.versions[0].schema.openAPIV3Schema: Invalid value: {"));
        assert!(errs[0].ends_with(
            "fields are allowed at the root of the schema if the status subresource is enabled"
        ));
    }

    #[test]
    fn printer_columns_need_a_known_type_and_a_json_path() {
        let mut c = crd();
        c["spec"]["versions"][0]["additionalPrinterColumns"] =
            json!([{"name": "Age", "type": "time", "jsonPath": "metadata.creationTimestamp"}]);
        assert_eq!(
            errors(&created(c)),
            vec![
                "spec.versions[0].additionalPrinterColumns[0].type: Invalid value: \"time\": must be one of boolean,date,integer,number,string",
                "spec.versions[0].additionalPrinterColumns[0].JSONPath: Invalid value: \"metadata.creationTimestamp\": must be a simple json path starting with .",
            ]
        );
    }

    #[test]
    fn scale_paths_must_point_under_spec_and_status() {
        let mut c = crd();
        c["spec"]["versions"][0]["subresources"]["scale"] = json!({"specReplicasPath": ".status.replicas", "labelSelectorPath": ".metadata.labels"});
        assert_eq!(
            errors(&created(c)),
            vec![
                "spec.versions[0].subresources.scale.specReplicasPath: Invalid value: \".status.replicas\": should be a json path under .spec",
                "spec.versions[0].subresources.scale.statusReplicasPath: Required value",
                "spec.versions[0].subresources.scale.labelSelectorPath: Invalid value: \".metadata.labels\": should be a json path under either .spec or .status",
            ]
        );
    }

    #[test]
    fn names_group_and_scope_are_checked() {
        let mut c = crd();
        c["metadata"]["name"] = json!("Widgets.example");
        c["spec"]["group"] = json!("example");
        c["spec"]["scope"] = json!("Global");
        c["spec"]["names"] = json!({"plural": "Widgets", "kind": "Widget", "listKind": "Widget", "shortNames": ["w-"]});
        assert_eq!(
            fields(&created(c)),
            vec![
                "metadata.name",
                "spec.group",
                "spec.scope",
                "spec.names.plural",
                "spec.names.shortNames[0]",
                "spec.names.listKind",
                "status.acceptedNames.plural",
                "status.acceptedNames.shortNames[0]",
                "status.acceptedNames.listKind",
            ]
        );
    }

    #[test]
    fn protected_groups_need_an_approval_annotation() {
        let mut c = crd();
        c["metadata"]["name"] = json!("widgets.x.k8s.io");
        c["spec"]["group"] = json!("x.k8s.io");
        let created_c = created(c.clone());
        assert_eq!(
            errors(&created_c),
            vec!["metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups must have approval annotation \"api-approved.kubernetes.io\", see https://github.com/kubernetes/enhancements/pull/1111"]
        );
        c["metadata"]["annotations"] = json!({"api-approved.kubernetes.io": "https://github.com/kubernetes/kubernetes/pull/1"});
        let approved = created(c);
        assert!(errors(&approved).is_empty());
        assert!(condition_is_true(
            &approved,
            "KubernetesAPIApprovalPolicyConformant"
        ));
    }

    #[test]
    fn webhook_conversion_needs_a_client_config_and_review_versions() {
        let mut c = crd();
        c["spec"]["conversion"] = json!({"strategy": "Webhook", "webhook": {}});
        assert_eq!(
            errors(&created(c)),
            vec![
                "spec.conversion.webhookClientConfig: Required value: required when strategy is set to Webhook",
                "spec.conversion.conversionReviewVersions: Required value",
            ]
        );
    }

    #[test]
    fn scope_kind_group_and_plural_are_immutable_once_established() {
        let old = created(crd());
        let mut new = old.clone();
        new["spec"]["scope"] = json!("Cluster");
        new["spec"]["names"]["kind"] = json!("Gadget");
        new["spec"]["names"]["listKind"] = json!("GadgetList");
        new["spec"]["group"] = json!("other.com");
        let s = CrdStrategy::new();
        s.prepare_for_update(&mut new, &old);
        let fields: Vec<String> = s
            .validate_update(&new, &old)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, vec!["spec.scope", "spec.names.kind", "spec.group"]);
    }

    #[test]
    fn updates_keep_status_and_record_new_storage_versions() {
        let old = created(crd());
        let mut new = old.clone();
        new["status"] = json!({"storedVersions": []});
        let mut v2 = new["spec"]["versions"][0].clone();
        v2["name"] = json!("v2");
        new["spec"]["versions"][0]["storage"] = json!(false);
        new["spec"]["versions"]
            .as_array_mut()
            .expect("versions")
            .push(v2);
        new["spec"]["names"]["shortNames"] = json!(["wd"]);
        let s = CrdStrategy::new();
        s.prepare_for_update(&mut new, &old);
        assert_eq!(new["status"]["storedVersions"], json!(["v1", "v2"]));
        assert_eq!(new["status"]["acceptedNames"]["shortNames"], json!(["wd"]));
        assert_eq!(new["status"]["conditions"], old["status"]["conditions"]);
        assert!(s.validate_update(&new, &old).is_empty());
        assert!(!s.allow_unconditional_update());
    }

    #[test]
    fn a_custom_schema_checker_replaces_the_built_in_one() {
        fn strict(_: &Value, path: &str) -> Vec<FieldError> {
            vec![FieldError::forbidden(path, "no schemas today")]
        }
        let c = created(crd());
        let errs = CrdStrategy::with_schema_checker(strict).validate(&c);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec.versions[0].schema.openAPIV3Schema");
    }
}
