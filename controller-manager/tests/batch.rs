//! The batch controllers against the real apiserver and kube-controller-manager: Jobs run to
//! completion within their parallelism or fail as their policies say, CronJobs start Jobs, finished
//! Jobs expire, and podgc removes terminated and orphaned pods. The tests play the kubelet by
//! writing pod status.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "kcm/mod.rs"]
mod kcm;

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use kcm::{eventually, exists, ApiServer, Kcm};
use serde_json::{json, Value};

/// Creates a namespace and waits for the controller-made default ServiceAccount (pods need it).
fn namespace(server: &ApiServer, ns: &str) {
    server.ok(&["create", "namespace", ns]);
    eventually("default service account", || {
        exists(server, &["get", "serviceaccount", "default", "-n", ns])
    });
}

fn job_pods(server: &ApiServer, ns: &str, job: &str) -> Vec<Value> {
    let out = server.kubectl(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        &format!("batch.kubernetes.io/job-name={job}"),
        "-o",
        "json",
    ]);
    if !out.success() {
        return Vec::new();
    }
    out.json()["items"].as_array().cloned().unwrap_or_default()
}

fn is_active(pod: &Value) -> bool {
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    phase != "Succeeded" && phase != "Failed" && !pod["metadata"]["deletionTimestamp"].is_string()
}

fn patch_status(server: &ApiServer, ns: &str, name: &str, status: Value) -> bool {
    server
        .kubectl(&[
            "patch",
            "pod",
            name,
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            &json!({ "status": status }).to_string(),
        ])
        .success()
}

/// Plays the kubelet: the pod runs, then its first container exits with `exit_code`.
fn finish_pod(server: &ApiServer, ns: &str, pod: &Value, exit_code: i32) {
    let name = pod["metadata"]["name"].as_str().expect("pod name");
    let container = pod["spec"]["containers"][0]["name"]
        .as_str()
        .expect("container name");
    let image = pod["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("busybox");
    patch_status(server, ns, name, json!({"phase": "Running"}));
    let phase = if exit_code == 0 {
        "Succeeded"
    } else {
        "Failed"
    };
    let reason = if exit_code == 0 { "Completed" } else { "Error" };
    patch_status(
        server,
        ns,
        name,
        json!({
            "phase": phase,
            "containerStatuses": [{
                "name": container,
                "image": image,
                "imageID": "",
                "ready": false,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code, "reason": reason}},
            }],
        }),
    );
}

fn job(server: &ApiServer, ns: &str, name: &str) -> Value {
    server.json(&["get", "job", name, "-n", ns])
}

fn condition<'a>(job: &'a Value, type_: &str) -> Option<&'a Value> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

/// Finishes every active pod of `job` with `exit_code` until `done` holds for the Job; returns the
/// most pods seen active at once.
fn drive(
    server: &ApiServer,
    ns: &str,
    name: &str,
    exit_code: i32,
    done: impl Fn(&Value) -> bool,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut max_active = 0;
    loop {
        let j = job(server, ns, name);
        if done(&j) {
            return max_active;
        }
        assert!(
            Instant::now() < deadline,
            "job {name} did not get there: {j}"
        );
        let pods = job_pods(server, ns, name);
        let active: Vec<&Value> = pods.iter().filter(|p| is_active(p)).collect();
        max_active = max_active.max(active.len());
        for pod in active {
            finish_pod(server, ns, pod, exit_code);
        }
        thread::sleep(Duration::from_millis(200));
    }
}

const PARALLEL_JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: four}
spec:
  completions: 4
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: work, image: busybox}]
"#;

#[test]
fn job_with_four_completions_and_parallelism_two_completes_without_exceeding_two_pods() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &[]);
    let ns = "batch";
    namespace(&server, ns);
    server.ok_stdin(&["apply", "-n", ns, "-f", "-"], PARALLEL_JOB);
    let waiter = server.spawn_kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/four",
        "-n",
        ns,
        "--timeout=90s",
    ]);
    let max_active = drive(&server, ns, "four", 0, |j| {
        condition(j, "Complete").is_some()
    });
    assert!(
        max_active <= 2,
        "parallelism 2 exceeded: {max_active} active"
    );
    assert!(max_active >= 1, "no pod ever ran");
    let out = server.ok(&[
        "wait",
        "--for=condition=complete",
        "job/four",
        "-n",
        ns,
        "--timeout=30s",
    ]);
    assert!(out.contains("condition met"), "{out}");
    drop(waiter);

    let j = job(&server, ns, "four");
    let status = &j["status"];
    assert_eq!(status["succeeded"], 4, "{status}");
    assert!(
        status["failed"].is_null() || status["failed"] == 0,
        "{status}"
    );
    assert!(status["startTime"].is_string(), "{status}");
    assert!(status["completionTime"].is_string(), "{status}");
    assert!(condition(&j, "SuccessCriteriaMet").is_some(), "{status}");
    assert_eq!(
        condition(&j, "Complete").expect("complete")["reason"],
        "CompletionsReached"
    );
    // One SuccessfulCreate event per pod, as upstream's job controller records.
    kcm::eventually("a SuccessfulCreate event per pod", || {
        kcm::events(&server, ns, "Job", "SuccessfulCreate", "job-controller").len() == 4
    });
    kcm::eventually("a Completed event", || {
        kcm::events(&server, ns, "Job", "Completed", "job-controller")
            .iter()
            .any(|e| e["message"] == "Job completed" && e["involvedObject"]["name"] == "four")
    });

    // The pods: owned by the Job, labelled, named <job>-<random5>, and released once counted.
    let uid = j["metadata"]["uid"].as_str().expect("uid");
    let pods = job_pods(&server, ns, "four");
    assert_eq!(pods.len(), 4, "one pod per completion");
    for pod in &pods {
        let name = pod["metadata"]["name"].as_str().expect("name");
        let suffix = name.strip_prefix("four-").expect("generateName four-");
        assert_eq!(suffix.len(), 5, "{name}");
        let labels = &pod["metadata"]["labels"];
        assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
        assert_eq!(labels["controller-uid"], uid);
        assert_eq!(labels["batch.kubernetes.io/job-name"], "four");
        assert_eq!(labels["job-name"], "four");
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Job");
        assert_eq!(owner["uid"], uid);
        assert_eq!(owner["controller"], true);
        assert_eq!(owner["blockOwnerDeletion"], true);
        let finalizers = pod["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            !finalizers
                .iter()
                .any(|f| f == "batch.kubernetes.io/job-tracking"),
            "tracking finalizer kept on a counted pod: {pod}"
        );
    }

    // Regression guard: a finished Job's status is not rewritten in a loop.
    let rv = j["metadata"]["resourceVersion"].clone();
    thread::sleep(Duration::from_secs(2));
    assert_eq!(job(&server, ns, "four")["metadata"]["resourceVersion"], rv);

    // `kubectl create job` gives a runnable Job too.
    server.ok(&["create", "job", "once", "-n", ns, "--image=busybox"]);
    drive(&server, ns, "once", 0, |j| {
        condition(j, "Complete").is_some()
    });
    server.ok(&[
        "wait",
        "--for=condition=complete",
        "job/once",
        "-n",
        ns,
        "--timeout=30s",
    ]);
}

#[test]
fn failing_pods_exhaust_the_backoff_limit_and_deadlines_fail_running_jobs() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &[]);
    let ns = "fail";
    namespace(&server, ns);
    server.ok_stdin(
        &["apply", "-n", ns, "-f", "-"],
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: flaky}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers: [{name: work, image: busybox}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: slow}
spec:
  activeDeadlineSeconds: 2
  parallelism: 2
  completions: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: work, image: busybox}]
"#,
    );
    // Two failures (the second after the controller's 10s backoff) exceed backoffLimit 1.
    drive(&server, ns, "flaky", 1, |j| {
        condition(j, "Failed").is_some()
    });
    let j = job(&server, ns, "flaky");
    let failed = condition(&j, "Failed").expect("failed");
    assert_eq!(failed["reason"], "BackoffLimitExceeded", "{j}");
    assert_eq!(
        failed["message"],
        "Job has reached the specified backoff limit"
    );
    assert!(condition(&j, "FailureTarget").is_some(), "{j}");
    assert_eq!(j["status"]["failed"], 2, "{j}");
    kcm::eventually("a BackoffLimitExceeded warning", || {
        kcm::events(&server, ns, "Job", "BackoffLimitExceeded", "job-controller")
            .iter()
            .any(|e| e["type"] == "Warning" && e["involvedObject"]["name"] == "flaky")
    });
    server.ok(&[
        "wait",
        "--for=condition=failed",
        "job/flaky",
        "-n",
        ns,
        "--timeout=10s",
    ]);

    // Nobody finishes the slow Job's pods: the deadline fails it and its pods go.
    eventually("deadline exceeded", || {
        condition(&job(&server, ns, "slow"), "Failed")
            .is_some_and(|c| c["reason"] == "DeadlineExceeded")
    });
    let j = job(&server, ns, "slow");
    assert!(
        j["status"]["active"].is_null() || j["status"]["active"] == 0,
        "{j}"
    );
    eventually("slow job's pods deleted", || {
        job_pods(&server, ns, "slow").iter().all(|p| !is_active(p))
    });
}

#[test]
fn indexed_job_runs_one_pod_per_index_and_reports_completed_indexes() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &[]);
    let ns = "indexed";
    namespace(&server, ns);
    server.ok_stdin(
        &["apply", "-n", ns, "-f", "-"],
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: idx}
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers: [{name: work, image: busybox}]
"#,
    );
    eventually("three indexed pods", || {
        job_pods(&server, ns, "idx").len() == 3
    });
    let pods = job_pods(&server, ns, "idx");
    let mut indexes = BTreeSet::new();
    for pod in &pods {
        let ann = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .expect("index annotation");
        let label = pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .expect("index label");
        assert_eq!(ann, label);
        assert_eq!(pod["spec"]["hostname"], format!("idx-{ann}"));
        let name = pod["metadata"]["name"].as_str().expect("name");
        assert!(name.starts_with(&format!("idx-{ann}-")), "{name}");
        let env = pod["spec"]["containers"][0]["env"].to_string();
        assert!(env.contains("JOB_COMPLETION_INDEX"), "{env}");
        indexes.insert(ann.parse::<i32>().expect("numeric index"));
    }
    assert_eq!(indexes, BTreeSet::from([0, 1, 2]));
    drive(&server, ns, "idx", 0, |j| {
        condition(j, "Complete").is_some()
    });
    let j = job(&server, ns, "idx");
    assert_eq!(j["status"]["completedIndexes"], "0-2", "{j}");
    assert_eq!(j["status"]["succeeded"], 3, "{j}");
}

#[test]
fn pod_failure_policy_fail_job_rule_fails_the_job_on_a_matching_exit_code() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &[]);
    let ns = "pfp";
    namespace(&server, ns);
    server.ok_stdin(
        &["apply", "-n", ns, "-f", "-"],
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: strict}
spec:
  completions: 2
  parallelism: 2
  backoffLimit: 6
  podFailurePolicy:
    rules:
    - action: FailJob
      onExitCodes: {containerName: work, operator: In, values: [42]}
  template:
    spec:
      restartPolicy: Never
      containers: [{name: work, image: busybox}]
"#,
    );
    eventually("two pods", || {
        job_pods(&server, ns, "strict")
            .iter()
            .filter(|p| is_active(p))
            .count()
            == 2
    });
    let pods = job_pods(&server, ns, "strict");
    finish_pod(&server, ns, &pods[0], 42);
    eventually("job failed by the policy", || {
        condition(&job(&server, ns, "strict"), "Failed").is_some()
    });
    let j = job(&server, ns, "strict");
    let failed = condition(&j, "Failed").expect("failed");
    assert_eq!(failed["reason"], "PodFailurePolicy", "{j}");
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("failed with exit code 42 matching FailJob rule at index 0"),
        "{message}"
    );
    // The other pod was stopped; one failure, far below backoffLimit, was enough.
    assert!(
        job_pods(&server, ns, "strict")
            .iter()
            .all(|p| !is_active(p)),
        "an active pod survived the failed job"
    );
}

#[test]
fn cronjob_starts_a_job_each_minute_and_kubectl_can_start_one_from_it() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &[]);
    let ns = "cron";
    namespace(&server, ns);
    server.ok(&[
        "create",
        "cronjob",
        "tick",
        "-n",
        ns,
        "--image=busybox",
        "--schedule=*/1 * * * *",
    ]);
    let cj = server.json(&["get", "cronjob", "tick", "-n", ns]);
    let cj_uid = cj["metadata"]["uid"].as_str().expect("uid").to_owned();

    // kubectl create job --from: the Job controller runs it like any other.
    server.ok(&["create", "job", "manual", "-n", ns, "--from=cronjob/tick"]);
    let manual = job(&server, ns, "manual");
    assert_eq!(
        manual["metadata"]["ownerReferences"][0]["uid"],
        cj_uid.as_str()
    );
    drive(&server, ns, "manual", 0, |j| {
        condition(j, "Complete").is_some()
    });

    // The scheduled one: named <cronjob>-<minutes since epoch>, within about a minute.
    let deadline = Instant::now() + Duration::from_secs(75);
    let scheduled = loop {
        let jobs = server.json(&["get", "jobs", "-n", ns]);
        let found = jobs["items"].as_array().and_then(|items| {
            items
                .iter()
                .find(|j| {
                    j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
                        .is_string()
                })
                .cloned()
        });
        if let Some(j) = found {
            break j;
        }
        assert!(Instant::now() < deadline, "no scheduled job: {jobs}");
        thread::sleep(Duration::from_millis(500));
    };
    let name = scheduled["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_owned();
    let stamp = scheduled["metadata"]["annotations"]
        ["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .expect("timestamp");
    let minutes: i64 = name
        .strip_prefix("tick-")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("job name {name} is not tick-<minutes>"));
    let stamp_secs = k8s_openapi::chrono::DateTime::parse_from_rfc3339(stamp)
        .expect("RFC 3339 timestamp")
        .timestamp();
    assert_eq!(minutes * 60, stamp_secs, "{name} vs {stamp}");
    assert_eq!(
        scheduled["metadata"]["ownerReferences"][0]["uid"],
        cj_uid.as_str()
    );
    eventually("cronjob status lists the active job", || {
        let cj = server.json(&["get", "cronjob", "tick", "-n", ns]);
        cj["status"]["lastScheduleTime"].is_string()
            && cj["status"]["active"]
                .as_array()
                .is_some_and(|a| a.iter().any(|r| r["name"] == name.as_str()))
    });
    drive(&server, ns, &name, 0, |j| {
        condition(j, "Complete").is_some()
    });
    eventually("cronjob saw the job succeed", || {
        let cj = server.json(&["get", "cronjob", "tick", "-n", ns]);
        cj["status"]["lastSuccessfulTime"].is_string() && cj["status"]["active"].is_null()
    });
    let saw = format!("Saw completed job: {name}, condition: Complete");
    eventually("a SawCompletedJob event", || {
        kcm::events(
            &server,
            ns,
            "CronJob",
            "SawCompletedJob",
            "cronjob-controller",
        )
        .iter()
        .any(|e| e["message"] == saw.as_str())
    });
}

#[test]
fn finished_job_with_a_ttl_is_deleted_with_its_pods() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &[]);
    let ns = "ttl";
    namespace(&server, ns);
    server.ok_stdin(
        &["apply", "-n", ns, "-f", "-"],
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: brief}
spec:
  ttlSecondsAfterFinished: 1
  template:
    spec:
      restartPolicy: Never
      containers: [{name: work, image: busybox}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: kept}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: work, image: busybox}]
"#,
    );
    drive(&server, ns, "kept", 0, |j| {
        condition(j, "Complete").is_some()
    });
    // Deleted right after it finishes, so poll the Job's pods rather than the Job.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut finished = false;
    loop {
        let out = server.kubectl(&["get", "job", "brief", "-n", ns, "-o", "json"]);
        if !out.success() {
            break;
        }
        finished |= condition(&out.json(), "Complete").is_some();
        for pod in job_pods(&server, ns, "brief")
            .iter()
            .filter(|p| is_active(p))
        {
            finish_pod(&server, ns, pod, 0);
        }
        assert!(Instant::now() < deadline, "job with ttl was not deleted");
        thread::sleep(Duration::from_millis(200));
    }
    assert!(finished, "the job was deleted before it was seen complete");
    eventually("its pods are gone", || {
        job_pods(&server, ns, "brief").is_empty()
    });
    // A finished Job without a TTL stays.
    assert!(exists(&server, &["get", "job", "kept", "-n", ns]));
}

#[test]
fn podgc_deletes_terminated_pods_beyond_the_threshold_and_pods_of_missing_nodes() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &["--terminated-pod-gc-threshold=2"]);
    let ns = "gc";
    namespace(&server, ns);
    let pod = |name: &str, node: Option<&str>| {
        let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
            .to_string()
    };
    // Bound to a node that does not exist: collected after the 40s quarantine.
    server.ok_stdin(
        &["apply", "-n", ns, "-f", "-"],
        &pod("orphan", Some("ghost")),
    );
    for name in ["done-1", "done-2", "done-3", "done-4"] {
        server.ok_stdin(&["apply", "-n", ns, "-f", "-"], &pod(name, None));
        let p = server.json(&["get", "pod", name, "-n", ns]);
        finish_pod(&server, ns, &p, 0);
        // Distinct creation timestamps make "oldest first" observable.
        thread::sleep(Duration::from_millis(1100));
    }
    server.ok_stdin(&["apply", "-n", ns, "-f", "-"], &pod("running", None));
    eventually("two oldest terminated pods collected", || {
        !exists(&server, &["get", "pod", "done-1", "-n", ns])
            && !exists(&server, &["get", "pod", "done-2", "-n", ns])
    });
    for kept in ["done-3", "done-4", "running"] {
        assert!(
            exists(&server, &["get", "pod", kept, "-n", ns]),
            "{kept} was collected"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(100);
    while exists(&server, &["get", "pod", "orphan", "-n", ns]) {
        assert!(
            Instant::now() < deadline,
            "pod of a missing node was not collected"
        );
        thread::sleep(Duration::from_millis(500));
    }
    assert!(exists(&server, &["get", "pod", "running", "-n", ns]));
}
