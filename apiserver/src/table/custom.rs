//! Tables of custom resources from a CRD version's `additionalPrinterColumns`.

use serde_json::{json, Value};

use super::{jsonpath, Column, CREATED_DESC, NAME};
use crate::object;

/// What a CRD version without printer columns is served with, as upstream defaults it.
fn default_columns() -> Vec<Value> {
    vec![json!({
        "name": "Age",
        "type": "date",
        "description": CREATED_DESC,
        "jsonPath": ".metadata.creationTimestamp",
    })]
}

/// The printer columns to serve: the CRD's own, or Age when it declares none.
fn effective(printer_columns: &[Value]) -> Vec<Value> {
    if printer_columns.is_empty() {
        default_columns()
    } else {
        printer_columns.to_vec()
    }
}

fn field<'a>(c: &'a Value, name: &str) -> &'a str {
    c.get(name).and_then(Value::as_str).unwrap_or("")
}

/// `Name` followed by the CRD version's `additionalPrinterColumns` (or `Age` when it has none).
pub fn custom_columns(printer_columns: &[Value]) -> Vec<Column> {
    let mut out = vec![NAME.column()];
    for c in effective(printer_columns) {
        let path = field(&c, "jsonPath");
        let description = match field(&c, "description") {
            "" => format!("Custom resource definition column (in JSONPath format): {path}"),
            d => d.to_string(),
        };
        out.push(Column {
            name: field(&c, "name").to_string(),
            type_: field(&c, "type").to_string(),
            format: field(&c, "format").to_string(),
            description,
            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0) as i32,
        });
    }
    out
}

/// The cells of a custom resource for [`custom_columns`]: each column's JSONPath evaluated on
/// the object, the first result typed by the column type; a missing value is a null cell.
pub fn custom_row(printer_columns: &[Value], obj: &Value) -> Vec<Value> {
    let mut cells = vec![json!(object::name(obj))];
    for c in effective(printer_columns) {
        let found = jsonpath::parse(field(&c, "jsonPath"))
            .ok()
            .and_then(|steps| jsonpath::eval(&steps, obj).into_iter().next().cloned());
        cells.push(found.map_or(Value::Null, |v| cell(field(&c, "type"), &v)));
    }
    cells
}

/// A found value as a cell of the column type, as upstream's `cellForJSONValue` converts it.
fn cell(type_: &str, value: &Value) -> Value {
    match (type_, value) {
        (_, Value::Null) => Value::Null,
        // String columns print whatever is there: scalars as text, objects and lists as JSON.
        ("string", Value::String(s)) => json!(s),
        ("string", other) => json!(other.to_string()),
        ("integer", Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, |i| json!(i)),
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, |f| json!(f)),
        ("boolean", Value::Bool(b)) => json!(b),
        ("date", Value::String(s)) => json!(date(s)),
        _ => Value::Null,
    }
}

/// A `date` cell: age since the time, `<unknown>` for the zero time, `<invalid>` if unparsable.
fn date(s: &str) -> String {
    if s.is_empty() || s == "null" {
        return "<unknown>".into();
    }
    match object::parse_rfc3339(s) {
        Some(_) => object::human_age(s),
        None => "<invalid>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<Value> {
        vec![
            json!({"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}),
            json!({"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status", "description": "Readiness"}),
            json!({"name": "First", "type": "string", "jsonPath": ".spec.list[0].name", "priority": 1}),
            json!({"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio"}),
            json!({"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused"}),
            json!({"name": "Selector", "type": "string", "jsonPath": ".spec.selector"}),
            json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}),
        ]
    }

    #[test]
    fn printer_columns_follow_name_in_declared_order() {
        let cols = custom_columns(&columns());
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["Name", "Replicas", "Ready", "First", "Ratio", "Paused", "Selector", "Age"]
        );
        assert_eq!(cols[0].format, "name");
        assert_eq!(
            cols[1].description,
            "Custom resource definition column (in JSONPath format): .spec.replicas"
        );
        assert_eq!(cols[2].description, "Readiness");
        assert_eq!(cols[3].priority, 1);
        assert_eq!(cols[7].type_, "date");
    }

    #[test]
    fn no_printer_columns_means_name_and_age() {
        let cols = custom_columns(&[]);
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Name", "Age"]);
        let obj = json!({"metadata": {"name": "w", "creationTimestamp": "2000-01-01T00:00:00Z"}});
        let cells = custom_row(&[], &obj);
        assert_eq!(cells[0], json!("w"));
        assert!(
            cells[1].as_str().is_some_and(|s| s.ends_with('y')),
            "{cells:?}"
        );
    }

    #[test]
    fn cells_are_typed_by_their_column() {
        let obj = json!({
            "metadata": {"name": "w", "creationTimestamp": "not a time"},
            "spec": {"replicas": 2.0, "list": [{"name": "x"}], "ratio": 1, "paused": "yes", "selector": {"app": "web"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        });
        let cells = custom_row(&columns(), &obj);
        assert_eq!(
            cells,
            vec![
                json!("w"),
                json!(2),
                json!("True"),
                json!("x"),
                json!(1.0),
                Value::Null,
                json!("{\"app\":\"web\"}"),
                json!("<invalid>"),
            ]
        );
    }

    #[test]
    fn missing_values_are_null_cells() {
        let cells = custom_row(&columns(), &json!({"metadata": {"name": "w"}}));
        assert_eq!(cells[0], json!("w"));
        assert!(cells[1..].iter().all(Value::is_null), "{cells:?}");
    }
}
