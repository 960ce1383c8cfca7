//! The manifests are real: `kubeadm init` in a temporary root, then kube-store, kube-apiserver,
//! kube-controller-manager and kube-scheduler run as processes with exactly the commands of
//! their static Pod manifests; stock kubectl talks to the result through admin.conf.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Probe};

use common::*;

fn manifest(root: &Path, name: &str) -> Pod {
    let file = root.join(format!("etc/kubernetes/manifests/{name}.yaml"));
    let text = std::fs::read_to_string(&file).expect("manifest");
    serde_yaml_ng::from_str(&text).expect("static pod")
}

/// The probe's URL, as the kubelet would build it from host, port, path and scheme.
fn probe_url(p: &Probe) -> String {
    let get = p.http_get.as_ref().expect("httpGet probe");
    let port = match &get.port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => n.to_string(),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
    };
    format!(
        "{}://{}:{}{}",
        get.scheme.as_deref().unwrap_or("HTTP").to_lowercase(),
        get.host.as_deref().unwrap_or("127.0.0.1"),
        port,
        get.path.as_deref().unwrap_or("/")
    )
}

/// The HTTP status of a GET; TLS is not verified, as the kubelet's HTTPS probes do not.
fn http_status(url: &str) -> Option<u16> {
    let out = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            url,
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[test]
fn control_plane_runs_from_the_generated_manifests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let (api, client, peer, metrics, kcm, sched) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let config = format!(
        r#"apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 127.0.0.1
  bindPort: {api}
nodeRegistration:
  name: cp-1
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
networking:
  podSubnet: 10.244.0.0/16
apiServer:
  extraArgs:
  - name: etcd-servers
    value: https://127.0.0.1:{client}
controllerManager:
  extraArgs:
  - name: secure-port
    value: "{kcm}"
scheduler:
  extraArgs:
  - name: secure-port
    value: "{sched}"
etcd:
  local:
    extraArgs:
    - name: listen-client-urls
      value: https://127.0.0.1:{client}
    - name: advertise-client-urls
      value: https://127.0.0.1:{client}
    - name: listen-peer-urls
      value: https://127.0.0.1:{peer}
    - name: initial-advertise-peer-urls
      value: https://127.0.0.1:{peer}
    - name: initial-cluster
      value: cp-1=https://127.0.0.1:{peer}
    - name: listen-metrics-urls
      value: http://127.0.0.1:{metrics}
"#
    );
    let cfg = root.join("kubeadm.yaml");
    std::fs::write(&cfg, config).expect("config");
    let out = kubeadm_ok(
        root,
        &[
            "init",
            "--config",
            &cfg.display().to_string(),
            "--ignore-preflight-errors=IsPrivilegedUser",
            &format!("--skip-phases={CLUSTER_PHASES}"),
        ],
    );
    assert!(
        out.contains("[preflight] Running pre-flight checks"),
        "{out}"
    );
    assert!(
        out.contains(
            "[control-plane] Creating static Pod manifest for \"kube-controller-manager\""
        ),
        "{out}"
    );

    let logs = tempfile::tempdir().expect("log dir");
    let mut procs = Procs::default();
    let components = [
        ("kube-store", "KUBE_STORE_BIN"),
        ("kube-apiserver", "KUBE_APISERVER_BIN"),
        ("kube-controller-manager", "KUBE_CONTROLLER_MANAGER_BIN"),
        ("kube-scheduler", "KUBE_SCHEDULER_BIN"),
    ];
    let root_str = root.display().to_string();
    let mut probes = vec![];
    for (name, var) in components {
        let pod = manifest(root, name);
        let container = pod.spec.expect("spec").containers.remove(0);
        let mut cmd = container.command.expect("command");
        assert_eq!(cmd[0], name);
        // No rewriting of paths is needed: every file a flag names is already under the root.
        for arg in &cmd[1..] {
            if let Some((_, value)) = arg.split_once('=') {
                if value.starts_with('/') {
                    assert!(
                        value.starts_with(&root_str),
                        "{name}: {arg} is outside the root"
                    );
                    assert!(
                        Path::new(value).exists() || arg.starts_with("--data-dir="),
                        "{name}: {arg} does not exist"
                    );
                }
            }
        }
        cmd[0] = component_binary(name, var).display().to_string();
        procs.spawn(name, &cmd, logs.path());
        if name == "kube-store" {
            // The kubelet would restart an apiserver that found no store yet; here the
            // apiserver starts once the store's own readiness probe passes.
            let ready = probe_url(
                container
                    .readiness_probe
                    .as_ref()
                    .expect("store readiness probe"),
            );
            eventually(
                "the store's readiness probe",
                Duration::from_secs(30),
                || {
                    procs.assert_running();
                    (http_status(&ready) == Some(200)).then_some(())
                },
            );
        }
        for p in [
            container.liveness_probe,
            container.readiness_probe,
            container.startup_probe,
        ]
        .into_iter()
        .flatten()
        {
            probes.push((name, probe_url(&p)));
        }
    }

    let admin = root.join("etc/kubernetes/admin.conf");
    eventually(
        "the apiserver to be ready through admin.conf",
        Duration::from_secs(90),
        || {
            procs.assert_running();
            let r = kubectl_run(&admin, &["get", "--raw", "/readyz"]);
            (r.ok && r.stdout.trim() == "ok").then_some(())
        },
    );

    // Leader leases of the scheduler and the controller-manager, taken with their kubeconfigs.
    for lease in ["kube-scheduler", "kube-controller-manager"] {
        eventually(
            &format!("the {lease} lease"),
            Duration::from_secs(60),
            || {
                procs.assert_running();
                let r = kubectl_run(
                    &admin,
                    &[
                        "get",
                        "lease",
                        "-n",
                        "kube-system",
                        lease,
                        "-o",
                        "jsonpath={.spec.holderIdentity}",
                    ],
                );
                (r.ok && !r.stdout.trim().is_empty()).then_some(())
            },
        );
    }

    // The component kubeconfigs authenticate as the component users.
    for (file, user) in [
        ("scheduler.conf", "system:kube-scheduler"),
        ("controller-manager.conf", "system:kube-controller-manager"),
        ("super-admin.conf", "kubernetes-super-admin"),
    ] {
        let r = kubectl_run(
            &root.join("etc/kubernetes").join(file),
            &[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
        );
        assert!(r.ok, "{file}: {}", r.stderr);
        assert_eq!(r.stdout.trim(), user, "{file}");
    }

    // The controllers run: the controller-manager's service-account controller fills namespaces.
    eventually(
        "the default ServiceAccount",
        Duration::from_secs(60),
        || {
            let r = kubectl_run(
                &admin,
                &[
                    "get",
                    "serviceaccount",
                    "default",
                    "-n",
                    "default",
                    "-o",
                    "name",
                ],
            );
            (r.ok && r.stdout.trim() == "serviceaccount/default").then_some(())
        },
    );

    // Every probe of every manifest answers 200 at its host, port, path and scheme.
    assert!(probes.len() >= 10, "{probes:?}");
    for (name, url) in &probes {
        eventually(
            &format!("{name} probe {url}"),
            Duration::from_secs(30),
            || (http_status(url) == Some(200)).then_some(()),
        );
    }
    procs.assert_running();
}
