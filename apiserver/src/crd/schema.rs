//! Basic checks of a CRD version's `openAPIV3Schema`: supported keywords and types, and the structural rules.

use serde_json::{json, Map, Value};

use crate::error::FieldError;

/// Checks one `openAPIV3Schema` found at `path` (`spec.versions[0].schema.openAPIV3Schema`).
/// [`check_schema`] is the built-in one; a fuller validator (CEL, defaults, list types) can be
/// plugged into [`super::CrdStrategy::with_schema_checker`].
pub type SchemaChecker = fn(schema: &Value, path: &str) -> Vec<FieldError>;

/// `openapiV3Types`, sorted as upstream lists them in `Unsupported value` errors.
const TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

fn child(path: &str, name: &str) -> String {
    format!("{path}.{name}")
}

fn key(path: &str, map: &str, k: &str) -> String {
    format!("{path}.{map}[{k}]")
}

fn index(path: &str, list: &str, i: usize) -> String {
    format!("{path}.{list}[{i}]")
}

fn str_of<'a>(s: &'a Map<String, Value>, k: &str) -> &'a str {
    s.get(k).and_then(Value::as_str).unwrap_or("")
}

fn flag(s: &Map<String, Value>, k: &str) -> bool {
    s.get(k).and_then(Value::as_bool).unwrap_or(false)
}

fn props(s: &Map<String, Value>) -> impl Iterator<Item = (&String, &Value)> {
    s.get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.iter())
}

fn schema_list<'a>(s: &'a Map<String, Value>, k: &str) -> &'a [Value] {
    s.get(k)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The schema checks upstream runs on create: root restrictions, then the structural rules
/// (sorted by message, as upstream sorts them), then keyword and type support.
pub fn check_schema(schema: &Value, path: &str) -> Vec<FieldError> {
    let Some(root) = schema.as_object() else {
        return vec![FieldError::invalid(
            path,
            schema.clone(),
            "must be a JSON schema object",
        )];
    };
    let mut errs = Vec::new();
    if flag(root, "nullable") {
        errs.push(FieldError::forbidden(
            child(path, "nullable"),
            "nullable cannot be true at the root",
        ));
    }
    let mut structural = Vec::new();
    invariants(root, Level::Root, path, &mut structural);
    structural.sort_by_key(FieldError::message);
    errs.extend(structural);
    supported(root, path, &mut errs);
    errs
}

/// `ValidateCustomResourceDefinitionOpenAPISchema`, the keyword part.
fn supported(s: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    let ty = str_of(s, "type");
    if !ty.is_empty() && !TYPES.contains(&ty) {
        errs.push(FieldError::not_supported(
            child(path, "type"),
            json!(ty),
            TYPES,
        ));
    }
    let forbidden: [(&str, &str); 6] = [
        ("id", "id is not supported"),
        ("additionalItems", "additionalItems is not supported"),
        ("patternProperties", "patternProperties is not supported"),
        ("definitions", "definitions is not supported"),
        ("dependencies", "dependencies is not supported"),
        ("$ref", "$ref is not supported"),
    ];
    for (k, msg) in forbidden {
        if s.contains_key(k) {
            errs.push(FieldError::forbidden(child(path, k), msg));
        }
    }
    if ty == "null" {
        errs.push(FieldError::forbidden(
            child(path, "type"),
            "type cannot be set to null, use nullable as an alternative",
        ));
    }
    if s.get("items").is_some_and(Value::is_array) {
        errs.push(FieldError::forbidden(
            child(path, "items"),
            "items must be a schema object and not an array",
        ));
    }
    if flag(s, "uniqueItems") {
        errs.push(FieldError::forbidden(
            child(path, "uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if let Some(ap) = s.get("additionalProperties") {
        // `additionalProperties: true` next to properties is harmless; anything narrower
        // contradicts the convention that unknown fields of a struct are dropped.
        let has_props = s
            .get("properties")
            .and_then(Value::as_object)
            .is_some_and(|p| !p.is_empty());
        if has_props && *ap != Value::Bool(true) {
            errs.push(FieldError::forbidden(
                child(path, "additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if let Some(sub) = ap.as_object() {
            supported(sub, &child(path, "additionalProperties"), errs);
        }
    }
    for (k, v) in props(s) {
        if let Some(sub) = v.as_object() {
            supported(sub, &key(path, "properties", k), errs);
        }
    }
    if let Some(sub) = s.get("not").and_then(Value::as_object) {
        supported(sub, &child(path, "not"), errs);
    }
    for junctor in ["allOf", "oneOf", "anyOf"] {
        for (i, v) in schema_list(s, junctor).iter().enumerate() {
            if let Some(sub) = v.as_object() {
                supported(sub, &index(path, junctor, i), errs);
            }
        }
    }
    if let Some(sub) = s.get("items").and_then(Value::as_object) {
        supported(sub, &child(path, "items"), errs);
    }
}

/// `validateStructuralInvariants`: every node says what it is (`type`, or one of the two
/// escape hatches), the root is an object, and metadata is left to the server.
fn invariants(s: &Map<String, Value>, lvl: Level, path: &str, errs: &mut Vec<FieldError>) {
    let ty = str_of(s, "type");
    let int_or_string = flag(s, "x-kubernetes-int-or-string");
    let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
    let embedded = flag(s, "x-kubernetes-embedded-resource");

    if ty == "array" && !s.contains_key("items") {
        errs.push(FieldError::required(
            child(path, "items"),
            "must be specified",
        ));
    }
    if let Some(items) = s.get("items").and_then(Value::as_object) {
        invariants(items, Level::Item, &child(path, "items"), errs);
    }
    for (k, v) in props(s) {
        if let Some(sub) = v.as_object() {
            invariants(sub, Level::Field, &key(path, "properties", k), errs);
        }
    }
    if let Some(ap) = s.get("additionalProperties") {
        if lvl == Level::Root {
            errs.push(FieldError::forbidden(
                child(path, "additionalProperties"),
                "must not be used at the root",
            ));
        }
        if let Some(sub) = ap.as_object() {
            invariants(
                sub,
                Level::Field,
                &child(path, "additionalProperties"),
                errs,
            );
        }
    }
    if int_or_string && preserve {
        errs.push(FieldError::invalid(
            child(path, "x-kubernetes-preserve-unknown-fields"),
            json!(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if int_or_string && embedded {
        errs.push(FieldError::invalid(
            child(path, "x-kubernetes-embedded-resource"),
            json!(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }

    let skip_any_of = is_int_or_string_any_of(schema_list(s, "anyOf"));
    let skip_first_all_of = schema_list(s, "allOf")
        .first()
        .and_then(Value::as_object)
        .is_some_and(|first| is_int_or_string_any_of(schema_list(first, "anyOf")));
    value_validation(s, skip_any_of, skip_first_all_of, path, errs);

    if embedded && ty != "object" {
        if ty.is_empty() {
            errs.push(FieldError::required(
                child(path, "type"),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        } else {
            errs.push(FieldError::invalid(
                child(path, "type"),
                json!(ty),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        }
    } else if ty.is_empty() && !int_or_string && !preserve {
        let detail = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errs.push(FieldError::required(child(path, "type"), detail));
    }
    if embedded && s.contains_key("additionalProperties") {
        errs.push(FieldError::forbidden(
            child(path, "additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if lvl == Level::Root && !ty.is_empty() && ty != "object" {
        errs.push(FieldError::invalid(
            child(path, "type"),
            json!(ty),
            "must be object at the root",
        ));
    }

    let check_metadata = lvl == Level::Root || embedded;
    let properties = s.get("properties").and_then(Value::as_object);
    for field in ["kind", "apiVersion"] {
        if let Some(sub) = properties
            .and_then(|p| p.get(field))
            .and_then(Value::as_object)
        {
            let t = str_of(sub, "type");
            if check_metadata && t != "string" {
                errs.push(FieldError::invalid(
                    format!("{}.type", key(path, "properties", field)),
                    json!(t),
                    "must be string",
                ));
            }
        }
    }
    if let Some(meta) = properties
        .and_then(|p| p.get("metadata"))
        .and_then(Value::as_object)
    {
        let meta_path = key(path, "properties", "metadata");
        let t = str_of(meta, "type");
        if check_metadata && t != "object" {
            errs.push(FieldError::invalid(
                child(&meta_path, "type"),
                json!(t),
                "must be object",
            ));
        }
        if lvl == Level::Root && !root_metadata_is_implicit(meta) {
            errs.push(FieldError::forbidden(
                meta_path,
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            ));
        }
    }
    if embedded && !preserve && properties.is_none_or(Map::is_empty) {
        errs.push(FieldError::required(
            child(path, "properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

/// At the root, a metadata schema may only say it is an object and constrain `name` and
/// `generateName`; the server owns the rest of ObjectMeta.
fn root_metadata_is_implicit(meta: &Map<String, Value>) -> bool {
    meta.iter().all(|(k, v)| match k.as_str() {
        "type" | "default" => true,
        "properties" => v
            .as_object()
            .is_some_and(|p| !p.is_empty() && p.keys().all(|n| n == "name" || n == "generateName")),
        _ => false,
    })
}

/// `anyOf: [{type: integer}, {type: string}]`, the one junctor allowed to carry types.
fn is_int_or_string_any_of(any_of: &[Value]) -> bool {
    any_of.len() == 2
        && any_of[0] == json!({"type": "integer"})
        && any_of[1] == json!({"type": "string"})
}

fn value_validation(
    s: &Map<String, Value>,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    if !skip_any_of {
        for (i, v) in schema_list(s, "anyOf").iter().enumerate() {
            nested(v, false, &index(path, "anyOf", i), errs);
        }
    }
    for (i, v) in schema_list(s, "allOf").iter().enumerate() {
        nested(
            v,
            skip_first_all_of_any_of && i == 0,
            &index(path, "allOf", i),
            errs,
        );
    }
    for (i, v) in schema_list(s, "oneOf").iter().enumerate() {
        nested(v, false, &index(path, "oneOf", i), errs);
    }
    if let Some(not) = s.get("not") {
        nested(not, false, &child(path, "not"), errs);
    }
}

/// `validateNestedValueValidation`: schemas under a junctor only constrain values, so
/// everything that would change the shape of an object is forbidden there.
fn nested(v: &Value, skip_any_of: bool, path: &str, errs: &mut Vec<FieldError>) {
    let Some(s) = v.as_object() else {
        return;
    };
    value_validation(s, skip_any_of, false, path, errs);
    if let Some(items) = s.get("items") {
        nested(items, false, &child(path, "items"), errs);
    }
    for (k, sub) in props(s) {
        nested(sub, false, &key(path, "properties", k), errs);
    }
    let rules: [(&str, &str); 13] = [
        ("type", "must be empty to be structural"),
        ("additionalProperties", "must be undefined to be structural"),
        ("default", "must be undefined to be structural"),
        ("title", "must be empty to be structural"),
        ("description", "must be empty to be structural"),
        ("nullable", "must be false to be structural"),
        (
            "x-kubernetes-preserve-unknown-fields",
            "must be false to be structural",
        ),
        (
            "x-kubernetes-embedded-resource",
            "must be false to be structural",
        ),
        (
            "x-kubernetes-int-or-string",
            "must be false to be structural",
        ),
        (
            "x-kubernetes-list-map-keys",
            "must be empty to be structural",
        ),
        (
            "x-kubernetes-list-type",
            "must be undefined to be structural",
        ),
        (
            "x-kubernetes-map-type",
            "must be undefined to be structural",
        ),
        ("x-kubernetes-validations", "must be empty to be structural"),
    ];
    for (k, msg) in rules {
        let set = match s.get(k) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::String(t)) => !t.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        };
        if set {
            errs.push(FieldError::forbidden(child(path, k), msg));
        }
    }
    if s.get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| p.contains_key("metadata"))
    {
        errs.push(FieldError::forbidden(
            key(path, "properties", "metadata"),
            "must not be specified in a nested context",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "spec.versions[0].schema.openAPIV3Schema";

    fn fields(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn a_typed_object_tree_is_structural() {
        let s = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "replicas": {"type": "integer"},
                "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}
            }},
            "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}}
        }});
        assert_eq!(check_schema(&s, P), Vec::<FieldError>::new());
    }

    #[test]
    fn untyped_fields_and_items_are_reported_with_upstream_paths() {
        let s = json!({"type": "object", "properties": {
            "spec": {"properties": {"list": {"type": "array", "items": {}}, "arr": {"type": "array"}}}
        }});
        assert_eq!(
            fields(&check_schema(&s, P)),
            vec![
                format!("{P}.properties[spec].properties[arr].items: Required value: must be specified"),
                format!("{P}.properties[spec].properties[list].items.type: Required value: must not be empty for specified array items"),
                format!("{P}.properties[spec].type: Required value: must not be empty for specified object fields"),
            ]
        );
    }

    #[test]
    fn the_root_must_be_an_object_without_additional_properties() {
        let errs = check_schema(&json!({"type": "string", "additionalProperties": true}), P);
        assert_eq!(
            fields(&errs),
            vec![
                format!("{P}.additionalProperties: Forbidden: must not be used at the root"),
                format!("{P}.type: Invalid value: \"string\": must be object at the root"),
            ]
        );
        let errs = check_schema(&json!({}), P);
        assert_eq!(
            fields(&errs),
            vec![format!(
                "{P}.type: Required value: must not be empty at the root"
            )]
        );
    }

    #[test]
    fn unsupported_types_and_keywords_are_rejected() {
        let s = json!({"type": "object", "properties": {"a": {"type": "foo"}, "b": {"type": "string", "$ref": "#/x"}}});
        assert_eq!(
            fields(&check_schema(&s, P)),
            vec![
                format!("{P}.properties[a].type: Unsupported value: \"foo\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\""),
                format!("{P}.properties[b].$ref: Forbidden: $ref is not supported"),
            ]
        );
    }

    #[test]
    fn root_metadata_may_only_constrain_name_and_generate_name() {
        let s = json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}});
        assert_eq!(
            fields(&check_schema(&s, P)),
            vec![format!("{P}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified")]
        );
    }

    #[test]
    fn junctors_may_not_declare_types() {
        let s = json!({"type": "object", "properties": {"a": {"type": "string", "anyOf": [{"type": "string"}, {"maxLength": 3}]}}});
        assert_eq!(
            fields(&check_schema(&s, P)),
            vec![format!(
                "{P}.properties[a].anyOf[0].type: Forbidden: must be empty to be structural"
            )]
        );
    }
}
