//! JWS compact serialization (RFC 7515) of service-account tokens: signing and verification.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::keys::{Algorithm, PublicKey, SigningKey};

/// Why a token could not be decoded or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token is not a compact jws of three segments")]
    Malformed,
    #[error("token segment is not unpadded base64url")]
    Base64,
    #[error("token header is not a json object with an alg")]
    Header,
    #[error("token payload is not a json object")]
    Payload,
    #[error("unsigned tokens (alg none) are not accepted")]
    Unsigned,
    #[error("unsupported signing algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("invalid signature, no keys found")]
    NoKeys,
    #[error("invalid signature")]
    BadSignature,
    #[error("signing the token failed")]
    Signing,
}

/// Signs `claims` as a compact JWS with header `{"alg", "kid"}` of `key`.
pub(crate) fn sign(key: &SigningKey, claims: &Value) -> Result<String, JwtError> {
    let header = json!({"alg": key.algorithm().as_str(), "kid": key.public_key().kid()});
    let header = serde_json::to_vec(&header).map_err(|_| JwtError::Signing)?;
    let payload = serde_json::to_vec(claims).map_err(|_| JwtError::Signing)?;
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let sig = key.sign(token.as_bytes()).map_err(|_| JwtError::Signing)?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(token)
}

/// The claims of a token read without checking anything but its shape; for picking the
/// authenticator (by `iss`) before the signature is verified.
pub(crate) fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    if token.trim_start().starts_with('{') {
        return None;
    }
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
    match serde_json::from_slice(&payload).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A structurally valid token whose signature is not yet checked.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    /// The `alg` header, verbatim.
    pub(crate) alg: String,
    /// The `kid` header, if any.
    pub(crate) kid: Option<String>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

impl<'a> Parsed<'a> {
    /// Splits and decodes `token`.
    pub(crate) fn new(token: &'a str) -> Result<Self, JwtError> {
        let (signing_input, sig) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
        let (header, payload) = signing_input.split_once('.').ok_or(JwtError::Malformed)?;
        if payload.contains('.') {
            return Err(JwtError::Malformed);
        }
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| JwtError::Base64)?;
        URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| JwtError::Base64)?;
        let signature = URL_SAFE_NO_PAD.decode(sig).map_err(|_| JwtError::Base64)?;
        let header: Map<String, Value> =
            serde_json::from_slice(&header).map_err(|_| JwtError::Header)?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(JwtError::Header)?
            .to_string();
        let kid = match header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(JwtError::Header),
        };
        // A critical extension we do not understand must make the token unusable.
        if header.contains_key("crit") {
            return Err(JwtError::Header);
        }
        Ok(Self {
            alg,
            kid,
            signing_input,
            signature,
        })
    }

    /// Checks the signature against the keys with the token's `kid`, or against every key
    /// when it names none (as upstream's static key getter chooses them).
    pub(crate) fn verify(&self, keys: &[PublicKey]) -> Result<(), JwtError> {
        if self.alg.eq_ignore_ascii_case("none") {
            return Err(JwtError::Unsigned);
        }
        let alg = Algorithm::from_name(&self.alg)
            .ok_or_else(|| JwtError::UnsupportedAlgorithm(self.alg.clone()))?;
        let mut candidates = keys
            .iter()
            .filter(|k| self.kid.as_deref().is_none_or(|kid| kid == k.kid()))
            .peekable();
        if candidates.peek().is_none() {
            return Err(JwtError::NoKeys);
        }
        let msg = self.signing_input.as_bytes();
        if candidates.any(|k| k.verify(alg, msg, &self.signature)) {
            Ok(())
        } else {
            Err(JwtError::BadSignature)
        }
    }

    /// The payload object; only meaningful after [`Parsed::verify`].
    pub(crate) fn claims(&self) -> Result<Map<String, Value>, JwtError> {
        let payload = self
            .signing_input
            .split_once('.')
            .map(|(_, p)| p)
            .ok_or(JwtError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| JwtError::Base64)?;
        serde_json::from_slice(&payload).map_err(|_| JwtError::Payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serviceaccount::testkeys::*;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn signed_tokens_verify_and_carry_the_claims() {
        for pem in [RSA_PKCS1, EC256_SEC1, EC384_SEC1_WITH_PARAMS] {
            let key = SigningKey::from_pem(pem.as_bytes()).unwrap();
            let token = sign(&key, &json!({"sub": "me", "n": 1})).unwrap();
            let parsed = Parsed::new(&token).unwrap();
            assert_eq!(parsed.alg, key.algorithm().as_str());
            assert_eq!(parsed.kid.as_deref(), Some(key.public_key().kid()));
            parsed.verify(&[key.public_key().clone()]).unwrap();
            assert_eq!(parsed.claims().unwrap()["sub"], "me");
            assert_eq!(unverified_claims(&token).unwrap()["n"], 1);
        }
    }

    #[test]
    fn a_token_signed_by_openssl_verifies() {
        let key = public_key(RSA_SPKI);
        let parsed = Parsed::new(OPENSSL_SIGNED_RS256.trim()).unwrap();
        parsed.verify(&[key]).unwrap();
        assert_eq!(
            parsed.claims().unwrap()["sub"],
            "system:serviceaccount:default:robot"
        );
    }

    #[test]
    fn the_kid_selects_the_key_and_other_keys_are_not_tried() {
        let rsa = SigningKey::from_pem(RSA_PKCS1.as_bytes()).unwrap();
        let ec = SigningKey::from_pem(EC256_SEC1.as_bytes()).unwrap();
        let keys = [ec.public_key().clone(), rsa.public_key().clone()];
        let token = sign(&rsa, &json!({})).unwrap();
        Parsed::new(&token).unwrap().verify(&keys).unwrap();
        // A kid no key has is rejected even though a key would verify the signature.
        let (_, rest) = token.split_once('.').unwrap();
        let other_kid = format!("{}.{rest}", b64(&json!({"alg": "RS256", "kid": "nope"})));
        assert_eq!(
            Parsed::new(&other_kid).unwrap().verify(&keys),
            Err(JwtError::NoKeys)
        );
        // Without a kid every key is tried; the signature no longer covers the new header.
        let no_kid = format!("{}.{rest}", b64(&json!({"alg": "RS256"})));
        assert_eq!(
            Parsed::new(&no_kid).unwrap().verify(&keys),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn unsigned_unknown_and_mismatched_algorithms_are_rejected() {
        let rsa = SigningKey::from_pem(RSA_PKCS1.as_bytes()).unwrap();
        let keys = [rsa.public_key().clone()];
        let kid = rsa.public_key().kid();
        let payload = b64(&json!({"sub": "x"}));
        let none = format!("{}.{payload}.", b64(&json!({"alg": "none", "kid": kid})));
        assert_eq!(
            Parsed::new(&none).unwrap().verify(&keys),
            Err(JwtError::Unsigned)
        );
        let hs = format!(
            "{}.{payload}.AAAA",
            b64(&json!({"alg": "HS256", "kid": kid}))
        );
        assert_eq!(
            Parsed::new(&hs).unwrap().verify(&keys),
            Err(JwtError::UnsupportedAlgorithm("HS256".into()))
        );
        // An RSA key never verifies an ECDSA algorithm.
        let token = sign(&rsa, &json!({"sub": "x"})).unwrap();
        let sig = token.rsplit('.').next().unwrap();
        let es = format!(
            "{}.{payload}.{sig}",
            b64(&json!({"alg": "ES256", "kid": kid}))
        );
        assert_eq!(
            Parsed::new(&es).unwrap().verify(&keys),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn tampered_payloads_fail_verification() {
        let key = SigningKey::from_pem(EC256_SEC1.as_bytes()).unwrap();
        let token = sign(&key, &json!({"sub": "a"})).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], b64(&json!({"sub": "b"})), parts[2]);
        assert_eq!(
            Parsed::new(&forged)
                .unwrap()
                .verify(&[key.public_key().clone()]),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn malformed_tokens_are_rejected_by_shape() {
        let good_header = b64(&json!({"alg": "RS256"}));
        let cases = [
            ("two segments", "a.b".to_string(), JwtError::Malformed),
            ("four segments", "a.b.c.d".to_string(), JwtError::Malformed),
            (
                "bad base64",
                format!("{good_header}.e30.!!!"),
                JwtError::Base64,
            ),
            (
                "padded base64",
                format!("{good_header}.e30=.AA"),
                JwtError::Base64,
            ),
            (
                "header not json",
                "bm90IGpzb24.e30.AA".to_string(),
                JwtError::Header,
            ),
            (
                "header without alg",
                format!("{}.e30.AA", b64(&json!({"kid": "k"}))),
                JwtError::Header,
            ),
            (
                "critical header",
                format!("{}.e30.AA", b64(&json!({"alg": "RS256", "crit": ["x"]}))),
                JwtError::Header,
            ),
        ];
        for (name, token, want) in cases {
            assert_eq!(Parsed::new(&token).unwrap_err(), want, "{name}");
        }
        assert!(unverified_claims("{\"iss\":1}").is_none());
        assert!(
            unverified_claims("a.W10.c").is_none(),
            "payload must be an object"
        );
    }
}
