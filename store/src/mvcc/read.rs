//! Reads: loading records, Range with etcd's options, Txn compares and event history.

use std::cmp::Ordering;

use proto::etcdserverpb as pb;
use proto::mvccpb;

use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::range_request::{SortOrder, SortTarget};

use super::codec;
use super::index::{Pending, Span, State};
use super::overlay::{self, Overlay};
use super::{MvccError, RevisionEvents};

/// Where records are read from: sled, overlaid with applied writes not yet in sled, overlaid
/// with the records of an apply in progress.
pub(crate) struct Reader<'a> {
    pub tree: &'a sled::Tree,
    pub overlay: &'a Overlay,
    pub pending: Option<&'a Pending>,
}

impl Reader<'_> {
    pub fn load(&self, main: i64, sub: u32) -> Result<mvccpb::KeyValue, MvccError> {
        let missing = || MvccError::Corrupt(format!("missing record {main}.{sub}"));
        let raw = match self.pending.and_then(|p| p.get(&(main, sub))) {
            Some(v) => v.clone(),
            None => {
                let key = codec::record_key(main, sub);
                match self.overlay.get(&key) {
                    Some(v) => v.cloned().ok_or_else(missing)?,
                    None => self.tree.get(key)?.ok_or_else(missing)?,
                }
            }
        };
        Ok(codec::decode_record(&raw)?.1)
    }
}

/// Serves a Range. `current` is the newest committed revision (what `revision` is checked
/// against); `zero_rev` is what `revision == 0` reads at (inside a Txn: the Txn's own revision,
/// so earlier writes of the Txn are visible). The header carries `current`.
pub(crate) fn range(
    st: &State,
    rd: &Reader<'_>,
    req: &pb::RangeRequest,
    current: i64,
    zero_rev: i64,
) -> Result<pb::RangeResponse, MvccError> {
    if req.revision > current {
        return Err(MvccError::FutureRev);
    }
    let rev = if req.revision <= 0 {
        zero_rev
    } else {
        req.revision
    };
    if rev < st.compact_rev {
        return Err(MvccError::Compacted);
    }

    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let mut order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    if order == SortOrder::None && target != SortTarget::Key {
        order = SortOrder::Ascend;
    }
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    let limit = if req.limit > 0 {
        usize::try_from(req.limit).unwrap_or(usize::MAX)
    } else {
        usize::MAX
    };
    // Without filters and with key order, index order is the answer's order: load only what
    // the limit keeps (plus one to know about `more`).
    let key_ordered = target == SortTarget::Key && !filtered;
    let reverse = key_ordered && order == SortOrder::Descend;
    let wanted = if req.count_only {
        0
    } else if key_ordered {
        limit.saturating_add(1)
    } else {
        usize::MAX
    };

    let mut count: i64 = 0;
    let mut kvs = Vec::new();
    for (_, entry) in st.span_iter(Span::new(&req.key, &req.range_end), reverse) {
        let Some(r) = entry.visible_at(rev) else {
            continue;
        };
        count += 1;
        if kvs.len() < wanted {
            kvs.push(rd.load(r.main, r.sub)?);
        }
    }

    if filtered {
        let keep = |v: i64, min: i64, max: i64| (min == 0 || v >= min) && (max == 0 || v <= max);
        kvs.retain(|kv| {
            keep(kv.mod_revision, req.min_mod_revision, req.max_mod_revision)
                && keep(
                    kv.create_revision,
                    req.min_create_revision,
                    req.max_create_revision,
                )
        });
    }
    if !key_ordered && order != SortOrder::None {
        let by = |a: &mvccpb::KeyValue, b: &mvccpb::KeyValue| match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        if order == SortOrder::Descend {
            kvs.sort_by(|a, b| by(b, a));
        } else {
            kvs.sort_by(by);
        }
    }
    let more = kvs.len() > limit;
    kvs.truncate(limit);
    if req.keys_only {
        for kv in &mut kvs {
            kv.value = Vec::new();
        }
    }
    Ok(pb::RangeResponse {
        header: Some(pb::ResponseHeader {
            revision: current,
            ..Default::default()
        }),
        kvs,
        more,
        count,
    })
}

/// Evaluates one Txn compare against the state at `rev`, as etcd does: every key of the range
/// must satisfy it; with no key, the compare sees a zero key-value (a VALUE compare fails).
pub(crate) fn compare(
    st: &State,
    rd: &Reader<'_>,
    c: &pb::Compare,
    rev: i64,
) -> Result<bool, MvccError> {
    let (Ok(target), Ok(result)) = (
        CompareTarget::try_from(c.target),
        CompareResult::try_from(c.result),
    ) else {
        return Ok(false);
    };
    let holds = |ord: Ordering| match result {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    };
    let wanted_int = match (target, &c.target_union) {
        (CompareTarget::Version, Some(TargetUnion::Version(v)))
        | (CompareTarget::Create, Some(TargetUnion::CreateRevision(v)))
        | (CompareTarget::Mod, Some(TargetUnion::ModRevision(v)))
        | (CompareTarget::Lease, Some(TargetUnion::Lease(v))) => *v,
        _ => 0,
    };
    let wanted_value: &[u8] = match &c.target_union {
        Some(TargetUnion::Value(v)) => v,
        _ => &[],
    };

    let mut any = false;
    for (_, entry) in st.span_iter(Span::new(&c.key, &c.range_end), false) {
        let Some(r) = entry.visible_at(rev) else {
            continue;
        };
        any = true;
        let ord = match target {
            CompareTarget::Mod => r.main.cmp(&wanted_int),
            CompareTarget::Value => rd.load(r.main, r.sub)?.value.as_slice().cmp(wanted_value),
            CompareTarget::Version | CompareTarget::Create | CompareTarget::Lease => {
                let live = entry.live.filter(|_| entry.is_latest(&r));
                let (create, version, lease) = match live {
                    Some(l) => (l.create, l.version, l.lease),
                    None => {
                        let kv = rd.load(r.main, r.sub)?;
                        (kv.create_revision, kv.version, kv.lease)
                    }
                };
                match target {
                    CompareTarget::Version => version.cmp(&wanted_int),
                    CompareTarget::Create => create.cmp(&wanted_int),
                    _ => lease.cmp(&wanted_int),
                }
            }
        };
        if !holds(ord) {
            return Ok(false);
        }
    }
    if !any {
        if target == CompareTarget::Value {
            return Ok(false);
        }
        return Ok(holds(0.cmp(&wanted_int)));
    }
    Ok(true)
}

/// The events of every revision in `[from, to]` (both already clamped to what exists).
pub(crate) fn events(
    st: &State,
    rd: &Reader<'_>,
    from: i64,
    to: i64,
) -> Result<Vec<RevisionEvents>, MvccError> {
    let mut out: Vec<RevisionEvents> = Vec::new();
    if from > to {
        return Ok(out);
    }
    let start = codec::record_key(from, 0);
    let end = codec::record_key(to.saturating_add(1), 0);
    for item in overlay::range(rd.tree, rd.overlay, &start, &end) {
        let (k, v) = item?;
        let (main, sub) = codec::parse_record_key(&k)?;
        let (tombstone, kv) = codec::decode_record(&v)?;
        let prev = st
            .index
            .get(&kv.key)
            .and_then(|e| e.before(main, sub))
            .filter(|p| !p.tombstone);
        let prev_kv = match prev {
            Some(p) => Some(rd.load(p.main, p.sub)?),
            None => None,
        };
        let kind = if tombstone {
            mvccpb::event::EventType::Delete
        } else {
            mvccpb::event::EventType::Put
        };
        let event = mvccpb::Event {
            r#type: kind as i32,
            kv: Some(kv),
            prev_kv,
        };
        match out.last_mut() {
            Some(last) if last.revision == main => last.events.push(event),
            _ => out.push(RevisionEvents {
                revision: main,
                events: vec![event],
            }),
        }
    }
    Ok(out)
}
