//! Service-account tokens (TokenRequest issuance, bound and legacy token authentication,
//! OIDC discovery documents) and bootstrap-token authentication.
//!
//! [`TokenAuthority`] holds what upstream's `--service-account-*` and `--api-audiences` flags
//! configure; [`bootstrap_token::authenticate`] is the `--enable-bootstrap-token-auth`
//! authenticator. Authenticators answer `None` for tokens that are not theirs, so the chain
//! tries the next one, and `Some(Err(reason))` for their own tokens that fail validation.

pub mod bootstrap_token;
pub mod claims;
mod der;
pub mod jwt;
pub mod keys;
pub mod token_request;

use std::collections::BTreeSet;
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::authn::UserInfo;
use crate::source::ObjectSource;

pub use claims::{make_username, BoundObject, LEGACY_ISSUER};
pub use jwt::JwtError;
pub use keys::{load_public_keys, public_keys_from_pem, Algorithm, KeyError, ParseKeyError};
pub use keys::{PublicKey, SigningKey};
pub use token_request::{IssueRequest, IssuedToken, TokenRequestError, TokenRequestOutcome};

/// Path of the OIDC discovery document.
pub const OPENID_CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";
/// Path of the key set; also the default `jwks_uri` under the external address.
pub const JWKS_PATH: &str = "/openid/v1/jwks";
/// Content type upstream serves the key set with (the discovery document is
/// `application/json`).
pub const JWKS_CONTENT_TYPE: &str = "application/jwk-set+json";
/// Cache-Control of both discovery responses, as upstream.
pub const DISCOVERY_CACHE_CONTROL: &str = "public, max-age=3600";

/// Flags of [`TokenAuthority::new`] that do not hold together, in upstream's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("service-account-issuer is a required flag")]
    NoIssuer,
    #[error("service-account-issuer should not be an empty string")]
    EmptyIssuer,
    #[error("service-account-issuer {0:?} is already specified")]
    DuplicateIssuer(String),
    #[error("service-account-key-file is a required flag")]
    NoKeys,
    #[error("the service-account-max-token-expiration must be between 1 hour and 2^32 seconds")]
    MaxExpirationOutOfRange,
    #[error("service-account-jwks-uri requires https scheme, parsed as: {0}")]
    JwksUriNotHttps(String),
}

/// Inputs of [`TokenAuthority::new`], one field per upstream flag.
#[derive(Debug)]
pub struct TokenAuthorityConfig {
    /// `--service-account-signing-key-file`; without it the TokenRequest API is unavailable.
    pub signing_key: Option<SigningKey>,
    /// Keys of `--service-account-key-file` (see [`load_public_keys`]); when empty, the
    /// signing key's public half verifies tokens.
    pub verification_keys: Vec<PublicKey>,
    /// `--service-account-issuer` (repeatable): the first signs, all are accepted.
    pub issuers: Vec<String>,
    /// `--api-audiences`; empty means the issuers.
    pub api_audiences: Vec<String>,
    /// `--service-account-max-token-expiration` in seconds; None or 0 means no limit.
    pub max_expiration_seconds: Option<i64>,
    /// `--service-account-extend-token-expiration` (upstream default true).
    pub extend_expiration: bool,
    /// `--service-account-jwks-uri`.
    pub jwks_uri: Option<String>,
    /// The server's external `host:port`, the default home of the key set when no
    /// `jwks_uri` is given (upstream's `ExternalAddress`).
    pub external_address: Option<String>,
}

impl TokenAuthorityConfig {
    /// A configuration with upstream's defaults and the given issuers.
    pub fn new(issuers: Vec<String>) -> Self {
        Self {
            signing_key: None,
            verification_keys: Vec::new(),
            issuers,
            api_audiences: Vec::new(),
            max_expiration_seconds: None,
            extend_expiration: true,
            jwks_uri: None,
            external_address: None,
        }
    }
}

/// A successful authentication: the user and the audiences the token was accepted for
/// (`status.audiences` of a TokenReview).
#[derive(Debug, Clone, PartialEq)]
pub struct Authenticated {
    /// The service account's user; the caller adds `system:authenticated`.
    pub user: UserInfo,
    /// The token's audiences that were also requested.
    pub audiences: Vec<String>,
}

/// Issues and authenticates service-account tokens, and renders the OIDC discovery
/// documents.
#[derive(Debug)]
pub struct TokenAuthority {
    signer: Option<SigningKey>,
    keys: Vec<PublicKey>,
    issuers: Vec<String>,
    api_audiences: Vec<String>,
    max_expiration_seconds: Option<i64>,
    extend_expiration: bool,
    jwks_uri: Option<String>,
    external_address: Option<String>,
}

impl TokenAuthority {
    /// Checks the flags as upstream's option validation does and builds the authority.
    pub fn new(config: TokenAuthorityConfig) -> Result<Self, ConfigError> {
        if config.issuers.is_empty() {
            return Err(ConfigError::NoIssuer);
        }
        let mut seen = BTreeSet::new();
        for issuer in &config.issuers {
            if issuer.is_empty() {
                return Err(ConfigError::EmptyIssuer);
            }
            if !seen.insert(issuer.as_str()) {
                return Err(ConfigError::DuplicateIssuer(issuer.clone()));
            }
        }
        let max_expiration_seconds = config.max_expiration_seconds.filter(|m| *m != 0);
        if let Some(max) = max_expiration_seconds {
            if !(3600..=1i64 << 32).contains(&max) {
                return Err(ConfigError::MaxExpirationOutOfRange);
            }
            if config.extend_expiration && max < token_request::EXPIRATION_EXTENSION_SECONDS {
                tracing::warn!(
                    max_expiration_seconds = max,
                    "service-account-extend-token-expiration is true, enabling tokens valid up \
                     to {} seconds, longer than service-account-max-token-expiration",
                    token_request::EXPIRATION_EXTENSION_SECONDS
                );
            }
        }
        if let Some(uri) = &config.jwks_uri {
            if !uri.starts_with("https://") {
                return Err(ConfigError::JwksUriNotHttps(uri.clone()));
            }
        }
        let mut keys = config.verification_keys;
        if keys.is_empty() {
            match &config.signing_key {
                Some(signer) => keys.push(signer.public_key().clone()),
                None => return Err(ConfigError::NoKeys),
            }
        }
        // The same key listed twice (a key file and its certificate) verifies the same tokens.
        let mut kids = BTreeSet::new();
        keys.retain(|k| kids.insert(k.kid().to_string()));
        let api_audiences = if config.api_audiences.is_empty() {
            config.issuers.clone()
        } else {
            config.api_audiences
        };
        Ok(Self {
            signer: config.signing_key,
            keys,
            issuers: config.issuers,
            api_audiences,
            max_expiration_seconds,
            extend_expiration: config.extend_expiration,
            jwks_uri: config.jwks_uri,
            external_address: config.external_address,
        })
    }

    /// Whether tokens can be issued, i.e. whether `serviceaccounts/token` is served.
    pub fn can_issue(&self) -> bool {
        self.signer.is_some()
    }

    /// The audiences tokens default to and must include one of (`--api-audiences`).
    pub fn api_audiences(&self) -> &[String] {
        &self.api_audiences
    }

    /// The issuer that signs new tokens.
    pub fn issuer(&self) -> &str {
        self.issuers.first().map_or("", String::as_str)
    }

    /// The keys that verify tokens.
    pub fn verification_keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Authenticates a bearer token for the API server's own audiences.
    pub fn authenticate(
        &self,
        token: &str,
        source: &dyn ObjectSource,
        now: SystemTime,
    ) -> Option<Result<UserInfo, String>> {
        self.authenticate_for(token, None, source, now)
            .map(|r| r.map(|a| a.user))
    }

    /// Authenticates a bearer token for `audiences` (a TokenReview's `spec.audiences`;
    /// None or empty means the API audiences). None when the token is no JWT of a known
    /// issuer (nor of [`LEGACY_ISSUER`]).
    pub fn authenticate_for(
        &self,
        token: &str,
        audiences: Option<&[String]>,
        source: &dyn ObjectSource,
        now: SystemTime,
    ) -> Option<Result<Authenticated, String>> {
        let unverified = jwt::unverified_claims(token)?;
        let iss = unverified.get("iss")?.as_str()?;
        let legacy = if self.issuers.iter().any(|i| i == iss) {
            false
        } else if iss == LEGACY_ISSUER {
            true
        } else {
            return None;
        };
        let parsed = jwt::Parsed::new(token).ok()?;
        Some(self.validate(token, &parsed, legacy, audiences, source, now))
    }

    fn validate(
        &self,
        token: &str,
        parsed: &jwt::Parsed<'_>,
        legacy: bool,
        requested: Option<&[String]>,
        source: &dyn ObjectSource,
        now: SystemTime,
    ) -> Result<Authenticated, String> {
        parsed.verify(&self.keys).map_err(|e| e.to_string())?;
        let claims = parsed.claims().map_err(|e| e.to_string())?;
        let public = claims::PublicClaims::parse(&claims)?;
        let issuer_ok = if legacy {
            public.iss == LEGACY_ISSUER
        } else {
            self.issuers.contains(&public.iss)
        };
        if !issuer_ok {
            return Err(format!("token issuer {:?} is invalid", public.iss));
        }
        let token_audiences = if public.aud.is_empty() {
            // Only legacy tokens lack an audience; they are good for the API server.
            &self.api_audiences
        } else {
            &public.aud
        };
        let requested = requested
            .filter(|r| !r.is_empty())
            .unwrap_or(&self.api_audiences);
        let audiences: Vec<String> = token_audiences
            .iter()
            .filter(|a| requested.contains(a))
            .cloned()
            .collect();
        if audiences.is_empty() && !self.api_audiences.is_empty() {
            return Err(format!(
                "token audiences {} is invalid for the target audiences {}",
                go_quoted(token_audiences),
                go_quoted(requested)
            ));
        }
        let info = if legacy {
            claims::validate_legacy(token, &public, &claims, source)?
        } else {
            claims::validate_bound(&public, &claims, source, now)?
        };
        Ok(Authenticated {
            user: info.user_info(),
            audiences,
        })
    }

    /// The OIDC discovery document (`/.well-known/openid-configuration`), or None when
    /// upstream would not serve the discovery endpoints: the issuer is not an https URL
    /// without query and fragment. Serve [`TokenAuthority::jwks`] only when this is Some.
    pub fn openid_configuration(&self) -> Option<Value> {
        let issuer = self.issuer();
        let rest = issuer.strip_prefix("https://")?;
        if rest.is_empty() || issuer.contains(['?', '#']) {
            return None;
        }
        let jwks_uri = match (&self.jwks_uri, &self.external_address) {
            (Some(uri), _) => uri.clone(),
            (None, Some(addr)) if !addr.is_empty() => format!("https://{addr}{JWKS_PATH}"),
            _ => format!("{}{JWKS_PATH}", issuer.trim_end_matches('/')),
        };
        let algs: BTreeSet<&str> = self.keys.iter().map(|k| k.algorithm().as_str()).collect();
        Some(json!({
            "issuer": issuer,
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
        }))
    }

    /// The verification keys as a JWK set (`/openid/v1/jwks`).
    pub fn jwks(&self) -> Value {
        json!({"keys": self.keys.iter().map(PublicKey::jwk).collect::<Vec<_>>()})
    }
}

/// A list as Go's `%q` prints a `[]string`: `["a" "b"]`.
fn go_quoted(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

#[cfg(test)]
pub(crate) mod testkeys {
    //! PEM fixtures made with openssl, and helpers shared by the tests of this module.

    pub(crate) const RSA_PKCS1: &str = include_str!("testdata/rsa_pkcs1.pem");
    pub(crate) const RSA_PKCS8: &str = include_str!("testdata/rsa_pkcs8.pem");
    pub(crate) const RSA_SPKI: &str = include_str!("testdata/rsa_spki.pem");
    pub(crate) const RSA_PKCS1_PUBLIC: &str = include_str!("testdata/rsa_pkcs1_public.pem");
    pub(crate) const EC256_SEC1: &str = include_str!("testdata/ec256_sec1.pem");
    pub(crate) const EC256_PKCS8: &str = include_str!("testdata/ec256_pkcs8.pem");
    pub(crate) const EC256_SPKI: &str = include_str!("testdata/ec256_spki.pem");
    pub(crate) const EC256_CERT: &str = include_str!("testdata/ec256_cert.pem");
    pub(crate) const EC384_SEC1_WITH_PARAMS: &str = include_str!("testdata/ec384_sec1_params.pem");
    pub(crate) const EC384_SPKI: &str = include_str!("testdata/ec384_spki.pem");
    /// An RS256 token signed with `openssl dgst -sha256 -sign` by the RSA fixture key.
    pub(crate) const OPENSSL_SIGNED_RS256: &str = include_str!("testdata/rsa_openssl_signed.jwt");

    // Computed with `openssl pkey -pubout -outform DER | openssl dgst -sha256 -binary`,
    // base64url without padding.
    pub(crate) const RSA_KID: &str = "ydMfT4hUtrAI5v0nNJ9WMAj7MDmOJhYRe04Bk0mfRug";
    pub(crate) const EC256_KID: &str = "BKK4JxTwi8cIhxi5-2C_RKUllb02W1YJ6XRUIejnHyE";
    pub(crate) const EC384_KID: &str = "6D__C091bhpx1ZlGfCqcgeao4mc6v44wB9gsVcDm43k";

    /// The only key in a public-key PEM.
    pub(crate) fn public_key(pem: &str) -> super::PublicKey {
        let mut keys = super::public_keys_from_pem(pem.as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        keys.remove(0)
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! A small cluster and authority for the tests of this module.

    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde_json::json;

    use super::testkeys::*;
    use super::*;
    use crate::source::MemorySource;

    pub(crate) const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
    pub(crate) const OLD_ISSUER: &str = "https://old.example.com";
    pub(crate) const NOW: u64 = 1_700_000_000;

    pub(crate) fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    pub(crate) fn config() -> TokenAuthorityConfig {
        let mut config = TokenAuthorityConfig::new(vec![ISSUER.into(), OLD_ISSUER.into()]);
        config.signing_key = Some(SigningKey::from_pem(RSA_PKCS1.as_bytes()).unwrap());
        config.verification_keys = vec![public_key(RSA_SPKI), public_key(EC256_SPKI)];
        config
    }

    pub(crate) fn authority() -> TokenAuthority {
        TokenAuthority::new(config()).unwrap()
    }

    pub(crate) fn meta(name: &str, namespace: &str, uid: &str) -> Value {
        json!({"name": name, "namespace": namespace, "uid": uid})
    }

    /// default/robot (uid sa-uid), its pod default/web on node-1, a secret, and node-1.
    pub(crate) fn cluster() -> MemorySource {
        let mut src = MemorySource::new();
        src.insert(
            "",
            "serviceaccounts",
            json!({"metadata": meta("robot", "default", "sa-uid")}),
        );
        src.insert(
            "",
            "pods",
            json!({
                "metadata": meta("web", "default", "pod-uid"),
                "spec": {"serviceAccountName": "robot", "nodeName": "node-1"},
            }),
        );
        src.insert(
            "",
            "secrets",
            json!({"metadata": meta("robot-data", "default", "secret-uid"), "type": "Opaque"}),
        );
        src.insert(
            "",
            "nodes",
            json!({"metadata": meta("node-1", "", "node-uid")}),
        );
        src
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};

    use super::testkeys::*;
    use super::testutil::*;
    use super::*;
    use crate::source::MemorySource;

    fn issue(authority: &TokenAuthority, bound: Option<BoundObject>) -> String {
        let mut req = IssueRequest::new("default", "robot", "sa-uid");
        req.bound_object = bound;
        authority.issue(&req, at(NOW)).unwrap().token
    }

    fn pod_bound() -> Option<BoundObject> {
        Some(BoundObject::Pod {
            name: "web".into(),
            uid: "pod-uid".into(),
            node: Some(("node-1".into(), "node-uid".into())),
        })
    }

    fn auth(
        authority: &TokenAuthority,
        token: &str,
        src: &MemorySource,
        now: u64,
    ) -> Result<UserInfo, String> {
        authority
            .authenticate(token, src, at(now))
            .expect("the token is ours")
    }

    #[test]
    fn issued_tokens_authenticate_as_the_service_account() {
        let authority = authority();
        let token = issue(&authority, None);
        let user = auth(&authority, &token, &cluster(), NOW + 10).unwrap();
        assert_eq!(user.name, "system:serviceaccount:default:robot");
        assert_eq!(user.uid, "sa-uid");
        assert_eq!(
            user.groups,
            ["system:serviceaccounts", "system:serviceaccounts:default"]
        );
        let jti = jwt::unverified_claims(&token).unwrap()["jti"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(uuid::Uuid::parse_str(&jti).unwrap().get_version_num(), 4);
        assert_eq!(
            user.extra.get(claims::CREDENTIAL_ID_KEY),
            Some(&vec![format!("JTI={jti}")])
        );
        assert_eq!(user.extra.len(), 1);
    }

    #[test]
    fn issued_claims_match_upstreams_layout() {
        let authority = authority();
        let token = issue(&authority, pod_bound());
        let claims = jwt::unverified_claims(&token).unwrap();
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["sub"], "system:serviceaccount:default:robot");
        assert_eq!(claims["aud"], json!([ISSUER, OLD_ISSUER]));
        assert_eq!(claims["iat"], NOW);
        assert_eq!(claims["nbf"], NOW);
        assert_eq!(claims["exp"], NOW + 3600);
        assert_eq!(
            claims["kubernetes.io"],
            json!({
                "namespace": "default",
                "serviceaccount": {"name": "robot", "uid": "sa-uid"},
                "pod": {"name": "web", "uid": "pod-uid"},
                "node": {"name": "node-1", "uid": "node-uid"},
            })
        );
        let header = token.split('.').next().unwrap();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "RS256", "kid": RSA_KID}));
    }

    #[test]
    fn pod_bound_tokens_carry_pod_and_node_and_end_with_the_pod() {
        let authority = authority();
        let token = issue(&authority, pod_bound());
        let mut src = cluster();
        let user = auth(&authority, &token, &src, NOW).unwrap();
        let extra = |k: &str| user.extra.get(k).map(|v| v[0].as_str());
        assert_eq!(extra(claims::POD_NAME_KEY), Some("web"));
        assert_eq!(extra(claims::POD_UID_KEY), Some("pod-uid"));
        assert_eq!(extra(claims::NODE_NAME_KEY), Some("node-1"));
        assert_eq!(extra(claims::NODE_UID_KEY), Some("node-uid"));

        // A pod-bound token does not need the Node object.
        src.remove("", "nodes", "", "node-1");
        assert!(auth(&authority, &token, &src, NOW).is_ok());

        // Deleted less than a minute ago: still valid; longer ago: invalid.
        let mut pod = (*src.get("", "pods", "default", "web").unwrap()).clone();
        pod["metadata"]["deletionTimestamp"] = json!("2023-11-14T22:13:00Z"); // NOW - 20s
        src.insert("", "pods", pod.clone());
        assert!(auth(&authority, &token, &src, NOW).is_ok());
        assert!(auth(&authority, &token, &src, NOW + 40).is_ok());
        assert_eq!(
            auth(&authority, &token, &src, NOW + 41).unwrap_err(),
            "service account token has been invalidated"
        );

        // Recreated under the same name.
        pod["metadata"] = meta("web", "default", "other-uid");
        src.insert("", "pods", pod);
        assert_eq!(
            auth(&authority, &token, &src, NOW).unwrap_err(),
            "pod UID (other-uid) does not match service account pod ref claim (pod-uid)"
        );
        src.remove("", "pods", "default", "web");
        assert!(auth(&authority, &token, &src, NOW).is_err());
    }

    #[test]
    fn secret_and_node_bound_tokens_need_their_object() {
        let authority = authority();
        let secret_token = issue(
            &authority,
            Some(BoundObject::Secret {
                name: "robot-data".into(),
                uid: "secret-uid".into(),
            }),
        );
        let node_token = issue(
            &authority,
            Some(BoundObject::Node {
                name: "node-1".into(),
                uid: "node-uid".into(),
            }),
        );
        let mut src = cluster();
        assert!(auth(&authority, &secret_token, &src, NOW).is_ok());
        let user = auth(&authority, &node_token, &src, NOW).unwrap();
        assert_eq!(user.extra[claims::NODE_NAME_KEY], ["node-1"]);
        assert!(!user.extra.contains_key(claims::POD_NAME_KEY));

        src.insert(
            "",
            "nodes",
            json!({"metadata": meta("node-1", "", "new-node-uid")}),
        );
        assert!(auth(&authority, &node_token, &src, NOW)
            .unwrap_err()
            .starts_with("node UID (new-node-uid) does not match"));
        src.remove("", "secrets", "default", "robot-data");
        assert_eq!(
            auth(&authority, &secret_token, &src, NOW).unwrap_err(),
            "service account token has been invalidated"
        );
    }

    #[test]
    fn the_service_account_must_still_exist_with_its_uid() {
        let authority = authority();
        let token = issue(&authority, None);
        let mut src = cluster();
        src.insert(
            "",
            "serviceaccounts",
            json!({"metadata": meta("robot", "default", "new-uid")}),
        );
        assert_eq!(
            auth(&authority, &token, &src, NOW).unwrap_err(),
            "service account UID (new-uid) does not match claim (sa-uid)"
        );
        src.remove("", "serviceaccounts", "default", "robot");
        assert_eq!(
            auth(&authority, &token, &src, NOW).unwrap_err(),
            "serviceaccounts \"robot\" not found"
        );
    }

    #[test]
    fn tokens_expire_after_their_lifetime_plus_leeway() {
        let authority = authority();
        let token = issue(&authority, None);
        let src = cluster();
        assert!(auth(&authority, &token, &src, NOW + 3600 + 60).is_ok());
        assert_eq!(
            auth(&authority, &token, &src, NOW + 3600 + 61).unwrap_err(),
            "service account token has expired"
        );
        assert_eq!(
            auth(&authority, &token, &src, NOW - 61).unwrap_err(),
            "service account token is not valid yet"
        );
    }

    #[test]
    fn audiences_must_meet_the_requested_ones() {
        let authority = authority();
        let mut req = IssueRequest::new("default", "robot", "sa-uid");
        req.audiences = vec!["vault".into()];
        let token = authority.issue(&req, at(NOW)).unwrap().token;
        let src = cluster();
        assert_eq!(
            auth(&authority, &token, &src, NOW).unwrap_err(),
            format!(
                "token audiences [\"vault\"] is invalid for the target audiences [\"{ISSUER}\" \"{OLD_ISSUER}\"]"
            )
        );
        let vault = ["vault".to_string()];
        let ok = authority
            .authenticate_for(&token, Some(&vault), &src, at(NOW))
            .unwrap()
            .unwrap();
        assert_eq!(ok.audiences, vault);
    }

    #[test]
    fn foreign_tokens_are_left_to_other_authenticators() {
        let authority = authority();
        let src = cluster();
        let other_issuer = {
            let key = SigningKey::from_pem(RSA_PKCS1.as_bytes()).unwrap();
            jwt::sign(&key, &json!({"iss": "https://dex.example.com", "sub": "x"})).unwrap()
        };
        for token in [
            "abcdef.0123456789abcdef",
            "not-a-jwt",
            "{\"iss\": \"x\"}",
            other_issuer.as_str(),
        ] {
            assert!(
                authority.authenticate(token, &src, at(NOW)).is_none(),
                "{token}"
            );
        }
    }

    #[test]
    fn every_configured_issuer_is_accepted_but_only_known_keys() {
        let authority = authority();
        let src = cluster();
        let claims = |iss: &str| {
            json!({
                "iss": iss, "sub": "system:serviceaccount:default:robot", "aud": [OLD_ISSUER],
                "exp": NOW + 600, "iat": NOW, "nbf": NOW,
                "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "robot", "uid": "sa-uid"}},
            })
        };
        let ec = SigningKey::from_pem(EC256_SEC1.as_bytes()).unwrap();
        let old = jwt::sign(&ec, &claims(OLD_ISSUER)).unwrap();
        assert!(auth(&authority, &old, &src, NOW).is_ok());

        let stranger = SigningKey::from_pem(EC384_SEC1_WITH_PARAMS.as_bytes()).unwrap();
        let forged = jwt::sign(&stranger, &claims(ISSUER)).unwrap();
        assert_eq!(
            auth(&authority, &forged, &src, NOW).unwrap_err(),
            "invalid signature, no keys found"
        );
    }

    #[test]
    fn a_token_signed_by_openssl_authenticates() {
        let authority = authority_with_issuer("https://kubernetes.default.svc");
        let mut src = cluster();
        src.insert(
            "",
            "serviceaccounts",
            json!({"metadata": meta("robot", "default", "6d0c9a5e-1111-4c6e-9c2e-000000000001")}),
        );
        let user = auth(&authority, OPENSSL_SIGNED_RS256.trim(), &src, NOW).unwrap();
        assert_eq!(user.name, "system:serviceaccount:default:robot");
        assert!(user.extra.is_empty());
    }

    fn authority_with_issuer(issuer: &str) -> TokenAuthority {
        let mut config = config();
        config.issuers = vec![issuer.into()];
        TokenAuthority::new(config).unwrap()
    }

    fn legacy_token(key: &SigningKey, secret_name: &str) -> String {
        jwt::sign(
            key,
            &json!({
                "iss": LEGACY_ISSUER,
                "sub": "system:serviceaccount:default:robot",
                "kubernetes.io/serviceaccount/namespace": "default",
                "kubernetes.io/serviceaccount/secret.name": secret_name,
                "kubernetes.io/serviceaccount/service-account.name": "robot",
                "kubernetes.io/serviceaccount/service-account.uid": "sa-uid",
            }),
        )
        .unwrap()
    }

    fn token_secret(token: &str) -> Value {
        json!({
            "metadata": {
                "name": "robot-token",
                "namespace": "default",
                "uid": "tok-uid",
                "annotations": {"kubernetes.io/service-account.name": "robot"},
            },
            "type": "kubernetes.io/service-account-token",
            "data": {"token": STANDARD.encode(token)},
        })
    }

    #[test]
    fn legacy_tokens_live_as_long_as_their_secret_holds_them() {
        let authority = authority();
        let key = SigningKey::from_pem(RSA_PKCS8.as_bytes()).unwrap();
        let token = legacy_token(&key, "robot-token");
        let mut src = cluster();
        src.insert("", "secrets", token_secret(&token));
        let user = auth(&authority, &token, &src, NOW).unwrap();
        assert_eq!(user.name, "system:serviceaccount:default:robot");
        assert_eq!(user.uid, "sa-uid");
        assert!(user.extra.is_empty());

        src.insert("", "secrets", token_secret("another token"));
        assert_eq!(
            auth(&authority, &token, &src, NOW).unwrap_err(),
            "Token does not match server's copy"
        );

        let mut invalidated = token_secret(&token);
        invalidated["metadata"]["labels"] =
            json!({claims::LEGACY_INVALID_SINCE_LABEL: "2023-11-01"});
        src.insert("", "secrets", invalidated);
        assert_eq!(
            auth(&authority, &token, &src, NOW).unwrap_err(),
            "Token has been invalidated"
        );

        let mut deleting = token_secret(&token);
        deleting["metadata"]["deletionTimestamp"] = json!("2023-11-14T22:13:20Z");
        src.insert("", "secrets", deleting);
        assert!(auth(&authority, &token, &src, NOW).is_err());

        src.insert("", "secrets", token_secret(&token));
        src.insert(
            "",
            "serviceaccounts",
            json!({"metadata": meta("robot", "default", "new-uid")}),
        );
        assert!(auth(&authority, &token, &src, NOW).is_err());
    }

    #[test]
    fn legacy_tokens_need_every_claim() {
        let authority = authority();
        let key = SigningKey::from_pem(RSA_PKCS1.as_bytes()).unwrap();
        let token = jwt::sign(
            &key,
            &json!({"iss": LEGACY_ISSUER, "sub": "system:serviceaccount:default:robot",
                    "kubernetes.io/serviceaccount/namespace": "default"}),
        )
        .unwrap();
        assert_eq!(
            auth(&authority, &token, &cluster(), NOW).unwrap_err(),
            "secretName claim is missing"
        );
    }

    #[test]
    fn openid_configuration_lists_issuer_jwks_uri_and_algorithms() {
        let mut config = config();
        config.external_address = Some("10.0.0.1:6443".into());
        let authority = TokenAuthority::new(config).unwrap();
        assert_eq!(
            authority.openid_configuration().unwrap(),
            json!({
                "issuer": ISSUER,
                "jwks_uri": "https://10.0.0.1:6443/openid/v1/jwks",
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256", "RS256"],
            })
        );

        let mut config = super::testutil::config();
        config.jwks_uri = Some("https://keys.example.com/jwks".into());
        let authority = TokenAuthority::new(config).unwrap();
        assert_eq!(
            authority.openid_configuration().unwrap()["jwks_uri"],
            "https://keys.example.com/jwks"
        );
        assert_eq!(
            authority_with_issuer("https://issuer.example.com/")
                .openid_configuration()
                .unwrap()["jwks_uri"],
            "https://issuer.example.com/openid/v1/jwks"
        );
        for issuer in ["kubernetes.default.svc", "http://x", "https://x?a=b"] {
            assert!(authority_with_issuer(issuer)
                .openid_configuration()
                .is_none());
        }
    }

    /// Verifies `token` with nothing but the JWKS document, as an external relying party.
    fn verify_with_jwks(jwks: &Value, token: &str) -> bool {
        let (signing_input, signature) = token.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        let b = |jwk: &Value, k: &str| URL_SAFE_NO_PAD.decode(jwk[k].as_str().unwrap()).unwrap();
        let jwk = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == header["kid"])
            .unwrap();
        assert_eq!(jwk["alg"], header["alg"]);
        match jwk["kty"].as_str().unwrap() {
            "RSA" => RsaPublicKeyComponents {
                n: b(jwk, "n"),
                e: b(jwk, "e"),
            }
            .verify(
                &sig::RSA_PKCS1_2048_8192_SHA256,
                signing_input.as_bytes(),
                &signature,
            )
            .is_ok(),
            "EC" => {
                let mut point = vec![4u8];
                point.extend(b(jwk, "x"));
                point.extend(b(jwk, "y"));
                let alg = match jwk["crv"].as_str().unwrap() {
                    "P-256" => &sig::ECDSA_P256_SHA256_FIXED,
                    _ => &sig::ECDSA_P384_SHA384_FIXED,
                };
                UnparsedPublicKey::new(alg, point)
                    .verify(signing_input.as_bytes(), &signature)
                    .is_ok()
            }
            other => panic!("unexpected kty {other}"),
        }
    }

    #[test]
    fn tokens_verify_with_only_the_jwks_document() {
        for signer in [RSA_PKCS1, EC256_PKCS8, EC384_SEC1_WITH_PARAMS] {
            let mut config = config();
            let key = SigningKey::from_pem(signer.as_bytes()).unwrap();
            config.verification_keys = vec![key.public_key().clone(), public_key(RSA_SPKI)];
            config.signing_key = Some(key);
            let authority = TokenAuthority::new(config).unwrap();
            let jwks = authority.jwks();
            let token = issue(&authority, None);
            assert!(verify_with_jwks(&jwks, &token), "{signer}");
            let mut tampered = token.clone();
            tampered.insert_str(token.find('.').unwrap() + 1, "eyJ4IjoxfQ");
            assert!(!verify_with_jwks(&jwks, &tampered));
        }
    }

    #[test]
    fn the_jwks_lists_each_key_once() {
        let mut config = config();
        config.verification_keys.push(public_key(RSA_PKCS1_PUBLIC));
        config.verification_keys.push(public_key(EC256_CERT));
        let authority = TokenAuthority::new(config).unwrap();
        let jwks = authority.jwks();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert_eq!(jwks["keys"][0]["kid"], RSA_KID);
        assert_eq!(jwks["keys"][1]["kid"], EC256_KID);
    }

    #[test]
    fn bad_flags_are_rejected_in_upstreams_words() {
        let with = |f: &dyn Fn(&mut TokenAuthorityConfig)| {
            let mut c = config();
            f(&mut c);
            TokenAuthority::new(c).map(|_| ()).unwrap_err().to_string()
        };
        assert_eq!(
            with(&|c| c.issuers.clear()),
            "service-account-issuer is a required flag"
        );
        assert_eq!(
            with(&|c| c.issuers.push(ISSUER.into())),
            format!("service-account-issuer \"{ISSUER}\" is already specified")
        );
        assert_eq!(
            with(&|c| c.max_expiration_seconds = Some(600)),
            "the service-account-max-token-expiration must be between 1 hour and 2^32 seconds"
        );
        assert!(with(&|c| c.jwks_uri = Some("http://x/jwks".into())).contains("https"));
        assert_eq!(
            with(&|c| {
                c.signing_key = None;
                c.verification_keys.clear();
            }),
            "service-account-key-file is a required flag"
        );
    }

    #[test]
    fn the_authority_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TokenAuthority>();
    }

    #[test]
    fn without_key_files_the_signing_key_verifies() {
        let mut config = config();
        config.verification_keys.clear();
        config.api_audiences = vec!["api".into()];
        let authority = TokenAuthority::new(config).unwrap();
        assert_eq!(authority.api_audiences(), ["api"]);
        let token = issue(&authority, None);
        assert!(auth(&authority, &token, &cluster(), NOW).is_ok());
        assert_eq!(authority.verification_keys().len(), 1);
    }
}
