//! Resource quantities (`100m`, `1Gi`, `1.5`, `2e3`): parsing, comparison and canonical form.

use std::cmp::Ordering;

use serde_json::{json, Map, Value};

use crate::error::FieldError;
use crate::registry::validation::{is_qualified_name, NEGATIVE_ERROR};

/// Upstream's `ErrFormatWrong`.
pub const ERR_FORMAT_WRONG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
/// Upstream's `ErrNumeric`.
pub const ERR_NUMERIC: &str = "unable to parse numeric part of quantity";
/// Upstream's `ErrSuffix`.
pub const ERR_SUFFIX: &str = "unable to parse quantity's suffix";

/// How a quantity was written, which decides how it is printed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

/// A quantity as an exact count of nano-units (values finer than 1n round up, as upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    pub nanos: i128,
    pub format: Format,
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    pub fn zero() -> Self {
        Self {
            nanos: 0,
            format: Format::DecimalSI,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Whole units and nothing finer.
    pub fn is_integer(&self) -> bool {
        self.nanos % NANO == 0
    }

    /// The sum, keeping this quantity's format.
    pub fn add(&self, other: &Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_add(other.nanos),
            format: self.format,
        }
    }

    /// Upstream's `Quantity.String()`: the canonical form (`1500m`, `2k`, `1536Mi`, `1e3`).
    pub fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".into();
        }
        let mut format = self.format;
        if format == Format::BinarySI && (self.nanos.abs() < 1024 * NANO || self.nanos % NANO != 0)
        {
            // Small or fractional binary values print as decimal, as upstream avoids rounding.
            format = Format::DecimalSI;
        }
        if format == Format::BinarySI {
            let mut amount = self.nanos / NANO;
            let mut exp = 0;
            while exp < 6 && amount % 1024 == 0 {
                amount /= 1024;
                exp += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp];
            return format!("{amount}{suffix}");
        }
        let mut amount = self.nanos;
        let mut exp: i32 = -9;
        while amount % 10 == 0 {
            amount /= 10;
            exp += 1;
        }
        match exp.rem_euclid(3) {
            1 => {
                amount *= 10;
                exp -= 1;
            }
            2 => {
                amount *= 100;
                exp -= 2;
            }
            _ => {}
        }
        let suffix = match format {
            Format::DecimalExponent => {
                if exp == 0 {
                    String::new()
                } else {
                    format!("e{exp}")
                }
            }
            _ => match exp {
                -9 => "n".into(),
                -6 => "u".into(),
                -3 => "m".into(),
                3 => "k".into(),
                6 => "M".into(),
                9 => "G".into(),
                12 => "T".into(),
                15 => "P".into(),
                18 => "E".into(),
                _ => String::new(),
            },
        };
        format!("{amount}{suffix}")
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

/// Splits `[+-]digits[.digits]suffix` as upstream's `parseQuantityString`.
fn split(s: &str) -> Result<(bool, &str, &str, &str), &'static str> {
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut positive = true;
    if pos < end {
        match b[0] {
            b'-' => {
                positive = false;
                pos += 1;
            }
            b'+' => pos += 1,
            _ => {}
        }
    }
    let num_start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let num = &s[num_start..pos];
    let mut denom = "";
    if pos < end && b[pos] == b'.' {
        pos += 1;
        let d = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[d..pos];
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && (b[pos] == b'-' || b[pos] == b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos != end {
        return Err(ERR_FORMAT_WRONG);
    }
    Ok((positive, num, denom, &s[suffix_start..]))
}

/// Parses a quantity string as upstream's `resource.ParseQuantity`.
pub fn parse(s: &str) -> Result<Quantity, &'static str> {
    if s.is_empty() {
        return Err(ERR_FORMAT_WRONG);
    }
    let (positive, num, denom, suffix) = split(s)?;
    if num.is_empty() && denom.is_empty() {
        return Err(ERR_NUMERIC);
    }
    // (base 2 exponent in units of 10 bits, or base 10 exponent)
    let (binary, exp, format): (bool, i64, Format) = match suffix {
        "" => (false, 0, Format::DecimalSI),
        "n" => (false, -9, Format::DecimalSI),
        "u" => (false, -6, Format::DecimalSI),
        "m" => (false, -3, Format::DecimalSI),
        "k" => (false, 3, Format::DecimalSI),
        "M" => (false, 6, Format::DecimalSI),
        "G" => (false, 9, Format::DecimalSI),
        "T" => (false, 12, Format::DecimalSI),
        "P" => (false, 15, Format::DecimalSI),
        "E" => (false, 18, Format::DecimalSI),
        "Ki" => (true, 1, Format::BinarySI),
        "Mi" => (true, 2, Format::BinarySI),
        "Gi" => (true, 3, Format::BinarySI),
        "Ti" => (true, 4, Format::BinarySI),
        "Pi" => (true, 5, Format::BinarySI),
        "Ei" => (true, 6, Format::BinarySI),
        _ if suffix.len() > 1 && (suffix.starts_with('e') || suffix.starts_with('E')) => {
            let e: i64 = suffix[1..].parse().map_err(|_| ERR_SUFFIX)?;
            (false, e, Format::DecimalExponent)
        }
        _ => return Err(ERR_SUFFIX),
    };
    // digits of num.denom as an integer scaled by 10^-len(denom)
    let digits = format!("{num}{denom}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 36 {
        return Err(ERR_NUMERIC);
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| ERR_NUMERIC)?
    };
    let mut scale10 = 9 - denom.len() as i64;
    let mut value = mantissa;
    if binary {
        for _ in 0..exp {
            value = value.checked_mul(1024).ok_or(ERR_NUMERIC)?;
        }
    } else {
        scale10 += exp;
    }
    let nanos = if scale10 >= 0 {
        let mut v = value;
        for _ in 0..scale10 {
            v = v.checked_mul(10).ok_or(ERR_NUMERIC)?;
        }
        v
    } else {
        // Finer than a nano-unit: round up, as upstream does.
        let mut div: i128 = 1;
        for _ in 0..(-scale10).min(38) {
            div = div.saturating_mul(10);
        }
        let q = value / div;
        if value % div != 0 {
            q + 1
        } else {
            q
        }
    };
    Ok(Quantity {
        nanos: if positive { nanos } else { -nanos },
        format,
    })
}

/// A quantity from JSON: a string, or a number as YAML manifests often write (`cpu: 1`).
pub fn from_value(v: &Value) -> Result<Quantity, &'static str> {
    match v {
        Value::String(s) => parse(s.trim()),
        Value::Number(n) => parse(&n.to_string()),
        _ => Err(ERR_FORMAT_WRONG),
    }
}

/// Rewrites every quantity of a resource list in canonical form, as upstream's decode and
/// encode round trip does (`1.5Gi` is stored as `1536Mi`, `cpu: 1` as `"1"`).
pub fn canonicalize_list(list: Option<&mut Value>) {
    let Some(Value::Object(m)) = list else {
        return;
    };
    for v in m.values_mut() {
        if let Ok(q) = from_value(v) {
            *v = json!(q.canonical());
        }
    }
}

/// Quantities of a resource list by name; unparsable entries are left out.
pub fn list(v: Option<&Value>) -> Vec<(String, Quantity)> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), from_value(v).ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The quantity at `list[name]`, if valid.
pub fn lookup(list: Option<&Value>, name: &str) -> Option<Quantity> {
    from_value(list?.get(name)?).ok()
}

/// Parse errors as a field error at `path`.
pub fn validate_format(v: &Value, path: &str) -> Result<Quantity, FieldError> {
    from_value(v).map_err(|e| FieldError::invalid(path, v.clone(), e))
}

/// Native resource names: no domain, or a `kubernetes.io` domain.
pub fn is_native(name: &str) -> bool {
    match name.split_once('/') {
        None => true,
        Some((domain, _)) => domain.contains("kubernetes.io"),
    }
}

/// Resources counted in whole units: extended resources and object counts.
pub fn is_integer_resource(name: &str) -> bool {
    const STANDARD_INTEGER: &[&str] = &[
        "pods",
        "services",
        "replicationcontrollers",
        "resourcequotas",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "services.nodeports",
        "services.loadbalancers",
    ];
    STANDARD_INTEGER.contains(&name)
        || name.starts_with("count/")
        || (!is_native(name) && !name.starts_with("requests."))
}

/// Standard names valid in quotas, limit ranges and node status.
pub fn is_standard_resource(name: &str) -> bool {
    const STANDARD: &[&str] = &[
        "cpu",
        "memory",
        "ephemeral-storage",
        "requests.cpu",
        "requests.memory",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
        "pods",
        "services",
        "replicationcontrollers",
        "resourcequotas",
        "secrets",
        "persistentvolumeclaims",
        "configmaps",
        "storage",
        "requests.storage",
        "services.nodeports",
        "services.loadbalancers",
    ];
    STANDARD.contains(&name)
        || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
}

/// Upstream's `validateResourceName`: a qualified name, and standard when not prefixed.
pub fn validate_resource_name(name: &str, path: &str) -> Vec<FieldError> {
    let mut errs: Vec<FieldError> = is_qualified_name(name)
        .into_iter()
        .map(|m| FieldError::invalid(path, json!(name), m))
        .collect();
    if errs.is_empty() && !name.contains('/') && !is_standard_resource(name) {
        errs.push(FieldError::invalid(
            path,
            json!(name),
            "must be a standard resource type or fully qualified",
        ));
    }
    errs
}

/// Upstream's `validateContainerResourceName`.
pub fn validate_container_resource_name(name: &str, path: &str) -> Vec<FieldError> {
    let mut errs: Vec<FieldError> = is_qualified_name(name)
        .into_iter()
        .map(|m| FieldError::invalid(path, json!(name), m))
        .collect();
    if !errs.is_empty() {
        return errs;
    }
    if !name.contains('/') {
        let standard = matches!(name, "cpu" | "memory" | "ephemeral-storage")
            || name.starts_with("hugepages-");
        if !standard {
            errs.push(FieldError::invalid(
                path,
                json!(name),
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native(name) {
        let (domain, rest) = name.split_once('/').unwrap_or((name, ""));
        // Extended resources need a domain outside kubernetes.io and no "requests." prefix.
        if domain.is_empty() || rest.is_empty() || name.starts_with("requests.") {
            errs.push(FieldError::invalid(
                path,
                json!(name),
                "doesn't follow extended resource name standard",
            ));
        }
    }
    errs
}

/// Upstream's `ValidateResourceQuantityValue`: parsable, not negative, whole when it must be.
pub fn validate_quantity_value(name: &str, v: &Value, path: &str) -> Vec<FieldError> {
    match validate_format(v, path) {
        Err(e) => vec![e],
        Ok(q) => {
            let mut errs = Vec::new();
            if q.nanos < 0 {
                errs.push(FieldError::invalid(
                    path,
                    json!(q.canonical()),
                    NEGATIVE_ERROR,
                ));
            }
            if is_integer_resource(name) && !q.is_integer() {
                errs.push(FieldError::invalid(
                    path,
                    json!(q.canonical()),
                    "must be an integer",
                ));
            }
            errs
        }
    }
}

/// Names and values of a resource list (`spec.hard`, `status.capacity`, ...).
pub fn validate_resource_list(list: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Map::new();
    for (k, v) in list.and_then(Value::as_object).unwrap_or(&empty) {
        let p = format!("{path}[{k}]");
        errs.extend(validate_resource_name(k, &p));
        errs.extend(validate_quantity_value(k, v, &p));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_to_nano_units() {
        struct Case {
            name: &'static str,
            input: &'static str,
            nanos: i128,
            canonical: &'static str,
        }
        let cases = [
            Case {
                name: "millicores",
                input: "100m",
                nanos: 100_000_000,
                canonical: "100m",
            },
            Case {
                name: "whole milli",
                input: "1000m",
                nanos: NANO,
                canonical: "1",
            },
            Case {
                name: "gibibytes",
                input: "1Gi",
                nanos: (1 << 30) * NANO,
                canonical: "1Gi",
            },
            Case {
                name: "fractional binary",
                input: "1.5Gi",
                nanos: 1536 * (1 << 20) * NANO,
                canonical: "1536Mi",
            },
            Case {
                name: "decimal fraction",
                input: "1.5",
                nanos: 1_500_000_000,
                canonical: "1500m",
            },
            Case {
                name: "exponent",
                input: "2e3",
                nanos: 2000 * NANO,
                canonical: "2e3",
            },
            Case {
                name: "thousand",
                input: "2000",
                nanos: 2000 * NANO,
                canonical: "2k",
            },
            Case {
                name: "not a multiple of 1000",
                input: "1500",
                nanos: 1500 * NANO,
                canonical: "1500",
            },
            Case {
                name: "small binary",
                input: "512Ki",
                nanos: 512 * 1024 * NANO,
                canonical: "512Ki",
            },
            Case {
                name: "half kibi",
                input: "0.5Ki",
                nanos: 512 * NANO,
                canonical: "512",
            },
            Case {
                name: "zero",
                input: "0",
                nanos: 0,
                canonical: "0",
            },
            Case {
                name: "negative",
                input: "-1",
                nanos: -NANO,
                canonical: "-1",
            },
            Case {
                name: "rounds up below nano",
                input: "0.0000000001",
                nanos: 1,
                canonical: "1n",
            },
            Case {
                name: "leading dot",
                input: ".5",
                nanos: 500_000_000,
                canonical: "500m",
            },
        ];
        for c in cases {
            let q = parse(c.input).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(q.nanos, c.nanos, "{}", c.name);
            assert_eq!(q.canonical(), c.canonical, "{}", c.name);
        }
    }

    #[test]
    fn malformed_quantities_report_upstream_errors() {
        struct Case {
            name: &'static str,
            input: &'static str,
            err: &'static str,
        }
        let cases = [
            Case {
                name: "empty",
                input: "",
                err: ERR_FORMAT_WRONG,
            },
            Case {
                name: "letters",
                input: "abc",
                err: ERR_FORMAT_WRONG,
            },
            Case {
                name: "unit word",
                input: "1kb",
                err: ERR_FORMAT_WRONG,
            },
            Case {
                name: "unknown suffix",
                input: "1mi",
                err: ERR_SUFFIX,
            },
            Case {
                name: "bare e",
                input: "1e",
                err: ERR_SUFFIX,
            },
            Case {
                name: "only dot",
                input: ".",
                err: ERR_NUMERIC,
            },
            Case {
                name: "two dots",
                input: "1.2.3",
                err: ERR_FORMAT_WRONG,
            },
        ];
        for c in cases {
            assert_eq!(parse(c.input), Err(c.err), "{}", c.name);
        }
    }

    #[test]
    fn json_numbers_are_quantities() {
        assert_eq!(
            from_value(&json!(1)).map(|q| q.canonical()),
            Ok("1".to_string())
        );
        assert_eq!(
            from_value(&json!(0.5)).map(|q| q.canonical()),
            Ok("500m".to_string())
        );
        let mut l = json!({"cpu": 2, "memory": "1.5Gi"});
        canonicalize_list(Some(&mut l));
        assert_eq!(l, json!({"cpu": "2", "memory": "1536Mi"}));
    }

    #[test]
    fn resource_values_must_be_positive_and_whole_when_counted() {
        struct Case {
            name: &'static str,
            resource: &'static str,
            value: Value,
            errors: usize,
        }
        let cases = [
            Case {
                name: "cpu fraction",
                resource: "cpu",
                value: json!("0.5"),
                errors: 0,
            },
            Case {
                name: "negative memory",
                resource: "memory",
                value: json!("-1Gi"),
                errors: 1,
            },
            Case {
                name: "fractional gpu",
                resource: "example.com/gpu",
                value: json!("0.5"),
                errors: 1,
            },
            Case {
                name: "fractional pods",
                resource: "pods",
                value: json!("1.5"),
                errors: 1,
            },
            Case {
                name: "garbage",
                resource: "cpu",
                value: json!("lots"),
                errors: 1,
            },
        ];
        for c in cases {
            assert_eq!(
                validate_quantity_value(c.resource, &c.value, "p").len(),
                c.errors,
                "{}",
                c.name
            );
        }
    }
}
