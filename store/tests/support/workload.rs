//! A bounded concurrent etcd workload that records its history, and watchers that record streams.
//!
//! Clients do puts (unique values), linearizable gets, deletes and compare-and-swap Txns (on
//! mod_revision, as Kubernetes' optimistic updates, or on value) over a few keys under a prefix,
//! every operation with a timeout. Watchers follow the prefix with prev_kv, ask for progress
//! now and then, and resume on another member from the last revision they saw + 1 when their
//! stream breaks. All traffic goes to the given loopback endpoints.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::request_op::Request;
use proto::etcdserverpb::response_op::Response as OpResponse;
use proto::etcdserverpb::watch_client::WatchClient;
use proto::etcdserverpb::watch_request::RequestUnion;
use proto::etcdserverpb::{
    Compare, DeleteRangeRequest, HashKvRequest, PutRequest, RangeRequest, RequestOp, StatusRequest,
    TxnRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use super::linearizability::{Clock, Input, Observed, Operation, Output};
use super::watch_check::{self, Event, Response, Session, WatchLog};
use super::Rng;

/// A lazily connecting channel to `url` with short connect and request timeouts.
pub fn channel(url: &str, timeout: Duration) -> Channel {
    Endpoint::from_shared(url.to_string())
        .expect("valid endpoint url")
        .connect_timeout(Duration::from_millis(500))
        .timeout(timeout)
        .connect_lazy()
}

/// Prefix range end: the prefix with its last byte incremented.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    let last = end.last_mut().expect("non-empty prefix");
    *last += 1;
    end
}

/// True when the request provably never reached a server (nothing to treat as indeterminate).
fn never_sent(status: &tonic::Status) -> bool {
    let text = format!("{status:?}");
    text.contains("Connection refused") || text.contains("tcp connect error")
}

#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub keys: usize,
    pub clients: usize,
    /// Upper bound per client; the workload normally ends by [`Workload::finish`].
    pub max_ops_per_client: usize,
    pub op_timeout: Duration,
    /// Random pause between a client's operations, up to this long.
    pub think_time: Duration,
}

impl WorkloadConfig {
    pub fn new(endpoints: Vec<String>, prefix: &str) -> Self {
        WorkloadConfig {
            endpoints,
            prefix: prefix.to_string(),
            keys: 5,
            clients: 6,
            max_ops_per_client: 2_000,
            op_timeout: Duration::from_secs(2),
            think_time: Duration::from_millis(10),
        }
    }
}

/// A running workload.
pub struct Workload {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Vec<Operation>>>,
}

impl Workload {
    pub fn start(config: WorkloadConfig) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let clock = Clock::default();
        let clients = (0..config.clients)
            .map(|id| tokio::spawn(run_client(id, config.clone(), clock.clone(), stop.clone())))
            .collect();
        Workload { stop, clients }
    }

    /// Stops every client after its current operation and returns the merged history.
    pub async fn finish(self) -> Vec<Operation> {
        self.stop.store(true, Ordering::SeqCst);
        let mut history = Vec::new();
        for c in self.clients {
            history.extend(c.await.expect("workload client panicked"));
        }
        history.sort_by_key(|o| o.call);
        history
    }
}

struct Client {
    id: usize,
    config: WorkloadConfig,
    endpoint: usize,
    kv: KvClient<Channel>,
}

impl Client {
    fn rotate(&mut self) {
        self.endpoint = (self.endpoint + 1) % self.config.endpoints.len();
        self.kv = KvClient::new(channel(
            &self.config.endpoints[self.endpoint],
            self.config.op_timeout,
        ));
    }
}

async fn run_client(
    id: usize,
    config: WorkloadConfig,
    clock: Clock,
    stop: Arc<AtomicBool>,
) -> Vec<Operation> {
    let endpoint = id % config.endpoints.len();
    let kv = KvClient::new(channel(&config.endpoints[endpoint], config.op_timeout));
    let mut client = Client {
        id,
        config,
        endpoint,
        kv,
    };
    let mut rng = Rng::seeded(id as u64);
    let mut history = Vec::new();
    // The last mod_revision this client saw per key, for Kubernetes-style optimistic updates.
    let mut known: HashMap<String, i64> = HashMap::new();
    let mut last_value: HashMap<String, String> = HashMap::new();
    for seq in 0..client.config.max_ops_per_client {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let key = format!(
            "{}k{}",
            client.config.prefix,
            rng.below(client.config.keys as u64)
        );
        let value = format!("c{id}-{seq}");
        let input = match rng.below(100) {
            0..=34 => Input::Put { value },
            35..=64 => Input::Get,
            65..=69 => Input::Delete,
            70..=89 => Input::CasRevision {
                expected: known.get(&key).copied().unwrap_or(0),
                value,
            },
            _ => Input::CasValue {
                expected: last_value.get(&key).cloned().unwrap_or_default(),
                value,
            },
        };
        let call = clock.tick();
        let result = tokio::time::timeout(
            client.config.op_timeout,
            execute(&mut client.kv, &key, &input),
        )
        .await;
        let ret = clock.tick();
        let output = match result {
            Ok(Ok(output)) => output,
            Ok(Err(status)) if never_sent(&status) => {
                client.rotate();
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Ok(Err(_)) | Err(_) => {
                client.rotate();
                tokio::time::sleep(Duration::from_millis(20)).await;
                Output::Unknown
            }
        };
        remember(&mut known, &mut last_value, &key, &input, &output);
        let ret = (output != Output::Unknown).then_some(ret);
        history.push(Operation {
            client: id,
            key,
            input,
            call,
            ret,
            output,
        });
        let pause = rng.below(client.config.think_time.as_millis() as u64 + 1);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    history
}

fn remember(
    known: &mut HashMap<String, i64>,
    last_value: &mut HashMap<String, String>,
    key: &str,
    input: &Input,
    output: &Output,
) {
    let observed = match output {
        Output::Put { revision }
        | Output::Cas {
            succeeded: true,
            revision,
            ..
        } => match input {
            Input::Put { value }
            | Input::CasRevision { value, .. }
            | Input::CasValue { value, .. } => Some(Observed {
                value: Some(value.clone()),
                mod_revision: *revision,
            }),
            _ => None,
        },
        Output::Get { observed, .. }
        | Output::Cas {
            current: Some(observed),
            ..
        } => Some(observed.clone()),
        Output::Delete { .. } => Some(Observed {
            value: None,
            mod_revision: 0,
        }),
        _ => None,
    };
    if let Some(o) = observed {
        known.insert(key.to_string(), o.mod_revision);
        match o.value {
            Some(v) => last_value.insert(key.to_string(), v),
            None => last_value.remove(key),
        };
    }
}

fn observed(kvs: &[proto::mvccpb::KeyValue]) -> Observed {
    match kvs.first() {
        Some(kv) => Observed {
            value: Some(String::from_utf8_lossy(&kv.value).into_owned()),
            mod_revision: kv.mod_revision,
        },
        None => Observed {
            value: None,
            mod_revision: 0,
        },
    }
}

async fn execute(
    kv: &mut KvClient<Channel>,
    key: &str,
    input: &Input,
) -> Result<Output, tonic::Status> {
    let header_rev = |h: Option<&proto::etcdserverpb::ResponseHeader>| h.map_or(0, |h| h.revision);
    match input {
        Input::Put { value } => {
            let r = kv
                .put(PutRequest {
                    key: key.into(),
                    value: value.clone().into_bytes(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok(Output::Put {
                revision: header_rev(r.header.as_ref()),
            })
        }
        Input::Get => {
            let r = kv
                .range(RangeRequest {
                    key: key.into(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok(Output::Get {
                observed: observed(&r.kvs),
                revision: header_rev(r.header.as_ref()),
            })
        }
        Input::Delete => {
            let r = kv
                .delete_range(DeleteRangeRequest {
                    key: key.into(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok(Output::Delete {
                deleted: r.deleted > 0,
                revision: header_rev(r.header.as_ref()),
            })
        }
        Input::CasRevision { expected, value } => {
            cas(
                kv,
                key,
                CompareTarget::Mod,
                TargetUnion::ModRevision(*expected),
                value,
            )
            .await
        }
        Input::CasValue { expected, value } => {
            cas(
                kv,
                key,
                CompareTarget::Value,
                TargetUnion::Value(expected.clone().into_bytes()),
                value,
            )
            .await
        }
    }
}

/// `Txn(if target(key) == expected then put(key, value) else get(key))`.
async fn cas(
    kv: &mut KvClient<Channel>,
    key: &str,
    target: CompareTarget,
    union: TargetUnion,
    value: &str,
) -> Result<Output, tonic::Status> {
    let txn = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: target as i32,
            key: key.into(),
            target_union: Some(union),
            range_end: Vec::new(),
        }],
        success: vec![RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key.into(),
                value: value.as_bytes().to_vec(),
                ..Default::default()
            })),
        }],
        failure: vec![RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key: key.into(),
                ..Default::default()
            })),
        }],
    };
    let r = kv.txn(txn).await?.into_inner();
    let current = if r.succeeded {
        None
    } else {
        r.responses.iter().find_map(|op| match &op.response {
            Some(OpResponse::ResponseRange(range)) => Some(observed(&range.kvs)),
            _ => None,
        })
    };
    Ok(Output::Cas {
        succeeded: r.succeeded,
        revision: r.header.map_or(0, |h| h.revision),
        current,
    })
}

/// Summary counts of a history, for test output.
pub fn summarize(history: &[Operation]) -> String {
    let indeterminate = history.iter().filter(|o| o.is_indeterminate()).count();
    let writes = history
        .iter()
        .filter(|o| o.write_revision().is_some())
        .count();
    let cas_ok = history
        .iter()
        .filter(|o| {
            matches!(
                o.output,
                Output::Cas {
                    succeeded: true,
                    ..
                }
            )
        })
        .count();
    let cas_failed = history
        .iter()
        .filter(|o| {
            matches!(
                o.output,
                Output::Cas {
                    succeeded: false,
                    ..
                }
            )
        })
        .count();
    format!(
        "{} operations: {writes} acknowledged writes, {cas_ok} CAS succeeded, {cas_failed} CAS failed, {indeterminate} indeterminate",
        history.len()
    )
}

#[derive(Clone, Debug)]
pub struct WatcherConfig {
    pub name: String,
    pub endpoints: Vec<String>,
    /// Index of the endpoint to start on.
    pub first_endpoint: usize,
    pub prefix: String,
    pub start_revision: i64,
    /// How often to send a RequestProgress on the stream.
    pub progress_every: Duration,
    /// The watcher gives up at this instant even if it has not reached its target.
    pub deadline: Instant,
}

/// A running watcher; [`Watcher::finish`] tells it the revision to reach and collects its log.
pub struct Watcher {
    target: watch::Sender<Option<i64>>,
    task: JoinHandle<WatchLog>,
}

impl Watcher {
    pub fn start(config: WatcherConfig) -> Self {
        let (target, rx) = watch::channel(None);
        let task = tokio::spawn(run_watcher(config, rx));
        Watcher { target, task }
    }

    /// Lets the watcher stop once it has seen everything through `revision`.
    pub async fn finish(self, revision: i64) -> WatchLog {
        let _ = self.target.send(Some(revision));
        self.task.await.expect("watcher panicked")
    }
}

async fn run_watcher(config: WatcherConfig, mut target: watch::Receiver<Option<i64>>) -> WatchLog {
    let mut log = WatchLog {
        name: config.name.clone(),
        prefix: config.prefix.clone(),
        prev_kv: true,
        sessions: Vec::new(),
    };
    let mut endpoint = config.first_endpoint;
    let mut rng = Rng::seeded(config.name.len() as u64 * 7919 + config.first_endpoint as u64);
    let reached =
        |log: &WatchLog, target: Option<i64>| target.is_some_and(|t| log.last_revision() >= t);
    while Instant::now() < config.deadline && !reached(&log, *target.borrow()) {
        let url = config.endpoints[endpoint % config.endpoints.len()].clone();
        endpoint += 1;
        let start_revision = if log.sessions.is_empty() {
            config.start_revision
        } else {
            log.resume_revision()
        };
        let (tx, rx) = mpsc::channel(8);
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: config.prefix.clone().into_bytes(),
                range_end: prefix_end(&config.prefix),
                start_revision,
                progress_notify: true,
                prev_kv: true,
                ..Default::default()
            })),
        };
        tx.send(create).await.expect("receiver alive");
        let mut client = WatchClient::new(
            Endpoint::from_shared(url.clone())
                .expect("valid endpoint url")
                .connect_timeout(Duration::from_millis(500))
                .connect_lazy(),
        );
        let opened = tokio::time::timeout(
            Duration::from_secs(2),
            client.watch(ReceiverStream::new(rx)),
        )
        .await;
        let mut stream = match opened {
            Ok(Ok(s)) => s.into_inner(),
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        log.sessions.push(Session {
            endpoint: url,
            start_revision,
            responses: Vec::new(),
        });
        let session = log.sessions.len() - 1;
        let mut progress =
            tokio::time::interval(config.progress_every + Duration::from_millis(rng.below(50)));
        loop {
            if reached(&log, *target.borrow()) || Instant::now() >= config.deadline {
                break;
            }
            tokio::select! {
                message = tokio::time::timeout(Duration::from_secs(1), stream.message()) => match message {
                    Ok(Ok(Some(response))) => log.sessions[session].responses.push(Response::from(&response)),
                    // A quiet second is normal; the loop re-checks the target and deadline.
                    Err(_) => {}
                    // The member went away (or the stream failed): resume elsewhere.
                    Ok(Ok(None) | Err(_)) => break,
                },
                _ = progress.tick() => {
                    let request = WatchRequest { request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})) };
                    if tx.send(request).await.is_err() {
                        break;
                    }
                }
                _ = target.changed() => {}
            }
        }
    }
    log
}

/// The full history of the prefix: a watch from revision 1 on `url` until `through` is seen.
pub async fn reference_history(
    url: &str,
    prefix: &str,
    through: i64,
) -> Result<Vec<Event>, String> {
    let (tx, rx) = mpsc::channel(1);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix),
            start_revision: 1,
            ..Default::default()
        })),
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut client = WatchClient::new(channel(url, Duration::from_secs(3600)));
    let mut stream = client
        .watch(ReceiverStream::new(rx))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let mut events: Vec<Event> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while events.last().map_or(0, Event::revision) < through {
        let left = deadline.saturating_duration_since(Instant::now());
        let response = tokio::time::timeout(left, stream.message())
            .await
            .map_err(|_| format!("reference watch on {url} stalled before revision {through}"))?
            .map_err(|e| e.to_string())?
            .ok_or("reference watch ended early")?;
        if response.canceled {
            return Err(format!(
                "reference watch canceled: {}",
                response.cancel_reason
            ));
        }
        events.extend(response.events.iter().map(Event::from));
    }
    drop(tx);
    Ok(events)
}

/// Every acknowledged write is in the reference history at its revision with its value, and
/// every value a read returned was written at the revision it reported.
pub fn check_against_reference(history: &[Operation], reference: &[Event]) -> Result<(), String> {
    let at: HashMap<(i64, &str), &Event> = reference
        .iter()
        .map(|e| ((e.revision(), e.kv.key.as_str()), e))
        .collect();
    let mut missing = Vec::new();
    for op in history {
        if let Some(rev) = op.write_revision() {
            let want = match &op.input {
                Input::Put { value }
                | Input::CasRevision { value, .. }
                | Input::CasValue { value, .. } => Some(value.as_str()),
                _ => None,
            };
            let found = at.get(&(rev, op.key.as_str()));
            let ok = match (found, want) {
                (Some(e), Some(v)) => e.kind == watch_check::Kind::Put && e.kv.value == v,
                (Some(e), None) => e.kind == watch_check::Kind::Delete,
                (None, _) => false,
            };
            if !ok {
                missing.push(format!(
                    "acknowledged write not in the history: {op} (history has {found:?})"
                ));
            }
        }
        let read = match &op.output {
            Output::Get { observed, .. }
            | Output::Cas {
                current: Some(observed),
                ..
            } => observed,
            _ => continue,
        };
        if let Some(v) = &read.value {
            let ok = at
                .get(&(read.mod_revision, op.key.as_str()))
                .is_some_and(|e| e.kind == watch_check::Kind::Put && &e.kv.value == v);
            if !ok {
                missing.push(format!("read a value the history never had: {op}"));
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        let n = missing.len();
        missing.truncate(10);
        Err(format!("{n} problems:\n{}", missing.join("\n")))
    }
}

/// The prefix read back from `url` matches the last event per key of the reference history.
pub async fn check_final_state(url: &str, prefix: &str, reference: &[Event]) -> Result<(), String> {
    let mut kv = KvClient::new(channel(url, Duration::from_secs(5)));
    let r = kv
        .range(RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let mut want: HashMap<&str, &Event> = HashMap::new();
    for e in reference {
        want.insert(e.kv.key.as_str(), e);
    }
    let mut live: Vec<watch_check::Kv> = want
        .values()
        .filter(|e| e.kind == watch_check::Kind::Put)
        .map(|e| e.kv.clone())
        .collect();
    live.sort_by(|a, b| a.key.cmp(&b.key));
    let got: Vec<watch_check::Kv> = r.kvs.iter().map(watch_check::Kv::from).collect();
    if got == live {
        Ok(())
    } else {
        Err(format!(
            "final state on {url} differs from the history:\n got  {got:?}\n want {live:?}"
        ))
    }
}

/// Maintenance Status of one member: `(member_id, leader_id, revision)`.
pub async fn status(url: &str) -> Option<(u64, u64, i64)> {
    let mut m = MaintenanceClient::new(channel(url, Duration::from_secs(1)));
    let r = tokio::time::timeout(Duration::from_secs(2), m.status(StatusRequest {}))
        .await
        .ok()?
        .ok()?
        .into_inner();
    let header = r.header?;
    Some((header.member_id, r.leader, header.revision))
}

/// HashKV of one member at `revision`.
pub async fn hash_kv(url: &str, revision: i64) -> Result<u32, String> {
    let mut m = MaintenanceClient::new(channel(url, Duration::from_secs(5)));
    let r = m
        .hash_kv(HashKvRequest { revision })
        .await
        .map_err(|e| e.message().to_string())?
        .into_inner();
    Ok(r.hash)
}

/// Linearizable read of the current revision through `url`.
pub async fn current_revision(url: &str) -> Result<i64, String> {
    let mut kv = KvClient::new(channel(url, Duration::from_secs(3)));
    let r = kv
        .range(RangeRequest {
            key: b"/support/revision-probe".to_vec(),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    Ok(r.header.map_or(0, |h| h.revision))
}
