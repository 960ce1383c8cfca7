//! Secrets: stringData folding, base64 data, type rules and `immutable`.

use serde_json::{json, Map, Value};

use crate::error::FieldError;
use crate::registry::core::configmap::{validate_immutable_object, MAX_SIZE};
use crate::registry::validation::{
    child_mut, invalid_each, is_config_map_key, name_is_dns_subdomain, obj_of, set_default_str,
    str_of, too_long, validate_immutable_field, validate_object_meta, validate_object_meta_update,
};
use crate::registry::Strategy;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as Go's `base64.StdEncoding` (how `[]byte` is JSON-encoded).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn decode_char(c: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u32)
}

/// Decodes standard padded base64, skipping CR and LF as Go does. The error is the byte
/// offset Go reports (`illegal base64 data at input byte N`).
pub fn base64_decode(s: &str) -> Result<Vec<u8>, usize> {
    let src = s.as_bytes();
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut si = 0;
    loop {
        let mut quantum = [0u32; 4];
        let mut j = 0;
        let mut len = 4;
        while j < 4 {
            if si == src.len() {
                if j == 0 {
                    return Ok(out);
                }
                return Err(si - j);
            }
            let c = src[si];
            si += 1;
            if let Some(v) = decode_char(c) {
                quantum[j] = v;
                j += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c != b'=' {
                return Err(si - 1);
            }
            // Padding: only after two or three characters of a quantum.
            match j {
                0 | 1 => return Err(si - 1),
                2 => {
                    while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
                        si += 1;
                    }
                    if si == src.len() {
                        return Err(src.len());
                    }
                    if src[si] != b'=' {
                        return Err(si - 1);
                    }
                    si += 1;
                }
                _ => {}
            }
            while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
                si += 1;
            }
            if si < src.len() {
                return Err(si);
            }
            len = j;
            break;
        }
        let n = (quantum[0] << 18) | (quantum[1] << 12) | (quantum[2] << 6) | quantum[3];
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..len - 1]);
        if len < 4 {
            return Ok(out);
        }
    }
}

/// Required data keys per secret type.
fn validate_type(secret: &Value, data: &Map<String, Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let has = |k: &str| data.contains_key(k);
    let required = |k: &str| FieldError::required(format!("data[{k}]"), "");
    match str_of(secret, "type") {
        "kubernetes.io/service-account-token" => {
            let sa = secret
                .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if sa.is_empty() {
                errs.push(FieldError::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson" => {
            let key = if str_of(secret, "type") == "kubernetes.io/dockercfg" {
                ".dockercfg"
            } else {
                ".dockerconfigjson"
            };
            match data.get(key).and_then(Value::as_str) {
                None => errs.push(required(key)),
                Some(b64) => {
                    let bytes = base64_decode(b64).unwrap_or_default();
                    let ok = serde_json::from_slice::<Value>(&bytes).is_ok_and(|v| v.is_object());
                    if !ok {
                        errs.push(FieldError::invalid(
                            format!("data[{key}]"),
                            json!("<secret contents redacted>"),
                            "invalid character looking for beginning of value",
                        ));
                    }
                }
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(required("username"));
            errs.push(required("password"));
        }
        "kubernetes.io/ssh-auth" => {
            let empty = data
                .get("ssh-privatekey")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
            if empty {
                errs.push(required("ssh-privatekey"));
            }
        }
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    errs.push(required(k));
                }
            }
        }
        _ => {}
    }
    errs
}

fn validate_secret(secret: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(secret, Some(true), name_is_dns_subdomain);
    let empty = Map::new();
    let data = obj_of(secret, "data").unwrap_or(&empty);
    let mut total = 0;
    for (k, v) in data {
        let path = format!("data[{k}]");
        errs.extend(invalid_each(&path, k, is_config_map_key(k)));
        match v {
            Value::Null => {}
            Value::String(s) => match base64_decode(s) {
                Ok(bytes) => total += bytes.len(),
                Err(at) => errs.push(FieldError::invalid(
                    path.as_str(),
                    json!("<secret contents redacted>"),
                    format!("illegal base64 data at input byte {at}"),
                )),
            },
            _ => errs.push(FieldError::invalid(
                path.as_str(),
                json!("<secret contents redacted>"),
                "must be a base64-encoded string",
            )),
        }
    }
    if total > MAX_SIZE {
        errs.push(too_long("data", MAX_SIZE));
    }
    errs.extend(validate_type(secret, data));
    errs
}

/// `secrets`.
pub struct SecretStrategy;

impl Strategy for SecretStrategy {
    fn default(&self, obj: &mut Value) {
        set_default_str(obj, "type", "Opaque");
        // The v1 conversion folds stringData into data (stringData wins) and drops it.
        let string_data = obj
            .as_object_mut()
            .and_then(|m| m.remove("stringData"))
            .and_then(|v| v.as_object().cloned());
        if let Some(sd) = string_data.filter(|m| !m.is_empty()) {
            let data = child_mut(obj, "data");
            for (k, v) in sd {
                data[k.as_str()] = json!(base64_encode(v.as_str().unwrap_or("").as_bytes()));
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_secret(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_immutable_field(
            new.get("type"),
            old.get("type"),
            "type",
        ));
        errs.extend(validate_immutable_object(new, old, &["data"]));
        errs.extend(validate_secret(new));
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_reports_go_offsets() {
        struct Case {
            name: &'static str,
            input: &'static str,
            want: Result<&'static [u8], usize>,
        }
        let cases = [
            Case {
                name: "empty",
                input: "",
                want: Ok(b""),
            },
            Case {
                name: "padded two",
                input: "YWI=",
                want: Ok(b"ab"),
            },
            Case {
                name: "padded one",
                input: "YQ==",
                want: Ok(b"a"),
            },
            Case {
                name: "full",
                input: "YWJj",
                want: Ok(b"abc"),
            },
            Case {
                name: "newlines",
                input: "YW\nJj\n",
                want: Ok(b"abc"),
            },
            Case {
                name: "bad char",
                input: "YW*j",
                want: Err(2),
            },
            Case {
                name: "missing padding",
                input: "YWI",
                want: Err(0),
            },
            Case {
                name: "short padding",
                input: "YQ=",
                want: Err(3),
            },
            Case {
                name: "trailing garbage",
                input: "YQ==YQ",
                want: Err(4),
            },
            Case {
                name: "early padding",
                input: "Y===",
                want: Err(1),
            },
        ];
        for c in cases {
            assert_eq!(
                base64_decode(c.input),
                c.want.map(<[u8]>::to_vec),
                "{}",
                c.name
            );
        }
        for s in ["", "a", "ab", "abc", "hello world"] {
            assert_eq!(
                base64_decode(&base64_encode(s.as_bytes())),
                Ok(s.as_bytes().to_vec())
            );
        }
    }

    #[test]
    fn string_data_folds_into_data_with_default_type() {
        let mut s = json!({"metadata": {"name": "s", "namespace": "d"}, "data": {"a": "eA=="}, "stringData": {"a": "y", "b": "z"}});
        SecretStrategy.default(&mut s);
        assert_eq!(s["type"], "Opaque");
        assert_eq!(s["data"], json!({"a": "eQ==", "b": "eg=="}));
        assert!(s.get("stringData").is_none());
        assert!(SecretStrategy.validate(&s).is_empty());
    }

    #[test]
    fn secret_validation_follows_the_type() {
        struct Case {
            name: &'static str,
            secret: Value,
            want: Vec<&'static str>,
        }
        let cases = [
            Case { name: "bad base64", secret: json!({"type": "Opaque", "data": {"k": "abc"}}),
                want: vec!["data[k]: Invalid value: \"<secret contents redacted>\": illegal base64 data at input byte 0"] },
            Case { name: "tls without key", secret: json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}),
                want: vec!["data[tls.key]: Required value"] },
            Case { name: "basic auth empty", secret: json!({"type": "kubernetes.io/basic-auth"}),
                want: vec!["data[username]: Required value", "data[password]: Required value"] },
            Case { name: "sa token", secret: json!({"type": "kubernetes.io/service-account-token"}),
                want: vec!["metadata.annotations[kubernetes.io/service-account.name]: Required value"] },
            Case { name: "docker config json", secret: json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": base64_encode(b"{\"auths\":{}}")}}),
                want: vec![] },
        ];
        for c in cases {
            let mut s = c.secret;
            s["metadata"] = json!({"name": "s", "namespace": "d"});
            let got: Vec<String> = SecretStrategy
                .validate(&s)
                .iter()
                .map(FieldError::message)
                .collect();
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn secret_type_cannot_change() {
        let old = json!({"metadata": {"name": "s", "namespace": "d"}, "type": "Opaque"});
        let mut new = old.clone();
        new["type"] = json!("kubernetes.io/tls");
        new["data"] = json!({"tls.crt": "", "tls.key": ""});
        let msgs: Vec<String> = SecretStrategy
            .validate_update(&new, &old)
            .iter()
            .map(FieldError::message)
            .collect();
        assert_eq!(
            msgs,
            vec!["type: Invalid value: \"kubernetes.io/tls\": field is immutable"]
        );
    }
}
