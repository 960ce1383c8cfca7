//! imagePullSecrets on a real kubelet and containerd: the credentials of the pod's
//! dockerconfigjson Secret (and of its ServiceAccount's, copied by admission) reach the
//! registry. The registry is a tiny HTTP server on 127.0.0.1 (containerd pulls from loopback
//! registries over plain HTTP) that asks for Basic auth, records the Authorization header and
//! then says the manifest does not exist, so the pod shows ErrImagePull with the runtime's
//! error.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "common/containerd.rs"]
mod containerd;

#[path = "common/kubelet.rs"]
mod kubelet_process;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use base64::Engine;
use common::{eventually, ApiServer};
use containerd::Containerd;
use kubelet_process::Kubelet;

const WAIT: Duration = Duration::from_secs(90);

/// A registry that wants Basic auth and knows no manifests; returns its port and the
/// Authorization headers it received.
fn fake_registry() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind registry");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request).into_owned();
            let auth = text.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("authorization")
                    .then(|| v.trim().to_string())
            });
            let response = match auth {
                None => "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"kw\"\r\n\
                         Content-Type: application/json\r\nContent-Length: 2\r\n\
                         Connection: close\r\n\r\n{}"
                    .to_string(),
                Some(a) => {
                    record.lock().expect("lock").push(a);
                    let body =
                        r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
                    format!(
                        "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\
                         Docker-Distribution-Api-Version: registry/2.0\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                }
            };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (port, seen)
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

#[test]
fn pull_secrets_of_the_pod_and_its_service_account_reach_the_registry() {
    let server = ApiServer::start();
    let containerd = Containerd::start();
    let kubelet = Kubelet::start(
        &containerd,
        "kw-pull",
        (60, "kbps"),
        |node| server.kubeconfig_for_cert(&format!("system:node:{node}"), &["system:nodes"]),
        &[],
    );
    let ns = server.namespace("kw-pull");
    let _ = server.kubectl(&["create", "serviceaccount", "default", "-n", &ns]);
    let (port, seen) = fake_registry();
    let registry = format!("127.0.0.1:{port}");
    for (name, user) in [("regcred", "kwuser"), ("sacred", "sauser")] {
        server.ok(&[
            "create",
            "secret",
            "docker-registry",
            name,
            "-n",
            &ns,
            &format!("--docker-server={registry}"),
            &format!("--docker-username={user}"),
            "--docker-password=kwpass",
        ]);
    }
    server.ok_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: puller\nimagePullSecrets:\n- name: sacred\n",
    );
    let pod = |name: &str, extra: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node}
  automountServiceAccountToken: false
{extra}
  containers:
  - name: main
    image: {registry}/kw/missing:1
    imagePullPolicy: Always
"#,
            node = kubelet.node,
        )
    };
    server.ok_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        &pod(
            "own",
            "  imagePullSecrets:\n  - name: regcred\n  - name: absent",
        ),
    );

    // ErrImagePull, then the back-off before the next attempt, both with the runtime's error.
    let waiting = eventually("ImagePullBackOff with the registry's answer", WAIT, || {
        let p = server.json(&["get", "pod", "own", "-n", &ns]);
        let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        if w["reason"] == "ImagePullBackOff" {
            Ok(w)
        } else {
            Err(p["status"].to_string())
        }
    });
    let message = waiting["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "Back-off pulling image \"{registry}/kw/missing:1\": ErrImagePull: "
        )) && message.contains("not found"),
        "the runtime's error: {message}"
    );
    let out = server.kubectl(&[
        "get",
        "events",
        "-n",
        &ns,
        "--field-selector=reason=Failed,involvedObject.name=own",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        out.stdout.contains("not found"),
        "ErrImagePull's event: {out}"
    );
    // The back-off spaces the attempts out (10 s, then 20 s): a few, not one per sync.
    let attempts = seen.lock().expect("lock").len();
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        seen.lock().expect("lock").len() <= attempts + 1,
        "pulls are backed off"
    );
    assert!(
        seen.lock()
            .expect("lock")
            .contains(&basic("kwuser", "kwpass")),
        "the registry saw the pod's credentials: {:?}",
        seen.lock().expect("lock")
    );
    eventually("FailedToRetrieveImagePullSecret event", WAIT, || {
        let out = server.kubectl(&[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector=reason=FailedToRetrieveImagePullSecret",
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        if out.stdout.contains(
            "Unable to retrieve some image pull secrets (absent); attempting to pull the image may not succeed.",
        ) {
            Ok(())
        } else {
            Err(out.to_string())
        }
    });

    // No imagePullSecrets of its own: admission copies the ServiceAccount's.
    server.ok_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        &pod("via-sa", "  serviceAccountName: puller"),
    );
    let p = server.json(&["get", "pod", "via-sa", "-n", &ns]);
    assert_eq!(p["spec"]["imagePullSecrets"][0]["name"], "sacred");
    eventually(
        "the ServiceAccount's credentials reach the registry",
        WAIT,
        || {
            let seen = seen.lock().expect("lock");
            if seen.contains(&basic("sauser", "kwpass")) {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        },
    );
    let _ = &containerd;
}
