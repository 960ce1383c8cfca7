//! The kubelet binary on a private containerd, for the layer above plain pods: static pods that
//! run with no apiserver reachable and get mirror pods once it is, volumes, and probes.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "common/containerd.rs"]
mod containerd;

#[path = "common/daemon.rs"]
mod daemon;

#[path = "common/kubelet.rs"]
mod kubelet_process;

use std::fs::{self};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{eventually, free_port, ApiServer};
use containerd::{Containerd, BUSYBOX_IMAGE};
use daemon::Daemon;
use kubelet_process::Kubelet;

/// Deadline for pods and nodes to reach a state.
const WAIT: Duration = Duration::from_secs(60);

/// This suite's pod networks (10.150-199.x.0/24) and bridge names.
const NET: (u32, &str) = (150, "kpt");

/// A TCP forwarder from a local port to the apiserver. Until [`Gate::open`] nothing listens on
/// the port, so a kubelet pointed at it sees no apiserver at all (connection refused).
struct Gate {
    port: u16,
    target: u16,
    stop: Arc<AtomicBool>,
}

impl Gate {
    fn new(target: u16) -> Self {
        Gate {
            port: free_port(),
            target,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A copy of `kubeconfig` whose server is this gate's port.
    fn kubeconfig(&self, server: &ApiServer, kubeconfig: &Path) -> PathBuf {
        let text = fs::read_to_string(kubeconfig).expect("read kubeconfig");
        let text = text.replace(
            &format!("server: {}", server.url()),
            &format!("server: https://127.0.0.1:{}", self.port),
        );
        let path = kubeconfig.with_extension("gated.yaml");
        fs::write(&path, text).expect("write gated kubeconfig");
        path
    }

    fn open(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("bind the gate port");
        listener.set_nonblocking(true).expect("nonblocking");
        let (target, stop) = (self.target, self.stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
                            continue;
                        };
                        pipe(&client, &upstream);
                        pipe(&upstream, &client);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

/// One container as the CRI reports it.
#[derive(Debug, Clone)]
struct CriContainer {
    id: String,
    pod_name: String,
    pod_uid: String,
    name: String,
    running: bool,
}

/// The containers containerd holds, read through the CRI as the kubelet does.
fn cri_containers(containerd: &Containerd) -> Vec<CriContainer> {
    let endpoint = containerd.endpoint();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let runtime = kubelet::cri::Runtime::new(&endpoint).expect("cri client");
        let listed = runtime
            .list_containers(None)
            .await
            .expect("list containers");
        listed
            .into_iter()
            .map(|c| {
                let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
                CriContainer {
                    id: c.id.clone(),
                    pod_name: label("io.kubernetes.pod.name"),
                    pod_uid: label("io.kubernetes.pod.uid"),
                    name: label("io.kubernetes.container.name"),
                    running: c.state == kubelet::cri::api::ContainerState::ContainerRunning as i32,
                }
            })
            .collect()
    })
}

fn running_in(containerd: &Containerd, pod_name: &str) -> Vec<CriContainer> {
    cri_containers(containerd)
        .into_iter()
        .filter(|c| c.pod_name == pod_name && c.running)
        .collect()
}

fn static_manifest(name: &str, marker: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: kube-system
  labels:
    tier: control-plane
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; echo {marker}; while true; do sleep 1; done"]
"#
    )
}

fn annotation<'a>(pod: &'a serde_json::Value, key: &str) -> &'a str {
    pod["metadata"]["annotations"][key]
        .as_str()
        .unwrap_or_default()
}

#[test]
fn a_static_pod_runs_with_no_apiserver_then_gets_a_mirror_pod_that_follows_edits_and_deletion() {
    let server = ApiServer::start();
    let containerd = Containerd::start();
    let gate = Gate::new(server.port);
    let manifests = containerd.dir().join("manifests");
    fs::create_dir_all(&manifests).expect("manifest dir");
    let manifest = manifests.join("static-web.yaml");
    fs::write(&manifest, static_manifest("static-web", "v1")).expect("write manifest");
    // Editors leave dot files behind; they are not manifests.
    fs::write(manifests.join(".static-web.yaml.swp"), "garbage").expect("swap file");

    let kubelet = Kubelet::start(
        &containerd,
        "kl-static",
        NET,
        |node| {
            let direct =
                server.kubeconfig_for_cert(&format!("system:node:{node}"), &["system:nodes"]);
            gate.kubeconfig(&server, &direct)
        },
        &[format!("--pod-manifest-path={}", manifests.display())],
    );
    let node = kubelet.node.clone();
    let pod_name = format!("static-web-{node}");

    // No apiserver is reachable, yet the static pod runs, under a 32-hex-digit content UID.
    let first = eventually(
        "static pod running in containerd",
        WAIT,
        || match running_in(&containerd, &pod_name).as_slice() {
            [c] => Ok(c.clone()),
            other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(first.name, "main");
    assert_eq!(first.pod_uid.len(), 32, "{}", first.pod_uid);
    assert!(first.pod_uid.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(
        !server.kubectl(&["get", "node", &node]).success(),
        "the node cannot have registered through a closed gate"
    );

    // The apiserver becomes reachable: the node registers and the mirror pod shows the status.
    gate.open();
    let mirror = eventually("mirror pod Running", WAIT, || {
        let out = server.kubectl(&["get", "pod", &pod_name, "-n", "kube-system", "-o", "json"]);
        if !out.success() {
            return Err(out.to_string());
        }
        let pod = out.json();
        if pod["status"]["phase"] == "Running"
            && pod["status"]["containerStatuses"][0]["ready"] == true
        {
            Ok(pod)
        } else {
            Err(pod["status"].to_string())
        }
    });
    assert_eq!(
        annotation(&mirror, "kubernetes.io/config.mirror"),
        first.pod_uid
    );
    assert_eq!(
        annotation(&mirror, "kubernetes.io/config.hash"),
        first.pod_uid
    );
    assert_eq!(annotation(&mirror, "kubernetes.io/config.source"), "file");
    assert!(!annotation(&mirror, "kubernetes.io/config.seen").is_empty());
    assert_ne!(mirror["metadata"]["uid"], first.pod_uid.as_str());
    let owner = &mirror["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Node");
    assert_eq!(owner["name"], node.as_str());
    assert_eq!(owner["controller"], true);
    let node_uid = server.json(&["get", "node", &node])["metadata"]["uid"].clone();
    assert_eq!(owner["uid"], node_uid);
    assert_eq!(mirror["spec"]["nodeName"], node.as_str());
    assert_eq!(mirror["metadata"]["labels"]["tier"], "control-plane");
    assert_eq!(
        mirror["status"]["containerStatuses"][0]["containerID"],
        format!("containerd://{}", first.id)
    );
    // Nothing changes, so the kubelet does not keep patching the mirror's status.
    let version = |pod: &serde_json::Value| pod["metadata"]["resourceVersion"].clone();
    let settled = eventually("mirror status settles", WAIT, || {
        let before = server.json(&["get", "pod", &pod_name, "-n", "kube-system"]);
        thread::sleep(Duration::from_secs(3));
        let after = server.json(&["get", "pod", &pod_name, "-n", "kube-system"]);
        if version(&before) == version(&after) {
            Ok(after)
        } else {
            Err(format!("{} -> {}", version(&before), version(&after)))
        }
    });
    let mirror = settled;

    // Deleting the mirror pod does not stop the static pod: a new mirror appears.
    server.ok(&[
        "delete",
        "pod",
        &pod_name,
        "-n",
        "kube-system",
        "--wait=false",
    ]);
    let old_mirror_uid = mirror["metadata"]["uid"].clone();
    eventually("a new mirror pod", WAIT, || {
        let out = server.kubectl(&["get", "pod", &pod_name, "-n", "kube-system", "-o", "json"]);
        if !out.success() {
            return Err(out.to_string());
        }
        let pod = out.json();
        if pod["metadata"]["uid"] != old_mirror_uid
            && pod["metadata"]["deletionTimestamp"].is_null()
            && pod["status"]["phase"] == "Running"
        {
            Ok(())
        } else {
            Err(pod["metadata"].to_string())
        }
    });
    let still: Vec<String> = running_in(&containerd, &pod_name)
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(still, vec![first.id.clone()], "the container kept running");

    // Editing the manifest replaces the pod: new hash and UID, new container, old one gone.
    fs::write(&manifest, static_manifest("static-web", "v2")).expect("edit manifest");
    let second = eventually(
        "the edited static pod replaces the first",
        WAIT,
        || match running_in(&containerd, &pod_name).as_slice() {
            [c] if c.pod_uid != first.pod_uid => Ok(c.clone()),
            other => Err(format!("{other:?}")),
        },
    );
    eventually("mirror pod of the new version", WAIT, || {
        let out = server.kubectl(&["get", "pod", &pod_name, "-n", "kube-system", "-o", "json"]);
        if !out.success() {
            return Err(out.to_string());
        }
        let pod = out.json();
        let id = format!("containerd://{}", second.id);
        if annotation(&pod, "kubernetes.io/config.mirror") == second.pod_uid
            && pod["status"]["containerStatuses"][0]["containerID"] == id.as_str()
        {
            Ok(())
        } else {
            Err(pod.to_string())
        }
    });

    // Removing the manifest stops the pod and deletes its mirror.
    fs::remove_file(&manifest).expect("remove manifest");
    eventually("static pod stopped", WAIT, || {
        match running_in(&containerd, &pod_name).as_slice() {
            [] => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    eventually("mirror pod deleted", WAIT, || {
        let out = server.kubectl(&["get", "pod", &pod_name, "-n", "kube-system"]);
        if !out.success() && out.stderr.contains("NotFound") {
            Ok(())
        } else {
            Err(out.to_string())
        }
    });
    drop(kubelet);
}

#[test]
fn a_restarted_kubelet_adopts_its_static_pods_while_the_apiserver_is_unreachable() {
    let server = ApiServer::start();
    let containerd = Containerd::start();
    // The gate is never opened: this kubelet never reaches an apiserver.
    let gate = Gate::new(server.port);
    let manifests = containerd.dir().join("manifests");
    fs::create_dir_all(&manifests).expect("manifest dir");
    let manifest = manifests.join("etcd.json");
    // JSON manifests work too.
    let json = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "etcd", "namespace": "kube-system"},
        "spec": {
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "etcd",
                "image": BUSYBOX_IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"],
            }],
        },
    });
    fs::write(&manifest, json.to_string()).expect("write manifest");
    let mut kubelet = Kubelet::start(
        &containerd,
        "kl-sadopt",
        NET,
        |node| {
            let direct =
                server.kubeconfig_for_cert(&format!("system:node:{node}"), &["system:nodes"]);
            gate.kubeconfig(&server, &direct)
        },
        &[format!("--pod-manifest-path={}", manifests.display())],
    );
    let pod_name = format!("etcd-{}", kubelet.node);
    let first = eventually("static pod running", WAIT, || {
        match running_in(&containerd, &pod_name).as_slice() {
            [c] => Ok(c.clone()),
            other => Err(format!("{other:?}")),
        }
    });

    kubelet.kill9();
    kubelet.spawn();
    // The new kubelet finds the same UID in the same manifest and keeps the container.
    for _ in 0..6 {
        let now: Vec<String> = running_in(&containerd, &pod_name)
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(
            now,
            vec![first.id.clone()],
            "the static pod was not restarted"
        );
        thread::sleep(Duration::from_millis(500));
    }
    // And it is managing it: an edit replaces the pod.
    let mut edited = json.clone();
    edited["spec"]["containers"][0]["env"] = serde_json::json!([{"name": "V", "value": "2"}]);
    fs::write(&manifest, edited.to_string()).expect("edit manifest");
    eventually(
        "the edited static pod replaces the first",
        WAIT,
        || match running_in(&containerd, &pod_name).as_slice() {
            [c] if c.pod_uid != first.pod_uid => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

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
        Self::start_with(name, &[])
    }

    fn start_with(name: &str, kubelet_flags: &[String]) -> Self {
        let server = ApiServer::start();
        let containerd = Containerd::start();
        let kubelet = Kubelet::start(
            &containerd,
            name,
            NET,
            |node| server.kubeconfig_for_cert(&format!("system:node:{node}"), &["system:nodes"]),
            kubelet_flags,
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
        eventually("node Ready=True", WAIT, || {
            let node = stack
                .server
                .kubectl(&["get", "node", &stack.kubelet.node, "-o", "json"]);
            if !node.success() {
                return Err(node.to_string());
            }
            let ready = node.json()["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            if ready {
                Ok(())
            } else {
                Err("not ready".into())
            }
        });
        stack
    }

    fn apply(&self, yaml: &str) {
        self.server
            .ok_stdin(&["apply", "-n", &self.ns, "-f", "-"], yaml);
    }

    fn pod(&self, name: &str) -> serde_json::Value {
        self.server.json(&["get", "pod", name, "-n", &self.ns])
    }

    fn wait_running(&self, name: &str) -> serde_json::Value {
        eventually(&format!("pod {name} Running"), WAIT, || {
            let pod = self.pod(name);
            if pod["status"]["phase"] == "Running"
                && pod["status"]["containerStatuses"][0]["state"]["running"].is_object()
            {
                Ok(pod)
            } else {
                Err(pod["status"].to_string())
            }
        })
    }

    /// The content of a container's current log (CRI format stripped) on the host.
    fn container_log(&self, pod: &serde_json::Value, container: &str) -> String {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let restarts = pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == container)
            .and_then(|c| c["restartCount"].as_u64())
            .unwrap_or(0);
        let path = self
            .kubelet
            .dir
            .join("logs")
            .join(format!("{}_{name}_{uid}", self.ns))
            .join(container)
            .join(format!("{restarts}.log"));
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.splitn(4, ' ').nth(3).map(str::to_string))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn root(&self) -> PathBuf {
        self.kubelet.dir.join("root")
    }
}

/// `KEY=value` lines a container printed, as a map.
fn printed(log: &str) -> std::collections::BTreeMap<String, String> {
    log.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn volumes_bring_config_maps_secrets_pod_info_tokens_and_directories_into_the_container() {
    let s = Stack::start("kl-vol");
    let ns = s.ns.clone();
    s.server.ok(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        &ns,
        "--from-literal=color=blue",
        "--from-literal=size=L",
    ]);
    s.server.ok(&[
        "create",
        "secret",
        "generic",
        "sec",
        "-n",
        &ns,
        "--from-literal=password=hunter2",
    ]);
    // What the root-ca-cert-publisher would publish (no controller-manager runs here).
    let ca = s.server.pki.ca_cert.display().to_string();
    s.server.ok(&[
        "create",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        &ns,
        &format!("--from-file=ca.crt={ca}"),
    ]);
    s.server
        .ok(&["create", "serviceaccount", "reader", "-n", &ns]);
    s.server.ok(&[
        "create",
        "role",
        "pod-reader",
        "-n",
        &ns,
        "--verb=get,list",
        "--resource=pods",
    ]);
    s.server.ok(&[
        "create",
        "rolebinding",
        "reader",
        "-n",
        &ns,
        "--role=pod-reader",
        &format!("--serviceaccount={ns}:reader"),
    ]);
    // A Service of the pod's namespace: its variables come with the `kubernetes` Service's.
    s.server.ok(&[
        "create",
        "service",
        "clusterip",
        "backend",
        "-n",
        &ns,
        "--tcp=8080:8080",
    ]);
    let host_dir = s.containerd.dir().join("host-volume");
    let script = [
        "echo COLOR=$(cat /etc/cfg/colors/favourite)",
        "echo COLOR_MODE=$(stat -L -c %a /etc/cfg/colors/favourite)",
        "echo SIZE_PRESENT=$(test -e /etc/cfg/size && echo yes || echo no)",
        "echo PASSWORD=$(cat /etc/sec/password)",
        "echo SECRET_MODE=$(stat -L -c %a /etc/sec/password)",
        "echo POD_NAME=$(cat /etc/podinfo/name)",
        "echo POD_LABELS=$(cat /etc/podinfo/labels)",
        "echo MEM_LIMIT=$(cat /etc/podinfo/mem)",
        "echo OPTIONAL_FILES=$(ls /etc/optional | wc -l)",
        "echo SA_NAMESPACE=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)",
        "echo SA_CA=$(head -c 27 /var/run/secrets/kubernetes.io/serviceaccount/ca.crt)",
        "echo SA_TOKEN=$(cat /var/run/secrets/kubernetes.io/serviceaccount/token)",
        "echo CFG_WRITABLE=$(touch /etc/cfg/new 2>/dev/null && echo yes || echo no)",
        "echo sub > /sub/file && echo SUB_WRITTEN=yes",
        "echo from-pod > /host/out.txt",
        "echo MEM_FS=$(grep ' /scratch-mem ' /proc/mounts | cut -d' ' -f3)",
        "echo SERVICE_HOST=$KUBERNETES_SERVICE_HOST",
        "echo BACKEND_HOST=$BACKEND_SERVICE_HOST",
        "echo BACKEND_PORT=$BACKEND_SERVICE_PORT",
        "echo SERVICE_PORT=$KUBERNETES_SERVICE_PORT",
        "echo DONE=1",
        "exec sleep 3600",
    ]
    .join("; ");
    s.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: vol
  labels:
    app: vol
spec:
  nodeName: {node}
  serviceAccountName: reader
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", {script:?}]
    resources:
      limits:
        memory: 64Mi
    volumeMounts:
    - {{name: cfg, mountPath: /etc/cfg}}
    - {{name: sec, mountPath: /etc/sec}}
    - {{name: podinfo, mountPath: /etc/podinfo}}
    - {{name: optional, mountPath: /etc/optional}}
    - {{name: scratch, mountPath: /sub, subPath: sub}}
    - {{name: mem, mountPath: /scratch-mem}}
    - {{name: host, mountPath: /host}}
    - {{name: vault-token, mountPath: /var/run/vault}}
  volumes:
  - name: vault-token
    projected:
      sources:
      - serviceAccountToken: {{audience: vault, expirationSeconds: 1200, path: token}}
  - name: cfg
    configMap:
      name: cfg
      items:
      - {{key: color, path: colors/favourite, mode: 0400}}
  - name: sec
    secret:
      secretName: sec
      defaultMode: 0440
  - name: podinfo
    downwardAPI:
      items:
      - path: name
        fieldRef: {{fieldPath: metadata.name}}
      - path: labels
        fieldRef: {{fieldPath: metadata.labels}}
      - path: mem
        resourceFieldRef: {{containerName: main, resource: limits.memory, divisor: 1Mi}}
  - name: optional
    configMap:
      name: does-not-exist
      optional: true
  - name: scratch
    emptyDir: {{}}
  - name: mem
    emptyDir:
      medium: Memory
  - name: host
    hostPath:
      path: {host}
      type: DirectoryOrCreate
"#,
        node = s.kubelet.node,
        host = host_dir.display(),
    ));
    let pod = s.wait_running("vol");
    let log = eventually("the container printed its volumes", WAIT, || {
        let log = s.container_log(&pod, "main");
        if log.contains("DONE=1") {
            Ok(log)
        } else {
            Err(log)
        }
    });
    let out = printed(&log);
    let want = [
        ("COLOR", "blue"),
        ("COLOR_MODE", "400"),
        ("SIZE_PRESENT", "no"),
        ("PASSWORD", "hunter2"),
        ("SECRET_MODE", "440"),
        ("POD_NAME", "vol"),
        ("POD_LABELS", "app=\"vol\""),
        ("MEM_LIMIT", "64"),
        ("OPTIONAL_FILES", "0"),
        ("SA_NAMESPACE", ns.as_str()),
        ("SA_CA", "-----BEGIN CERTIFICATE-----"),
        ("CFG_WRITABLE", "no"),
        ("SUB_WRITTEN", "yes"),
        ("MEM_FS", "tmpfs"),
        ("SERVICE_PORT", "443"),
        ("BACKEND_PORT", "8080"),
    ];
    for (k, v) in want {
        assert_eq!(out.get(k).map(String::as_str), Some(v), "{k} in\n{log}");
    }
    let service_ip = s
        .server
        .json(&["get", "service", "kubernetes", "-n", "default"])["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(out["SERVICE_HOST"], service_ip);
    let backend_ip = s.server.json(&["get", "service", "backend", "-n", &ns])["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!backend_ip.is_empty());
    assert_eq!(out["BACKEND_HOST"], backend_ip, "in\n{log}");

    // The volumes live under <root-dir>/pods/<uid>/volumes/<plugin>/<name>.
    let uid = pod["metadata"]["uid"].as_str().expect("uid").to_string();
    let pod_dir = s.root().join("pods").join(&uid);
    let volumes = pod_dir.join("volumes");
    assert!(volumes.join("kubernetes.io~configmap/cfg/..data").exists());
    assert!(volumes
        .join("kubernetes.io~empty-dir/scratch/sub/file")
        .is_file());
    assert_eq!(
        fs::read_to_string(host_dir.join("out.txt")).expect("hostPath file"),
        "from-pod\n"
    );

    // The token the pod sees is a bound service-account token the apiserver accepts: it lists
    // pods (the Role allows it) and is forbidden to list secrets.
    let access = fs::read_dir(volumes.join("kubernetes.io~projected"))
        .expect("projected volumes")
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("kube-api-access-")
        })
        .expect("the admission-injected kube-api-access volume")
        .path();
    let token = fs::read_to_string(access.join("token")).expect("token file");
    assert_eq!(
        out["SA_TOKEN"], token,
        "the pod sees the token the kubelet wrote"
    );
    let pods = s.server.kubectl_cred(
        common::Cred::Token(&token),
        &["get", "pods", "-n", &ns, "-o", "name"],
    );
    assert!(pods.success(), "{pods}");
    assert!(pods.stdout.contains("pod/vol"), "{pods}");
    let secrets = s
        .server
        .kubectl_cred(common::Cred::Token(&token), &["get", "secrets", "-n", &ns]);
    assert!(
        !secrets.success() && secrets.stderr.contains("forbidden"),
        "{secrets}"
    );
    // A token for another audience, bound to the pod, with the lifetime asked for; the
    // apiserver does not accept it.
    let vault = fs::read_to_string(volumes.join("kubernetes.io~projected/vault-token/token"))
        .expect("vault token");
    let claims = jwt_claims(&vault);
    assert_eq!(claims["aud"], serde_json::json!(["vault"]), "{claims}");
    assert_eq!(
        claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0),
        1200,
        "{claims}"
    );
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "vol", "{claims}");
    assert_eq!(
        claims["kubernetes.io"]["pod"]["uid"],
        uid.as_str(),
        "{claims}"
    );
    let rejected = s
        .server
        .kubectl_cred(common::Cred::Token(&vault), &["get", "pods", "-n", &ns]);
    assert!(!rejected.success(), "{rejected}");
    let whoami = s.server.kubectl_cred(
        common::Cred::Token(&token),
        &["auth", "whoami", "-o", "json"],
    );
    if whoami.success() {
        assert_eq!(
            whoami.json()["status"]["userInfo"]["username"],
            format!("system:serviceaccount:{ns}:reader")
        );
    }

    // A failing hostPath type check keeps the pod's containers from being created.
    s.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: bad-host-path
spec:
  nodeName: {node}
  automountServiceAccountToken: false
  containers:
  - name: main
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    volumeMounts:
    - {{name: host, mountPath: /host}}
  volumes:
  - name: host
    hostPath:
      path: {missing}
      type: Directory
"#,
        node = s.kubelet.node,
        missing = s.containerd.dir().join("no-such-dir").display(),
    ));
    thread::sleep(Duration::from_secs(3));
    let bad = s.pod("bad-host-path");
    assert_eq!(bad["status"]["phase"], "Pending", "{}", bad["status"]);
    assert!(running_in(&s.containerd, "bad-host-path").is_empty());

    // Deleting the pod removes its directory with the volumes (and unmounts the tmpfs ones).
    s.server
        .ok(&["delete", "pod", "vol", "-n", &ns, "--wait=false"]);
    eventually("pod directory removed", WAIT, || {
        if pod_dir.exists() {
            Err(format!("{} still exists", pod_dir.display()))
        } else {
            Ok(())
        }
    });
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    assert!(!mounts.contains(&uid), "no mount of the pod is left");
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

fn container<'a>(pod: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

#[test]
fn a_failing_liveness_probe_restarts_the_container_with_a_growing_restart_count() {
    let s = Stack::start("kl-live");
    s.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: live
spec:
  nodeName: {node}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: dying
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    livenessProbe:
      exec:
        command: ["test", "-f", "/tmp/alive"]
      initialDelaySeconds: 1
      periodSeconds: 1
      failureThreshold: 2
  - name: healthy
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["httpd", "-f", "-p", "8081", "-h", "/tmp"]
    ports:
    - {{name: web, containerPort: 8081}}
    livenessProbe:
      tcpSocket:
        port: web
      periodSeconds: 1
      failureThreshold: 1
"#,
        node = s.kubelet.node
    ));
    let pod = eventually("the dying container restarted twice", WAIT, || {
        let pod = s.pod("live");
        let restarts = container(&pod, "dying")["restartCount"]
            .as_i64()
            .unwrap_or(0);
        if restarts >= 2 {
            Ok(pod)
        } else {
            Err(pod["status"].to_string())
        }
    });
    let dying = container(&pod, "dying");
    let last = &dying["lastState"]["terminated"];
    assert!(last.is_object(), "lastState.terminated: {dying}");
    assert!(last["finishedAt"].is_string(), "{dying}");
    let healthy = container(&pod, "healthy");
    assert_eq!(
        healthy["restartCount"], 0,
        "tcpSocket liveness passes: {healthy}"
    );
    assert!(healthy["state"]["running"].is_object(), "{healthy}");
    // Restarts after the first wait out CrashLoopBackOff.
    eventually("CrashLoopBackOff between restarts", WAIT, || {
        let pod = s.pod("live");
        let dying = container(&pod, "dying");
        if dying["state"]["waiting"]["reason"] == "CrashLoopBackOff" {
            Ok(())
        } else {
            Err(dying.to_string())
        }
    });
    // The kubelet recorded what happened as events on the pod.
    let events = eventually("the kubelet's events", WAIT, || {
        let list = s.server.json(&[
            "get",
            "events",
            "-n",
            &s.ns,
            "--field-selector",
            "involvedObject.name=live",
        ]);
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let has = |reason: &str| items.iter().any(|e| e["reason"] == reason);
        if [
            "Pulled",
            "Created",
            "Started",
            "Unhealthy",
            "Killing",
            "BackOff",
        ]
        .iter()
        .all(|r| has(r))
        {
            Ok(items)
        } else {
            Err(serde_json::to_string_pretty(&items).unwrap_or_default())
        }
    });
    let unhealthy = events
        .iter()
        .find(|e| e["reason"] == "Unhealthy")
        .expect("Unhealthy");
    assert_eq!(unhealthy["type"], "Warning");
    assert!(
        unhealthy["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Liveness probe failed")),
        "{unhealthy}"
    );
    assert_eq!(
        unhealthy["involvedObject"]["fieldPath"],
        "spec.containers{dying}"
    );
    assert_eq!(unhealthy["source"]["component"], "kubelet");
    assert_eq!(unhealthy["source"]["host"], s.kubelet.node.as_str());
    let killing = events
        .iter()
        .find(|e| e["reason"] == "Killing")
        .expect("Killing");
    assert_eq!(
        killing["message"],
        "Container dying failed liveness probe, will be restarted"
    );
}

#[test]
fn readiness_flips_the_ready_condition_and_startup_probes_gate_it() {
    let s = Stack::start("kl-ready");
    // httpd serves /healthz only between 4 s and 12 s after start.
    let script = "mkdir -p /www && httpd -p 8080 -h /www && sleep 4 && echo ok > /www/healthz \
                  && sleep 8 && rm /www/healthz && exec sleep 3600";
    s.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: ready
spec:
  nodeName: {node}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", {script:?}]
    readinessProbe:
      httpGet:
        path: /healthz
        port: 8080
      periodSeconds: 1
      failureThreshold: 1
  - name: slow
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "sleep 2; touch /tmp/started; exec sleep 3600"]
    startupProbe:
      exec:
        command: ["test", "-f", "/tmp/started"]
      periodSeconds: 1
      failureThreshold: 30
"#,
        node = s.kubelet.node
    ));
    // Running but not ready: the readiness probe has not passed and the startup probe gates.
    let pod = eventually("running, not ready", WAIT, || {
        let pod = s.pod("ready");
        let web = container(&pod, "web");
        if web["state"]["running"].is_object() {
            Ok(pod)
        } else {
            Err(pod["status"].to_string())
        }
    });
    assert_eq!(container(&pod, "web")["ready"], false, "{}", pod["status"]);
    assert_eq!(condition(&pod, "Ready"), "False");
    assert_eq!(condition(&pod, "ContainersReady"), "False");

    let pod = eventually(
        "Ready=True once /healthz answers and startup passed",
        WAIT,
        || {
            let pod = s.pod("ready");
            if condition(&pod, "Ready") == "True" {
                Ok(pod)
            } else {
                Err(pod["status"].to_string())
            }
        },
    );
    assert_eq!(container(&pod, "web")["ready"], true);
    assert_eq!(container(&pod, "slow")["ready"], true);
    assert_eq!(container(&pod, "slow")["started"], true);
    assert_eq!(condition(&pod, "ContainersReady"), "True");

    let pod = eventually("Ready=False once /healthz is gone", WAIT, || {
        let pod = s.pod("ready");
        if condition(&pod, "Ready") == "False" {
            Ok(pod)
        } else {
            Err(pod["status"].to_string())
        }
    });
    assert_eq!(container(&pod, "web")["ready"], false);
    assert_eq!(
        container(&pod, "web")["restartCount"],
        0,
        "readiness never restarts"
    );
    assert!(container(&pod, "web")["state"]["running"].is_object());
}

#[test]
fn a_container_stays_unstarted_and_unready_until_its_startup_probe_passes() {
    let s = Stack::start("kl-start");
    s.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: start
spec:
  nodeName: {node}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "sleep 5; touch /tmp/started; exec sleep 3600"]
    startupProbe:
      exec:
        command: ["test", "-f", "/tmp/started"]
      periodSeconds: 1
      failureThreshold: 60
    livenessProbe:
      exec:
        command: ["test", "-f", "/tmp/started"]
      periodSeconds: 1
      failureThreshold: 1
"#,
        node = s.kubelet.node
    ));
    let pod = eventually("running", WAIT, || {
        let pod = s.pod("start");
        if container(&pod, "main")["state"]["running"].is_object() {
            Ok(pod)
        } else {
            Err(pod["status"].to_string())
        }
    });
    // The liveness probe would fail now, but it does not run before startup passed.
    let main = container(&pod, "main");
    assert_eq!(main["started"], false, "{main}");
    assert_eq!(main["ready"], false, "{main}");
    let pod = eventually("started and ready", WAIT, || {
        let pod = s.pod("start");
        if container(&pod, "main")["started"] == true && condition(&pod, "Ready") == "True" {
            Ok(pod)
        } else {
            Err(pod["status"].to_string())
        }
    });
    assert_eq!(container(&pod, "main")["restartCount"], 0);
}

#[test]
fn post_start_and_pre_stop_hooks_run_by_exec_and_http_get() {
    let s = Stack::start("kl-hook");
    // The httpGet preStop hook goes from the kubelet to this listener on the host.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut buf = [0u8; 1024];
            let n = conn.read(&mut buf).unwrap_or(0);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    let host_dir = s.containerd.dir().join("hook-out");
    s.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hooks
spec:
  nodeName: {node}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 10
  containers:
  - name: main
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    volumeMounts:
    - {{name: out, mountPath: /out}}
    lifecycle:
      postStart:
        exec:
          command: ["sh", "-c", "echo post-start > /out/post-start"]
      preStop:
        exec:
          command: ["sh", "-c", "echo pre-stop > /out/pre-stop"]
  - name: web
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    lifecycle:
      preStop:
        httpGet:
          host: 127.0.0.1
          port: {port}
          path: /pre-stop
  volumes:
  - name: out
    hostPath:
      path: {out}
      type: DirectoryOrCreate
"#,
        node = s.kubelet.node,
        out = host_dir.display(),
    ));
    s.wait_running("hooks");
    assert_eq!(
        fs::read_to_string(host_dir.join("post-start")).expect("postStart wrote its file"),
        "post-start\n"
    );
    assert!(!host_dir.join("pre-stop").exists());
    s.server
        .ok(&["delete", "pod", "hooks", "-n", &s.ns, "--wait=false"]);
    let request = rx
        .recv_timeout(WAIT)
        .expect("the httpGet preStop hook reached the host");
    assert!(request.starts_with("GET /pre-stop HTTP/1.1"), "{request}");
    assert!(request.contains("User-Agent: kube-probe/"), "{request}");
    eventually("the exec preStop hook ran", WAIT, || {
        fs::read_to_string(host_dir.join("pre-stop")).map_err(|e| e.to_string())
    });
    eventually("pod removed", WAIT, || {
        let out = s.server.kubectl(&["get", "pod", "hooks", "-n", &s.ns]);
        if out.success() {
            Err(out.to_string())
        } else {
            Ok(())
        }
    });

    // A failing postStart hook kills the container and shows PostStartHookError.
    s.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: bad-hook
spec:
  nodeName: {node}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    lifecycle:
      postStart:
        exec:
          command: ["false"]
"#,
        node = s.kubelet.node,
    ));
    eventually("the container was killed and restarted", WAIT, || {
        let pod = s.pod("bad-hook");
        let c = container(&pod, "main");
        if c["restartCount"].as_i64().unwrap_or(0) >= 1 {
            Ok(())
        } else {
            Err(pod["status"].to_string())
        }
    });
}

#[test]
fn readiness_moves_the_pod_between_ready_and_not_ready_endpoints_of_its_service() {
    let s = Stack::start("kl-ep");
    let ca = format!("--root-ca-file={}", s.server.pki.ca_cert.display());
    let _kcm = Daemon::start(
        &s.server,
        "kube-controller-manager",
        "KUBE_CONTROLLER_MANAGER_BIN",
        "system:kube-controller-manager",
        &[&ca, "--use-service-account-credentials=true"],
    );
    s.server.ok(&[
        "create",
        "service",
        "clusterip",
        "flip",
        "-n",
        &s.ns,
        "--tcp=80:8080",
    ]);
    // The service selects app=flip; ready between 3 s and 20 s after start.
    s.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: flip
  labels:
    app: flip
spec:
  nodeName: {node}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "sleep 3; touch /tmp/ready; sleep 17; rm /tmp/ready; exec sleep 3600"]
    ports:
    - containerPort: 8080
    readinessProbe:
      exec:
        command: ["test", "-f", "/tmp/ready"]
      periodSeconds: 1
      failureThreshold: 1
"#,
        node = s.kubelet.node
    ));
    let pod = s.wait_running("flip");
    let ip = pod["status"]["podIP"].as_str().expect("podIP").to_string();
    let endpoints = |field: &str| -> Vec<String> {
        let out = s
            .server
            .kubectl(&["get", "endpoints", "flip", "-n", &s.ns, "-o", "json"]);
        if !out.success() {
            return Vec::new();
        }
        out.json()["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|sub| sub[field].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a["ip"].as_str().map(str::to_string))
            .collect()
    };
    eventually("the pod is a ready endpoint", WAIT, || {
        let ready = endpoints("addresses");
        if ready.contains(&ip) {
            Ok(())
        } else {
            Err(format!(
                "ready {ready:?}, not ready {:?}",
                endpoints("notReadyAddresses")
            ))
        }
    });
    eventually("the pod is a not-ready endpoint", WAIT, || {
        let not_ready = endpoints("notReadyAddresses");
        if not_ready.contains(&ip) && !endpoints("addresses").contains(&ip) {
            Ok(())
        } else {
            Err(format!(
                "ready {:?}, not ready {not_ready:?}",
                endpoints("addresses")
            ))
        }
    });
}

#[test]
fn config_map_updates_reach_mounted_files_within_the_sync_frequency() {
    let s = Stack::start_with("kl-cmupd", &["--sync-frequency=2s".to_string()]);
    s.server.ok(&[
        "create",
        "configmap",
        "live",
        "-n",
        &s.ns,
        "--from-literal=v=one",
    ]);
    s.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: watcher
spec:
  nodeName: {node}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "while true; do echo V=$(cat /etc/live/v); sleep 1; done"]
    volumeMounts:
    - {{name: live, mountPath: /etc/live}}
  volumes:
  - name: live
    configMap:
      name: live
"#,
        node = s.kubelet.node
    ));
    let pod = s.wait_running("watcher");
    eventually("the pod reads the first value", WAIT, || {
        let log = s.container_log(&pod, "main");
        if log.lines().any(|l| l == "V=one") {
            Ok(())
        } else {
            Err(log)
        }
    });
    s.server.ok(&[
        "patch",
        "configmap",
        "live",
        "-n",
        &s.ns,
        "--type=merge",
        "-p",
        r#"{"data":{"v":"two"}}"#,
    ]);
    eventually("the pod reads the updated value", WAIT, || {
        let log = s.container_log(&pod, "main");
        if log.lines().last() == Some("V=two") {
            Ok(())
        } else {
            Err(log)
        }
    });
    assert_eq!(
        s.pod("watcher")["status"]["containerStatuses"][0]["restartCount"],
        0
    );
}

/// An HTTPS server on the host with a self-signed certificate: 200 for `path`, 404 otherwise.
/// Returns its port and the number of requests for `path` it answered.
fn https_server(path: &'static str) -> (u16, Arc<AtomicU32>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (config, counter) = (config.clone(), counter.clone());
            thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut buf = [0u8; 2048];
                let n = tls.read(&mut buf).unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let ok = request.starts_with(&format!("GET {path} "));
                if ok {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                let status = if ok { "200 OK" } else { "404 Not Found" };
                let _ = write!(
                    tls,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    (port, hits)
}

#[test]
fn https_probes_speak_tls_without_verifying_the_certificate() {
    let s = Stack::start("kl-https");
    let (port, hits) = https_server("/readyz");
    s.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: https
spec:
  nodeName: {node}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: good
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    readinessProbe:
      httpGet: {{scheme: HTTPS, host: 127.0.0.1, port: {port}, path: /readyz}}
      periodSeconds: 1
  - name: bad
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    readinessProbe:
      httpGet: {{scheme: HTTPS, host: 127.0.0.1, port: {port}, path: /nope}}
      periodSeconds: 1
"#,
        node = s.kubelet.node
    ));
    let pod = eventually("the good container is ready", WAIT, || {
        let pod = s.pod("https");
        if container(&pod, "good")["ready"] == true {
            Ok(pod)
        } else {
            Err(pod["status"].to_string())
        }
    });
    assert!(hits.load(Ordering::Relaxed) >= 1);
    assert_eq!(container(&pod, "bad")["ready"], false);
    assert_eq!(condition(&pod, "Ready"), "False");
    eventually("an Unhealthy event with the status code", WAIT, || {
        let list = s.server.json(&[
            "get",
            "events",
            "-n",
            &s.ns,
            "--field-selector",
            "involvedObject.name=https,reason=Unhealthy",
        ]);
        let found = list["items"].as_array().into_iter().flatten().any(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("Readiness probe failed") && m.contains("404"))
        });
        if found {
            Ok(())
        } else {
            Err(list.to_string())
        }
    });
}

/// The claims of a JWT (its payload, not verified).
fn jwt_claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token
        .trim()
        .split('.')
        .nth(1)
        .expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}
