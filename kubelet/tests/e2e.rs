//! The kubelet binary against the real apiserver and a private containerd: node registration,
//! pods running on the CRI with upstream-shaped status, HTTP to a pod IP, CrashLoopBackOff,
//! cgroup memory limits, graceful deletion and adoption after a kubelet restart.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "common/containerd.rs"]
mod containerd;

#[path = "common/daemon.rs"]
mod daemon;

#[path = "common/kubelet.rs"]
mod kubelet_process;

use std::fs::{self};
use std::thread;
use std::time::{Duration, Instant};

use common::{eventually, ApiServer};
use containerd::{Containerd, BUSYBOX_IMAGE};
use daemon::Daemon;
use kubelet_process::{http_get, Kubelet};

/// Deadline for pods and nodes to reach a state.
const WAIT: Duration = Duration::from_secs(60);

/// Apiserver, containerd and one kubelet whose node is Ready, and a namespace to work in.
struct Stack {
    // Field order is drop order: the kubelet stops before containerd and the apiserver.
    kubelet: Kubelet,
    containerd: Containerd,
    server: ApiServer,
    ns: String,
}

impl Stack {
    fn start(name: &str) -> Self {
        let server = ApiServer::start();
        let containerd = Containerd::start();
        let kubelet = Kubelet::start(
            &containerd,
            name,
            (200, "kbt"),
            |node| server.kubeconfig_for_cert(&format!("system:node:{node}"), &["system:nodes"]),
            &["--node-labels=kubelet-e2e=yes".to_string()],
        );
        let ns = server.namespace(name);
        // No controller-manager here: the ServiceAccount admission wants the default account.
        let _ = server.kubectl(&["create", "serviceaccount", "default", "-n", &ns]);
        let stack = Stack {
            kubelet,
            containerd,
            server,
            ns,
        };
        stack.wait_node_ready();
        stack
    }

    fn wait_node_ready(&self) {
        self.server.wait_node_ready(&self.kubelet.node, WAIT);
    }

    fn apply(&self, yaml: &str) {
        self.server
            .ok_stdin(&["apply", "-n", &self.ns, "-f", "-"], yaml);
    }

    fn pod(&self, name: &str) -> serde_json::Value {
        self.server.json(&["get", "pod", name, "-n", &self.ns])
    }

    /// Waits until the pod's first container runs and the pod is Ready; returns the pod.
    fn wait_running(&self, name: &str) -> serde_json::Value {
        eventually(&format!("pod {name} Running and Ready"), WAIT, || {
            let pod = self.pod(name);
            let running = pod["status"]["phase"] == "Running"
                && pod["status"]["containerStatuses"][0]["state"]["running"].is_object()
                && condition(&pod, "Ready") == "True";
            if running {
                Ok(pod)
            } else {
                Err(serde_json::to_string_pretty(&pod["status"]).unwrap_or_default())
            }
        })
    }

    fn pod_yaml(&self, name: &str, grace: u32, restart: &str, script: &str, extra: &str) -> String {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
    app: {name}
spec:
  nodeName: {node}
  restartPolicy: {restart}
  terminationGracePeriodSeconds: {grace}
  automountServiceAccountToken: false
  containers:
  - name: main
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", {script:?}]
{extra}"#,
            node = self.kubelet.node,
        )
    }
}

fn condition(pod: &serde_json::Value, type_: &str) -> String {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let prefix = cidr.trim_end_matches("0/24");
    ip.starts_with(prefix)
}

#[test]
fn node_registers_and_a_pod_runs_serves_http_and_gets_its_memory_limit() {
    let s = Stack::start("kl-run");

    // The Node: labels, capacity, addresses, nodeInfo, daemon endpoint; and its Lease.
    let node = s.server.json(&["get", "node", &s.kubelet.node]);
    assert_eq!(
        node["metadata"]["labels"]["kubernetes.io/hostname"],
        s.kubelet.node
    );
    assert_eq!(node["metadata"]["labels"]["kubelet-e2e"], "yes");
    for resource in ["cpu", "memory", "pods", "ephemeral-storage"] {
        assert!(
            node["status"]["capacity"][resource].is_string(),
            "capacity.{resource}: {}",
            node["status"]
        );
        assert!(node["status"]["allocatable"][resource].is_string());
    }
    assert_eq!(node["status"]["capacity"]["pods"], "110");
    // The kubelet API port it was given (10250 by default).
    let port: u16 = s
        .kubelet
        .args
        .iter()
        .find_map(|a| a.strip_prefix("--port="))
        .and_then(|p| p.parse().ok())
        .expect("--port");
    assert_eq!(
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        port
    );
    let runtime = node["status"]["nodeInfo"]["containerRuntimeVersion"]
        .as_str()
        .unwrap_or_default();
    assert!(runtime.starts_with("containerd://"), "{runtime}");
    assert!(node["status"]["nodeInfo"]["kubeletVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("v1.")));
    let addresses = node["status"]["addresses"].to_string();
    assert!(
        addresses.contains("InternalIP") && addresses.contains("127.0.0.1"),
        "{addresses}"
    );
    assert!(addresses.contains("Hostname"), "{addresses}");
    for type_ in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert!(
            node["status"]["conditions"].to_string().contains(type_),
            "{type_} condition"
        );
    }
    let lease = eventually("node lease", WAIT, || {
        let out = s.server.kubectl(&[
            "get",
            "lease",
            &s.kubelet.node,
            "-n",
            "kube-node-lease",
            "-o",
            "json",
        ]);
        if out.success() {
            Ok(out.json())
        } else {
            Err(out.to_string())
        }
    });
    assert_eq!(lease["spec"]["holderIdentity"], s.kubelet.node);
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");

    // A web server pod with a memory limit.
    s.apply(&s.pod_yaml(
        "web",
        30,
        "Always",
        "echo hello-from-pod > /var/www/index.html && exec httpd -f -p 8080 -h /var/www",
        "    resources:\n      limits:\n        memory: 64Mi\n    ports:\n    - containerPort: 8080\n",
    ));
    let pod = s.wait_running("web");
    let status = &pod["status"];
    let pod_ip = status["podIP"].as_str().expect("podIP").to_string();
    assert!(
        in_cidr(&pod_ip, &s.kubelet.pod_cidr),
        "{pod_ip} in {}",
        s.kubelet.pod_cidr
    );
    assert_eq!(status["podIPs"][0]["ip"], pod_ip.as_str());
    assert_eq!(status["hostIP"], "127.0.0.1");
    assert!(status["startTime"].is_string());
    assert_eq!(status["qosClass"], "Burstable");
    for type_ in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
    ] {
        assert_eq!(condition(&pod, type_), "True", "{type_}");
    }
    let c = &status["containerStatuses"][0];
    assert_eq!(c["name"], "main");
    assert_eq!(c["ready"], true);
    assert_eq!(c["started"], true);
    assert_eq!(c["restartCount"], 0);
    assert_eq!(c["image"], BUSYBOX_IMAGE);
    assert!(c["imageID"].as_str().is_some_and(|s| !s.is_empty()), "{c}");
    let container_id = c["containerID"].as_str().expect("containerID");
    let id = container_id
        .strip_prefix("containerd://")
        .expect("containerd:// prefix");
    assert!(s.containerd.running_tasks().iter().any(|t| t == id));

    // HTTP from the host to the pod IP over the CNI bridge.
    let body = eventually("HTTP from the pod", WAIT, || http_get(&pod_ip, 8080, "/"));
    assert_eq!(body.trim(), "hello-from-pod");

    // The memory limit reached the container's cgroup (cgroup v1 memory controller).
    let uid = pod["metadata"]["uid"].as_str().expect("uid");
    let limit_file =
        format!("/sys/fs/cgroup/memory/kubepods/burstable/pod{uid}/{id}/memory.limit_in_bytes");
    let limit = fs::read_to_string(&limit_file).unwrap_or_else(|e| panic!("{limit_file}: {e}"));
    assert_eq!(limit.trim(), (64 * 1024 * 1024).to_string());

    // The container log is in CRI format under <podLogsDir>/<ns>_<pod>_<uid>/<container>/0.log.
    let dir = s
        .kubelet
        .dir
        .join("logs")
        .join(format!("{}_web_{uid}", s.ns));
    assert!(dir.join("main").is_dir(), "{} exists", dir.display());
}

#[test]
fn a_crashing_container_restarts_with_growing_restart_count_and_crash_loop_back_off() {
    let s = Stack::start("kl-crash");
    s.apply(&s.pod_yaml("crash", 30, "Always", "echo crashing; exit 3", ""));
    // Restarted twice, and now waiting out the back-off before the third start.
    let pod = eventually(
        "restartCount >= 2 and waiting in CrashLoopBackOff",
        Duration::from_secs(90),
        || {
            let pod = s.pod("crash");
            let c = &pod["status"]["containerStatuses"][0];
            let backing_off = c["state"]["waiting"]["reason"] == "CrashLoopBackOff";
            if backing_off && c["restartCount"].as_i64().unwrap_or(0) >= 2 {
                Ok(pod)
            } else {
                Err(c.to_string())
            }
        },
    );
    let c = &pod["status"]["containerStatuses"][0];
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 3, "{c}");
    assert_eq!(c["lastState"]["terminated"]["reason"], "Error", "{c}");
    let message = c["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.starts_with("back-off "), "{message}");
    assert!(
        message.contains("restarting failed container=main"),
        "{message}"
    );
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(condition(&pod, "Ready"), "False");
    // Old instances are garbage-collected: at most current + previous per container.
    let uid = pod["metadata"]["uid"].as_str().expect("uid");
    let listed = s.containerd.ctr(&[
        "containers",
        "ls",
        &format!("labels.\"io.kubernetes.pod.uid\"=={uid}"),
    ]);
    let rows = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .skip(1)
        .count();
    // One sandbox plus at most two instances of `main`.
    assert!(rows <= 3, "{}", String::from_utf8_lossy(&listed.stdout));

    // restartPolicy Never: the pod fails and is not restarted.
    s.apply(&s.pod_yaml("once", 30, "Never", "exit 4", ""));
    let pod = eventually("pod Failed", WAIT, || {
        let pod = s.pod("once");
        if pod["status"]["phase"] == "Failed" {
            Ok(pod)
        } else {
            Err(pod["status"].to_string())
        }
    });
    let c = &pod["status"]["containerStatuses"][0];
    assert_eq!(c["state"]["terminated"]["exitCode"], 4);
    assert_eq!(c["restartCount"], 0);
}

#[test]
fn deletion_sends_sigterm_honours_the_grace_period_and_removes_the_pod() {
    let s = Stack::start("kl-delete");
    // Exits on SIGTERM at once: deleting with a 30 s grace period must not take 30 s.
    s.apply(&s.pod_yaml(
        "polite",
        30,
        "Always",
        "trap 'echo got-sigterm; exit 0' TERM; while true; do sleep 1; done",
        "",
    ));
    // Ignores SIGTERM: the runtime kills it once the 4 s grace period is over.
    s.apply(&s.pod_yaml(
        "stubborn",
        4,
        "Always",
        "trap '' TERM; while true; do sleep 1; done",
        "",
    ));
    let polite = s.wait_running("polite");
    s.wait_running("stubborn");
    let uid = polite["metadata"]["uid"].as_str().expect("uid").to_string();

    let started = Instant::now();
    s.server.ok(&[
        "delete",
        "pod",
        "polite",
        "stubborn",
        "-n",
        &s.ns,
        "--wait=false",
    ]);
    let mut polite_gone = None;
    eventually("both pods gone", WAIT, || {
        let out = s
            .server
            .kubectl(&["get", "pods", "-n", &s.ns, "-o", "name"]);
        if polite_gone.is_none() && !out.stdout.contains("pod/polite") {
            polite_gone = Some(started.elapsed());
        }
        if out.success() && out.stdout.trim().is_empty() {
            Ok(())
        } else {
            Err(out.to_string())
        }
    });
    let total = started.elapsed();
    let polite_gone = polite_gone.expect("polite disappeared");
    assert!(
        polite_gone < Duration::from_secs(15),
        "polite pod took {polite_gone:?}"
    );
    assert!(
        total >= Duration::from_secs(4),
        "stubborn pod went after {total:?}, before its grace period"
    );
    assert!(
        total < Duration::from_secs(30),
        "stubborn pod took {total:?}"
    );

    // SIGTERM reached the container: its handler's output is in the log.
    let log = s
        .kubelet
        .dir
        .join("logs")
        .join(format!("{}_polite_{uid}", s.ns))
        .join("main")
        .join("0.log");
    let text = fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    assert!(text.contains("got-sigterm"), "{text}");
    assert!(text.contains(" stdout F "), "CRI log format: {text}");
    // Nothing is left running in the runtime.
    eventually("no running tasks", WAIT, || {
        let tasks = s.containerd.running_tasks();
        if tasks.is_empty() {
            Ok(())
        } else {
            Err(format!("{tasks:?}"))
        }
    });
}

#[test]
fn a_restarted_kubelet_adopts_running_pods_without_restarting_them() {
    let mut s = Stack::start("kl-adopt");
    s.apply(&s.pod_yaml("steady", 2, "Always", "while true; do sleep 1; done", ""));
    let before = s.wait_running("steady");
    let id_before = before["status"]["containerStatuses"][0]["containerID"].clone();

    s.kubelet.kill9();
    // While the kubelet is down: one pod is deleted for good, another is created.
    s.server.ok(&[
        "delete",
        "pod",
        "steady",
        "-n",
        &s.ns,
        "--wait=false",
        "--grace-period=0",
        "--force",
    ]);
    s.apply(&s.pod_yaml("steady", 2, "Always", "while true; do sleep 1; done", ""));
    s.apply(&s.pod_yaml("newcomer", 2, "Always", "while true; do sleep 1; done", ""));
    let replaced = s.pod("steady");
    let new_uid = replaced["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    assert_ne!(before["metadata"]["uid"], replaced["metadata"]["uid"]);

    s.kubelet.spawn();
    s.wait_running("newcomer");
    let after = s.wait_running("steady");
    assert_eq!(after["metadata"]["uid"], new_uid.as_str());
    // The old pod's containers were orphans and are gone; the new pod got fresh ones.
    assert_ne!(
        after["status"]["containerStatuses"][0]["containerID"],
        id_before
    );

    // Now a plain restart: the running container is adopted, not restarted.
    let id = after["status"]["containerStatuses"][0]["containerID"].clone();
    s.kubelet.kill9();
    s.kubelet.spawn();
    let adopted = s.wait_running("steady");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let pod = s.pod("steady");
        let c = &pod["status"]["containerStatuses"][0];
        assert_eq!(
            c["containerID"], id,
            "container replaced after restart: {c}"
        );
        assert_eq!(c["restartCount"], 0, "{c}");
        thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(adopted["status"]["containerStatuses"][0]["containerID"], id);
    let raw = id
        .as_str()
        .expect("id")
        .trim_start_matches("containerd://")
        .to_string();
    assert!(s.containerd.running_tasks().contains(&raw));
}

#[test]
fn a_deployment_of_three_replicas_with_the_real_scheduler_and_controllers_runs_three_containers() {
    let s = Stack::start("kl-deploy");
    let _scheduler = Daemon::start(
        &s.server,
        "kube-scheduler",
        "KUBE_SCHEDULER_BIN",
        "system:kube-scheduler",
        &[],
    );
    let ca = format!("--root-ca-file={}", s.server.pki.ca_cert.display());
    let _kcm = Daemon::start(
        &s.server,
        "kube-controller-manager",
        "KUBE_CONTROLLER_MANAGER_BIN",
        "system:kube-controller-manager",
        &[&ca, "--use-service-account-credentials=true"],
    );
    s.apply(&format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: {BUSYBOX_IMAGE}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "while true; do sleep 1; done"]
"#
    ));
    eventually(
        "3 Running, Ready pods on the node",
        Duration::from_secs(120),
        || {
            let pods = s
                .server
                .json(&["get", "pods", "-n", &s.ns, "-l", "app=web"]);
            let items = pods["items"].as_array().cloned().unwrap_or_default();
            let good = items
                .iter()
                .filter(|p| {
                    p["spec"]["nodeName"] == s.kubelet.node.as_str()
                        && p["status"]["phase"] == "Running"
                        && condition(p, "Ready") == "True"
                })
                .count();
            if good == 3 && items.len() == 3 {
                Ok(())
            } else {
                Err(serde_json::to_string_pretty(&pods["items"]).unwrap_or_default())
            }
        },
    );
    // Three sandboxes and three containers run in containerd.
    eventually("6 running tasks", WAIT, || {
        let tasks = s.containerd.running_tasks();
        if tasks.len() == 6 {
            Ok(())
        } else {
            Err(format!("{tasks:?}"))
        }
    });
    eventually("deployment readyReplicas 3", WAIT, || {
        let d = s.server.json(&["get", "deployment", "web", "-n", &s.ns]);
        if d["status"]["readyReplicas"] == 3 {
            Ok(())
        } else {
            Err(d["status"].to_string())
        }
    });
}

#[test]
fn env_comes_from_values_fields_and_config_maps_and_a_missing_never_pull_image_waits() {
    let s = Stack::start("kl-env");
    s.server.ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        &s.ns,
        "--from-literal=color=blue",
    ]);
    s.apply(&s.pod_yaml(
        "env",
        2,
        "Never",
        "echo \"pod=$POD_NAME ns=$POD_NS node=$NODE color=$COLOR greeting=$GREETING\"",
        r#"    env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NS
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    - name: NODE
      valueFrom:
        fieldRef:
          fieldPath: spec.nodeName
    - name: COLOR
      valueFrom:
        configMapKeyRef:
          name: settings
          key: color
    - name: GREETING
      value: "hello $(POD_NAME)"
"#,
    ));
    let pod = eventually("pod Succeeded", WAIT, || {
        let pod = s.pod("env");
        if pod["status"]["phase"] == "Succeeded" {
            Ok(pod)
        } else {
            Err(pod["status"].to_string())
        }
    });
    let c = &pod["status"]["containerStatuses"][0];
    assert_eq!(c["state"]["terminated"]["reason"], "Completed");
    assert_eq!(condition(&pod, "Ready"), "False");
    let uid = pod["metadata"]["uid"].as_str().expect("uid");
    let log = s
        .kubelet
        .dir
        .join("logs")
        .join(format!("{}_env_{uid}", s.ns))
        .join("main")
        .join("0.log");
    let text = fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let want = format!(
        "pod=env ns={} node={} color=blue greeting=hello env",
        s.ns, s.kubelet.node
    );
    assert!(text.contains(&want), "{text}\nwant: {want}");

    // A missing key is a CreateContainerConfigError, not a crash.
    s.apply(
        &s.pod_yaml("badref", 2, "Never", "true", "    env:\n    - name: X\n      valueFrom:\n        configMapKeyRef:\n          name: settings\n          key: nope\n")
            ,
    );
    eventually("CreateContainerConfigError", WAIT, || {
        let pod = s.pod("badref");
        let waiting = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
        if waiting["reason"] == "CreateContainerConfigError"
            && waiting["message"]
                .as_str()
                .is_some_and(|m| m.contains("couldn't find key nope"))
        {
            Ok(())
        } else {
            Err(pod["status"].to_string())
        }
    });

    // imagePullPolicy Never with an image the runtime lacks: ErrImageNeverPull, no pull.
    s.apply(
        &s.pod_yaml("absent", 2, "Always", "true", "")
            .replace(BUSYBOX_IMAGE, "kube-test/absent:1.0")
            .replace("imagePullPolicy: IfNotPresent", "imagePullPolicy: Never"),
    );
    eventually("ErrImageNeverPull", WAIT, || {
        let pod = s.pod("absent");
        let c = &pod["status"]["containerStatuses"][0];
        if c["state"]["waiting"]["reason"] == "ErrImageNeverPull"
            && pod["status"]["phase"] == "Pending"
        {
            Ok(())
        } else {
            Err(pod["status"].to_string())
        }
    });
}
