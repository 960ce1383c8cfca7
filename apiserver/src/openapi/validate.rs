//! Schema-driven checks: unknown and mistyped fields of built-in kinds; pruning, validation and structural rules of CRD schemas.

use serde_json::{Map, Value};

use super::Node;
use crate::error::{FieldError, FieldErrorType};

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool) == Some(true)
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// Whether any value is accepted here: fields that keep unknown content, int-or-string and
/// quantities, and opaque objects (RawExtension, JSON, FieldsV1) that declare no fields at all.
fn accepts_anything(node: &Node) -> bool {
    let s = node.schema();
    if flag(s, "x-kubernetes-preserve-unknown-fields")
        || flag(node.site_schema(), "x-kubernetes-preserve-unknown-fields")
        || flag(s, "x-kubernetes-int-or-string")
        || s.get("oneOf").is_some()
        || s.get("anyOf").is_some()
        || node.definition_name() == Some(QUANTITY)
    {
        return true;
    }
    let ty = s.get("type").and_then(Value::as_str);
    matches!(ty, None | Some("object"))
        && s.get("properties").is_none()
        && s.get("additionalProperties").is_none()
        && s.get("items").is_none()
}

/// Dotted paths of the fields of `obj` its schema does not declare
/// (`spec.template.spec.containers[0].imagePullPolcy`), as strict decoding reports them.
pub fn unknown_fields(node: &Node, obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    unknown_walk(node, obj, "", &mut out);
    out
}

fn unknown_walk(node: &Node, v: &Value, path: &str, out: &mut Vec<String>) {
    if accepts_anything(node) {
        return;
    }
    match v {
        // A value of the wrong JSON type is a type error, not a set of unknown fields.
        Value::Object(_) if node.type_name().is_some_and(|t| t != "object") => {}
        Value::Object(m) => {
            let open_map = node.schema().get("additionalProperties") == Some(&Value::Bool(true));
            let values = node.map_values();
            let props = node.properties();
            for (k, child) in m {
                // A scalar holds no fields: walking into it would only resolve its schema.
                let nested = child.is_object() || child.is_array();
                if props.is_some_and(|ps| ps.contains_key(k)) {
                    if nested {
                        if let Some(n) = node.property(k) {
                            unknown_walk(&n, child, &join(path, k), out);
                        }
                    }
                } else if let Some(values) = &values {
                    if nested {
                        unknown_walk(values, child, &join(path, k), out);
                    }
                } else if !open_map {
                    out.push(join(path, k));
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = node.list_items() {
                for (i, x) in items.iter().enumerate() {
                    if x.is_object() || x.is_array() {
                        unknown_walk(&item, x, &index(path, i), out);
                    }
                }
            }
        }
        _ => {}
    }
}

/// The Go type upstream would decode into at this node, for error messages (`int32`,
/// `[]v1.Container`, `map[string]string`, `v1.PodSpec`).
fn go_type(node: &Node) -> String {
    if let Some(name) = node.definition_name() {
        let mut parts = name.rsplit('.');
        let ty = parts.next().unwrap_or(name);
        return match parts.next() {
            Some(package) => format!("{package}.{ty}"),
            None => ty.to_string(),
        };
    }
    match (node.type_name(), node.format()) {
        (Some("string"), _) => "string".into(),
        (Some("integer"), Some(f @ ("int32" | "int64"))) => f.into(),
        (Some("integer"), _) => "int".into(),
        (Some("number"), Some("float")) => "float32".into(),
        (Some("number"), _) => "float64".into(),
        (Some("boolean"), _) => "bool".into(),
        (Some("array"), _) => match node.list_items() {
            Some(items) => format!("[]{}", go_type(&items)),
            None => "[]interface {}".into(),
        },
        _ => match node.map_values() {
            Some(values) => format!("map[string]{}", go_type(&values)),
            None => "map[string]interface {}".into(),
        },
    }
}

/// The JSON kind of a value as Go's decoder names it.
fn go_json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Whether a number fits an integer field of `format`, as Go decodes into int32/int64.
fn integer_fits(n: &serde_json::Number, format: Option<&str>) -> bool {
    let Some(i) = n.as_i64() else {
        return false;
    };
    match format {
        Some("int32") => i32::try_from(i).is_ok(),
        _ => true,
    }
}

/// Fields whose JSON type cannot decode into the declared type, described like upstream's
/// decode errors: `json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32`.
pub fn type_errors(node: &Node, obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let owner = node
        .definition_name()
        .and_then(|n| n.rsplit('.').next())
        .unwrap_or("Object")
        .to_string();
    type_walk(node, obj, "", &owner, &mut out);
    out
}

fn type_walk(node: &Node, v: &Value, path: &str, owner: &str, out: &mut Vec<String>) {
    // null decodes into anything as the zero value.
    if v.is_null() {
        return;
    }
    let mismatch = |what: String, out: &mut Vec<String>| {
        let into = if path.is_empty() {
            "Go value".to_string()
        } else {
            format!("Go struct field {owner}.{path}")
        };
        out.push(format!(
            "json: cannot unmarshal {what} into {into} of type {}",
            go_type(node)
        ));
    };
    let s = node.schema();
    if flag(s, "x-kubernetes-int-or-string") {
        if !(v.is_string() || v.as_i64().is_some()) {
            mismatch(go_json_kind(v).into(), out);
        }
        return;
    }
    if node.definition_name() == Some(QUANTITY) {
        if !(v.is_string() || v.is_number()) {
            mismatch(go_json_kind(v).into(), out);
        }
        return;
    }
    if accepts_anything(node) {
        return;
    }
    match (node.type_name(), v) {
        (Some("string"), Value::String(_))
        | (Some("boolean"), Value::Bool(_))
        | (Some("number"), Value::Number(_)) => {}
        (Some("integer"), Value::Number(n)) => {
            if !integer_fits(n, node.format()) {
                mismatch(format!("number {n}"), out);
            }
        }
        (Some("array"), Value::Array(items)) => {
            if let Some(item) = node.list_items() {
                for x in items {
                    type_walk(&item, x, path, owner, out);
                }
            }
        }
        (Some("object") | None, Value::Object(m)) => {
            let inner = node
                .definition_name()
                .and_then(|n| n.rsplit('.').next())
                .unwrap_or(owner)
                .to_string();
            let values = node.map_values();
            for (k, child) in m {
                if let Some(p) = node.property(k) {
                    type_walk(&p, child, &join(path, k), &inner, out);
                } else if let Some(values) = &values {
                    // Go reports map values at the map's field, without the key.
                    type_walk(values, child, path, owner, out);
                }
            }
        }
        (None, _) => {}
        _ => mismatch(go_json_kind(v).into(), out),
    }
}

/// Removes the fields of a custom object its structural schema does not allow, returning
/// their paths. `apiVersion`, `kind` and `metadata` are kept at the root and in embedded
/// resources; `x-kubernetes-preserve-unknown-fields` keeps unknown fields where set.
pub fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    prune_walk(schema, obj, "", true, &mut out);
    out
}

fn prune_walk(s: &Value, v: &mut Value, path: &str, type_meta: bool, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let props = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties");
            let keep_unknown = flag(s, "x-kubernetes-preserve-unknown-fields")
                || additional == Some(&Value::Bool(true));
            let mut dropped = Vec::new();
            for (k, child) in m.iter_mut() {
                let p = join(path, k);
                let is_type_meta =
                    type_meta && matches!(k.as_str(), "apiVersion" | "kind" | "metadata");
                if let Some(ps) = props.and_then(|ps| ps.get(k)) {
                    // Metadata is decoded as ObjectMeta, not pruned by the CRD's schema.
                    if !(is_type_meta && k == "metadata") {
                        prune_walk(
                            ps,
                            child,
                            &p,
                            flag(ps, "x-kubernetes-embedded-resource"),
                            out,
                        );
                    }
                } else if is_type_meta {
                    // apiVersion, kind and metadata belong to every object whether declared or not.
                    continue;
                } else if let Some(a) = additional.filter(|a| a.is_object()) {
                    prune_walk(a, child, &p, flag(a, "x-kubernetes-embedded-resource"), out);
                } else if !keep_unknown {
                    dropped.push(k.clone());
                    out.push(p);
                }
            }
            for k in dropped {
                m.remove(&k);
            }
        }
        Value::Array(items) => {
            if let Some(item) = s.get("items").filter(|i| i.is_object()) {
                let embedded = flag(item, "x-kubernetes-embedded-resource");
                for (i, x) in items.iter_mut().enumerate() {
                    prune_walk(item, x, &index(path, i), embedded, out);
                }
            }
        }
        _ => {}
    }
}

/// The type name kube-openapi gives a value in validation messages.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "integer" => json_type(v) == "integer",
        "number" => v.is_number(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

fn render(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

fn type_invalid(path: &str, v: &Value, ty: &str) -> FieldError {
    let actual = json_type(v);
    FieldError::new(
        FieldErrorType::TypeInvalid,
        path,
        format!("{path} in body must be of type {ty}: \"{actual}\""),
    )
    .with_value(Value::String(actual.into()))
}

fn invalid(path: &str, v: &Value, detail: String) -> FieldError {
    FieldError::invalid(path, v.clone(), detail)
}

/// Validates a custom object (after pruning) against its CRD's structural schema; errors carry
/// paths under `root_path` (empty for the object itself) and upstream's wording.
pub fn validate(schema: &Value, obj: &Value, root_path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_walk(schema, obj, root_path, &mut errs);
    errs
}

fn validate_walk(s: &Value, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let ty = s.get("type").and_then(Value::as_str);
    if v.is_null() {
        if !flag(s, "nullable") {
            if let Some(ty) = ty {
                errs.push(type_invalid(path, v, ty));
            }
        }
        return;
    }
    if flag(s, "x-kubernetes-int-or-string") {
        if !(v.is_string() || json_type(v) == "integer") {
            errs.push(type_invalid(path, v, "integer,string"));
            return;
        }
    } else if let Some(ty) = ty {
        if !type_matches(ty, v) {
            errs.push(type_invalid(path, v, ty));
            return;
        }
    }
    if let Some(values) = s.get("enum").and_then(Value::as_array) {
        if !values.contains(v) {
            let list: Vec<String> = values.iter().map(render).collect();
            errs.push(
                FieldError::new(
                    FieldErrorType::NotSupported,
                    path,
                    format!("supported values: {}", list.join(", ")),
                )
                .with_value(v.clone()),
            );
        }
    }
    match v {
        Value::Number(n) => validate_number(s, v, n, path, errs),
        Value::String(text) => validate_string(s, v, text, path, errs),
        Value::Array(items) => validate_array(s, v, items, path, errs),
        Value::Object(m) => validate_object(s, v, m, path, errs),
        _ => {}
    }
    validate_combinators(s, v, path, errs);
}

fn validate_number(
    s: &Value,
    v: &Value,
    n: &serde_json::Number,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let Some(x) = n.as_f64() else {
        return;
    };
    match s.get("format").and_then(Value::as_str) {
        Some("int32") if n.as_i64().is_none_or(|i| i32::try_from(i).is_err()) => {
            errs.push(invalid(
                path,
                v,
                format!("{path} in body must be of type int32: {n}"),
            ));
        }
        Some("int64") if json_type(v) == "integer" && n.as_i64().is_none() => {
            errs.push(invalid(
                path,
                v,
                format!("{path} in body must be of type int64: {n}"),
            ));
        }
        _ => {}
    }
    if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
        let bound = s.get("minimum").map(Value::to_string).unwrap_or_default();
        if flag(s, "exclusiveMinimum") {
            if x <= min {
                errs.push(invalid(
                    path,
                    v,
                    format!("{path} in body should be greater than {bound}"),
                ));
            }
        } else if x < min {
            errs.push(invalid(
                path,
                v,
                format!("{path} in body should be greater than or equal to {bound}"),
            ));
        }
    }
    if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
        let bound = s.get("maximum").map(Value::to_string).unwrap_or_default();
        if flag(s, "exclusiveMaximum") {
            if x >= max {
                errs.push(invalid(
                    path,
                    v,
                    format!("{path} in body should be less than {bound}"),
                ));
            }
        } else if x > max {
            errs.push(invalid(
                path,
                v,
                format!("{path} in body should be less than or equal to {bound}"),
            ));
        }
    }
    if let Some(m) = s.get("multipleOf").and_then(Value::as_f64) {
        if m > 0.0 && (x / m).fract() != 0.0 {
            let bound = s
                .get("multipleOf")
                .map(Value::to_string)
                .unwrap_or_default();
            errs.push(invalid(
                path,
                v,
                format!("{path} in body should be a multiple of {bound}"),
            ));
        }
    }
}

fn format_ok(format: &str, text: &str) -> bool {
    match format {
        "date-time" => crate::object::parse_rfc3339(text).is_some(),
        "date" => {
            let b = text.as_bytes();
            b.len() == 10
                && b[4] == b'-'
                && b[7] == b'-'
                && text[..4].parse::<u32>().is_ok()
                && text[5..7]
                    .parse::<u32>()
                    .is_ok_and(|m| (1..=12).contains(&m))
                && text[8..]
                    .parse::<u32>()
                    .is_ok_and(|d| (1..=31).contains(&d))
        }
        "byte" => {
            text.len() % 4 == 0
                && text
                    .trim_end_matches('=')
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
        }
        "uuid" => {
            let groups: Vec<&str> = text.split('-').collect();
            groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
                && groups
                    .iter()
                    .all(|g| g.bytes().all(|c| c.is_ascii_hexdigit()))
        }
        "ipv4" => text.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => text.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => true,
    }
}

fn validate_string(s: &Value, v: &Value, text: &str, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(format) = s.get("format").and_then(Value::as_str) {
        if !format_ok(format, text) {
            errs.push(invalid(
                path,
                v,
                format!("{path} in body must be of type {format}: \"{text}\""),
            ));
        }
    }
    let chars = text.chars().count() as u64;
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
        if chars > max {
            errs.push(FieldError::new(
                FieldErrorType::TooLong,
                path,
                format!("may not be more than {max} bytes"),
            ));
        }
    }
    if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
        if chars < min {
            errs.push(invalid(
                path,
                v,
                format!("{path} in body should be at least {min} chars long"),
            ));
        }
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
        // A pattern that does not compile is the CRD's fault, caught when it is validated.
        if let Ok(re) = regex_lite::Regex::new(pattern) {
            if !re.is_match(text) {
                errs.push(invalid(
                    path,
                    v,
                    format!("{path} in body should match '{pattern}'"),
                ));
            }
        }
    }
}

fn validate_array(s: &Value, v: &Value, items: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    let len = items.len() as u64;
    if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
        if len > max {
            errs.push(FieldError::new(
                FieldErrorType::TooMany,
                path,
                format!("{len}: must have at most {max} items"),
            ));
        }
    }
    if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
        if len < min {
            errs.push(invalid(
                path,
                v,
                format!("{path} in body should have at least {min} items"),
            ));
        }
    }
    let list_type = s.get("x-kubernetes-list-type").and_then(Value::as_str);
    if flag(s, "uniqueItems") || list_type == Some("set") {
        for (i, x) in items.iter().enumerate() {
            if items[..i].contains(x) {
                errs.push(FieldError::duplicate(index(path, i), x.clone()));
            }
        }
    }
    if list_type == Some("map") {
        let keys: Vec<&str> = s
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let key_of = |x: &Value| -> Map<String, Value> {
            keys.iter()
                .filter_map(|k| Some(((*k).to_string(), x.get(*k)?.clone())))
                .collect()
        };
        for (i, x) in items.iter().enumerate() {
            let key = key_of(x);
            if items[..i].iter().any(|y| key_of(y) == key) {
                errs.push(FieldError::duplicate(index(path, i), Value::Object(key)));
            }
        }
    }
    if let Some(item) = s.get("items").filter(|i| i.is_object()) {
        for (i, x) in items.iter().enumerate() {
            validate_walk(item, x, &index(path, i), errs);
        }
    }
}

fn validate_object(
    s: &Value,
    v: &Value,
    m: &Map<String, Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    if let Some(required) = s.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !m.contains_key(name) {
                errs.push(FieldError::required(join(path, name), ""));
            }
        }
    }
    if flag(s, "x-kubernetes-embedded-resource") {
        for name in ["apiVersion", "kind"] {
            if m.get(name)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                errs.push(FieldError::required(join(path, name), "must not be empty"));
            }
        }
    }
    let len = m.len() as u64;
    if let Some(max) = s.get("maxProperties").and_then(Value::as_u64) {
        if len > max {
            errs.push(FieldError::new(
                FieldErrorType::TooMany,
                path,
                format!("{len}: must have at most {max} items"),
            ));
        }
    }
    if let Some(min) = s.get("minProperties").and_then(Value::as_u64) {
        if len < min {
            errs.push(invalid(
                path,
                v,
                format!("{path} in body should have at least {min} properties"),
            ));
        }
    }
    let props = s.get("properties").and_then(Value::as_object);
    let additional = s.get("additionalProperties").filter(|a| a.is_object());
    for (k, child) in m {
        if let Some(ps) = props.and_then(|p| p.get(k)) {
            validate_walk(ps, child, &join(path, k), errs);
        } else if let Some(a) = additional {
            validate_walk(a, child, &join(path, k), errs);
        }
    }
}

fn passes(s: &Value, v: &Value, path: &str) -> bool {
    let mut e = Vec::new();
    validate_walk(s, v, path, &mut e);
    e.is_empty()
}

fn validate_combinators(s: &Value, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for sub in all {
            validate_walk(sub, v, path, errs);
        }
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
        if !any.iter().any(|sub| passes(sub, v, path)) {
            errs.push(invalid(
                path,
                v,
                format!("{path} in body must validate at least one schema (anyOf)"),
            ));
        }
    }
    if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
        if one.iter().filter(|sub| passes(sub, v, path)).count() != 1 {
            errs.push(invalid(
                path,
                v,
                format!("{path} in body must validate one and only one schema (oneOf)"),
            ));
        }
    }
    if let Some(not) = s.get("not") {
        if passes(not, v, path) {
            errs.push(invalid(
                path,
                v,
                format!("{path} in body must not validate the schema (not)"),
            ));
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    Field,
    Item,
}

/// Violations of the structural-schema rules, as messages with paths relative to the schema
/// (`properties[spec].type: Required value: must not be empty for specified object fields`);
/// callers prefix them with where the schema sits (`spec.versions[0].schema.openAPIV3Schema.`).
pub fn is_structural(schema: &Value) -> Vec<String> {
    structural_errors(schema, "")
        .iter()
        .map(FieldError::message)
        .collect()
}

/// [`is_structural`] as field errors under `root_path`.
pub fn structural_errors(schema: &Value, root_path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    structural_walk(schema, root_path, Level::Root, &mut errs);
    errs
}

fn structural_walk(s: &Value, path: &str, level: Level, errs: &mut Vec<FieldError>) {
    let Some(m) = s.as_object() else {
        errs.push(FieldError::invalid(
            path,
            s.clone(),
            "must be a schema object",
        ));
        return;
    };
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    let int_or_string = flag(s, "x-kubernetes-int-or-string");
    let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
    let embedded = flag(s, "x-kubernetes-embedded-resource");
    if m.contains_key("$ref") {
        errs.push(FieldError::forbidden(
            join(path, "$ref"),
            "$ref is not supported",
        ));
    }
    if ty.is_empty() && !int_or_string && !embedded && (level == Level::Root || !preserve) {
        let detail = match level {
            Level::Root => "must not be empty at the root",
            Level::Field => "must not be empty for specified object fields",
            Level::Item => "must not be empty for specified array items",
        };
        errs.push(FieldError::required(join(path, "type"), detail));
    }
    if level == Level::Root && !ty.is_empty() && ty != "object" {
        errs.push(FieldError::invalid(
            join(path, "type"),
            Value::String(ty.into()),
            "must be object at the root",
        ));
    }
    if int_or_string && !ty.is_empty() {
        errs.push(FieldError::invalid(
            join(path, "type"),
            Value::String(ty.into()),
            "must be empty if x-kubernetes-int-or-string is true",
        ));
    }
    if embedded && ty != "object" && !ty.is_empty() {
        errs.push(FieldError::invalid(
            join(path, "type"),
            Value::String(ty.into()),
            "must be object if x-kubernetes-embedded-resource is true",
        ));
    }
    if m.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
        errs.push(FieldError::invalid(
            join(path, "x-kubernetes-preserve-unknown-fields"),
            Value::Bool(false),
            "must be true or undefined",
        ));
    }
    let props = m.get("properties").and_then(Value::as_object);
    match m.get("additionalProperties") {
        Some(Value::Bool(false)) => errs.push(FieldError::forbidden(
            join(path, "additionalProperties"),
            "additionalProperties cannot be set to false",
        )),
        Some(_) if props.is_some() => errs.push(FieldError::forbidden(
            join(path, "additionalProperties"),
            "additionalProperties and properties are mutual exclusive",
        )),
        Some(a @ Value::Object(_)) => {
            structural_walk(a, &join(path, "additionalProperties"), Level::Field, errs)
        }
        _ => {}
    }
    match m.get("items") {
        Some(Value::Array(_)) => errs.push(FieldError::forbidden(
            join(path, "items"),
            "items must be a schema object and not an array",
        )),
        Some(items @ Value::Object(_)) => {
            structural_walk(items, &join(path, "items"), Level::Item, errs)
        }
        _ if ty == "array" => errs.push(FieldError::required(
            join(path, "items"),
            "must be specified",
        )),
        _ => {}
    }
    if let Some(props) = props {
        for (name, p) in props {
            let at = join(path, &format!("properties[{name}]"));
            if level == Level::Root && name == "metadata" {
                check_root_metadata(p, &at, errs);
                continue;
            }
            structural_walk(p, &at, Level::Field, errs);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(subs) = m.get(key).and_then(Value::as_array) {
            for (i, sub) in subs.iter().enumerate() {
                value_validation_walk(sub, &format!("{}[{i}]", join(path, key)), errs);
            }
        }
    }
    if let Some(not) = m.get("not") {
        value_validation_walk(not, &join(path, "not"), errs);
    }
}

/// At the root, `metadata` may only restrict `name` and `generateName` as strings; the rest is
/// ObjectMeta and not the CRD's to describe.
fn check_root_metadata(s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let allowed = s.as_object().is_some_and(|m| {
        m.iter().all(|(k, v)| match k.as_str() {
            "type" => v == "object",
            "properties" => v.as_object().is_some_and(|ps| {
                ps.iter().all(|(name, p)| {
                    matches!(name.as_str(), "name" | "generateName")
                        && p.get("type")
                            .and_then(Value::as_str)
                            .is_none_or(|t| t == "string")
                })
            }),
            _ => false,
        })
    });
    if !allowed {
        errs.push(FieldError::forbidden(
            path,
            "must not specify anything other than name and generateName, but metadata is implicitly specified",
        ));
    }
}

/// Inside allOf/anyOf/oneOf/not only value validations are structural: no types, defaults,
/// descriptions or nullability, which must live in the outer schema.
fn value_validation_walk(s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(m) = s.as_object() else {
        return;
    };
    for key in [
        "type",
        "additionalProperties",
        "default",
        "description",
        "nullable",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-preserve-unknown-fields",
    ] {
        if m.contains_key(key) {
            errs.push(FieldError::forbidden(
                join(path, key),
                "must be empty to be structural",
            ));
        }
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for (name, p) in props {
            value_validation_walk(p, &join(path, &format!("properties[{name}]")), errs);
        }
    }
    if let Some(items) = m.get("items") {
        value_validation_walk(items, &join(path, "items"), errs);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(subs) = m.get(key).and_then(Value::as_array) {
            for (i, sub) in subs.iter().enumerate() {
                value_validation_walk(sub, &format!("{}[{i}]", join(path, key)), errs);
            }
        }
    }
    if let Some(not) = m.get("not") {
        value_validation_walk(not, &join(path, "not"), errs);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Schemas;
    use super::*;
    use serde_json::json;
    use std::sync::{Arc, OnceLock};

    fn schemas() -> Arc<Schemas> {
        static S: OnceLock<Arc<Schemas>> = OnceLock::new();
        Arc::clone(S.get_or_init(|| Arc::new(Schemas::builtin())))
    }

    fn deployment() -> Node {
        schemas()
            .node("apps", "v1", "Deployment")
            .expect("deployment")
    }

    fn sample_deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "example.com/tier": "front"}, "annotations": {"a/b": "c"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "web",
                            "image": "nginx",
                            "ports": [{"containerPort": 80}],
                            "resources": {"limits": {"cpu": "500m", "memory": 1024}},
                            "env": [{"name": "A", "value": "b"}]
                        }]
                    }
                }
            }
        })
    }

    #[test]
    fn a_clean_deployment_has_no_unknown_or_mistyped_fields() {
        let node = deployment();
        let obj = sample_deployment();
        assert_eq!(unknown_fields(&node, &obj), Vec::<String>::new());
        assert_eq!(type_errors(&node, &obj), Vec::<String>::new());
    }

    #[test]
    fn unknown_container_field_is_reported_with_its_full_path() {
        let node = deployment();
        let mut obj = sample_deployment();
        obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = json!("Always");
        obj["spec"]["foo"] = json!(1);
        obj["metadata"]["labelz"] = json!({});
        obj["spec"]["template"]["spec"]["tolerations"] = json!({"not": "a list"});
        let mut found = unknown_fields(&node, &obj);
        found.sort();
        assert_eq!(
            found,
            vec![
                "metadata.labelz".to_string(),
                "spec.foo".to_string(),
                "spec.template.spec.containers[0].imagePullPolcy".to_string(),
            ]
        );
    }

    #[test]
    fn labels_annotations_and_opaque_fields_are_not_reported() {
        let node = schemas()
            .node("apps", "v1", "ControllerRevision")
            .expect("cr");
        let obj = json!({"metadata": {"labels": {"anything/goes": "x"}, "annotations": {"k": "v"}}, "data": {"whatever": {"nested": true}}, "revision": 1});
        assert!(unknown_fields(&node, &obj).is_empty());
        let crd = schemas()
            .node("apiextensions.k8s.io", "v1", "CustomResourceDefinition")
            .expect("crd");
        let obj = json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "default": {"a": 1}}}}]}});
        assert!(unknown_fields(&crd, &obj).is_empty());
    }

    #[test]
    fn wrong_json_types_read_like_go_decode_errors() {
        let node = deployment();
        let mut obj = sample_deployment();
        obj["spec"]["replicas"] = json!("3");
        obj["spec"]["template"]["spec"]["containers"][0]["image"] = json!(5);
        obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(1.5);
        obj["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = json!(true);
        let errs = type_errors(&node, &obj);
        assert!(errs.contains(&"json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32".to_string()), "{errs:?}");
        assert!(errs.contains(&"json: cannot unmarshal number into Go struct field Container.spec.template.spec.containers.image of type string".to_string()), "{errs:?}");
        assert!(errs.contains(&"json: cannot unmarshal number 1.5 into Go struct field ContainerPort.spec.template.spec.containers.ports.containerPort of type int32".to_string()), "{errs:?}");
        assert!(
            errs.iter()
                .any(|e| e.contains("maxSurge of type intstr.IntOrString")),
            "{errs:?}"
        );
        assert_eq!(errs.len(), 4);
    }

    fn widget_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 10},
                        "color": {"type": "string", "enum": ["red", "blue"]},
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                        "port": {"x-kubernetes-int-or-string": true},
                        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set", "maxItems": 3},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "when": {"type": "string", "format": "date-time"},
                        "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                                  "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}},
                        "opt": {"type": "string", "nullable": true}
                    }
                }
            }
        })
    }

    #[test]
    fn prune_drops_unknown_fields_and_keeps_preserved_and_embedded_ones() {
        let mut obj = json!({
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "junk": 1,
            "spec": {
                "size": 2, "bogus": true,
                "extra": {"anything": {"deep": 1}},
                "labels": {"a": "b"},
                "items": [{"name": "x", "drop": 1}],
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": 1}, "other": 2}
            }
        });
        let mut pruned = prune(&widget_schema(), &mut obj);
        pruned.sort();
        assert_eq!(
            pruned,
            vec![
                "junk",
                "spec.bogus",
                "spec.items[0].drop",
                "spec.template.other",
                "spec.template.spec.x"
            ]
        );
        assert_eq!(obj["spec"]["extra"]["anything"]["deep"], 1);
        assert_eq!(obj["spec"]["template"]["kind"], "Pod");
        assert_eq!(obj["metadata"]["name"], "w");
        assert!(obj.get("junk").is_none());
    }

    #[test]
    fn validate_reports_type_errors_in_upstream_words() {
        let obj = json!({"spec": {"size": "big"}});
        let errs = validate(&widget_schema(), &obj, "");
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].message(),
            "spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\""
        );
    }

    #[test]
    fn validate_checks_required_enum_bounds_pattern_and_lists() {
        let obj = json!({"spec": {
            "color": "green", "name": "ABCDEFG", "port": true,
            "tags": ["a", "b", "a", "c"], "when": "yesterday",
            "items": [{"name": "x"}, {"name": "x"}], "template": {"spec": {}}, "opt": null
        }});
        let msgs: Vec<String> = validate(&widget_schema(), &obj, "")
            .iter()
            .map(FieldError::message)
            .collect();
        let expect = [
            "spec.size: Required value",
            "spec.color: Unsupported value: \"green\": supported values: \"red\", \"blue\"",
            "spec.name: Too long: may not be more than 5 bytes",
            "spec.name: Invalid value: \"ABCDEFG\": spec.name in body should match '^[a-z]+$'",
            "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
            "spec.tags: Too many: 4: must have at most 3 items",
            "spec.tags[2]: Duplicate value: \"a\"",
            "spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\"",
            "spec.items[1]: Duplicate value: {\"name\":\"x\"}",
            "spec.template.apiVersion: Required value: must not be empty",
            "spec.template.kind: Required value: must not be empty",
        ];
        for e in expect {
            assert!(msgs.contains(&e.to_string()), "missing {e}\n{msgs:#?}");
        }
        assert_eq!(msgs.len(), expect.len(), "{msgs:#?}");
        let low = validate(&widget_schema(), &json!({"spec": {"size": 0}}), "");
        assert_eq!(
            low[0].message(),
            "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
        );
        let high = validate(
            &widget_schema(),
            &json!({"spec": {"size": 11, "port": "http"}}),
            "",
        );
        assert_eq!(
            high[0].message(),
            "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"
        );
        assert_eq!(high.len(), 1);
    }

    #[test]
    fn root_path_prefixes_every_error() {
        let errs = validate(&json!({"type": "integer"}), &json!("x"), "spec.replicas");
        assert_eq!(errs[0].field, "spec.replicas");
    }

    #[test]
    fn structural_schemas_pass_and_violations_are_named() {
        assert!(
            is_structural(&widget_schema()).is_empty(),
            "{:?}",
            is_structural(&widget_schema())
        );
        let bad = json!({
            "type": "object",
            "properties": {
                "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
                "spec": {"properties": {"a": {"type": "string"}}},
                "list": {"type": "array"},
                "both": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": {"type": "string"}},
                "ios": {"type": "string", "x-kubernetes-int-or-string": true},
                "any": {"type": "string", "anyOf": [{"type": "integer"}]}
            }
        });
        let msgs = is_structural(&bad);
        let expect = [
            "properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified",
            "properties[spec].type: Required value: must not be empty for specified object fields",
            "properties[list].items: Required value: must be specified",
            "properties[both].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
            "properties[ios].type: Invalid value: \"string\": must be empty if x-kubernetes-int-or-string is true",
            "properties[any].anyOf[0].type: Forbidden: must be empty to be structural",
        ];
        for e in expect {
            assert!(msgs.contains(&e.to_string()), "missing {e}\n{msgs:#?}");
        }
        assert_eq!(msgs.len(), expect.len(), "{msgs:#?}");
        assert_eq!(
            is_structural(&json!({"type": "string"})),
            vec!["type: Invalid value: \"string\": must be object at the root".to_string()]
        );
    }

    #[test]
    fn custom_nodes_report_unknown_metadata_fields() {
        let node = schemas().custom_node("example.com", "v1", "Widget", &widget_schema());
        let obj = json!({"metadata": {"name": "w", "nam": "x"}, "spec": {"extra": {"free": 1}}});
        assert_eq!(
            unknown_fields(&node, &obj),
            vec!["metadata.nam".to_string()]
        );
    }
}
