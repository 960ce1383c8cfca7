//! The watch cache against the real binary:
//! - updates start from the cache's copy of the object, as upstream's GuaranteedUpdate does:
//!   one store request per update when the cache is current, and the same answers as a store
//!   read when it lags (a resourceVersion precondition the copy does not match, an update that
//!   changes nothing);
//! - a watcher that stops reading for a while still gets every event, from the history, once
//!   it reads again.

mod common;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use common::{ApiServer, User};
use serde_json::{json, Value};

fn template(name: &str, image: &str, rv: Option<&str>) -> String {
    let mut meta = json!({ "name": name });
    if let Some(rv) = rv {
        meta["resourceVersion"] = json!(rv);
    }
    json!({
        "apiVersion": "v1", "kind": "PodTemplate", "metadata": meta,
        "template": { "spec": { "containers": [{ "name": "c", "image": image }] } }
    })
    .to_string()
}

fn rv_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no resourceVersion: {body}"))
        .to_string()
}

/// The store reads (`etcd_requests_total{operation="get"}`) made for `resource` so far.
fn store_gets(k: &ApiServer, resource: &str) -> f64 {
    let label = format!("etcd_requests_total{{operation=\"get\",type=\"{resource}\"}}");
    k.ok(&["get", "--raw", "/metrics"])
        .lines()
        .find_map(|l| l.strip_prefix(label.as_str()))
        .map(|v| v.trim().parse().unwrap_or(0.0))
        .unwrap_or(0.0)
}

#[test]
fn updates_read_the_watch_cache_and_the_store_only_when_the_cache_lags() {
    let k = ApiServer::start();
    let ns = k.namespace("upd-cache");
    let path = format!("/api/v1/namespaces/{ns}/podtemplates/t");
    let put = |body: String| {
        k.raw_request(
            "PUT",
            &path,
            Some(body.as_bytes()),
            Some("application/json"),
            User::Admin,
        )
    };
    let (code, body) = k.raw_request(
        "POST",
        &format!("/api/v1/namespaces/{ns}/podtemplates"),
        Some(template("t", "busybox:0", None).as_bytes()),
        Some("application/json"),
        User::Admin,
    );
    assert_eq!(code, 201, "{body}");
    let mut rv = rv_of(&body);

    // Once the cache has caught up with each write, updates make no store reads at all.
    let before = store_gets(&k, "podtemplates");
    for i in 1..=10 {
        // A GET at a resourceVersion is served by the cache once it has reached it.
        let (code, body) = k.raw_request(
            "GET",
            &format!("{path}?resourceVersion={rv}"),
            None,
            None,
            User::Admin,
        );
        assert_eq!(code, 200, "{body}");
        let (code, body) = put(template("t", &format!("busybox:{i}"), Some(&rv)));
        assert_eq!(code, 200, "update {i}: {body}");
        rv = rv_of(&body);
    }
    let gets = store_gets(&k, "podtemplates") - before;
    assert_eq!(
        gets, 0.0,
        "updates read the store although the cache was current"
    );

    // Back to back, each with the resourceVersion the previous one returned: the cache may
    // not have it yet, which must never turn into a 409.
    for i in 11..=40 {
        let (code, body) = put(template("t", &format!("busybox:{i}"), Some(&rv)));
        assert_eq!(
            code, 200,
            "update {i} with the latest resourceVersion: {body}"
        );
        rv = rv_of(&body);
    }

    // A stale resourceVersion is still a conflict.
    let (code, body) = put(template("t", "busybox:stale", Some("1")));
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains("the object has been modified; please apply your changes to the latest version and try again"),
        "{body}"
    );

    // An update that changes nothing answers with the current object, not the cache's copy.
    let (code, body) = put(template("t", "busybox:final", Some(&rv)));
    assert_eq!(code, 200, "{body}");
    let latest = rv_of(&body);
    let (code, body) = put(template("t", "busybox:final", None));
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        rv_of(&body),
        latest,
        "a no-op update wrote or answered stale: {body}"
    );
    let got = k.json(&["get", "podtemplate", "t", "-n", &ns]);
    assert_eq!(
        got["template"]["spec"]["containers"][0]["image"], "busybox:final",
        "{got:#}"
    );
    assert_eq!(got["metadata"]["resourceVersion"], json!(latest), "{got:#}");
}

#[test]
fn a_watcher_that_stops_reading_still_gets_every_event_in_order() {
    // 16 KiB each: far more than a pipe and the sockets hold, so the server's watch task
    // blocks and its live channel (1,024 events) overflows long before the last update.
    const UPDATES: usize = 1_500;
    let k = ApiServer::start();
    let ns = k.namespace("slow-watch");
    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    let cm = |i: usize, pad: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
               "data": {"i": i.to_string(), "pad": pad}})
        .to_string()
    };
    let pad = "x".repeat(16 * 1024);
    let (code, body) = k.raw_request(
        "POST",
        &path,
        Some(cm(0, "").as_bytes()),
        Some("application/json"),
        User::Admin,
    );
    assert_eq!(code, 201, "{body}");
    let rv = rv_of(&body);
    let mut watch = k.spawn_stream(
        &format!("{path}?watch=1&resourceVersion={rv}&timeoutSeconds=300"),
        User::Admin,
    );
    let stdout = watch.stdout.take().expect("stdout");
    for i in 1..=UPDATES {
        let (code, body) = k.raw_request(
            "PUT",
            &format!("{path}/big"),
            Some(cm(i, &pad).as_bytes()),
            Some("application/json"),
            User::Admin,
        );
        assert_eq!(code, 200, "update {i}: {body}");
    }
    // Now read: every update, in order, none missing, and the watch still open.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = 0usize;
    while seen < UPDATES {
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(e) => {
                let _ = watch.kill();
                panic!("the watch ended or stalled after {seen} of {UPDATES} events: {e}");
            }
        };
        let ev: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        match ev["type"].as_str() {
            Some("MODIFIED") => {
                seen += 1;
                assert_eq!(
                    ev["object"]["data"]["i"],
                    json!(seen.to_string()),
                    "event {seen} out of order"
                );
            }
            Some("BOOKMARK") => {}
            _ => panic!(
                "unexpected event after {seen}: {}",
                &line[..line.len().min(300)]
            ),
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn the_kubernetes_service_check_reads_the_cache_not_the_store() {
    let k = ApiServer::start();
    // Point the kubernetes EndpointSlice elsewhere; the apiserver's 10 s check puts it back.
    k.ok(&[
        "patch",
        "endpointslice",
        "kubernetes",
        "-n",
        "default",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/endpoints/0/addresses/0","value":"192.0.2.1"}]"#,
    ]);
    let before = store_gets(&k, "bootstrap");
    common::eventually(
        "the EndpointSlice is repaired",
        Duration::from_secs(30),
        || {
            let slice = k.json(&["get", "endpointslice", "kubernetes", "-n", "default"]);
            let addr = &slice["endpoints"][0]["addresses"][0];
            if *addr == json!("127.0.0.1") {
                Ok(())
            } else {
                Err(format!("address {addr}"))
            }
        },
    );
    let gets = store_gets(&k, "bootstrap") - before;
    assert_eq!(
        gets, 0.0,
        "the periodic check read the store although the cache had the objects"
    );
}
