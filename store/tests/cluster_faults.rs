//! Three members as processes: kill -9 the leader under a concurrent workload, restart it, and
//! check the recorded history (linearizable, nothing acknowledged lost) and watch streams.
//!
//! Run against real etcd first: `STORE_UNDER_TEST=etcd cargo test -p store --test cluster_faults
//! -- --nocapture`.

mod common;
mod support;

use std::time::{Duration, Instant};

use common::{Cluster, Impl};
use support::linearizability::{self, Input, Observed, Operation, Output, Verdict};
use support::watch_check::{self, Guarantee, Report};
use support::workload::{self, Watcher, WatcherConfig, Workload, WorkloadConfig};
use tokio::task::block_in_place;

const PREFIX: &str = "/faults/";
const ROUNDS: usize = 2;
const NEW_LEADER_DEADLINE: Duration = Duration::from_secs(15);
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(20);

/// Member ids by index, from Maintenance Status on each member.
async fn member_ids(urls: &[String]) -> Vec<u64> {
    let mut ids = Vec::new();
    for url in urls {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((id, _, _)) = workload::status(url).await {
                ids.push(id);
                break;
            }
            assert!(Instant::now() < deadline, "no status from {url}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    ids
}

/// The leader as the given members agree on it (Maintenance Status `leader`), polled until
/// `deadline`; `exclude` is a former leader that must not be reported.
async fn leader_among(
    urls: &[String],
    ids: &[u64],
    members: &[usize],
    exclude: Option<u64>,
    deadline: Duration,
) -> usize {
    let until = Instant::now() + deadline;
    loop {
        let mut seen = Vec::new();
        for &i in members {
            if let Some((_, leader, _)) = workload::status(&urls[i]).await {
                seen.push(leader);
            }
        }
        let agreed = seen.len() == members.len() && seen.windows(2).all(|w| w[0] == w[1]);
        if let (true, Some(&leader)) = (agreed, seen.first()) {
            if leader != 0 && Some(leader) != exclude {
                if let Some(i) = ids.iter().position(|&id| id == leader) {
                    return i;
                }
            }
        }
        assert!(
            Instant::now() < until,
            "no leader agreed on by members {members:?} within {deadline:?} (saw {seen:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until member `i` reports a revision at least `revision`.
async fn wait_caught_up(url: &str, revision: i64) -> Duration {
    let started = Instant::now();
    loop {
        if let Some((_, _, rev)) = workload::status(url).await {
            if rev >= revision {
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < CATCH_UP_DEADLINE,
            "{url} did not reach revision {revision} within {CATCH_UP_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// HashKV at `revision` on every member, polled until all of them have reached it.
async fn hashes_at(urls: &[String], revision: i64) -> Vec<u32> {
    let deadline = Instant::now() + CATCH_UP_DEADLINE;
    loop {
        let mut hashes = Vec::new();
        for url in urls {
            match workload::hash_kv(url, revision).await {
                Ok(h) => hashes.push(h),
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "HashKV at {revision} on {url} keeps failing: {e}"
                    );
                    break;
                }
            }
        }
        if hashes.len() == urls.len() {
            return hashes;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// etcd before the fix for etcd-io/etcd#15220 (PR #15237, backported to the 3.4 branch after
/// Debian's 3.4.23) may answer a RequestProgress before the events at that revision reach the
/// stream. The check stays strict for kube-store; against etcd such findings are printed only.
fn excuse_known_etcd_progress_bug(report: &mut Report, watcher: &str) {
    let (known, rest) = std::mem::take(&mut report.violations)
        .into_iter()
        .partition(|v| v.guarantee == Guarantee::Bookmarkable);
    report.violations = rest;
    let known: Vec<watch_check::Violation> = known;
    for v in known {
        eprintln!(
            "{watcher}: etcd-io/etcd#15220 (known etcd bug, not failing the run): {}",
            v.detail
        );
    }
}

/// A read appended after everything that returns a key's value from before its last known put:
/// a stale read the checker must reject (so a pass on the real history means something).
fn stale_read_canary(history: &[Operation], revision: i64) -> Option<Operation> {
    let last_tick = history
        .iter()
        .filter_map(|o| o.ret)
        .chain(history.iter().map(|o| o.call))
        .max()?;
    let puts: Vec<&Operation> = history
        .iter()
        .filter(|o| matches!(o.output, Output::Put { .. }))
        .collect();
    let newest = puts.iter().max_by_key(|o| o.write_revision())?;
    let older = puts
        .iter()
        .filter(|o| o.key == newest.key && o.write_revision() < newest.write_revision())
        .max_by_key(|o| o.write_revision())?;
    let Input::Put { value } = &older.input else {
        return None;
    };
    Some(Operation {
        client: usize::MAX,
        key: older.key.clone(),
        input: Input::Get,
        call: last_tick + 1,
        ret: Some(last_tick + 2),
        output: Output::Get {
            observed: Observed {
                value: Some(value.clone()),
                mod_revision: older.write_revision()?,
            },
            revision,
        },
    })
}

/// The same watch log with one delivered event removed: a gap the checker must report.
fn dropped_event_canary(log: &watch_check::WatchLog) -> Option<watch_check::WatchLog> {
    let mut tampered = log.clone();
    let session = tampered
        .sessions
        .iter_mut()
        .find(|s| s.responses.iter().any(|r| !r.events.is_empty()))?;
    let with_events: Vec<usize> = (0..session.responses.len())
        .filter(|&i| !session.responses[i].events.is_empty())
        .collect();
    let middle = with_events[with_events.len() / 2];
    session.responses[middle].events.pop();
    Some(tampered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_twice_under_load_keeps_history_linearizable_and_watches_intact() {
    let started = Instant::now();
    let mut cluster = block_in_place(|| Cluster::start(3));
    let kind = cluster.kind.label();
    let urls: Vec<String> = (0..cluster.len())
        .map(|i| cluster.spec(i).client_url())
        .collect();
    let ids = member_ids(&urls).await;
    eprintln!("{kind}: 3 members up in {:?}", started.elapsed());

    let deadline = Instant::now() + Duration::from_secs(120);
    let watchers: Vec<Watcher> = (0..3)
        .map(|i| {
            Watcher::start(WatcherConfig {
                name: format!("watcher-{i}"),
                endpoints: urls.clone(),
                first_endpoint: i,
                prefix: PREFIX.to_string(),
                start_revision: 1,
                progress_every: Duration::from_millis(150),
                deadline,
            })
        })
        .collect();
    let load = Workload::start(WorkloadConfig::new(urls.clone(), PREFIX));

    let all: Vec<usize> = (0..urls.len()).collect();
    let mut leader = leader_among(&urls, &ids, &all, None, NEW_LEADER_DEADLINE).await;
    for round in 1..=ROUNDS {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let killed = leader;
        block_in_place(|| cluster.kill(killed));
        let killed_at = Instant::now();
        let survivors: Vec<usize> = all.iter().copied().filter(|&i| i != killed).collect();
        leader = leader_among(
            &urls,
            &ids,
            &survivors,
            Some(ids[killed]),
            NEW_LEADER_DEADLINE,
        )
        .await;
        eprintln!(
            "round {round}: killed leader {} ; new leader {} after {:?}",
            cluster.spec(killed).name,
            cluster.spec(leader).name,
            killed_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
        block_in_place(|| cluster.restart(killed));
        let target = workload::current_revision(&urls[leader])
            .await
            .expect("revision from the leader");
        let took = wait_caught_up(&urls[killed], target).await;
        eprintln!(
            "round {round}: {} restarted and reached revision {target} {took:?} after becoming healthy",
            cluster.spec(killed).name
        );
        leader = leader_among(&urls, &ids, &all, None, NEW_LEADER_DEADLINE).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let history = load.finish().await;
    eprintln!("workload: {}", workload::summarize(&history));
    let final_revision = workload::current_revision(&urls[leader])
        .await
        .expect("final revision");
    let mut logs = Vec::new();
    for w in watchers {
        logs.push(w.finish(final_revision).await);
    }

    let hashes = hashes_at(&urls, final_revision).await;
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "members differ at revision {final_revision}: HashKV {hashes:?}"
    );

    let reference = workload::reference_history(&urls[leader], PREFIX, final_revision)
        .await
        .expect("reference history");
    watch_check::check_reference(&reference).expect("reference history is consistent");
    workload::check_against_reference(&history, &reference)
        .expect("every acknowledged write is in the history");
    for url in &urls {
        workload::check_final_state(url, PREFIX, &reference)
            .await
            .expect("members hold the final state");
    }

    let checked = Instant::now();
    let verdict = linearizability::check(&history);
    eprintln!("linearizability: {verdict:?} in {:?}", checked.elapsed());
    assert_eq!(
        verdict,
        Verdict::Linearizable,
        "history of {} operations",
        history.len()
    );

    let mut tampered = history.clone();
    tampered.extend(stale_read_canary(&history, final_revision));
    assert!(
        tampered.len() > history.len(),
        "history has no key with two acknowledged puts"
    );
    assert!(
        matches!(linearizability::check(&tampered), Verdict::Violation(_)),
        "the checker accepted a stale read appended to the real history"
    );

    for log in &logs {
        let tampered = dropped_event_canary(log).expect("watcher saw events");
        assert!(
            !watch_check::check(&tampered, &reference, Some(final_revision)).is_ok(),
            "the watch checker accepted {} with an event removed",
            log.name
        );
        let mut report = watch_check::check(log, &reference, Some(final_revision));
        if cluster.kind == Impl::Etcd {
            excuse_known_etcd_progress_bug(&mut report, &log.name);
        }
        let responses = log.sessions.iter().flat_map(|s| &s.responses);
        eprintln!(
            "{}: {} sessions, {} responses ({} progress notifications), saw through {}",
            log.name,
            log.sessions.len(),
            responses.clone().count(),
            responses.filter(|r| r.is_progress()).count(),
            log.last_revision()
        );
        assert!(
            report.is_ok(),
            "{} broke watch guarantees:\n{}",
            log.name,
            report.render()
        );
    }
    eprintln!("{kind}: done in {:?}", started.elapsed());
}
