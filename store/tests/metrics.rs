//! kube-store's metrics as Prometheus sees them: `promtool check metrics` accepts the exposition,
//! and a real Prometheus server scrapes a member and reads etcd's series back.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Cluster};

/// A plain HTTP/1.1 GET on loopback; returns (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // Bodies may be chunked: keep only the payload lines of a chunked body.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[test]
fn metrics_pass_promtool_and_carry_etcd_names() {
    let c = Cluster::start(1);
    c.etcdctl(&["put", "k", "v"]).ok();
    let (status, body) = get(c.spec(0).metrics_port, "/metrics");
    assert_eq!(status, 200);
    for name in [
        "etcd_server_has_leader 1",
        "etcd_server_is_leader 1",
        "etcd_server_leader_changes_seen_total",
        "etcd_disk_wal_fsync_duration_seconds_bucket",
        "etcd_disk_backend_commit_duration_seconds_bucket",
        "etcd_mvcc_db_total_size_in_bytes",
        "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}",
        "process_resident_memory_bytes",
    ] {
        assert!(body.contains(name), "missing {name} in:\n{body}");
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by make deps");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let out = promtool.wait_with_output().expect("promtool");
    // etcd names three gauges `etcd_debugging_mvcc_*_total`, which the linter rejects; they
    // are exported without the suffix, so promtool passes with no finding at all.
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check metrics: {report}");
    assert!(
        body.contains("etcd_debugging_mvcc_watchers "),
        "missing the watchers gauge in:\n{body}"
    );

    let (status, body) = get(c.spec(0).metrics_port, "/health");
    assert_eq!(status, 200);
    assert!(body.contains("\"health\":\"true\""), "{body}");
    let (status, body) = get(c.spec(0).metrics_port, "/healthz?verbose");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_real_prometheus_scrapes_a_member() {
    let c = Cluster::start(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: kube-store\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
        c.spec(0).metrics_port
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).expect("write config");
    let prom = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is installed by make deps");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(prom);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let (status, body) = get(port, "/api/v1/query?query=etcd_server_has_leader");
            if status == 200
                && body.contains("\"etcd_server_has_leader\"")
                && body.contains("\"1\"]")
            {
                break;
            }
            last = body;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped has_leader=1; last answer: {last}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let (_, body) = get(port, "/api/v1/query?query=up%7Bjob%3D%22kube-store%22%7D");
    assert!(body.contains("\"1\"]"), "target not up: {body}");
}
