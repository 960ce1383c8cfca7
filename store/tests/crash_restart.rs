//! A single member killed with -9 and restarted many times under writes: no acknowledged write
//! is lost and the revision never moves backwards.
//!
//! Run against real etcd first: `STORE_UNDER_TEST=etcd cargo test -p store --test crash_restart
//! -- --nocapture`.

mod common;
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Cluster;
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::{PutRequest, RangeRequest};
use support::workload::{self, channel, prefix_end};
use support::Rng;
use tokio::task::block_in_place;

const PREFIX: &str = "/crash/";
const RESTARTS: usize = 50;
/// Writes the writer may do per round, so rounds stay short and alike.
const WRITES_PER_ROUND: usize = 100;
const OP_TIMEOUT: Duration = Duration::from_secs(1);

/// An acknowledged put: key, value and the revision it created.
type Ack = (String, String, i64);

/// Writes unique keys one at a time until stopped, at most `allowance` of them, recording every
/// acknowledged put. Returns how many puts failed (indeterminate).
async fn writer(
    url: String,
    acked: Arc<Mutex<Vec<Ack>>>,
    allowance: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut kv = KvClient::new(channel(&url, OP_TIMEOUT));
    let mut failed = 0;
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        if n >= allowance.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        n += 1;
        let key = format!("{PREFIX}{n:05}");
        let value = format!("v{n}");
        let put = PutRequest {
            key: key.clone().into_bytes(),
            value: value.clone().into_bytes(),
            ..Default::default()
        };
        match tokio::time::timeout(OP_TIMEOUT, kv.put(put)).await {
            Ok(Ok(r)) => {
                let rev = r.into_inner().header.map_or(0, |h| h.revision);
                acked.lock().expect("ack lock").push((key, value, rev));
            }
            _ => {
                failed += 1;
                kv = KvClient::new(channel(&url, OP_TIMEOUT));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    failed
}

fn highest(acked: &Mutex<Vec<Ack>>) -> (usize, i64) {
    let acked = acked.lock().expect("ack lock");
    (acked.len(), acked.iter().map(|a| a.2).max().unwrap_or(0))
}

/// A linearizable read of the current revision, retried until the member answers.
async fn read_revision(url: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match workload::current_revision(url).await {
            Ok(rev) => return rev,
            Err(e) => assert!(
                Instant::now() < deadline,
                "no revision from {url} after restart: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_member_killed_fifty_times_under_writes_never_loses_a_write_or_goes_back_in_revision(
) {
    let started = Instant::now();
    let mut cluster = block_in_place(|| Cluster::start(1));
    let url = cluster.spec(0).client_url();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let allowance = Arc::new(AtomicUsize::new(0));
    let writes = tokio::spawn(writer(
        url.clone(),
        acked.clone(),
        allowance.clone(),
        stop.clone(),
    ));
    let mut rng = Rng::seeded(50);
    let mut last_revision = 0;

    for round in 1..=RESTARTS {
        allowance.fetch_add(WRITES_PER_ROUND, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20 + rng.below(80))).await;
        let before = read_revision(&url).await;
        assert!(
            before >= last_revision,
            "round {round}: revision {before} is below {last_revision} seen earlier"
        );
        block_in_place(|| cluster.kill(0));
        // The member is dead: every acknowledgement received by now came from this incarnation.
        let (count, acknowledged) = highest(&acked);
        block_in_place(|| cluster.restart(0));
        let after = read_revision(&url).await;
        assert!(
            after >= acknowledged && after >= before,
            "round {round}: revision after restart {after} is below the highest acknowledged {acknowledged} \
             (or {before} read before the kill); {count} writes acknowledged so far"
        );
        last_revision = after;
    }

    stop.store(true, Ordering::SeqCst);
    let failed = writes.await.expect("writer panicked");
    let acked = acked.lock().expect("ack lock").clone();
    assert!(
        acked.len() > RESTARTS,
        "too few writes acknowledged to mean anything: {}",
        acked.len()
    );

    let mut kv = KvClient::new(channel(&url, Duration::from_secs(10)));
    let stored = kv
        .range(RangeRequest {
            key: PREFIX.as_bytes().to_vec(),
            range_end: prefix_end(PREFIX),
            ..Default::default()
        })
        .await
        .expect("read back the prefix")
        .into_inner();
    let stored: HashMap<Vec<u8>, (Vec<u8>, i64)> = stored
        .kvs
        .into_iter()
        .map(|kv| (kv.key, (kv.value, kv.mod_revision)))
        .collect();
    let lost: Vec<&Ack> = acked
        .iter()
        .filter(|(k, v, rev)| stored.get(k.as_bytes()) != Some(&(v.clone().into_bytes(), *rev)))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    eprintln!(
        "{}: {RESTARTS} kill -9/restart rounds, {} writes acknowledged and present, {failed} failed, in {:?}",
        cluster.kind.label(),
        acked.len(),
        started.elapsed()
    );
}
