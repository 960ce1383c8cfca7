//! The TokenRequest API (`serviceaccounts/<name>/token`): issuing bound tokens.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::claims::{unix_seconds, BoundObject, IssueClaims};
use super::{jwt, JwtError, TokenAuthority};
use crate::error::{ApiError, FieldError};
use crate::source::ObjectSource;

/// `expirationSeconds` of a TokenRequest that does not set it.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Shortest lifetime a TokenRequest may ask for.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// Longest lifetime a TokenRequest may ask for.
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
/// The kubelet's lifetime for projected tokens; pod-bound requests for exactly this long
/// get the extended lifetime while the extend flag is on.
pub const WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS: i64 = 60 * 60 + 7;
/// The extended lifetime (one year); `warnafter` keeps the requested one.
pub const EXPIRATION_EXTENSION_SECONDS: i64 = 24 * 365 * 60 * 60;

const GROUP: &str = "authentication.k8s.io";
const KIND: &str = "TokenRequest";

/// Why a token was not issued; [`ApiError::from`] gives the upstream Status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenRequestError {
    /// No signing key: upstream does not serve the subresource at all (404).
    #[error("the server could not find the requested resource")]
    Unavailable,
    /// 422 `TokenRequest.authentication.k8s.io "<name>" is invalid: <field>: Invalid value: ...`.
    #[error("{field}: Invalid value: {value}: {detail}")]
    Invalid {
        name: String,
        field: &'static str,
        value: Value,
        detail: String,
    },
    /// 400, e.g. a bound object of an unsupported kind or a malformed body.
    #[error("{0}")]
    BadRequest(String),
    /// 404 `<resource> "<name>" not found` for the service account or bound object.
    #[error("{resource} {name:?} not found")]
    NotFound {
        resource: &'static str,
        name: String,
    },
    /// 409 when the bound object's uid differs from `boundObjectRef.uid`.
    #[error("Operation cannot be fulfilled on {kind} {name:?}: {detail}")]
    Conflict {
        kind: String,
        name: String,
        detail: String,
    },
    /// 500: signing failed.
    #[error("failed to generate token")]
    Signing(#[source] JwtError),
}

impl TokenRequestError {
    /// The HTTP status code upstream answers with.
    pub fn code(&self) -> u16 {
        match self {
            Self::Unavailable | Self::NotFound { .. } => 404,
            Self::Invalid { .. } => 422,
            Self::BadRequest(_) => 400,
            Self::Conflict { .. } => 409,
            Self::Signing(_) => 500,
        }
    }
}

impl From<TokenRequestError> for ApiError {
    fn from(e: TokenRequestError) -> Self {
        match e {
            TokenRequestError::Unavailable => ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
            TokenRequestError::Invalid {
                name,
                field,
                value,
                detail,
            } => ApiError::invalid(
                GROUP,
                KIND,
                &name,
                &[FieldError::invalid(field, value, detail)],
            ),
            TokenRequestError::BadRequest(msg) => ApiError::bad_request(msg),
            TokenRequestError::NotFound { resource, name } => {
                ApiError::not_found("", resource, &name)
            }
            TokenRequestError::Conflict { kind, name, detail } => {
                ApiError::conflict("", &kind, &name, &detail)
            }
            TokenRequestError::Signing(source) => {
                ApiError::internal(format!("failed to generate token: {source}"))
            }
        }
    }
}

/// A TokenRequest after defaulting and lookups, as [`TokenAuthority::issue`] takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    /// Namespace of the service account (and of a bound pod or secret).
    pub namespace: String,
    /// `metadata.name` of the service account.
    pub service_account_name: String,
    /// `metadata.uid` of the service account.
    pub service_account_uid: String,
    /// `spec.audiences`; empty means the API audiences.
    pub audiences: Vec<String>,
    /// `spec.expirationSeconds` (default [`DEFAULT_EXPIRATION_SECONDS`]).
    pub expiration_seconds: i64,
    /// `spec.boundObjectRef`, looked up.
    pub bound_object: Option<BoundObject>,
}

impl IssueRequest {
    /// A request for the service account with the TokenRequest defaults.
    pub fn new(
        namespace: impl Into<String>,
        service_account_name: impl Into<String>,
        service_account_uid: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            service_account_name: service_account_name.into(),
            service_account_uid: service_account_uid.into(),
            audiences: Vec::new(),
            expiration_seconds: DEFAULT_EXPIRATION_SECONDS,
            bound_object: None,
        }
    }
}

/// A signed token and what the TokenRequest reports about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// `status.token`.
    pub token: String,
    /// `status.expirationTimestamp`: now plus the (possibly shortened) requested lifetime,
    /// even when the token itself was extended.
    pub expiration_timestamp: SystemTime,
    /// `spec.expirationSeconds` as the response reports it (after the max clamp).
    pub expiration_seconds: i64,
    /// `spec.audiences` after defaulting.
    pub audiences: Vec<String>,
    /// `JTI=<jti>`, for the `authentication.kubernetes.io/issued-credential-id` audit
    /// annotation.
    pub credential_id: String,
    /// Warning headers to send (`requested expiration of N seconds shortened to M seconds`).
    pub warnings: Vec<String>,
}

/// The response of [`TokenAuthority::token_request`].
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRequestOutcome {
    /// The TokenRequest with its status, as the 201 body.
    pub object: Value,
    /// See [`IssuedToken::warnings`].
    pub warnings: Vec<String>,
    /// See [`IssuedToken::credential_id`].
    pub credential_id: String,
}

fn validate_expiration(name: &str, seconds: i64) -> Result<(), TokenRequestError> {
    let detail = if seconds < MIN_EXPIRATION_SECONDS {
        "may not specify a duration less than 10 minutes"
    } else if seconds > MAX_EXPIRATION_SECONDS {
        "may not specify a duration larger than 2^32 seconds"
    } else {
        return Ok(());
    };
    Err(TokenRequestError::Invalid {
        name: name.to_string(),
        field: "spec.expirationSeconds",
        value: json!(seconds),
        detail: detail.into(),
    })
}

impl TokenAuthority {
    /// Signs a token for `req` at `now`, after validation (422 below 10 minutes or above
    /// 2^32 seconds), the max-expiration clamp and the pod-bound extension.
    pub fn issue(
        &self,
        req: &IssueRequest,
        now: SystemTime,
    ) -> Result<IssuedToken, TokenRequestError> {
        self.issue_named(req, "", now)
    }

    fn issue_named(
        &self,
        req: &IssueRequest,
        name: &str,
        now: SystemTime,
    ) -> Result<IssuedToken, TokenRequestError> {
        let signer = self.signer.as_ref().ok_or(TokenRequestError::Unavailable)?;
        let audiences = if req.audiences.is_empty() {
            self.api_audiences.clone()
        } else {
            req.audiences.clone()
        };
        validate_expiration(name, req.expiration_seconds)?;

        let mut warnings = Vec::new();
        let mut expiration = req.expiration_seconds;
        if let Some(max) = self.max_expiration_seconds.filter(|m| expiration > *m) {
            warnings.push(format!(
                "requested expiration of {expiration} seconds shortened to {max} seconds"
            ));
            expiration = max;
        }

        // Tokens the kubelet projects keep working for a year past their requested lifetime
        // (with `warnafter` marking it) so that clients that never reload them stay alive.
        let extend = self.extend_expiration
            && matches!(req.bound_object, Some(BoundObject::Pod { .. }))
            && expiration == WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS
            && audiences.iter().all(|a| self.api_audiences.contains(a));
        let (token_lifetime, warn_after) = if extend {
            (EXPIRATION_EXTENSION_SECONDS, Some(expiration))
        } else {
            (expiration, None)
        };

        let jti = uuid::Uuid::new_v4().to_string();
        let claims = IssueClaims {
            issuer: self.issuer(),
            namespace: &req.namespace,
            service_account_name: &req.service_account_name,
            service_account_uid: &req.service_account_uid,
            audiences: &audiences,
            bound: req.bound_object.as_ref(),
            now: unix_seconds(now),
            expiration_seconds: token_lifetime,
            warn_after_seconds: warn_after,
            jti: &jti,
        }
        .to_json();
        let token = jwt::sign(signer, &claims).map_err(TokenRequestError::Signing)?;
        Ok(IssuedToken {
            token,
            expiration_timestamp: now + Duration::from_secs(expiration.unsigned_abs()),
            expiration_seconds: expiration,
            audiences,
            credential_id: format!("JTI={jti}"),
            warnings,
        })
    }

    /// The whole TokenRequest create as upstream's `TokenREST.Create`: `namespace` and
    /// `name` come from the URL, `body` is the decoded TokenRequest. The service account,
    /// bound object and the pod's node are read through `source`, which should not lag the
    /// store (a token for a service account created a moment ago must not 404). Admission
    /// of the TokenRequest is the caller's business and comes before this call.
    pub fn token_request(
        &self,
        namespace: &str,
        name: &str,
        body: &Value,
        source: &dyn ObjectSource,
        now: SystemTime,
    ) -> Result<TokenRequestOutcome, TokenRequestError> {
        if !self.can_issue() {
            return Err(TokenRequestError::Unavailable);
        }
        let meta = &body["metadata"];
        for (field, url_value, what) in [
            ("metadata.name", name, "name"),
            ("metadata.namespace", namespace, "namespace"),
        ] {
            let given = meta[what].as_str().unwrap_or("");
            if !given.is_empty() && given != url_value {
                return Err(TokenRequestError::Invalid {
                    name: name.to_string(),
                    field,
                    value: json!(given),
                    detail: format!("must match the service account {what} if specified"),
                });
            }
        }

        let sa = source
            .get("", "serviceaccounts", namespace, name)
            .ok_or_else(|| TokenRequestError::NotFound {
                resource: "serviceaccounts",
                name: name.to_string(),
            })?;

        let spec = &body["spec"];
        let audiences = match &spec["audiences"] {
            Value::Null => Vec::new(),
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad_body("spec.audiences must be a list of strings"))?,
            _ => return Err(bad_body("spec.audiences must be a list of strings")),
        };
        let expiration_seconds = match &spec["expirationSeconds"] {
            Value::Null => DEFAULT_EXPIRATION_SECONDS,
            v => v
                .as_i64()
                .ok_or_else(|| bad_body("spec.expirationSeconds must be an integer"))?,
        };
        // Validation comes before the bound object is looked up, as upstream orders it.
        validate_expiration("", expiration_seconds)?;

        let bound_ref = &spec["boundObjectRef"];
        let bound_object = if bound_ref.is_null() {
            None
        } else {
            Some(self.resolve_bound_object(namespace, name, bound_ref, source)?)
        };

        let req = IssueRequest {
            namespace: namespace.to_string(),
            service_account_name: name.to_string(),
            service_account_uid: sa["metadata"]["uid"].as_str().unwrap_or("").to_string(),
            audiences,
            expiration_seconds,
            bound_object,
        };
        let issued = self.issue_named(&req, "", now)?;

        let mut object = if body.is_object() {
            body.clone()
        } else {
            json!({})
        };
        object["apiVersion"] = json!("authentication.k8s.io/v1");
        object["kind"] = json!(KIND);
        if !object["metadata"].is_object() {
            object["metadata"] = json!({});
        }
        object["metadata"]["name"] = json!(name);
        object["metadata"]["namespace"] = json!(namespace);
        object["metadata"]["creationTimestamp"] = json!(crate::object::format_rfc3339(now));
        if !object["spec"].is_object() {
            object["spec"] = json!({});
        }
        object["spec"]["audiences"] = json!(issued.audiences);
        object["spec"]["expirationSeconds"] = json!(issued.expiration_seconds);
        object["status"] = json!({
            "token": issued.token,
            "expirationTimestamp": crate::object::format_rfc3339(issued.expiration_timestamp),
        });
        Ok(TokenRequestOutcome {
            object,
            warnings: issued.warnings,
            credential_id: issued.credential_id,
        })
    }

    /// Looks up `spec.boundObjectRef` (Pod, Secret or Node of the core group) and checks its
    /// uid; for a pod also its service account and node.
    fn resolve_bound_object(
        &self,
        namespace: &str,
        sa_name: &str,
        bound_ref: &Value,
        source: &dyn ObjectSource,
    ) -> Result<BoundObject, TokenRequestError> {
        let api_version = bound_ref["apiVersion"].as_str().unwrap_or("");
        let kind = bound_ref["kind"].as_str().unwrap_or("");
        let ref_name = bound_ref["name"].as_str().unwrap_or("");
        let ref_uid = bound_ref["uid"].as_str().unwrap_or("");
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let lookup = |resource: &'static str, ns: &str| {
            source
                .get("", resource, ns, ref_name)
                .filter(|_| !ref_name.is_empty())
                .ok_or_else(|| TokenRequestError::NotFound {
                    resource,
                    name: ref_name.to_string(),
                })
        };
        fn uid_of(obj: &Value) -> String {
            obj["metadata"]["uid"].as_str().unwrap_or("").to_string()
        }
        let bound = match (group, kind) {
            ("", "Pod") => {
                let pod = lookup("pods", namespace)?;
                if pod["spec"]["serviceAccountName"].as_str().unwrap_or("") != sa_name {
                    return Err(TokenRequestError::BadRequest(format!(
                        "cannot bind token for serviceaccount {sa_name:?} to pod running with \
                         different serviceaccount name."
                    )));
                }
                // The node name goes into the token even when the Node cannot be found.
                let node = pod["spec"]["nodeName"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .map(|node_name| {
                        let node_uid = source
                            .get("", "nodes", "", node_name)
                            .map(|n| uid_of(&n))
                            .unwrap_or_default();
                        (node_name.to_string(), node_uid)
                    });
                BoundObject::Pod {
                    name: ref_name.to_string(),
                    uid: uid_of(&pod),
                    node,
                }
            }
            ("", "Node") => BoundObject::Node {
                name: ref_name.to_string(),
                uid: uid_of(lookup("nodes", "")?.as_ref()),
            },
            ("", "Secret") => BoundObject::Secret {
                name: ref_name.to_string(),
                uid: uid_of(lookup("secrets", namespace)?.as_ref()),
            },
            _ => {
                return Err(TokenRequestError::BadRequest(format!(
                    "cannot bind token to object of type {group}/{version}, Kind={kind}"
                )))
            }
        };
        let actual_uid = match &bound {
            BoundObject::Pod { uid, .. }
            | BoundObject::Node { uid, .. }
            | BoundObject::Secret { uid, .. } => uid,
        };
        if !ref_uid.is_empty() && actual_uid != ref_uid {
            return Err(TokenRequestError::Conflict {
                kind: kind.to_string(),
                name: ref_name.to_string(),
                detail: format!(
                    "the UID in the bound object reference ({ref_uid}) does not match the UID \
                     in record. The object might have been deleted and then recreated"
                ),
            });
        }
        Ok(bound)
    }
}

fn bad_body(msg: &str) -> TokenRequestError {
    TokenRequestError::BadRequest(format!(
        "TokenRequest in version \"v1\" cannot be handled: {msg}"
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{TokenAuthority, TokenAuthorityConfig};
    use super::*;

    const YEAR: i64 = EXPIRATION_EXTENSION_SECONDS;

    fn claims_of(token: &str) -> serde_json::Map<String, Value> {
        jwt::unverified_claims(token).unwrap()
    }

    fn request(
        authority: &TokenAuthority,
        body: Value,
    ) -> Result<TokenRequestOutcome, TokenRequestError> {
        authority.token_request("default", "robot", &body, &cluster(), at(NOW))
    }

    fn pod_ref(uid: &str) -> Value {
        json!({"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": uid})
    }

    #[test]
    fn defaults_fill_audiences_and_lifetime() {
        let out = request(&authority(), json!({"spec": {}})).unwrap();
        let obj = &out.object;
        assert_eq!(obj["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(obj["kind"], "TokenRequest");
        assert_eq!(obj["metadata"]["name"], "robot");
        assert_eq!(obj["metadata"]["namespace"], "default");
        assert_eq!(obj["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(obj["spec"]["audiences"], json!([ISSUER, OLD_ISSUER]));
        assert_eq!(obj["spec"]["expirationSeconds"], 3600);
        assert_eq!(obj["status"]["expirationTimestamp"], "2023-11-14T23:13:20Z");
        let claims = claims_of(obj["status"]["token"].as_str().unwrap());
        assert_eq!(claims["exp"], NOW + 3600);
        assert_eq!(claims["kubernetes.io"]["serviceaccount"]["uid"], "sa-uid");
        assert!(out.warnings.is_empty());
        assert!(out.credential_id.starts_with("JTI="));
    }

    #[test]
    fn short_lifetimes_are_invalid_with_upstreams_message() {
        let err = request(&authority(), json!({"spec": {"expirationSeconds": 599}})).unwrap_err();
        assert_eq!(err.code(), 422);
        let api: ApiError = err.into();
        assert_eq!(
            api.message,
            "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: \
             Invalid value: 599: may not specify a duration less than 10 minutes"
        );
        let err = request(
            &authority(),
            json!({"spec": {"expirationSeconds": (1i64 << 32) + 1}}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("larger than 2^32 seconds"));
        assert!(request(&authority(), json!({"spec": {"expirationSeconds": 600}})).is_ok());
    }

    #[test]
    fn lifetimes_are_clamped_to_the_maximum_with_a_warning() {
        let mut config = config();
        config.max_expiration_seconds = Some(7200);
        let authority = TokenAuthority::new(config).unwrap();
        let out = request(&authority, json!({"spec": {"expirationSeconds": 86400}})).unwrap();
        assert_eq!(
            out.warnings,
            ["requested expiration of 86400 seconds shortened to 7200 seconds"]
        );
        assert_eq!(out.object["spec"]["expirationSeconds"], 7200);
        let claims = claims_of(out.object["status"]["token"].as_str().unwrap());
        assert_eq!(claims["exp"], NOW + 7200);
    }

    #[test]
    fn kubelet_tokens_are_extended_to_a_year_with_warnafter() {
        let body = json!({"spec": {"expirationSeconds": 3607, "boundObjectRef": pod_ref("")}});
        let out = request(&authority(), body.clone()).unwrap();
        let claims = claims_of(out.object["status"]["token"].as_str().unwrap());
        assert_eq!(claims["exp"], NOW as i64 + YEAR);
        assert_eq!(claims["kubernetes.io"]["warnafter"], NOW + 3607);
        assert_eq!(
            out.object["status"]["expirationTimestamp"],
            "2023-11-14T23:13:27Z"
        );
        assert_eq!(out.object["spec"]["expirationSeconds"], 3607);

        let not_extended = |authority: &TokenAuthority, body: Value| {
            let out = request(authority, body).unwrap();
            let claims = claims_of(out.object["status"]["token"].as_str().unwrap());
            assert_eq!(claims["exp"], NOW + 3607);
            assert!(claims["kubernetes.io"].get("warnafter").is_none());
        };
        // Another audience, no pod, or the flag off: the requested lifetime holds.
        let mut other_aud = body.clone();
        other_aud["spec"]["audiences"] = json!(["vault"]);
        not_extended(&authority(), other_aud);
        not_extended(&authority(), json!({"spec": {"expirationSeconds": 3607}}));
        let mut config: TokenAuthorityConfig = config();
        config.extend_expiration = false;
        not_extended(&TokenAuthority::new(config).unwrap(), body);
    }

    #[test]
    fn pod_bound_requests_record_pod_and_node() {
        let out = request(
            &authority(),
            json!({"spec": {"boundObjectRef": pod_ref("pod-uid")}}),
        )
        .unwrap();
        let claims = claims_of(out.object["status"]["token"].as_str().unwrap());
        assert_eq!(
            claims["kubernetes.io"]["pod"],
            json!({"name": "web", "uid": "pod-uid"})
        );
        assert_eq!(
            claims["kubernetes.io"]["node"],
            json!({"name": "node-1", "uid": "node-uid"})
        );
        assert_eq!(out.object["spec"]["boundObjectRef"], pod_ref("pod-uid"));

        // Without the Node object the name alone goes in.
        let mut src = cluster();
        src.remove("", "nodes", "", "node-1");
        let out = authority()
            .token_request(
                "default",
                "robot",
                &json!({"spec": {"boundObjectRef": pod_ref("")}}),
                &src,
                at(NOW),
            )
            .unwrap();
        let claims = claims_of(out.object["status"]["token"].as_str().unwrap());
        assert_eq!(claims["kubernetes.io"]["node"], json!({"name": "node-1"}));
    }

    #[test]
    fn bound_object_problems_map_to_upstreams_statuses() {
        let authority = authority();
        let bound = |r: Value| request(&authority, json!({"spec": {"boundObjectRef": r}}));
        let cases: Vec<(&str, Value, u16, &str)> = vec![
            (
                "uid mismatch",
                pod_ref("old-uid"),
                409,
                "Operation cannot be fulfilled on Pod \"web\": the UID in the bound object \
                 reference (old-uid) does not match the UID in record. The object might have \
                 been deleted and then recreated",
            ),
            (
                "missing pod",
                json!({"kind": "Pod", "apiVersion": "v1", "name": "gone"}),
                404,
                "pods \"gone\" not found",
            ),
            (
                "unsupported kind",
                json!({"kind": "Deployment", "apiVersion": "apps/v1", "name": "d"}),
                400,
                "cannot bind token to object of type apps/v1, Kind=Deployment",
            ),
            (
                "secret uid mismatch",
                json!({"kind": "Secret", "apiVersion": "v1", "name": "robot-data", "uid": "x"}),
                409,
                "Operation cannot be fulfilled on Secret \"robot-data\": the UID in the bound \
                 object reference (x) does not match the UID in record. The object might have \
                 been deleted and then recreated",
            ),
        ];
        for (name, r, code, message) in cases {
            let err = bound(r).unwrap_err();
            assert_eq!(err.code(), code, "{name}");
            let api: ApiError = err.into();
            assert_eq!(api.code, code, "{name}");
            assert_eq!(api.message, message, "{name}");
        }
        let node =
            bound(json!({"kind": "Node", "apiVersion": "v1", "name": "node-1", "uid": "node-uid"}))
                .unwrap();
        let claims = claims_of(node.object["status"]["token"].as_str().unwrap());
        assert_eq!(
            claims["kubernetes.io"]["node"],
            json!({"name": "node-1", "uid": "node-uid"})
        );
    }

    #[test]
    fn pods_of_another_service_account_cannot_be_bound() {
        let mut src = cluster();
        src.insert(
            "",
            "pods",
            json!({"metadata": meta("web", "default", "pod-uid"), "spec": {"serviceAccountName": "other"}}),
        );
        let err = authority()
            .token_request(
                "default",
                "robot",
                &json!({"spec": {"boundObjectRef": pod_ref("")}}),
                &src,
                at(NOW),
            )
            .unwrap_err();
        assert_eq!(
            err,
            TokenRequestError::BadRequest(
                "cannot bind token for serviceaccount \"robot\" to pod running with different \
                 serviceaccount name."
                    .into()
            )
        );
    }

    #[test]
    fn names_must_match_the_url_and_the_service_account_must_exist() {
        let authority = authority();
        let err = request(&authority, json!({"metadata": {"name": "other"}})).unwrap_err();
        let api: ApiError = err.into();
        assert_eq!(
            api.message,
            "TokenRequest.authentication.k8s.io \"robot\" is invalid: metadata.name: Invalid \
             value: \"other\": must match the service account name if specified"
        );
        let err = request(
            &authority,
            json!({"metadata": {"namespace": "kube-system"}}),
        )
        .unwrap_err();
        assert_eq!(err.code(), 422);
        let err = authority
            .token_request("default", "ghost", &json!({}), &cluster(), at(NOW))
            .unwrap_err();
        assert_eq!(
            ApiError::from(err).message,
            "serviceaccounts \"ghost\" not found"
        );
        let err = request(&authority, json!({"spec": {"expirationSeconds": "1h"}})).unwrap_err();
        assert_eq!(err.code(), 400);
    }

    #[test]
    fn without_a_signing_key_tokens_are_unavailable() {
        let mut config = config();
        config.signing_key = None;
        let authority = TokenAuthority::new(config).unwrap();
        assert!(!authority.can_issue());
        let err = request(&authority, json!({})).unwrap_err();
        assert_eq!(err, TokenRequestError::Unavailable);
        assert_eq!(err.code(), 404);
        let req = IssueRequest::new("default", "robot", "sa-uid");
        assert_eq!(
            authority.issue(&req, at(NOW)),
            Err(TokenRequestError::Unavailable)
        );
        // It still authenticates tokens signed with a key it trusts.
        let signer = config_signer();
        let token = jwt::sign(
            &signer,
            &json!({
                "iss": ISSUER, "aud": [ISSUER], "exp": NOW + 600, "nbf": NOW, "iat": NOW,
                "sub": "system:serviceaccount:default:robot",
                "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "robot", "uid": "sa-uid"}},
            }),
        )
        .unwrap();
        assert!(authority
            .authenticate(&token, &cluster(), at(NOW))
            .unwrap()
            .is_ok());
    }

    fn config_signer() -> super::super::SigningKey {
        config().signing_key.unwrap()
    }

    #[test]
    fn issued_tokens_round_trip_through_authentication() {
        let authority = authority();
        let out = request(&authority, json!({"spec": {"boundObjectRef": pod_ref("")}})).unwrap();
        let user = authority
            .authenticate(
                out.object["status"]["token"].as_str().unwrap(),
                &cluster(),
                at(NOW + 60),
            )
            .unwrap()
            .unwrap();
        assert_eq!(user.extra["authentication.kubernetes.io/pod-name"], ["web"]);
        assert_eq!(
            user.extra["authentication.kubernetes.io/credential-id"],
            [out.credential_id]
        );
    }
}
