//! kube-controller-manager against the real apiserver: namespaces get their defaults, deleting a
//! namespace empties it, Deployments roll out and are garbage-collected.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "kcm/mod.rs"]
mod kcm;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use kcm::{eventually, exists, pod_status_helper, ready_pods, ApiServer, Kcm, StopOnDrop};

#[test]
fn new_namespace_gets_default_service_account_and_root_ca() {
    let server = ApiServer::start();
    // A front proxy's CA and client certificate, as kubeadm's front-proxy-ca/-client.
    let front_proxy = FrontProxy::new(server.dir());
    let kcm = Kcm::start(
        &server,
        &[
            &format!("--client-ca-file={}", server.pki.ca_cert.display()),
            &format!(
                "--requestheader-client-ca-file={}",
                front_proxy.ca.display()
            ),
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
        ],
    );
    server.ok(&["create", "namespace", "team-a"]);
    eventually("default service account", || {
        exists(
            &server,
            &["get", "serviceaccount", "default", "-n", "team-a"],
        )
    });
    eventually("kube-root-ca.crt", || {
        exists(
            &server,
            &["get", "configmap", "kube-root-ca.crt", "-n", "team-a"],
        )
    });
    let cm = server.json(&["get", "configmap", "kube-root-ca.crt", "-n", "team-a"]);
    let ca = std::fs::read_to_string(&server.pki.ca_cert).expect("ca");
    assert_eq!(cm["data"]["ca.crt"].as_str(), Some(ca.as_str()));
    // Deleting the ServiceAccount brings it back.
    server.ok(&["delete", "serviceaccount", "default", "-n", "team-a"]);
    eventually("default service account recreated", || {
        exists(
            &server,
            &["get", "serviceaccount", "default", "-n", "team-a"],
        )
    });
    // The secure port: health for anyone; /metrics only for who RBAC allows (delegated
    // TokenReview + SubjectAccessReview), as upstream.
    let curl = |path: &str, token: Option<&str>| -> (String, String) {
        let url = format!("https://127.0.0.1:{}{path}", kcm.port);
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sk", "-o", "-", "-w", "\n%{http_code}", &url]);
        if let Some(t) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        let out = cmd.output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.to_owned(), body.to_owned())
    };
    assert_eq!(curl("/healthz", None).0, "200");
    let (code, body) = curl("/metrics", None);
    assert_eq!(code, "403", "{body}");
    assert!(
        body.contains(r#"User \"system:anonymous\" cannot get path \"/metrics\""#),
        "{body}"
    );
    assert_eq!(curl("/metrics", Some("not-a-token")).0, "401");
    server.ok(&["create", "serviceaccount", "prometheus", "-n", "team-a"]);
    server.ok(&[
        "create",
        "clusterrolebinding",
        "prometheus",
        "--clusterrole=system:monitoring",
        "--serviceaccount=team-a:prometheus",
    ]);
    let token = server.ok(&["create", "token", "prometheus", "-n", "team-a"]);
    let (code, body) = curl("/metrics", Some(token.trim()));
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("process_resident_memory_bytes"), "{body}");

    // Client certificates (--client-ca-file): the CN is the user, O the groups.
    let curl_cert = |cert: &(String, String), headers: &[&str]| -> (String, String) {
        let dir = server.dir();
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        let (crt, key) = (
            dir.join(format!("c-{n}.crt")),
            dir.join(format!("c-{n}.key")),
        );
        std::fs::write(&crt, &cert.0).expect("cert");
        std::fs::write(&key, &cert.1).expect("key");
        let url = format!("https://127.0.0.1:{}/metrics", kcm.port);
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sk", "-o", "-", "-w", "\n%{http_code}", &url])
            .arg("--cert")
            .arg(&crt)
            .arg("--key")
            .arg(&key);
        for h in headers {
            cmd.args(["-H", h]);
        }
        let out = cmd.output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.to_owned(), body.to_owned())
    };
    let scraper =
        common::issue_client_cert(&server.pki, "scraper", &["system:monitoring"]).expect("cert");
    let (code, body) = curl_cert(&scraper, &[]);
    assert_eq!(code, "200", "{body}");
    let alice = common::issue_client_cert(&server.pki, "alice", &[]).expect("cert");
    let (code, body) = curl_cert(&alice, &["X-Remote-User: root"]);
    assert_eq!(code, "403", "{body}");
    assert!(body.contains(r#"User \"alice\" cannot get path"#), "{body}");
    // A front proxy (--requestheader-*) names the user in headers; other certificates can't.
    let proxy = front_proxy.client("front-proxy-client");
    let (code, body) = curl_cert(
        &proxy,
        &["X-Remote-User: bob", "X-Remote-Group: system:monitoring"],
    );
    assert_eq!(code, "200", "{body}");
    let (code, body) = curl_cert(&proxy, &["X-Remote-User: bob"]);
    assert_eq!(code, "403", "{body}");
    assert!(body.contains(r#"User \"bob\" cannot get path"#), "{body}");
    let stranger = front_proxy.client("someone-else");
    let (code, body) = curl_cert(
        &stranger,
        &["X-Remote-User: bob", "X-Remote-Group: system:monitoring"],
    );
    assert_eq!(code, "401", "{body}");

    // The leader lease exists in kube-system.
    let lease = server.json(&[
        "get",
        "lease",
        "kube-controller-manager",
        "-n",
        "kube-system",
    ]);
    assert!(lease["spec"]["holderIdentity"]
        .as_str()
        .is_some_and(|h| h.contains('_')));
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

#[test]
fn deleting_a_namespace_removes_its_objects_including_custom_resources() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &[]);
    server.ok_stdin(&["apply", "-f", "-"], CRD);
    server.ok(&["create", "namespace", "doomed"]);
    server.ok(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "doomed",
        "--from-literal=a=b",
    ]);
    server.ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        "doomed",
        "--from-literal=a=b",
    ]);
    eventually("widgets served", || {
        server
            .kubectl_stdin(
                &["apply", "-n", "doomed", "-f", "-"],
                "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\n",
            )
            .success()
    });
    server.ok(&["delete", "namespace", "doomed", "--wait=false"]);
    eventually("namespace gone", || {
        !exists(&server, &["get", "namespace", "doomed"])
    });
    // Recreated namespace is empty: the old objects went with it.
    server.ok(&["create", "namespace", "doomed"]);
    let widgets = server.ok(&["get", "widgets", "-n", "doomed", "-o", "name"]);
    assert!(widgets.trim().is_empty(), "{widgets}");
    let cms = server.ok(&[
        "get",
        "configmap",
        "cfg",
        "-n",
        "doomed",
        "--ignore-not-found",
        "-o",
        "name",
    ]);
    assert!(cms.trim().is_empty(), "{cms}");
}

#[test]
fn deployment_rolls_out_updates_within_max_unavailable_and_is_garbage_collected() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &[]);
    let ns = "apps";
    server.ok(&["create", "namespace", ns]);
    eventually("default service account", || {
        exists(&server, &["get", "serviceaccount", "default", "-n", ns])
    });
    let stop = Arc::new(AtomicBool::new(false));
    thread::scope(|scope| {
        let helper_stop = stop.clone();
        let srv = &server;
        scope.spawn(move || pod_status_helper(srv, ns, helper_stop));
        let _stop_helper = StopOnDrop(stop.clone());

        server.ok(&[
            "create",
            "deployment",
            "web",
            "-n",
            ns,
            "--image=busybox:1.36",
            "--replicas=4",
        ]);
        server.ok(&[
            "patch",
            "deployment",
            "web",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"strategy":{"rollingUpdate":{"maxSurge":1,"maxUnavailable":1}}}}"#,
        ]);
        let status = server.kubectl(&[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            ns,
            "--timeout=60s",
        ]);
        assert!(status.success(), "rollout status failed\n{status}");
        assert!(
            status.stdout.contains("successfully rolled out"),
            "{status}"
        );

        // kubectl describe shows upstream's events of both controllers.
        let mut last = String::new();
        let seen = (0..240).any(|_| {
            let described = server.ok(&["describe", "deployment", "web", "-n", ns]);
            let created = kcm::events(
                &server,
                ns,
                "ReplicaSet",
                "SuccessfulCreate",
                "replicaset-controller",
            )
            .len();
            last = format!("{created} SuccessfulCreate events; describe:\n{described}");
            let done = described.contains("ScalingReplicaSet")
                && described.contains("Scaled up replica set web-")
                && created == 4;
            if !done {
                thread::sleep(Duration::from_millis(250));
            }
            done
        });
        assert!(seen, "events missing: {last}");

        // Also exposes it: a Service gets EndpointSlices and Endpoints with the ready pods.
        server.ok(&[
            "expose",
            "deployment",
            "web",
            "-n",
            ns,
            "--port=80",
            "--target-port=8080",
        ]);
        eventually("endpoints list 4 ready pods", || {
            let out = server.kubectl(&["get", "endpoints", "web", "-n", ns, "-o", "json"]);
            out.success()
                && out.json()["subsets"][0]["addresses"]
                    .as_array()
                    .is_some_and(|a| a.len() == 4)
        });
        eventually("an endpointslice lists 4 endpoints", || {
            let out = server.kubectl(&[
                "get",
                "endpointslices",
                "-n",
                ns,
                "-l",
                "kubernetes.io/service-name=web",
                "-o",
                "json",
            ]);
            out.success()
                && out.json()["items"][0]["endpoints"]
                    .as_array()
                    .is_some_and(|a| a.len() == 4)
        });

        // Deleting the Service takes its Endpoints and EndpointSlices with it.
        server.ok(&["delete", "service", "web", "-n", ns]);
        eventually(
            "endpoints and endpointslices of the deleted service are gone",
            || {
                let eps = server.ok(&["get", "endpoints", "-n", ns, "-o", "name"]);
                let slices = server.ok(&[
                    "get",
                    "endpointslices",
                    "-n",
                    ns,
                    "-l",
                    "kubernetes.io/service-name=web",
                    "-o",
                    "name",
                ]);
                eps.trim().is_empty() && slices.trim().is_empty()
            },
        );

        server.ok(&[
            "set",
            "image",
            "deployment/web",
            "-n",
            ns,
            "busybox=busybox:1.37",
        ]);
        let watcher = server.spawn_kubectl(&[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            ns,
            "--timeout=90s",
        ]);
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut min_ready = usize::MAX;
        loop {
            if let Some((ready, _)) = ready_pods(&server, ns) {
                min_ready = min_ready.min(ready);
            }
            let d = server.json(&["get", "deployment", "web", "-n", ns]);
            let done = d["status"]["updatedReplicas"] == 4
                && d["status"]["availableReplicas"] == 4
                && d["status"]["replicas"] == 4
                && d["status"]["observedGeneration"] == d["metadata"]["generation"];
            if done {
                break;
            }
            assert!(Instant::now() < deadline, "rollout did not finish: {d}");
            thread::sleep(Duration::from_millis(100));
        }
        drop(watcher);
        assert!(
            min_ready >= 3,
            "maxUnavailable=1 violated: only {min_ready} ready pods seen"
        );
        let history = server.ok(&["rollout", "history", "deployment/web", "-n", ns]);
        assert!(history.contains('1') && history.contains('2'), "{history}");
        let rs = server.ok(&["get", "rs", "-n", ns, "-o", "name"]);
        assert_eq!(rs.lines().count(), 2, "{rs}");

        server.ok(&["rollout", "undo", "deployment/web", "-n", ns]);
        let status = server.kubectl(&[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            ns,
            "--timeout=60s",
        ]);
        assert!(status.success(), "rollout undo status failed\n{status}");
        let image = server.ok(&[
            "get",
            "deployment",
            "web",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ]);
        assert_eq!(image, "busybox:1.36");

        server.ok(&["delete", "deployment", "web", "-n", ns]);
        eventually("replica sets and pods garbage collected", || {
            let rs = server.ok(&["get", "rs", "-n", ns, "-o", "name"]);
            let pods = server.ok(&["get", "pods", "-n", ns, "-o", "name"]);
            rs.trim().is_empty() && pods.trim().is_empty()
        });
    });
}

fn uid(server: &ApiServer, args: &[&str]) -> String {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "jsonpath={.metadata.uid}"]);
    server.ok(&full)
}

#[test]
fn foreground_and_orphan_deletion_and_cross_namespace_owner_references() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &[]);
    for ns in ["gc", "other"] {
        server.ok(&["create", "namespace", ns]);
        eventually("default service account", || {
            exists(&server, &["get", "serviceaccount", "default", "-n", ns])
        });
    }
    let rs_of = |deploy: &str| -> String {
        let mut name = String::new();
        eventually("the deployment's replica set", || {
            name = server.ok(&[
                "get",
                "rs",
                "-n",
                "gc",
                "-l",
                &format!("app={deploy}"),
                "-o",
                "name",
            ]);
            !name.trim().is_empty()
        });
        name.trim().to_owned()
    };

    // Foreground: the owner stays (with the foregroundDeletion finalizer) while a dependent
    // that blocks owner deletion exists; here a finalizer holds the ReplicaSet.
    server.ok(&[
        "create",
        "deployment",
        "fg",
        "-n",
        "gc",
        "--image=busybox",
        "--replicas=1",
    ]);
    let rs = rs_of("fg");
    server.ok(&[
        "patch",
        &rs,
        "-n",
        "gc",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    server.ok(&[
        "delete",
        "deployment",
        "fg",
        "-n",
        "gc",
        "--cascade=foreground",
        "--wait=false",
    ]);
    eventually("the replica set is being deleted", || {
        server.json(&["get", &rs, "-n", "gc"])["metadata"]["deletionTimestamp"].is_string()
    });
    let owner = server.json(&["get", "deployment", "fg", "-n", "gc"]);
    assert!(
        owner["metadata"]["deletionTimestamp"].is_string(),
        "{owner}"
    );
    assert_eq!(
        owner["metadata"]["finalizers"],
        serde_json::json!(["foregroundDeletion"])
    );
    server.ok(&[
        "patch",
        &rs,
        "-n",
        "gc",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    eventually("the owner goes after its dependents", || {
        !exists(&server, &["get", "deployment", "fg", "-n", "gc"])
            && !exists(&server, &["get", &rs, "-n", "gc"])
    });

    // Orphan: the owner goes, the ReplicaSet stays without its owner reference.
    server.ok(&[
        "create",
        "deployment",
        "or",
        "-n",
        "gc",
        "--image=busybox",
        "--replicas=1",
    ]);
    let rs = rs_of("or");
    server.ok(&["delete", "deployment", "or", "-n", "gc", "--cascade=orphan"]);
    eventually("the deployment is gone", || {
        !exists(&server, &["get", "deployment", "or", "-n", "gc"])
    });
    let orphan = server.json(&["get", &rs, "-n", "gc"]);
    assert!(
        orphan["metadata"]["deletionTimestamp"].is_null(),
        "{orphan}"
    );
    assert!(
        orphan["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|o| o.is_empty()),
        "{orphan}"
    );

    // A new Deployment with the same selector adopts the orphaned ReplicaSet (same template, so
    // no new one), and the ReplicaSet adopts a matching hand-made pod, then trims the surplus.
    server.ok(&[
        "create",
        "deployment",
        "or",
        "-n",
        "gc",
        "--image=busybox",
        "--replicas=1",
    ]);
    let deploy_uid = uid(&server, &["deployment", "or", "-n", "gc"]);
    eventually("the orphaned replica set is adopted", || {
        let rs = server.json(&["get", &rs, "-n", "gc"]);
        rs["metadata"]["ownerReferences"][0]["uid"] == deploy_uid.as_str()
    });
    let sets = server.ok(&["get", "rs", "-n", "gc", "-l", "app=or", "-o", "name"]);
    assert_eq!(sets.lines().count(), 1, "{sets}");
    let hash = server.ok(&[
        "get",
        &rs,
        "-n",
        "gc",
        "-o",
        "jsonpath={.spec.selector.matchLabels.pod-template-hash}",
    ]);
    let stray = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stray", "namespace": "gc",
                     "labels": {"app": "or", "pod-template-hash": hash}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    });
    server.ok_stdin(&["create", "-f", "-"], &stray.to_string());
    eventually(
        "the replica set adopts the stray pod and keeps one replica",
        || {
            let pods = server.json(&["get", "pods", "-n", "gc", "-l", "app=or"]);
            let items = pods["items"].as_array().cloned().unwrap_or_default();
            let live: Vec<_> = items
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .collect();
            live.len() == 1
                && live[0]["metadata"]["ownerReferences"][0]["name"]
                    == rs.trim_start_matches("replicaset.apps/")
        },
    );

    // Owner references do not cross namespaces: a ConfigMap in "other" naming a ConfigMap of
    // "gc" as owner counts as orphaned and is collected; a cluster-scoped dependent of a
    // namespaced owner is kept, with a warning event.
    server.ok(&["create", "configmap", "owner", "-n", "gc"]);
    let owner_uid = uid(&server, &["configmap", "owner", "-n", "gc"]);
    let owned = |kind: &str, name: &str, ns: Option<&str>| {
        let mut meta = serde_json::json!({"name": name, "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid,
        }]});
        if let Some(ns) = ns {
            meta["namespace"] = serde_json::json!(ns);
        }
        let obj = match kind {
            "ConfigMap" => {
                serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta})
            }
            _ => {
                serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                                    "metadata": meta, "rules": []})
            }
        };
        server.ok_stdin(&["create", "-f", "-"], &obj.to_string());
    };
    owned("ConfigMap", "same-ns", Some("gc"));
    owned("ConfigMap", "cross-ns", Some("other"));
    owned("ClusterRole", "cluster-scoped-dependent", None);
    eventually("the cross-namespace dependent is collected", || {
        !exists(&server, &["get", "configmap", "cross-ns", "-n", "other"])
    });
    eventually("a warning event on the cluster-scoped dependent", || {
        let events = server.ok(&[
            "get",
            "events",
            "-A",
            "--field-selector",
            "reason=OwnerRefInvalidNamespace",
            "-o",
            "name",
        ]);
        events.lines().count() >= 1
    });
    assert!(exists(
        &server,
        &["get", "configmap", "same-ns", "-n", "gc"]
    ));
    assert!(exists(
        &server,
        &["get", "clusterrole", "cluster-scoped-dependent"]
    ));
    // Deleting the real owner collects its same-namespace dependent.
    server.ok(&["delete", "configmap", "owner", "-n", "gc"]);
    eventually("the same-namespace dependent is collected", || {
        !exists(&server, &["get", "configmap", "same-ns", "-n", "gc"])
    });
}

/// A front-proxy CA (openssl) and the client certificates it issues.
struct FrontProxy {
    dir: std::path::PathBuf,
    ca: std::path::PathBuf,
}

impl FrontProxy {
    fn new(dir: &std::path::Path) -> Self {
        let dir = dir.join("front-proxy");
        std::fs::create_dir_all(&dir).expect("dir");
        let ca = dir.join("ca.crt");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=front-proxy-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,digitalSignature,keyCertSign",
            "-keyout",
            &dir.join("ca.key").display().to_string(),
            "-out",
            &ca.display().to_string(),
        ]);
        FrontProxy { dir, ca }
    }

    /// A client certificate and key (PEM) for `cn`.
    fn client(&self, cn: &str) -> (String, String) {
        let p = |f: &str| self.dir.join(format!("{cn}.{f}")).display().to_string();
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &p("key"),
            "-out",
            &p("csr"),
        ]);
        let ext = p("ext");
        std::fs::write(
            &ext,
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .expect("ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p("csr"),
            "-CA",
            &self.ca.display().to_string(),
            "-CAkey",
            &self.dir.join("ca.key").display().to_string(),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &p("crt"),
        ]);
        (
            std::fs::read_to_string(p("crt")).expect("crt"),
            std::fs::read_to_string(p("key")).expect("key"),
        )
    }
}

fn openssl(args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
