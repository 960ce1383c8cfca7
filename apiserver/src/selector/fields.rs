//! Field selectors: `spec.nodeName=n1,status.phase!=Failed` with upstream's `\,` `\=` `\\` escapes.

use std::fmt;

/// `=` and `==` mean the same; `!=` is the only other operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    Equals,
    NotEquals,
}

/// One `field op value` term, with the value unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub op: FieldOp,
    pub value: String,
}

/// A conjunction of field terms; empty selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses the query syntax as upstream's `fields.ParseSelector` does: terms split on
    /// unescaped commas and sorted, the field is everything before the first operator.
    pub fn parse(selector: &str) -> Result<Self, String> {
        let mut parts = split_terms(selector);
        parts.sort_unstable();
        let mut requirements = Vec::new();
        for part in parts.iter().filter(|p| !p.is_empty()) {
            let Some((field, op, raw)) = split_term(part) else {
                return Err(format!(
                    "invalid selector: '{selector}'; can't understand '{part}'"
                ));
            };
            requirements.push(FieldRequirement {
                field: field.to_string(),
                op,
                value: unescape_value(raw)?,
            });
        }
        Ok(Self { requirements })
    }

    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object's fields satisfy every term. A field without a value counts as the
    /// empty string, as upstream's `fields.Set` answers for missing keys.
    pub fn matches(&self, value_of: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let actual = value_of(&r.field).unwrap_or_default();
            (actual == r.value) == (r.op == FieldOp::Equals)
        })
    }

    /// The value a field must have to match, when an equality term pins it (`spec.nodeName`
    /// for the kubelet, `metadata.name` for `kubectl wait`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.op == FieldOp::Equals)
            .map(|r| r.value.as_str())
    }

    /// Rewrites every term (field label conversion); a term mapped to an empty field and value
    /// is dropped, as upstream's `Transform` does.
    pub fn transform(
        self,
        f: impl Fn(&str, &str) -> Result<(String, String), String>,
    ) -> Result<Self, String> {
        let mut requirements = Vec::with_capacity(self.requirements.len());
        for r in self.requirements {
            let (field, value) = f(&r.field, &r.value)?;
            if field.is_empty() && value.is_empty() {
                continue;
            }
            requirements.push(FieldRequirement {
                field,
                op: r.op,
                value,
            });
        }
        Ok(Self { requirements })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = if r.op == FieldOp::Equals { "=" } else { "!=" };
            write!(f, "{}{op}{}", r.field, escape_value(&r.value))?;
        }
        Ok(())
    }
}

/// Escapes `\`, `,` and `=` so a literal value survives [`FieldSelector::parse`].
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Splits on commas not preceded by a backslash; escapes stay in the terms.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// The first operator in the term splits it; `!=` and `==` are tried before `=` at each position.
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (lit, op) in [
            ("!=", FieldOp::NotEquals),
            ("==", FieldOp::Equals),
            ("=", FieldOp::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(lit) {
                return Some((&term[..i], op, value));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, String> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                ));
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Upstream formats the rune with %v, which prints its code point.
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                ))
            }
            c => out.push(c),
        }
    }
    if in_slash {
        return Err("invalid field selector: invalid escape sequence: \\".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Term<'a> = (&'a str, FieldOp, &'a str);

    #[test]
    fn terms_parse_with_escapes_and_operators() {
        let cases: &[(&str, &str, &[Term<'_>])] = &[
            ("empty", "", &[]),
            (
                "equals",
                "spec.nodeName=n1",
                &[("spec.nodeName", FieldOp::Equals, "n1")],
            ),
            ("double equals", "a==b", &[("a", FieldOp::Equals, "b")]),
            (
                "not equals",
                "status.phase!=Failed",
                &[("status.phase", FieldOp::NotEquals, "Failed")],
            ),
            (
                "terms are sorted",
                "b=2,a!=1",
                &[("a", FieldOp::NotEquals, "1"), ("b", FieldOp::Equals, "2")],
            ),
            ("escaped comma", r"a=x\,y", &[("a", FieldOp::Equals, "x,y")]),
            (
                "escaped equals",
                r"a=x\=y",
                &[("a", FieldOp::Equals, "x=y")],
            ),
            (
                "escaped backslash",
                r"a=x\\y",
                &[("a", FieldOp::Equals, r"x\y")],
            ),
            ("empty value", "a=", &[("a", FieldOp::Equals, "")]),
            (
                "empty terms are skipped",
                "a=1,,",
                &[("a", FieldOp::Equals, "1")],
            ),
        ];
        for (name, input, want) in cases {
            let sel = FieldSelector::parse(input).unwrap_or_else(|e| panic!("{name}: {e}"));
            let got: Vec<Term<'_>> = sel
                .requirements()
                .iter()
                .map(|r| (r.field.as_str(), r.op, r.value.as_str()))
                .collect();
            assert_eq!(got, *want, "{name}");
        }
    }

    #[test]
    fn bad_field_selectors_fail_with_upstream_messages() {
        let cases = [
            ("abc", "invalid selector: 'abc'; can't understand 'abc'"),
            ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
            (
                r"a=x\y",
                r"invalid field selector: invalid escape sequence: \y",
            ),
            (
                r"a=x\",
                r"invalid field selector: invalid escape sequence: \",
            ),
            (
                "a=x=y",
                "invalid field selector: unescaped character in value: 61",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                FieldSelector::parse(input),
                Err(want.to_string()),
                "{input}"
            );
        }
    }

    #[test]
    fn matching_treats_missing_fields_as_empty() {
        let sel = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed").expect("parse");
        let running_on_n1 = |f: &str| match f {
            "spec.nodeName" => Some("n1".to_string()),
            "status.phase" => Some("Running".to_string()),
            _ => None,
        };
        assert!(sel.matches(running_on_n1));
        assert!(!sel.matches(|f: &str| (f == "status.phase").then(|| "Failed".to_string())));
        let unscheduled = FieldSelector::parse("spec.nodeName=").expect("parse");
        assert!(unscheduled.matches(|_| None));
        assert_eq!(sel.requires_exact_match("spec.nodeName"), Some("n1"));
        assert_eq!(sel.requires_exact_match("status.phase"), None);
    }

    #[test]
    fn selectors_print_escaped_and_round_trip() {
        let sel = FieldSelector::parse(r"b!=x\,y,a==1").expect("parse");
        assert_eq!(sel.to_string(), r"a=1,b!=x\,y");
        assert_eq!(FieldSelector::parse(&sel.to_string()), Ok(sel));
    }

    #[test]
    fn transform_renames_and_drops_terms() {
        let sel = FieldSelector::parse("spec.host=n1,x=y").expect("parse");
        let out = sel
            .transform(|f, v| match f {
                "spec.host" => Ok(("spec.nodeName".into(), v.into())),
                _ => Ok((String::new(), String::new())),
            })
            .expect("transform");
        assert_eq!(out.to_string(), "spec.nodeName=n1");
    }
}
