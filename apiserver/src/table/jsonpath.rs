//! The JSONPath subset CRD printer columns use: fields, indexes, `[*]`, `..` and `[?(@.a=="b")]`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    Field(String),
    Index(i64),
    Slice(Option<i64>, Option<i64>),
    Wildcard,
    /// `..`: the current values and all their descendants.
    Descendants,
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Filter {
    /// The path after `@`.
    left: Vec<Step>,
    /// None tests only that the path exists.
    compare: Option<(Cmp, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Parses a path with or without the surrounding `{}` and leading `$`.
pub(crate) fn parse(path: &str) -> Result<Vec<Step>, String> {
    let mut s = path.trim();
    if let Some(inner) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        s = inner.trim();
    }
    s = s.strip_prefix('$').unwrap_or(s);
    let chars: Vec<char> = s.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' if chars.get(i + 1) == Some(&'.') => {
                steps.push(Step::Descendants);
                i += 2;
                if chars.get(i) != Some(&'[') {
                    i = field(&chars, i, &mut steps);
                }
            }
            '.' => i = field(&chars, i + 1, &mut steps),
            '[' => {
                let end =
                    closing_bracket(&chars, i).ok_or_else(|| format!("unclosed [ in {path:?}"))?;
                let inner: String = chars[i + 1..end].iter().collect();
                steps.push(bracket(inner.trim()).map_err(|e| format!("{e} in {path:?}"))?);
                i = end + 1;
            }
            // A path may start with a bare field name.
            _ if i == 0 => i = field(&chars, 0, &mut steps),
            c => return Err(format!("unexpected {c:?} in {path:?}")),
        }
    }
    Ok(steps)
}

/// Reads a field name up to the next unescaped `.` or `[`; `\` escapes one character.
fn field(chars: &[char], mut i: usize, steps: &mut Vec<Step>) -> usize {
    let mut name = String::new();
    while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
        if chars[i] == '\\' && i + 1 < chars.len() {
            i += 1;
        }
        name.push(chars[i]);
        i += 1;
    }
    match name.as_str() {
        "" => {}
        "*" => steps.push(Step::Wildcard),
        _ => steps.push(Step::Field(name)),
    }
    i
}

/// The `]` closing the `[` at `open`, skipping quoted text and nested brackets.
fn closing_bracket(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, &c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.trim();
    s.strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
}

fn bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(expr) = inner.strip_prefix('?') {
        let expr = expr
            .trim()
            .strip_prefix('(')
            .and_then(|e| e.strip_suffix(')'))
            .ok_or("filter must be ?(...)")?;
        return filter(expr.trim()).map(Step::Filter);
    }
    if let Some(name) = unquote(inner) {
        return Ok(Step::Field(name.to_string()));
    }
    if let Some((a, b)) = inner.split_once(':') {
        let bound = |s: &str| -> Result<Option<i64>, String> {
            let s = s.split(':').next().unwrap_or("").trim();
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse()
                    .map(Some)
                    .map_err(|_| format!("bad slice bound {s:?}"))
            }
        };
        return Ok(Step::Slice(bound(a)?, bound(b)?));
    }
    inner
        .parse()
        .map(Step::Index)
        .map_err(|_| format!("bad subscript {inner:?}"))
}

fn filter(expr: &str) -> Result<Filter, String> {
    let ops = [
        ("==", Cmp::Eq),
        ("!=", Cmp::Ne),
        ("<=", Cmp::Le),
        (">=", Cmp::Ge),
        ("<", Cmp::Lt),
        (">", Cmp::Gt),
    ];
    // The first operator outside quotes splits the expression.
    let mut quote: Option<char> = None;
    let mut split = None;
    'scan: for (i, c) in expr.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, _) => {
                for (lit, cmp) in ops {
                    if expr[i..].starts_with(lit) {
                        split = Some((i, lit.len(), cmp));
                        break 'scan;
                    }
                }
            }
        }
    }
    let (left, compare) = match split {
        Some((at, len, cmp)) => (
            expr[..at].trim(),
            Some((cmp, literal(expr[at + len..].trim())?)),
        ),
        None => (expr, None),
    };
    let left = left.strip_prefix('@').ok_or("filter must start with @")?;
    Ok(Filter {
        left: parse(left)?,
        compare,
    })
}

fn literal(s: &str) -> Result<Value, String> {
    if let Some(text) = unquote(s) {
        return Ok(Value::String(text.to_string()));
    }
    match s {
        "true" => Ok(Value::Bool(true)),
        "false" => Ok(Value::Bool(false)),
        "null" | "nil" => Ok(Value::Null),
        _ => serde_json::from_str::<serde_json::Number>(s)
            .map(Value::Number)
            .map_err(|_| format!("unsupported filter literal {s:?}")),
    }
}

/// Every value the path selects, in document order.
pub(crate) fn eval<'a>(steps: &[Step], root: &'a Value) -> Vec<&'a Value> {
    let mut current = vec![root];
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(name) => next.extend(v.get(name.as_str())),
                Step::Index(i) => {
                    if let Some(a) = v.as_array() {
                        let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                        next.extend(usize::try_from(idx).ok().and_then(|i| a.get(i)));
                    }
                }
                Step::Slice(start, end) => {
                    if let Some(a) = v.as_array() {
                        let len = a.len() as i64;
                        let clamp =
                            |b: i64| (if b < 0 { len + b } else { b }).clamp(0, len) as usize;
                        let (s, e) = (clamp(start.unwrap_or(0)), clamp(end.unwrap_or(len)));
                        if s < e {
                            next.extend(&a[s..e]);
                        }
                    }
                }
                Step::Wildcard => match v {
                    Value::Array(a) => next.extend(a),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Descendants => descendants(v, &mut next),
                Step::Filter(f) => {
                    if let Some(a) = v.as_array() {
                        next.extend(a.iter().filter(|item| f.matches(item)));
                    }
                }
            }
        }
        current = next;
    }
    current
}

fn descendants<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(v);
    match v {
        Value::Array(a) => a.iter().for_each(|c| descendants(c, out)),
        Value::Object(m) => m.values().for_each(|c| descendants(c, out)),
        _ => {}
    }
}

impl Filter {
    fn matches(&self, item: &Value) -> bool {
        let found = eval(&self.left, item);
        let Some((cmp, right)) = &self.compare else {
            return !found.is_empty();
        };
        found.iter().any(|left| compare(left, *cmp, right))
    }
}

/// Values of different types never compare; numbers compare as numbers, strings by bytes.
fn compare(left: &Value, cmp: Cmp, right: &Value) -> bool {
    use std::cmp::Ordering;
    let ord = match (left, right) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) if matches!(cmp, Cmp::Eq | Cmp::Ne) => Some(a.cmp(b)),
        (Value::Null, Value::Null) if matches!(cmp, Cmp::Eq | Cmp::Ne) => Some(Ordering::Equal),
        _ => None,
    };
    let Some(ord) = ord else {
        return false;
    };
    match cmp {
        Cmp::Eq => ord == Ordering::Equal,
        Cmp::Ne => ord != Ordering::Equal,
        Cmp::Lt => ord == Ordering::Less,
        Cmp::Le => ord != Ordering::Greater,
        Cmp::Gt => ord == Ordering::Greater,
        Cmp::Ge => ord != Ordering::Less,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_select_like_kubernetes_jsonpath() {
        let doc = json!({
            "metadata": {"name": "w", "labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"replicas": 3, "list": [{"name": "a", "n": 1}, {"name": "b", "n": 5}, {"name": "c", "n": 9}]},
            "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]},
        });
        let cases: &[(&str, Value)] = &[
            (".spec.replicas", json!([3])),
            ("{.spec.replicas}", json!([3])),
            ("$.metadata.name", json!(["w"])),
            (".spec.list[0].name", json!(["a"])),
            (".spec.list[-1].name", json!(["c"])),
            (".spec.list[*].name", json!(["a", "b", "c"])),
            (".spec.list[0:2].name", json!(["a", "b"])),
            (
                ".status.conditions[?(@.type==\"Ready\")].status",
                json!(["True"]),
            ),
            (
                ".status.conditions[?(@.type == 'Synced')].status",
                json!(["False"]),
            ),
            (".spec.list[?(@.n > 4)].name", json!(["b", "c"])),
            (".spec.list[?(@.n<=1)].name", json!(["a"])),
            (".spec.list[?(@.missing)].name", json!([])),
            (".metadata.labels['app.kubernetes.io/name']", json!(["web"])),
            (
                ".metadata.labels.app\\.kubernetes\\.io/name",
                json!(["web"]),
            ),
            ("..name", json!(["w", "a", "b", "c"])),
            (".spec.missing", json!([])),
            (".spec.replicas.deeper", json!([])),
            (".spec.list[7]", json!([])),
        ];
        for (path, want) in cases {
            let steps = parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let got: Vec<Value> = eval(&steps, &doc).into_iter().cloned().collect();
            assert_eq!(json!(got), *want, "{path}");
        }
    }

    #[test]
    fn malformed_paths_are_refused() {
        for path in [".a[", ".a[x]", ".a[?(b==1)]", ".a[?(@.b==c)]", ".a[1:x]"] {
            assert!(parse(path).is_err(), "{path}");
        }
    }
}
