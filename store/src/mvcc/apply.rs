//! Applying replicated requests: each one either commits all of its writes at one new revision
//! or is rolled back and answered with etcd's error.

use proto::etcdserverpb as pb;
use proto::mvccpb;
use proto::storepb::internal_raft_request::Request;
use proto::storepb::internal_raft_response::Response;
use proto::storepb::{InternalRaftBatchResponse, InternalRaftRequest, InternalRaftResponse};

use pb::request_op::Request as OpRequest;
use pb::response_op::Response as OpResponse;

use super::codec;
use super::index::{record_size, LeaseState, Live, Pending, Rev, Span, State};
use super::overlay::WriteBatch;
use super::read::{self, Reader};
use super::{MvccError, RevisionEvents};

/// A request MVCC rules reject: a gRPC status code and etcd's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reject {
    pub code: u32,
    pub message: &'static str,
}

pub(crate) const LEASE_NOT_FOUND: Reject = Reject {
    code: 5,
    message: "etcdserver: requested lease not found",
};
pub(crate) const LEASE_EXISTS: Reject = Reject {
    code: 9,
    message: "etcdserver: lease already exists",
};
pub(crate) const KEY_NOT_FOUND: Reject = Reject {
    code: 3,
    message: "etcdserver: key not found",
};
pub(crate) const LEASE_PROVIDED: Reject = Reject {
    code: 3,
    message: "etcdserver: lease is provided",
};
pub(crate) const VALUE_PROVIDED: Reject = Reject {
    code: 3,
    message: "etcdserver: value is provided",
};
pub(crate) const COMPACTED: Reject = Reject {
    code: 11,
    message: "etcdserver: mvcc: required revision has been compacted",
};
pub(crate) const FUTURE_REV: Reject = Reject {
    code: 11,
    message: "etcdserver: mvcc: required revision is a future revision",
};
pub(crate) const NO_SPACE: Reject = Reject {
    code: 8,
    message: "etcdserver: mvcc: database space exceeded",
};

pub(crate) enum ApplyError {
    Reject(Reject),
    Fatal(MvccError),
}

impl From<Reject> for ApplyError {
    fn from(r: Reject) -> Self {
        Self::Reject(r)
    }
}

impl From<MvccError> for ApplyError {
    fn from(e: MvccError) -> Self {
        match e {
            MvccError::Compacted => Self::Reject(COMPACTED),
            MvccError::FutureRev => Self::Reject(FUTURE_REV),
            other => Self::Fatal(other),
        }
    }
}

/// One record written by the request in progress.
struct Write {
    main: i64,
    sub: u32,
    tombstone: bool,
    /// Kept only when events are wanted.
    kv: Option<mvccpb::KeyValue>,
    prev: Option<mvccpb::KeyValue>,
}

/// How to take back one in-memory change of a rejected request.
enum Undo {
    Key {
        key: Vec<u8>,
        live: Option<Live>,
        created: bool,
    },
    LeaseAttached {
        lease: i64,
        key: Vec<u8>,
    },
    LeaseDetached {
        lease: i64,
        key: Vec<u8>,
    },
}

/// A modifying request in progress: it writes at `rev` (current + 1).
struct RequestCtx {
    rev: i64,
    next_sub: u32,
    writes: Vec<Write>,
    undo: Vec<Undo>,
    saved_size: u64,
}

/// Applies the requests of one `apply` call against the state, collecting one write batch.
pub(crate) struct Applier<'a> {
    pub st: &'a mut State,
    /// What was applied before this call (`pending` is ignored: the applier has its own).
    base: Reader<'a>,
    pub batch: WriteBatch,
    /// Records written by this call, readable before the batch reaches sled.
    pending: Pending,
    pub revisions: Vec<RevisionEvents>,
    want_events: bool,
    quota: u64,
}

impl<'a> Applier<'a> {
    pub fn new(st: &'a mut State, base: Reader<'a>, want_events: bool, quota: u64) -> Self {
        Self {
            st,
            base,
            batch: WriteBatch::default(),
            pending: Pending::default(),
            revisions: Vec::new(),
            want_events,
            quota,
        }
    }

    /// Applies one request; `Err` only for storage failures (the caller reloads the state).
    pub fn apply_request(
        &mut self,
        req: &InternalRaftRequest,
    ) -> Result<InternalRaftResponse, MvccError> {
        let out = match &req.request {
            None | Some(Request::MemberAttributes(_)) => return Ok(InternalRaftResponse::default()),
            Some(Request::Batch(b)) => {
                let mut responses = Vec::with_capacity(b.requests.len());
                for r in &b.requests {
                    responses.push(self.apply_request(r)?);
                }
                return Ok(InternalRaftResponse {
                    response: Some(Response::Batch(InternalRaftBatchResponse { responses })),
                    ..Default::default()
                });
            }
            Some(Request::Put(p)) => self.modify(true, |a, rq| a.put(rq, p)).map(Response::Put),
            Some(Request::DeleteRange(d)) => self
                .modify(false, |a, rq| a.delete_range(rq, d))
                .map(Response::DeleteRange),
            Some(Request::Txn(t)) => self
                .modify(txn_has_put(t), |a, rq| a.txn(rq, t))
                .map(Response::Txn),
            Some(Request::Compaction(c)) => self.compact(c).map(Response::Compaction),
            Some(Request::LeaseGrant(g)) => self.lease_grant(g).map(Response::LeaseGrant),
            Some(Request::LeaseRevoke(r)) => self.lease_revoke(r).map(Response::LeaseRevoke),
            Some(Request::Alarm(a)) => Ok(Response::Alarm(self.alarm(a))),
        };
        match out {
            Ok(mut resp) => {
                set_header(&mut resp, self.st.rev);
                Ok(InternalRaftResponse {
                    response: Some(resp),
                    ..Default::default()
                })
            }
            Err(ApplyError::Reject(r)) => Ok(InternalRaftResponse {
                response: None,
                error_code: r.code,
                error_message: r.message.to_owned(),
            }),
            Err(ApplyError::Fatal(e)) => Err(e),
        }
    }

    fn reader(&self) -> Reader<'_> {
        Reader {
            tree: self.base.tree,
            overlay: self.base.overlay,
            pending: Some(&self.pending),
        }
    }

    /// Runs a request that may write: all of its writes share one new revision; on error (or
    /// when a quota-checked request ends over quota) every in-memory change is taken back.
    fn modify<R>(
        &mut self,
        quota_checked: bool,
        f: impl FnOnce(&mut Self, &mut RequestCtx) -> Result<R, ApplyError>,
    ) -> Result<R, ApplyError> {
        if quota_checked && self.st.nospace() {
            return Err(NO_SPACE.into());
        }
        let mut rq = RequestCtx {
            rev: self.st.rev.saturating_add(1),
            next_sub: 0,
            writes: Vec::new(),
            undo: Vec::new(),
            saved_size: self.st.size,
        };
        match f(self, &mut rq) {
            Ok(_) if quota_checked && self.st.size > self.quota => {
                self.rollback(rq);
                self.raise_nospace();
                Err(NO_SPACE.into())
            }
            Ok(r) => {
                self.commit(rq);
                Ok(r)
            }
            Err(e) => {
                self.rollback(rq);
                Err(e)
            }
        }
    }

    fn commit(&mut self, rq: RequestCtx) {
        if rq.writes.is_empty() {
            return;
        }
        self.st.rev = rq.rev;
        let mut events = Vec::with_capacity(if self.want_events { rq.writes.len() } else { 0 });
        for w in rq.writes {
            if let Some(v) = self.pending.get(&(w.main, w.sub)) {
                self.batch
                    .insert(&codec::record_key(w.main, w.sub)[..], v.clone());
            }
            if self.want_events {
                let kind = if w.tombstone {
                    mvccpb::event::EventType::Delete
                } else {
                    mvccpb::event::EventType::Put
                };
                events.push(mvccpb::Event {
                    r#type: kind as i32,
                    kv: w.kv,
                    prev_kv: w.prev,
                });
            }
        }
        if self.want_events {
            self.revisions.push(RevisionEvents {
                revision: rq.rev,
                events,
            });
        }
    }

    fn rollback(&mut self, rq: RequestCtx) {
        for undo in rq.undo.into_iter().rev() {
            match undo {
                Undo::Key { key, live, created } => {
                    if created {
                        self.st.index.remove(&key);
                    } else if let Some(e) = self.st.index.get_mut(&key) {
                        e.revs.pop();
                        e.live = live;
                    }
                }
                Undo::LeaseAttached { lease, key } => {
                    if let Some(l) = self.st.leases.get_mut(&lease) {
                        l.keys.remove(&key);
                    }
                }
                Undo::LeaseDetached { lease, key } => {
                    if let Some(l) = self.st.leases.get_mut(&lease) {
                        l.keys.insert(key);
                    }
                }
            }
        }
        for w in rq.writes {
            self.pending.remove(&(w.main, w.sub));
        }
        self.st.size = rq.saved_size;
    }

    fn raise_nospace(&mut self) {
        let alarm = (0, pb::AlarmType::Nospace as i32);
        if self.st.alarms.insert(alarm) {
            self.batch
                .insert(&codec::alarm_key(alarm.0, alarm.1)[..], &[][..]);
        }
    }

    /// Writes a put (`Some((value, live))`) or a tombstone of `key` at the request's revision.
    fn write(
        &mut self,
        rq: &mut RequestCtx,
        key: &[u8],
        put: Option<(Vec<u8>, Live)>,
        prev: Option<mvccpb::KeyValue>,
    ) -> Result<(), ApplyError> {
        let main = rq.rev;
        let sub = rq.next_sub;
        rq.next_sub = sub
            .checked_add(1)
            .ok_or_else(|| MvccError::Corrupt("too many writes in one request".into()))?;
        let tombstone = put.is_none();
        let (kv, live) = match put {
            Some((value, live)) => (
                mvccpb::KeyValue {
                    key: key.to_vec(),
                    create_revision: live.create,
                    mod_revision: main,
                    version: live.version,
                    value,
                    lease: live.lease,
                },
                Some(live),
            ),
            None => (
                mvccpb::KeyValue {
                    key: key.to_vec(),
                    mod_revision: main,
                    ..Default::default()
                },
                None,
            ),
        };
        let bytes = codec::encode_record(&kv, tombstone);
        let size = record_size(bytes.len());
        self.pending.insert((main, sub), sled::IVec::from(bytes));

        let created = !self.st.index.contains_key(key);
        let entry = self.st.index.entry(key.to_vec()).or_default();
        let old_live = entry.live;
        entry.revs.push(Rev {
            main,
            sub,
            size,
            tombstone,
        });
        entry.live = live;
        rq.undo.push(Undo::Key {
            key: key.to_vec(),
            live: old_live,
            created,
        });
        self.st.size = self.st.size.saturating_add(u64::from(size));

        let old_lease = old_live.map_or(0, |l| l.lease);
        let new_lease = live.map_or(0, |l| l.lease);
        if old_lease != new_lease {
            if let Some(l) = self.st.leases.get_mut(&old_lease) {
                if l.keys.remove(key) {
                    rq.undo.push(Undo::LeaseDetached {
                        lease: old_lease,
                        key: key.to_vec(),
                    });
                }
            }
            if let Some(l) = self.st.leases.get_mut(&new_lease) {
                if l.keys.insert(key.to_vec()) {
                    rq.undo.push(Undo::LeaseAttached {
                        lease: new_lease,
                        key: key.to_vec(),
                    });
                }
            }
        }

        rq.writes.push(Write {
            main,
            sub,
            tombstone,
            kv: self.want_events.then_some(kv),
            prev,
        });
        Ok(())
    }

    /// Splits a loaded previous key-value between the response (if asked) and the event.
    fn split_prev(
        &self,
        prev: Option<mvccpb::KeyValue>,
        for_response: bool,
    ) -> (Option<mvccpb::KeyValue>, Option<mvccpb::KeyValue>) {
        match (for_response, self.want_events) {
            (true, true) => (prev.clone(), prev),
            (true, false) => (prev, None),
            (false, true) => (None, prev),
            (false, false) => (None, None),
        }
    }

    fn put(
        &mut self,
        rq: &mut RequestCtx,
        p: &pb::PutRequest,
    ) -> Result<pb::PutResponse, ApplyError> {
        if p.ignore_value && !p.value.is_empty() {
            return Err(VALUE_PROVIDED.into());
        }
        if p.ignore_lease && p.lease != 0 {
            return Err(LEASE_PROVIDED.into());
        }
        let cur: Option<(Rev, Live)> = self
            .st
            .index
            .get(&p.key)
            .and_then(|e| Some((*e.revs.last()?, e.live?)));
        if (p.ignore_value || p.ignore_lease) && cur.is_none() {
            return Err(KEY_NOT_FOUND.into());
        }
        let lease = match cur {
            Some((_, live)) if p.ignore_lease => live.lease,
            _ => p.lease,
        };
        if lease != 0 && !self.st.leases.contains_key(&lease) {
            return Err(LEASE_NOT_FOUND.into());
        }
        let prev = match cur {
            Some((r, _)) if p.prev_kv || p.ignore_value || self.want_events => {
                Some(self.reader().load(r.main, r.sub)?)
            }
            _ => None,
        };
        let value = if p.ignore_value {
            prev.as_ref().map(|kv| kv.value.clone()).unwrap_or_default()
        } else {
            p.value.clone()
        };
        let live = match cur {
            Some((_, l)) => Live {
                create: l.create,
                version: l.version.saturating_add(1),
                lease,
            },
            None => Live {
                create: rq.rev,
                version: 1,
                lease,
            },
        };
        let (resp_prev, event_prev) = self.split_prev(prev, p.prev_kv);
        self.write(rq, &p.key, Some((value, live)), event_prev)?;
        Ok(pb::PutResponse {
            header: None,
            prev_kv: resp_prev,
        })
    }

    fn delete_range(
        &mut self,
        rq: &mut RequestCtx,
        d: &pb::DeleteRangeRequest,
    ) -> Result<pb::DeleteRangeResponse, ApplyError> {
        let keys = self.st.live_keys(Span::new(&d.key, &d.range_end));
        let mut prev_kvs = Vec::new();
        for key in &keys {
            let (resp_prev, event_prev) = self.load_latest(key, d.prev_kv)?;
            prev_kvs.extend(resp_prev);
            self.write(rq, key, None, event_prev)?;
        }
        Ok(pb::DeleteRangeResponse {
            header: None,
            deleted: i64::try_from(keys.len()).unwrap_or(i64::MAX),
            prev_kvs,
        })
    }

    /// Loads a key's current value if the response or the event needs it.
    fn load_latest(
        &self,
        key: &[u8],
        for_response: bool,
    ) -> Result<(Option<mvccpb::KeyValue>, Option<mvccpb::KeyValue>), ApplyError> {
        if !for_response && !self.want_events {
            return Ok((None, None));
        }
        let latest = self.st.index.get(key).and_then(|e| e.revs.last().copied());
        let prev = match latest {
            Some(r) if !r.tombstone => Some(self.reader().load(r.main, r.sub)?),
            _ => None,
        };
        Ok(self.split_prev(prev, for_response))
    }

    fn txn(
        &mut self,
        rq: &mut RequestCtx,
        t: &pb::TxnRequest,
    ) -> Result<pb::TxnResponse, ApplyError> {
        // Compares (of nested Txns too) see the state before this Txn, as in etcd.
        let base = rq.rev - 1;
        let mut succeeded = true;
        for c in &t.compare {
            if !read::compare(self.st, &self.reader(), c, base)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded { &t.success } else { &t.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                None => None,
                Some(OpRequest::RequestRange(r)) => Some(OpResponse::ResponseRange(read::range(
                    self.st,
                    &self.reader(),
                    r,
                    base,
                    rq.rev,
                )?)),
                Some(OpRequest::RequestPut(p)) => Some(OpResponse::ResponsePut(self.put(rq, p)?)),
                Some(OpRequest::RequestDeleteRange(d)) => {
                    Some(OpResponse::ResponseDeleteRange(self.delete_range(rq, d)?))
                }
                Some(OpRequest::RequestTxn(t)) => Some(OpResponse::ResponseTxn(self.txn(rq, t)?)),
            };
            responses.push(pb::ResponseOp { response });
        }
        Ok(pb::TxnResponse {
            header: None,
            succeeded,
            responses,
        })
    }

    fn compact(&mut self, c: &pb::CompactionRequest) -> Result<pb::CompactionResponse, ApplyError> {
        if c.revision > self.st.rev {
            return Err(FUTURE_REV.into());
        }
        if c.revision <= self.st.compact_rev {
            return Err(COMPACTED.into());
        }
        let at = c.revision;
        let mut freed: u64 = 0;
        let mut emptied = Vec::new();
        for (key, e) in self.st.index.iter_mut() {
            let below = e.revs.partition_point(|r| r.main < at);
            if below == 0 {
                continue;
            }
            let at_or_below = e.revs.partition_point(|r| r.main <= at);
            // Records at `at` itself stay; of those below it only the newest survives, and
            // only if it is a put (a range at `at` still sees it).
            let drop = if at_or_below > below || e.revs[below - 1].tombstone {
                below
            } else {
                below - 1
            };
            if drop == 0 {
                continue;
            }
            for r in e.revs.drain(..drop) {
                self.batch.remove(&codec::record_key(r.main, r.sub)[..]);
                self.pending.remove(&(r.main, r.sub));
                freed += u64::from(r.size);
            }
            if e.revs.is_empty() {
                emptied.push(key.clone());
            }
        }
        for key in emptied {
            self.st.index.remove(&key);
        }
        self.st.size = self.st.size.saturating_sub(freed);
        self.st.compact_rev = at;
        self.batch
            .insert(codec::META_COMPACT, &at.to_be_bytes()[..]);
        Ok(pb::CompactionResponse { header: None })
    }

    fn lease_grant(
        &mut self,
        g: &pb::LeaseGrantRequest,
    ) -> Result<pb::LeaseGrantResponse, ApplyError> {
        if self.st.nospace() {
            return Err(NO_SPACE.into());
        }
        if g.id == 0 {
            return Err(LEASE_NOT_FOUND.into());
        }
        if self.st.leases.contains_key(&g.id) {
            return Err(LEASE_EXISTS.into());
        }
        if self.st.size.saturating_add(codec::LEASE_SIZE) > self.quota {
            self.raise_nospace();
            return Err(NO_SPACE.into());
        }
        self.st.leases.insert(
            g.id,
            LeaseState {
                ttl: g.ttl,
                keys: Default::default(),
            },
        );
        self.batch
            .insert(&codec::lease_key(g.id)[..], &g.ttl.to_be_bytes()[..]);
        self.st.size += codec::LEASE_SIZE;
        Ok(pb::LeaseGrantResponse {
            header: None,
            id: g.id,
            ttl: g.ttl,
            error: String::new(),
        })
    }

    fn lease_revoke(
        &mut self,
        r: &pb::LeaseRevokeRequest,
    ) -> Result<pb::LeaseRevokeResponse, ApplyError> {
        let Some(lease) = self.st.leases.get(&r.id) else {
            return Err(LEASE_NOT_FOUND.into());
        };
        let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
        self.modify(false, |a, rq| {
            for key in &keys {
                let live = a.st.index.get(key).is_some_and(|e| e.live.is_some());
                if live {
                    let (_, event_prev) = a.load_latest(key, false)?;
                    a.write(rq, key, None, event_prev)?;
                }
            }
            Ok(())
        })?;
        self.st.leases.remove(&r.id);
        self.batch.remove(&codec::lease_key(r.id)[..]);
        self.st.size = self.st.size.saturating_sub(codec::LEASE_SIZE);
        Ok(pb::LeaseRevokeResponse { header: None })
    }

    fn alarm(&mut self, a: &pb::AlarmRequest) -> pb::AlarmResponse {
        use pb::alarm_request::AlarmAction;
        let member = pb::AlarmMember {
            member_id: a.member_id,
            alarm: a.alarm,
        };
        let key = (a.member_id, a.alarm);
        let alarms = match AlarmAction::try_from(a.action).unwrap_or(AlarmAction::Get) {
            AlarmAction::Get => alarm_members(self.st),
            AlarmAction::Activate if a.alarm == pb::AlarmType::None as i32 => Vec::new(),
            AlarmAction::Activate => {
                if self.st.alarms.insert(key) {
                    self.batch
                        .insert(&codec::alarm_key(key.0, key.1)[..], &[][..]);
                }
                vec![member]
            }
            AlarmAction::Deactivate => {
                if self.st.alarms.remove(&key) {
                    self.batch.remove(&codec::alarm_key(key.0, key.1)[..]);
                    vec![member]
                } else {
                    Vec::new()
                }
            }
        };
        pb::AlarmResponse {
            header: None,
            alarms,
        }
    }
}

pub(crate) fn alarm_members(st: &State) -> Vec<pb::AlarmMember> {
    st.alarms
        .iter()
        .map(|&(member_id, alarm)| pb::AlarmMember { member_id, alarm })
        .collect()
}

/// Whether a Txn could put (in any branch, at any depth): such Txns are quota-checked.
fn txn_has_put(t: &pb::TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(OpRequest::RequestPut(_)) => true,
            Some(OpRequest::RequestTxn(inner)) => txn_has_put(inner),
            _ => false,
        })
}

fn header(rev: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        revision: rev,
        ..Default::default()
    })
}

fn set_txn_headers(t: &mut pb::TxnResponse, rev: i64) {
    t.header = header(rev);
    for op in &mut t.responses {
        match &mut op.response {
            Some(OpResponse::ResponseRange(r)) => r.header = header(rev),
            Some(OpResponse::ResponsePut(r)) => r.header = header(rev),
            Some(OpResponse::ResponseDeleteRange(r)) => r.header = header(rev),
            Some(OpResponse::ResponseTxn(r)) => set_txn_headers(r, rev),
            None => {}
        }
    }
}

/// Every response header carries the revision after the request.
fn set_header(resp: &mut Response, rev: i64) {
    match resp {
        Response::Put(r) => r.header = header(rev),
        Response::DeleteRange(r) => r.header = header(rev),
        Response::Txn(r) => set_txn_headers(r, rev),
        Response::Compaction(r) => r.header = header(rev),
        Response::LeaseGrant(r) => r.header = header(rev),
        Response::LeaseRevoke(r) => r.header = header(rev),
        Response::Alarm(r) => r.header = header(rev),
        Response::MemberAttributes(h) => *h = header(rev).unwrap_or_default(),
        // Each response of a batch got its own header when it was applied.
        Response::Batch(_) => {}
    }
}
