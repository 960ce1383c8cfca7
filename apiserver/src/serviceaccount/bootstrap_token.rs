//! Bootstrap-token authentication (`--enable-bootstrap-token-auth`): bearer tokens
//! `<id>.<secret>` checked against `kube-system/bootstrap-token-<id>` Secrets.

use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;

use super::claims::{constant_time_eq, unix_nanos};
use crate::authn::UserInfo;
use crate::source::ObjectSource;

/// Namespace of bootstrap-token Secrets.
pub const NAMESPACE: &str = "kube-system";
/// Prefix of their names; the token id follows.
pub const SECRET_PREFIX: &str = "bootstrap-token-";
/// Their `type`.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Prefix of the user name; the token id follows.
pub const USER_PREFIX: &str = "system:bootstrap:";
/// The group every bootstrap token's user is in.
pub const DEFAULT_GROUP: &str = "system:bootstrappers";

const TOKEN_ID_KEY: &str = "token-id";
const TOKEN_SECRET_KEY: &str = "token-secret";
const EXPIRATION_KEY: &str = "expiration";
const USAGE_AUTHENTICATION_KEY: &str = "usage-bootstrap-authentication";
const EXTRA_GROUPS_KEY: &str = "auth-extra-groups";

fn is_token_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Splits `<id>.<secret>` with a 6-character id and 16-character secret of `[a-z0-9]`.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let valid =
        id.len() == 6 && secret.len() == 16 && id.bytes().chain(secret.bytes()).all(is_token_char);
    valid.then_some((id, secret))
}

/// Whether `group` may be added by `auth-extra-groups`:
/// `system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]`.
pub fn is_valid_group_name(group: &str) -> bool {
    let Some(rest) = group.strip_prefix("system:bootstrappers:") else {
        return false;
    };
    let Some((last, middle)) = rest.as_bytes().split_last() else {
        return false;
    };
    middle.len() <= 255
        && is_token_char(*last)
        && middle
            .iter()
            .all(|b| is_token_char(*b) || *b == b':' || *b == b'-')
}

/// A `data` field of the Secret, decoded; "" when absent or not base64.
fn data<'a>(secret: &'a Value, key: &str) -> std::borrow::Cow<'a, str> {
    let decoded = secret["data"][key]
        .as_str()
        .and_then(|b64| STANDARD.decode(b64).ok());
    match decoded {
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned().into(),
        None => "".into(),
    }
}

/// Authenticates a bootstrap token. None when `token` does not have the `<id>.<secret>`
/// shape; `Some(Err(reason))` when it does but no usable Secret backs it.
pub fn authenticate(
    token: &str,
    source: &dyn ObjectSource,
    now: SystemTime,
) -> Option<Result<UserInfo, String>> {
    let (id, token_secret) = parse_token(token)?;
    Some(check(id, token_secret, source, now))
}

fn check(
    id: &str,
    token_secret: &str,
    source: &dyn ObjectSource,
    now: SystemTime,
) -> Result<UserInfo, String> {
    let name = format!("{SECRET_PREFIX}{id}");
    let secret = source
        .get("", "secrets", NAMESPACE, &name)
        .ok_or_else(|| format!("no secret of name {name} to match bootstrap bearer token"))?;
    let invalid = |why: &str| format!("bootstrap secret {NAMESPACE}/{name} {why}");
    if secret["metadata"]
        .get("deletionTimestamp")
        .is_some_and(|d| !d.is_null())
    {
        return Err(invalid("is deleted and awaiting removal"));
    }
    if secret["type"].as_str() != Some(SECRET_TYPE) || !secret["data"].is_object() {
        return Err(invalid(&format!(
            "has invalid type, expected {SECRET_TYPE}"
        )));
    }
    if !constant_time_eq(
        data(&secret, TOKEN_SECRET_KEY).as_bytes(),
        token_secret.as_bytes(),
    ) {
        return Err(invalid(&format!(
            "has invalid value for key {TOKEN_SECRET_KEY}"
        )));
    }
    if data(&secret, TOKEN_ID_KEY) != id {
        return Err(invalid(&format!(
            "has invalid value for key {TOKEN_ID_KEY}"
        )));
    }
    let expiration = data(&secret, EXPIRATION_KEY);
    if !expiration.is_empty() {
        // An unparsable expiration counts as expired, as upstream treats it.
        let expired = match crate::object::parse_rfc3339(&expiration) {
            Some(exp) => i128::from(exp) * 1_000_000_000 <= unix_nanos(now),
            None => true,
        };
        if expired {
            return Err(invalid("has expired"));
        }
    }
    if data(&secret, USAGE_AUTHENTICATION_KEY) != "true" {
        return Err(invalid(&format!(
            "not marked {USAGE_AUTHENTICATION_KEY}=true"
        )));
    }
    let mut groups = vec![DEFAULT_GROUP.to_string()];
    let extra = data(&secret, EXTRA_GROUPS_KEY);
    if !extra.is_empty() {
        for group in extra.split(',') {
            if !is_valid_group_name(group) {
                return Err(invalid(&format!(
                    "has invalid value for key {EXTRA_GROUPS_KEY}: {group:?} is not a valid \
                     bootstrap group name"
                )));
            }
            groups.push(group.to_string());
        }
    }
    // Upstream returns the groups as a sorted set.
    groups.sort();
    groups.dedup();
    Ok(UserInfo::new(format!("{USER_PREFIX}{id}"), groups))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use serde_json::json;

    use super::*;
    use crate::source::MemorySource;

    const NOW: u64 = 1_700_000_000; // 2023-11-14T22:13:20Z

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    fn secret(fields: &[(&str, &str)]) -> Value {
        let data: serde_json::Map<String, Value> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), json!(b64(v))))
            .collect();
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
            "type": SECRET_TYPE,
            "data": data,
        })
    }

    fn valid_fields() -> Vec<(&'static str, &'static str)> {
        vec![
            ("token-id", "abcdef"),
            ("token-secret", "0123456789abcdef"),
            ("usage-bootstrap-authentication", "true"),
            ("expiration", "2023-11-15T00:00:00Z"),
            (
                "auth-extra-groups",
                "system:bootstrappers:kubeadm:default-node-token",
            ),
        ]
    }

    /// The valid secret with `key` replaced by `value` (removed when empty).
    fn with(key: &str, value: &str) -> Value {
        let mut fields: Vec<(&str, &str)> = valid_fields()
            .into_iter()
            .filter(|(k, _)| *k != key)
            .collect();
        if !value.is_empty() {
            fields.push((key, value));
        }
        secret(&fields)
    }

    fn source_with(obj: Value) -> MemorySource {
        let mut src = MemorySource::new();
        src.insert("", "secrets", obj);
        src
    }

    const TOKEN: &str = "abcdef.0123456789abcdef";

    #[test]
    fn a_valid_token_authenticates_with_its_groups() {
        let src = source_with(secret(&valid_fields()));
        let user = authenticate(TOKEN, &src, now()).unwrap().unwrap();
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(
            user.groups,
            [
                "system:bootstrappers",
                "system:bootstrappers:kubeadm:default-node-token"
            ]
        );
        assert!(user.extra.is_empty());
    }

    #[test]
    fn tokens_of_another_shape_are_not_ours() {
        let src = MemorySource::new();
        for token in [
            "abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde",
            "ABCDEF.0123456789abcdef",
            "abcdef.0123456789abcdef.x",
            "eyJhbGciOiJSUzI1NiJ9.e30.sig",
        ] {
            assert!(authenticate(token, &src, now()).is_none(), "{token}");
        }
    }

    #[test]
    fn invalid_secrets_reject_the_token() {
        let mut deleted = secret(&valid_fields());
        deleted["metadata"]["deletionTimestamp"] = json!("2023-11-14T22:00:00Z");
        let mut wrong_type = secret(&valid_fields());
        wrong_type["type"] = json!("Opaque");
        let cases = [
            ("wrong secret", with("token-secret", "0123456789abcdee")),
            ("wrong id", with("token-id", "abcdeg")),
            ("expired", with("expiration", "2023-11-14T22:13:20Z")),
            ("unparsable expiration", with("expiration", "tomorrow")),
            (
                "not for authentication",
                with("usage-bootstrap-authentication", ""),
            ),
            (
                "usage false",
                with("usage-bootstrap-authentication", "false"),
            ),
            ("bad extra group", with("auth-extra-groups", "system:nodes")),
            (
                "extra group with a trailing dash",
                with("auth-extra-groups", "system:bootstrappers:a-"),
            ),
            ("deleted", deleted),
            ("wrong type", wrong_type),
        ];
        for (name, obj) in cases {
            let src = source_with(obj);
            let result = authenticate(TOKEN, &src, now()).expect(name);
            assert!(result.is_err(), "{name}: {result:?}");
        }
        let missing = authenticate(TOKEN, &MemorySource::new(), now()).unwrap();
        assert!(missing.unwrap_err().contains("bootstrap-token-abcdef"));
    }

    #[test]
    fn no_expiration_and_no_extra_groups_are_fine() {
        let mut fields = valid_fields();
        fields.retain(|(k, _)| *k != "expiration" && *k != "auth-extra-groups");
        let src = source_with(secret(&fields));
        let user = authenticate(TOKEN, &src, now()).unwrap().unwrap();
        assert_eq!(user.groups, ["system:bootstrappers"]);
    }

    #[test]
    fn group_names_follow_upstreams_pattern() {
        assert!(is_valid_group_name("system:bootstrappers:a"));
        assert!(is_valid_group_name(
            "system:bootstrappers:kubeadm:default-node-token"
        ));
        assert!(!is_valid_group_name("system:bootstrappers:"));
        assert!(!is_valid_group_name("system:bootstrappers"));
        assert!(!is_valid_group_name("system:bootstrappers:A"));
        assert!(!is_valid_group_name(" system:bootstrappers:a"));
        let long = format!("system:bootstrappers:{}", "a".repeat(256));
        assert!(is_valid_group_name(&long));
        let too_long = format!("system:bootstrappers:{}", "a".repeat(257));
        assert!(!is_valid_group_name(&too_long));
    }
}
