//! Tests of the MVCC engine: etcd 3.4 semantics, atomicity, persistence and history.

use proto::etcdserverpb as pb;
use proto::mvccpb;
use proto::storepb::internal_raft_request::Request;
use proto::storepb::internal_raft_response::Response;
use proto::storepb::{InternalRaftRequest, InternalRaftResponse};

use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::range_request::{SortOrder, SortTarget};
use pb::request_op::Request as OpRequest;
use pb::response_op::Response as OpResponse;

use super::{ApplyEntry, Mvcc, MvccError, Notification, Options};

fn temp_db() -> sled::Db {
    sled::Config::new()
        .temporary(true)
        .open()
        .expect("temporary sled db")
}

fn open() -> Mvcc {
    Mvcc::open(&temp_db(), Options::default()).expect("open mvcc")
}

fn apply_all(m: &Mvcc, reqs: Vec<Request>) -> Vec<InternalRaftResponse> {
    let reqs: Vec<InternalRaftRequest> = reqs
        .into_iter()
        .map(|r| InternalRaftRequest { request: Some(r) })
        .collect();
    let entries: Vec<ApplyEntry<'_>> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| ApplyEntry {
            index: i as u64 + 1,
            request: Some(r),
        })
        .collect();
    m.apply(&entries, b"meta").expect("apply")
}

fn apply(m: &Mvcc, req: Request) -> InternalRaftResponse {
    apply_all(m, vec![req]).remove(0)
}

fn put_req(k: &str, v: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    }
}

fn put(m: &Mvcc, k: &str, v: &str) -> pb::PutResponse {
    match apply(m, Request::Put(put_req(k, v))).response {
        Some(Response::Put(p)) => p,
        other => panic!("put {k}: {other:?}"),
    }
}

fn del(m: &Mvcc, k: &str, end: &str) -> pb::DeleteRangeResponse {
    let req = pb::DeleteRangeRequest {
        key: k.into(),
        range_end: end.into(),
        prev_kv: true,
    };
    match apply(m, Request::DeleteRange(req)).response {
        Some(Response::DeleteRange(d)) => d,
        other => panic!("delete {k}: {other:?}"),
    }
}

fn txn(m: &Mvcc, t: pb::TxnRequest) -> pb::TxnResponse {
    match apply(m, Request::Txn(t)).response {
        Some(Response::Txn(t)) => t,
        other => panic!("txn: {other:?}"),
    }
}

fn get(m: &Mvcc, k: &str) -> Option<mvccpb::KeyValue> {
    get_at(m, k, 0)
}

fn get_at(m: &Mvcc, k: &str, rev: i64) -> Option<mvccpb::KeyValue> {
    let req = pb::RangeRequest {
        key: k.into(),
        revision: rev,
        ..Default::default()
    };
    m.range(&req).expect("range").kvs.pop()
}

fn all(m: &Mvcc) -> pb::RangeResponse {
    m.range(&pb::RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    })
    .expect("range all")
}

fn keys(kvs: &[mvccpb::KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn header_rev(resp: &InternalRaftResponse) -> i64 {
    let h = match &resp.response {
        Some(Response::Put(r)) => r.header,
        Some(Response::DeleteRange(r)) => r.header,
        Some(Response::Txn(r)) => r.header,
        Some(Response::Compaction(r)) => r.header,
        Some(Response::LeaseGrant(r)) => r.header,
        Some(Response::LeaseRevoke(r)) => r.header,
        Some(Response::Alarm(r)) => r.header,
        other => panic!("no header in {other:?}"),
    };
    h.expect("header").revision
}

fn op_put(k: &str, v: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(OpRequest::RequestPut(put_req(k, v))),
    }
}

fn op_get(k: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(OpRequest::RequestRange(pb::RangeRequest {
            key: k.into(),
            ..Default::default()
        })),
    }
}

fn op_del(k: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(OpRequest::RequestDeleteRange(pb::DeleteRangeRequest {
            key: k.into(),
            ..Default::default()
        })),
    }
}

fn cmp(k: &str, target: CompareTarget, result: CompareResult, tu: TargetUnion) -> pb::Compare {
    pb::Compare {
        result: result as i32,
        target: target as i32,
        key: k.into(),
        range_end: Vec::new(),
        target_union: Some(tu),
    }
}

fn compact(m: &Mvcc, rev: i64) -> InternalRaftResponse {
    apply(
        m,
        Request::Compaction(pb::CompactionRequest {
            revision: rev,
            physical: false,
        }),
    )
}

fn grant(m: &Mvcc, id: i64, ttl: i64) -> InternalRaftResponse {
    apply(m, Request::LeaseGrant(pb::LeaseGrantRequest { ttl, id }))
}

/// Records in sled once everything applied is written back.
fn record_count(m: &Mvcc) -> usize {
    m.inner.backend.write_back().expect("write back");
    m.inner.backend.tree.scan_prefix(b"r").count()
}

/// Everything observable about the state, for "nothing changed" checks.
fn fingerprint(m: &Mvcc) -> (i64, i64, Vec<mvccpb::KeyValue>, u32, u64, usize) {
    (
        m.revision(),
        m.compact_revision(),
        all(m).kvs,
        m.hash_kv(0).expect("hash").0,
        m.db_size_in_use(),
        m.leases().len(),
    )
}

#[test]
fn empty_store_is_at_revision_one_and_first_put_gets_two() {
    let m = open();
    assert_eq!(m.revision(), 1);
    assert_eq!(m.compact_revision(), 0);
    assert_eq!(all(&m).header.expect("header").revision, 1);
    let resp = put(&m, "a", "1");
    assert_eq!(resp.header.expect("header").revision, 2);
    assert_eq!(m.revision(), 2);
}

#[test]
fn put_tracks_create_and_mod_revision_and_version() {
    let m = open();
    put(&m, "a", "1");
    put(&m, "b", "x");
    put(&m, "a", "2");
    let resp = put(&m, "a", "2");
    assert!(resp.prev_kv.is_none(), "prev_kv only when asked");
    let kv = get(&m, "a").expect("a exists");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version, kv.value),
        (2, 5, 3, b"2".to_vec())
    );
    let prev = apply(
        &m,
        Request::Put(pb::PutRequest {
            prev_kv: true,
            ..put_req("a", "3")
        }),
    );
    match prev.response {
        Some(Response::Put(p)) => assert_eq!(p.prev_kv.expect("prev").value, b"2"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn range_honours_every_option_as_etcd() {
    let m = open();
    // rev 2..6: a b c d e; then c and a again (versions 2), e thrice.
    for (k, v) in [("a", "5"), ("b", "4"), ("c", "3"), ("d", "2"), ("e", "1")] {
        put(&m, k, v);
    }
    put(&m, "c", "33"); // 7
    put(&m, "a", "55"); // 8
    put(&m, "e", "11"); // 9
    put(&m, "e", "111"); // 10
    put(&m, "zz", "z"); // 11

    struct Case {
        name: &'static str,
        req: pb::RangeRequest,
        keys: &'static [&'static str],
        count: i64,
        more: bool,
    }
    let base = |k: &str, end: &str| pb::RangeRequest {
        key: k.into(),
        range_end: end.into(),
        ..Default::default()
    };
    let cases = [
        Case {
            name: "single key",
            req: base("b", ""),
            keys: &["b"],
            count: 1,
            more: false,
        },
        Case {
            name: "missing key",
            req: base("nope", ""),
            keys: &[],
            count: 0,
            more: false,
        },
        Case {
            name: "half-open range",
            req: base("b", "e"),
            keys: &["b", "c", "d"],
            count: 3,
            more: false,
        },
        Case {
            name: "range_end \\0 is every key from key",
            req: base("d", "\0"),
            keys: &["d", "e", "zz"],
            count: 3,
            more: false,
        },
        Case {
            name: "key \\0 range_end \\0 is everything",
            req: base("\0", "\0"),
            keys: &["a", "b", "c", "d", "e", "zz"],
            count: 6,
            more: false,
        },
        Case {
            name: "range_end before key is empty",
            req: base("d", "b"),
            keys: &[],
            count: 0,
            more: false,
        },
        Case {
            name: "limit cuts and reports more; count is before the limit",
            req: pb::RangeRequest {
                limit: 2,
                ..base("a", "f")
            },
            keys: &["a", "b"],
            count: 5,
            more: true,
        },
        Case {
            name: "limit equal to the result has no more",
            req: pb::RangeRequest {
                limit: 5,
                ..base("a", "f")
            },
            keys: &["a", "b", "c", "d", "e"],
            count: 5,
            more: false,
        },
        Case {
            name: "negative and huge limits mean no limit",
            req: pb::RangeRequest {
                limit: i64::MAX,
                ..base("a", "f")
            },
            keys: &["a", "b", "c", "d", "e"],
            count: 5,
            more: false,
        },
        Case {
            name: "descending by key with limit",
            req: pb::RangeRequest {
                limit: 2,
                sort_order: SortOrder::Descend as i32,
                ..base("a", "f")
            },
            keys: &["e", "d"],
            count: 5,
            more: true,
        },
        Case {
            name: "order NONE with target VALUE sorts ascending by value",
            req: pb::RangeRequest {
                sort_target: SortTarget::Value as i32,
                ..base("a", "f")
            },
            keys: &["e", "d", "c", "b", "a"],
            count: 5,
            more: false,
        },
        Case {
            name: "descending by version, ties in key order",
            req: pb::RangeRequest {
                sort_order: SortOrder::Descend as i32,
                sort_target: SortTarget::Version as i32,
                ..base("a", "f")
            },
            keys: &["e", "a", "c", "b", "d"],
            count: 5,
            more: false,
        },
        Case {
            name: "ascending by create revision with limit",
            req: pb::RangeRequest {
                sort_order: SortOrder::Ascend as i32,
                sort_target: SortTarget::Create as i32,
                limit: 3,
                ..base("a", "\0")
            },
            keys: &["a", "b", "c"],
            count: 6,
            more: true,
        },
        Case {
            name: "descending by mod revision",
            req: pb::RangeRequest {
                sort_order: SortOrder::Descend as i32,
                sort_target: SortTarget::Mod as i32,
                ..base("a", "f")
            },
            keys: &["e", "a", "c", "d", "b"],
            count: 5,
            more: false,
        },
        Case {
            name: "min and max mod revision filter after counting",
            req: pb::RangeRequest {
                min_mod_revision: 4,
                max_mod_revision: 8,
                ..base("a", "f")
            },
            keys: &["a", "c", "d"],
            count: 5,
            more: false,
        },
        Case {
            name: "min and max create revision filter",
            req: pb::RangeRequest {
                min_create_revision: 3,
                max_create_revision: 4,
                ..base("\0", "\0")
            },
            keys: &["b", "c"],
            count: 6,
            more: false,
        },
        Case {
            name: "filter with limit reports more",
            req: pb::RangeRequest {
                min_create_revision: 3,
                limit: 1,
                ..base("\0", "\0")
            },
            keys: &["b"],
            count: 6,
            more: true,
        },
        Case {
            name: "count_only returns no kvs",
            req: pb::RangeRequest {
                count_only: true,
                limit: 1,
                ..base("a", "f")
            },
            keys: &[],
            count: 5,
            more: false,
        },
    ];
    for case in cases {
        let resp = m.range(&case.req).expect(case.name);
        assert_eq!(keys(&resp.kvs), case.keys, "{}", case.name);
        assert_eq!(resp.count, case.count, "{}", case.name);
        assert_eq!(resp.more, case.more, "{}", case.name);
        assert_eq!(resp.header.expect("header").revision, 11, "{}", case.name);
    }

    let keys_only = m
        .range(&pb::RangeRequest {
            keys_only: true,
            ..base("a", "c")
        })
        .expect("keys_only");
    assert_eq!(keys(&keys_only.kvs), ["a", "b"]);
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty()));
    assert!(keys_only.kvs.iter().all(|kv| kv.mod_revision > 0));
}

#[test]
fn range_at_a_past_revision_sees_the_state_then_with_current_header() {
    let m = open();
    put(&m, "a", "1"); // 2
    put(&m, "a", "2"); // 3
    put(&m, "b", "1"); // 4
    del(&m, "a", ""); // 5
    assert_eq!(get_at(&m, "a", 2).expect("a@2").value, b"1");
    assert_eq!(get_at(&m, "a", 3).expect("a@3").value, b"2");
    assert!(get_at(&m, "a", 5).is_none());
    assert!(get_at(&m, "b", 3).is_none());
    let resp = m
        .range(&pb::RangeRequest {
            key: "a".into(),
            range_end: "c".into(),
            revision: 4,
            ..Default::default()
        })
        .expect("range at 4");
    assert_eq!(keys(&resp.kvs), ["a", "b"]);
    assert_eq!(resp.header.expect("header").revision, 5);
    let future = m.range(&pb::RangeRequest {
        key: "a".into(),
        revision: 6,
        ..Default::default()
    });
    assert!(matches!(future, Err(MvccError::FutureRev)));
    // Negative revisions read the current state, as etcd.
    let neg = m.range(&pb::RangeRequest {
        key: "b".into(),
        revision: i64::MIN,
        ..Default::default()
    });
    assert_eq!(neg.expect("negative revision").kvs.len(), 1);
}

#[test]
fn delete_writes_a_tombstone_and_recreate_starts_a_new_generation() {
    let m = open();
    put(&m, "k", "1"); // 2
    put(&m, "k", "2"); // 3
    let d = del(&m, "k", "");
    assert_eq!(d.deleted, 1);
    assert_eq!(d.prev_kvs[0].value, b"2");
    assert_eq!(d.header.expect("header").revision, 4);
    assert!(get(&m, "k").is_none());
    put(&m, "k", "3"); // 5
    let kv = get(&m, "k").expect("recreated");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));

    let evs = m.events(4, 4).expect("events");
    let ev = &evs[0].events[0];
    assert_eq!(ev.r#type, mvccpb::event::EventType::Delete as i32);
    assert_eq!(
        ev.kv.clone().expect("kv"),
        mvccpb::KeyValue {
            key: "k".into(),
            mod_revision: 4,
            ..Default::default()
        }
    );
    assert_eq!(ev.prev_kv.clone().expect("prev").value, b"2");
}

#[test]
fn delete_range_counts_deleted_keys_and_matching_nothing_keeps_the_revision() {
    let m = open();
    for k in ["a", "b", "c", "d"] {
        put(&m, k, k);
    }
    let d = del(&m, "b", "d");
    assert_eq!(d.deleted, 2);
    assert_eq!(keys(&d.prev_kvs), ["b", "c"]);
    assert_eq!(m.revision(), 6);
    assert_eq!(keys(&all(&m).kvs), ["a", "d"]);
    let none = del(&m, "x", "z");
    assert_eq!(none.deleted, 0);
    assert_eq!(m.revision(), 6);
    assert_eq!(none.header.expect("header").revision, 6);
    // All four sub-revisions of one delete are one revision.
    let d = del(&m, "\0", "\0");
    assert_eq!(d.deleted, 2);
    assert_eq!(m.revision(), 7);
}

#[test]
fn txn_compares_every_target_and_result() {
    let m = open();
    put(&m, "k", "v"); // 2
    put(&m, "k", "v2"); // 3: create 2, mod 3, version 2
    grant(&m, 7, 60);
    apply(
        &m,
        Request::Put(pb::PutRequest {
            lease: 7,
            ..put_req("l", "x")
        }),
    ); // 4
    use CompareResult::{Equal, Greater, Less, NotEqual};
    use CompareTarget::{Create, Lease, Mod, Value, Version};
    let cases: Vec<(&str, pb::Compare, bool)> = vec![
        (
            "version equal",
            cmp("k", Version, Equal, TargetUnion::Version(2)),
            true,
        ),
        (
            "version greater",
            cmp("k", Version, Greater, TargetUnion::Version(1)),
            true,
        ),
        (
            "version less fails",
            cmp("k", Version, Less, TargetUnion::Version(2)),
            false,
        ),
        (
            "version not equal",
            cmp("k", Version, NotEqual, TargetUnion::Version(3)),
            true,
        ),
        (
            "create equal",
            cmp("k", Create, Equal, TargetUnion::CreateRevision(2)),
            true,
        ),
        (
            "create less",
            cmp("k", Create, Less, TargetUnion::CreateRevision(3)),
            true,
        ),
        (
            "mod equal",
            cmp("k", Mod, Equal, TargetUnion::ModRevision(3)),
            true,
        ),
        (
            "mod greater fails",
            cmp("k", Mod, Greater, TargetUnion::ModRevision(3)),
            false,
        ),
        (
            "value equal",
            cmp("k", Value, Equal, TargetUnion::Value("v2".into())),
            true,
        ),
        (
            "value less",
            cmp("k", Value, Less, TargetUnion::Value("w".into())),
            true,
        ),
        (
            "value not equal",
            cmp("k", Value, NotEqual, TargetUnion::Value("v".into())),
            true,
        ),
        (
            "lease equal",
            cmp("l", Lease, Equal, TargetUnion::Lease(7)),
            true,
        ),
        (
            "no lease is 0",
            cmp("k", Lease, Equal, TargetUnion::Lease(0)),
            true,
        ),
        (
            "missing key has version 0",
            cmp("nope", Version, Equal, TargetUnion::Version(0)),
            true,
        ),
        (
            "missing key has mod 0",
            cmp("nope", Mod, Less, TargetUnion::ModRevision(1)),
            true,
        ),
        (
            "missing key has create 0",
            cmp("nope", Create, Equal, TargetUnion::CreateRevision(0)),
            true,
        ),
        (
            "value of a missing key is false",
            cmp("nope", Value, Equal, TargetUnion::Value(vec![])),
            false,
        ),
        (
            "value of a missing key is false even for !=",
            cmp("nope", Value, NotEqual, TargetUnion::Value("x".into())),
            false,
        ),
        (
            "mismatched union compares to 0",
            cmp("k", Version, Greater, TargetUnion::ModRevision(99)),
            true,
        ),
        (
            "range compare: every key must hold",
            pb::Compare {
                range_end: "m".into(),
                ..cmp("k", Mod, Greater, TargetUnion::ModRevision(2))
            },
            true,
        ),
        (
            "range compare: one key failing fails",
            pb::Compare {
                range_end: "m".into(),
                ..cmp("k", Version, Equal, TargetUnion::Version(2))
            },
            false,
        ),
        (
            "range compare with no key compares zero",
            pb::Compare {
                range_end: "y".into(),
                ..cmp("x", Version, Equal, TargetUnion::Version(0))
            },
            true,
        ),
        (
            "unknown result is false",
            pb::Compare {
                result: 42,
                ..cmp("k", Version, Equal, TargetUnion::Version(2))
            },
            false,
        ),
    ];
    for (name, c, want) in cases {
        let before = m.revision();
        let t = txn(
            &m,
            pb::TxnRequest {
                compare: vec![c],
                success: vec![op_get("k")],
                failure: vec![op_get("l")],
            },
        );
        assert_eq!(t.succeeded, want, "{name}");
        let OpResponse::ResponseRange(r) = t.responses[0].response.clone().expect(name) else {
            panic!("{name}: not a range");
        };
        assert_eq!(keys(&r.kvs), [if want { "k" } else { "l" }], "{name}");
        assert_eq!(
            m.revision(),
            before,
            "{name}: a read-only txn keeps the revision"
        );
    }
}

#[test]
fn txn_is_one_revision_and_its_reads_see_earlier_writes() {
    let m = open();
    put(&m, "a", "0"); // 2
    let t = txn(
        &m,
        pb::TxnRequest {
            compare: vec![cmp(
                "a",
                CompareTarget::Value,
                CompareResult::Equal,
                TargetUnion::Value("0".into()),
            )],
            success: vec![
                op_put("a", "1"),
                op_get("a"),
                op_put("b", "1"),
                op_del("a"),
                op_get("a"),
                pb::RequestOp {
                    request: Some(OpRequest::RequestTxn(pb::TxnRequest {
                        // Nested compares see the state before the outer Txn (a = "0").
                        compare: vec![cmp(
                            "a",
                            CompareTarget::Value,
                            CompareResult::Equal,
                            TargetUnion::Value("0".into()),
                        )],
                        success: vec![op_put("c", "nested"), op_get("b")],
                        failure: vec![],
                    })),
                },
            ],
            failure: vec![],
        },
    );
    assert!(t.succeeded);
    assert_eq!(t.header.expect("header").revision, 3);
    assert_eq!(m.revision(), 3);
    let range_at = |i: usize| match t.responses[i].response.clone() {
        Some(OpResponse::ResponseRange(r)) => r,
        other => panic!("op {i}: {other:?}"),
    };
    let seen = range_at(1).kvs;
    assert_eq!(seen[0].value, b"1");
    assert_eq!((seen[0].mod_revision, seen[0].version), (3, 2));
    assert!(
        range_at(4).kvs.is_empty(),
        "delete earlier in the txn is visible"
    );
    match t.responses[5].response.clone() {
        Some(OpResponse::ResponseTxn(inner)) => {
            assert!(inner.succeeded);
            assert_eq!(inner.header.expect("header").revision, 3);
            match inner.responses[1].response.clone() {
                Some(OpResponse::ResponseRange(r)) => assert_eq!(keys(&r.kvs), ["b"]),
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    let evs = m.events(3, 3).expect("events");
    assert_eq!(evs.len(), 1);
    let kinds: Vec<(String, i32)> = evs[0]
        .events
        .iter()
        .map(|e| {
            let kv = e.kv.clone().expect("kv");
            (String::from_utf8_lossy(&kv.key).into_owned(), e.r#type)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("a".to_string(), 0),
            ("b".to_string(), 0),
            ("a".to_string(), 1),
            ("c".to_string(), 0)
        ]
    );
    assert!(get(&m, "a").is_none());
    assert_eq!(keys(&all(&m).kvs), ["b", "c"]);
    // The same key twice in one txn: the last write wins, version counts both.
    txn(
        &m,
        pb::TxnRequest {
            success: vec![op_put("d", "1"), op_put("d", "2")],
            ..Default::default()
        },
    );
    let d = get(&m, "d").expect("d");
    assert_eq!(
        (d.value.as_slice(), d.version, d.mod_revision),
        (&b"2"[..], 2, 4)
    );
}

#[test]
fn rejected_requests_answer_etcd_errors_and_change_nothing() {
    let m = open();
    put(&m, "a", "1"); // 2
    grant(&m, 1, 10);
    put(&m, "b", "1"); // 3
    compact(&m, 2);
    let big_txn_with_late_failure = pb::TxnRequest {
        success: vec![
            op_put("x", "1"),
            op_del("a"),
            pb::RequestOp {
                request: Some(OpRequest::RequestPut(pb::PutRequest {
                    lease: 99,
                    ..put_req("y", "1")
                })),
            },
        ],
        ..Default::default()
    };
    let cases: Vec<(&str, Request, u32, &str)> = vec![
        (
            "put with unknown lease",
            Request::Put(pb::PutRequest {
                lease: 5,
                ..put_req("a", "2")
            }),
            5,
            "etcdserver: requested lease not found",
        ),
        (
            "ignore_value on a missing key",
            Request::Put(pb::PutRequest {
                ignore_value: true,
                ..put_req("zz", "")
            }),
            3,
            "etcdserver: key not found",
        ),
        (
            "ignore_lease on a missing key",
            Request::Put(pb::PutRequest {
                ignore_lease: true,
                ..put_req("zz", "v")
            }),
            3,
            "etcdserver: key not found",
        ),
        (
            "ignore_lease with a lease",
            Request::Put(pb::PutRequest {
                ignore_lease: true,
                lease: 1,
                ..put_req("a", "v")
            }),
            3,
            "etcdserver: lease is provided",
        ),
        (
            "ignore_value with a value",
            Request::Put(pb::PutRequest {
                ignore_value: true,
                ..put_req("a", "v")
            }),
            3,
            "etcdserver: value is provided",
        ),
        (
            "txn failing after earlier writes",
            Request::Txn(big_txn_with_late_failure),
            5,
            "etcdserver: requested lease not found",
        ),
        (
            "txn reading a future revision",
            Request::Txn(pb::TxnRequest {
                success: vec![
                    op_put("x", "1"),
                    pb::RequestOp {
                        request: Some(OpRequest::RequestRange(pb::RangeRequest {
                            key: "a".into(),
                            revision: 4,
                            ..Default::default()
                        })),
                    },
                ],
                ..Default::default()
            }),
            11,
            "etcdserver: mvcc: required revision is a future revision",
        ),
        (
            "txn reading a compacted revision",
            Request::Txn(pb::TxnRequest {
                success: vec![pb::RequestOp {
                    request: Some(OpRequest::RequestRange(pb::RangeRequest {
                        key: "a".into(),
                        revision: 1,
                        ..Default::default()
                    })),
                }],
                ..Default::default()
            }),
            11,
            "etcdserver: mvcc: required revision has been compacted",
        ),
        (
            "granting an existing lease",
            Request::LeaseGrant(pb::LeaseGrantRequest { ttl: 5, id: 1 }),
            9,
            "etcdserver: lease already exists",
        ),
        (
            "revoking an unknown lease",
            Request::LeaseRevoke(pb::LeaseRevokeRequest { id: 2 }),
            5,
            "etcdserver: requested lease not found",
        ),
        (
            "compacting a future revision",
            Request::Compaction(pb::CompactionRequest {
                revision: 4,
                physical: true,
            }),
            11,
            "etcdserver: mvcc: required revision is a future revision",
        ),
        (
            "compacting at the compact revision",
            Request::Compaction(pb::CompactionRequest {
                revision: 2,
                physical: true,
            }),
            11,
            "etcdserver: mvcc: required revision has been compacted",
        ),
        (
            "compacting a negative revision",
            Request::Compaction(pb::CompactionRequest {
                revision: i64::MIN,
                physical: true,
            }),
            11,
            "etcdserver: mvcc: required revision has been compacted",
        ),
    ];
    for (name, req, code, message) in cases {
        let before = fingerprint(&m);
        let resp = apply(&m, req);
        assert_eq!(resp.error_code, code, "{name}");
        assert_eq!(resp.error_message, message, "{name}");
        assert!(resp.response.is_none(), "{name}");
        assert_eq!(fingerprint(&m), before, "{name}: state changed");
        assert!(m.lease(1).expect("lease 1").keys.is_empty(), "{name}");
    }
    // The store still works normally afterwards.
    assert_eq!(put(&m, "x", "1").header.expect("header").revision, 4);
    assert_eq!(get(&m, "x").expect("x").create_revision, 4);
}

#[test]
fn put_ignore_value_and_ignore_lease_keep_what_the_key_has() {
    let m = open();
    grant(&m, 3, 30);
    grant(&m, 4, 30);
    apply(
        &m,
        Request::Put(pb::PutRequest {
            lease: 3,
            ..put_req("k", "v")
        }),
    );
    apply(
        &m,
        Request::Put(pb::PutRequest {
            ignore_lease: true,
            ..put_req("k", "w")
        }),
    );
    let kv = get(&m, "k").expect("k");
    assert_eq!((kv.value.as_slice(), kv.lease), (&b"w"[..], 3));
    apply(
        &m,
        Request::Put(pb::PutRequest {
            ignore_value: true,
            lease: 4,
            ..put_req("k", "")
        }),
    );
    let kv = get(&m, "k").expect("k");
    assert_eq!(
        (kv.value.as_slice(), kv.lease, kv.version),
        (&b"w"[..], 4, 3)
    );
    assert!(
        m.lease(3).expect("lease 3").keys.is_empty(),
        "moved to lease 4"
    );
    assert_eq!(m.lease(4).expect("lease 4").keys, [b"k".to_vec()]);
    put(&m, "k", "plain");
    assert!(
        m.lease(4).expect("lease 4").keys.is_empty(),
        "a put without lease detaches"
    );
}

#[test]
fn compaction_keeps_what_ranges_at_or_after_it_see_and_frees_the_rest() {
    let m = open();
    put(&m, "a", "1"); // 2
    put(&m, "a", "2"); // 3
    put(&m, "b", "1"); // 4
    del(&m, "b", ""); // 5 tombstone of b
    put(&m, "c", "1"); // 6
    del(&m, "c", ""); // 7 tombstone of c
    put(&m, "a", "3"); // 8
    put(&m, "d", "1"); // 9
    let views = |m: &Mvcc| -> Vec<Vec<mvccpb::KeyValue>> {
        (7..=9)
            .map(|rev| {
                m.range(&pb::RangeRequest {
                    key: vec![0],
                    range_end: vec![0],
                    revision: rev,
                    ..Default::default()
                })
                .expect("range")
                .kvs
            })
            .collect()
    };
    let before = views(&m);
    let hash_after = m.hash_kv(0).expect("hash").0;
    assert_eq!(record_count(&m), 8);
    let size_before = m.db_size_in_use();

    let resp = compact(&m, 7);
    assert_eq!(resp.error_code, 0, "{resp:?}");
    assert_eq!(header_rev(&resp), 9, "compaction keeps the revision");
    assert_eq!(m.revision(), 9);
    assert_eq!(m.compact_revision(), 7);
    assert_eq!(views(&m), before);
    // Kept: a@3 (latest <= 7), c's tombstone at 7, a@8, d@9. Dropped: a@2, b@4, b@5, c@6.
    assert_eq!(record_count(&m), 4);
    assert!(m.db_size_in_use() < size_before);
    assert_ne!(m.hash_kv(0).expect("hash").0, hash_after);

    assert!(matches!(get_at_result(&m, 6), Err(MvccError::Compacted)));
    assert!(
        get_at_result(&m, 7).is_ok(),
        "the compact revision itself is readable"
    );
    assert!(matches!(m.events(6, 9), Err(MvccError::Compacted)));
    // History from the compact revision itself is whole: every record at 7 was kept.
    let from_compact = m.events(7, 9).expect("events from the compact revision");
    assert_eq!(
        from_compact.iter().map(|r| r.revision).collect::<Vec<_>>(),
        vec![7, 8, 9]
    );
    let evs = m.events(8, 9).expect("events after compaction");
    assert_eq!(
        evs[0].events[0].prev_kv.clone().expect("prev kept").value,
        b"2"
    );
    assert_eq!(compact(&m, 7).error_code, 11);
    assert_eq!(compact(&m, 10).error_code, 11);
    assert_eq!(compact(&m, 9).error_code, 0);
    assert_eq!(keys(&all(&m).kvs), ["a", "d"]);
    assert_eq!(record_count(&m), 2);
}

fn get_at_result(m: &Mvcc, rev: i64) -> Result<pb::RangeResponse, MvccError> {
    m.range(&pb::RangeRequest {
        key: "a".into(),
        revision: rev,
        ..Default::default()
    })
}

#[tokio::test]
async fn events_and_subscribers_see_each_revision_with_prev_kv() {
    let m = open();
    let mut rx = m.subscribe();
    put(&m, "a", "1"); // 2
    apply_all(
        &m,
        vec![
            Request::Put(put_req("a", "2")), // 3
            Request::DeleteRange(pb::DeleteRangeRequest {
                key: "a".into(),
                ..Default::default()
            }), // 4
            Request::DeleteRange(pb::DeleteRangeRequest {
                key: "nothing".into(),
                ..Default::default()
            }),
        ],
    );
    let Notification::Events(first) = rx.recv().await.expect("first batch") else {
        panic!("expected events");
    };
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].revision, 2);
    assert!(first[0].events[0].prev_kv.is_none());
    let Notification::Events(second) = rx.recv().await.expect("second batch") else {
        panic!("expected events");
    };
    let revs: Vec<i64> = second.iter().map(|r| r.revision).collect();
    assert_eq!(revs, [3, 4]);
    assert_eq!(
        second[0].events[0].prev_kv.clone().expect("prev").value,
        b"1"
    );
    assert_eq!(
        second[1].events[0].prev_kv.clone().expect("prev").value,
        b"2"
    );

    let history = m.events(1, 100).expect("history");
    assert_eq!(history.len(), 3);
    for (from_history, notified) in history.iter().zip(first.iter().chain(second.iter())) {
        assert_eq!(from_history.revision, notified.revision);
        assert_eq!(from_history.events, notified.events);
    }
    assert!(m.events(5, 100).expect("nothing yet").is_empty());
    assert!(m.events(i64::MIN, i64::MAX).is_ok());
}

#[test]
fn lease_revoke_deletes_attached_keys_in_one_revision() {
    let m = open();
    assert_eq!(grant(&m, 9, 100).error_code, 0);
    assert_eq!(m.revision(), 1, "grant does not bump the revision");
    for k in ["x", "y", "z"] {
        apply(
            &m,
            Request::Put(pb::PutRequest {
                lease: 9,
                ..put_req(k, "v")
            }),
        );
    }
    put(&m, "free", "v");
    let info = m.lease(9).expect("lease");
    assert_eq!((info.ttl, info.keys.len()), (100, 3));
    assert_eq!(m.leases(), vec![info.clone()]);
    assert_eq!(m.lease_ttl(info.id), Some(info.ttl));
    assert_eq!(m.lease_ttls(), vec![(info.id, info.ttl)]);
    let resp = apply(&m, Request::LeaseRevoke(pb::LeaseRevokeRequest { id: 9 }));
    assert_eq!(resp.error_code, 0);
    assert_eq!(header_rev(&resp), 6);
    assert_eq!(m.revision(), 6);
    assert_eq!(keys(&all(&m).kvs), ["free"]);
    assert_eq!(m.events(6, 6).expect("events")[0].events.len(), 3);
    assert!(m.lease(9).is_none());
    assert!(m.leases().is_empty());
    // Revoking a lease without keys changes no revision.
    grant(&m, 10, 5);
    apply(&m, Request::LeaseRevoke(pb::LeaseRevokeRequest { id: 10 }));
    assert_eq!(m.revision(), 6);
    // Deleting a key detaches it.
    grant(&m, 11, 5);
    apply(
        &m,
        Request::Put(pb::PutRequest {
            lease: 11,
            ..put_req("t", "v")
        }),
    );
    del(&m, "t", "");
    assert!(m.lease(11).expect("lease 11").keys.is_empty());
    assert_eq!(grant(&m, 0, 5).error_code, 5, "lease id 0 is never granted");
}

#[test]
fn quota_raises_nospace_and_blocks_puts_until_deactivated() {
    let db = temp_db();
    let m = Mvcc::open(
        &db,
        Options {
            quota_backend_bytes: 300,
        },
    )
    .expect("open");
    let mut i = 0;
    let failed = loop {
        let resp = apply(&m, Request::Put(put_req(&format!("k{i}"), "0123456789")));
        if resp.error_code != 0 {
            break resp;
        }
        i += 1;
        assert!(i < 100, "quota never hit");
    };
    assert_eq!(failed.error_code, 8);
    assert_eq!(
        failed.error_message,
        "etcdserver: mvcc: database space exceeded"
    );
    assert!(m.db_size_in_use() <= 300);
    let nospace = pb::AlarmMember {
        member_id: 0,
        alarm: pb::AlarmType::Nospace as i32,
    };
    assert_eq!(m.alarms(), vec![nospace]);

    let rev = m.revision();
    let tiny = apply(&m, Request::Put(put_req("t", "")));
    assert_eq!(tiny.error_code, 8, "blocked while the alarm is active");
    assert_eq!(grant(&m, 1, 5).error_code, 8);
    let txn_put = apply(
        &m,
        Request::Txn(pb::TxnRequest {
            failure: vec![op_put("t", "")],
            ..Default::default()
        }),
    );
    assert_eq!(txn_put.error_code, 8);
    assert_eq!(m.revision(), rev);
    let read_txn = apply(
        &m,
        Request::Txn(pb::TxnRequest {
            success: vec![op_get("k0")],
            ..Default::default()
        }),
    );
    assert_eq!(read_txn.error_code, 0);
    assert!(del(&m, "k", "l").deleted > 1, "deletes still work");
    assert_eq!(
        compact(&m, m.revision()).error_code,
        0,
        "compaction still works"
    );

    let get_alarms = apply(&m, Request::Alarm(pb::AlarmRequest::default()));
    match get_alarms.response {
        Some(Response::Alarm(a)) => assert_eq!(a.alarms, vec![nospace]),
        other => panic!("{other:?}"),
    }
    let deactivate = apply(
        &m,
        Request::Alarm(pb::AlarmRequest {
            action: pb::alarm_request::AlarmAction::Deactivate as i32,
            member_id: 0,
            alarm: pb::AlarmType::Nospace as i32,
        }),
    );
    assert_eq!(deactivate.error_code, 0);
    assert!(m.alarms().is_empty());
    assert_eq!(apply(&m, Request::Put(put_req("t", ""))).error_code, 0);
}

#[test]
fn alarms_activate_and_deactivate_per_member() {
    let m = open();
    let corrupt = pb::AlarmRequest {
        action: pb::alarm_request::AlarmAction::Activate as i32,
        member_id: 42,
        alarm: pb::AlarmType::Corrupt as i32,
    };
    match apply(&m, Request::Alarm(corrupt)).response {
        Some(Response::Alarm(a)) => assert_eq!(a.alarms.len(), 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(m.alarms()[0].member_id, 42);
    assert_eq!(
        put(&m, "a", "1").header.expect("header").revision,
        2,
        "CORRUPT does not block puts here"
    );
    let off = pb::AlarmRequest {
        action: pb::alarm_request::AlarmAction::Deactivate as i32,
        ..corrupt
    };
    apply(&m, Request::Alarm(off));
    assert!(m.alarms().is_empty());
}

#[test]
fn reopening_from_disk_rebuilds_the_same_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshot_of = |m: &Mvcc| {
        (
            fingerprint(m),
            m.leases(),
            m.alarms(),
            m.meta().expect("meta"),
            m.events(m.compact_revision() + 1, m.revision())
                .expect("events")
                .len(),
        )
    };
    let before = {
        let db = sled::open(dir.path()).expect("db");
        let m = Mvcc::open(&db, Options::default()).expect("open");
        assert_eq!(m.meta().expect("meta"), None);
        grant(&m, 5, 50);
        apply(
            &m,
            Request::Put(pb::PutRequest {
                lease: 5,
                ..put_req("l", "1")
            }),
        );
        for i in 0..20 {
            put(&m, &format!("k{}", i % 7), &i.to_string());
        }
        del(&m, "k3", "");
        compact(&m, 10);
        apply(
            &m,
            Request::Alarm(pb::AlarmRequest {
                action: pb::alarm_request::AlarmAction::Activate as i32,
                member_id: 1,
                alarm: pb::AlarmType::Corrupt as i32,
            }),
        );
        m.flush().expect("flush");
        snapshot_of(&m)
    };
    let db = sled::open(dir.path()).expect("reopen db");
    let m = Mvcc::open(&db, Options::default()).expect("reopen");
    assert_eq!(snapshot_of(&m), before);
    assert_eq!(m.meta().expect("meta").as_deref(), Some(&b"meta"[..]));
    assert_eq!(m.revision(), 23);
    assert_eq!(m.lease(5).expect("lease").keys, [b"l".to_vec()]);
    assert_eq!(put(&m, "new", "1").header.expect("header").revision, 24);
}

#[tokio::test]
async fn snapshot_restored_on_a_fresh_store_is_identical() {
    let src = open();
    grant(&src, 5, 50);
    apply(
        &src,
        Request::Put(pb::PutRequest {
            lease: 5,
            ..put_req("l", "1")
        }),
    );
    for i in 0..30 {
        put(&src, &format!("k{}", i % 4), &i.to_string());
    }
    del(&src, "k1", "");
    compact(&src, 8);
    let blob = src.snapshot().expect("snapshot");

    let dst = open();
    put(&dst, "stale", "gone after restore");
    let mut rx = dst.subscribe();
    dst.restore(&blob).expect("restore");
    assert!(matches!(rx.recv().await, Ok(Notification::Reset)));
    assert_eq!(fingerprint(&dst), fingerprint(&src));
    assert_eq!(
        dst.hash_kv(20).expect("hash"),
        src.hash_kv(20).expect("hash")
    );
    assert_eq!(dst.leases(), src.leases());
    assert_eq!(dst.meta().expect("meta"), src.meta().expect("meta"));
    assert_eq!(
        dst.events(9, 100).expect("events").len(),
        src.events(9, 100).expect("events").len()
    );
    // Both continue identically.
    put(&src, "next", "1");
    put(&dst, "next", "1");
    assert_eq!(dst.hash_kv(0).expect("hash"), src.hash_kv(0).expect("hash"));

    let mut corrupt = blob.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    assert!(dst.restore(&corrupt).is_err());
    assert!(dst.restore(b"garbage").is_err());
    assert_eq!(
        fingerprint(&dst),
        fingerprint(&src),
        "a bad blob changes nothing"
    );
}

#[test]
fn hash_kv_depends_only_on_history() {
    let a = open();
    let b = open();
    for m in [&a, &b] {
        put(m, "x", "1");
        put(m, "y", "2");
    }
    assert_eq!(a.hash_kv(0).expect("hash"), b.hash_kv(0).expect("hash"));
    let at2 = a.hash_kv(2).expect("hash at 2");
    put(&a, "z", "3");
    assert_eq!(a.hash_kv(2).expect("hash at 2"), at2);
    assert_ne!(a.hash_kv(0).expect("hash").0, b.hash_kv(0).expect("hash").0);
    assert!(matches!(a.hash_kv(100), Err(MvccError::FutureRev)));
}

#[test]
fn one_apply_call_is_one_batch_with_responses_in_order_and_meta() {
    let m = open();
    let put_a = InternalRaftRequest {
        request: Some(Request::Put(put_req("a", "1"))),
    };
    let bad = InternalRaftRequest {
        request: Some(Request::Put(pb::PutRequest {
            lease: 1,
            ..put_req("b", "1")
        })),
    };
    let member = InternalRaftRequest {
        request: Some(Request::MemberAttributes(Default::default())),
    };
    let entries = [
        ApplyEntry {
            index: 1,
            request: None,
        },
        ApplyEntry {
            index: 2,
            request: Some(&put_a),
        },
        ApplyEntry {
            index: 3,
            request: Some(&bad),
        },
        ApplyEntry {
            index: 4,
            request: Some(&member),
        },
        ApplyEntry {
            index: 5,
            request: Some(&put_a),
        },
    ];
    let out = m.apply(&entries, b"log-5").expect("apply");
    assert_eq!(out.len(), 5);
    assert_eq!(out[0], InternalRaftResponse::default());
    assert_eq!(header_rev(&out[1]), 2);
    assert_eq!(out[2].error_code, 5);
    assert_eq!(out[3], InternalRaftResponse::default());
    assert_eq!(header_rev(&out[4]), 3);
    assert_eq!(m.meta().expect("meta").as_deref(), Some(&b"log-5"[..]));
    assert_eq!(get(&m, "a").expect("a").version, 2);
    m.apply(&[], b"log-6").expect("empty apply");
    assert_eq!(m.meta().expect("meta").as_deref(), Some(&b"log-6"[..]));
}

#[test]
fn hostile_inputs_never_panic() {
    let m = open();
    put(&m, "", "empty key");
    put(&m, "\0", "nul");
    put(&m, "\u{ff}", "high");
    let extremes = [i64::MIN, -1, 0, 1, i64::MAX];
    for &n in &extremes {
        for (key, end) in [
            ("", ""),
            ("", "\0"),
            ("\0", "\0"),
            ("\u{ff}", "\0"),
            ("b", "a"),
            ("a", "a"),
        ] {
            let req = pb::RangeRequest {
                key: key.into(),
                range_end: end.into(),
                limit: n,
                revision: if n > 0 { 0 } else { n },
                sort_order: n.clamp(-5, 5) as i32,
                sort_target: n.clamp(-9, 9) as i32,
                min_mod_revision: n,
                max_create_revision: n,
                ..Default::default()
            };
            let _ = m.range(&req).expect("range");
            let _ = m.range(&pb::RangeRequest {
                revision: n,
                ..req.clone()
            });
            let _ = apply(
                &m,
                Request::DeleteRange(pb::DeleteRangeRequest {
                    key: "zz".into(),
                    range_end: end.into(),
                    prev_kv: true,
                }),
            );
        }
        let _ = m.events(n, n);
        let _ = m.events(n, -n.saturating_neg());
        let _ = m.hash_kv(n);
        let _ = compact(&m, n);
        let _ = grant(&m, n, n);
        let _ = apply(&m, Request::LeaseRevoke(pb::LeaseRevokeRequest { id: n }));
        let _ = apply(
            &m,
            Request::Alarm(pb::AlarmRequest {
                action: n.clamp(-3, 3) as i32,
                member_id: n as u64,
                alarm: n.clamp(-3, 3) as i32,
            }),
        );
        let _ = apply(
            &m,
            Request::Txn(pb::TxnRequest {
                compare: vec![pb::Compare {
                    result: n.clamp(-9, 9) as i32,
                    target: n.clamp(-9, 9) as i32,
                    key: vec![],
                    range_end: vec![0],
                    target_union: None,
                }],
                success: vec![pb::RequestOp { request: None }],
                failure: vec![op_get("")],
            }),
        );
    }
    let _ = apply(&m, Request::Txn(pb::TxnRequest::default()));
    assert!(m.revision() >= 4);
}

#[test]
fn a_batch_applies_each_request_as_its_own_entry_and_rejects_only_the_bad_one() {
    let m = open();
    let batch = proto::storepb::InternalRaftBatch {
        requests: vec![
            InternalRaftRequest {
                request: Some(Request::Put(put_req("a", "1"))),
            },
            InternalRaftRequest {
                request: Some(Request::Put(pb::PutRequest {
                    lease: 99,
                    ..put_req("b", "x")
                })),
            },
            InternalRaftRequest {
                request: Some(Request::Put(put_req("a", "2"))),
            },
        ],
    };
    let resp = apply(&m, Request::Batch(batch));
    let Some(Response::Batch(b)) = resp.response else {
        panic!("not a batch response: {resp:?}")
    };
    assert_eq!(b.responses.len(), 3);
    assert_eq!(header_rev(&b.responses[0]), 2);
    assert_eq!(
        b.responses[1].error_code, 5,
        "unknown lease is rejected alone"
    );
    assert_eq!(header_rev(&b.responses[2]), 3);
    assert_eq!(m.revision(), 3);
    assert_eq!(get(&m, "a").expect("a").version, 2);
    assert!(get(&m, "b").is_none());
    let events = m.events(2, 3).expect("history");
    assert_eq!(
        events.iter().map(|r| r.revision).collect::<Vec<_>>(),
        vec![2, 3]
    );
}
