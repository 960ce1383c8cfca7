//! Encryption at rest: `--encryption-provider-config` parsing and per-resource value transformers.
//!
//! Follows upstream's `EncryptionConfiguration` (`apiserver.config.k8s.io/v1`): each entry names
//! resources (`secrets`, `deployments.apps`, `*.apps`, `*.`, `*.*`) and an ordered provider list.
//! The first provider encrypts new writes; every provider is tried on reads, and a read through
//! any provider or key other than the first is reported as stale so a rewrite migrates the value.
//!
//! Supported providers: `aescbc` (AES-CBC, PKCS#7, random IV, no authenticated data, as upstream),
//! `aesgcm` (AES-GCM with a random nonce and the storage key as additional authenticated data;
//! 16- and 32-byte keys, because ring has no AES-192-GCM) and `identity`. `secretbox` and `kms`
//! are rejected at load time as not supported by this server.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine as _;
use ring::aead;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;

/// Prefix every encrypted value starts with; plaintext never does (it is JSON or protobuf).
pub const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";
/// Prefix of values written by the `aescbc` provider, followed by `<key name>:`.
pub const AESCBC_PREFIX: &str = "k8s:enc:aescbc:v1:";
/// Prefix of values written by the `aesgcm` provider, followed by `<key name>:`.
pub const AESGCM_PREFIX: &str = "k8s:enc:aesgcm:v1:";

const API_VERSION: &str = "apiserver.config.k8s.io/v1";
const KIND: &str = "EncryptionConfiguration";
const AES_BLOCK: usize = 16;
const GCM_NONCE: usize = 12;
const AES_KEY_SIZES: [usize; 3] = [16, 24, 32];

/// What went wrong loading the configuration or transforming a value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file could not be read.
    #[error("error opening encryption provider configuration file {path:?}")]
    Read {
        /// The configured path.
        path: String,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is empty.
    #[error("encryption provider configuration file {0:?} is empty")]
    Empty(String),
    /// The configuration file is neither valid YAML nor JSON of the expected shape.
    #[error("error decoding encryption provider configuration file {path:?}")]
    Decode {
        /// The configured path.
        path: String,
        /// The parse failure.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// The configuration decoded but failed validation; holds every problem found.
    #[error("invalid encryption provider configuration: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The system random number generator failed.
    #[error("failed to generate random bytes for encryption")]
    Random,
    /// Encryption with the write provider failed.
    #[error("failed to encrypt value: {0}")]
    Encrypt(String),
    /// The stored value carries no prefix any configured provider accepts.
    #[error("no matching prefix found")]
    NoMatchingPrefix,
    /// Providers recognised the value's prefix but none could decrypt it.
    #[error("failed to decrypt value: {}", .0.join(", "))]
    Decrypt(Vec<String>),
}

// ---------------------------------------------------------------------------------------------
// File format

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileConfig {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    resources: Vec<FileResourceConfig>,
}

#[derive(Debug, Deserialize)]
struct FileResourceConfig {
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    providers: Vec<FileProvider>,
}

#[derive(Debug, Deserialize)]
struct FileProvider {
    aescbc: Option<FileKeys>,
    aesgcm: Option<FileKeys>,
    secretbox: Option<FileKeys>,
    identity: Option<serde_yaml_ng::Value>,
    kms: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct FileKeys {
    #[serde(default)]
    keys: Vec<FileKey>,
}

#[derive(Debug, Deserialize)]
struct FileKey {
    #[serde(default)]
    name: String,
    #[serde(default)]
    secret: String,
}

// ---------------------------------------------------------------------------------------------
// Providers

/// One AES key with the name recorded in every value it encrypts.
struct NamedKey<K> {
    /// `<prefix><name>:` as stored.
    prefix: Vec<u8>,
    key: K,
}

/// Raw AES key for CBC; the `cbc` crate needs the cipher type at compile time, so the key size
/// picks the type at use.
struct CbcKey(Vec<u8>);

enum Provider {
    Identity,
    AesCbc(Vec<NamedKey<CbcKey>>),
    AesGcm(Vec<NamedKey<aead::LessSafeKey>>),
}

impl std::fmt::Debug for Provider {
    // Key material stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |prefixes: Vec<&[u8]>| -> Vec<String> {
            prefixes
                .into_iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect()
        };
        match self {
            Provider::Identity => f.write_str("identity"),
            Provider::AesCbc(keys) => f
                .debug_tuple("aescbc")
                .field(&names(keys.iter().map(|k| k.prefix.as_slice()).collect()))
                .finish(),
            Provider::AesGcm(keys) => f
                .debug_tuple("aesgcm")
                .field(&names(keys.iter().map(|k| k.prefix.as_slice()).collect()))
                .finish(),
        }
    }
}

/// Encrypts and decrypts the stored values of one resource, as upstream's prefix transformers.
#[derive(Debug)]
pub struct Transformer {
    /// Providers in configuration order; the first one writes.
    providers: Vec<Arc<Provider>>,
}

impl Transformer {
    /// Transforms a value for storage with the first configured provider. `key_path` is the
    /// storage key of the object; `aesgcm` binds the ciphertext to it so a value copied to
    /// another key fails to decrypt.
    pub fn encrypt(&self, plaintext: &[u8], key_path: &[u8]) -> Result<Vec<u8>, Error> {
        let Some(provider) = self.providers.first() else {
            return Ok(plaintext.to_vec());
        };
        match provider.as_ref() {
            Provider::Identity => Ok(plaintext.to_vec()),
            Provider::AesCbc(keys) => {
                let key = keys.first().ok_or(Error::Encrypt("no keys".into()))?;
                cbc_encrypt(key, plaintext)
            }
            Provider::AesGcm(keys) => {
                let key = keys.first().ok_or(Error::Encrypt("no keys".into()))?;
                gcm_encrypt(key, plaintext, key_path)
            }
        }
    }

    /// Reads a stored value back. Returns the plaintext and whether it is stale, i.e. was not
    /// written by the first provider and key, so the caller should rewrite it to migrate it.
    ///
    /// Values without the `k8s:enc:` prefix are plaintext and accepted only when `identity` is
    /// among the providers.
    pub fn decrypt(&self, stored: &[u8], key_path: &[u8]) -> Result<(Vec<u8>, bool), Error> {
        // Every (provider, key) pair gets one slot; only slot 0 is fresh.
        let mut slot = 0usize;
        let mut errors = Vec::new();
        for provider in &self.providers {
            match provider.as_ref() {
                Provider::Identity => {
                    // Encrypted data under an identity provider is skipped, not an error, so
                    // "identity first" can migrate away from encryption.
                    if !stored.starts_with(ENCRYPTED_PREFIX) {
                        return Ok((stored.to_vec(), slot != 0));
                    }
                    slot += 1;
                }
                Provider::AesCbc(keys) => {
                    let found = try_keys(
                        keys,
                        AESCBC_PREFIX,
                        stored,
                        &mut slot,
                        &mut errors,
                        |k, d| cbc_decrypt(&k.key, d),
                    );
                    if let Some(plain) = found {
                        return Ok(plain);
                    }
                }
                Provider::AesGcm(keys) => {
                    let found = try_keys(
                        keys,
                        AESGCM_PREFIX,
                        stored,
                        &mut slot,
                        &mut errors,
                        |k, d| gcm_decrypt(&k.key, d, key_path),
                    );
                    if let Some(plain) = found {
                        return Ok(plain);
                    }
                }
            }
        }
        if errors.is_empty() {
            Err(Error::NoMatchingPrefix)
        } else {
            Err(Error::Decrypt(errors))
        }
    }

    /// Whether new writes are stored as plaintext (the first provider is `identity`).
    pub fn writes_plaintext(&self) -> bool {
        matches!(
            self.providers.first().map(|p| p.as_ref()),
            None | Some(Provider::Identity)
        )
    }
}

/// Tries each key of one AES provider whose prefix the value carries; advances `slot` past them.
fn try_keys<K>(
    keys: &[NamedKey<K>],
    provider_prefix: &str,
    stored: &[u8],
    slot: &mut usize,
    errors: &mut Vec<String>,
    decrypt: impl Fn(&NamedKey<K>, &[u8]) -> Result<Vec<u8>, String>,
) -> Option<(Vec<u8>, bool)> {
    let first_slot = *slot;
    *slot += keys.len();
    if !stored.starts_with(provider_prefix.as_bytes()) {
        return None;
    }
    let mut any_key = false;
    for (i, key) in keys.iter().enumerate() {
        let Some(body) = stored.strip_prefix(key.prefix.as_slice()) else {
            continue;
        };
        any_key = true;
        match decrypt(key, body) {
            Ok(plain) => return Some((plain, first_slot + i != 0)),
            Err(e) => errors.push(e),
        }
    }
    if !any_key {
        errors.push("no matching key was found for the provided AES transformer".into());
    }
    None
}

/// Whether a stored value was written by an encrypting provider. Useful where no transformer is
/// configured: upstream refuses to hand such values out as plaintext.
pub fn is_encrypted(stored: &[u8]) -> bool {
    stored.starts_with(ENCRYPTED_PREFIX)
}

fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| Error::Random)?;
    Ok(out)
}

fn cbc_encrypt(key: &NamedKey<CbcKey>, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let iv = random_bytes::<AES_BLOCK>()?;
    let k = key.key.0.as_slice();
    let bad_len = |_| Error::Encrypt("invalid aescbc key length".into());
    let ciphertext = match k.len() {
        16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(k, &iv)
            .map_err(bad_len)?
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext),
        24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(k, &iv)
            .map_err(bad_len)?
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext),
        _ => cbc::Encryptor::<aes::Aes256>::new_from_slices(k, &iv)
            .map_err(bad_len)?
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext),
    };
    let mut out = Vec::with_capacity(key.prefix.len() + AES_BLOCK + ciphertext.len());
    out.extend_from_slice(&key.prefix);
    out.extend_from_slice(&iv);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

fn cbc_decrypt(key: &CbcKey, data: &[u8]) -> Result<Vec<u8>, String> {
    if data.len() < AES_BLOCK {
        return Err("the stored data was shorter than the required size".into());
    }
    let (iv, ciphertext) = data.split_at(AES_BLOCK);
    if ciphertext.is_empty() || ciphertext.len() % AES_BLOCK != 0 {
        return Err("the stored data is not a multiple of the block size".into());
    }
    let k = key.0.as_slice();
    let bad_len = |_| "invalid aescbc key length".to_owned();
    let result = match k.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(k, iv)
            .map_err(bad_len)?
            .decrypt_padded_vec_mut::<Pkcs7>(ciphertext),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(k, iv)
            .map_err(bad_len)?
            .decrypt_padded_vec_mut::<Pkcs7>(ciphertext),
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(k, iv)
            .map_err(bad_len)?
            .decrypt_padded_vec_mut::<Pkcs7>(ciphertext),
    };
    result.map_err(|_| "invalid PKCS7 data (empty or not padded)".to_owned())
}

fn gcm_encrypt(
    key: &NamedKey<aead::LessSafeKey>,
    plaintext: &[u8],
    key_path: &[u8],
) -> Result<Vec<u8>, Error> {
    let nonce = random_bytes::<GCM_NONCE>()?;
    let mut sealed = plaintext.to_vec();
    key.key
        .seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(key_path),
            &mut sealed,
        )
        .map_err(|_| Error::Encrypt("aes-gcm seal failed".into()))?;
    let mut out = Vec::with_capacity(key.prefix.len() + GCM_NONCE + sealed.len());
    out.extend_from_slice(&key.prefix);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

fn gcm_decrypt(key: &aead::LessSafeKey, data: &[u8], key_path: &[u8]) -> Result<Vec<u8>, String> {
    if data.len() < GCM_NONCE + key.algorithm().tag_len() {
        return Err("the stored data was shorter than the required size".into());
    }
    let (nonce, sealed) = data.split_at(GCM_NONCE);
    let nonce = aead::Nonce::try_assume_unique_for_key(nonce)
        .map_err(|_| "invalid aes-gcm nonce".to_owned())?;
    let mut buf = sealed.to_vec();
    let plain = key
        .open_in_place(nonce, aead::Aad::from(key_path), &mut buf)
        .map_err(|_| "cipher: message authentication failed".to_owned())?;
    Ok(plain.to_vec())
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// A parsed, validated `EncryptionConfiguration`: the transformer for each configured resource.
#[derive(Debug, Default)]
pub struct EncryptionConfig {
    /// Keyed by (group, resource); `*` stands for any resource or group.
    transformers: HashMap<(String, String), Arc<Transformer>>,
}

impl EncryptionConfig {
    /// Reads, parses and validates the file given to `--encryption-provider-config`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let data = std::fs::read(path).map_err(|source| Error::Read {
            path: shown.clone(),
            source,
        })?;
        if data.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::Empty(shown));
        }
        Self::from_slice(&data).map_err(|e| match e {
            Error::Decode { source, .. } => Error::Decode {
                path: shown,
                source,
            },
            other => other,
        })
    }

    /// Parses and validates a configuration given as YAML or JSON text.
    pub fn from_slice(data: &[u8]) -> Result<Self, Error> {
        let file: FileConfig = serde_yaml_ng::from_slice(data).map_err(|source| Error::Decode {
            path: String::new(),
            source,
        })?;
        Self::build(file)
    }

    /// The transformer for a resource (`group` empty for the core group), looked up as
    /// upstream: exact resource, then `*.group`, then `*.*`. `None` means values are stored
    /// as plaintext.
    pub fn transformer_for(&self, group: &str, resource: &str) -> Option<Arc<Transformer>> {
        let get = |g: &str, r: &str| self.transformers.get(&(g.to_owned(), r.to_owned()));
        get(group, resource)
            .or_else(|| get(group, "*"))
            .or_else(|| get("*", "*"))
            .cloned()
    }

    fn build(file: FileConfig) -> Result<Self, Error> {
        let mut errors = Vec::new();
        if file.api_version != API_VERSION {
            errors.push(format!(
                "apiVersion: unsupported value {:?}, expected {API_VERSION:?}",
                file.api_version
            ));
        }
        if file.kind != KIND {
            errors.push(format!(
                "kind: unsupported value {:?}, expected {KIND:?}",
                file.kind
            ));
        }
        if file.resources.is_empty() {
            errors.push("resources: Required value: at least one resources is required".into());
        }
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }

        // Providers are appended per resource across entries, as upstream does, so a resource
        // named twice writes with the first entry's first provider and reads through both.
        let mut by_resource: HashMap<(String, String), Vec<Arc<Provider>>> = HashMap::new();
        for (i, entry) in file.resources.iter().enumerate() {
            let field = format!("resources[{i}]");
            validate_resources(&entry.resources, &field, &mut errors);
            if entry.providers.is_empty() {
                errors.push(format!(
                    "{field}.providers: Required value: at least one provider is required"
                ));
            }
            let providers: Vec<Arc<Provider>> = entry
                .providers
                .iter()
                .enumerate()
                .filter_map(|(j, p)| {
                    build_provider(p, &format!("{field}.providers[{j}]"), &mut errors)
                })
                .map(Arc::new)
                .collect();
            for name in &entry.resources {
                let gr = parse_group_resource(name);
                for mask in [(gr.0.clone(), "*".to_owned()), ("*".into(), "*".into())] {
                    if by_resource.contains_key(&mask) {
                        errors.push(format!(
                            "resource {:?} is masked by earlier rule {:?}",
                            yaml_name(&gr),
                            yaml_name(&mask)
                        ));
                    }
                }
                by_resource
                    .entry(gr)
                    .or_default()
                    .extend(providers.iter().cloned());
            }
        }
        if !errors.is_empty() {
            errors.dedup();
            return Err(Error::Invalid(errors));
        }
        let transformers = by_resource
            .into_iter()
            .map(|(gr, providers)| (gr, Arc::new(Transformer { providers })))
            .collect();
        Ok(Self { transformers })
    }
}

/// Splits `resource.group` at the first dot as upstream's `ParseGroupResource`; a bare name is
/// in the core group and `*.` means every core resource.
fn parse_group_resource(name: &str) -> (String, String) {
    match name.split_once('.') {
        Some((resource, group)) => (group.to_owned(), resource.to_owned()),
        None => (String::new(), name.to_owned()),
    }
}

fn yaml_name((group, resource): &(String, String)) -> String {
    if group.is_empty() && resource == "*" {
        "*.".into()
    } else if group.is_empty() {
        resource.clone()
    } else {
        format!("{resource}.{group}")
    }
}

fn validate_resources(resources: &[String], field: &str, errors: &mut Vec<String>) {
    let field = format!("{field}.resources");
    if resources.is_empty() {
        errors.push(format!(
            "{field}: Required value: at least one resource is required"
        ));
        return;
    }
    let parsed: Vec<(String, String)> = resources.iter().map(|r| parse_group_resource(r)).collect();
    let mut duplicate = false;
    let mut overlap = false;
    for (i, a) in parsed.iter().enumerate() {
        for (j, b) in parsed.iter().enumerate() {
            if i == j {
                continue;
            }
            if a == b {
                duplicate = true;
            } else if (a.0 == "*" && a.1 == "*") || (a.0 == b.0 && (a.1 == "*" || b.1 == "*")) {
                overlap = true;
            }
        }
    }
    if duplicate {
        errors.push(format!(
            "{field}: Invalid value: {resources:?}: the same resource cannot be specified multiple times"
        ));
    }
    if overlap {
        errors.push(format!(
            "{field}: Invalid value: {resources:?}: using overlapping resources such as 'secrets' and '*.' in the same resource list is not allowed as they will be masked"
        ));
    }
    for (j, (name, (group, resource))) in resources.iter().zip(&parsed).enumerate() {
        let problem = if name.to_lowercase() != *name {
            Some("resource name should not contain capital letters")
        } else if name == "*" {
            Some("use '*.' to encrypt all the resources from core API group or *.* to encrypt all resources")
        } else if group.is_empty()
            && matches!(
                resource.as_str(),
                "apiserveripinfo" | "serviceipallocations" | "servicenodeportallocations"
            )
        {
            Some("resources which do not have REST API/s cannot be encrypted")
        } else if group == "events.k8s.io" {
            Some("'*.events.k8s.io' objects are stored using the 'events' API group in etcd. Use 'events' instead in the config file")
        } else if group == "extensions" {
            Some("'extensions' group has been removed and cannot be used for encryption")
        } else if group == "*" && resource != "*" {
            Some("encrypting the same resource across groups is not supported")
        } else {
            None
        };
        if let Some(problem) = problem {
            errors.push(format!("{field}[{j}]: Invalid value: {name:?}: {problem}"));
        }
    }
}

fn build_provider(p: &FileProvider, field: &str, errors: &mut Vec<String>) -> Option<Provider> {
    let found = [
        p.aescbc.is_some(),
        p.aesgcm.is_some(),
        p.secretbox.is_some(),
        p.identity.is_some(),
        p.kms.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if found == 0 {
        errors.push(format!("{field}: Invalid value: provider does not contain any of the expected providers: KMS, AESGCM, AESCBC, Secretbox, Identity"));
        return None;
    }
    if found > 1 {
        errors.push(format!("{field}: Invalid value: more than one provider specified in a single element, should split into different list elements"));
        return None;
    }
    if p.identity.is_some() {
        return Some(Provider::Identity);
    }
    if p.secretbox.is_some() {
        errors.push(format!(
            "{field}.secretbox: the secretbox provider is not supported by this server; use aescbc or aesgcm"
        ));
        return None;
    }
    if p.kms.is_some() {
        errors.push(format!(
            "{field}.kms: the kms provider is not supported by this server; use aescbc or aesgcm"
        ));
        return None;
    }
    if let Some(cfg) = &p.aescbc {
        let keys = decode_keys(cfg, &format!("{field}.aescbc.keys"), &AES_KEY_SIZES, errors)?;
        return Some(Provider::AesCbc(
            keys.into_iter()
                .map(|(name, secret)| NamedKey {
                    prefix: format!("{AESCBC_PREFIX}{name}:").into_bytes(),
                    key: CbcKey(secret),
                })
                .collect(),
        ));
    }
    if let Some(cfg) = &p.aesgcm {
        let keys_field = format!("{field}.aesgcm.keys");
        let keys = decode_keys(cfg, &keys_field, &AES_KEY_SIZES, errors)?;
        let mut out = Vec::with_capacity(keys.len());
        for (i, (name, secret)) in keys.into_iter().enumerate() {
            let alg = match secret.len() {
                16 => &aead::AES_128_GCM,
                32 => &aead::AES_256_GCM,
                n => {
                    errors.push(format!(
                        "{keys_field}[{i}].secret: Invalid value: \"REDACTED\": aesgcm keys of {n} bytes are not supported by this server, use 16 or 32"
                    ));
                    continue;
                }
            };
            match aead::UnboundKey::new(alg, &secret) {
                Ok(key) => out.push(NamedKey {
                    prefix: format!("{AESGCM_PREFIX}{name}:").into_bytes(),
                    key: aead::LessSafeKey::new(key),
                }),
                Err(_) => errors.push(format!(
                    "{keys_field}[{i}].secret: error while creating cipher for named key {name}"
                )),
            }
        }
        return (out.len() == cfg.keys.len()).then_some(Provider::AesGcm(out));
    }
    None
}

/// Validates a key list and returns (name, decoded secret) pairs when every key is valid.
fn decode_keys(
    cfg: &FileKeys,
    field: &str,
    sizes: &[usize],
    errors: &mut Vec<String>,
) -> Option<Vec<(String, Vec<u8>)>> {
    if cfg.keys.is_empty() {
        errors.push(format!(
            "{field}: Required value: at least one keys is required"
        ));
        return None;
    }
    let before = errors.len();
    let mut out = Vec::with_capacity(cfg.keys.len());
    for (i, key) in cfg.keys.iter().enumerate() {
        let kf = format!("{field}[{i}]");
        if key.name.is_empty() {
            errors.push(format!(
                "{kf}.name: Required value: name is a mandatory field for a key"
            ));
        }
        if key.secret.is_empty() {
            errors.push(format!(
                "{kf}.secret: Required value: secret is a mandatory field for a key"
            ));
            continue;
        }
        let secret = match base64::engine::general_purpose::STANDARD.decode(key.secret.trim()) {
            Ok(s) => s,
            Err(_) => {
                errors.push(format!(
                    "{kf}.secret: Invalid value: \"REDACTED\": secrets must be base64 encoded"
                ));
                continue;
            }
        };
        if !sizes.contains(&secret.len()) {
            errors.push(format!(
                "{kf}.secret: Invalid value: \"REDACTED\": secret is not of the expected length, got {}, expected one of {sizes:?}",
                secret.len()
            ));
            continue;
        }
        out.push((key.name.clone(), secret));
    }
    (errors.len() == before).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
    const KEY2: &str = "dGhpcyBpcyBwYXNzd29yZA=="; // 16 bytes
    const KEY24: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0"; // 24 bytes
    const CANARY: &[u8] =
        b"{\"kind\":\"Secret\",\"data\":{\"password\":\"canary-plaintext-7f3a\"}}";
    const PATH: &[u8] = b"/registry/secrets/default/s1";

    fn config(yaml: &str) -> EncryptionConfig {
        EncryptionConfig::from_slice(yaml.as_bytes()).unwrap()
    }

    fn err(yaml: &str) -> String {
        EncryptionConfig::from_slice(yaml.as_bytes())
            .unwrap_err()
            .to_string()
    }

    fn with_providers(providers: &str) -> String {
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n{providers}"
        )
    }

    fn secrets(cfg: &EncryptionConfig) -> Arc<Transformer> {
        cfg.transformer_for("", "secrets").unwrap()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn aescbc_round_trips_and_hides_plaintext() {
        for key in [KEY1, KEY2, KEY24] {
            let cfg = config(&with_providers(&format!(
                "  - aescbc:\n      keys:\n      - name: key1\n        secret: {key}\n"
            )));
            let t = secrets(&cfg);
            let stored = t.encrypt(CANARY, PATH).unwrap();
            assert!(stored.starts_with(b"k8s:enc:aescbc:v1:key1:"));
            assert!(!contains(&stored, b"canary-plaintext"));
            assert_eq!((stored.len() - 23 - 16) % 16, 0);
            let (plain, stale) = t.decrypt(&stored, PATH).unwrap();
            assert_eq!(plain, CANARY);
            assert!(!stale);
            // CBC carries no authenticated data, so the key path does not matter.
            assert_eq!(t.decrypt(&stored, b"/other").unwrap().0, CANARY);
        }
    }

    #[test]
    fn aesgcm_round_trips_and_binds_the_key_path() {
        for key in [KEY1, KEY2] {
            let cfg = config(&with_providers(&format!(
                "  - aesgcm:\n      keys:\n      - name: k\n        secret: {key}\n"
            )));
            let t = secrets(&cfg);
            let stored = t.encrypt(CANARY, PATH).unwrap();
            assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:k:"));
            assert!(!contains(&stored, b"canary-plaintext"));
            assert_eq!(stored.len(), 20 + 12 + CANARY.len() + 16);
            assert_eq!(t.decrypt(&stored, PATH).unwrap(), (CANARY.to_vec(), false));
            assert!(t.decrypt(&stored, b"/registry/secrets/default/s2").is_err());
        }
    }

    #[test]
    fn encryption_is_randomised() {
        let cfg = config(&with_providers(&format!(
            "  - aesgcm:\n      keys:\n      - name: k\n        secret: {KEY1}\n"
        )));
        let t = secrets(&cfg);
        assert_ne!(
            t.encrypt(CANARY, PATH).unwrap(),
            t.encrypt(CANARY, PATH).unwrap()
        );
    }

    #[test]
    fn rotation_reads_old_key_and_reports_stale() {
        let old = config(&with_providers(&format!(
            "  - aescbc:\n      keys:\n      - name: key1\n        secret: {KEY1}\n"
        )));
        let stored_old = secrets(&old).encrypt(CANARY, PATH).unwrap();

        // A new key listed first writes; the old key still reads, and such reads are stale.
        let rotated = config(&with_providers(&format!(
            "  - aescbc:\n      keys:\n      - name: key2\n        secret: {KEY2}\n      - name: key1\n        secret: {KEY1}\n"
        )));
        let t = secrets(&rotated);
        assert_eq!(
            t.decrypt(&stored_old, PATH).unwrap(),
            (CANARY.to_vec(), true)
        );
        let stored_new = t.encrypt(CANARY, PATH).unwrap();
        assert!(stored_new.starts_with(b"k8s:enc:aescbc:v1:key2:"));
        assert_eq!(
            t.decrypt(&stored_new, PATH).unwrap(),
            (CANARY.to_vec(), false)
        );

        // Old provider demoted behind a different provider type is also stale.
        let switched = config(&with_providers(&format!(
            "  - aesgcm:\n      keys:\n      - name: g\n        secret: {KEY2}\n  - aescbc:\n      keys:\n      - name: key1\n        secret: {KEY1}\n"
        )));
        assert_eq!(
            secrets(&switched).decrypt(&stored_old, PATH).unwrap(),
            (CANARY.to_vec(), true)
        );
    }

    #[test]
    fn plaintext_is_read_only_when_identity_is_listed() {
        let enc_only = config(&with_providers(&format!(
            "  - aescbc:\n      keys:\n      - name: key1\n        secret: {KEY1}\n"
        )));
        let e = secrets(&enc_only).decrypt(CANARY, PATH).unwrap_err();
        assert_eq!(e.to_string(), "no matching prefix found");

        let with_fallback = config(&with_providers(&format!(
            "  - aescbc:\n      keys:\n      - name: key1\n        secret: {KEY1}\n  - identity: {{}}\n"
        )));
        assert_eq!(
            secrets(&with_fallback).decrypt(CANARY, PATH).unwrap(),
            (CANARY.to_vec(), true)
        );
    }

    #[test]
    fn identity_first_writes_plaintext_and_still_reads_encrypted() {
        let enc = config(&with_providers(&format!(
            "  - aesgcm:\n      keys:\n      - name: k\n        secret: {KEY1}\n"
        )));
        let stored = secrets(&enc).encrypt(CANARY, PATH).unwrap();

        let decrypting = config(&with_providers(&format!(
            "  - identity: {{}}\n  - aesgcm:\n      keys:\n      - name: k\n        secret: {KEY1}\n"
        )));
        let t = secrets(&decrypting);
        assert!(t.writes_plaintext());
        assert_eq!(t.encrypt(CANARY, PATH).unwrap(), CANARY);
        assert_eq!(t.decrypt(CANARY, PATH).unwrap(), (CANARY.to_vec(), false));
        assert_eq!(t.decrypt(&stored, PATH).unwrap(), (CANARY.to_vec(), true));
    }

    #[test]
    fn wrong_key_fails_to_decrypt() {
        let a = config(&with_providers(&format!(
            "  - aescbc:\n      keys:\n      - name: key1\n        secret: {KEY1}\n"
        )));
        let b = config(&with_providers(&format!(
            "  - aescbc:\n      keys:\n      - name: key1\n        secret: {KEY2}\n"
        )));
        let stored = secrets(&a).encrypt(CANARY, PATH).unwrap();
        // CBC has no integrity; a wrong key nearly always breaks the padding, but when it does
        // not the output must at least differ from the plaintext.
        match secrets(&b).decrypt(&stored, PATH) {
            Err(Error::Decrypt(_)) => {}
            Ok((plain, _)) => assert_ne!(plain, CANARY),
            Err(other) => panic!("unexpected error {other}"),
        }

        let ga = config(&with_providers(&format!(
            "  - aesgcm:\n      keys:\n      - name: k\n        secret: {KEY1}\n"
        )));
        let gb = config(&with_providers(&format!(
            "  - aesgcm:\n      keys:\n      - name: k\n        secret: {KEY2}\n"
        )));
        let stored = secrets(&ga).encrypt(CANARY, PATH).unwrap();
        let e = secrets(&gb).decrypt(&stored, PATH).unwrap_err();
        assert!(matches!(e, Error::Decrypt(_)), "{e}");

        // Unknown key name under a known provider prefix.
        let gc = config(&with_providers(&format!(
            "  - aesgcm:\n      keys:\n      - name: other\n        secret: {KEY1}\n"
        )));
        let e = secrets(&gc).decrypt(&stored, PATH).unwrap_err();
        assert!(e.to_string().contains("no matching key"), "{e}");
    }

    #[test]
    fn truncated_values_are_errors_not_panics() {
        let cfg = config(&with_providers(&format!(
            "  - aescbc:\n      keys:\n      - name: a\n        secret: {KEY1}\n  - aesgcm:\n      keys:\n      - name: b\n        secret: {KEY1}\n"
        )));
        let t = secrets(&cfg);
        for stored in [
            &b"k8s:enc:aescbc:v1:a:"[..],
            b"k8s:enc:aescbc:v1:a:0123456789abcdef0123",
            b"k8s:enc:aesgcm:v1:b:short",
            b"k8s:enc:secretbox:v1:x:abc",
        ] {
            assert!(t.decrypt(stored, PATH).is_err());
        }
    }

    #[test]
    fn resources_are_matched_exactly_then_by_group_then_globally() {
        let cfg = config(&format!(
            "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets, deployments.apps]
  providers:
  - aescbc:
      keys: [{{name: a, secret: {KEY1}}}]
- resources: ['*.apps']
  providers:
  - aesgcm:
      keys: [{{name: b, secret: {KEY1}}}]
- resources: ['*.']
  providers:
  - aesgcm:
      keys: [{{name: c, secret: {KEY1}}}]
- resources: ['*.*']
  providers:
  - identity: {{}}
"
        ));
        let prefix = |g: &str, r: &str| {
            let t = cfg.transformer_for(g, r).unwrap();
            let out = t.encrypt(b"x", b"/k").unwrap();
            String::from_utf8_lossy(&out[..out.len().min(20)]).into_owned()
        };
        assert!(prefix("", "secrets").starts_with("k8s:enc:aescbc:v1:a:"));
        assert!(prefix("apps", "deployments").starts_with("k8s:enc:aescbc:v1:a:"));
        assert!(prefix("apps", "statefulsets").starts_with("k8s:enc:aesgcm:v1:b:"));
        assert!(prefix("", "configmaps").starts_with("k8s:enc:aesgcm:v1:c:"));
        assert_eq!(prefix("batch", "jobs"), "x");
    }

    #[test]
    fn unconfigured_resources_have_no_transformer() {
        let cfg = config(&with_providers("  - identity: {}\n"));
        assert!(cfg.transformer_for("", "configmaps").is_none());
        assert!(cfg.transformer_for("apps", "secrets").is_none());
        assert!(cfg.transformer_for("", "secrets").is_some());
    }

    #[test]
    fn resource_named_in_two_entries_reads_through_both() {
        let cfg = config(&format!(
            "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - aescbc:
      keys: [{{name: new, secret: {KEY2}}}]
- resources: [secrets]
  providers:
  - aescbc:
      keys: [{{name: old, secret: {KEY1}}}]
"
        ));
        let old = config(&with_providers(&format!(
            "  - aescbc:\n      keys:\n      - name: old\n        secret: {KEY1}\n"
        )));
        let stored = secrets(&old).encrypt(CANARY, PATH).unwrap();
        assert_eq!(
            secrets(&cfg).decrypt(&stored, PATH).unwrap(),
            (CANARY.to_vec(), true)
        );
        assert!(secrets(&cfg)
            .encrypt(CANARY, PATH)
            .unwrap()
            .starts_with(b"k8s:enc:aescbc:v1:new:"));
    }

    #[test]
    fn invalid_configurations_are_rejected_with_clear_errors() {
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "bad base64",
                with_providers("  - aescbc:\n      keys:\n      - name: k\n        secret: '!!!'\n"),
                "secrets must be base64 encoded",
            ),
            (
                "wrong key length",
                with_providers("  - aescbc:\n      keys:\n      - name: k\n        secret: YWJj\n"),
                "secret is not of the expected length, got 3, expected one of [16, 24, 32]",
            ),
            (
                "empty keys",
                with_providers("  - aesgcm:\n      keys: []\n"),
                "at least one keys is required",
            ),
            (
                "missing key name",
                with_providers(&format!("  - aescbc:\n      keys:\n      - secret: {KEY1}\n")),
                "name is a mandatory field for a key",
            ),
            (
                "24-byte gcm key",
                with_providers(&format!(
                    "  - aesgcm:\n      keys:\n      - name: k\n        secret: {KEY24}\n"
                )),
                "aesgcm keys of 24 bytes are not supported by this server",
            ),
            (
                "unknown provider",
                with_providers("  - rot13: {}\n"),
                "provider does not contain any of the expected providers",
            ),
            (
                "two providers in one element",
                with_providers(&format!(
                    "  - identity: {{}}\n    aescbc:\n      keys:\n      - name: k\n        secret: {KEY1}\n"
                )),
                "more than one provider specified in a single element",
            ),
            (
                "secretbox",
                with_providers(&format!(
                    "  - secretbox:\n      keys:\n      - name: k\n        secret: {KEY1}\n"
                )),
                "secretbox provider is not supported by this server",
            ),
            (
                "kms",
                with_providers("  - kms:\n      apiVersion: v2\n      name: x\n      endpoint: unix:///k.sock\n"),
                "kms provider is not supported by this server",
            ),
            (
                "no providers",
                with_providers("    []\n"),
                "at least one provider is required",
            ),
            (
                "wrong kind",
                "apiVersion: apiserver.config.k8s.io/v1\nkind: Policy\nresources: []\n".into(),
                "kind: unsupported value \"Policy\"",
            ),
            (
                "wrong apiVersion",
                "apiVersion: v1\nkind: EncryptionConfiguration\nresources: []\n".into(),
                "apiVersion: unsupported value \"v1\"",
            ),
            (
                "star resource",
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: ['*']\n  providers: [{identity: {}}]\n".into(),
                "use '*.' to encrypt all the resources from core API group",
            ),
            (
                "overlap in one entry",
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets, '*.']\n  providers: [{identity: {}}]\n".into(),
                "using overlapping resources",
            ),
            (
                "masked by earlier entry",
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: ['*.*']\n  providers: [{identity: {}}]\n- resources: [secrets]\n  providers: [{identity: {}}]\n".into(),
                "resource \"secrets\" is masked by earlier rule \"*.*\"",
            ),
            (
                "capital letters",
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [Secrets]\n  providers: [{identity: {}}]\n".into(),
                "should not contain capital letters",
            ),
        ];
        for (name, yaml, want) in cases {
            let got = err(&yaml);
            assert!(got.contains(want), "{name}: got {got:?}, want {want:?}");
            assert!(!got.contains(KEY1), "{name}: error leaks the key");
        }
    }

    #[test]
    fn load_reads_yaml_and_json_files() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("enc.yaml");
        std::fs::write(
            &yaml,
            with_providers(&format!(
                "  - aescbc:\n      keys:\n      - name: key1\n        secret: {KEY1}\n"
            )),
        )
        .unwrap();
        assert!(EncryptionConfig::load(&yaml)
            .unwrap()
            .transformer_for("", "secrets")
            .is_some());

        let json = dir.path().join("enc.json");
        std::fs::write(
            &json,
            format!(
                r#"{{"apiVersion":"apiserver.config.k8s.io/v1","kind":"EncryptionConfiguration","resources":[{{"resources":["configmaps"],"providers":[{{"aesgcm":{{"keys":[{{"name":"k","secret":"{KEY2}"}}]}}}},{{"identity":{{}}}}]}}]}}"#
            ),
        )
        .unwrap();
        let cfg = EncryptionConfig::load(&json).unwrap();
        assert!(cfg.transformer_for("", "configmaps").is_some());

        let empty = dir.path().join("empty.yaml");
        std::fs::write(&empty, "\n").unwrap();
        assert!(matches!(
            EncryptionConfig::load(&empty),
            Err(Error::Empty(_))
        ));
        assert!(matches!(
            EncryptionConfig::load(dir.path().join("missing")),
            Err(Error::Read { .. })
        ));
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "resources: 3\n").unwrap();
        let e = EncryptionConfig::load(&bad).unwrap_err();
        assert!(matches!(e, Error::Decode { .. }));
        assert!(e.to_string().contains("bad.yaml"));
    }

    #[test]
    fn debug_output_does_not_leak_keys() {
        let cfg = config(&with_providers(&format!(
            "  - aescbc:\n      keys:\n      - name: key1\n        secret: {KEY1}\n"
        )));
        let shown = format!("{cfg:?}");
        assert!(shown.contains("key1"));
        assert!(!shown.contains("0123456789abcdef"));
        assert!(!shown.contains(KEY1));
        assert!(is_encrypted(&secrets(&cfg).encrypt(b"{}", PATH).unwrap()));
        assert!(!is_encrypted(b"{}"));
    }
}
