//! The in-memory state: per-key revision index, leases, alarms and counters, rebuilt from sled.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use super::codec;
use super::MvccError;

/// One record of a key's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rev {
    pub main: i64,
    pub sub: u32,
    /// Logical bytes of the record (sled key + value), for quota accounting.
    pub size: u32,
    pub tombstone: bool,
}

/// What the newest record of a live key says, cached so writes need no sled read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Live {
    pub create: i64,
    pub version: i64,
    pub lease: i64,
}

/// A key's history, oldest first, and its current state (`None` when deleted).
#[derive(Debug, Default)]
pub(crate) struct KeyEntry {
    pub revs: Vec<Rev>,
    pub live: Option<Live>,
}

impl KeyEntry {
    /// The record visible at revision `rev`: the newest one at or below it, unless a tombstone.
    pub fn visible_at(&self, rev: i64) -> Option<Rev> {
        let n = self.revs.partition_point(|r| r.main <= rev);
        let r = *self.revs.get(n.checked_sub(1)?)?;
        (!r.tombstone).then_some(r)
    }

    /// The record before the one at `(main, sub)`, if that one is in the history.
    pub fn before(&self, main: i64, sub: u32) -> Option<Rev> {
        let pos = self
            .revs
            .binary_search_by(|r| (r.main, r.sub).cmp(&(main, sub)))
            .ok()?;
        self.revs.get(pos.checked_sub(1)?).copied()
    }

    /// Whether `r` is this key's newest record (so [`KeyEntry::live`] describes it).
    pub fn is_latest(&self, r: &Rev) -> bool {
        self.revs.last() == Some(r)
    }
}

#[derive(Debug)]
pub(crate) struct LeaseState {
    pub ttl: i64,
    pub keys: BTreeSet<Vec<u8>>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub index: BTreeMap<Vec<u8>, KeyEntry>,
    pub leases: BTreeMap<i64, LeaseState>,
    /// Active alarms as (member id, alarm type).
    pub alarms: BTreeSet<(u64, i32)>,
    pub rev: i64,
    pub compact_rev: i64,
    /// Logical bytes of all records and leases.
    pub size: u64,
}

impl State {
    /// Rebuilds the state by scanning the tree.
    pub fn load(tree: &sled::Tree) -> Result<Self, MvccError> {
        let mut index: BTreeMap<Vec<u8>, KeyEntry> = BTreeMap::new();
        let mut size: u64 = 0;
        let mut max_main = 1;
        for item in tree.scan_prefix([codec::RECORD_PREFIX]) {
            let (k, v) = item?;
            let (main, sub) = codec::parse_record_key(&k)?;
            let (tombstone, kv) = codec::decode_record(&v)?;
            let rec_size = record_size(v.len());
            size += u64::from(rec_size);
            max_main = max_main.max(main);
            let entry = index.entry(kv.key).or_default();
            entry.revs.push(Rev {
                main,
                sub,
                size: rec_size,
                tombstone,
            });
            entry.live = (!tombstone).then_some(Live {
                create: kv.create_revision,
                version: kv.version,
                lease: kv.lease,
            });
        }

        let mut leases = BTreeMap::new();
        for item in tree.scan_prefix([codec::LEASE_PREFIX]) {
            let (k, v) = item?;
            let (id, ttl) = codec::parse_lease(&k, &v)?;
            size += codec::LEASE_SIZE;
            leases.insert(
                id,
                LeaseState {
                    ttl,
                    keys: BTreeSet::new(),
                },
            );
        }
        for (key, entry) in &index {
            if let Some(lease) = entry.live.map(|l| l.lease).filter(|&l| l != 0) {
                if let Some(l) = leases.get_mut(&lease) {
                    l.keys.insert(key.clone());
                }
            }
        }

        let mut alarms = BTreeSet::new();
        for item in tree.scan_prefix([codec::ALARM_PREFIX]) {
            let (k, _) = item?;
            alarms.insert(codec::parse_alarm_key(&k)?);
        }

        let stored_rev = match tree.get(codec::META_REVISION)? {
            Some(v) => codec::decode_i64(&v)?,
            None => 1,
        };
        let compact_rev = match tree.get(codec::META_COMPACT)? {
            Some(v) => codec::decode_i64(&v)?,
            None => 0,
        };
        Ok(Self {
            index,
            leases,
            alarms,
            rev: stored_rev.max(max_main),
            compact_rev,
            size,
        })
    }

    pub fn nospace(&self) -> bool {
        let nospace = proto::etcdserverpb::AlarmType::Nospace as i32;
        self.alarms.iter().any(|&(_, a)| a == nospace)
    }

    /// Iterates the index entries of a key range in key order (or reversed).
    pub fn span_iter<'a>(
        &'a self,
        span: Span<'a>,
        reverse: bool,
    ) -> Box<dyn Iterator<Item = (&'a Vec<u8>, &'a KeyEntry)> + 'a> {
        match span {
            Span::Empty => Box::new(std::iter::empty()),
            Span::One(k) => Box::new(self.index.get_key_value(k).into_iter()),
            Span::From(_) | Span::Between(..) => {
                let it = self.index.range::<[u8], _>(span.bounds());
                if reverse {
                    Box::new(it.rev())
                } else {
                    Box::new(it)
                }
            }
        }
    }

    /// Keys of a range that are live now, in key order.
    pub fn live_keys(&self, span: Span<'_>) -> Vec<Vec<u8>> {
        self.span_iter(span, false)
            .filter(|(_, e)| e.live.is_some())
            .map(|(k, _)| k.clone())
            .collect()
    }
}

pub(crate) fn record_size(value_len: usize) -> u32 {
    u32::try_from(codec::RECORD_KEY_LEN + value_len).unwrap_or(u32::MAX)
}

/// A key range in etcd's terms.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Span<'a> {
    Empty,
    One(&'a [u8]),
    From(&'a [u8]),
    Between(&'a [u8], &'a [u8]),
}

impl<'a> Span<'a> {
    /// Empty `end` is the single key, `"\0"` every key >= `key`, otherwise `[key, end)`.
    pub fn new(key: &'a [u8], end: &'a [u8]) -> Self {
        if end.is_empty() {
            Span::One(key)
        } else if end == [0] {
            Span::From(key)
        } else if key < end {
            Span::Between(key, end)
        } else {
            Span::Empty
        }
    }

    fn bounds(self) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
        match self {
            Span::From(k) => (Bound::Included(k), Bound::Unbounded),
            Span::Between(k, e) => (Bound::Included(k), Bound::Excluded(e)),
            Span::One(k) => (Bound::Included(k), Bound::Included(k)),
            // An empty half-open range; BTreeMap accepts Included(x)..Excluded(x).
            Span::Empty => (Bound::Included(&[][..]), Bound::Excluded(&[][..])),
        }
    }
}

/// Records of the current apply call not yet in sled, by (main, sub).
pub(crate) type Pending = HashMap<(i64, u32), sled::IVec>;
