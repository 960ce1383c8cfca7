//! Static validation of CustomResourceDefinitions, with upstream's field paths and wording.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::names::{dns1035_label, dns1123_subdomain, name_is_dns_subdomain, validate_object_meta};
use super::schema::SchemaChecker;
use crate::error::{FieldError, FieldErrorType};

const PRINTER_COLUMN_TYPES: &str = "boolean,date,integer,number,string";
const PRINTER_COLUMN_FORMATS: &str = "byte,date,date-time,double,float,int32,int64,password";
const MAX_SELECTABLE_FIELDS: usize = 8;
const APPROVAL_ANNOTATION: &str = "api-approved.kubernetes.io";

/// Root schema keys in the order of upstream's `JSONSchemaProps` fields, and whether each is
/// allowed at the root when the status subresource is on (status is validated by cutting
/// `properties.status` out of the root, which would lose anything else).
const ROOT_KEYS: &[(&str, bool)] = &[
    ("id", false),
    ("$schema", false),
    ("$ref", false),
    ("description", true),
    ("type", true),
    ("format", true),
    ("title", true),
    ("default", false),
    ("maximum", true),
    ("exclusiveMaximum", true),
    ("minimum", true),
    ("exclusiveMinimum", true),
    ("maxLength", true),
    ("minLength", true),
    ("pattern", true),
    ("maxItems", true),
    ("minItems", true),
    ("uniqueItems", true),
    ("multipleOf", true),
    ("enum", false),
    ("maxProperties", false),
    ("minProperties", false),
    ("required", true),
    ("items", true),
    ("allOf", false),
    ("oneOf", false),
    ("anyOf", false),
    ("not", false),
    ("properties", true),
    ("additionalProperties", false),
    ("patternProperties", false),
    ("dependencies", false),
    ("additionalItems", false),
    ("definitions", false),
    ("externalDocs", true),
    ("example", true),
    ("nullable", false),
    ("x-kubernetes-preserve-unknown-fields", true),
    ("x-kubernetes-embedded-resource", false),
    ("x-kubernetes-int-or-string", false),
    ("x-kubernetes-list-map-keys", false),
    ("x-kubernetes-list-type", false),
    ("x-kubernetes-map-type", false),
    ("x-kubernetes-validations", true),
];
const ROOT_ALLOWED_NAMES: &str = "[Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations]";

/// What differs between checking a create and an update.
struct Options {
    /// On create the name must be `<plural>.<group>`; on update group and plural are
    /// immutable instead.
    check_name: bool,
    /// Every version needs a schema (relaxed on update only for CRDs stored without one).
    require_schema: bool,
    /// A stored `preserveUnknownFields: true` may be kept.
    allow_preserve_unknown_fields: bool,
    /// The old approval annotation state; unchanged states are never re-checked.
    old_approval: Option<Approval>,
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn b(v: &Value, k: &str) -> bool {
    v.get(k).and_then(Value::as_bool).unwrap_or(false)
}

fn list<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    v.get(k)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn null() -> Value {
    Value::Null
}

/// Everything wrong with a new CRD (`ValidateCustomResourceDefinition`).
pub fn validate_crd(crd: &Value, checker: SchemaChecker) -> Vec<FieldError> {
    let opts = Options {
        check_name: true,
        require_schema: true,
        allow_preserve_unknown_fields: false,
        old_approval: None,
    };
    validate(crd, &opts, checker)
}

/// Everything wrong with an update (`ValidateCustomResourceDefinitionUpdate`): the new object,
/// plus group and plural (and, once established, scope and kind) staying as they were.
pub fn validate_crd_update(new: &Value, old: &Value, checker: SchemaChecker) -> Vec<FieldError> {
    let null = null();
    let old_spec = old.get("spec").unwrap_or(&null);
    let opts = Options {
        check_name: false,
        require_schema: list(old_spec, "versions")
            .iter()
            .all(|v| v.pointer("/schema/openAPIV3Schema").is_some()),
        allow_preserve_unknown_fields: b(old_spec, "preserveUnknownFields"),
        old_approval: Some(approval_state(old).0),
    };
    let mut errs = validate(new, &opts, checker);
    let spec = new.get("spec").unwrap_or(&null);
    let immutable = |errs: &mut Vec<FieldError>, path: &str, new: &Value, old: &Value| {
        if new != old {
            errs.push(FieldError::invalid(path, new.clone(), "field is immutable"));
        }
    };
    let at = |v: &Value, p: &str| {
        v.pointer(p)
            .cloned()
            .unwrap_or(Value::String(String::new()))
    };
    if super::is_established(old) {
        immutable(
            &mut errs,
            "spec.scope",
            &at(spec, "/scope"),
            &at(old_spec, "/scope"),
        );
        immutable(
            &mut errs,
            "spec.names.kind",
            &at(spec, "/names/kind"),
            &at(old_spec, "/names/kind"),
        );
    }
    immutable(
        &mut errs,
        "spec.group",
        &at(spec, "/group"),
        &at(old_spec, "/group"),
    );
    immutable(
        &mut errs,
        "spec.names.plural",
        &at(spec, "/names/plural"),
        &at(old_spec, "/names/plural"),
    );
    errs
}

/// What a status update may get wrong: the accepted names.
pub fn validate_crd_status(crd: &Value) -> Vec<FieldError> {
    let null = null();
    validate_names(
        crd.pointer("/status/acceptedNames").unwrap_or(&null),
        "status.acceptedNames",
    )
}

fn validate(crd: &Value, opts: &Options, checker: SchemaChecker) -> Vec<FieldError> {
    let null = null();
    let spec = crd.get("spec").unwrap_or(&null);
    let mut errs = if opts.check_name {
        let required = format!("{}.{}", s(&spec["names"], "plural"), s(spec, "group"));
        validate_object_meta(crd, false, &|name, prefix| {
            let mut msgs = name_is_dns_subdomain(name, prefix);
            if name != required {
                msgs.push("must be spec.names.plural+\".\"+spec.group".into());
            }
            msgs
        })
    } else {
        validate_object_meta(crd, false, &|_, _| Vec::new())
    };
    errs.extend(validate_spec(spec, opts, checker));
    errs.extend(validate_crd_status(crd));
    errs.extend(validate_stored_versions(crd));
    errs.extend(validate_approval(crd, opts));
    if b(spec, "preserveUnknownFields") && !opts.allow_preserve_unknown_fields {
        errs.push(FieldError::invalid(
            "spec.preserveUnknownFields",
            json!(true),
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        ));
    }
    errs
}

fn validate_spec(spec: &Value, opts: &Options, checker: SchemaChecker) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let group = s(spec, "group");
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else if let msgs @ [_, ..] = dns1123_subdomain(group).as_slice() {
        errs.push(FieldError::invalid(
            "spec.group",
            json!(group),
            msgs.join(","),
        ));
    } else if !group.contains('.') {
        errs.push(FieldError::invalid(
            "spec.group",
            json!(group),
            "should be a domain with at least one dot",
        ));
    }
    errs.extend(enum_string(
        "spec.scope",
        s(spec, "scope"),
        &["Cluster", "Namespaced"],
    ));

    let versions = list(spec, "versions");
    if opts.require_schema {
        for (i, v) in versions.iter().enumerate() {
            if v.pointer("/schema/openAPIV3Schema").is_none() {
                errs.push(FieldError::required(
                    format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    "",
                ));
            }
        }
    }
    let mut storage = 0;
    let mut seen = BTreeSet::new();
    let mut unique = true;
    for (i, v) in versions.iter().enumerate() {
        let name = s(v, "name");
        storage += usize::from(b(v, "storage"));
        unique &= seen.insert(name);
        let path = format!("spec.versions[{i}]");
        if let msgs @ [_, ..] = dns1035_label(name).as_slice() {
            errs.push(FieldError::invalid(
                format!("{path}.name"),
                json!(name),
                msgs.join(","),
            ));
        }
        errs.extend(validate_version(v, &path, checker));
    }
    if !unique {
        errs.push(FieldError::invalid(
            "spec.versions",
            Value::Array(versions.to_vec()),
            "must contain unique version names",
        ));
    }
    if storage != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            Value::Array(versions.to_vec()),
            "must have exactly one version marked as storage version",
        ));
    }

    let null = null();
    let names = spec.get("names").unwrap_or(&null);
    for field in ["plural", "singular", "kind", "listKind"] {
        if s(names, field).is_empty() {
            errs.push(FieldError::required(format!("spec.names.{field}"), ""));
        }
    }
    errs.extend(validate_names(names, "spec.names"));

    let conversion = spec.get("conversion").unwrap_or(&null);
    let strategy = s(conversion, "strategy");
    if !conversion.is_null() && strategy != "None" && b(spec, "preserveUnknownFields") {
        errs.push(FieldError::invalid(
            "spec.conversion.strategy",
            json!(strategy),
            "must be None if spec.preserveUnknownFields is true",
        ));
    }
    if !conversion.is_null() {
        errs.extend(validate_conversion(conversion));
    }
    errs
}

fn enum_string(path: &str, value: &str, accepted: &[&str]) -> Vec<FieldError> {
    if value.is_empty() {
        vec![FieldError::required(path, "")]
    } else if accepted.contains(&value) {
        Vec::new()
    } else {
        vec![FieldError::not_supported(path, json!(value), accepted)]
    }
}

fn validate_version(v: &Value, path: &str, checker: SchemaChecker) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(warning) = v.get("deprecationWarning").filter(|w| !w.is_null()) {
        let text = warning.as_str().unwrap_or("");
        let mut msgs = Vec::new();
        if !b(v, "deprecated") {
            msgs.push("can only be set for deprecated versions".to_string());
        } else {
            if text.len() > 256 {
                msgs.push("must be <= 256 characters long".into());
            }
            if text.is_empty() {
                msgs.push("must not be an empty string".into());
            }
            if let Some((i, _)) = text.char_indices().find(|(_, c)| c.is_control()) {
                msgs.push(format!("must only contain printable UTF-8 characters; control character found at index {i}"));
            }
        }
        for msg in msgs {
            errs.push(FieldError::invalid(
                format!("{path}.deprecationWarning"),
                warning.clone(),
                msg,
            ));
        }
    }

    let schema = v.pointer("/schema/openAPIV3Schema");
    let status_enabled = v
        .pointer("/subresources/status")
        .is_some_and(|s| !s.is_null());
    if let Some(schema) = schema {
        let schema_path = format!("{path}.schema.openAPIV3Schema");
        if status_enabled {
            errs.extend(status_root_check(schema, &schema_path));
        }
        errs.extend(checker(schema, &schema_path));
    }

    if let Some(scale) = v.pointer("/subresources/scale").filter(|s| !s.is_null()) {
        errs.extend(validate_scale(scale, &format!("{path}.subresources.scale")));
    }
    for (i, col) in list(v, "additionalPrinterColumns").iter().enumerate() {
        errs.extend(validate_column(
            col,
            &format!("{path}.additionalPrinterColumns[{i}]"),
        ));
    }
    let selectable = list(v, "selectableFields");
    if !selectable.is_empty() {
        match schema {
            None => errs.push(FieldError::invalid(
                format!("{path}.selectableFields"),
                json!(""),
                "may only be set when `version.schema.openAPIV3Schema` is not included",
            )),
            Some(schema) => errs.extend(validate_selectable_fields(
                selectable,
                schema,
                &format!("{path}.selectableFields"),
            )),
        }
    }
    errs
}

/// With a status subresource, only what survives extracting `properties.status` may sit at
/// the root; upstream reports the first offending field only.
fn status_root_check(schema: &Value, path: &str) -> Vec<FieldError> {
    let Some(root) = schema.as_object() else {
        return Vec::new();
    };
    for (k, allowed) in ROOT_KEYS {
        let Some(value) = root.get(*k) else { continue };
        let zero = match value {
            Value::Null => true,
            Value::Bool(set) => !set,
            Value::String(t) => t.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            Value::Number(_) => false,
        };
        if zero {
            continue;
        }
        if *k == "type" {
            if value.as_str() != Some("object") {
                return vec![FieldError::invalid(
                    format!("{path}.type"),
                    value.clone(),
                    "only \"object\" is allowed as the type at the root of the schema if the status subresource is enabled",
                )];
            }
            continue;
        }
        if !allowed {
            return vec![FieldError::invalid(
                path,
                schema.clone(),
                format!("only {ROOT_ALLOWED_NAMES} fields are allowed at the root of the schema if the status subresource is enabled"),
            )];
        }
    }
    Vec::new()
}

/// `validateSimpleJSONPath`: a dotted path starting at `.`.
fn simple_json_path(p: &str, path: &str) -> Vec<FieldError> {
    if p.is_empty() {
        vec![FieldError::invalid(path, json!(p), "must not be empty")]
    } else if !p.starts_with('.') {
        vec![FieldError::invalid(
            path,
            json!(p),
            "must be a simple json path starting with .",
        )]
    } else {
        Vec::new()
    }
}

fn validate_scale(scale: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (field, prefix, under) in [
        (
            "specReplicasPath",
            ".spec.",
            "should be a json path under .spec",
        ),
        (
            "statusReplicasPath",
            ".status.",
            "should be a json path under .status",
        ),
    ] {
        let p = s(scale, field);
        let fp = format!("{path}.{field}");
        if p.is_empty() {
            errs.push(FieldError::required(fp, ""));
        } else if let e @ [_, ..] = simple_json_path(p, &fp).as_slice() {
            errs.extend_from_slice(e);
        } else if !p.starts_with(prefix) {
            errs.push(FieldError::invalid(fp, json!(p), under));
        }
    }
    let selector = s(scale, "labelSelectorPath");
    if !selector.is_empty() {
        let fp = format!("{path}.labelSelectorPath");
        if let e @ [_, ..] = simple_json_path(selector, &fp).as_slice() {
            errs.extend_from_slice(e);
        } else if !selector.starts_with(".spec.") && !selector.starts_with(".status.") {
            errs.push(FieldError::invalid(
                fp,
                json!(selector),
                "should be a json path under either .spec or .status",
            ));
        }
    }
    errs
}

/// A printer column; upstream names the path field `JSONPath` (its internal Go name).
fn validate_column(col: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if s(col, "name").is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    }
    let ty = s(col, "type");
    let must = format!("must be one of {PRINTER_COLUMN_TYPES}");
    if ty.is_empty() {
        errs.push(FieldError::required(format!("{path}.type"), must));
    } else if !PRINTER_COLUMN_TYPES.split(',').any(|t| t == ty) {
        errs.push(FieldError::invalid(format!("{path}.type"), json!(ty), must));
    }
    let format = s(col, "format");
    if !format.is_empty() && !PRINTER_COLUMN_FORMATS.split(',').any(|f| f == format) {
        errs.push(FieldError::invalid(
            format!("{path}.format"),
            json!(format),
            format!("must be one of {PRINTER_COLUMN_FORMATS}"),
        ));
    }
    let json_path = s(col, "jsonPath");
    if json_path.is_empty() {
        errs.push(FieldError::required(format!("{path}.JSONPath"), ""));
    } else {
        errs.extend(simple_json_path(json_path, &format!("{path}.JSONPath")));
    }
    errs
}

/// The schema node a `.a.b` path points at, walking `properties`.
fn schema_at<'a>(schema: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted
        .strip_prefix('.')?
        .split('.')
        .try_fold(schema, |node, part| node.get("properties")?.get(part))
}

fn validate_selectable_fields(fields: &[Value], schema: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut unique = BTreeSet::new();
    for (i, f) in fields.iter().enumerate() {
        let fp = format!("{path}[{i}].jsonPath");
        let p = s(f, "jsonPath");
        if p.is_empty() {
            errs.push(FieldError::required(fp, ""));
            continue;
        }
        if p == ".metadata" || p.starts_with(".metadata.") {
            errs.push(FieldError::invalid(
                fp,
                json!(p),
                "must not point to fields in metadata",
            ));
            continue;
        }
        let Some(node) = schema_at(schema, p) else {
            errs.push(FieldError::invalid(
                fp,
                json!(p),
                "is an invalid path: does not refer to a valid field",
            ));
            continue;
        };
        if !matches!(s(node, "type"), "string" | "boolean" | "integer") {
            errs.push(FieldError::invalid(
                fp.clone(),
                json!(p),
                "must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.",
            ));
        }
        if !unique.insert(p) {
            errs.push(FieldError::duplicate(fp, json!(p)));
        }
    }
    if unique.len() > MAX_SELECTABLE_FIELDS {
        // FieldError prints no value for TooMany, so the count goes into the detail.
        errs.push(FieldError::new(
            FieldErrorType::TooMany,
            path,
            format!(
                "{}: must have at most {MAX_SELECTABLE_FIELDS} items",
                unique.len()
            ),
        ));
    }
    errs
}

/// `ValidateCustomResourceDefinitionNames`, shared by `spec.names` and `status.acceptedNames`.
fn validate_names(names: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut label = |field: &str, value: &str, lower: bool| {
        if value.is_empty() {
            return;
        }
        let msgs = dns1035_label(&if lower {
            value.to_lowercase()
        } else {
            value.to_string()
        });
        if msgs.is_empty() {
            return;
        }
        let detail = if lower {
            format!(
                "may have mixed case, but should otherwise match: {}",
                msgs.join(",")
            )
        } else {
            msgs.join(",")
        };
        errs.push(FieldError::invalid(
            format!("{path}.{field}"),
            json!(value),
            detail,
        ));
    };
    label("plural", s(names, "plural"), false);
    label("singular", s(names, "singular"), false);
    label("kind", s(names, "kind"), true);
    label("listKind", s(names, "listKind"), true);
    for (i, short) in list(names, "shortNames").iter().enumerate() {
        let short = short.as_str().unwrap_or("");
        if let msgs @ [_, ..] = dns1035_label(short).as_slice() {
            errs.push(FieldError::invalid(
                format!("{path}.shortNames[{i}]"),
                json!(short),
                msgs.join(","),
            ));
        }
    }
    let kind = s(names, "kind");
    if !kind.is_empty() && kind == s(names, "listKind") {
        errs.push(FieldError::invalid(
            format!("{path}.listKind"),
            json!(kind),
            "kind and listKind may not be the same",
        ));
    }
    for (i, cat) in list(names, "categories").iter().enumerate() {
        let cat = cat.as_str().unwrap_or("");
        if let msgs @ [_, ..] = dns1035_label(cat).as_slice() {
            errs.push(FieldError::invalid(
                format!("{path}.categories[{i}]"),
                json!(cat),
                msgs.join(","),
            ));
        }
    }
    errs
}

/// v1's `conversion.webhook.{clientConfig,conversionReviewVersions}` are checked under the
/// internal names upstream reports (`webhookClientConfig`, `conversionReviewVersions`).
fn validate_conversion(conversion: &Value) -> Vec<FieldError> {
    let path = "spec.conversion";
    let strategy = s(conversion, "strategy");
    let mut errs = enum_string(&format!("{path}.strategy"), strategy, &["None", "Webhook"]);
    let null = null();
    let webhook = conversion.get("webhook").unwrap_or(&null);
    let client = webhook.get("clientConfig").filter(|c| !c.is_null());
    let review_versions = list(webhook, "conversionReviewVersions");
    if strategy == "Webhook" {
        match client {
            None => errs.push(FieldError::required(
                format!("{path}.webhookClientConfig"),
                "required when strategy is set to Webhook",
            )),
            Some(cc) => {
                let url = cc.get("url").filter(|u| !u.is_null());
                let service = cc.get("service").filter(|s| !s.is_null());
                if url.is_some() == service.is_some() {
                    errs.push(FieldError::required(
                        format!("{path}.webhookClientConfig"),
                        "exactly one of url or service is required",
                    ));
                } else if let Some(svc) = service {
                    for field in ["name", "namespace"] {
                        if s(svc, field).is_empty() {
                            errs.push(FieldError::required(
                                format!("{path}.webhookClientConfig.service.{field}"),
                                format!("service {field} is required"),
                            ));
                        }
                    }
                } else if let Some(url) = url.and_then(Value::as_str) {
                    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
                    if scheme != "https" {
                        errs.push(FieldError::invalid(
                            format!("{path}.webhookClientConfig.url"),
                            json!(scheme),
                            "'https' is the only allowed URL scheme",
                        ));
                    }
                }
            }
        }
        let rv_path = format!("{path}.conversionReviewVersions");
        if review_versions.is_empty() {
            errs.push(FieldError::required(rv_path, ""));
        } else {
            let mut seen = BTreeSet::new();
            let mut accepted = false;
            for (i, v) in review_versions.iter().enumerate() {
                let v = v.as_str().unwrap_or("");
                if !seen.insert(v) {
                    errs.push(FieldError::invalid(
                        format!("{rv_path}[{i}]"),
                        json!(v),
                        "duplicate version",
                    ));
                    continue;
                }
                for msg in dns1035_label(v) {
                    errs.push(FieldError::invalid(
                        format!("{rv_path}[{i}]"),
                        json!(v),
                        msg,
                    ));
                }
                accepted |= v == "v1" || v == "v1beta1";
            }
            if !accepted {
                errs.push(FieldError::invalid(
                    rv_path,
                    Value::Array(review_versions.to_vec()),
                    "must include at least one of v1, v1beta1",
                ));
            }
        }
    } else {
        if client.is_some() {
            errs.push(FieldError::forbidden(
                format!("{path}.webhookClientConfig"),
                "should not be set when strategy is not set to Webhook",
            ));
        }
        if !review_versions.is_empty() {
            errs.push(FieldError::forbidden(
                format!("{path}.conversionReviewVersions"),
                "should not be set when strategy is not set to Webhook",
            ));
        }
    }
    errs
}

/// `ValidateCustomResourceDefinitionStoredVersions`.
fn validate_stored_versions(crd: &Value) -> Vec<FieldError> {
    let path = "status.storedVersions";
    let stored = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if stored.is_empty() {
        return vec![FieldError::invalid(
            path,
            json!([]),
            "must have at least one stored version",
        )];
    }
    let mut errs = Vec::new();
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for v in versions {
        let name = s(v, "name");
        if b(v, "storage") && !stored.iter().any(|sv| sv.as_str() == Some(name)) {
            errs.push(FieldError::invalid(
                path,
                Value::Array(stored.to_vec()),
                format!("must have the storage version {name}"),
            ));
        }
    }
    for (i, sv) in stored.iter().enumerate() {
        let sv = sv.as_str().unwrap_or("");
        if !versions.iter().any(|v| s(v, "name") == sv) {
            errs.push(FieldError::invalid(
                format!("{path}[{i}]"),
                json!(sv),
                format!("missing from spec.versions; {sv} was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in {sv} and removes {sv} from status.storedVersions"),
            ));
        }
    }
    errs
}

/// The `api-approved.kubernetes.io` annotation's state, for protected community groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Approval {
    Invalid,
    Approved,
    Bypassed,
    Missing,
}

/// `k8s.io` and `kubernetes.io` groups belong to the Kubernetes project and need approval.
pub(super) fn is_protected_group(group: &str) -> bool {
    group == "k8s.io"
        || group.ends_with(".k8s.io")
        || group == "kubernetes.io"
        || group.ends_with(".kubernetes.io")
}

/// The approval state and upstream's reason text for it.
pub(super) fn approval_state(crd: &Value) -> (Approval, String) {
    let value = crd
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(APPROVAL_ANNOTATION))
        .and_then(Value::as_str)
        .unwrap_or("");
    if value.is_empty() {
        (
            Approval::Missing,
            format!("protected groups must have approval annotation \"{APPROVAL_ANNOTATION}\", see https://github.com/kubernetes/enhancements/pull/1111"),
        )
    } else if value.starts_with("unapproved") {
        (Approval::Bypassed, format!("not approved: \"{value}\""))
    } else if is_absolute_url(value) {
        (Approval::Approved, format!("approved in {value}"))
    } else {
        (
            Approval::Invalid,
            format!("protected groups must have approval annotation \"{APPROVAL_ANNOTATION}\" with either a URL or a reason starting with \"unapproved\", see https://github.com/kubernetes/enhancements/pull/1111"),
        )
    }
}

/// A URL with a scheme and a host, which is what upstream accepts as an approval link.
fn is_absolute_url(v: &str) -> bool {
    let Some((scheme, rest)) = v.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    scheme_ok && !host.is_empty() && !v.contains(char::is_whitespace)
}

fn validate_approval(crd: &Value, opts: &Options) -> Vec<FieldError> {
    if !is_protected_group(s(&crd["spec"], "group")) {
        return Vec::new();
    }
    let (state, reason) = approval_state(crd);
    // A client that leaves the annotation as it was must not be rejected for it.
    if opts.old_approval == Some(state) {
        return Vec::new();
    }
    let path = format!("metadata.annotations[{APPROVAL_ANNOTATION}]");
    match state {
        Approval::Approved | Approval::Bypassed => Vec::new(),
        Approval::Missing => vec![FieldError::required(path, reason)],
        Approval::Invalid => {
            let value = crd
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(APPROVAL_ANNOTATION))
                .cloned()
                .unwrap_or(Value::Null);
            vec![FieldError::invalid(path, value, reason)]
        }
    }
}
