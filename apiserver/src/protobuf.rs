//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`): the `k8s\0`
//! envelope around runtime.Unknown, decoded into JSON for the kinds kubectl sends as
//! protobuf (its typed `create` commands, DeleteOptions, Eviction).

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::error::ApiError;

/// How a field is encoded and what JSON it becomes.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    /// bytes -> base64 string.
    Bytes,
    Int,
    Bool,
    Msg(&'static str),
    /// metav1.Time -> RFC 3339.
    Time,
    /// map<string,string>.
    MapStr,
    /// map<string,bytes>.
    MapBytes,
}

/// (field number, JSON name, type, repeated).
type Field = (u32, &'static str, Ty, bool);

fn fields(message: &str) -> Option<&'static [Field]> {
    use Ty::*;
    Some(match message {
        "ObjectMeta" => &[
            (1, "name", Str, false),
            (2, "generateName", Str, false),
            (3, "namespace", Str, false),
            (5, "uid", Str, false),
            (6, "resourceVersion", Str, false),
            (7, "generation", Int, false),
            (8, "creationTimestamp", Time, false),
            (9, "deletionTimestamp", Time, false),
            (10, "deletionGracePeriodSeconds", Int, false),
            (11, "labels", MapStr, false),
            (12, "annotations", MapStr, false),
            (13, "ownerReferences", Msg("OwnerReference"), true),
            (14, "finalizers", Str, true),
        ],
        "OwnerReference" => &[
            (1, "kind", Str, false),
            (3, "name", Str, false),
            (4, "uid", Str, false),
            (5, "apiVersion", Str, false),
            (6, "controller", Bool, false),
            (7, "blockOwnerDeletion", Bool, false),
        ],
        "Namespace" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("NamespaceSpec"), false),
        ],
        "NamespaceSpec" => &[(1, "finalizers", Str, true)],
        "ConfigMap" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "data", MapStr, false),
            (3, "binaryData", MapBytes, false),
            (4, "immutable", Bool, false),
        ],
        "Secret" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "data", MapBytes, false),
            (3, "type", Str, false),
            (4, "stringData", MapStr, false),
            (5, "immutable", Bool, false),
        ],
        "ServiceAccount" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "secrets", Msg("ObjectReference"), true),
            (3, "imagePullSecrets", Msg("LocalObjectReference"), true),
            (4, "automountServiceAccountToken", Bool, false),
        ],
        "ObjectReference" => &[
            (1, "kind", Str, false),
            (2, "namespace", Str, false),
            (3, "name", Str, false),
            (4, "uid", Str, false),
            (5, "apiVersion", Str, false),
            (6, "resourceVersion", Str, false),
            (7, "fieldPath", Str, false),
        ],
        "LocalObjectReference" => &[(1, "name", Str, false)],
        "DeleteOptions" => &[
            (1, "gracePeriodSeconds", Int, false),
            (2, "preconditions", Msg("Preconditions"), false),
            (3, "orphanDependents", Bool, false),
            (4, "propagationPolicy", Str, false),
            (5, "dryRun", Str, true),
        ],
        "Preconditions" => &[(1, "uid", Str, false), (2, "resourceVersion", Str, false)],
        "Eviction" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "deleteOptions", Msg("DeleteOptions"), false),
        ],
        "Unknown" => &[
            (1, "typeMeta", Msg("TypeMeta"), false),
            (2, "raw", Bytes, false),
            (3, "contentEncoding", Str, false),
            (4, "contentType", Str, false),
        ],
        "TypeMeta" => &[(1, "apiVersion", Str, false), (2, "kind", Str, false)],
        // rbac.authorization.k8s.io/v1 (kubectl create role/rolebinding/clusterrole...).
        "Role" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "rules", Msg("PolicyRule"), true),
        ],
        "ClusterRole" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "rules", Msg("PolicyRule"), true),
            (3, "aggregationRule", Msg("AggregationRule"), false),
        ],
        "PolicyRule" => &[
            (1, "verbs", Str, true),
            (2, "apiGroups", Str, true),
            (3, "resources", Str, true),
            (4, "resourceNames", Str, true),
            (5, "nonResourceURLs", Str, true),
        ],
        "AggregationRule" => &[(1, "clusterRoleSelectors", Msg("LabelSelector"), true)],
        "LabelSelector" => &[
            (1, "matchLabels", MapStr, false),
            (2, "matchExpressions", Msg("LabelSelectorRequirement"), true),
        ],
        "LabelSelectorRequirement" => &[
            (1, "key", Str, false),
            (2, "operator", Str, false),
            (3, "values", Str, true),
        ],
        "RoleBinding" | "ClusterRoleBinding" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "subjects", Msg("Subject"), true),
            (3, "roleRef", Msg("RoleRef"), false),
        ],
        "Subject" => &[
            (1, "kind", Str, false),
            (2, "apiGroup", Str, false),
            (3, "name", Str, false),
            (4, "namespace", Str, false),
        ],
        "RoleRef" => &[
            (1, "apiGroup", Str, false),
            (2, "kind", Str, false),
            (3, "name", Str, false),
        ],
        // authorization.k8s.io/v1 (kubectl auth can-i).
        "SelfSubjectAccessReview" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("SelfSubjectAccessReviewSpec"), false),
        ],
        "SelfSubjectAccessReviewSpec" => &[
            (1, "resourceAttributes", Msg("ResourceAttributes"), false),
            (
                2,
                "nonResourceAttributes",
                Msg("NonResourceAttributes"),
                false,
            ),
        ],
        "SubjectAccessReview" | "LocalSubjectAccessReview" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("SubjectAccessReviewSpec"), false),
        ],
        "SubjectAccessReviewSpec" => &[
            (1, "resourceAttributes", Msg("ResourceAttributes"), false),
            (
                2,
                "nonResourceAttributes",
                Msg("NonResourceAttributes"),
                false,
            ),
            (3, "user", Str, false),
            (4, "groups", Str, true),
            (6, "uid", Str, false),
        ],
        "ResourceAttributes" => &[
            (1, "namespace", Str, false),
            (2, "verb", Str, false),
            (3, "group", Str, false),
            (4, "version", Str, false),
            (5, "resource", Str, false),
            (6, "subresource", Str, false),
            (7, "name", Str, false),
        ],
        "NonResourceAttributes" => &[(1, "path", Str, false), (2, "verb", Str, false)],
        "SelfSubjectRulesReview" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("SelfSubjectRulesReviewSpec"), false),
        ],
        "SelfSubjectRulesReviewSpec" => &[(1, "namespace", Str, false)],
        // authentication.k8s.io/v1 (kubectl create token, kubectl auth whoami).
        "TokenRequest" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("TokenRequestSpec"), false),
        ],
        "TokenRequestSpec" => &[
            (1, "audiences", Str, true),
            (3, "boundObjectRef", Msg("BoundObjectReference"), false),
            (4, "expirationSeconds", Int, false),
        ],
        "BoundObjectReference" => &[
            (1, "kind", Str, false),
            (2, "apiVersion", Str, false),
            (3, "name", Str, false),
            (4, "uid", Str, false),
        ],
        "TokenReview" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("TokenReviewSpec"), false),
        ],
        "TokenReviewSpec" => &[(1, "token", Str, false), (2, "audiences", Str, true)],
        "SelfSubjectReview" => &[(1, "metadata", Msg("ObjectMeta"), false)],
        _ => return None,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn bad(msg: &str) -> ApiError {
    ApiError::bad_request(format!("unable to decode protobuf body: {msg}"))
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| bad("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("varint too long"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ApiError> {
        let len = self.varint()? as usize;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| bad("truncated field"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn skip(&mut self, wire: u64) -> Result<(), ApiError> {
        match wire {
            0 => {
                self.varint()?;
            }
            1 => self.pos += 8,
            2 => {
                self.bytes()?;
            }
            5 => self.pos += 4,
            _ => return Err(bad("unsupported wire type")),
        }
        if self.pos > self.buf.len() {
            return Err(bad("truncated field"));
        }
        Ok(())
    }
}

fn text(b: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("invalid UTF-8"))
}

/// A map entry message: key = 1, value = 2.
fn map_entry(b: &[u8], value_bytes: bool) -> Result<(String, Value), ApiError> {
    let mut r = Reader { buf: b, pos: 0 };
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    while r.pos < r.buf.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 2) => k = text(r.bytes()?)?,
            (2, 2) => {
                let raw = r.bytes()?;
                v = if value_bytes {
                    json!(base64::engine::general_purpose::STANDARD.encode(raw))
                } else {
                    json!(text(raw)?)
                };
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok((k, v))
}

fn time(b: &[u8]) -> Result<Value, ApiError> {
    let mut r = Reader { buf: b, pos: 0 };
    let mut secs = 0i64;
    while r.pos < r.buf.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 0) => secs = r.varint()? as i64,
            (_, w) => r.skip(w)?,
        }
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    Ok(json!(crate::object::format_rfc3339(t)))
}

fn message(name: &str, b: &[u8], depth: usize) -> Result<Value, ApiError> {
    if depth > 32 {
        return Err(bad("nested too deeply"));
    }
    let table = fields(name).ok_or_else(|| bad(&format!("{name} is not supported")))?;
    let mut out = Map::new();
    let mut r = Reader { buf: b, pos: 0 };
    while r.pos < r.buf.len() {
        let tag = r.varint()?;
        let (num, wire) = (tag >> 3, tag & 7);
        let Some(&(_, json_name, ty, repeated)) = table.iter().find(|f| u64::from(f.0) == num)
        else {
            r.skip(wire)?;
            continue;
        };
        let value = match (ty, wire) {
            (Ty::Int, 0) => json!(r.varint()? as i64),
            (Ty::Bool, 0) => json!(r.varint()? != 0),
            (Ty::Str, 2) => json!(text(r.bytes()?)?),
            (Ty::Bytes, 2) => json!(base64::engine::general_purpose::STANDARD.encode(r.bytes()?)),
            (Ty::Time, 2) => time(r.bytes()?)?,
            (Ty::Msg(m), 2) => message(m, r.bytes()?, depth + 1)?,
            (Ty::MapStr | Ty::MapBytes, 2) => {
                let (k, v) = map_entry(r.bytes()?, matches!(ty, Ty::MapBytes))?;
                let m = out.entry(json_name).or_insert_with(|| json!({}));
                if let Some(m) = m.as_object_mut() {
                    m.insert(k, v);
                }
                continue;
            }
            (_, w) => {
                r.skip(w)?;
                continue;
            }
        };
        // Go marshals every non-pointer field, set or not: an empty string, the zero time
        // and a zero generation mean "unset" in JSON, where they would be omitted.
        let unset = match (&value, ty) {
            (Value::String(s), Ty::Str) => s.is_empty() && !repeated,
            (_, Ty::Time) => value == json!(crate::object::format_rfc3339(std::time::UNIX_EPOCH)),
            (Value::Number(n), Ty::Int) => json_name == "generation" && n.as_i64() == Some(0),
            _ => false,
        };
        if unset {
            continue;
        }
        if repeated {
            let list = out.entry(json_name).or_insert_with(|| json!([]));
            if let Some(a) = list.as_array_mut() {
                a.push(value);
            }
        } else {
            out.insert(json_name.to_string(), value);
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a `k8s\0`-enveloped body into the JSON object it carries.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let inner = body
        .strip_prefix(b"k8s\x00")
        .ok_or_else(|| bad("missing the k8s protobuf envelope"))?;
    let unknown = message("Unknown", inner, 0)?;
    let kind = unknown["typeMeta"]["kind"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let api_version = unknown["typeMeta"]["apiVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let raw = unknown["raw"]
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .unwrap_or_default();
    if fields(&kind).is_none() || kind == "Unknown" || kind == "TypeMeta" {
        return Err(ApiError::unsupported_media_type(&format!(
            "application/vnd.kubernetes.protobuf (kind {kind})"
        )));
    }
    let mut obj = message(&kind, &raw, 0)?;
    if let Some(m) = obj.as_object_mut() {
        m.insert("kind".into(), json!(kind));
        if !api_version.is_empty() {
            m.insert("apiVersion".into(), json!(api_version));
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![((num << 3) | 2) as u8, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn a_namespace_in_the_envelope_decodes_to_json() {
        let meta = field(1, b"team-a");
        let ns = field(1, &meta);
        let type_meta = [field(1, b"v1"), field(2, b"Namespace")].concat();
        let unknown = [field(1, &type_meta), field(2, &ns)].concat();
        let body = [b"k8s\x00".as_slice(), &unknown].concat();
        let obj = decode(&body).expect("decodes");
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
        );
    }

    #[test]
    fn secret_data_stays_base64_and_truncation_is_an_error() {
        let entry = [field(1, b"k"), field(2, b"v")].concat();
        let secret = [field(1, &field(1, b"s")), field(2, &entry)].concat();
        let obj = message("Secret", &secret, 0).expect("decodes");
        assert_eq!(obj["data"]["k"], "dg==");
        assert_eq!(decode(b"k8s\x00\x0a\xff").map_err(|e| e.code), Err(400));
    }
}
