//! Patches on JSON objects as kube-apiserver applies them: JSON patch, merge patch, strategic merge patch.

mod json;
mod merge;
mod strategic;

pub use json::json_patch;
pub use merge::merge_patch;
pub use strategic::strategic_merge_patch;

use serde_json::Value;

/// Upstream refuses JSON patches with more operations than this (413).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Why a patch could not be applied; [`PatchError::code`] gives upstream's HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// A JSON patch longer than [`MAX_JSON_PATCH_OPERATIONS`].
    #[error("The allowed maximum operations in a JSON patch is {max}, got {count}")]
    TooManyOperations { count: usize, max: usize },
    /// The patch is malformed: not the JSON shape its type requires, or a directive in a bad format.
    #[error("{0}")]
    Invalid(String),
    /// A JSON patch operation that cannot be applied (unknown op, missing member, bad pointer).
    #[error("{0}")]
    Unprocessable(String),
    /// A JSON patch `test` operation found a different value.
    #[error("{0}")]
    TestFailed(String),
    /// A JSON patch names a location the document does not have.
    #[error("{0}")]
    PathNotFound(String),
    /// A strategic merge patch directive or merge key that cannot be honoured (unknown
    /// `$patch`, an item without its merge key, a `$setElementOrder` list out of step).
    #[error("{0}")]
    Directive(String),
}

impl PatchError {
    /// The status upstream answers with: 413 too many operations, 400 malformed patch,
    /// 422 for JSON patch failures and unmergeable lists, 500 for strategic merge patch
    /// directive errors (upstream passes those through as plain errors).
    pub fn code(&self) -> u16 {
        match self {
            Self::TooManyOperations { .. } => 413,
            Self::Invalid(_) => 400,
            Self::Unprocessable(_) | Self::TestFailed(_) | Self::PathNotFound(_) => 422,
            Self::Directive(_) => 500,
        }
    }
}

/// JSON equality where numbers compare by value (`1 == 1.0`), as Go's decoded floats do.
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// The JSON kind as Go's decoder names it in `cannot unmarshal <kind> into ...` errors.
pub(crate) fn go_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_are_equal_by_value_not_representation() {
        let cases = [
            (json!(1), json!(1.0), true),
            (json!(-3), json!(-3.0), true),
            (json!(2), json!(3), false),
            (
                json!({"a": [1, {"b": 2.0}]}),
                json!({"a": [1.0, {"b": 2}]}),
                true,
            ),
            (json!({"a": 1}), json!({"a": 1, "b": null}), false),
            (json!("1"), json!(1), false),
        ];
        for (a, b, want) in cases {
            assert_eq!(json_equal(&a, &b), want, "{a} vs {b}");
        }
    }

    #[test]
    fn error_codes_follow_upstream() {
        let too_many = PatchError::TooManyOperations {
            count: 10_001,
            max: MAX_JSON_PATCH_OPERATIONS,
        };
        assert_eq!(too_many.code(), 413);
        assert_eq!(
            too_many.to_string(),
            "The allowed maximum operations in a JSON patch is 10000, got 10001"
        );
        assert_eq!(PatchError::Invalid(String::new()).code(), 400);
        assert_eq!(PatchError::TestFailed(String::new()).code(), 422);
        assert_eq!(PatchError::Directive(String::new()).code(), 500);
    }
}
