//! Security e2e: RBAC, the Node authorizer and NodeRestriction, service-account tokens,
//! anonymous access, encryption at rest and the audit log, driven by stock kubectl and curl
//! against the real binary.

mod common;

use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{wait_for, ApiServer, Cred, User, WAIT};
use serde_json::{json, Value};

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn alice(k: &ApiServer) -> Cred<'_> {
    Cred::Cert(&k.pki.alice_cert, &k.pki.alice_key)
}

/// Polls until `user` may `args` (kubectl succeeds), as RBAC reads bindings from the cache.
#[track_caller]
fn eventually_allowed(k: &ApiServer, user: User, args: &[&str]) -> String {
    let mut last = None;
    wait_for(&format!("{user:?} allowed to {args:?}"), WAIT, || {
        let out = k.kubectl_as(user, args);
        let ok = out.success();
        last = Some(out);
        ok
    });
    last.map(|o| o.stdout).unwrap_or_default()
}

#[test]
fn rolebinding_grants_access_and_auth_can_i_answers() {
    let k = ApiServer::start();
    let ns = k.namespace("team");

    let out = k.kubectl_as(User::Alice, &["get", "pods", "-n", &ns]);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains(
            "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"team\""
        ),
        "{out}"
    );
    let out = k.kubectl_as(User::Alice, &["auth", "can-i", "list", "pods", "-n", &ns]);
    assert_eq!(out.stdout.trim(), "no", "{out}");
    assert_eq!(out.code(), Some(1), "{out}");

    k.ok(&[
        "create",
        "rolebinding",
        "alice-view",
        "--clusterrole=view",
        "--user=alice",
        "-n",
        &ns,
    ]);
    eventually_allowed(&k, User::Alice, &["get", "pods", "-n", &ns]);

    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        k.kubectl_as(User::Alice, &all).stdout.trim().to_string()
    };
    assert_eq!(can(&["list", "pods", "-n", &ns]), "yes");
    assert_eq!(can(&["watch", "deployments.apps", "-n", &ns]), "yes");
    assert_eq!(can(&["delete", "pods", "-n", &ns]), "no");
    assert_eq!(
        can(&["get", "secrets", "-n", &ns]),
        "no",
        "view excludes secrets"
    );
    assert_eq!(
        can(&["list", "pods", "-n", "default"]),
        "no",
        "bound in team only"
    );
    assert_eq!(can(&["list", "nodes"]), "no");

    let list = k.kubectl_as(User::Alice, &["auth", "can-i", "--list", "-n", &ns]);
    assert!(list.success(), "{list}");
    let pods_line = list
        .stdout
        .lines()
        .find(|l| l.starts_with("pods "))
        .unwrap_or_else(|| panic!("no pods rule in:\n{}", list.stdout));
    assert!(
        pods_line.contains("[get list watch]"),
        "{pods_line}\n{}",
        list.stdout
    );
    assert!(
        list.stdout
            .contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "system:basic-user is listed:\n{}",
        list.stdout
    );

    let who = k.kubectl_as(User::Alice, &["auth", "whoami", "-o", "json"]);
    assert!(who.success(), "{who}");
    let info = &who.json()["status"]["userInfo"];
    assert_eq!(info["username"], "alice", "{who}");
    assert_eq!(
        info["groups"],
        json!(["developers", "system:authenticated"]),
        "{who}"
    );
}

#[test]
fn edit_and_admin_cannot_grant_cluster_admin() {
    let k = ApiServer::start();
    let ns = k.namespace("escalate");
    k.ok(&[
        "create",
        "rolebinding",
        "alice-edit",
        "--clusterrole=edit",
        "--user=alice",
        "-n",
        &ns,
    ]);
    eventually_allowed(&k, User::Alice, &["get", "configmaps", "-n", &ns]);
    let grant = |name: &str, role: &str| {
        k.kubectl_as(
            User::Alice,
            &[
                "create",
                "rolebinding",
                name,
                &format!("--clusterrole={role}"),
                "--user=alice",
                "-n",
                &ns,
            ],
        )
    };
    // edit holds no RBAC write at all.
    let out = grant("boom", "cluster-admin");
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr
            .contains("cannot create resource \"rolebindings\""),
        "{out}"
    );

    // admin may write bindings, but only for what it holds itself.
    k.ok(&[
        "create",
        "rolebinding",
        "alice-admin",
        "--clusterrole=admin",
        "--user=alice",
        "-n",
        &ns,
    ]);
    eventually_allowed(&k, User::Alice, &["get", "rolebindings", "-n", &ns]);
    let out = grant("boom", "cluster-admin");
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr
            .contains("is attempting to grant RBAC permissions not currently held"),
        "{out}"
    );
    assert!(
        k.kubectl(&["get", "rolebinding", "boom", "-n", &ns])
            .stderr
            .contains("NotFound"),
        "the refused binding was not stored"
    );
    // Granting what it holds is fine.
    let out = grant("share-view", "view");
    assert!(out.success(), "{out}");
}

#[test]
fn role_scope_and_resource_names_are_exact() {
    let k = ApiServer::start();
    let ns = k.namespace("names");
    for name in ["foo", "foobar"] {
        k.ok(&[
            "create",
            "secret",
            "generic",
            name,
            "--from-literal=k=v",
            "-n",
            &ns,
        ]);
    }
    k.ok(&[
        "create",
        "role",
        "foo-reader",
        "--verb=get",
        "--resource=secrets",
        "--resource-name=foo",
        "-n",
        &ns,
    ]);
    // A namespaced role naming a cluster-scoped resource grants nothing for it.
    k.ok(&[
        "create",
        "role",
        "node-reader",
        "--verb=get,list",
        "--resource=nodes",
        "-n",
        &ns,
    ]);
    for role in ["foo-reader", "node-reader"] {
        k.ok(&[
            "create",
            "rolebinding",
            role,
            &format!("--role={role}"),
            "--user=alice",
            "-n",
            &ns,
        ]);
    }
    eventually_allowed(&k, User::Alice, &["get", "secret", "foo", "-n", &ns]);
    for args in [
        vec!["get", "secret", "foobar", "-n", &ns],
        vec!["get", "secret", "fo", "-n", &ns],
        vec!["get", "secrets", "-n", &ns],
        vec!["get", "nodes"],
    ] {
        let out = k.kubectl_as(User::Alice, &args);
        assert!(!out.success(), "{args:?} must be refused: {out}");
        assert!(out.stderr.contains("forbidden"), "{args:?}: {out}");
    }
    // Raw paths too: a name that merely starts with the granted one.
    let (code, _) = k
        .request_as(
            "GET",
            &format!("/api/v1/namespaces/{ns}/secrets/foobar"),
            None,
            None,
            alice(&k),
        )
        .expect("response");
    assert_eq!(code, 403);
}

fn signing_key(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let key = rcgen::KeyPair::generate().expect("P-256 key");
    let path = dir.join("sa-signing.key");
    fs::write(&path, key.serialize_pem()).expect("write key");
    (path, key.serialize_der())
}

const ISSUER: &str = "https://e2e.example";

fn sign_es256(pkcs8: &[u8], claims: &Value) -> String {
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng).expect("pkcs8 key");
    let header = B64URL.encode(br#"{"alg":"ES256"}"#);
    let payload = B64URL.encode(serde_json::to_vec(claims).expect("claims"));
    let input = format!("{header}.{payload}");
    let sig = key.sign(&rng, input.as_bytes()).expect("sign");
    format!("{input}.{}", B64URL.encode(sig.as_ref()))
}

/// Verifies an ES256 JWT with the server's JWKS alone.
fn verified_by_jwks(token: &str, jwks: &Value) -> bool {
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
    let Some((input, sig)) = token.rsplit_once('.') else {
        return false;
    };
    let Ok(sig) = B64URL.decode(sig) else {
        return false;
    };
    jwks["keys"].as_array().into_iter().flatten().any(|k| {
        if k["kty"] != "EC" || k["crv"] != "P-256" {
            return false;
        }
        let coord = |c: &str| {
            B64URL
                .decode(k[c].as_str().unwrap_or(""))
                .unwrap_or_default()
        };
        let mut point = vec![4u8];
        point.extend(coord("x"));
        point.extend(coord("y"));
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
            .verify(input.as_bytes(), &sig)
            .is_ok()
    })
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[test]
fn service_account_tokens_authenticate_until_their_pod_is_gone() {
    let keydir = tempfile::tempdir().expect("tempdir");
    let (key_path, pkcs8) = signing_key(keydir.path());
    let key_flag = format!("--service-account-signing-key-file={}", key_path.display());
    let verify_flag = format!("--service-account-key-file={}", key_path.display());
    let k = ApiServer::start_with(&[
        &key_flag,
        &verify_flag,
        &format!("--service-account-issuer={ISSUER}"),
    ]);
    let ns = k.namespace("tokens");
    k.ok(&["create", "serviceaccount", "robot", "-n", &ns]);
    k.ok_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"serviceAccountName": "robot",
                         "containers": [{"name": "c", "image": "busybox"}]}})
        .to_string(),
    );

    // kubectl sends TokenRequest as protobuf.
    let token = k
        .ok(&[
            "create",
            "token",
            "robot",
            "-n",
            &ns,
            "--bound-object-kind=Pod",
            "--bound-object-name=p",
        ])
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "a JWS: {token}");

    let who = k.kubectl_cred(Cred::Token(&token), &["auth", "whoami", "-o", "json"]);
    assert!(who.success(), "{who}");
    let info = &who.json()["status"]["userInfo"];
    assert_eq!(
        info["username"],
        format!("system:serviceaccount:{ns}:robot")
    );
    assert_eq!(
        info["groups"],
        json!([
            "system:serviceaccounts",
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated"
        ])
    );
    assert_eq!(
        info["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["p"])
    );

    // The discovery documents describe the issuer and verify the token on their own.
    let (code, body) = k.raw_request(
        "GET",
        "/.well-known/openid-configuration",
        None,
        None,
        User::Admin,
    );
    assert_eq!(code, 200, "{body}");
    let config: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(config["issuer"], ISSUER);
    let (code, body) = k.raw_request("GET", "/openid/v1/jwks", None, None, User::Admin);
    assert_eq!(code, 200, "{body}");
    let jwks: Value = serde_json::from_str(&body).expect("json");
    assert!(verified_by_jwks(&token, &jwks), "JWKS verifies: {jwks}");

    // Authenticated but granted nothing: 403, not 401.
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    let status = |t: &str| {
        k.request_as("GET", &pods, None, None, Cred::Token(t))
            .expect("response")
            .0
    };
    assert_eq!(status(&token), 403);

    // A changed payload breaks the signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let mut claims: Value =
        serde_json::from_slice(&B64URL.decode(&parts[1]).expect("payload")).expect("claims");
    claims["sub"] = json!("system:serviceaccount:kube-system:admin");
    parts[1] = B64URL.encode(serde_json::to_vec(&claims).expect("claims"));
    assert_eq!(status(&parts.join(".")), 401, "tampered token");
    assert!(!verified_by_jwks(&parts.join("."), &jwks));

    // Signed with the right key but expired.
    let sa = k.json(&["get", "serviceaccount", "robot", "-n", &ns]);
    let now = now_secs();
    let expired = sign_es256(
        &pkcs8,
        &json!({
            "iss": ISSUER, "aud": [ISSUER], "sub": format!("system:serviceaccount:{ns}:robot"),
            "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600,
            "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": "robot", "uid": sa["metadata"]["uid"]}},
        }),
    );
    assert_eq!(status(&expired), 401, "expired token");
    // The same claims, fresh, pass: the 401 above was the expiry.
    let fresh = sign_es256(
        &pkcs8,
        &json!({
            "iss": ISSUER, "aud": [ISSUER], "sub": format!("system:serviceaccount:{ns}:robot"),
            "iat": now, "nbf": now, "exp": now + 600,
            "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": "robot", "uid": sa["metadata"]["uid"]}},
        }),
    );
    assert_eq!(status(&fresh), 403, "fresh token authenticates");

    // TokenReview agrees.
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                        "spec": {"token": token}});
    let (code, body) = k.raw_request(
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        Some(review.to_string().as_bytes()),
        Some("application/json"),
        User::Admin,
    );
    assert_eq!(code, 201, "{body}");
    let review: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(review["status"]["authenticated"], true, "{review}");

    // Once the bound pod is gone the token is dead.
    k.ok(&[
        "delete",
        "pod",
        "p",
        "-n",
        &ns,
        "--grace-period=0",
        "--force",
    ]);
    wait_for("the bound token stops working", WAIT, || {
        status(&token) == 401
    });
}

#[test]
fn node_reads_only_its_pods_secrets_and_writes_only_itself() {
    let k = ApiServer::start_with(&["--enable-admission-plugins=NodeRestriction"]);
    for node in ["node-1", "node-2"] {
        k.ok_stdin(
            &["create", "-f", "-"],
            &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}).to_string(),
        );
    }
    let ns = k.namespace("workloads");
    for s in ["mounted", "other"] {
        k.ok(&[
            "create",
            "secret",
            "generic",
            s,
            "--from-literal=k=v",
            "-n",
            &ns,
        ]);
    }
    k.ok_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"nodeName": "node-1",
                         "containers": [{"name": "c", "image": "busybox"}],
                         "volumes": [{"name": "s", "secret": {"secretName": "mounted"}}]}})
        .to_string(),
    );
    let node = Cred::Cert(&k.pki.node_cert, &k.pki.node_key);
    let get = |path: &str| {
        k.request_as("GET", path, None, None, node)
            .expect("response")
    };
    let secret = |name: &str| format!("/api/v1/namespaces/{ns}/secrets/{name}");
    wait_for("node-1 reads the secret its pod mounts", WAIT, || {
        get(&secret("mounted")).0 == 200
    });
    let (code, body) = get(&secret("other"));
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("no relationship found between node 'node-1' and this object"),
        "{body}"
    );

    let patch = |name: &str| {
        k.request_as(
            "PATCH",
            &format!("/api/v1/nodes/{name}"),
            Some(br#"{"metadata":{"labels":{"e2e":"yes"}}}"#),
            Some("application/merge-patch+json"),
            node,
        )
        .expect("response")
    };
    let (code, body) = patch("node-1");
    assert_eq!(code, 200, "own node: {body}");
    let (code, body) = patch("node-2");
    assert_eq!(code, 403, "{body}");
    let status: Value = serde_json::from_str(&body).expect("Status");
    assert_eq!(
        status["message"],
        "nodes \"node-2\" is forbidden: node \"node-1\" is not allowed to modify node \"node-2\"",
        "{body}"
    );
}

#[test]
fn anonymous_requests_are_authorized_by_rbac() {
    let k = ApiServer::start();
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        let (code, body) = k.raw_request("GET", path, None, None, User::Anonymous);
        assert_eq!(code, 200, "{path}: {body}");
    }
    // Elsewhere RBAC decides, as upstream: system:anonymous holds nothing by default.
    let (code, body) = k.raw_request("GET", "/api/v1/namespaces", None, None, User::Anonymous);
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(
            "namespaces is forbidden: User \\\"system:anonymous\\\" cannot list resource \\\"namespaces\\\" in API group \\\"\\\" at the cluster scope"
        ),
        "{body}"
    );
    for path in ["/apis", "/metrics", "/openid/v1/jwks"] {
        let (code, body) = k.raw_request("GET", path, None, None, User::Anonymous);
        assert_eq!(code, 403, "{path}: {body}");
        assert!(
            body.contains(&format!(
                "forbidden: User \\\"system:anonymous\\\" cannot get path \\\"{path}\\\""
            )),
            "{path}: {body}"
        );
    }
    // What RBAC grants anonymous users (kubeadm's cluster-info in kube-public) they can read.
    k.ok(&[
        "create",
        "configmap",
        "cluster-info",
        "-n",
        "kube-public",
        "--from-literal=a=b",
    ]);
    k.ok(&[
        "create",
        "role",
        "cluster-info-reader",
        "-n",
        "kube-public",
        "--verb=get",
        "--resource=configmaps",
        "--resource-name=cluster-info",
    ]);
    k.ok(&[
        "create",
        "rolebinding",
        "cluster-info-reader",
        "-n",
        "kube-public",
        "--role=cluster-info-reader",
        "--user=system:anonymous",
    ]);
    let path = "/api/v1/namespaces/kube-public/configmaps/cluster-info";
    wait_for("anonymous reads cluster-info", WAIT, || {
        k.raw_request("GET", path, None, None, User::Anonymous).0 == 200
    });
    let (code, body) = k.raw_request(
        "GET",
        "/api/v1/namespaces/kube-public/configmaps",
        None,
        None,
        User::Anonymous,
    );
    assert_eq!(code, 403, "{body}");
    // A client certificate from a CA the server does not trust is no identity, even one
    // that claims system:masters.
    let stranger = Cred::Cert(&k.pki.stranger_cert, &k.pki.stranger_key);
    match k.request_as("GET", "/api/v1/namespaces", None, None, stranger) {
        Ok((code, body)) => assert_eq!(code, 401, "{body}"),
        Err(e) => assert!(!e.is_empty(), "handshake refused"),
    }

    let k = ApiServer::start_with(&["--anonymous-auth=false"]);
    for path in ["/healthz", "/version", "/api/v1/namespaces"] {
        let (code, body) = k.raw_request("GET", path, None, None, User::Anonymous);
        assert_eq!(code, 401, "{path}: {body}");
    }
    let (code, _) = k.raw_request("GET", "/healthz", None, None, User::Admin);
    assert_eq!(code, 200);
}

/// Every file under `dir`, read whole.
fn all_files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = fs::read(&p) {
                out.push((p, b));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn secrets_are_encrypted_at_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("encryption.yaml");
    let key = B64.encode([7u8; 32]);
    fs::write(
        &config,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - name: key1\n        secret: {key}\n  - identity: {{}}\n"
        ),
    )
    .expect("write config");
    let k = ApiServer::start_with(&[&format!(
        "--encryption-provider-config={}",
        config.display()
    )]);
    let ns = k.namespace("vault");
    let secret_canary = "canary-secret-3f9a1c7e";
    let plain_canary = "canary-plain-7b2d90aa";
    k.ok(&[
        "create",
        "secret",
        "generic",
        "s",
        &format!("--from-literal=k={secret_canary}"),
        "-n",
        &ns,
    ]);
    k.ok(&[
        "create",
        "configmap",
        "c",
        &format!("--from-literal=k={plain_canary}"),
        "-n",
        &ns,
    ]);
    let got = k.ok(&["get", "secret", "s", "-n", &ns, "-o", "jsonpath={.data.k}"]);
    assert_eq!(
        B64.decode(got.trim()).expect("base64"),
        secret_canary.as_bytes(),
        "reads back through the API"
    );

    // The unencrypted ConfigMap proves the scan sees what the store wrote.
    let data = k.dir().join("data");
    wait_for("the configmap reaches the data dir", WAIT, || {
        all_files(&data)
            .iter()
            .any(|(_, b)| contains(b, plain_canary.as_bytes()))
    });
    let encoded = B64.encode(secret_canary);
    for (path, bytes) in all_files(&data) {
        assert!(
            !contains(&bytes, secret_canary.as_bytes()) && !contains(&bytes, encoded.as_bytes()),
            "secret in plain text in {}",
            path.display()
        );
    }
    assert!(
        all_files(&data)
            .iter()
            .any(|(_, b)| contains(b, b"k8s:enc:aescbc:v1:key1:")),
        "the secret is stored under the aescbc prefix"
    );
}

#[test]
fn every_mutating_request_is_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: None\n  verbs: [get, list, watch]\n- level: Request\n  resources:\n  - group: \"\"\n    resources: [configmaps]\n- level: Metadata\n",
    )
    .expect("write policy");
    let log = dir.path().join("audit").join("audit.log");
    let k = ApiServer::start_with(&[
        &format!("--audit-policy-file={}", policy.display()),
        &format!("--audit-log-path={}", log.display()),
        "--audit-log-maxsize=10",
    ]);
    let ns = k.namespace("audited");
    k.ok(&[
        "create",
        "configmap",
        "one",
        "--from-literal=a=b",
        "-n",
        &ns,
    ]);
    k.ok(&["label", "configmap", "one", "x=y", "-n", &ns]);
    k.ok(&[
        "create",
        "secret",
        "generic",
        "two",
        "--from-literal=a=b",
        "-n",
        &ns,
    ]);
    k.ok(&["delete", "configmap", "one", "-n", &ns]);
    let forbidden = k.kubectl_as(User::Alice, &["create", "configmap", "nope", "-n", &ns]);
    assert!(!forbidden.success());

    // (verb, resource, name, user, code)
    let expected = [
        ("create", "namespaces", "", "kubernetes-admin", 201),
        ("create", "serviceaccounts", "", "kubernetes-admin", 201),
        ("create", "configmaps", "one", "kubernetes-admin", 201),
        ("patch", "configmaps", "one", "kubernetes-admin", 200),
        ("create", "secrets", "two", "kubernetes-admin", 201),
        ("delete", "configmaps", "one", "kubernetes-admin", 200),
        // Refused before its body is read: upstream names no object.
        ("create", "configmaps", "", "alice", 403),
    ];
    let events = || -> Vec<Value> {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let found = |e: &Value, (verb, resource, name, user, code): &(&str, &str, &str, &str, u16)| {
        e["stage"] == "ResponseComplete"
            && e["verb"] == *verb
            && e["objectRef"]["resource"] == *resource
            && (name.is_empty() || e["objectRef"]["name"] == *name)
            && e["user"]["username"] == *user
            && e["responseStatus"]["code"] == *code
    };
    let missing = || -> Vec<_> {
        let evs = events();
        expected
            .iter()
            .filter(|x| !evs.iter().any(|e| found(e, x)))
            .cloned()
            .collect()
    };
    let deadline = std::time::Instant::now() + WAIT;
    while !missing().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let evs = events();
    assert!(
        missing().is_empty(),
        "not audited: {:?}\nlog:\n{}",
        missing(),
        evs.iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        evs.iter().all(|e| e["stage"] != "RequestReceived"),
        "omitStages honoured"
    );
    assert!(
        evs.iter()
            .all(|e| e["verb"] != "get" && e["verb"] != "list"),
        "reads are at level None"
    );
    let create_cm = evs
        .iter()
        .find(|e| found(e, &expected[2]))
        .expect("configmap create");
    assert_eq!(create_cm["level"], "Request");
    assert_eq!(create_cm["requestObject"]["data"]["a"], "b", "{create_cm}");
    assert_eq!(
        create_cm["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
    let secret = evs
        .iter()
        .find(|e| found(e, &expected[4]))
        .expect("secret create");
    assert_eq!(secret["level"], "Metadata");
    assert!(
        secret.get("requestObject").is_none(),
        "secrets are logged without their data: {secret}"
    );
    let denied = evs
        .iter()
        .find(|e| found(e, &expected[6]))
        .expect("denied create");
    assert_eq!(
        denied["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );
}

#[test]
fn subject_access_review_answers_for_another_user() {
    let k = ApiServer::start();
    let ns = k.namespace("sar");
    let sar = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "alice", "groups": ["developers"],
                 "resourceAttributes": {"namespace": ns, "verb": "list", "resource": "pods"}}
    })
    .to_string();
    let allowed = || {
        let (code, body) = k.raw_request(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            Some(sar.as_bytes()),
            Some("application/json"),
            User::Admin,
        );
        assert_eq!(code, 201, "{body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        v["status"]["allowed"] == true
    };
    assert!(!allowed());
    k.ok(&[
        "create",
        "rolebinding",
        "devs-view",
        "--clusterrole=view",
        "--group=developers",
        "-n",
        &ns,
    ]);
    wait_for("the review sees the group binding", WAIT, allowed);
    // Only the privileged may ask about others.
    let (code, _) = k.raw_request(
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        Some(sar.as_bytes()),
        Some("application/json"),
        User::Alice,
    );
    assert_eq!(code, 403);
}

#[test]
fn bootstrap_tokens_authenticate_until_they_expire() {
    let k = ApiServer::start_with(&["--enable-bootstrap-token-auth"]);
    let secret = |id: &str, expiration: &str| {
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
               "type": "bootstrap.kubernetes.io/token",
               "stringData": {"token-id": id, "token-secret": "0123456789abcdef",
                              "usage-bootstrap-authentication": "true",
                              "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
                              "expiration": expiration}})
        .to_string()
    };
    k.ok_stdin(
        &["create", "-f", "-"],
        &secret("abcdef", "2099-01-01T00:00:00Z"),
    );
    k.ok_stdin(
        &["create", "-f", "-"],
        &secret("zzzzzz", "2001-01-01T00:00:00Z"),
    );

    let mut who = None;
    wait_for("the bootstrap token authenticates", WAIT, || {
        let out = k.kubectl_cred(
            Cred::Token("abcdef.0123456789abcdef"),
            &["auth", "whoami", "-o", "json"],
        );
        let ok = out.success();
        who = Some(out);
        ok
    });
    let who = who.expect("ran").json();
    let info = &who["status"]["userInfo"];
    assert_eq!(info["username"], "system:bootstrap:abcdef");
    assert_eq!(
        info["groups"],
        json!([
            "system:bootstrappers",
            "system:bootstrappers:kubeadm:default-node-token",
            "system:authenticated"
        ])
    );
    let status = |token: &str| {
        k.request_as("GET", "/api/v1/namespaces", None, None, Cred::Token(token))
            .expect("response")
            .0
    };
    assert_eq!(status("abcdef.0123456789abcdef"), 403, "authenticated");
    assert_eq!(status("abcdef.0123456789abcdee"), 401, "wrong secret");
    assert_eq!(status("zzzzzz.0123456789abcdef"), 401, "expired");
}

#[test]
fn admission_defaults_and_refuses_pods() {
    let k = ApiServer::start();
    let ns = k.namespace("admitted");
    let pod = |name: &str, extra: Value| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                           "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
        if let (Some(spec), Some(extra)) = (p["spec"].as_object_mut(), extra.as_object()) {
            for (key, v) in extra {
                spec.insert(key.clone(), v.clone());
            }
        }
        p.to_string()
    };
    k.ok_stdin(&["create", "-n", &ns, "-f", "-"], &pod("plain", json!({})));
    let p = k.json(&["get", "pod", "plain", "-n", &ns]);
    let spec = &p["spec"];
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(spec["priority"], 0);
    let volume = spec["volumes"][0].clone();
    assert!(
        volume["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("kube-api-access-")),
        "{p:#}"
    );
    assert_eq!(
        volume["projected"]["sources"][1]["configMap"]["name"],
        "kube-root-ca.crt"
    );
    assert_eq!(
        spec["containers"][0]["volumeMounts"][0]["mountPath"],
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
    let tolerations: Vec<&str> = spec["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["key"].as_str())
        .collect();
    assert_eq!(
        tolerations,
        [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable"
        ]
    );

    // A missing service account, an unknown priority class, a quota, pod security.
    let err = k.fails_stdin(
        &["create", "-n", &ns, "-f", "-"],
        &pod("ghost", json!({"serviceAccountName": "ghost"})),
    );
    assert!(
        err.contains("error looking up service account admitted/ghost"),
        "{err}"
    );
    let err = k.fails_stdin(
        &["create", "-n", &ns, "-f", "-"],
        &pod("vip", json!({"priorityClassName": "vip"})),
    );
    assert!(
        err.contains("no PriorityClass with name vip was found"),
        "{err}"
    );
    k.ok(&["create", "quota", "two-pods", "--hard=pods=2", "-n", &ns]);
    k.ok_stdin(&["create", "-n", &ns, "-f", "-"], &pod("second", json!({})));
    let mut err = String::new();
    wait_for("the quota refuses a third pod", WAIT, || {
        let out = k.kubectl_stdin(&["create", "-n", &ns, "-f", "-"], &pod("third", json!({})));
        err = out.stderr.clone();
        !out.success()
    });
    assert!(
        err.contains("exceeded quota: two-pods, requested: pods=1, used: pods=2, limited: pods=2"),
        "{err}"
    );

    let strict = k.namespace("restricted");
    k.ok(&[
        "label",
        "namespace",
        &strict,
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    let mut err = String::new();
    wait_for("PodSecurity refuses a privileged pod", WAIT, || {
        let out = k.kubectl_stdin(
            &["create", "-n", &strict, "-f", "-"],
            &pod("root", json!({"hostNetwork": true})),
        );
        err = out.stderr.clone();
        !out.success()
    });
    assert!(
        err.contains(
            "violates PodSecurity \"restricted:latest\": host namespaces (hostNetwork=true)"
        ),
        "{err}"
    );
}

#[test]
fn impersonation_needs_the_impersonate_verb_and_runs_as_the_target() {
    let k = ApiServer::start();
    let ns = k.namespace("imp");
    k.ok(&["create", "configmap", "c", "-n", &ns]);
    k.ok(&[
        "create",
        "rolebinding",
        "carol-view",
        "--clusterrole=view",
        "--user=carol",
        "-n",
        &ns,
    ]);

    // The admin may impersonate anyone (cluster-admin has every verb); the request then has
    // only carol's rights.
    let out = k.kubectl(&["auth", "can-i", "list", "secrets", "-n", &ns, "--as=carol"]);
    assert_eq!(out.stdout.trim(), "no", "{out}");
    let out = k.kubectl(&[
        "auth",
        "can-i",
        "list",
        "configmaps",
        "-n",
        &ns,
        "--as=carol",
    ]);
    assert_eq!(out.stdout.trim(), "yes", "{out}");
    let whoami = k.json(&[
        "auth",
        "whoami",
        "--as=carol",
        "--as-group=team",
        "-o",
        "json",
    ]);
    assert_eq!(
        whoami["status"]["userInfo"]["username"], "carol",
        "{whoami}"
    );
    assert_eq!(
        whoami["status"]["userInfo"]["groups"],
        json!(["team", "system:authenticated"]),
        "{whoami}"
    );
    eventually_allowed(
        &k,
        User::Admin,
        &["get", "configmap", "c", "-n", &ns, "--as=carol"],
    );
    let out = k.kubectl(&["delete", "configmap", "c", "-n", &ns, "--as=carol"]);
    assert!(
        out.stderr.contains(
            "configmaps \"c\" is forbidden: User \"carol\" cannot delete resource \"configmaps\""
        ),
        "{out}"
    );

    // Alice has no impersonate right: upstream's 403 names the users resource. (`--raw`: a
    // plain get first fails discovery, which kubectl reports without the message.)
    let pods = format!("/api/v1/namespaces/{ns}/configmaps");
    let out = k.kubectl_as(User::Alice, &["get", "--raw", &pods, "--as=carol"]);
    assert!(
        out.stderr.contains(
            "users \"carol\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        ),
        "{out}"
    );
    // Granted impersonation of carol only (resourceNames), she can act as carol, not as dave,
    // and not with an extra group.
    k.ok(&[
        "create",
        "clusterrole",
        "impersonate-carol",
        "--verb=impersonate",
        "--resource=users",
        "--resource-name=carol",
    ]);
    k.ok(&[
        "create",
        "clusterrolebinding",
        "alice-impersonates-carol",
        "--clusterrole=impersonate-carol",
        "--user=alice",
    ]);
    eventually_allowed(
        &k,
        User::Alice,
        &["get", "configmaps", "-n", &ns, "--as=carol"],
    );
    let out = k.kubectl_as(User::Alice, &["get", "--raw", &pods, "--as=dave"]);
    assert!(out.stderr.contains("users \"dave\" is forbidden"), "{out}");
    let out = k.kubectl_as(
        User::Alice,
        &[
            "get",
            "--raw",
            &pods,
            "--as=carol",
            "--as-group=system:masters",
        ],
    );
    assert!(
        out.stderr
            .contains("groups \"system:masters\" is forbidden"),
        "{out}"
    );
    // A group without a user is a bad request.
    let out = k.kubectl(&["get", "configmaps", "-n", &ns, "--as-group=team"]);
    assert!(!out.success(), "{out}");
}
