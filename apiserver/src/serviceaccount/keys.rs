//! Service-account keys: PEM files, key ids, signing and verification with ring, and JWKs.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair, RsaPublicKeyComponents};
use serde_json::{json, Value};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::der;

/// Smallest and largest RSA modulus ring verifies, in bits.
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

/// A JWS signature algorithm (RFC 7518 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
}

impl Algorithm {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
        }
    }

    /// The algorithm an `alg` header names, if it is one this module verifies.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => Self::RS256,
            "RS384" => Self::RS384,
            "RS512" => Self::RS512,
            "PS256" => Self::PS256,
            "PS384" => Self::PS384,
            "PS512" => Self::PS512,
            "ES256" => Self::ES256,
            "ES384" => Self::ES384,
            _ => return None,
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An elliptic curve ring supports for ECDSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

impl Curve {
    fn from_oid(oid: &[u8]) -> Option<Self> {
        match oid {
            der::OID_P256 => Some(Self::P256),
            der::OID_P384 => Some(Self::P384),
            _ => None,
        }
    }

    fn oid(self) -> &'static [u8] {
        match self {
            Self::P256 => der::OID_P256,
            Self::P384 => der::OID_P384,
        }
    }

    /// Bytes of one coordinate (and of the private scalar).
    fn field_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
        }
    }

    /// The JWK `crv` name.
    fn jwk_name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
        }
    }

    fn algorithm(self) -> Algorithm {
        match self {
            Self::P256 => Algorithm::ES256,
            Self::P384 => Algorithm::ES384,
        }
    }

    fn signing(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            Self::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        }
    }
}

/// Why key material could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseKeyError {
    #[error("data does not contain a valid rsa or ecdsa private key")]
    NoPrivateKey,
    #[error("data does not contain any valid rsa or ecdsa public keys")]
    NoPublicKeys,
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("unsupported key algorithm (only rsa and ecdsa p-256/p-384 are supported)")]
    UnsupportedAlgorithm,
    #[error("rsa modulus of {0} bits is not supported (2048 to 8192 bits)")]
    RsaSize(usize),
    #[error("{what} rejected: {reason}")]
    Rejected { what: &'static str, reason: String },
}

/// A key file that could not be read or used; names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading service account key file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing service account key file {}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseKeyError,
    },
}

#[derive(Clone, PartialEq, Eq)]
enum Material {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The uncompressed point `04 || x || y`.
    Ec { curve: Curve, point: Vec<u8> },
}

/// A public key that verifies service-account tokens, with its upstream key id.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    kid: String,
    spki: Vec<u8>,
    material: Material,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("alg", &self.algorithm())
            .finish()
    }
}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo holding an RSA or EC (P-256/P-384) key.
    pub fn from_spki_der(spki: &[u8]) -> Result<Self, ParseKeyError> {
        const WHAT: &str = "subject public key info";
        let outer = der::single(spki, der::SEQUENCE).ok_or(ParseKeyError::Malformed(WHAT))?;
        let mut r = der::Reader::new(outer);
        let alg = r
            .read(der::SEQUENCE)
            .ok_or(ParseKeyError::Malformed(WHAT))?;
        let bits = r
            .read(der::BIT_STRING)
            .ok_or(ParseKeyError::Malformed(WHAT))?;
        if !r.is_empty() {
            return Err(ParseKeyError::Malformed(WHAT));
        }
        let key = match bits.split_first() {
            Some((0, key)) => key,
            _ => return Err(ParseKeyError::Malformed(WHAT)),
        };
        let mut alg = der::Reader::new(alg);
        let oid = alg.read(der::OID).ok_or(ParseKeyError::Malformed(WHAT))?;
        let material = match oid {
            der::OID_RSA_ENCRYPTION => rsa_material(key)?,
            der::OID_EC_PUBLIC_KEY => {
                let curve = alg
                    .read(der::OID)
                    .and_then(Curve::from_oid)
                    .ok_or(ParseKeyError::UnsupportedAlgorithm)?;
                ec_material(curve, key)?
            }
            _ => return Err(ParseKeyError::UnsupportedAlgorithm),
        };
        Ok(Self::from_material(material))
    }

    /// Parses a PKCS#1 `RSAPublicKey` (PEM label `RSA PUBLIC KEY`).
    pub fn from_pkcs1_der(pkcs1: &[u8]) -> Result<Self, ParseKeyError> {
        rsa_material(pkcs1).map(Self::from_material)
    }

    fn from_material(material: Material) -> Self {
        let spki = match &material {
            Material::Rsa { n, e } => {
                let key = der::sequence(&[&unsigned_integer(n), &unsigned_integer(e)]);
                let alg = der::sequence(&[
                    &der::tlv(der::OID, der::OID_RSA_ENCRYPTION),
                    &der::tlv(der::NULL, &[]),
                ]);
                der::sequence(&[&alg, &der::bit_string(&key)])
            }
            Material::Ec { curve, point } => {
                let alg = der::sequence(&[
                    &der::tlv(der::OID, der::OID_EC_PUBLIC_KEY),
                    &der::tlv(der::OID, curve.oid()),
                ]);
                der::sequence(&[&alg, &der::bit_string(point)])
            }
        };
        // Upstream's key id: base64url(sha256(DER SubjectPublicKeyInfo)), not reversible.
        let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
        Self {
            kid: URL_SAFE_NO_PAD.encode(digest.as_ref()),
            spki,
            material,
        }
    }

    /// The key id (`kid`) tokens signed by this key carry.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The algorithm tokens are signed with under this key: RS256, ES256 or ES384.
    pub fn algorithm(&self) -> Algorithm {
        match &self.material {
            Material::Rsa { .. } => Algorithm::RS256,
            Material::Ec { curve, .. } => curve.algorithm(),
        }
    }

    /// The key as a JWK with `use: sig`, as served at `/openid/v1/jwks`.
    pub fn jwk(&self) -> Value {
        let alg = self.algorithm().as_str();
        match &self.material {
            Material::Rsa { n, e } => json!({
                "use": "sig",
                "kty": "RSA",
                "kid": self.kid,
                "alg": alg,
                "n": URL_SAFE_NO_PAD.encode(n),
                "e": URL_SAFE_NO_PAD.encode(e),
            }),
            Material::Ec { curve, point } => {
                let len = curve.field_len();
                let (x, y) = point
                    .get(1..)
                    .map(|xy| xy.split_at(len.min(xy.len())))
                    .unwrap_or((&[], &[]));
                json!({
                    "use": "sig",
                    "kty": "EC",
                    "kid": self.kid,
                    "crv": curve.jwk_name(),
                    "alg": alg,
                    "x": URL_SAFE_NO_PAD.encode(x),
                    "y": URL_SAFE_NO_PAD.encode(y),
                })
            }
        }
    }

    /// Whether `sig` is this key's signature of `msg` under `alg`; a key never verifies
    /// an algorithm of another family or curve.
    pub(crate) fn verify(&self, alg: Algorithm, msg: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            Material::Rsa { n, e } => {
                let params: &'static signature::RsaParameters = match alg {
                    Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                    Algorithm::ES256 | Algorithm::ES384 => return false,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, msg, sig)
                    .is_ok()
            }
            Material::Ec { curve, point } => {
                let params: &'static signature::EcdsaVerificationAlgorithm = match (curve, alg) {
                    (Curve::P256, Algorithm::ES256) => &signature::ECDSA_P256_SHA256_FIXED,
                    (Curve::P384, Algorithm::ES384) => &signature::ECDSA_P384_SHA384_FIXED,
                    _ => return false,
                };
                signature::UnparsedPublicKey::new(params, point)
                    .verify(msg, sig)
                    .is_ok()
            }
        }
    }
}

/// An INTEGER holding an unsigned big-endian value (a zero byte is added when the top bit
/// is set).
fn unsigned_integer(bytes: &[u8]) -> Vec<u8> {
    let bytes = der::trim_unsigned(bytes);
    if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        let mut padded = Vec::with_capacity(bytes.len() + 1);
        padded.push(0);
        padded.extend_from_slice(bytes);
        der::tlv(der::INTEGER, &padded)
    } else {
        der::tlv(der::INTEGER, bytes)
    }
}

fn rsa_material(pkcs1: &[u8]) -> Result<Material, ParseKeyError> {
    const WHAT: &str = "rsa public key";
    let body = der::single(pkcs1, der::SEQUENCE).ok_or(ParseKeyError::Malformed(WHAT))?;
    let mut r = der::Reader::new(body);
    let n = r.read(der::INTEGER).ok_or(ParseKeyError::Malformed(WHAT))?;
    let e = r.read(der::INTEGER).ok_or(ParseKeyError::Malformed(WHAT))?;
    if !r.is_empty() {
        return Err(ParseKeyError::Malformed(WHAT));
    }
    let (n, e) = (der::trim_unsigned(n), der::trim_unsigned(e));
    let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(ParseKeyError::RsaSize(bits));
    }
    if e.len() > 4 || e == [0] {
        return Err(ParseKeyError::Malformed(WHAT));
    }
    Ok(Material::Rsa {
        n: n.to_vec(),
        e: e.to_vec(),
    })
}

fn ec_material(curve: Curve, point: &[u8]) -> Result<Material, ParseKeyError> {
    // Only uncompressed points, as Go's x509 accepts.
    if point.len() != 1 + 2 * curve.field_len() || point.first() != Some(&4) {
        return Err(ParseKeyError::Malformed("ec public key"));
    }
    Ok(Material::Ec {
        curve,
        point: point.to_vec(),
    })
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// The private key that signs service-account tokens (`--service-account-signing-key-file`).
pub struct SigningKey {
    pair: Pair,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The first RSA (PKCS#1 or PKCS#8) or EC P-256/P-384 (SEC1 or PKCS#8) private key in
    /// PEM `data`; other blocks (such as `EC PARAMETERS`) are skipped.
    pub fn from_pem(data: &[u8]) -> Result<Self, ParseKeyError> {
        let mut first_error = None;
        for block in pem_blocks(data) {
            match Self::from_pem_block(&block) {
                Some(Ok(key)) => return Ok(key),
                Some(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                None => {}
            }
        }
        Err(first_error.unwrap_or(ParseKeyError::NoPrivateKey))
    }

    /// Reads [`SigningKey::from_pem`] from a file.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let data = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_pem(&data).map_err(|source| KeyError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The key in a private-key PEM block; None when the block is no private key.
    fn from_pem_block(block: &PemBlock) -> Option<Result<Self, ParseKeyError>> {
        match block.label.as_str() {
            "RSA PRIVATE KEY" => Some(Self::from_rsa_pkcs1(&block.der)),
            "EC PRIVATE KEY" => Some(Self::from_sec1(&block.der, None)),
            "PRIVATE KEY" => Some(Self::from_pkcs8(&block.der)),
            _ => None,
        }
    }

    /// A PKCS#1 `RSAPrivateKey`.
    pub fn from_rsa_pkcs1(der_bytes: &[u8]) -> Result<Self, ParseKeyError> {
        let pair = RsaKeyPair::from_der(der_bytes).map_err(|e| rejected("rsa private key", e))?;
        Self::from_rsa(pair)
    }

    /// A PKCS#8 `PrivateKeyInfo` holding an RSA or EC P-256/P-384 key.
    pub fn from_pkcs8(der_bytes: &[u8]) -> Result<Self, ParseKeyError> {
        const WHAT: &str = "pkcs#8 private key";
        let body = der::single(der_bytes, der::SEQUENCE).ok_or(ParseKeyError::Malformed(WHAT))?;
        let mut r = der::Reader::new(body);
        r.read(der::INTEGER).ok_or(ParseKeyError::Malformed(WHAT))?;
        let alg = r
            .read(der::SEQUENCE)
            .ok_or(ParseKeyError::Malformed(WHAT))?;
        let inner = r
            .read(der::OCTET_STRING)
            .ok_or(ParseKeyError::Malformed(WHAT))?;
        let mut alg = der::Reader::new(alg);
        match alg.read(der::OID) {
            Some(der::OID_RSA_ENCRYPTION) => {
                let pair = RsaKeyPair::from_pkcs8(der_bytes).map_err(|e| rejected(WHAT, e))?;
                Self::from_rsa(pair)
            }
            Some(der::OID_EC_PUBLIC_KEY) => {
                let curve = alg
                    .read(der::OID)
                    .and_then(Curve::from_oid)
                    .ok_or(ParseKeyError::UnsupportedAlgorithm)?;
                Self::from_sec1(inner, Some(curve))
            }
            Some(_) => Err(ParseKeyError::UnsupportedAlgorithm),
            None => Err(ParseKeyError::Malformed(WHAT)),
        }
    }

    /// A SEC1 `ECPrivateKey`; its curve comes from `curve` (PKCS#8) or its own parameters.
    pub fn from_sec1(der_bytes: &[u8], curve: Option<Curve>) -> Result<Self, ParseKeyError> {
        const WHAT: &str = "ec private key";
        let body = der::single(der_bytes, der::SEQUENCE).ok_or(ParseKeyError::Malformed(WHAT))?;
        let mut r = der::Reader::new(body);
        if r.read(der::INTEGER) != Some(&[1]) {
            return Err(ParseKeyError::Malformed(WHAT));
        }
        let scalar = r
            .read(der::OCTET_STRING)
            .ok_or(ParseKeyError::Malformed(WHAT))?;
        let mut own_curve = None;
        let mut point = None;
        while let Some((tag, contents)) = r.next() {
            match tag {
                der::CONTEXT_0 => {
                    let oid =
                        der::single(contents, der::OID).ok_or(ParseKeyError::Malformed(WHAT))?;
                    own_curve =
                        Some(Curve::from_oid(oid).ok_or(ParseKeyError::UnsupportedAlgorithm)?);
                }
                der::CONTEXT_1 => {
                    let bits = der::single(contents, der::BIT_STRING)
                        .ok_or(ParseKeyError::Malformed(WHAT))?;
                    match bits.split_first() {
                        Some((0, p)) => point = Some(p),
                        _ => return Err(ParseKeyError::Malformed(WHAT)),
                    }
                }
                _ => return Err(ParseKeyError::Malformed(WHAT)),
            }
        }
        let curve = match (curve, own_curve) {
            (Some(a), Some(b)) if a != b => return Err(ParseKeyError::Malformed(WHAT)),
            (Some(c), _) | (None, Some(c)) => c,
            (None, None) => match scalar.len() {
                32 => Curve::P256,
                48 => Curve::P384,
                _ => return Err(ParseKeyError::UnsupportedAlgorithm),
            },
        };
        // ring derives nothing: the public point must be in the key, as OpenSSL writes it.
        let point = point.ok_or(ParseKeyError::Rejected {
            what: WHAT,
            reason: "the key does not include its public key".into(),
        })?;
        let material = ec_material(curve, point)?;
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            curve.signing(),
            scalar,
            point,
            &SystemRandom::new(),
        )
        .map_err(|e| rejected(WHAT, e))?;
        Ok(Self {
            pair: Pair::Ec(pair),
            public: PublicKey::from_material(material),
        })
    }

    fn from_rsa(pair: RsaKeyPair) -> Result<Self, ParseKeyError> {
        let public = PublicKey::from_pkcs1_der(pair.public_key().as_ref())?;
        Ok(Self {
            pair: Pair::Rsa(pair),
            public,
        })
    }

    /// The public half, whose kid and algorithm signed tokens carry.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// RS256 for RSA keys, ES256 for P-256 and ES384 for P-384.
    pub fn algorithm(&self) -> Algorithm {
        self.public.algorithm()
    }

    /// The JWS signature of `msg` under [`SigningKey::algorithm`].
    pub(crate) fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public().modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)?;
                Ok(sig)
            }
            Pair::Ec(pair) => Ok(pair.sign(&rng, msg)?.as_ref().to_vec()),
        }
    }
}

fn rejected(what: &'static str, e: ring::error::KeyRejected) -> ParseKeyError {
    ParseKeyError::Rejected {
        what,
        reason: e.to_string(),
    }
}

/// Every verification key in PEM `data`: public keys (`PUBLIC KEY`, `RSA PUBLIC KEY`), the
/// public half of private keys, and the keys of certificates. Other blocks are skipped, as
/// upstream tolerates them; data without any key is an error.
pub fn public_keys_from_pem(data: &[u8]) -> Result<Vec<PublicKey>, ParseKeyError> {
    let mut keys = Vec::new();
    let mut first_error = None;
    for block in pem_blocks(data) {
        let parsed = match block.label.as_str() {
            "PUBLIC KEY" => PublicKey::from_spki_der(&block.der),
            "RSA PUBLIC KEY" => PublicKey::from_pkcs1_der(&block.der),
            "CERTIFICATE" => match X509Certificate::from_der(&block.der) {
                Ok((_, cert)) => PublicKey::from_spki_der(cert.public_key().raw),
                Err(_) => Err(ParseKeyError::Malformed("certificate")),
            },
            _ => match SigningKey::from_pem_block(&block) {
                Some(private) => private.map(|k| k.public),
                None => continue,
            },
        };
        match parsed {
            Ok(key) => keys.push(key),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if keys.is_empty() {
        return Err(first_error.unwrap_or(ParseKeyError::NoPublicKeys));
    }
    Ok(keys)
}

/// Reads [`public_keys_from_pem`] from each file (`--service-account-key-file`, repeatable),
/// in order.
pub fn load_public_keys<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<PublicKey>, KeyError> {
    let mut keys = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let data = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        keys.extend(
            public_keys_from_pem(&data).map_err(|source| KeyError::Parse {
                path: path.to_path_buf(),
                source,
            })?,
        );
    }
    Ok(keys)
}

struct PemBlock {
    label: String,
    der: Vec<u8>,
}

/// The decodable blocks of PEM text; blocks with headers (encrypted keys) or bad base64 are
/// left out, like any text between blocks.
fn pem_blocks(data: &[u8]) -> Vec<PemBlock> {
    let text = String::from_utf8_lossy(data);
    let mut blocks = Vec::new();
    let mut current: Option<(String, String, bool)> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some((label, body, has_headers)) = current.as_mut() {
            if let Some(end) = line
                .strip_prefix("-----END ")
                .and_then(|l| l.strip_suffix("-----"))
            {
                if end == label && !*has_headers {
                    if let Ok(der) = STANDARD.decode(body.as_bytes()) {
                        blocks.push(PemBlock {
                            label: std::mem::take(label),
                            der,
                        });
                    }
                }
                current = None;
            } else if line.contains(':') {
                *has_headers = true;
            } else {
                body.push_str(line);
            }
        } else if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_string(), String::new(), false));
        }
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::serviceaccount::testkeys::*;

    #[test]
    fn signing_keys_parse_in_every_supported_encoding_with_upstream_kids() {
        let cases = [
            ("rsa pkcs1", RSA_PKCS1, RSA_KID, Algorithm::RS256),
            ("rsa pkcs8", RSA_PKCS8, RSA_KID, Algorithm::RS256),
            ("ec p-256 sec1", EC256_SEC1, EC256_KID, Algorithm::ES256),
            ("ec p-256 pkcs8", EC256_PKCS8, EC256_KID, Algorithm::ES256),
            (
                "ec p-384 sec1 after ec parameters",
                EC384_SEC1_WITH_PARAMS,
                EC384_KID,
                Algorithm::ES384,
            ),
        ];
        for (name, pem, kid, alg) in cases {
            let key =
                SigningKey::from_pem(pem.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(key.public_key().kid(), kid, "{name}");
            assert_eq!(key.algorithm(), alg, "{name}");
            let sig = key.sign(b"payload").unwrap();
            assert!(key.public_key().verify(alg, b"payload", &sig), "{name}");
            assert!(!key.public_key().verify(alg, b"other", &sig), "{name}");
        }
    }

    #[test]
    fn public_keys_parse_from_spki_pkcs1_certificates_and_private_keys() {
        let cases = [
            ("rsa spki", RSA_SPKI, RSA_KID),
            ("rsa pkcs1 public", RSA_PKCS1_PUBLIC, RSA_KID),
            ("rsa private", RSA_PKCS1, RSA_KID),
            ("ec spki", EC256_SPKI, EC256_KID),
            ("ec certificate", EC256_CERT, EC256_KID),
            ("ec private pkcs8", EC256_PKCS8, EC256_KID),
            ("ec p-384 spki", EC384_SPKI, EC384_KID),
            ("ec p-384 private", EC384_SEC1_WITH_PARAMS, EC384_KID),
        ];
        for (name, pem, kid) in cases {
            assert_eq!(public_key(pem).kid(), kid, "{name}");
        }
    }

    #[test]
    fn spki_round_trips_byte_for_byte() {
        for pem in [RSA_SPKI, EC256_SPKI, EC384_SPKI] {
            let block = pem_blocks(pem.as_bytes()).into_iter().next().unwrap();
            assert_eq!(
                PublicKey::from_spki_der(&block.der).unwrap().spki_der(),
                block.der
            );
        }
    }

    #[test]
    fn several_blocks_in_one_file_all_load() {
        let bundle = format!("{RSA_SPKI}\nsome comment\n{EC256_CERT}{EC384_SEC1_WITH_PARAMS}");
        let kids: Vec<String> = public_keys_from_pem(bundle.as_bytes())
            .unwrap()
            .iter()
            .map(|k| k.kid().to_string())
            .collect();
        assert_eq!(kids, [RSA_KID, EC256_KID, EC384_KID]);
    }

    #[test]
    fn files_without_keys_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(
            &empty,
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n",
        )
        .unwrap();
        let err = load_public_keys(&[&empty]).unwrap_err();
        assert!(err.to_string().contains("empty.pem"), "{err}");
        assert!(matches!(
            err,
            KeyError::Parse {
                source: ParseKeyError::NoPublicKeys,
                ..
            }
        ));
        let err = SigningKey::from_file(&empty).unwrap_err();
        assert!(matches!(
            err,
            KeyError::Parse {
                source: ParseKeyError::NoPrivateKey,
                ..
            }
        ));
        let err = SigningKey::from_file(&dir.path().join("missing.pem")).unwrap_err();
        assert!(matches!(err, KeyError::Read { .. }));
        assert!(err.to_string().contains("missing.pem"));
    }

    #[test]
    fn public_key_files_load_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.pem");
        let b = dir.path().join("b.pem");
        std::fs::write(&a, EC256_SPKI).unwrap();
        std::fs::write(&b, RSA_PKCS8).unwrap();
        let keys = load_public_keys(&[a, b]).unwrap();
        assert_eq!(keys[0].kid(), EC256_KID);
        assert_eq!(keys[1].kid(), RSA_KID);
    }

    #[test]
    fn unsupported_and_broken_keys_are_rejected() {
        // Ed25519 SPKI.
        let ed = der::sequence(&[
            &der::sequence(&[&der::tlv(der::OID, &[0x2b, 0x65, 0x70])]),
            &der::bit_string(&[7u8; 32]),
        ]);
        assert_eq!(
            PublicKey::from_spki_der(&ed),
            Err(ParseKeyError::UnsupportedAlgorithm)
        );
        // A 1024-bit modulus.
        let mut n = vec![0xffu8; 128];
        n[0] = 0xc1;
        let small = der::sequence(&[&unsigned_integer(&n), &unsigned_integer(&[1, 0, 1])]);
        assert_eq!(
            PublicKey::from_pkcs1_der(&small),
            Err(ParseKeyError::RsaSize(1024))
        );
        assert!(PublicKey::from_spki_der(b"\x30\x03\x02\x01\x00").is_err());
        assert!(SigningKey::from_pem(
            b"-----BEGIN RSA PRIVATE KEY-----\nMAA=\n-----END RSA PRIVATE KEY-----\n"
        )
        .is_err());
    }

    #[test]
    fn generated_pkcs8_keys_sign() {
        let rng = SystemRandom::new();
        for (alg, curve) in [
            (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, Curve::P256),
            (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, Curve::P384),
        ] {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            let key = SigningKey::from_pkcs8(pkcs8.as_ref()).unwrap();
            assert_eq!(key.algorithm(), curve.algorithm());
        }
    }

    #[test]
    fn jwks_carry_components_of_the_key() {
        let rsa = public_key(RSA_SPKI).jwk();
        assert_eq!(rsa["kty"], "RSA");
        assert_eq!(rsa["e"], "AQAB");
        assert_eq!(rsa["alg"], "RS256");
        assert_eq!(rsa["use"], "sig");
        assert_eq!(rsa["kid"], RSA_KID);
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(rsa["n"].as_str().unwrap())
                .unwrap()
                .len(),
            256
        );
        let ec = public_key(EC384_SPKI).jwk();
        assert_eq!(ec["crv"], "P-384");
        assert_eq!(ec["alg"], "ES384");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(ec["x"].as_str().unwrap())
                .unwrap()
                .len(),
            48
        );
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(ec["y"].as_str().unwrap())
                .unwrap()
                .len(),
            48
        );
    }
}
