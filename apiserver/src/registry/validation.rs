//! Validation helpers every resource shares: names, labels, annotations, selectors, metadata.

use serde_json::{json, Map, Value};

use crate::error::FieldError;

/// Upstream's `FieldImmutableErrorMsg`.
pub const FIELD_IMMUTABLE: &str = "field is immutable";
/// Upstream's `TotalAnnotationSizeLimitB`.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
/// `must be greater than or equal to 0`, upstream's `isNegativeErrorMsg`.
pub const NEGATIVE_ERROR: &str = "must be greater than or equal to 0";

/// Checks a metadata name; `prefix` is set when the value is a `generateName`.
pub type NameFn = fn(&str, bool) -> Vec<String>;

// ---------------------------------------------------------------------------------------------
// Reading and writing JSON objects.

/// A field that is present and not null.
pub fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

/// A string field, `""` when absent or not a string (as a Go string field reads).
pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// An array field, empty when absent.
pub fn arr_of<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// An object field, if it is one.
pub fn obj_of<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

/// A boolean field, `false` when absent.
pub fn bool_of(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// `v[key]` as a mutable object, created (or replaced when not an object) if needed.
pub fn child_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    // Indexing an object inserts the key when missing.
    let c = &mut v[key];
    if !c.is_object() {
        *c = json!({});
    }
    c
}

/// Sets `v[key]` when `v` is an object (objects from the store always are).
pub fn set_field(v: &mut Value, key: &str, value: Value) {
    if let Some(m) = v.as_object_mut() {
        m.insert(key.to_string(), value);
    }
}

/// Sets `v[key]` when it is absent or null.
pub fn set_default(v: &mut Value, key: &str, value: Value) {
    if let Some(m) = v.as_object_mut() {
        match m.get(key) {
            Some(x) if !x.is_null() => {}
            _ => {
                m.insert(key.to_string(), value);
            }
        }
    }
}

/// Sets `v[key]` when it is absent, null or an empty string.
pub fn set_default_str(v: &mut Value, key: &str, value: &str) {
    if let Some(m) = v.as_object_mut() {
        let empty = match m.get(key) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if empty {
            m.insert(key.to_string(), json!(value));
        }
    }
}

/// Applies `f` to every element of the array at `v[key]`, if any.
pub fn each_mut(v: &mut Value, key: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(items) = v.get_mut(key).and_then(Value::as_array_mut) {
        items.iter_mut().for_each(&mut f);
    }
}

/// Removes `key` from an object.
pub fn remove(v: &mut Value, key: &str) {
    if let Some(m) = v.as_object_mut() {
        m.remove(key);
    }
}

/// An integer field (whole JSON numbers only).
pub fn int_of(v: &Value, key: &str) -> Option<i64> {
    let n = get(v, key)?;
    n.as_i64()
        .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
}

/// Equality as upstream's `apiequality.Semantic`: absent, null and empty strings, lists and
/// maps are all the zero value; numbers compare by value.
pub fn semantic_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    fn zero(v: Option<&Value>) -> bool {
        match v {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            _ => false,
        }
    }
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => x
            .keys()
            .chain(y.keys())
            .all(|k| semantic_eq(x.get(k), y.get(k))),
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| semantic_eq(Some(p), Some(q)))
        }
        (Some(Value::Number(x)), Some(Value::Number(y))) => match (x.as_i64(), y.as_i64()) {
            (Some(p), Some(q)) => p == q,
            _ => x.as_f64() == y.as_f64(),
        },
        _ if zero(a) && zero(b) => true,
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// String formats, as upstream's k8s.io/apimachinery/pkg/util/validation.

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const CONFIG_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_KEY_ERR: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const PERCENT_FMT: &str = "[0-9]+%";
const PERCENT_ERR: &str =
    "a valid percent string must be a numeric string followed by an ending '%'";

/// `must be no more than N characters`.
pub fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// A regex failure worded as upstream's `RegexError` (note the doubled space before `or`).
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut s = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        s.push_str(&format!("'{e}', "));
    }
    s.push_str(&format!("regex used for validation is '{fmt}')"));
    s
}

/// `must be between LO and HI, inclusive`.
pub fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

fn matches_dns_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns_label)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn matches_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

/// Errors for a DNS (RFC 1123) label.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !matches_dns_label(value) {
        if matches_dns_subdomain(value) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// Errors for a DNS (RFC 1123) subdomain.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !matches_dns_subdomain(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Errors for a DNS (RFC 1035) label, as service names must be.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    let starts_alpha = value.as_bytes().first().is_some_and(u8::is_ascii_lowercase);
    if !(starts_alpha && matches_dns_label(value)) {
        errs.push(regex_error(
            DNS1035_LABEL_ERR,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Errors for a qualified name (label keys, annotation keys, finalizers).
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            )]
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !matches_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Errors for a label value.
pub fn is_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !value.is_empty() && !matches_qualified_name_part(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

fn chdir_prefix_errors(value: &str) -> Option<String> {
    match value {
        "." => Some("must not be '.'".into()),
        ".." => Some("must not be '..'".into()),
        _ if value.starts_with("..") => Some("must not start with '..'".into()),
        _ => None,
    }
}

/// Errors for a ConfigMap or Secret key.
pub fn is_config_map_key(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push(max_len_error(253));
    }
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_');
    if !ok {
        errs.push(regex_error(
            CONFIG_KEY_ERR,
            CONFIG_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    errs.extend(chdir_prefix_errors(value));
    errs
}

/// Errors for a port number (1-65535).
pub fn is_valid_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

/// Errors for a named port (IANA_SVC_NAME).
pub fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    if port.is_empty()
        || !port
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !port.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// Errors for an environment variable name (the relaxed rule: printable ASCII but '=').
pub fn is_env_var_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.is_empty() {
        errs.push("environment variable name must be non-empty".into());
    }
    if value.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        errs.push(
            "a valid environment variable name must consist only of printable ASCII characters other than '='"
                .into(),
        );
    }
    errs
}

/// Errors for a percentage such as `25%`.
pub fn is_valid_percent(value: &str) -> Vec<String> {
    let ok = value
        .strip_suffix('%')
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()));
    if ok {
        Vec::new()
    } else {
        vec![regex_error(PERCENT_ERR, PERCENT_FMT, &["1%", "93%"])]
    }
}

/// An IPv4 or IPv6 address.
pub fn is_valid_ip(value: &str) -> bool {
    value.parse::<std::net::IpAddr>().is_ok()
}

/// An IPv4 address in dotted form.
pub fn is_valid_ipv4(value: &str) -> bool {
    value.parse::<std::net::Ipv4Addr>().is_ok()
}

/// An IPv6 address.
pub fn is_valid_ipv6(value: &str) -> bool {
    value.parse::<std::net::Ipv6Addr>().is_ok()
}

/// A CIDR such as `10.0.0.0/24` or `fd00::/64`.
pub fn is_valid_cidr(value: &str) -> bool {
    let Some((ip, bits)) = value.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    if is_valid_ipv4(ip) {
        bits <= 32
    } else {
        is_valid_ipv6(ip) && bits <= 128
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata names.

/// generateName may end in '-': upstream masks it before checking the format.
fn mask_trailing_dash(name: &str, prefix: bool) -> String {
    if prefix && name.len() > 1 && name.ends_with('-') {
        format!("{}a", &name[..name.len() - 1])
    } else {
        name.to_string()
    }
}

/// Names that must be DNS subdomains (most resources).
pub fn name_is_dns_subdomain(name: &str, prefix: bool) -> Vec<String> {
    is_dns1123_subdomain(&mask_trailing_dash(name, prefix))
}

/// Names that must be DNS labels (namespaces).
pub fn name_is_dns_label(name: &str, prefix: bool) -> Vec<String> {
    is_dns1123_label(&mask_trailing_dash(name, prefix))
}

/// Names that must be DNS-1035 labels (services).
pub fn name_is_dns1035_label(name: &str, prefix: bool) -> Vec<String> {
    is_dns1035_label(&mask_trailing_dash(name, prefix))
}

/// Names that only have to be usable as a URL path segment (events).
pub fn validate_path_segment_name(name: &str, prefix: bool) -> Vec<String> {
    let mut errs = Vec::new();
    if !prefix && (name == "." || name == "..") {
        errs.push(format!("may not be '{name}'"));
    }
    for bad in ["/", "%"] {
        if name.contains(bad) {
            errs.push(format!("may not contain '{bad}'"));
        }
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// Field validators returning field errors.

/// Each message of `msgs` as an Invalid error at `path`.
pub fn invalid_each(path: &str, value: &str, msgs: Vec<String>) -> Vec<FieldError> {
    msgs.into_iter()
        .map(|m| FieldError::invalid(path, json!(value), m))
        .collect()
}

pub fn validate_dns1123_label(value: &str, path: &str) -> Vec<FieldError> {
    invalid_each(path, value, is_dns1123_label(value))
}

pub fn validate_dns1123_subdomain(value: &str, path: &str) -> Vec<FieldError> {
    invalid_each(path, value, is_dns1123_subdomain(value))
}

pub fn validate_qualified_name(value: &str, path: &str) -> Vec<FieldError> {
    invalid_each(path, value, is_qualified_name(value))
}

/// `must be greater than or equal to 0` for a negative integer at `v[key]`.
pub fn validate_nonnegative(v: &Value, key: &str, path: &str) -> Vec<FieldError> {
    match int_of(v, key) {
        Some(n) if n < 0 => vec![FieldError::invalid(path, json!(n), NEGATIVE_ERROR)],
        _ => Vec::new(),
    }
}

/// Label keys and values of a label map.
pub fn validate_labels(labels: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(map) = labels.and_then(Value::as_object) else {
        return errs;
    };
    for (k, v) in map {
        errs.extend(validate_qualified_name(k, path));
        let value = v.as_str().unwrap_or("");
        errs.extend(invalid_each(path, value, is_label_value(value)));
    }
    errs
}

/// Annotation keys (qualified names, case-insensitive) and their total size.
pub fn validate_annotations(annotations: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(map) = annotations.and_then(Value::as_object) else {
        return errs;
    };
    let mut size = 0;
    for (k, v) in map {
        errs.extend(invalid_each(path, k, is_qualified_name(&k.to_lowercase())));
        size += k.len() + v.as_str().map(str::len).unwrap_or(0);
    }
    if size > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// Upstream's `field.TooLong` with a byte limit.
pub fn too_long(path: &str, max: usize) -> FieldError {
    FieldError::new(
        crate::error::FieldErrorType::TooLong,
        path,
        format!("may not be more than {max} bytes"),
    )
}

/// A `metav1.LabelSelector`: matchLabels and matchExpressions.
pub fn validate_label_selector(selector: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(sel) = selector.filter(|s| !s.is_null()) else {
        return errs;
    };
    errs.extend(validate_labels(
        sel.get("matchLabels"),
        &format!("{path}.matchLabels"),
    ));
    for (i, expr) in arr_of(sel, "matchExpressions").iter().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        let values = arr_of(expr, "values");
        match str_of(expr, "operator") {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        format!("{p}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        format!("{p}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            op => errs.push(FieldError::invalid(
                format!("{p}.operator"),
                json!(op),
                "not a valid selector operator",
            )),
        }
        errs.extend(validate_qualified_name(
            str_of(expr, "key"),
            &format!("{p}.key"),
        ));
        for (j, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            errs.extend(invalid_each(
                &format!("{p}.values[{j}]"),
                v,
                is_label_value(v),
            ));
        }
    }
    errs
}

/// True when a label selector has neither matchLabels nor matchExpressions.
pub fn selector_is_empty(selector: &Value) -> bool {
    obj_of(selector, "matchLabels").is_none_or(Map::is_empty)
        && arr_of(selector, "matchExpressions").is_empty()
}

/// Whether a `metav1.LabelSelector` selects an object with these labels.
pub fn selector_matches(selector: &Value, labels: Option<&Value>) -> bool {
    let empty = Map::new();
    let labels = labels.and_then(Value::as_object).unwrap_or(&empty);
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let match_labels = obj_of(selector, "matchLabels")
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k).is_some() && label(k) == v.as_str());
    match_labels
        && arr_of(selector, "matchExpressions").iter().all(|e| {
            let key = str_of(e, "key");
            let mut values = arr_of(e, "values").iter().filter_map(Value::as_str);
            match str_of(e, "operator") {
                "In" => label(key).is_some_and(|l| values.any(|v| v == l)),
                "NotIn" => label(key).is_none_or(|l| values.all(|v| v != l)),
                "Exists" => label(key).is_some(),
                "DoesNotExist" => label(key).is_none(),
                _ => false,
            }
        })
}

/// Whether a plain `map[string]string` selector (services, RCs) matches labels.
pub fn map_selector_matches(selector: &Map<String, Value>, labels: Option<&Value>) -> bool {
    selector.iter().all(|(k, v)| {
        labels
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
            .is_some_and(|l| Some(l) == v.as_str())
    })
}

/// Upstream's `ValidateImmutableField`: `field is immutable` when the value changed.
pub fn validate_immutable_field(
    new: Option<&Value>,
    old: Option<&Value>,
    path: &str,
) -> Vec<FieldError> {
    if semantic_eq(new, old) {
        Vec::new()
    } else {
        vec![FieldError::invalid(
            path,
            new.cloned().unwrap_or(Value::Null),
            FIELD_IMMUTABLE,
        )]
    }
}

/// `metadata` of a new object: name format, namespace presence, labels, annotations, owner
/// references, finalizers. `namespaced` is `None` when the scope is not known here. A missing
/// name is reported by the caller (it also resolves generateName), so it is skipped here.
pub fn validate_object_meta(
    obj: &Value,
    namespaced: Option<bool>,
    name_fn: NameFn,
) -> Vec<FieldError> {
    let empty = json!({});
    let meta = obj.get("metadata").unwrap_or(&empty);
    validate_meta_at(meta, namespaced, name_fn, "metadata")
}

/// As [`validate_object_meta`] for metadata found at `path` (templates, embedded objects).
pub fn validate_meta_at(
    meta: &Value,
    namespaced: Option<bool>,
    name_fn: NameFn,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let generate_name = str_of(meta, "generateName");
    if !generate_name.is_empty() {
        errs.extend(invalid_each(
            &format!("{path}.generateName"),
            generate_name,
            name_fn(generate_name, true),
        ));
    }
    let name = str_of(meta, "name");
    if !name.is_empty() {
        errs.extend(invalid_each(
            &format!("{path}.name"),
            name,
            name_fn(name, false),
        ));
    }
    let namespace = str_of(meta, "namespace");
    match namespaced {
        Some(true) => {
            if namespace.is_empty() {
                errs.push(FieldError::required(format!("{path}.namespace"), ""));
            } else {
                errs.extend(invalid_each(
                    &format!("{path}.namespace"),
                    namespace,
                    name_is_dns_label(namespace, false),
                ));
            }
        }
        Some(false) if !namespace.is_empty() => {
            errs.push(FieldError::forbidden(
                format!("{path}.namespace"),
                "not allowed on this type",
            ));
        }
        _ => {}
    }
    errs.extend(validate_nonnegative(
        meta,
        "generation",
        &format!("{path}.generation"),
    ));
    errs.extend(validate_labels(
        meta.get("labels"),
        &format!("{path}.labels"),
    ));
    errs.extend(validate_annotations(
        meta.get("annotations"),
        &format!("{path}.annotations"),
    ));
    errs.extend(validate_owner_references(
        arr_of(meta, "ownerReferences"),
        &format!("{path}.ownerReferences"),
    ));
    for f in arr_of(meta, "finalizers") {
        let f = f.as_str().unwrap_or("");
        errs.extend(validate_qualified_name(f, &format!("{path}.finalizers")));
    }
    errs
}

fn validate_owner_references(refs: &[Value], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut first_controller = String::new();
    for r in refs {
        let api_version = str_of(r, "apiVersion");
        let version = api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.apiVersion"),
                json!(api_version),
                "version must not be empty",
            ));
        }
        for (f, msg) in [
            ("kind", "must not be empty"),
            ("name", "must not be empty"),
            ("uid", "must not be empty"),
        ] {
            if str_of(r, f).is_empty() {
                errs.push(FieldError::invalid(
                    format!("{path}.{f}"),
                    json!(str_of(r, f)),
                    msg,
                ));
            }
        }
        if bool_of(r, "controller") {
            let cur = format!("{}/{}", str_of(r, "kind"), str_of(r, "name"));
            if first_controller.is_empty() {
                first_controller = cur;
            } else {
                errs.push(FieldError::invalid(
                    path,
                    Value::Array(refs.to_vec()),
                    format!("Only one reference can have Controller set to true. Found \"true\" in references for {first_controller} and {cur}"),
                ));
            }
        }
    }
    errs
}

/// What an update may not change in metadata (name, namespace, uid, creationTimestamp), and no
/// new finalizers once deletion started. Labels and annotations are checked by `validate`.
pub fn validate_object_meta_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let empty = json!({});
    let nm = new.get("metadata").unwrap_or(&empty);
    let om = old.get("metadata").unwrap_or(&empty);
    let mut errs = Vec::new();
    if get(om, "deletionTimestamp").is_some() {
        let old_f: Vec<&str> = arr_of(om, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut extra: Vec<&str> = arr_of(nm, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .filter(|f| !old_f.contains(f))
            .collect();
        extra.sort_unstable();
        extra.dedup();
        if !extra.is_empty() {
            let list: Vec<String> = extra.iter().map(|f| format!("{f:?}")).collect();
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    list.join(", ")
                ),
            ));
        }
    }
    for f in ["name", "namespace", "uid", "creationTimestamp"] {
        errs.extend(validate_immutable_field(
            nm.get(f),
            om.get(f),
            &format!("metadata.{f}"),
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_are_checked_without_regexes() {
        struct Case {
            name: &'static str,
            value: &'static str,
            errors: usize,
        }
        let cases = [
            Case {
                name: "simple",
                value: "my-name",
                errors: 0,
            },
            Case {
                name: "digits first",
                value: "123-abc",
                errors: 0,
            },
            Case {
                name: "upper case",
                value: "MyName",
                errors: 1,
            },
            Case {
                name: "trailing dash",
                value: "abc-",
                errors: 1,
            },
            Case {
                name: "dots",
                value: "a.b",
                errors: 1,
            },
            Case {
                name: "empty",
                value: "",
                errors: 1,
            },
            Case {
                name: "too long",
                value: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                errors: 1,
            },
        ];
        for c in cases {
            assert_eq!(is_dns1123_label(c.value).len(), c.errors, "{}", c.name);
        }
        assert_eq!(
            is_dns1123_label("a.b"),
            vec!["must not contain dots".to_string()]
        );
    }

    #[test]
    fn label_message_matches_upstream_wording() {
        assert_eq!(
            is_dns1123_label("A")[0],
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        );
    }

    #[test]
    fn subdomains_and_1035_labels_follow_their_rules() {
        struct Case {
            name: &'static str,
            value: &'static str,
            subdomain_ok: bool,
            dns1035_ok: bool,
        }
        let cases = [
            Case {
                name: "dotted",
                value: "example.com",
                subdomain_ok: true,
                dns1035_ok: false,
            },
            Case {
                name: "leading digit",
                value: "1abc",
                subdomain_ok: true,
                dns1035_ok: false,
            },
            Case {
                name: "plain",
                value: "web",
                subdomain_ok: true,
                dns1035_ok: true,
            },
            Case {
                name: "empty segment",
                value: "a..b",
                subdomain_ok: false,
                dns1035_ok: false,
            },
            Case {
                name: "underscore",
                value: "a_b",
                subdomain_ok: false,
                dns1035_ok: false,
            },
        ];
        for c in cases {
            assert_eq!(
                is_dns1123_subdomain(c.value).is_empty(),
                c.subdomain_ok,
                "{}",
                c.name
            );
            assert_eq!(
                is_dns1035_label(c.value).is_empty(),
                c.dns1035_ok,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn qualified_names_allow_one_prefix() {
        struct Case {
            name: &'static str,
            value: &'static str,
            errors: Vec<&'static str>,
        }
        let cases = [
            Case {
                name: "plain",
                value: "app",
                errors: vec![],
            },
            Case {
                name: "prefixed",
                value: "example.com/App_1",
                errors: vec![],
            },
            Case {
                name: "empty prefix",
                value: "/app",
                errors: vec!["prefix part must be non-empty"],
            },
            Case {
                name: "empty name",
                value: "example.com/",
                errors: vec!["name part must be non-empty", "name part must consist"],
            },
            Case {
                name: "two slashes",
                value: "a/b/c",
                errors: vec!["a qualified name must consist"],
            },
            Case {
                name: "bad start",
                value: "-app",
                errors: vec!["name part must consist"],
            },
        ];
        for c in cases {
            let got = is_qualified_name(c.value);
            assert_eq!(got.len(), c.errors.len(), "{}: {got:?}", c.name);
            for (g, want) in got.iter().zip(&c.errors) {
                assert!(g.starts_with(want), "{}: {g}", c.name);
            }
        }
    }

    #[test]
    fn label_values_may_be_empty() {
        struct Case {
            name: &'static str,
            value: &'static str,
            ok: bool,
        }
        let cases = [
            Case {
                name: "empty",
                value: "",
                ok: true,
            },
            Case {
                name: "mixed",
                value: "My_value.1",
                ok: true,
            },
            Case {
                name: "space",
                value: "a b",
                ok: false,
            },
            Case {
                name: "trailing dot",
                value: "a.",
                ok: false,
            },
        ];
        for c in cases {
            assert_eq!(is_label_value(c.value).is_empty(), c.ok, "{}", c.name);
        }
    }

    #[test]
    fn config_keys_reject_dot_prefixes() {
        struct Case {
            name: &'static str,
            value: &'static str,
            errors: usize,
        }
        let cases = [
            Case {
                name: "dotted",
                value: "app.properties",
                errors: 0,
            },
            Case {
                name: "dot",
                value: ".",
                errors: 1,
            },
            Case {
                name: "dotdot prefix",
                value: "..data",
                errors: 1,
            },
            Case {
                name: "slash",
                value: "a/b",
                errors: 1,
            },
        ];
        for c in cases {
            assert_eq!(is_config_map_key(c.value).len(), c.errors, "{}", c.name);
        }
    }

    #[test]
    fn port_names_need_a_letter() {
        struct Case {
            name: &'static str,
            value: &'static str,
            ok: bool,
        }
        let cases = [
            Case {
                name: "http",
                value: "http",
                ok: true,
            },
            Case {
                name: "digits only",
                value: "8080",
                ok: false,
            },
            Case {
                name: "double hyphen",
                value: "a--b",
                ok: false,
            },
            Case {
                name: "too long",
                value: "abcdefghijklmnop",
                ok: false,
            },
        ];
        for c in cases {
            assert_eq!(is_valid_port_name(c.value).is_empty(), c.ok, "{}", c.name);
        }
    }

    #[test]
    fn object_meta_requires_namespace_only_when_namespaced() {
        struct Case {
            name: &'static str,
            obj: Value,
            namespaced: Option<bool>,
            fields: Vec<&'static str>,
        }
        let cases = [
            Case {
                name: "namespaced ok",
                obj: json!({"metadata": {"name": "a", "namespace": "ns"}}),
                namespaced: Some(true),
                fields: vec![],
            },
            Case {
                name: "namespaced missing",
                obj: json!({"metadata": {"name": "a"}}),
                namespaced: Some(true),
                fields: vec!["metadata.namespace"],
            },
            Case {
                name: "cluster with namespace",
                obj: json!({"metadata": {"name": "a", "namespace": "ns"}}),
                namespaced: Some(false),
                fields: vec!["metadata.namespace"],
            },
            Case {
                name: "bad name and label",
                obj: json!({"metadata": {"name": "A", "labels": {"k": "bad value"}}}),
                namespaced: None,
                fields: vec!["metadata.name", "metadata.labels"],
            },
            Case {
                name: "generateName with dash",
                obj: json!({"metadata": {"generateName": "web-"}}),
                namespaced: None,
                fields: vec![],
            },
            Case {
                name: "two controllers",
                obj: json!({"metadata": {"name": "a", "ownerReferences": [
                {"apiVersion": "v1", "kind": "A", "name": "x", "uid": "1", "controller": true},
                {"apiVersion": "v1", "kind": "B", "name": "y", "uid": "2", "controller": true}]}}),
                namespaced: None,
                fields: vec!["metadata.ownerReferences"],
            },
        ];
        for c in cases {
            let errs = validate_object_meta(&c.obj, c.namespaced, name_is_dns_subdomain);
            let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(fields, c.fields, "{}", c.name);
        }
    }

    #[test]
    fn oversized_annotations_are_too_long() {
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let obj = json!({"metadata": {"name": "a", "annotations": {"k": big}}});
        let errs = validate_object_meta(&obj, None, name_is_dns_subdomain);
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].message(),
            "metadata.annotations: Too long: may not be more than 262144 bytes"
        );
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        struct Case {
            name: &'static str,
            selector: Value,
            matches: bool,
        }
        let labels = json!({"app": "web", "tier": "fe"});
        let cases = [
            Case {
                name: "match labels",
                selector: json!({"matchLabels": {"app": "web"}}),
                matches: true,
            },
            Case {
                name: "wrong value",
                selector: json!({"matchLabels": {"app": "db"}}),
                matches: false,
            },
            Case {
                name: "in",
                selector: json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]}),
                matches: true,
            },
            Case {
                name: "not in",
                selector: json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["fe"]}]}),
                matches: false,
            },
            Case {
                name: "exists",
                selector: json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}),
                matches: true,
            },
            Case {
                name: "does not exist",
                selector: json!({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}),
                matches: true,
            },
        ];
        for c in cases {
            assert_eq!(
                selector_matches(&c.selector, Some(&labels)),
                c.matches,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn selector_validation_reports_operator_problems() {
        let sel = json!({"matchExpressions": [
            {"key": "a", "operator": "In"},
            {"key": "b", "operator": "Exists", "values": ["x"]},
            {"key": "c", "operator": "Has"}]});
        let errs = validate_label_selector(Some(&sel), "spec.selector");
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.selector.matchExpressions[0].values",
                "spec.selector.matchExpressions[1].values",
                "spec.selector.matchExpressions[2].operator"
            ]
        );
    }

    #[test]
    fn semantic_equality_treats_empty_as_absent() {
        struct Case {
            name: &'static str,
            a: Option<Value>,
            b: Option<Value>,
            eq: bool,
        }
        let cases = [
            Case {
                name: "absent vs empty map",
                a: None,
                b: Some(json!({})),
                eq: true,
            },
            Case {
                name: "empty string vs null",
                a: Some(json!("")),
                b: Some(Value::Null),
                eq: true,
            },
            Case {
                name: "int vs float",
                a: Some(json!(1)),
                b: Some(json!(1.0)),
                eq: true,
            },
            Case {
                name: "nested empty list",
                a: Some(json!({"a": []})),
                b: Some(json!({})),
                eq: true,
            },
            Case {
                name: "zero vs absent",
                a: Some(json!(0)),
                b: None,
                eq: false,
            },
            Case {
                name: "different strings",
                a: Some(json!("a")),
                b: Some(json!("b")),
                eq: false,
            },
        ];
        for c in cases {
            assert_eq!(semantic_eq(c.a.as_ref(), c.b.as_ref()), c.eq, "{}", c.name);
        }
    }

    #[test]
    fn metadata_updates_keep_identity_and_finalizers() {
        let old = json!({"metadata": {"name": "a", "uid": "1", "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["x/a"]}});
        let new = json!({"metadata": {"name": "b", "uid": "1", "finalizers": ["x/a", "x/b"]}});
        let errs = validate_object_meta_update(&new, &old);
        let msgs: Vec<String> = errs.iter().map(FieldError::message).collect();
        assert_eq!(
            msgs,
            vec![
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"x/b\"}".to_string(),
                "metadata.name: Invalid value: \"b\": field is immutable".to_string(),
            ]
        );
    }
}
