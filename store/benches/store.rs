//! `make bench-store`: real etcd 3.4 and kube-store under the same conditions (loopback, fresh
//! data dir, fsync-durable commits), driven by the same Rust gRPC client and workload. Prints
//! both, and the ratio, as a Markdown table for docs/benchmarks.md.
//!
//! Env: BENCH_SECS (seconds per run, default 3), BENCH_RUNS (runs per cell, median taken,
//! default 3), BENCH_MEMBERS ("1,3" by default), BENCH_ONLY (a workload name to run alone).

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Cluster, ClusterOptions, Impl};
use proto::etcdserverpb::{
    self as pb, compare::CompareResult, compare::CompareTarget, compare::TargetUnion,
    kv_client::KvClient, request_op::Request as ReqOp, watch_client::WatchClient,
    watch_request::RequestUnion,
};
use tonic::transport::Channel;

const VALUE_SIZE: usize = 256;
const KEYS: usize = 1000;

#[derive(Clone, Copy, Debug)]
struct Stats {
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn summarize(ops: u64, secs: f64, mut lat_us: Vec<u64>) -> Stats {
    lat_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat_us.is_empty() {
            return f64::NAN;
        }
        let i = ((lat_us.len() as f64 - 1.0) * p).round() as usize;
        lat_us[i] as f64 / 1000.0
    };
    Stats {
        ops_per_sec: ops as f64 / secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

fn median(mut runs: Vec<Stats>) -> Stats {
    let mid = runs.len() / 2;
    runs.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
    let ops = runs[mid].ops_per_sec;
    runs.sort_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms));
    let p99 = runs[mid].p99_ms;
    runs.sort_by(|a, b| a.p50_ms.total_cmp(&b.p50_ms));
    Stats {
        ops_per_sec: ops,
        p50_ms: runs[mid].p50_ms,
        p99_ms: p99,
    }
}

async fn connect(endpoints: &[String], clients: usize) -> Vec<KvClient<Channel>> {
    let mut out = Vec::with_capacity(clients);
    for i in 0..clients {
        let ep = &endpoints[i % endpoints.len()];
        let ch = Channel::from_shared(format!("http://{ep}"))
            .expect("endpoint is a valid uri")
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("connect to member");
        out.push(KvClient::new(ch));
    }
    out
}

fn key(prefix: &str, i: usize) -> Vec<u8> {
    format!("/bench/{prefix}/{i:06}").into_bytes()
}

/// Runs `op` on `clients` concurrent clients for `secs`; returns ops, elapsed and latencies.
async fn drive<F, Fut>(clients: Vec<KvClient<Channel>>, secs: f64, op: F) -> Stats
where
    F: Fn(KvClient<Channel>, usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (ci, c) in clients.into_iter().enumerate() {
        let stop = stop.clone();
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if op(c.clone(), ci, n).await {
                    lat.push(t.elapsed().as_micros() as u64);
                }
                n += 1;
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("bench task"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    summarize(all.len() as u64, elapsed, all)
}

async fn preload(endpoints: &[String], prefix: &str) {
    let mut c = connect(endpoints, 1).await.remove(0);
    for i in 0..KEYS {
        c.put(pb::PutRequest {
            key: key(prefix, i),
            value: vec![b'x'; VALUE_SIZE],
            ..Default::default()
        })
        .await
        .expect("preload put");
    }
}

async fn put(endpoints: &[String], clients: usize, secs: f64) -> Stats {
    let cs = connect(endpoints, clients).await;
    drive(cs, secs, |mut c, ci, n| async move {
        let k = key("put", (ci * 7919 + n as usize) % (KEYS * 10));
        c.put(pb::PutRequest {
            key: k,
            value: vec![b'v'; VALUE_SIZE],
            ..Default::default()
        })
        .await
        .is_ok()
    })
    .await
}

async fn get(endpoints: &[String], clients: usize, secs: f64, serializable: bool) -> Stats {
    let cs = connect(endpoints, clients).await;
    drive(cs, secs, move |mut c, ci, n| async move {
        let k = key("get", (ci * 31 + n as usize) % KEYS);
        c.range(pb::RangeRequest {
            key: k,
            serializable,
            ..Default::default()
        })
        .await
        .is_ok()
    })
    .await
}

/// The Kubernetes optimistic update: read the object, then write it if unchanged.
async fn cas(endpoints: &[String], clients: usize, secs: f64) -> Stats {
    let cs = connect(endpoints, clients).await;
    drive(cs, secs, |mut c, ci, n| async move {
        let k = key("cas", (ci * 131 + n as usize) % KEYS);
        let Ok(r) = c
            .range(pb::RangeRequest {
                key: k.clone(),
                ..Default::default()
            })
            .await
        else {
            return false;
        };
        let rev = r
            .into_inner()
            .kvs
            .first()
            .map(|kv| kv.mod_revision)
            .unwrap_or(0);
        let txn = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Mod as i32,
                key: k.clone(),
                target_union: Some(TargetUnion::ModRevision(rev)),
                ..Default::default()
            }],
            success: vec![pb::RequestOp {
                request: Some(ReqOp::RequestPut(pb::PutRequest {
                    key: k.clone(),
                    value: vec![b'c'; VALUE_SIZE],
                    ..Default::default()
                })),
            }],
            failure: vec![pb::RequestOp {
                request: Some(ReqOp::RequestRange(pb::RangeRequest {
                    key: k,
                    ..Default::default()
                })),
            }],
        };
        c.txn(txn).await.is_ok()
    })
    .await
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Latency from a put's submission to its event arriving on a watch, with 16 writers.
async fn watch_latency(endpoints: &[String], writers: usize, secs: f64) -> Stats {
    let ch = Channel::from_shared(format!("http://{}", endpoints[0]))
        .expect("valid uri")
        .connect()
        .await
        .expect("connect watcher");
    let mut wc = WatchClient::new(ch);
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tx.send(pb::WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: b"/bench/watch/".to_vec(),
            range_end: b"/bench/watch0".to_vec(),
            ..Default::default()
        })),
    })
    .await
    .expect("queue watch create");
    let mut stream = wc
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("watch")
        .into_inner();
    // The created response.
    let _ = stream.message().await;
    let receiver = tokio::spawn(async move {
        let mut lat = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs + 5.0);
        while let Ok(Ok(Some(resp))) = tokio::time::timeout_at(deadline, stream.message()).await {
            let now = now_ns();
            for ev in resp.events {
                if let Some(kv) = ev.kv {
                    if kv.value.len() >= 8 {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&kv.value[..8]);
                        let sent = u64::from_be_bytes(b);
                        if sent == u64::MAX {
                            return lat;
                        }
                        lat.push(now.saturating_sub(sent) / 1000);
                    }
                }
            }
        }
        lat
    });
    let cs = connect(endpoints, writers).await;
    let start = Instant::now();
    let _ = drive(cs, secs, |mut c, ci, n| async move {
        let mut v = now_ns().to_be_bytes().to_vec();
        v.resize(VALUE_SIZE, b'w');
        c.put(pb::PutRequest {
            key: key(&format!("watch/{ci}"), n as usize % 100),
            value: v,
            ..Default::default()
        })
        .await
        .is_ok()
    })
    .await;
    let elapsed = start.elapsed().as_secs_f64();
    // A sentinel tells the watcher it has seen everything written before it.
    let mut c = connect(endpoints, 1).await.remove(0);
    let mut v = u64::MAX.to_be_bytes().to_vec();
    v.resize(VALUE_SIZE, b'w');
    let _ = c
        .put(pb::PutRequest {
            key: b"/bench/watch/end".to_vec(),
            value: v,
            ..Default::default()
        })
        .await;
    let lat = receiver.await.expect("watch receiver");
    summarize(lat.len() as u64, elapsed, lat)
}

/// Mean fsync and apply-batch times from a member's own histograms (BENCH_DISK_STATS=1).
fn disk_stats(metrics_port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", metrics_port)) else {
        return "metrics unreachable".into();
    };
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    let value = |name: &str| -> f64 {
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let mean = |h: &str| {
        let (sum, n) = (value(&format!("{h}_sum")), value(&format!("{h}_count")));
        format!("{n} x {:.3} ms", 1000.0 * sum / n)
    };
    format!(
        "wal fsync {}; backend commit {}",
        mean("etcd_disk_wal_fsync_duration_seconds"),
        mean("etcd_disk_backend_commit_duration_seconds")
    )
}

struct Workload {
    name: &'static str,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "put, 1 client",
    },
    Workload {
        name: "put, 64 clients",
    },
    Workload {
        name: "linearizable get, 64 clients",
    },
    Workload {
        name: "serializable get, 64 clients",
    },
    Workload {
        name: "get + txn CAS, 64 clients",
    },
    Workload {
        name: "watch delivery, 16 writers",
    },
];

async fn run_workload(name: &str, endpoints: &[String], secs: f64) -> Stats {
    match name {
        "put, 1 client" => put(endpoints, 1, secs).await,
        "put, 64 clients" => put(endpoints, 64, secs).await,
        "linearizable get, 64 clients" => get(endpoints, 64, secs, false).await,
        "serializable get, 64 clients" => get(endpoints, 64, secs, true).await,
        "get + txn CAS, 64 clients" => cas(endpoints, 64, secs).await,
        "watch delivery, 16 writers" => watch_latency(endpoints, 16, secs).await,
        other => panic!("unknown workload {other}"),
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let secs: f64 = env_or("BENCH_SECS", 3.0);
    let runs: usize = env_or("BENCH_RUNS", 3);
    let only = std::env::var("BENCH_ONLY").ok();
    let members: Vec<usize> = std::env::var("BENCH_MEMBERS")
        .unwrap_or_else(|_| "1,3".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("kube-store vs etcd 3.4 — {secs} s per run, median of {runs} runs, {VALUE_SIZE}-byte values\n");
    for n in members {
        println!("### {n} member{}\n", if n == 1 { "" } else { "s" });
        println!("| workload | etcd ops/s | etcd p99 ms | kube-store ops/s | kube-store p99 ms | throughput ratio | p99 ratio |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        let mut results: Vec<(&str, Stats, Stats)> = Vec::new();
        for w in WORKLOADS
            .iter()
            .filter(|w| only.as_deref().is_none_or(|o| o == w.name))
        {
            let mut per_impl = Vec::new();
            for kind in [Impl::Etcd, Impl::KubeStore] {
                // A fresh cluster per workload: an uncompacted history skews later runs.
                let cluster = Cluster::start_with(ClusterOptions::new(n).kind(kind));
                let endpoints: Vec<String> = (0..n).map(|i| cluster.endpoint(i)).collect();
                let stats = rt.block_on(async {
                    preload(&endpoints, "get").await;
                    preload(&endpoints, "cas").await;
                    let mut all = Vec::new();
                    for _ in 0..runs {
                        all.push(run_workload(w.name, &endpoints, secs).await);
                    }
                    median(all)
                });
                if kind == Impl::KubeStore && std::env::var_os("BENCH_DISK_STATS").is_some() {
                    eprintln!("{}: {}", w.name, disk_stats(cluster.spec(0).metrics_port));
                }
                drop(cluster);
                per_impl.push(stats);
            }
            let (e, k) = (per_impl[0], per_impl[1]);
            println!(
                "| {} | {:.0} | {:.2} | {:.0} | {:.2} | {:.2}x | {:.2} |",
                w.name,
                e.ops_per_sec,
                e.p99_ms,
                k.ops_per_sec,
                k.p99_ms,
                k.ops_per_sec / e.ops_per_sec,
                k.p99_ms / e.p99_ms
            );
            results.push((w.name, e, k));
        }
        println!();
    }
}
