//! The smaller controllers of kube-controller-manager against the real apiserver: disruption
//! budgets gate eviction, resource quotas track usage, aggregated ClusterRoles follow labels.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "kcm/mod.rs"]
mod kcm;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use kcm::{eventually, exists, pod_status_helper, ApiServer, Kcm, User};
use serde_json::Value;

fn pod_yaml(ns: &str, name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}\n\
         spec:\n  containers:\n  - {{name: c, image: registry.k8s.io/pause:3.10}}\n"
    )
}

fn evict(server: &ApiServer, ns: &str, pod: &str) -> (u16, String) {
    let body = serde_json::json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod, "namespace": ns},
    });
    server.raw_request(
        "POST",
        &format!("/api/v1/namespaces/{ns}/pods/{pod}/eviction"),
        Some(body.to_string().as_bytes()),
        Some("application/json"),
        User::Admin,
    )
}

/// Creates `name` and waits for the controller-manager to give it its default ServiceAccount.
fn namespace(server: &ApiServer, name: &str) -> String {
    server.ok(&["create", "namespace", name]);
    eventually("default service account", || {
        exists(server, &["get", "serviceaccount", "default", "-n", name])
    });
    name.to_owned()
}

fn pdb_status(server: &ApiServer, ns: &str, name: &str) -> Value {
    server.json(&["get", "pdb", name, "-n", ns])["status"].clone()
}

/// Waits until the budget's status has these counts and returns it.
fn wait_pdb(server: &ApiServer, ns: &str, name: &str, want: (i64, i64, i64, i64)) -> Value {
    let mut last = Value::Null;
    eventually(&format!("pdb {name} status {want:?}"), || {
        last = pdb_status(server, ns, name);
        let got = (
            last["expectedPods"].as_i64().unwrap_or(-1),
            last["currentHealthy"].as_i64().unwrap_or(-1),
            last["desiredHealthy"].as_i64().unwrap_or(-1),
            last["disruptionsAllowed"].as_i64().unwrap_or(-1),
        );
        got == want
    });
    last
}

fn condition(status: &Value, type_: &str) -> (String, String) {
    let c = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .cloned()
        .unwrap_or(Value::Null);
    (
        c["status"].as_str().unwrap_or_default().to_owned(),
        c["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn disruption_budget_status_gates_eviction() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &["--controllers=*,-garbagecollector"]);
    let ns = namespace(&server, "budgets");
    let stop = Arc::new(AtomicBool::new(false));
    thread::scope(|scope| {
        let helper_stop = stop.clone();
        let server_ref = &server;
        let ns_ref = ns.as_str();
        scope.spawn(move || pod_status_helper(server_ref, ns_ref, helper_stop));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for name in ["web-a", "web-b", "web-c"] {
                server.ok_stdin(&["apply", "-f", "-"], &pod_yaml(&ns, name, "app: web"));
            }
            server.ok(&[
                "create",
                "pdb",
                "web",
                "-n",
                &ns,
                "--selector=app=web",
                "--min-available=2",
            ]);
            let status = wait_pdb(&server, &ns, "web", (3, 3, 2, 1));
            assert_eq!(
                condition(&status, "DisruptionAllowed"),
                ("True".into(), "SufficientPods".into())
            );
            assert_eq!(status["observedGeneration"].as_i64(), Some(1));

            // One disruption fits the budget.
            let (code, body) = evict(&server, &ns, "web-a");
            assert_eq!(code, 201, "{body}");
            let status = wait_pdb(&server, &ns, "web", (2, 2, 2, 0));
            assert_eq!(
                condition(&status, "DisruptionAllowed"),
                ("False".into(), "InsufficientPods".into())
            );
            // The next one would violate it.
            let (code, body) = evict(&server, &ns, "web-b");
            assert_eq!(code, 429, "{body}");
            assert!(body.contains("disruption budget"), "{body}");
            assert!(server
                .kubectl(&["get", "pod", "web-b", "-n", &ns])
                .success());

            // A replacement pod makes room again.
            server.ok_stdin(&["apply", "-f", "-"], &pod_yaml(&ns, "web-d", "app: web"));
            wait_pdb(&server, &ns, "web", (3, 3, 2, 1));
            let (code, body) = evict(&server, &ns, "web-b");
            assert_eq!(code, 201, "{body}");

            // A spec change is observed.
            server.ok(&[
                "patch",
                "pdb",
                "web",
                "-n",
                &ns,
                "--type=merge",
                "-p",
                r#"{"spec":{"minAvailable":1}}"#,
            ]);
            let status = wait_pdb(&server, &ns, "web", (2, 2, 1, 1));
            assert_eq!(status["observedGeneration"].as_i64(), Some(2));

            // Percent budgets resolve against the owning ReplicaSet's scale.
            let rs = format!(
                "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: api, namespace: {ns}}}\n\
                 spec:\n  replicas: 4\n  selector: {{matchLabels: {{app: api}}}}\n  template:\n    \
                 metadata: {{labels: {{app: api}}}}\n    spec:\n      containers:\n      - {{name: c, image: registry.k8s.io/pause:3.10}}\n"
            );
            server.ok_stdin(&["apply", "-f", "-"], &rs);
            server.ok(&[
                "create",
                "pdb",
                "api",
                "-n",
                &ns,
                "--selector=app=api",
                "--max-unavailable=25%",
            ]);
            wait_pdb(&server, &ns, "api", (4, 4, 3, 1));
            server.ok(&["scale", "rs", "api", "-n", &ns, "--replicas=8"]);
            wait_pdb(&server, &ns, "api", (8, 8, 6, 2));
        }));
        stop.store(true, Ordering::Relaxed);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    });
}

fn quota_used(server: &ApiServer, ns: &str, name: &str) -> Value {
    server.json(&["get", "resourcequota", name, "-n", ns])["status"]["used"].clone()
}

/// Waits until every `(resource, quantity)` in `want` is the quota's usage.
fn wait_used(server: &ApiServer, ns: &str, name: &str, want: &[(&str, &str)]) {
    let mut last = Value::Null;
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(&format!("quota {name} used {want:?}"), || {
            last = quota_used(server, ns, name);
            want.iter().all(|(k, v)| last[*k].as_str() == Some(*v))
        })
    }));
    if let Err(e) = ok {
        eprintln!("last status.used: {last}");
        std::panic::resume_unwind(e);
    }
}

fn sized_pod(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  containers:\n  \
         - name: c\n    image: registry.k8s.io/pause:3.10\n    resources:\n      \
         requests: {{cpu: 100m, memory: 64Mi}}\n      limits: {{cpu: 200m, memory: 64Mi}}\n"
    )
}

#[test]
fn resource_quota_usage_follows_creates_deletes_and_terminal_pods() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &["--resource-quota-sync-period=10s"]);
    let ns = namespace(&server, "quota");
    eventually("kube-root-ca.crt", || {
        exists(
            &server,
            &["get", "configmap", "kube-root-ca.crt", "-n", &ns],
        )
    });
    server.ok(&[
        "create",
        "quota",
        "compute",
        "-n",
        &ns,
        "--hard=pods=10,count/configmaps=10,configmaps=10,requests.cpu=2,cpu=2,\
         requests.memory=1Gi,limits.cpu=4,limits.memory=2Gi,services=5,services.nodeports=4",
    ]);
    wait_used(
        &server,
        &ns,
        "compute",
        &[
            ("pods", "0"),
            ("configmaps", "1"),
            ("count/configmaps", "1"),
            ("requests.cpu", "0"),
            ("services", "0"),
        ],
    );
    let status = server.json(&["get", "resourcequota", "compute", "-n", &ns])["status"].clone();
    assert_eq!(status["hard"]["requests.memory"], "1Gi");

    for name in ["p1", "p2"] {
        server.ok_stdin(&["apply", "-f", "-"], &sized_pod(&ns, name));
    }
    server.ok(&["create", "configmap", "c1", "-n", &ns, "--from-literal=a=b"]);
    server.ok(&[
        "create",
        "service",
        "nodeport",
        "np",
        "-n",
        &ns,
        "--tcp=80:80",
    ]);
    wait_used(
        &server,
        &ns,
        "compute",
        &[
            ("pods", "2"),
            ("configmaps", "2"),
            ("requests.cpu", "200m"),
            ("cpu", "200m"),
            ("requests.memory", "128Mi"),
            ("limits.cpu", "400m"),
            ("limits.memory", "128Mi"),
            ("services", "1"),
            ("services.nodeports", "1"),
        ],
    );
    let described = server.ok(&["describe", "quota", "compute", "-n", &ns]);
    assert!(
        described
            .lines()
            .any(|l| l.starts_with("requests.cpu") && l.contains("200m")),
        "{described}"
    );

    // Deletes give usage back.
    server.ok(&["delete", "pod", "p2", "-n", &ns, "--wait=false"]);
    server.ok(&["delete", "configmap", "c1", "-n", &ns]);
    wait_used(
        &server,
        &ns,
        "compute",
        &[
            ("pods", "1"),
            ("configmaps", "1"),
            ("requests.cpu", "100m"),
            ("requests.memory", "64Mi"),
        ],
    );
    // A finished pod no longer uses quota.
    server.ok(&[
        "patch",
        "pod",
        "p1",
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Succeeded"}}"#,
    ]);
    wait_used(
        &server,
        &ns,
        "compute",
        &[("pods", "0"), ("requests.cpu", "0"), ("limits.memory", "0")],
    );

    // A scoped quota only charges the pods in its scope.
    let be = namespace(&server, "quota-be");
    server.ok(&[
        "create",
        "quota",
        "besteffort",
        "-n",
        &be,
        "--hard=pods=5",
        "--scopes=BestEffort",
    ]);
    server.ok_stdin(&["apply", "-f", "-"], &sized_pod(&be, "sized"));
    server.ok_stdin(&["apply", "-f", "-"], &pod_yaml(&be, "idle", "app: idle"));
    server.ok_stdin(&["apply", "-f", "-"], &pod_yaml(&be, "idle2", "app: idle"));
    wait_used(&server, &be, "besteffort", &[("pods", "2")]);
    server.ok(&["delete", "pod", "idle2", "-n", &be, "--wait=false"]);
    wait_used(&server, &be, "besteffort", &[("pods", "1")]);
}

fn has_rule(server: &ApiServer, role: &str, resource: &str) -> bool {
    let out = server.kubectl(&["get", "clusterrole", role, "-o", "json"]);
    out.success()
        && out.json()["rules"].as_array().is_some_and(|rules| {
            rules.iter().any(|r| {
                r["resources"]
                    .as_array()
                    .is_some_and(|rs| rs.iter().any(|x| x == resource))
            })
        })
}

#[test]
fn aggregated_cluster_roles_follow_labelled_roles() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &[]);
    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n\
         metadata:\n  name: widget-viewer\n  labels: {rbac.authorization.k8s.io/aggregate-to-view: \"true\"}\n\
         rules:\n- {apiGroups: [example.com], resources: [widgets], verbs: [get, list, watch]}\n",
    );
    eventually("view includes widgets", || {
        has_rule(&server, "view", "widgets")
    });
    // view feeds edit, edit feeds admin.
    eventually("admin includes widgets", || {
        has_rule(&server, "admin", "widgets")
    });
    assert!(
        has_rule(&server, "view", "pods"),
        "view keeps its own rules"
    );

    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n\
         metadata: {name: monitoring}\n\
         aggregationRule:\n  clusterRoleSelectors:\n  - matchLabels: {rbac.example.com/aggregate-to-monitoring: \"true\"}\n\
         rules: []\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n\
         metadata:\n  name: monitoring-endpoints\n  labels: {rbac.example.com/aggregate-to-monitoring: \"true\"}\n\
         rules:\n- {apiGroups: [\"\"], resources: [endpoints, services], verbs: [get, list, watch]}\n",
    );
    eventually("monitoring aggregates endpoints", || {
        has_rule(&server, "monitoring", "endpoints")
    });
    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n\
         metadata:\n  name: monitoring-pods\n  labels: {rbac.example.com/aggregate-to-monitoring: \"true\"}\n\
         rules:\n- {apiGroups: [\"\"], resources: [pods], verbs: [get]}\n",
    );
    eventually("monitoring aggregates pods", || {
        has_rule(&server, "monitoring", "pods")
    });
    // Dropping the label takes the rules away again.
    server.ok(&[
        "label",
        "clusterrole",
        "monitoring-endpoints",
        "rbac.example.com/aggregate-to-monitoring-",
    ]);
    eventually("monitoring drops endpoints", || {
        !has_rule(&server, "monitoring", "endpoints")
    });
    assert!(has_rule(&server, "monitoring", "pods"));
    let rules = server.json(&["get", "clusterrole", "monitoring"])["rules"].clone();
    assert_eq!(rules.as_array().map(Vec::len), Some(1), "{rules}");
}

/// A new key and PEM certificate request for `subject` made with openssl; `(key path, csr)`.
fn openssl_request(
    dir: &std::path::Path,
    name: &str,
    subject: &str,
    key: &str,
) -> (std::path::PathBuf, String) {
    let key_path = dir.join(format!("{name}.key"));
    let csr_path = dir.join(format!("{name}.csr"));
    let mut args: Vec<String> = vec!["req".into(), "-new".into(), "-nodes".into()];
    match key {
        "rsa" => args.extend(["-newkey".into(), "rsa:2048".into()]),
        _ => args.extend([
            "-newkey".into(),
            "ec".into(),
            "-pkeyopt".into(),
            "ec_paramgen_curve:prime256v1".into(),
        ]),
    }
    args.extend([
        "-keyout".into(),
        key_path.display().to_string(),
        "-out".into(),
        csr_path.display().to_string(),
        "-subj".into(),
        subject.into(),
    ]);
    let out = std::process::Command::new("openssl")
        .args(&args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (key_path, std::fs::read_to_string(csr_path).expect("csr"))
}

fn csr_object(name: &str, pem: &str, signer: &str, usages: &[&str]) -> Value {
    use base64::Engine;
    serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(pem),
            "signerName": signer,
            "usages": usages,
            "expirationSeconds": 3600,
        },
    })
}

/// Stock `kubectl certificate approve` (a protobuf PUT of .../approval).
fn approve(server: &ApiServer, name: &str) {
    let out = server.ok(&["certificate", "approve", name]);
    assert!(out.contains("approved"), "{out}");
}

fn csr_status(server: &ApiServer, name: &str) -> Value {
    server.json(&["get", "csr", name])["status"].clone()
}

fn issued_certificate(server: &ApiServer, name: &str) -> String {
    use base64::Engine;
    let mut cert = String::new();
    eventually(&format!("certificate of {name}"), || {
        let status = csr_status(server, name);
        if let Some(b64) = status["certificate"].as_str().filter(|c| !c.is_empty()) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64 certificate");
            cert = String::from_utf8(bytes).expect("pem");
            return true;
        }
        false
    });
    cert
}

fn condition_of(server: &ApiServer, csr: &str, type_: &str) -> Option<Value> {
    csr_status(server, csr)["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
}

#[test]
fn approved_client_csr_is_signed_and_accepted_by_the_apiserver() {
    let server = ApiServer::start();
    let ca = server.pki.ca_cert.display().to_string();
    let ca_key = server.pki.ca_key.display().to_string();
    let _kcm = Kcm::start(
        &server,
        &[
            &format!("--cluster-signing-cert-file={ca}"),
            &format!("--cluster-signing-key-file={ca_key}"),
        ],
    );
    let dir = server.dir().join("csr");
    std::fs::create_dir_all(&dir).expect("dir");

    // A user's client certificate: signed only after `kubectl certificate approve`.
    let (bob_key, pem) = openssl_request(&dir, "bob", "/CN=bob/O=devs", "rsa");
    let obj = csr_object(
        "bob",
        &pem,
        "kubernetes.io/kube-apiserver-client",
        &["digital signature", "client auth"],
    );
    server.ok_stdin(&["create", "-f", "-"], &obj.to_string());

    // A client request with server usages fails validation instead of being signed.
    let (_, pem) = openssl_request(&dir, "eve", "/CN=eve", "ec");
    let obj = csr_object(
        "eve",
        &pem,
        "kubernetes.io/kube-apiserver-client",
        &["digital signature", "server auth"],
    );
    server.ok_stdin(&["create", "-f", "-"], &obj.to_string());
    approve(&server, "eve");
    eventually("eve failed", || {
        condition_of(&server, "eve", "Failed")
            .is_some_and(|c| c["reason"] == "SignerValidationFailure")
    });
    assert!(csr_status(&server, "eve")["certificate"].is_null());
    // bob's request, older than eve's, was seen by now and is not signed without approval.
    assert!(
        csr_status(&server, "bob")["certificate"].is_null(),
        "an unapproved request is not signed"
    );
    approve(&server, "bob");
    let cert = issued_certificate(&server, "bob");
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
    let bob_crt = dir.join("bob.crt");
    std::fs::write(&bob_crt, &cert).expect("write cert");
    let who = server.kubectl_cred(
        common::Cred::Cert(&bob_crt, &bob_key),
        &["auth", "whoami", "-o", "json"],
    );
    assert!(who.success(), "{who}");
    let info = who.json()["status"]["userInfo"].clone();
    assert_eq!(info["username"], "bob", "{info}");
    let groups: Vec<&str> = info["groups"]
        .as_array()
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(groups.contains(&"devs"), "{groups:?}");

    // Several organizations cannot be signed faithfully yet: refused rather than dropped.
    let (_, pem) = openssl_request(&dir, "multi", "/CN=multi/O=a/O=b", "ec");
    let obj = csr_object(
        "multi",
        &pem,
        "kubernetes.io/kube-apiserver-client",
        &["digital signature", "client auth"],
    );
    server.ok_stdin(&["create", "-f", "-"], &obj.to_string());
    approve(&server, "multi");
    eventually("multi failed", || {
        condition_of(&server, "multi", "Failed")
            .is_some_and(|c| c["reason"] == "SignerValidationFailure")
    });
    assert!(csr_status(&server, "multi")["certificate"].is_null());
}

#[test]
fn kubelet_client_csrs_are_auto_approved_only_when_the_requester_may() {
    let server = ApiServer::start();
    let ca = server.pki.ca_cert.display().to_string();
    let ca_key = server.pki.ca_key.display().to_string();
    let _kcm = Kcm::start(
        &server,
        &[
            &format!("--cluster-signing-cert-file={ca}"),
            &format!("--cluster-signing-key-file={ca_key}"),
        ],
    );
    let dir = server.dir().join("csr");
    std::fs::create_dir_all(&dir).expect("dir");
    // As kubeadm does: nodes may renew their own client certificates.
    server.ok(&[
        "create",
        "clusterrolebinding",
        "node-autoapprove-certificate-rotation",
        "--clusterrole=system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        "--group=system:nodes",
    ]);
    // alice may create requests but not have them approved.
    server.ok(&[
        "create",
        "clusterrole",
        "csr-creator",
        "--verb=create,get",
        "--resource=certificatesigningrequests",
    ]);
    server.ok(&[
        "create",
        "clusterrolebinding",
        "alice-csr",
        "--clusterrole=csr-creator",
        "--user=alice",
    ]);
    let usages = ["digital signature", "client auth"];
    let signer = "kubernetes.io/kube-apiserver-client-kubelet";
    let (_, pem) = openssl_request(&dir, "n2", "/O=system:nodes/CN=system:node:node-2", "ec");
    // The apiserver does not fill spec.username/groups from the requester yet; the request
    // carries the requester's real identity itself.
    let mut body = csr_object("from-alice", &pem, signer, &usages);
    body["spec"]["username"] = "alice".into();
    body["spec"]["groups"] = serde_json::json!(["developers", "system:authenticated"]);
    let body = body.to_string();
    let (code, out) = server.raw_request(
        "POST",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests",
        Some(body.as_bytes()),
        Some("application/json"),
        User::Alice,
    );
    assert_eq!(code, 201, "{out}");

    let (_, pem) = openssl_request(&dir, "n1", "/O=system:nodes/CN=system:node:node-1", "ec");
    let mut body = csr_object("node-1-renewal", &pem, signer, &usages);
    body["spec"]["username"] = "system:node:node-1".into();
    body["spec"]["groups"] = serde_json::json!(["system:nodes", "system:authenticated"]);
    let body = body.to_string();
    let (code, out) = server
        .request_as(
            "POST",
            "/apis/certificates.k8s.io/v1/certificatesigningrequests",
            Some(body.as_bytes()),
            Some("application/json"),
            common::Cred::Cert(&server.pki.node_cert, &server.pki.node_key),
        )
        .expect("request");
    assert_eq!(code, 201, "{out}");
    eventually("node-1 renewal approved", || {
        condition_of(&server, "node-1-renewal", "Approved").is_some()
    });
    let approved = condition_of(&server, "node-1-renewal", "Approved").expect("approved");
    assert_eq!(approved["reason"], "AutoApproved");
    assert_eq!(approved["status"], "True");
    let cert = issued_certificate(&server, "node-1-renewal");
    assert!(cert.contains("BEGIN CERTIFICATE"));
    // alice's request was looked at too (same pass of the queue) and stays pending.
    assert!(condition_of(&server, "from-alice", "Approved").is_none());
    assert!(csr_status(&server, "from-alice")["certificate"].is_null());
}

fn token_secret(id: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: bootstrap-token-{id}, namespace: kube-system}}\n\
         type: bootstrap.kubernetes.io/token\nstringData:\n  token-id: {id}\n  \
         token-secret: 0123456789abcdef\n  usage-bootstrap-signing: \"true\"\n{extra}"
    )
}

fn cluster_info(server: &ApiServer) -> Value {
    server.json(&["get", "configmap", "cluster-info", "-n", "kube-public"])["data"].clone()
}

#[test]
fn bootstrap_tokens_sign_cluster_info_and_expired_ones_are_cleaned() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &["--controllers=*,bootstrapsigner,tokencleaner"]);
    let kubeconfig = "apiVersion: v1\nkind: Config\nclusters: []\n";
    server.ok(&[
        "create",
        "configmap",
        "cluster-info",
        "-n",
        "kube-public",
        &format!("--from-literal=kubeconfig={kubeconfig}"),
    ]);
    server.ok_stdin(&["apply", "-f", "-"], &token_secret("abcdef", ""));
    eventually("cluster-info signed", || {
        cluster_info(&server)["jws-kubeconfig-abcdef"].is_string()
    });
    // kubeadm join's check: the detached JWS over the kubeconfig with the token secret.
    let jws = cluster_info(&server)["jws-kubeconfig-abcdef"]
        .as_str()
        .expect("jws")
        .to_owned();
    let (header, sig) = jws.split_once("..").expect("detached JWS");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header_json: Value =
        serde_json::from_slice(&b64.decode(header).expect("b64 header")).expect("json header");
    assert_eq!(
        header_json,
        serde_json::json!({"alg": "HS256", "kid": "abcdef"})
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef");
    let input = format!("{header}.{}", b64.encode(kubeconfig));
    ring::hmac::verify(&key, input.as_bytes(), &b64.decode(sig).expect("b64 sig"))
        .expect("signature verifies with the token secret");

    // A changed kubeconfig is signed again.
    let changed = "apiVersion: v1\nkind: Config\nclusters: [{name: c}]\n";
    let patch = serde_json::json!({"data": {"kubeconfig": changed}}).to_string();
    server.ok(&[
        "patch",
        "configmap",
        "cluster-info",
        "-n",
        "kube-public",
        "--type=merge",
        "-p",
        &patch,
    ]);
    eventually("cluster-info re-signed", || {
        let sig = cluster_info(&server)["jws-kubeconfig-abcdef"]
            .as_str()
            .map(str::to_owned);
        sig.is_some_and(|s| s != jws)
    });

    // Expired tokens are deleted; live ones stay. The expired one never signs.
    server.ok_stdin(
        &["apply", "-f", "-"],
        &token_secret("expird", "  expiration: \"2020-01-01T00:00:00Z\"\n"),
    );
    server.ok_stdin(
        &["apply", "-f", "-"],
        &token_secret("future", "  expiration: \"2099-01-01T00:00:00Z\"\n"),
    );
    eventually("expired token deleted", || {
        !exists(
            &server,
            &[
                "get",
                "secret",
                "bootstrap-token-expird",
                "-n",
                "kube-system",
            ],
        )
    });
    eventually("future token signs", || {
        cluster_info(&server)["jws-kubeconfig-future"].is_string()
    });
    assert!(exists(
        &server,
        &[
            "get",
            "secret",
            "bootstrap-token-future",
            "-n",
            "kube-system"
        ]
    ));
    assert!(exists(
        &server,
        &[
            "get",
            "secret",
            "bootstrap-token-abcdef",
            "-n",
            "kube-system"
        ]
    ));
    assert!(cluster_info(&server)["jws-kubeconfig-expird"].is_null());

    // Deleting a token removes its signature.
    server.ok(&[
        "delete",
        "secret",
        "bootstrap-token-abcdef",
        "-n",
        "kube-system",
    ]);
    eventually("signature removed", || {
        cluster_info(&server)["jws-kubeconfig-abcdef"].is_null()
    });
}
