//! A single member killed with -9 and restarted many times under writes: no acknowledged write
//! is lost and the revision never moves backwards. A kill cannot lose what is in the page
//! cache, so a second test checks (with strace) that acknowledged puts were `fdatasync`ed, which
//! a power loss needs, and not only written back with `sync_file_range`.
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

/// Counts of the sync system calls in an `strace -o` file.
fn sync_calls(trace: &std::path::Path) -> (usize, usize) {
    let text = std::fs::read_to_string(trace).unwrap_or_default();
    let count = |call: &str| text.lines().filter(|l| l.contains(call)).count();
    (
        count("fdatasync(") + count(" fsync("),
        count("sync_file_range("),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_puts_are_fdatasynced_not_only_written_back() {
    const PUTS: usize = 20;
    let cluster = block_in_place(|| Cluster::start(1));
    let pid = cluster.members[0].pid().expect("member running");
    let trace = cluster.dir().join("sync.strace");
    let mut strace = std::process::Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=fdatasync,fsync,sync_file_range",
            "-o",
        ])
        .arg(&trace)
        .args(["-p", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("strace (make deps installs it)");
    // strace writes nothing until it has attached; a put before that would go unseen, which
    // only makes the count below harder to reach.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !trace.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = sync_calls(&trace).0;
    let mut kv = KvClient::new(channel(&cluster.spec(0).client_url(), OP_TIMEOUT));
    for n in 0..PUTS {
        kv.put(PutRequest {
            key: format!("{PREFIX}synced/{n}").into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .expect("put");
    }
    // One client, one put at a time: each acknowledgement needs its own durable sync.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (synced, written_back) = loop {
        let (synced, written_back) = sync_calls(&trace);
        if synced - before >= PUTS || Instant::now() > deadline {
            break (synced - before, written_back);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = interrupt(&mut strace);
    assert!(
        synced >= PUTS,
        "{PUTS} acknowledged puts, only {synced} fdatasync/fsync calls:\n{}",
        std::fs::read_to_string(&trace).unwrap_or_default()
    );
    assert_eq!(
        written_back, 0,
        "sync_file_range does not make a write durable across a power loss"
    );
}

/// Stops strace so that it detaches from the member (SIGKILL would leave it traced).
fn interrupt(child: &mut std::process::Child) -> std::io::Result<()> {
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    child.wait().map(|_| ())
}
