//! Objects in the etcd v3 compatible store: JSON values under `/registry/...` keys,
//! resourceVersion = mod_revision, every write guarded by a Txn on the key's revision.

pub mod cacher;
pub mod compactor;
pub mod transformer;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use proto::etcdserverpb::{
    self as pb, compare, request_op, response_op, Compare, RequestOp, TxnRequest,
};
use serde_json::Value;
use store::client::KvStore;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::object;

/// Why a storage operation failed, before it is named for a resource.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("key exists")]
    AlreadyExists,
    #[error("key not found")]
    NotFound,
    /// The object changed since the given revision; carries the current one, if any.
    #[error("revision mismatch")]
    Conflict(Option<Box<(Value, i64)>>),
    #[error("the resourceVersion {0} is too old")]
    Compacted(i64),
    #[error("store: {0}")]
    Store(String),
    #[error("corrupt object at {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

impl StorageError {
    /// The upstream Status for this failure on `resource` `name`.
    pub fn to_api(&self, group: &str, resource: &str, name: &str) -> ApiError {
        match self {
            Self::AlreadyExists => ApiError::already_exists(group, resource, name),
            Self::NotFound => ApiError::not_found(group, resource, name),
            Self::Conflict(_) => ApiError::stale(group, resource, name),
            Self::Compacted(_) => ApiError::expired(self.to_string()),
            Self::Store(msg) if msg.contains("too large") => ApiError::too_large(msg.clone()),
            Self::Store(msg) => ApiError::internal(msg.clone()),
            Self::Corrupt { .. } => ApiError::internal(self.to_string()),
        }
    }
}

impl From<tonic::Status> for StorageError {
    fn from(s: tonic::Status) -> Self {
        if s.message().contains("required revision has been compacted") {
            return Self::Compacted(0);
        }
        Self::Store(s.message().to_string())
    }
}

/// Typed access to the key-value store.
#[derive(Clone)]
pub struct Storage {
    kv: Arc<dyn KvStore>,
    metrics: Arc<Metrics>,
    codec: Arc<Codec>,
}

/// How objects become stored bytes: JSON, encrypted for the resources the
/// --encryption-provider-config names.
#[derive(Default)]
pub struct Codec {
    encryption: Option<transformer::EncryptionConfig>,
    /// Group of each built-in resource; keys of built-ins carry only the resource.
    builtin_groups: HashMap<String, String>,
    /// Transformer per storage prefix, resolved on first use.
    by_prefix: RwLock<HashMap<String, Option<Arc<transformer::Transformer>>>>,
}

impl Codec {
    /// A codec encrypting as `encryption` says; `builtin` maps built-in resources to groups.
    pub fn new(
        encryption: Option<transformer::EncryptionConfig>,
        builtin: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        Self {
            encryption,
            builtin_groups: builtin.into_iter().collect(),
            by_prefix: RwLock::default(),
        }
    }

    /// The transformer of the resource `key` belongs to: keys are
    /// `/registry/<resource>/...` for built-ins and `/registry/<group>/<resource>/...` for
    /// custom resources (whose groups always contain a dot).
    fn transformer(&self, key: &[u8]) -> Option<Arc<transformer::Transformer>> {
        let config = self.encryption.as_ref()?;
        let key = std::str::from_utf8(key).ok()?;
        let mut parts = key.strip_prefix("/registry/")?.split('/');
        let first = parts.next()?;
        let (group, resource, prefix_len) = if first.contains('.') {
            let resource = parts.next()?;
            (first, resource, first.len() + resource.len() + 1)
        } else {
            let group = self.builtin_groups.get(first).map_or("", String::as_str);
            (group, first, first.len())
        };
        let prefix = &key[..("/registry/".len() + prefix_len)];
        if let Some(t) = self
            .by_prefix
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(prefix)
        {
            return t.clone();
        }
        let t = config.transformer_for(group, resource);
        self.by_prefix
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(prefix.to_owned(), t.clone());
        t
    }

    /// Parses a stored object and stamps its resourceVersion.
    pub fn decode(
        &self,
        key: &[u8],
        value: &[u8],
        mod_revision: i64,
    ) -> Result<Value, StorageError> {
        let corrupt = |reason: String| StorageError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason,
        };
        match self.transformer(key) {
            Some(t) => {
                let (plain, _stale) = t.decrypt(value, key).map_err(|e| corrupt(e.to_string()))?;
                decode(key, &plain, mod_revision)
            }
            None if self.encryption.is_some() && transformer::is_encrypted(value) => Err(corrupt(
                "the value is encrypted but no provider is configured for it".into(),
            )),
            None => decode(key, value, mod_revision),
        }
    }

    /// Whether the value stored at `key` should be rewritten even if unchanged: it was
    /// written with a key or provider that is no longer the first (key rotation), or in
    /// plain text for a resource that is now encrypted.
    pub fn is_stale(&self, key: &[u8], value: &[u8]) -> bool {
        match self.transformer(key) {
            Some(t) => match t.decrypt(value, key) {
                Ok((_, stale)) => stale,
                Err(_) => false,
            },
            None => false,
        }
    }

    /// The bytes stored for `obj` at `key`.
    pub fn encode(&self, key: &str, obj: &Value) -> Result<Vec<u8>, StorageError> {
        let plain = encode(obj);
        match self.transformer(key.as_bytes()) {
            Some(t) => t
                .encrypt(&plain, key.as_bytes())
                .map_err(|e| StorageError::Store(e.to_string())),
            None => Ok(plain),
        }
    }
}

/// Parses a stored (plaintext) object and stamps its resourceVersion.
pub fn decode(key: &[u8], value: &[u8], mod_revision: i64) -> Result<Value, StorageError> {
    let mut obj: Value = serde_json::from_slice(value).map_err(|e| StorageError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })?;
    object::set_meta(
        &mut obj,
        "resourceVersion",
        Value::String(mod_revision.to_string()),
    );
    Ok(obj)
}

/// The stored bytes: the object without its resourceVersion (the store's revision is it).
pub fn encode(obj: &Value) -> Vec<u8> {
    serde_json::to_vec(&WithoutResourceVersion(obj)).expect("JSON values always serialize")
}

/// Serializes an object as if metadata.resourceVersion were removed, without copying it.
struct WithoutResourceVersion<'a>(&'a Value);

impl serde::Serialize for WithoutResourceVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(root) = self.0 else {
            return self.0.serialize(s);
        };
        let mut map = s.serialize_map(Some(root.len()))?;
        for (k, v) in root {
            match v {
                Value::Object(meta) if k == "metadata" && meta.contains_key("resourceVersion") => {
                    map.serialize_key(k)?;
                    map.serialize_value(&MetaWithout(meta))?;
                }
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

struct MetaWithout<'a>(&'a serde_json::Map<String, Value>);

impl serde::Serialize for MetaWithout<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len() - 1))?;
        for (k, v) in self.0 {
            if k != "resourceVersion" {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

fn put_op(key: &str, value: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value,
            ..Default::default()
        })),
    }
}

fn get_op(key: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(pb::RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })),
    }
}

fn compare_mod(key: &str, rev: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Mod as i32,
        key: key.as_bytes().to_vec(),
        target_union: Some(compare::TargetUnion::ModRevision(rev)),
        range_end: vec![],
    }
}

fn current_of(
    codec: &Codec,
    resp: &pb::TxnResponse,
) -> Result<Option<Box<(Value, i64)>>, StorageError> {
    for r in &resp.responses {
        if let Some(response_op::Response::ResponseRange(rr)) = &r.response {
            if let Some(kv) = rr.kvs.first() {
                return Ok(Some(Box::new((
                    codec.decode(&kv.key, &kv.value, kv.mod_revision)?,
                    kv.mod_revision,
                ))));
            }
        }
    }
    Ok(None)
}

/// The smallest key after every key with this prefix.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Storage {
    pub fn new(kv: Arc<dyn KvStore>, metrics: Arc<Metrics>, codec: Codec) -> Self {
        Self {
            kv,
            metrics,
            codec: Arc::new(codec),
        }
    }

    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    pub fn kv(&self) -> &Arc<dyn KvStore> {
        &self.kv
    }

    fn observe(&self, op: &str, ty: &str, start: Instant) {
        self.metrics.observe_storage(op, ty, start.elapsed(), true);
    }

    /// The object at `key` and its revision.
    pub async fn get(&self, key: &str, ty: &str) -> Result<Option<(Value, i64)>, StorageError> {
        let start = Instant::now();
        let resp = self
            .kv
            .range(pb::RangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })
            .await?;
        self.observe("get", ty, start);
        match resp.kvs.first() {
            Some(kv) => Ok(Some((
                self.codec.decode(&kv.key, &kv.value, kv.mod_revision)?,
                kv.mod_revision,
            ))),
            None => Ok(None),
        }
    }

    /// Every object under `prefix` at `revision` (0 = newest), and the revision read.
    pub async fn list(
        &self,
        prefix: &str,
        revision: i64,
        ty: &str,
    ) -> Result<(Vec<(Value, i64)>, i64), StorageError> {
        let start = Instant::now();
        let resp = self
            .kv
            .range(pb::RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix),
                revision,
                ..Default::default()
            })
            .await?;
        self.observe("list", ty, start);
        let mut out = Vec::with_capacity(resp.kvs.len());
        for kv in &resp.kvs {
            match self.codec.decode(&kv.key, &kv.value, kv.mod_revision) {
                Ok(v) => out.push((v, kv.mod_revision)),
                Err(e) => tracing::warn!(error = %e, "skipping undecodable object"),
            }
        }
        let rev = resp.header.map(|h| h.revision).unwrap_or(0);
        Ok((out, rev))
    }

    /// The store's current revision, from the header of a one-key read (a count over
    /// `/registry/` would visit every key).
    pub async fn current_revision(&self) -> Result<i64, StorageError> {
        let resp = self
            .kv
            .range(pb::RangeRequest {
                key: b"/registry/".to_vec(),
                keys_only: true,
                ..Default::default()
            })
            .await?;
        Ok(resp.header.map(|h| h.revision).unwrap_or(0))
    }

    /// Whether the stored bytes of `key` are encrypted with an old key (see
    /// [`Codec::is_stale`]); false without encryption, so unencrypted setups pay nothing.
    pub async fn needs_rewrite(&self, key: &str) -> bool {
        if self.codec.encryption.is_none() {
            return false;
        }
        let Ok(resp) = self
            .kv
            .range(pb::RangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })
            .await
        else {
            return false;
        };
        resp.kvs
            .first()
            .is_some_and(|kv| self.codec.is_stale(&kv.key, &kv.value))
    }

    /// Creates `key` if it does not exist; returns the new revision.
    pub async fn create(&self, key: &str, obj: &Value, ty: &str) -> Result<i64, StorageError> {
        let start = Instant::now();
        let resp = self
            .kv
            .txn(TxnRequest {
                compare: vec![compare_mod(key, 0)],
                success: vec![put_op(key, self.codec.encode(key, obj)?)],
                failure: vec![],
            })
            .await?;
        self.observe("create", ty, start);
        if !resp.succeeded {
            return Err(StorageError::AlreadyExists);
        }
        Ok(resp.header.map(|h| h.revision).unwrap_or(0))
    }

    /// Replaces `key` if its revision is still `expected`; on mismatch returns the current
    /// object (or NotFound if it is gone).
    pub async fn update(
        &self,
        key: &str,
        obj: &Value,
        expected: i64,
        ty: &str,
    ) -> Result<i64, StorageError> {
        let start = Instant::now();
        let resp = self
            .kv
            .txn(TxnRequest {
                compare: vec![compare_mod(key, expected)],
                success: vec![put_op(key, self.codec.encode(key, obj)?)],
                failure: vec![get_op(key)],
            })
            .await?;
        self.observe("update", ty, start);
        if resp.succeeded {
            return Ok(resp.header.map(|h| h.revision).unwrap_or(0));
        }
        match current_of(&self.codec, &resp)? {
            Some(cur) => Err(StorageError::Conflict(Some(cur))),
            None => Err(StorageError::NotFound),
        }
    }

    /// Deletes `key` if its revision is still `expected`; returns the deletion's revision.
    pub async fn delete(&self, key: &str, expected: i64, ty: &str) -> Result<i64, StorageError> {
        let start = Instant::now();
        let resp = self
            .kv
            .txn(TxnRequest {
                compare: vec![compare_mod(key, expected)],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestDeleteRange(
                        pb::DeleteRangeRequest {
                            key: key.as_bytes().to_vec(),
                            ..Default::default()
                        },
                    )),
                }],
                failure: vec![get_op(key)],
            })
            .await?;
        self.observe("delete", ty, start);
        if resp.succeeded {
            return Ok(resp.header.map(|h| h.revision).unwrap_or(0));
        }
        match current_of(&self.codec, &resp)? {
            Some(cur) => Err(StorageError::Conflict(Some(cur))),
            None => Err(StorageError::NotFound),
        }
    }

    /// Creates `key` only if absent, with no object semantics (allocator reservations).
    pub async fn reserve(&self, key: &str, value: &[u8]) -> Result<bool, StorageError> {
        let resp = self
            .kv
            .txn(TxnRequest {
                compare: vec![compare_mod(key, 0)],
                success: vec![put_op(key, value.to_vec())],
                failure: vec![],
            })
            .await?;
        Ok(resp.succeeded)
    }

    /// Removes a raw key (allocator releases).
    pub async fn release(&self, key: &str) -> Result<(), StorageError> {
        self.kv
            .delete_range(pb::DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// Raw keys under a prefix (allocator state).
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let resp = self
            .kv
            .range(pb::RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix),
                keys_only: true,
                ..Default::default()
            })
            .await?;
        Ok(resp
            .kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect())
    }

    /// Compacts history up to `revision`.
    pub async fn compact(&self, revision: i64) -> Result<(), StorageError> {
        self.kv
            .compact(pb::CompactionRequest {
                revision,
                physical: false,
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod codec_tests {
    use super::*;
    use serde_json::json;

    fn codec(keys: &[(&str, u8)]) -> Codec {
        let keys: String = keys
            .iter()
            .map(|(name, byte)| {
                let secret =
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [*byte; 32]);
                format!("      - name: {name}\n        secret: {secret}\n")
            })
            .collect();
        let yaml = format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n{keys}  - identity: {{}}\n"
        );
        let config = transformer::EncryptionConfig::from_slice(yaml.as_bytes()).expect("config");
        Codec::new(Some(config), [("secrets".to_owned(), String::new())])
    }

    #[test]
    fn rotation_marks_old_ciphertext_stale_and_leaves_other_resources_plain() {
        let key = "/registry/secrets/ns/s";
        let obj = json!({"metadata": {"name": "s"}, "data": {"k": "c2VjcmV0"}});
        let old = codec(&[("key1", 1)]);
        let stored = old.encode(key, &obj).expect("encode");
        assert!(stored.starts_with(b"k8s:enc:aescbc:v1:key1:"));
        assert!(!old.is_stale(key.as_bytes(), &stored));

        let rotated = codec(&[("key2", 2), ("key1", 1)]);
        let read = rotated
            .decode(key.as_bytes(), &stored, 5)
            .expect("old key still reads");
        assert_eq!(read["data"], obj["data"]);
        assert!(
            rotated.is_stale(key.as_bytes(), &stored),
            "written with key1"
        );
        let rewritten = rotated.encode(key, &obj).expect("encode");
        assert!(rewritten.starts_with(b"k8s:enc:aescbc:v1:key2:"));
        assert!(!rotated.is_stale(key.as_bytes(), &rewritten));

        // Plain text written before encryption was configured reads, and is stale.
        let plain = encode(&obj);
        assert!(rotated.is_stale(key.as_bytes(), &plain));
        // Encoding drops only the resourceVersion, exactly as removing it would.
        let mut with_rv = obj.clone();
        object::set_meta(&mut with_rv, "resourceVersion", json!("9"));
        assert_eq!(encode(&with_rv), serde_json::to_vec(&obj).expect("json"));
        // Resources the config does not name stay plain.
        let cm = "/registry/configmaps/ns/c";
        assert_eq!(rotated.encode(cm, &obj).expect("encode"), plain);
    }
}
