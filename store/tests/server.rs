//! The gRPC server in-process on loopback: etcd semantics through a real tonic client.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use component_base::shutdown::Shutdown;
use proto::etcdserverpb::{
    self as pb, compare::CompareResult, compare::CompareTarget, compare::TargetUnion,
    kv_client::KvClient, lease_client::LeaseClient, maintenance_client::MaintenanceClient,
    request_op::Request as ReqOp, watch_client::WatchClient, watch_request::RequestUnion,
};
use store::server::{self, Config};
use tonic::transport::Channel;

struct Member {
    shutdown: Shutdown,
    channel: Channel,
    _dir: tempfile::TempDir,
    running: Option<tokio::task::JoinHandle<()>>,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A single member in `dir` on a free client port, with fast elections for tests.
fn config(dir: &std::path::Path, peer_port: u16) -> Config {
    let mut cfg = Config::single(dir.to_path_buf(), 0, peer_port);
    cfg.heartbeat_interval = Duration::from_millis(50);
    cfg.election_timeout = Duration::from_millis(500);
    cfg
}

async fn start_with(tweak: impl FnOnce(&mut Config)) -> Member {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), free_port());
    tweak(&mut cfg);
    let shutdown = Shutdown::new();
    let running = server::start(cfg, shutdown.clone()).await.unwrap();
    let addr = running.client_addrs[0];
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let handle = tokio::spawn(running.wait());
    let m = Member {
        shutdown,
        channel,
        _dir: dir,
        running: Some(handle),
    };
    // Wait for the single member to elect itself.
    let mut maint = MaintenanceClient::new(m.channel.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = maint
            .status(pb::StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if s.leader != 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    m
}

async fn start() -> Member {
    start_with(|_| {}).await
}

impl Member {
    fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel.clone())
    }
    /// Opens a watch stream with one create request; the sender stays open for more requests.
    async fn watch(
        &self,
        create: pb::WatchCreateRequest,
    ) -> (
        tokio::sync::mpsc::Sender<pb::WatchRequest>,
        tonic::Streaming<pb::WatchResponse>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let req = pb::WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        };
        tx.send(req).await.unwrap();
        let stream = WatchClient::new(self.channel.clone())
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        (tx, stream)
    }

    async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(h) = self.running.take() {
            tokio::time::timeout(Duration::from_secs(15), h)
                .await
                .unwrap()
                .unwrap();
        }
    }
}

/// Puts and returns the revision it got.
async fn put_rev(kv: &mut KvClient<Channel>, k: &str, v: &str) -> i64 {
    kv.put(put(k, v))
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision
}

fn put(k: &str, v: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn put_get_delete_round_trip_with_revisions() {
    let m = start().await;
    let mut kv = m.kv();
    let r1 = kv.put(put("a", "1")).await.unwrap().into_inner();
    let rev1 = r1.header.unwrap().revision;
    assert!(rev1 >= 2);
    let r2 = kv
        .put(pb::PutRequest {
            prev_kv: true,
            ..put("a", "2")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r2.prev_kv.unwrap().value, b"1");
    let got = kv
        .range(pb::RangeRequest {
            key: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.kvs.len(), 1);
    assert_eq!(got.kvs[0].value, b"2");
    assert_eq!(got.kvs[0].version, 2);
    assert_eq!(got.kvs[0].create_revision, rev1);
    let old = kv
        .range(pb::RangeRequest {
            key: "a".into(),
            revision: rev1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(old.kvs[0].value, b"1");
    let del = kv
        .delete_range(pb::DeleteRangeRequest {
            key: "a".into(),
            prev_kv: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(del.deleted, 1);
    let future = kv
        .range(pb::RangeRequest {
            key: "a".into(),
            revision: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(future.code(), tonic::Code::OutOfRange);
    assert!(future.message().contains("future revision"));
    m.stop().await;
}

#[tokio::test]
async fn bad_requests_get_etcd_errors() {
    let m = start().await;
    let mut kv = m.kv();
    let e = kv.put(put("", "x")).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: key is not provided"
        )
    );
    let big = pb::PutRequest {
        key: "big".into(),
        value: vec![0u8; 1536 * 1024 + 10],
        ..Default::default()
    };
    let e = kv.put(big).await.unwrap_err();
    assert_eq!(e.message(), "etcdserver: request is too large");
    let txn = pb::TxnRequest {
        success: (0..129)
            .map(|i| pb::RequestOp {
                request: Some(ReqOp::RequestPut(put(&format!("k{i}"), "v"))),
            })
            .collect(),
        ..Default::default()
    };
    let e = kv.txn(txn).await.unwrap_err();
    assert_eq!(
        e.message(),
        "etcdserver: too many operations in txn request"
    );
    let e = kv
        .put(pb::PutRequest {
            lease: 12345,
            ..put("l", "v")
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            tonic::Code::NotFound,
            "etcdserver: requested lease not found"
        )
    );
    m.stop().await;
}

#[tokio::test]
async fn txn_compare_and_swap_on_mod_revision() {
    let m = start().await;
    let mut kv = m.kv();
    let rev = put_rev(&mut kv, "cas", "0").await;
    let swap = |expect: i64, v: &str| pb::TxnRequest {
        compare: vec![pb::Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Mod as i32,
            key: "cas".into(),
            target_union: Some(TargetUnion::ModRevision(expect)),
            ..Default::default()
        }],
        success: vec![pb::RequestOp {
            request: Some(ReqOp::RequestPut(put("cas", v))),
        }],
        failure: vec![pb::RequestOp {
            request: Some(ReqOp::RequestRange(pb::RangeRequest {
                key: "cas".into(),
                ..Default::default()
            })),
        }],
    };
    let ok = kv.txn(swap(rev, "1")).await.unwrap().into_inner();
    assert!(ok.succeeded);
    let stale = kv.txn(swap(rev, "2")).await.unwrap().into_inner();
    assert!(!stale.succeeded);
    match &stale.responses[0].response {
        Some(pb::response_op::Response::ResponseRange(r)) => assert_eq!(r.kvs[0].value, b"1"),
        other => panic!("unexpected {other:?}"),
    }
    m.stop().await;
}

#[tokio::test]
async fn watch_sees_history_then_live_events_in_order_with_prev_kv() {
    let m = start().await;
    let mut kv = m.kv();
    let first = put_rev(&mut kv, "/w/a", "1").await;
    kv.put(put("/w/a", "2")).await.unwrap();
    let (tx, mut stream) = m
        .watch(pb::WatchCreateRequest {
            key: "/w/".into(),
            range_end: "/w0".into(),
            start_revision: first,
            prev_kv: true,
            ..Default::default()
        })
        .await;
    let created = stream.message().await.unwrap().unwrap();
    assert!(created.created);
    kv.delete_range(pb::DeleteRangeRequest {
        key: "/w/a".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut events = Vec::new();
    while events.len() < 3 {
        let resp = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        events.extend(resp.events);
    }
    let revs: Vec<i64> = events
        .iter()
        .map(|e| e.kv.as_ref().unwrap().mod_revision)
        .collect();
    assert_eq!(revs, vec![first, first + 1, first + 2]);
    assert_eq!(events[1].prev_kv.as_ref().unwrap().value, b"1");
    assert_eq!(events[2].r#type, 1, "third event is the delete");
    assert_eq!(events[2].prev_kv.as_ref().unwrap().value, b"2");
    // A progress request answers with a revision covering everything delivered.
    tx.send(pb::WatchRequest {
        request_union: Some(RequestUnion::ProgressRequest(pb::WatchProgressRequest {})),
    })
    .await
    .unwrap();
    let progress = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(progress.watch_id, -1);
    assert!(progress.events.is_empty());
    assert_eq!(progress.header.unwrap().revision, first + 2);
    m.stop().await;
}

#[tokio::test]
async fn watch_from_a_compacted_revision_is_cancelled_with_the_compact_revision() {
    let m = start().await;
    let mut kv = m.kv();
    let first = put_rev(&mut kv, "c", "1").await;
    let last = put_rev(&mut kv, "c", "2").await;
    kv.put(put("c", "3")).await.unwrap();
    kv.compact(pb::CompactionRequest {
        revision: last,
        physical: true,
    })
    .await
    .unwrap();
    let (_tx, mut stream) = m
        .watch(pb::WatchCreateRequest {
            key: "c".into(),
            start_revision: first,
            ..Default::default()
        })
        .await;
    let mut got = None;
    for _ in 0..3 {
        let r = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if r.canceled {
            got = Some(r);
            break;
        }
    }
    let r = got.expect("watch cancelled");
    assert_eq!(r.compact_revision, last);
    // A watch from exactly the compact revision is served from there on, as by etcd.
    let (_tx2, mut from_compact) = m
        .watch(pb::WatchCreateRequest {
            key: "c".into(),
            start_revision: last,
            ..Default::default()
        })
        .await;
    let mut values = Vec::new();
    while values.len() < 2 {
        let r = tokio::time::timeout(Duration::from_secs(5), from_compact.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(
            !r.canceled,
            "a watch from the compact revision was cancelled"
        );
        values.extend(r.events.into_iter().map(|e| e.kv.unwrap().value));
    }
    assert_eq!(values, vec![b"2".to_vec(), b"3".to_vec()]);
    let e = kv
        .range(pb::RangeRequest {
            key: "c".into(),
            revision: first,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("compacted"));
    m.stop().await;
}

#[tokio::test]
async fn revoking_a_lease_deletes_its_keys_and_expiry_does_too() {
    let m = start().await;
    let mut kv = m.kv();
    let mut lease = LeaseClient::new(m.channel.clone());
    let g = lease
        .lease_grant(pb::LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(g.id > 0);
    kv.put(pb::PutRequest {
        lease: g.id,
        ..put("l1", "v")
    })
    .await
    .unwrap();
    kv.put(pb::PutRequest {
        lease: g.id,
        ..put("l2", "v")
    })
    .await
    .unwrap();
    let ttl = lease
        .lease_time_to_live(pb::LeaseTimeToLiveRequest {
            id: g.id,
            keys: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ttl.granted_ttl, 60);
    assert_eq!(ttl.keys.len(), 2);
    let before = kv
        .range(pb::RangeRequest {
            key: "l1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    lease
        .lease_revoke(pb::LeaseRevokeRequest { id: g.id })
        .await
        .unwrap();
    let after = kv
        .range(pb::RangeRequest {
            key: "l".into(),
            range_end: "m".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(after.kvs.is_empty());
    assert_eq!(
        after.header.unwrap().revision,
        before.header.unwrap().revision + 1,
        "one revision for both deletes"
    );

    // A short lease expires on its own (min TTL is 1.5 election timeouts, here 1 s).
    let g = lease
        .lease_grant(pb::LeaseGrantRequest { ttl: 1, id: 0 })
        .await
        .unwrap()
        .into_inner();
    kv.put(pb::PutRequest {
        lease: g.id,
        ..put("short", "v")
    })
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = kv
            .range(pb::RangeRequest {
                key: "short".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if r.kvs.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lease did not expire"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone = lease
        .lease_time_to_live(pb::LeaseTimeToLiveRequest {
            id: g.id,
            keys: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gone.ttl, -1);
    m.stop().await;
}

#[tokio::test]
async fn quota_raises_nospace_until_the_alarm_is_disarmed() {
    let m = start_with(|c| c.quota_backend_bytes = 64 * 1024).await;
    let mut kv = m.kv();
    let mut err = None;
    for i in 0..200 {
        match kv
            .put(pb::PutRequest {
                key: format!("q{i}").into(),
                value: vec![7u8; 4096],
                ..Default::default()
            })
            .await
        {
            Ok(_) => {}
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let e = err.expect("quota hit");
    assert_eq!(
        (e.code(), e.message()),
        (
            tonic::Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded"
        )
    );
    let mut maint = MaintenanceClient::new(m.channel.clone());
    let alarms = maint
        .alarm(pb::AlarmRequest {
            action: 0,
            member_id: 0,
            alarm: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(alarms
        .alarms
        .iter()
        .any(|a| a.alarm == pb::AlarmType::Nospace as i32));
    // Deletes still work under the alarm.
    kv.delete_range(pb::DeleteRangeRequest {
        key: "q".into(),
        range_end: "r".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    m.stop().await;
}

#[tokio::test]
async fn restart_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let peer = free_port();
    let mut last_rev = 0;
    for round in 0..3 {
        let cfg = config(dir.path(), peer);
        let shutdown = Shutdown::new();
        let running = server::start(cfg, shutdown.clone()).await.unwrap();
        let ch = Channel::from_shared(format!("http://{}", running.client_addrs[0]))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut kv = KvClient::new(ch);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let rev = loop {
            match kv.put(put(&format!("r{round}"), "v")).await {
                Ok(r) => break r.into_inner().header.unwrap().revision,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert!(
            rev > last_rev,
            "revision moved backwards: {rev} <= {last_rev}"
        );
        last_rev = rev;
        let all = kv
            .range(pb::RangeRequest {
                key: "r".into(),
                range_end: "s".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(all.kvs.len(), round + 1);
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(15), running.wait())
            .await
            .unwrap();
    }
}

/// One scenario through the `KvStore` trait: put, read back, CAS, and watch the result.
async fn exercise(store: &dyn store::KvStore, prefix: &str) {
    let k = format!("{prefix}/obj");
    let first = store.put(put(&k, "v1")).await.unwrap();
    let rev = first.header.unwrap().revision;
    let (_tx, mut events) = store
        .watch(pb::WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(pb::WatchCreateRequest {
                key: k.clone().into(),
                start_revision: rev,
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    let got = store
        .range(pb::RangeRequest {
            key: k.clone().into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(got.kvs[0].mod_revision, rev);
    let txn = store
        .txn(pb::TxnRequest {
            compare: vec![pb::Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Mod as i32,
                key: k.clone().into(),
                target_union: Some(TargetUnion::ModRevision(rev)),
                ..Default::default()
            }],
            success: vec![pb::RequestOp {
                request: Some(ReqOp::RequestPut(put(&k, "v2"))),
            }],
            failure: vec![],
        })
        .await
        .unwrap();
    assert!(txn.succeeded);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        use tokio_stream::StreamExt;
        let r = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.extend(r.events.into_iter().map(|e| e.kv.unwrap().value));
    }
    assert_eq!(seen, vec![b"v1".to_vec(), b"v2".to_vec()]);
    assert_ne!(store.status().await.unwrap().leader, 0);
}

#[tokio::test]
async fn the_kv_store_trait_behaves_the_same_embedded_and_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), free_port());
    let shutdown = Shutdown::new();
    let running = server::start(cfg, shutdown.clone()).await.unwrap();
    let grpc =
        store::GrpcStore::connect(&[format!("http://{}", running.client_addrs[0])], None).unwrap();
    let embedded = store::EmbeddedStore::new(
        running.server.clone(),
        shutdown.clone(),
        Duration::from_secs(600),
    );
    exercise(&grpc, "/grpc").await;
    exercise(&embedded, "/embedded").await;
    // Both watches caught up from history and then followed live: none is left slow.
    let slow = &running.server.metrics.slow_watchers;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while slow.get() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slow watchers gauge at {}",
            slow.get()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(15), running.wait())
        .await
        .unwrap();
}

#[tokio::test]
async fn periodic_auto_compaction_compacts_history_older_than_the_retention() {
    let m = start_with(|c| {
        c.auto_compaction = Some(server::AutoCompaction::Periodic(Duration::from_secs(1)))
    })
    .await;
    let mut kv = m.kv();
    let first = put_rev(&mut kv, "ac", "1").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        // Keep writing so there is newer history to keep.
        kv.put(put("ac", "n")).await.unwrap();
        let old = kv
            .range(pb::RangeRequest {
                key: "ac".into(),
                revision: first,
                ..Default::default()
            })
            .await;
        match old {
            Err(e) if e.message().contains("compacted") => break,
            Ok(_) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "history was never compacted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The newest value survives compaction.
    let now = kv
        .range(pb::RangeRequest {
            key: "ac".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(now.into_inner().kvs[0].value, b"n");
    m.stop().await;
}

#[tokio::test]
async fn hostile_requests_get_answers_and_the_member_keeps_serving() {
    use proto::etcdserverpb::cluster_client::ClusterClient;
    let m = start().await;
    let mut kv = m.kv();
    let mut lease = LeaseClient::new(m.channel.clone());
    let mut maint = MaintenanceClient::new(m.channel.clone());
    let mut cluster = ClusterClient::new(m.channel.clone());
    kv.put(put("a", "1")).await.unwrap();
    // Each may succeed or fail, but must answer (no panic, no hang).
    let weird_range = pb::RangeRequest {
        key: "a".into(),
        range_end: "\0".into(),
        limit: -5,
        revision: -3,
        sort_order: 99,
        sort_target: 99,
        min_mod_revision: i64::MAX,
        max_create_revision: i64::MIN,
        ..Default::default()
    };
    let _ = kv.range(weird_range).await;
    let _ = kv
        .range(pb::RangeRequest {
            key: "z".into(),
            range_end: "a".into(),
            ..Default::default()
        })
        .await;
    let _ = kv
        .put(pb::PutRequest {
            lease: -1,
            ..put("b", "x")
        })
        .await;
    let _ = kv
        .put(pb::PutRequest {
            ignore_value: true,
            ignore_lease: true,
            ..put("nokey", "")
        })
        .await;
    let _ = kv
        .delete_range(pb::DeleteRangeRequest {
            key: "z".into(),
            range_end: "a".into(),
            ..Default::default()
        })
        .await;
    let weird_txn = pb::TxnRequest {
        compare: vec![pb::Compare {
            result: 99,
            target: 99,
            key: "a".into(),
            ..Default::default()
        }],
        success: vec![pb::RequestOp { request: None }],
        failure: vec![pb::RequestOp {
            request: Some(ReqOp::RequestTxn(pb::TxnRequest {
                success: vec![pb::RequestOp {
                    request: Some(ReqOp::RequestPut(put("n", "v"))),
                }],
                ..Default::default()
            })),
        }],
    };
    let _ = kv.txn(weird_txn).await;
    let _ = kv
        .compact(pb::CompactionRequest {
            revision: -1,
            physical: true,
        })
        .await;
    let _ = kv
        .compact(pb::CompactionRequest {
            revision: i64::MAX,
            physical: true,
        })
        .await;
    let _ = lease
        .lease_grant(pb::LeaseGrantRequest { ttl: -5, id: -9 })
        .await;
    let e = lease
        .lease_grant(pb::LeaseGrantRequest {
            ttl: i64::MAX,
            id: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.message(), "etcdserver: too large lease TTL");
    let _ = lease.lease_revoke(pb::LeaseRevokeRequest { id: -1 }).await;
    let ttl = lease
        .lease_time_to_live(pb::LeaseTimeToLiveRequest { id: 0, keys: true })
        .await
        .unwrap();
    assert_eq!(ttl.into_inner().ttl, -1);
    let _ = maint
        .alarm(pb::AlarmRequest {
            action: 99,
            member_id: 1,
            alarm: 99,
        })
        .await;
    let _ = maint
        .alarm(pb::AlarmRequest {
            action: 1,
            member_id: 1,
            alarm: 99,
        })
        .await;
    let _ = maint.hash_kv(pb::HashKvRequest { revision: -1 }).await;
    let e = cluster
        .member_remove(pb::MemberRemoveRequest { id: 0 })
        .await
        .unwrap_err();
    assert_eq!(e.message(), "etcdserver: member not found");
    let e = cluster
        .member_add(pb::MemberAddRequest {
            peer_ur_ls: vec!["not a url".into()],
            is_learner: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.message(), "etcdserver: given member URLs are invalid");
    let (tx, mut stream) = m
        .watch(pb::WatchCreateRequest {
            key: "a".into(),
            start_revision: -5,
            filters: vec![99, -1],
            watch_id: -7,
            ..Default::default()
        })
        .await;
    tx.send(pb::WatchRequest {
        request_union: Some(RequestUnion::CancelRequest(pb::WatchCancelRequest {
            watch_id: 12345,
        })),
    })
    .await
    .unwrap();
    tx.send(pb::WatchRequest {
        request_union: None,
    })
    .await
    .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap();
    assert!(first.is_ok(), "watch stream failed: {first:?}");
    // Still serving, state intact.
    let got = kv
        .range(pb::RangeRequest {
            key: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(got.into_inner().kvs[0].value, b"1");
    kv.put(put("after", "ok")).await.unwrap();
    m.stop().await;
}
