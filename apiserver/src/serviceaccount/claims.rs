//! Claims of bound and legacy service-account tokens: what is issued and what is checked.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::authn::UserInfo;
use crate::source::ObjectSource;

/// Issuer of the secret-based tokens the legacy tokens controller wrote.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";
/// Secret label set by the legacy-token cleaner; a token whose secret has it is invalid.
pub const LEGACY_INVALID_SINCE_LABEL: &str = "kubernetes.io/legacy-token-invalid-since";
/// Clock skew allowed on exp/nbf/iat and on the deletion of bound objects, as go-jose's
/// `DefaultLeeway`.
pub const LEEWAY_SECONDS: i64 = 60;

/// Prefix of service-account user names.
pub const USERNAME_PREFIX: &str = "system:serviceaccount:";
/// Group of every service account.
pub const ALL_SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// User extra: name of the pod a token is bound to.
pub const POD_NAME_KEY: &str = "authentication.kubernetes.io/pod-name";
/// User extra: uid of the pod a token is bound to.
pub const POD_UID_KEY: &str = "authentication.kubernetes.io/pod-uid";
/// User extra: name of the node of the bound pod, or of the bound node.
pub const NODE_NAME_KEY: &str = "authentication.kubernetes.io/node-name";
/// User extra: uid of that node, when known.
pub const NODE_UID_KEY: &str = "authentication.kubernetes.io/node-uid";
/// User extra: `JTI=<jti>` of the token.
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";

/// `system:serviceaccount:<namespace>:<name>`.
pub fn make_username(namespace: &str, name: &str) -> String {
    format!("{USERNAME_PREFIX}{namespace}:{name}")
}

/// The object a token is bound to; the token is valid only while it exists with this uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundObject {
    /// A pod, with the node it runs on when known (the uid is empty when the Node object
    /// could not be found, as upstream embeds the name alone then).
    Pod {
        name: String,
        uid: String,
        /// Node name and uid.
        node: Option<(String, String)>,
    },
    /// A secret in the service account's namespace.
    Secret { name: String, uid: String },
    /// A node (cluster-scoped).
    Node { name: String, uid: String },
}

/// What a validated token says about its caller (upstream's `ServiceAccountInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServiceAccountInfo {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: String,
    pub(crate) pod_name: String,
    pub(crate) pod_uid: String,
    pub(crate) node_name: String,
    pub(crate) node_uid: String,
    pub(crate) credential_id: String,
}

impl ServiceAccountInfo {
    /// The user: name, SA uid, the two service-account groups and the binding extras.
    pub(crate) fn user_info(&self) -> UserInfo {
        let mut user = UserInfo::new(
            make_username(&self.namespace, &self.name),
            vec![
                ALL_SERVICE_ACCOUNTS_GROUP.to_string(),
                format!("{ALL_SERVICE_ACCOUNTS_GROUP}:{}", self.namespace),
            ],
        );
        user.uid = self.uid.clone();
        let mut put = |key: &str, value: &str| {
            user.extra.insert(key.to_string(), vec![value.to_string()]);
        };
        if !self.pod_name.is_empty() && !self.pod_uid.is_empty() {
            put(POD_NAME_KEY, &self.pod_name);
            put(POD_UID_KEY, &self.pod_uid);
        }
        if !self.credential_id.is_empty() {
            put(CREDENTIAL_ID_KEY, &self.credential_id);
        }
        if !self.node_name.is_empty() {
            put(NODE_NAME_KEY, &self.node_name);
            if !self.node_uid.is_empty() {
                put(NODE_UID_KEY, &self.node_uid);
            }
        }
        user
    }
}

/// Whole seconds since the epoch (negative before it), as JWT NumericDates count.
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64) - i64::from(e.duration().subsec_nanos() > 0),
    }
}

/// Nanoseconds since the epoch, for comparisons as exact as Go's `time.Time`.
pub(crate) fn unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

const NANOS: i128 = 1_000_000_000;

/// The payload of a token issued by the TokenRequest API.
pub(crate) struct IssueClaims<'a> {
    pub(crate) issuer: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) service_account_name: &'a str,
    pub(crate) service_account_uid: &'a str,
    pub(crate) audiences: &'a [String],
    pub(crate) bound: Option<&'a BoundObject>,
    pub(crate) now: i64,
    pub(crate) expiration_seconds: i64,
    pub(crate) warn_after_seconds: Option<i64>,
    pub(crate) jti: &'a str,
}

/// `{name, uid}` with empty fields left out, as Go's omitempty writes a `ref`.
fn object_ref(name: &str, uid: &str) -> Value {
    let mut m = Map::new();
    if !name.is_empty() {
        m.insert("name".into(), json!(name));
    }
    if !uid.is_empty() {
        m.insert("uid".into(), json!(uid));
    }
    Value::Object(m)
}

impl IssueClaims<'_> {
    pub(crate) fn to_json(&self) -> Value {
        let mut k8s = Map::new();
        k8s.insert("namespace".into(), json!(self.namespace));
        k8s.insert(
            "serviceaccount".into(),
            object_ref(self.service_account_name, self.service_account_uid),
        );
        match self.bound {
            Some(BoundObject::Pod { name, uid, node }) => {
                k8s.insert("pod".into(), object_ref(name, uid));
                if let Some((node_name, node_uid)) = node {
                    k8s.insert("node".into(), object_ref(node_name, node_uid));
                }
            }
            Some(BoundObject::Secret { name, uid }) => {
                k8s.insert("secret".into(), object_ref(name, uid));
            }
            Some(BoundObject::Node { name, uid }) => {
                k8s.insert("node".into(), object_ref(name, uid));
            }
            None => {}
        }
        if let Some(warn) = self.warn_after_seconds.filter(|w| *w != 0) {
            k8s.insert("warnafter".into(), json!(self.now + warn));
        }
        json!({
            "aud": self.audiences,
            "exp": self.now + self.expiration_seconds,
            "iat": self.now,
            "iss": self.issuer,
            "jti": self.jti,
            "kubernetes.io": k8s,
            "nbf": self.now,
            "sub": make_username(self.namespace, self.service_account_name),
        })
    }
}

/// The registered claims of a verified token.
#[derive(Debug, Default)]
pub(crate) struct PublicClaims {
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) aud: Vec<String>,
    pub(crate) exp: Option<i64>,
    pub(crate) nbf: Option<i64>,
    pub(crate) iat: Option<i64>,
    pub(crate) jti: String,
}

fn string_claim(claims: &Map<String, Value>, key: &str) -> Result<String, String> {
    match claims.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("token claim {key:?} is not a string")),
    }
}

fn date_claim(claims: &Map<String, Value>, key: &str) -> Result<Option<i64>, String> {
    match claims.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| format!("token claim {key:?} is not a numeric date")),
        Some(_) => Err(format!("token claim {key:?} is not a numeric date")),
    }
}

impl PublicClaims {
    pub(crate) fn parse(claims: &Map<String, Value>) -> Result<Self, String> {
        let aud = match claims.get("aud") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or("token claim \"aud\" is not a list of strings")?,
            Some(_) => return Err("token claim \"aud\" is not a list of strings".into()),
        };
        Ok(Self {
            iss: string_claim(claims, "iss")?,
            sub: string_claim(claims, "sub")?,
            aud,
            exp: date_claim(claims, "exp")?,
            nbf: date_claim(claims, "nbf")?,
            iat: date_claim(claims, "iat")?,
            jti: string_claim(claims, "jti")?,
        })
    }

    /// nbf, exp and iat with the leeway, in go-jose's order and upstream's words.
    pub(crate) fn validate_time(&self, now: SystemTime) -> Result<(), String> {
        let now = unix_nanos(now);
        let leeway = i128::from(LEEWAY_SECONDS) * NANOS;
        if self
            .nbf
            .is_some_and(|nbf| now + leeway < i128::from(nbf) * NANOS)
        {
            return Err("service account token is not valid yet".into());
        }
        if self
            .exp
            .is_some_and(|exp| now - leeway > i128::from(exp) * NANOS)
        {
            return Err("service account token has expired".into());
        }
        if self
            .iat
            .is_some_and(|iat| now + leeway < i128::from(iat) * NANOS)
        {
            return Err("service account token is issued in the future".into());
        }
        Ok(())
    }
}

/// A `{name, uid}` reference inside the `kubernetes.io` claim.
fn claim_ref(k8s: &Map<String, Value>, key: &str) -> Result<Option<(String, String)>, String> {
    match k8s.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(r)) => Ok(Some((string_claim(r, "name")?, string_claim(r, "uid")?))),
        Some(_) => Err(format!(
            "token claim \"kubernetes.io\".{key} is not an object"
        )),
    }
}

fn uid(obj: &Value) -> &str {
    obj["metadata"]["uid"].as_str().unwrap_or("")
}

/// Seconds since the epoch of the object's deletionTimestamp, if it has one.
fn deletion_timestamp(obj: &Value) -> Option<i64> {
    let ts = obj["metadata"]["deletionTimestamp"].as_str()?;
    // An unparsable timestamp still marks the object deleted; treat it as deleted long ago.
    Some(crate::object::parse_rfc3339(ts).unwrap_or(i64::MIN / 2))
}

fn get(
    source: &dyn ObjectSource,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Option<Arc<Value>> {
    if name.is_empty() {
        return None;
    }
    source.get("", resource, namespace, name)
}

/// The checks of upstream's bound-token validator after the signature, issuer and audience:
/// time claims, then the service account, bound secret, pod and node through `source`.
pub(crate) fn validate_bound(
    public: &PublicClaims,
    claims: &Map<String, Value>,
    source: &dyn ObjectSource,
    now: SystemTime,
) -> Result<ServiceAccountInfo, String> {
    public.validate_time(now)?;
    let empty = Map::new();
    let k8s = match claims.get("kubernetes.io") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err("token claim \"kubernetes.io\" is not an object".into()),
    };
    let namespace = string_claim(k8s, "namespace")?;
    let (sa_name, sa_uid) = claim_ref(k8s, "serviceaccount")?.unwrap_or_default();
    let pod_ref = claim_ref(k8s, "pod")?;
    let secret_ref = claim_ref(k8s, "secret")?;
    let node_ref = claim_ref(k8s, "node")?;

    // Objects deleted before now minus the leeway no longer vouch for the token.
    let cutoff = unix_nanos(now) - i128::from(LEEWAY_SECONDS) * NANOS;
    let deleted =
        |obj: &Value| deletion_timestamp(obj).is_some_and(|d| i128::from(d) * NANOS < cutoff);

    let sa = get(source, "serviceaccounts", &namespace, &sa_name)
        .ok_or_else(|| format!("serviceaccounts {sa_name:?} not found"))?;
    if deleted(&sa) {
        return Err(format!(
            "service account {namespace}/{sa_name} has been deleted"
        ));
    }
    if uid(&sa) != sa_uid {
        return Err(format!(
            "service account UID ({}) does not match claim ({sa_uid})",
            uid(&sa)
        ));
    }

    const INVALIDATED: &str = "service account token has been invalidated";
    if let Some((name, claim_uid)) = &secret_ref {
        let secret = get(source, "secrets", &namespace, name).ok_or(INVALIDATED)?;
        if deleted(&secret) {
            return Err(INVALIDATED.into());
        }
        if uid(&secret) != claim_uid {
            return Err(format!(
                "secret UID ({}) does not match service account secret ref claim ({claim_uid})",
                uid(&secret)
            ));
        }
    }

    let mut info = ServiceAccountInfo {
        namespace: namespace.clone(),
        name: sa_name,
        uid: sa_uid,
        credential_id: if public.jti.is_empty() {
            String::new()
        } else {
            format!("JTI={}", public.jti)
        },
        ..Default::default()
    };

    if let Some((name, claim_uid)) = &pod_ref {
        let pod = get(source, "pods", &namespace, name).ok_or(INVALIDATED)?;
        if deleted(&pod) {
            return Err(INVALIDATED.into());
        }
        if uid(&pod) != claim_uid {
            return Err(format!(
                "pod UID ({}) does not match service account pod ref claim ({claim_uid})",
                uid(&pod)
            ));
        }
        info.pod_name = name.clone();
        info.pod_uid = claim_uid.clone();
    }

    if let Some((name, claim_uid)) = node_ref {
        // A pod-bound token only reports its node; only node-bound tokens need the Node.
        if pod_ref.is_none() {
            let node = get(source, "nodes", "", &name).ok_or(INVALIDATED)?;
            if deleted(&node) {
                return Err(INVALIDATED.into());
            }
            if uid(&node) != claim_uid {
                return Err(format!(
                    "node UID ({}) does not match service account node ref claim ({claim_uid})",
                    uid(&node)
                ));
            }
        }
        info.node_name = name;
        info.node_uid = claim_uid;
    }
    Ok(info)
}

/// Constant-time equality of two byte strings (the length is not secret).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Upstream's legacy validator with lookup on: the claims must name a service account and
/// secret that exist, and the secret must still hold exactly this token.
pub(crate) fn validate_legacy(
    token: &str,
    public: &PublicClaims,
    claims: &Map<String, Value>,
    source: &dyn ObjectSource,
) -> Result<ServiceAccountInfo, String> {
    if public.sub.is_empty() {
        return Err("sub claim is missing".into());
    }
    let claim = |key: &str, what: &str| match string_claim(claims, key) {
        Ok(v) if !v.is_empty() => Ok(v),
        Ok(_) => Err(format!("{what} claim is missing")),
        Err(e) => Err(e),
    };
    let namespace = claim("kubernetes.io/serviceaccount/namespace", "namespace")?;
    let secret_name = claim("kubernetes.io/serviceaccount/secret.name", "secretName")?;
    let sa_name = claim(
        "kubernetes.io/serviceaccount/service-account.name",
        "serviceAccountName",
    )?;
    let sa_uid = claim(
        "kubernetes.io/serviceaccount/service-account.uid",
        "serviceAccountUID",
    )?;
    let subject_ok = public
        .sub
        .strip_prefix(USERNAME_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(ns, name)| ns == namespace && name == sa_name && !name.contains(':'));
    if !subject_ok {
        return Err("sub claim is invalid".into());
    }

    const INVALIDATED: &str = "Token has been invalidated";
    let secret = get(source, "secrets", &namespace, &secret_name).ok_or(INVALIDATED)?;
    if secret["metadata"]
        .get("deletionTimestamp")
        .is_some_and(|d| !d.is_null())
    {
        return Err(INVALIDATED.into());
    }
    let stored = secret["data"]["token"]
        .as_str()
        .and_then(|b64| STANDARD.decode(b64).ok())
        .unwrap_or_default();
    if !constant_time_eq(&stored, token.as_bytes()) {
        return Err("Token does not match server's copy".into());
    }

    let sa = get(source, "serviceaccounts", &namespace, &sa_name)
        .ok_or_else(|| format!("serviceaccounts {sa_name:?} not found"))?;
    if sa["metadata"]
        .get("deletionTimestamp")
        .is_some_and(|d| !d.is_null())
    {
        return Err(format!(
            "ServiceAccount {namespace}/{sa_name} has been deleted"
        ));
    }
    if uid(&sa) != sa_uid {
        return Err(format!(
            "ServiceAccount UID ({}) does not match claim ({sa_uid})",
            uid(&sa)
        ));
    }
    if secret["metadata"]["labels"][LEGACY_INVALID_SINCE_LABEL]
        .as_str()
        .is_some_and(|v| !v.is_empty())
    {
        return Err(INVALIDATED.into());
    }
    Ok(ServiceAccountInfo {
        namespace,
        name: sa_name,
        uid: sa_uid,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_carry_binding_extras_only_when_complete() {
        let info = ServiceAccountInfo {
            namespace: "ns".into(),
            name: "sa".into(),
            uid: "u1".into(),
            pod_name: "p".into(),
            pod_uid: String::new(),
            node_name: "n".into(),
            node_uid: String::new(),
            credential_id: "JTI=x".into(),
        };
        let user = info.user_info();
        assert_eq!(user.name, "system:serviceaccount:ns:sa");
        assert_eq!(user.uid, "u1");
        assert_eq!(
            user.groups,
            ["system:serviceaccounts", "system:serviceaccounts:ns"]
        );
        let keys: Vec<&str> = user.extra.keys().map(String::as_str).collect();
        assert_eq!(keys, [CREDENTIAL_ID_KEY, NODE_NAME_KEY]);
    }

    #[test]
    fn time_claims_allow_a_minute_of_skew() {
        let at = |s: u64| UNIX_EPOCH + std::time::Duration::from_secs(s);
        let claims = PublicClaims {
            exp: Some(2000),
            nbf: Some(1000),
            iat: Some(1000),
            ..Default::default()
        };
        assert!(claims.validate_time(at(940)).is_ok());
        assert_eq!(
            claims.validate_time(at(939)).unwrap_err(),
            "service account token is not valid yet"
        );
        assert!(claims.validate_time(at(2060)).is_ok());
        assert_eq!(
            claims.validate_time(at(2061)).unwrap_err(),
            "service account token has expired"
        );
        let future_iat = PublicClaims {
            iat: Some(1000),
            ..Default::default()
        };
        assert!(future_iat.validate_time(at(900)).is_err());
    }

    #[test]
    fn claim_types_are_checked() {
        let bad = |v: Value| PublicClaims::parse(v.as_object().unwrap()).unwrap_err();
        bad(json!({"iss": 1}));
        bad(json!({"aud": [1]}));
        bad(json!({"exp": "soon"}));
        let ok =
            PublicClaims::parse(json!({"aud": "a", "exp": 10.7}).as_object().unwrap()).unwrap();
        assert_eq!(ok.aud, ["a"]);
        assert_eq!(ok.exp, Some(10));
    }

    #[test]
    fn constant_time_eq_compares_contents_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
