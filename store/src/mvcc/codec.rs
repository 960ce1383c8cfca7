//! On-disk layout of the MVCC tree: key prefixes, record encoding and the snapshot blob.
//!
//! One sled tree holds everything, distinguished by the first key byte:
//! - `r` + main revision (u64 BE) + sub revision (u32 BE) -> record (flag byte + `KeyValue`)
//! - `l` + lease id (u64 BE of the i64) -> granted TTL (i64 BE)
//! - `a` + member id (u64 BE) + alarm type (i32 BE) -> empty
//! - `m` + name -> metadata (raft meta blob, current revision, compact revision)

use prost::Message;
use proto::mvccpb;

use super::MvccError;

pub(crate) const RECORD_PREFIX: u8 = b'r';
pub(crate) const LEASE_PREFIX: u8 = b'l';
pub(crate) const ALARM_PREFIX: u8 = b'a';

pub(crate) const META_RAFT: &[u8] = b"mraft";
pub(crate) const META_REVISION: &[u8] = b"mrev";
pub(crate) const META_COMPACT: &[u8] = b"mcompact";

pub(crate) const RECORD_KEY_LEN: usize = 13;
pub(crate) const LEASE_KEY_LEN: usize = 9;
/// Logical bytes one lease occupies (key + TTL), counted against the quota.
pub(crate) const LEASE_SIZE: u64 = (LEASE_KEY_LEN + 8) as u64;

const FLAG_PUT: u8 = 0;
const FLAG_TOMBSTONE: u8 = 1;

const SNAPSHOT_MAGIC: &[u8] = b"KSTORE-MVCC-SNAPSHOT-1\n";

/// The sled key of the record written at `(main, sub)`. Revisions are positive, so the
/// big-endian encoding sorts records in revision order.
pub(crate) fn record_key(main: i64, sub: u32) -> [u8; RECORD_KEY_LEN] {
    let mut k = [0u8; RECORD_KEY_LEN];
    k[0] = RECORD_PREFIX;
    k[1..9].copy_from_slice(&(main as u64).to_be_bytes());
    k[9..13].copy_from_slice(&sub.to_be_bytes());
    k
}

pub(crate) fn parse_record_key(k: &[u8]) -> Result<(i64, u32), MvccError> {
    if k.len() != RECORD_KEY_LEN || k[0] != RECORD_PREFIX {
        return Err(MvccError::Corrupt(format!("bad record key {k:?}")));
    }
    let main = u64::from_be_bytes(k[1..9].try_into().expect("slice of length 8"));
    let sub = u32::from_be_bytes(k[9..13].try_into().expect("slice of length 4"));
    Ok((main as i64, sub))
}

/// A record value: a put of `kv`, or a tombstone (then `kv` carries key and mod_revision).
pub(crate) fn encode_record(kv: &mvccpb::KeyValue, tombstone: bool) -> Vec<u8> {
    let mut buf = Vec::with_capacity(1 + kv.encoded_len());
    buf.push(if tombstone { FLAG_TOMBSTONE } else { FLAG_PUT });
    kv.encode(&mut buf).expect("a Vec grows to fit the message");
    buf
}

/// Decodes a record value into (is tombstone, key-value).
pub(crate) fn decode_record(v: &[u8]) -> Result<(bool, mvccpb::KeyValue), MvccError> {
    let (flag, body) = v
        .split_first()
        .ok_or_else(|| MvccError::Corrupt("empty record".into()))?;
    let tombstone = match *flag {
        FLAG_PUT => false,
        FLAG_TOMBSTONE => true,
        other => return Err(MvccError::Corrupt(format!("bad record flag {other}"))),
    };
    let kv = mvccpb::KeyValue::decode(body)
        .map_err(|e| MvccError::Corrupt(format!("bad record: {e}")))?;
    Ok((tombstone, kv))
}

pub(crate) fn lease_key(id: i64) -> [u8; LEASE_KEY_LEN] {
    let mut k = [0u8; LEASE_KEY_LEN];
    k[0] = LEASE_PREFIX;
    k[1..9].copy_from_slice(&(id as u64).to_be_bytes());
    k
}

pub(crate) fn parse_lease(k: &[u8], v: &[u8]) -> Result<(i64, i64), MvccError> {
    if k.len() != LEASE_KEY_LEN || v.len() != 8 {
        return Err(MvccError::Corrupt(format!("bad lease entry {k:?}")));
    }
    let id = u64::from_be_bytes(k[1..9].try_into().expect("slice of length 8")) as i64;
    let ttl = i64::from_be_bytes(v.try_into().expect("slice of length 8"));
    Ok((id, ttl))
}

pub(crate) fn alarm_key(member: u64, alarm: i32) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = ALARM_PREFIX;
    k[1..9].copy_from_slice(&member.to_be_bytes());
    k[9..13].copy_from_slice(&alarm.to_be_bytes());
    k
}

pub(crate) fn parse_alarm_key(k: &[u8]) -> Result<(u64, i32), MvccError> {
    if k.len() != 13 {
        return Err(MvccError::Corrupt(format!("bad alarm key {k:?}")));
    }
    let member = u64::from_be_bytes(k[1..9].try_into().expect("slice of length 8"));
    let alarm = i32::from_be_bytes(k[9..13].try_into().expect("slice of length 4"));
    Ok((member, alarm))
}

pub(crate) fn decode_i64(v: &[u8]) -> Result<i64, MvccError> {
    let b: [u8; 8] = v
        .try_into()
        .map_err(|_| MvccError::Corrupt(format!("bad integer {v:?}")))?;
    Ok(i64::from_be_bytes(b))
}

/// Serializes tree entries as: magic, count (u64), then per entry key length (u32), key,
/// value length (u32), value; a crc32 of everything before it closes the blob.
pub(crate) fn encode_snapshot<I>(entries: I) -> Result<Vec<u8>, MvccError>
where
    I: IntoIterator<Item = Result<(sled::IVec, sled::IVec), sled::Error>>,
{
    let mut buf = Vec::from(SNAPSHOT_MAGIC);
    buf.extend_from_slice(&0u64.to_be_bytes());
    let mut count: u64 = 0;
    for entry in entries {
        let (k, v) = entry?;
        for part in [&k[..], &v[..]] {
            let len = u32::try_from(part.len())
                .map_err(|_| MvccError::Corrupt("entry too large for a snapshot".into()))?;
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(part);
        }
        count += 1;
    }
    let at = SNAPSHOT_MAGIC.len();
    buf[at..at + 8].copy_from_slice(&count.to_be_bytes());
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_be_bytes());
    Ok(buf)
}

/// A (key, value) pair of the tree, borrowed from a snapshot blob.
pub(crate) type SnapshotEntry<'a> = (&'a [u8], &'a [u8]);

/// Parses a blob from [`encode_snapshot`], checking its magic and checksum.
pub(crate) fn decode_snapshot(data: &[u8]) -> Result<Vec<SnapshotEntry<'_>>, MvccError> {
    let bad = |why: &str| MvccError::Corrupt(format!("snapshot: {why}"));
    if data.len() < SNAPSHOT_MAGIC.len() + 12 || !data.starts_with(SNAPSHOT_MAGIC) {
        return Err(bad("not a kube-store mvcc snapshot"));
    }
    let (body, crc) = data.split_at(data.len() - 4);
    let crc = u32::from_be_bytes(crc.try_into().expect("slice of length 4"));
    if crc32fast::hash(body) != crc {
        return Err(bad("checksum mismatch"));
    }
    let mut rest = &body[SNAPSHOT_MAGIC.len()..];
    let count = u64::from_be_bytes(
        take(&mut rest, 8)
            .ok_or_else(|| bad("truncated"))?
            .try_into()
            .expect("slice of length 8"),
    );
    let mut out = Vec::new();
    for _ in 0..count {
        let k = take_part(&mut rest).ok_or_else(|| bad("truncated"))?;
        let v = take_part(&mut rest).ok_or_else(|| bad("truncated"))?;
        out.push((k, v));
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(out)
}

fn take_part<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_be_bytes(take(rest, 4)?.try_into().expect("slice of length 4"));
    take(rest, len as usize)
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}
