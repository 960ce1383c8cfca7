//! The control plane together: kube-apiserver, kube-scheduler and kube-controller-manager as
//! real processes under their own identities, with stand-in kubelets for five nodes. A
//! Deployment made with `kubectl create deployment` spreads over the nodes it may use, rolls,
//! undoes, scales and is garbage-collected.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "../../controller-manager/tests/kcm/mod.rs"]
mod kcm;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use kcm::{free_port, sibling_binary, ApiServer, FakeNode, FakeNodes, Kcm};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(90);

fn scheduler_binary() -> PathBuf {
    std::env::var_os("KUBE_SCHEDULER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| sibling_binary("kube-scheduler"))
}

/// A kube-scheduler process as system:kube-scheduler; killed on drop (log printed on failure).
struct Scheduler {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Scheduler {
    fn start(server: &ApiServer, extra: &[&str]) -> Self {
        let kubeconfig = server.kubeconfig_for_cert("system:kube-scheduler", &[]);
        let port = free_port();
        let log = server.dir().join(format!("scheduler-{port}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut args = vec![
            format!("--kubeconfig={}", kubeconfig.display()),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={port}"),
            format!(
                "--cert-dir={}",
                server.dir().join(format!("sched-certs-{port}")).display()
            ),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(scheduler_binary())
            .args(&args)
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone"))
            .stderr(file)
            .spawn()
            .expect("spawn kube-scheduler");
        Scheduler { child, log, port }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(60);
            eprintln!("---- kube-scheduler log\n{}", lines[start..].join("\n"));
        }
    }
}

/// Polls `cond` until it yields a value, running `invariant` (which panics on a violation) on
/// every round.
fn poll<T>(desc: &str, mut invariant: impl FnMut(), mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        invariant();
        if let Some(v) = cond() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {desc}");
        thread::sleep(Duration::from_millis(200));
    }
}

/// The live (not terminating) pods of `app` in `ns`.
fn pods(server: &ApiServer, ns: &str, app: &str) -> Vec<Value> {
    let out = server.kubectl(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        &format!("app={app}"),
        "-o",
        "json",
    ]);
    if !out.success() {
        return Vec::new();
    }
    out.json()["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| !p["metadata"]["deletionTimestamp"].is_string())
        .collect()
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// How many pods of the list sit on each node (unscheduled ones under "").
fn per_node(pods: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for p in pods {
        let node = p["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        *counts.entry(node).or_insert(0) += 1;
    }
    counts
}

/// `kubectl create deployment ... -o json` with `edit` applied to the object, then created.
fn create_deployment(server: &ApiServer, ns: &str, args: &[&str], edit: impl FnOnce(&mut Value)) {
    let mut full = vec!["create", "deployment", "-n", ns];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--dry-run=client", "-o", "json"]);
    let mut obj: Value = serde_json::from_str(&server.ok(&full)).expect("deployment json");
    edit(&mut obj);
    server.ok_stdin(&["create", "-f", "-"], &obj.to_string());
}

fn rollout_status(server: &ApiServer, ns: &str, name: &str) {
    let out = server.kubectl(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "-n",
        ns,
        "--timeout=90s",
    ]);
    assert!(out.success(), "rollout status {name} failed\n{out}");
}

#[test]
fn deployments_spread_over_eligible_nodes_roll_undo_scale_and_are_collected() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &[]);
    let _sched = Scheduler::start(&server, &["--leader-elect=false"]);
    let zone = |z: &str| json!({"topology.kubernetes.io/zone": z, "disk": "ssd"});
    let _nodes = FakeNodes::start_nodes(
        &server,
        &[
            FakeNode::new("n1").cpu("2").labels(zone("a")),
            FakeNode::new("n2").cpu("2").labels(zone("b")),
            FakeNode::new("n3").cpu("2").labels(zone("c")),
            FakeNode::new("gpu")
                .cpu("8")
                .labels(zone("a"))
                .taints(json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])),
            FakeNode::new("hdd")
                .cpu("8")
                .labels(json!({"topology.kubernetes.io/zone": "b", "disk": "hdd"})),
        ],
    );
    let ns = "shop";
    server.ok(&["create", "namespace", ns]);
    kcm::eventually("default service account", || {
        kcm::exists(&server, &["get", "serviceaccount", "default", "-n", ns])
    });

    // web: 6 replicas, 500m each, only on ssd nodes, spread evenly over zones.
    create_deployment(
        &server,
        ns,
        &["web", "--image=busybox", "--replicas=6"],
        |d| {
            let spec = &mut d["spec"]["template"]["spec"];
            spec["nodeSelector"] = json!({"disk": "ssd"});
            spec["containers"][0]["resources"] = json!({"requests": {"cpu": "500m"}});
            spec["topologySpreadConstraints"] = json!([{
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "web"}},
            }]);
        },
    );
    rollout_status(&server, ns, "web");
    let web = pods(&server, ns, "web");
    assert_eq!(web.len(), 6);
    let counts = per_node(&web);
    assert!(
        !counts.contains_key("gpu") && !counts.contains_key("hdd") && !counts.contains_key(""),
        "web pods on an ineligible node: {counts:?}"
    );
    // Zones a (n1), b (n2), c (n3): 2 each; 2 x 500m fills half of each 2-CPU node.
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{counts:?}"
    );

    // cache: one per node by required anti-affinity; tolerates the gpu node.
    create_deployment(
        &server,
        ns,
        &["cache", "--image=busybox", "--replicas=4"],
        |d| {
            let spec = &mut d["spec"]["template"]["spec"];
            spec["nodeSelector"] = json!({"disk": "ssd"});
            spec["tolerations"] = json!([{"key": "dedicated", "operator": "Equal",
                                          "value": "gpu", "effect": "NoSchedule"}]);
            spec["affinity"] = json!({"podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchLabels": {"app": "cache"}},
                    "topologyKey": "kubernetes.io/hostname",
                }],
            }});
        },
    );
    rollout_status(&server, ns, "cache");
    let counts = per_node(&pods(&server, ns, "cache"));
    assert_eq!(
        counts.keys().cloned().collect::<Vec<_>>(),
        vec!["gpu", "n1", "n2", "n3"],
        "{counts:?}"
    );
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    // A fifth replica has nowhere to go: it stays Pending with the scheduler's reason.
    server.ok(&["scale", "deployment", "cache", "-n", ns, "--replicas=5"]);
    let pending = poll(
        "the fifth cache pod is unschedulable",
        || {},
        || {
            pods(&server, ns, "cache").into_iter().find(|p| {
                p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter().any(|c| {
                        c["type"] == "PodScheduled"
                            && c["status"] == "False"
                            && c["reason"] == "Unschedulable"
                    })
                })
            })
        },
    );
    let message = pending["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(message.starts_with("0/5 nodes are available:"), "{message}");
    server.ok(&["scale", "deployment", "cache", "-n", ns, "--replicas=4"]);

    // A new image rolls with maxUnavailable 25% (1 of 6) and maxSurge 25% (2) respected on
    // every observed state.
    server.ok(&[
        "set",
        "image",
        "deployment/web",
        "-n",
        ns,
        "busybox=busybox:1.37",
    ]);
    let mut min_ready = usize::MAX;
    let mut max_pods = 0;
    poll(
        "web rolled to busybox:1.37",
        || {
            let web = pods(&server, ns, "web");
            min_ready = min_ready.min(web.iter().filter(|p| ready(p)).count());
            max_pods = max_pods.max(web.len());
        },
        || {
            let d = server.json(&["get", "deployment", "web", "-n", ns]);
            let s = &d["status"];
            let done = s["updatedReplicas"] == 6
                && s["availableReplicas"] == 6
                && s["replicas"] == 6
                && s["observedGeneration"] == d["metadata"]["generation"];
            done.then_some(())
        },
    );
    assert!(min_ready >= 5, "maxUnavailable violated: {min_ready} ready");
    assert!(max_pods <= 8, "maxSurge violated: {max_pods} pods");
    rollout_status(&server, ns, "web");

    // Undo returns to the previous template.
    server.ok(&["rollout", "undo", "deployment/web", "-n", ns]);
    rollout_status(&server, ns, "web");
    let image = server.ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "busybox");
    let images: Vec<String> = pods(&server, ns, "web")
        .iter()
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(images.iter().all(|i| i == "busybox"), "{images:?}");

    // Scale to zero and back.
    server.ok(&["scale", "deployment", "web", "-n", ns, "--replicas=0"]);
    poll(
        "web scaled to zero",
        || {},
        || pods(&server, ns, "web").is_empty().then_some(()),
    );
    server.ok(&["scale", "deployment", "web", "-n", ns, "--replicas=6"]);
    rollout_status(&server, ns, "web");
    assert_eq!(
        pods(&server, ns, "web").iter().filter(|p| ready(p)).count(),
        6
    );

    // Deleting the Deployment collects its ReplicaSets and pods.
    server.ok(&["delete", "deployment", "web", "-n", ns]);
    poll(
        "web's replica sets and pods collected",
        || {},
        || {
            let rs = server.ok(&["get", "rs", "-n", ns, "-l", "app=web", "-o", "name"]);
            (rs.trim().is_empty() && pods(&server, ns, "web").is_empty()).then_some(())
        },
    );
}

/// Whether the process logging to `log` has acquired its leader lease.
fn leads(log: &std::path::Path) -> bool {
    std::fs::read_to_string(log).is_ok_and(|l| l.contains("successfully acquired lease"))
}

const FAST_ELECTION: [&str; 4] = [
    "--leader-elect=true",
    "--leader-elect-lease-duration=4s",
    "--leader-elect-renew-deadline=3s",
    "--leader-elect-retry-period=500ms",
];

#[test]
fn killing_both_leaders_mid_rollout_converges_without_binding_any_pod_twice() {
    let server = ApiServer::start();
    let mut kcms = [Kcm::start(&server, &[]), Kcm::start(&server, &[])];
    let mut scheds = [
        Scheduler::start(&server, &FAST_ELECTION),
        Scheduler::start(&server, &FAST_ELECTION),
    ];
    let _nodes = FakeNodes::start_nodes(
        &server,
        &[
            FakeNode::new("n1").cpu("8"),
            FakeNode::new("n2").cpu("8"),
            FakeNode::new("n3").cpu("8"),
        ],
    );
    let ns = "ha";
    server.ok(&["create", "namespace", ns]);
    kcm::eventually("default service account", || {
        kcm::exists(&server, &["get", "serviceaccount", "default", "-n", ns])
    });

    // Every binding ever observed: a pod's node, once set, never changes.
    let mut bound: BTreeMap<String, String> = BTreeMap::new();
    let mut check_bindings = || {
        let out = server.kubectl(&["get", "pods", "-n", ns, "-o", "json"]);
        if !out.success() {
            return;
        }
        for p in out.json()["items"].as_array().cloned().unwrap_or_default() {
            let (Some(uid), Some(node)) = (
                p["metadata"]["uid"].as_str(),
                p["spec"]["nodeName"].as_str(),
            ) else {
                continue;
            };
            let first = bound
                .entry(uid.to_owned())
                .or_insert_with(|| node.to_owned());
            assert_eq!(first, node, "pod {} was bound twice", p["metadata"]["name"]);
        }
    };

    create_deployment(
        &server,
        ns,
        &["web", "--image=busybox", "--replicas=10"],
        |d| {
            // minReadySeconds makes the rollout take several seconds, so the kill lands in it.
            d["spec"]["minReadySeconds"] = json!(2);
            d["spec"]["template"]["spec"]["containers"][0]["resources"] =
                json!({"requests": {"cpu": "100m"}});
        },
    );
    poll("web rolled out", &mut check_bindings, || {
        let d = server.json(&["get", "deployment", "web", "-n", ns]);
        (d["status"]["availableReplicas"] == 10).then_some(())
    });
    let kcm_leader = kcms
        .iter()
        .position(|k| leads(&k.log))
        .expect("a controller-manager leads");
    let sched_leader = scheds
        .iter()
        .position(|s| leads(&s.log))
        .expect("a scheduler leads");
    assert!(
        !leads(&kcms[1 - kcm_leader].log),
        "two controller-managers lead"
    );
    assert!(!leads(&scheds[1 - sched_leader].log), "two schedulers lead");

    // Mid-rollout, kill -9 both leaders.
    server.ok(&[
        "set",
        "image",
        "deployment/web",
        "-n",
        ns,
        "busybox=busybox:1.37",
    ]);
    poll("the rollout has started", &mut check_bindings, || {
        pods(&server, ns, "web")
            .iter()
            .any(|p| p["spec"]["containers"][0]["image"] == "busybox:1.37")
            .then_some(())
    });
    kcms[kcm_leader]
        .child
        .kill()
        .expect("kill controller-manager");
    scheds[sched_leader].child.kill().expect("kill scheduler");

    // The standbys take over (the dead leaders' leases expire after 4 s) and finish the job.
    poll("the standbys lead", &mut check_bindings, || {
        (leads(&kcms[1 - kcm_leader].log) && leads(&scheds[1 - sched_leader].log)).then_some(())
    });
    poll("web converged on busybox:1.37", &mut check_bindings, || {
        let d = server.json(&["get", "deployment", "web", "-n", ns]);
        let s = &d["status"];
        let converged = s["updatedReplicas"] == 10
            && s["availableReplicas"] == 10
            && s["replicas"] == 10
            && s["observedGeneration"] == d["metadata"]["generation"];
        let web = pods(&server, ns, "web");
        let exact = web.len() == 10
            && web
                .iter()
                .all(|p| ready(p) && p["spec"]["containers"][0]["image"] == "busybox:1.37");
        (converged && exact).then_some(())
    });
    // The old ReplicaSet is scaled to zero, and nothing extra appears afterwards.
    let sets = server.json(&["get", "rs", "-n", ns]);
    let replicas: Vec<i64> = sets["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|rs| rs["spec"]["replicas"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(replicas.iter().sum::<i64>(), 10, "{replicas:?}");
    check_bindings();
    let holder = server.json(&["get", "lease", "kube-scheduler", "-n", "kube-system"]);
    assert!(holder["spec"]["holderIdentity"].is_string(), "{holder}");
}

#[test]
fn a_high_priority_pod_preempts_a_lower_one_and_the_controller_replaces_the_victim() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &[]);
    let _sched = Scheduler::start(&server, &["--leader-elect=false"]);
    let _nodes = FakeNodes::start_nodes(&server, &[FakeNode::new("only").cpu("1")]);
    let ns = "prio";
    server.ok(&["create", "namespace", ns]);
    kcm::eventually("default service account", || {
        kcm::exists(&server, &["get", "serviceaccount", "default", "-n", ns])
    });
    server.ok(&["create", "priorityclass", "high", "--value=1000"]);
    server.ok(&["create", "priorityclass", "low", "--value=10"]);

    create_deployment(
        &server,
        ns,
        &["batch", "--image=busybox", "--replicas=1"],
        |d| {
            let spec = &mut d["spec"]["template"]["spec"];
            spec["priorityClassName"] = json!("low");
            spec["containers"][0]["resources"] = json!({"requests": {"cpu": "700m"}});
        },
    );
    rollout_status(&server, ns, "batch");
    let victim = pods(&server, ns, "batch")[0]["metadata"]["name"]
        .as_str()
        .expect("victim name")
        .to_owned();

    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "urgent", "namespace": ns},
        "spec": {
            "priorityClassName": "high",
            "containers": [{"name": "c", "image": "busybox",
                            "resources": {"requests": {"cpu": "700m"}}}],
        },
    });
    server.ok_stdin(&["create", "-f", "-"], &pod.to_string());
    poll(
        "urgent is bound to the only node",
        || {},
        || {
            let p = server.json(&["get", "pod", "urgent", "-n", ns]);
            (p["spec"]["nodeName"] == "only").then_some(())
        },
    );
    // The victim was evicted; its replacement cannot fit next to urgent and waits.
    assert!(
        !pods(&server, ns, "batch")
            .iter()
            .any(|p| p["metadata"]["name"] == victim.as_str()),
        "the low-priority pod was not preempted"
    );
    let replacement = poll(
        "the replacement is unschedulable",
        || {},
        || {
            pods(&server, ns, "batch").into_iter().find(|p| {
                p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")
                })
            })
        },
    );
    assert!(replacement["spec"]["nodeName"].is_null(), "{replacement}");
}

/// A Prometheus process; killed on drop.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_every_control_plane_component_with_a_service_account_token() {
    let server = ApiServer::start();
    let kcm = Kcm::start(&server, &[]);
    let sched = Scheduler::start(&server, &["--leader-elect=false"]);
    // Prometheus authenticates as a ServiceAccount bound to system:monitoring, as a cluster's
    // monitoring stack does; the components check it with TokenReview + SubjectAccessReview.
    server.ok(&[
        "create",
        "serviceaccount",
        "prometheus",
        "-n",
        "kube-system",
    ]);
    server.ok(&[
        "create",
        "clusterrolebinding",
        "prometheus",
        "--clusterrole=system:monitoring",
        "--serviceaccount=kube-system:prometheus",
    ]);
    let token = server.ok(&["create", "token", "prometheus", "-n", "kube-system"]);
    let dir = server.dir().join("prometheus");
    std::fs::create_dir_all(&dir).expect("prometheus dir");
    let token_file = dir.join("token");
    std::fs::write(&token_file, token.trim()).expect("token file");
    let job = |name: &str, port: u16| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config: {{insecure_skip_verify: true}}\n    authorization: {{credentials_file: {}}}\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n",
            token_file.display()
        )
    };
    let config = format!(
        "global: {{scrape_interval: 1s}}\nscrape_configs:\n{}{}{}",
        job("kube-apiserver", server.port),
        job("kube-scheduler", sched.port),
        job("kube-controller-manager", kcm.port),
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("config");
    let port = free_port();
    let _prom = Prometheus(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed by make deps"),
    );
    let query = |q: &str| -> Value {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5", "--get", "--data-urlencode"])
            .arg(format!("query={q}"))
            .arg(format!("http://127.0.0.1:{port}/api/v1/query"))
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    let up = poll(
        "prometheus scrapes all three components",
        || {},
        || {
            let answer = query("up");
            let results = answer["data"]["result"].as_array()?.clone();
            let up: BTreeMap<String, String> = results
                .iter()
                .map(|r| {
                    (
                        r["metric"]["job"].as_str().unwrap_or_default().to_owned(),
                        r["value"][1].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            (up.len() == 3 && up.values().all(|v| v == "1")).then_some(up)
        },
    );
    assert_eq!(up.len(), 3, "{up:?}");
    // Each component's own series arrived.
    for (job, metric) in [
        ("kube-scheduler", "scheduler_pending_pods"),
        ("kube-controller-manager", "process_resident_memory_bytes"),
        ("kube-apiserver", "apiserver_request_total"),
    ] {
        poll(
            &format!("{metric} from {job}"),
            || {},
            || {
                let answer = query(&format!("count({metric}{{job=\"{job}\"}})"));
                answer["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
                    .then_some(())
            },
        );
    }
}
