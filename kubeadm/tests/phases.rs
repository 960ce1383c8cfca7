//! `kubeadm init phase ...`, `certs check-expiration|renew` and `reset` in a temporary root,
//! with openssl checking what was written.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use common::*;

const FLAGS: [&str; 6] = [
    "--apiserver-advertise-address",
    "127.0.0.1",
    "--node-name",
    "Node-1",
    "--apiserver-cert-extra-sans",
    "api.example.com,10.11.12.13",
];

fn phase(root: &Path, args: &[&str]) -> String {
    let mut all = vec!["init", "phase"];
    all.extend_from_slice(args);
    all.extend_from_slice(&FLAGS);
    kubeadm_ok(root, &all)
}

fn init_files(root: &Path) -> String {
    let mut out = phase(root, &["certs", "all"]);
    out += &phase(root, &["kubeconfig", "all"]);
    out += &phase(root, &["control-plane", "all"]);
    out += &phase(root, &["etcd", "local"]);
    out
}

/// (certificate, its CA) for every leaf of the layout.
const CHAINS: [(&str, &str); 7] = [
    ("apiserver.crt", "ca.crt"),
    ("apiserver-kubelet-client.crt", "ca.crt"),
    ("front-proxy-client.crt", "front-proxy-ca.crt"),
    ("etcd/server.crt", "etcd/ca.crt"),
    ("etcd/peer.crt", "etcd/ca.crt"),
    ("etcd/healthcheck-client.crt", "etcd/ca.crt"),
    ("apiserver-etcd-client.crt", "etcd/ca.crt"),
];

fn text(cert: &str) -> String {
    openssl_ok(&["x509", "-in", cert, "-noout", "-text"])
}

fn subject(cert: &str) -> String {
    openssl_ok(&[
        "x509", "-in", cert, "-noout", "-subject", "-nameopt", "RFC2253",
    ])
    .trim()
    .to_string()
}

/// True if the certificate is still valid `days` from now.
fn valid_in(cert: &str, days: u64) -> bool {
    openssl(&[
        "x509",
        "-in",
        cert,
        "-noout",
        "-checkend",
        &(days * 86400).to_string(),
    ])
    .ok
}

#[test]
fn phases_write_upstreams_pki_kubeconfigs_and_manifests_under_the_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let out = init_files(root);
    for line in [
        "[certs] Generating \"ca\" certificate and key",
        "[certs] Generating \"etcd/ca\" certificate and key",
        "[certs] apiserver serving cert is signed for DNS names [node-1 kubernetes kubernetes.default kubernetes.default.svc kubernetes.default.svc.cluster.local api.example.com] and IPs [10.96.0.1 127.0.0.1 10.11.12.13]",
        "[certs] Generating \"sa\" key and public key",
        "[kubeconfig] Writing \"admin.conf\" kubeconfig file",
        "[kubeconfig] Writing \"super-admin.conf\" kubeconfig file",
        "[control-plane] Creating static Pod manifest for \"kube-apiserver\"",
        "[control-plane] Creating static Pod manifest for \"kube-scheduler\"",
        "[etcd] Creating static Pod manifest for local etcd in",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }

    // Chains: each leaf verifies against its own CA and not against another one.
    for (leaf, ca) in CHAINS {
        openssl_ok(&["verify", "-CAfile", &pki(root, ca), &pki(root, leaf)]);
        let wrong = if ca == "ca.crt" {
            "etcd/ca.crt"
        } else {
            "ca.crt"
        };
        assert!(
            !openssl(&["verify", "-CAfile", &pki(root, wrong), &pki(root, leaf)]).ok,
            "{leaf} must not verify against {wrong}"
        );
    }

    // SANs and usages of the serving certificates.
    let api = text(&pki(root, "apiserver.crt"));
    for san in [
        "DNS:node-1",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
        "DNS:api.example.com",
        "IP Address:10.96.0.1",
        "IP Address:127.0.0.1",
        "IP Address:10.11.12.13",
    ] {
        assert!(api.contains(san), "apiserver.crt lacks {san}:\n{api}");
    }
    assert!(api.contains("TLS Web Server Authentication"), "{api}");
    assert!(!api.contains("TLS Web Client Authentication"), "{api}");
    let etcd_server = text(&pki(root, "etcd/server.crt"));
    for san in [
        "DNS:localhost",
        "DNS:node-1",
        "IP Address:127.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
    ] {
        assert!(
            etcd_server.contains(san),
            "etcd/server.crt lacks {san}:\n{etcd_server}"
        );
    }
    assert!(etcd_server.contains("TLS Web Server Authentication, TLS Web Client Authentication"));
    let client = text(&pki(root, "apiserver-etcd-client.crt"));
    assert!(client.contains("TLS Web Client Authentication"), "{client}");
    assert!(
        !client.contains("TLS Web Server Authentication"),
        "{client}"
    );
    for ca in ["ca.crt", "front-proxy-ca.crt", "etcd/ca.crt"] {
        let t = text(&pki(root, ca));
        assert!(t.contains("CA:TRUE"), "{ca}:\n{t}");
        assert!(t.contains("Certificate Sign"), "{ca}:\n{t}");
    }

    // Subjects.
    assert_eq!(subject(&pki(root, "ca.crt")), "subject=CN=kubernetes");
    assert_eq!(subject(&pki(root, "etcd/ca.crt")), "subject=CN=etcd-ca");
    assert_eq!(
        subject(&pki(root, "front-proxy-ca.crt")),
        "subject=CN=front-proxy-ca"
    );
    assert_eq!(
        subject(&pki(root, "apiserver.crt")),
        "subject=CN=kube-apiserver"
    );
    assert_eq!(
        subject(&pki(root, "apiserver-kubelet-client.crt")),
        "subject=CN=kube-apiserver-kubelet-client,O=kubeadm:cluster-admins"
    );
    assert_eq!(subject(&pki(root, "etcd/server.crt")), "subject=CN=node-1");
    assert_eq!(
        subject(&pki(root, "etcd/healthcheck-client.crt")),
        "subject=CN=kube-etcd-healthcheck-client"
    );

    // Validity: leaves one year, CAs ten.
    for (leaf, ca) in CHAINS {
        assert!(valid_in(&pki(root, leaf), 364), "{leaf} should last a year");
        assert!(
            !valid_in(&pki(root, leaf), 366),
            "{leaf} should not outlast a year"
        );
        assert!(valid_in(&pki(root, ca), 3649), "{ca} should last ten years");
        assert!(
            !valid_in(&pki(root, ca), 3651),
            "{ca} should not outlast ten years"
        );
    }

    // Keys are private, certificates readable.
    for key in [
        "ca.key",
        "apiserver.key",
        "front-proxy-ca.key",
        "etcd/ca.key",
        "etcd/server.key",
        "apiserver-etcd-client.key",
        "sa.key",
    ] {
        let mode = std::fs::metadata(pki(root, key))
            .expect("key")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let mode = std::fs::metadata(pki(root, "ca.crt"))
        .expect("crt")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o644);
    // sa.pub is the public half of sa.key.
    let derived = openssl_ok(&["pkey", "-in", &pki(root, "sa.key"), "-pubout"]);
    let sa_pub = std::fs::read_to_string(pki(root, "sa.pub")).expect("sa.pub");
    assert_eq!(derived.trim(), sa_pub.trim());

    // Kubeconfigs: identity, CA and server.
    for (file, want) in [
        (
            "admin.conf",
            "subject=CN=kubernetes-admin,O=kubeadm:cluster-admins",
        ),
        (
            "super-admin.conf",
            "subject=CN=kubernetes-super-admin,O=system:masters",
        ),
        (
            "kubelet.conf",
            "subject=CN=system:node:node-1,O=system:nodes",
        ),
        (
            "controller-manager.conf",
            "subject=CN=system:kube-controller-manager",
        ),
        ("scheduler.conf", "subject=CN=system:kube-scheduler"),
    ] {
        let cert = kubeconfig_client_cert(root, file);
        assert_eq!(subject(&cert), want, "{file}");
        openssl_ok(&["verify", "-CAfile", &pki(root, "ca.crt"), &cert]);
        assert!(
            text(&cert).contains("TLS Web Client Authentication"),
            "{file}"
        );
        assert_eq!(
            kubeconfig_server(root, file),
            "https://127.0.0.1:6443",
            "{file}"
        );
        let mode = std::fs::metadata(root.join("etc/kubernetes").join(file))
            .expect("kubeconfig")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }

    // Manifests: upstream's shape, every host path inside the root.
    let manifests = root.join("etc/kubernetes/manifests");
    for name in [
        "kube-store",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        let text =
            std::fs::read_to_string(manifests.join(format!("{name}.yaml"))).expect("manifest");
        let pod: k8s_openapi::api::core::v1::Pod = serde_yaml_ng::from_str(&text).expect("pod");
        let spec = pod.spec.expect("spec");
        assert_eq!(pod.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(spec.host_network, Some(true), "{name}");
        assert_eq!(
            spec.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        let c = &spec.containers[0];
        assert_eq!(c.command.as_ref().expect("command")[0], name);
        assert!(
            c.liveness_probe.is_some() && c.startup_probe.is_some(),
            "{name}"
        );
        for v in spec.volumes.as_deref().unwrap_or_default() {
            let path = &v.host_path.as_ref().expect("hostPath").path;
            assert!(
                path.starts_with(&root.display().to_string()) || path == "/etc/ssl/certs",
                "{name}: volume {path} outside the root"
            );
        }
        for m in c.volume_mounts.as_deref().unwrap_or_default() {
            if m.name != "etcd-data" {
                assert_eq!(
                    m.read_only,
                    Some(true),
                    "{name}: {} must be read-only",
                    m.name
                );
            }
        }
    }
}

#[test]
fn running_phases_twice_keeps_existing_valid_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    init_files(root);
    let before: Vec<Vec<u8>> = ["ca.crt", "apiserver.crt", "etcd/peer.crt", "sa.key"]
        .iter()
        .map(|f| std::fs::read(pki(root, f)).expect("read"))
        .collect();
    let admin = std::fs::read(root.join("etc/kubernetes/admin.conf")).expect("admin.conf");
    let out = init_files(root);
    for line in [
        "[certs] Using existing ca certificate authority",
        "[certs] Using existing apiserver certificate and key on disk",
        "[certs] Using existing etcd/ca certificate authority",
        "[certs] Using the existing \"sa\" key",
        "[kubeconfig] Using existing kubeconfig file:",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(!out.contains("Generating"), "{out}");
    let after: Vec<Vec<u8>> = ["ca.crt", "apiserver.crt", "etcd/peer.crt", "sa.key"]
        .iter()
        .map(|f| std::fs::read(pki(root, f)).expect("read"))
        .collect();
    assert_eq!(before, after);
    assert_eq!(
        admin,
        std::fs::read(root.join("etc/kubernetes/admin.conf")).expect("admin.conf")
    );

    // A leaf the configuration no longer fits is an error, not silently reused.
    let r = kubeadm(
        root,
        &[
            "init",
            "phase",
            "certs",
            "apiserver",
            "--apiserver-advertise-address",
            "10.1.2.3",
            "--node-name",
            "node-1",
        ],
    );
    assert!(!r.ok);
    assert!(
        r.stderr.contains("error execution phase certs/apiserver: certificate apiserver is invalid: x509: certificate is valid for")
            && r.stderr.contains("not 10.1.2.3"),
        "{}",
        r.stderr
    );
}

#[test]
fn check_expiration_lists_every_certificate_with_its_residual_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    init_files(root);
    let out = kubeadm_ok(root, &["certs", "check-expiration"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("CERTIFICATE ")
            && lines[0].contains("EXPIRES")
            && lines[0].contains("RESIDUAL TIME"),
        "{out}"
    );
    for (name, ca) in [
        ("admin.conf", "ca"),
        ("apiserver", "ca"),
        ("apiserver-etcd-client", "etcd-ca"),
        ("apiserver-kubelet-client", "ca"),
        ("controller-manager.conf", "ca"),
        ("etcd-healthcheck-client", "etcd-ca"),
        ("etcd-peer", "etcd-ca"),
        ("etcd-server", "etcd-ca"),
        ("front-proxy-client", "front-proxy-ca"),
        ("scheduler.conf", "ca"),
        ("super-admin.conf", "ca"),
    ] {
        let row = lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{out}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        // name, Mon, DD,, YYYY, HH:MM, UTC, residual, ca, managed
        assert_eq!(cols.len(), 9, "{row}");
        assert!(cols[6] == "364d" || cols[6] == "365d", "{row}");
        assert_eq!(cols[7], ca, "{row}");
        assert_eq!(cols[8], "no", "{row}");
    }
    for ca in ["ca", "etcd-ca", "front-proxy-ca"] {
        let row = lines
            .iter()
            .rev()
            .find(|l| l.split_whitespace().next() == Some(ca))
            .unwrap_or_else(|| panic!("no CA row for {ca}:\n{out}"));
        assert!(row.contains(" 9y ") || row.contains(" 10y "), "{row}");
    }
    assert!(
        !out.contains("kubelet.conf"),
        "kubelet.conf is rotated by the kubelet:\n{out}"
    );

    // Removing a certificate shows it as missing.
    std::fs::remove_file(pki(root, "front-proxy-client.crt")).expect("rm");
    let out = kubeadm_ok(root, &["certs", "check-expiration"]);
    assert!(out.contains("!MISSING! front-proxy-client"), "{out}");
}

fn serial(cert: &str) -> String {
    openssl_ok(&["x509", "-in", cert, "-noout", "-serial"])
        .trim()
        .to_string()
}

#[test]
fn renew_all_changes_serials_and_keys_but_keeps_the_cas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    init_files(root);
    let leaf_files: Vec<String> = CHAINS.iter().map(|(l, _)| pki(root, l)).collect();
    let kubeconfigs = [
        "admin.conf",
        "super-admin.conf",
        "controller-manager.conf",
        "scheduler.conf",
    ];
    let before_serials: Vec<String> = leaf_files
        .iter()
        .map(|c| serial(c))
        .chain(
            kubeconfigs
                .iter()
                .map(|k| serial(&kubeconfig_client_cert(root, k))),
        )
        .collect();
    let before_texts: Vec<String> = leaf_files.iter().map(|c| text(c)).collect();
    let cas: Vec<Vec<u8>> = ["ca.crt", "ca.key", "etcd/ca.crt", "front-proxy-ca.crt"]
        .iter()
        .map(|f| std::fs::read(pki(root, f)).expect("ca"))
        .collect();
    let key_before = std::fs::read(pki(root, "apiserver.key")).expect("key");
    let kubelet_before =
        std::fs::read(root.join("etc/kubernetes/kubelet.conf")).expect("kubelet.conf");

    let out = kubeadm_ok(root, &["certs", "renew", "all"]);
    assert!(
        out.contains("certificate for serving the Kubernetes API renewed"),
        "{out}"
    );
    assert!(
        out.contains("certificate embedded in the kubeconfig file for the admin to use and for kubeadm itself renewed"),
        "{out}"
    );
    assert!(out.contains("Done renewing certificates."), "{out}");

    let after_serials: Vec<String> = leaf_files
        .iter()
        .map(|c| serial(c))
        .chain(
            kubeconfigs
                .iter()
                .map(|k| serial(&kubeconfig_client_cert(root, k))),
        )
        .collect();
    for (b, a) in before_serials.iter().zip(&after_serials) {
        assert_ne!(b, a, "serial unchanged");
    }
    let cas_after: Vec<Vec<u8>> = ["ca.crt", "ca.key", "etcd/ca.crt", "front-proxy-ca.crt"]
        .iter()
        .map(|f| std::fs::read(pki(root, f)).expect("ca"))
        .collect();
    assert_eq!(cas, cas_after, "CAs must be kept");
    assert_ne!(
        key_before,
        std::fs::read(pki(root, "apiserver.key")).expect("key")
    );
    assert_eq!(
        kubelet_before,
        std::fs::read(root.join("etc/kubernetes/kubelet.conf")).expect("kubelet.conf"),
        "kubelet.conf is not kubeadm's to renew"
    );
    // Same subjects and SANs, still signed by the same CAs, a fresh year.
    for ((leaf, ca), before) in CHAINS.iter().zip(&before_texts) {
        openssl_ok(&["verify", "-CAfile", &pki(root, ca), &pki(root, leaf)]);
        let after = text(&pki(root, leaf));
        let san = |t: &str| {
            t.lines()
                .skip_while(|l| !l.contains("Subject Alternative Name"))
                .nth(1)
                .map(str::to_string)
        };
        assert_eq!(san(before), san(&after), "{leaf}");
        assert!(valid_in(&pki(root, leaf), 364));
    }
    openssl_ok(&[
        "verify",
        "-CAfile",
        &pki(root, "ca.crt"),
        &kubeconfig_client_cert(root, "admin.conf"),
    ]);
    assert_eq!(
        subject(&kubeconfig_client_cert(root, "admin.conf")),
        "subject=CN=kubernetes-admin,O=kubeadm:cluster-admins"
    );

    // Renewing one certificate touches only that one.
    let etcd_peer = serial(&pki(root, "etcd/peer.crt"));
    let api = serial(&pki(root, "apiserver.crt"));
    let out = kubeadm_ok(root, &["certs", "renew", "apiserver"]);
    assert_eq!(
        out.trim(),
        "certificate for serving the Kubernetes API renewed"
    );
    assert_ne!(api, serial(&pki(root, "apiserver.crt")));
    assert_eq!(etcd_peer, serial(&pki(root, "etcd/peer.crt")));
}

#[test]
fn preflight_fails_on_a_port_in_use_unless_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let busy = std::net::TcpListener::bind("0.0.0.0:0").expect("listen");
    let port = busy.local_addr().expect("addr").port().to_string();
    let args = |ignore: &str| {
        vec![
            "init".to_string(),
            "phase".into(),
            "preflight".into(),
            "--apiserver-advertise-address=127.0.0.1".into(),
            format!("--apiserver-bind-port={port}"),
            format!("--ignore-preflight-errors={ignore}"),
        ]
    };
    let run = |ignore: &str| {
        let a = args(ignore);
        kubeadm(root, &a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let r = run("IsPrivilegedUser");
    assert!(!r.ok, "{}", r.stdout);
    assert!(
        r.stdout.contains("[preflight] Running pre-flight checks"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr
            .contains("error execution phase preflight: [preflight] Some fatal errors occurred:"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("[ERROR Port-{port}]: Port {port} is in use")),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("--ignore-preflight-errors=..."),
        "{}",
        r.stderr
    );

    let r = run(&format!("IsPrivilegedUser,Port-{port}"));
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout
            .contains(&format!("[WARNING Port-{port}]: Port {port} is in use")),
        "{}",
        r.stdout
    );

    // An existing manifest is reported with upstream's check name.
    init_files(root);
    let r = run(&format!("IsPrivilegedUser,Port-{port}"));
    assert!(!r.ok);
    let manifest = root
        .join("etc/kubernetes/manifests/kube-apiserver.yaml")
        .display()
        .to_string();
    assert!(
        r.stderr.contains(&format!(
            "[ERROR FileAvailable-{}]: {manifest} already exists",
            manifest.replace('/', "-")
        )),
        "{}",
        r.stderr
    );
    drop(busy);
}

#[test]
fn reset_removes_manifests_pki_kubeconfigs_and_store_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    init_files(root);
    let data = root.join("var/lib/etcd/member");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(data.join("db"), b"x").expect("data");
    let unrelated = root.join("etc/kubernetes/keep-me");
    std::fs::write(&unrelated, b"x").expect("unrelated");

    // Without --force and without a "y", nothing happens.
    let r = kubeadm(root, &["reset"]);
    assert!(!r.ok);
    assert!(r.stderr.contains("aborted reset operation"), "{}", r.stderr);
    assert!(root.join("etc/kubernetes/admin.conf").exists());

    let out = kubeadm_ok(root, &["reset", "--force"]);
    assert!(
        out.contains("[reset] Deleted contents of the etcd data directory:"),
        "{out}"
    );
    assert!(out.contains("[reset] Deleting files: ["), "{out}");
    let left = |d: &str| {
        std::fs::read_dir(root.join(d))
            .map(|r| r.count())
            .unwrap_or(0)
    };
    assert_eq!(left("etc/kubernetes/manifests"), 0);
    assert_eq!(left("etc/kubernetes/pki"), 0);
    assert_eq!(left("var/lib/etcd"), 0);
    for f in [
        "admin.conf",
        "super-admin.conf",
        "kubelet.conf",
        "controller-manager.conf",
        "scheduler.conf",
    ] {
        assert!(
            !root.join("etc/kubernetes").join(f).exists(),
            "{f} left behind"
        );
    }
    assert!(unrelated.exists(), "reset removes only what kubeadm writes");
}

#[test]
fn bad_input_gets_upstream_shaped_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let cfg = root.join("kubeadm.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nencryptionAlgorithm: RSA-2048\n",
    )
    .expect("config");
    let cfg = cfg.display().to_string();

    let r = kubeadm(
        root,
        &[
            "init",
            "phase",
            "certs",
            "all",
            "--config",
            &cfg,
            "--apiserver-bind-port",
            "1",
        ],
    );
    assert!(!r.ok);
    assert_eq!(
        r.stderr.trim(),
        "can not mix '--config' with arguments [apiserver-bind-port]"
    );

    let r = kubeadm(root, &["init", "phase", "certs", "all", "--config", &cfg]);
    assert!(!r.ok);
    assert!(
        r.stderr
            .contains("encryptionAlgorithm \"RSA-2048\" is not supported"),
        "{}",
        r.stderr
    );

    std::fs::write(
        &cfg,
        "apiVersion: kubeadm.k8s.io/v1alpha9\nkind: ClusterConfiguration\n",
    )
    .expect("config");
    let r = kubeadm(root, &["init", "phase", "certs", "all", "--config", &cfg]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains("no kind \"ClusterConfiguration\" is registered for version \"kubeadm.k8s.io/v1alpha9\""),
        "{}",
        r.stderr
    );

    let r = kubeadm(
        root,
        &[
            "init",
            "phase",
            "certs",
            "apiserver",
            "--apiserver-advertise-address",
            "127.0.0.1",
        ],
    );
    assert!(!r.ok);
    assert!(
        r.stderr.starts_with("error execution phase certs/apiserver: couldn't create \"apiserver\" certificate: failure loading ca certificate authority"),
        "{}",
        r.stderr
    );

    let r = kubeadm(
        root,
        &[
            "init",
            "phase",
            "kubeconfig",
            "admin",
            "--apiserver-advertise-address",
            "127.0.0.1",
        ],
    );
    assert!(!r.ok);
    assert!(
        r.stderr
            .starts_with("error execution phase kubeconfig/admin:"),
        "{}",
        r.stderr
    );

    let r = kubeadm(root, &["init", "phase", "certs", "nope"]);
    assert!(!r.ok);
    assert!(r.stderr.contains("invalid value 'nope'"), "{}", r.stderr);

    let r = kubeadm(
        root,
        &[
            "init",
            "phase",
            "certs",
            "all",
            "--apiserver-advertise-address",
            "127.0.0.1",
            "--service-cidr",
            "10.96.0.0",
        ],
    );
    assert!(!r.ok);
    assert!(
        r.stderr.contains("couldn't parse CIDR \"10.96.0.0\""),
        "{}",
        r.stderr
    );
}

#[test]
fn an_rsa_ca_made_by_upstream_kubeadm_or_openssl_is_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let pki_dir = root.join("etc/kubernetes/pki");
    std::fs::create_dir_all(&pki_dir).expect("pki dir");
    // Upstream writes PKCS#1 RSA keys ("RSA PRIVATE KEY").
    openssl_ok(&[
        "genrsa",
        "-traditional",
        "-out",
        &pki(root, "ca.key"),
        "2048",
    ]);
    let key = std::fs::read_to_string(pki(root, "ca.key")).expect("key");
    assert!(key.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{key}");
    openssl_ok(&[
        "req",
        "-x509",
        "-new",
        "-key",
        &pki(root, "ca.key"),
        "-subj",
        "/CN=kubernetes",
        "-days",
        "3650",
        "-out",
        &pki(root, "ca.crt"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
    ]);
    let ca_before = std::fs::read(pki(root, "ca.crt")).expect("ca");
    let out = phase(root, &["certs", "all"]);
    assert!(
        out.contains("[certs] Using existing ca certificate authority"),
        "{out}"
    );
    assert_eq!(ca_before, std::fs::read(pki(root, "ca.crt")).expect("ca"));
    openssl_ok(&[
        "verify",
        "-CAfile",
        &pki(root, "ca.crt"),
        &pki(root, "apiserver.crt"),
    ]);
    phase(root, &["kubeconfig", "admin"]);
    openssl_ok(&[
        "verify",
        "-CAfile",
        &pki(root, "ca.crt"),
        &kubeconfig_client_cert(root, "admin.conf"),
    ]);
    // And renewal signs with it too.
    kubeadm_ok(root, &["certs", "renew", "apiserver-kubelet-client"]);
    openssl_ok(&[
        "verify",
        "-CAfile",
        &pki(root, "ca.crt"),
        &pki(root, "apiserver-kubelet-client.crt"),
    ]);
}

#[test]
fn init_runs_every_phase_but_the_skipped_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let out = kubeadm_ok(
        root,
        &[
            "init",
            "--apiserver-advertise-address=127.0.0.1",
            "--node-name=n1",
            &format!("--skip-phases=preflight,control-plane/scheduler,kubeconfig/super-admin,certs/etcd-peer,{CLUSTER_PHASES}"),
        ],
    );
    assert!(
        out.starts_with("[init] Using Kubernetes version: v1.33.0"),
        "{out}"
    );
    assert!(!out.contains("[preflight]"), "{out}");
    let k = root.join("etc/kubernetes");
    assert!(k.join("manifests/kube-apiserver.yaml").exists());
    assert!(k.join("manifests/kube-controller-manager.yaml").exists());
    assert!(k.join("manifests/kube-store.yaml").exists());
    assert!(!k.join("manifests/kube-scheduler.yaml").exists(), "{out}");
    assert!(k.join("admin.conf").exists() && k.join("scheduler.conf").exists());
    assert!(!k.join("super-admin.conf").exists(), "{out}");
    assert!(k.join("pki/etcd/server.crt").exists());
    assert!(!k.join("pki/etcd/peer.crt").exists(), "{out}");
    assert!(!out.contains("[kubelet-start]"), "{out}");
    assert!(!root.join("var/lib/kubelet/config.yaml").exists(), "{out}");
}
