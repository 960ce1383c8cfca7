//! TLS everywhere: three members with mutual TLS on the client and the peer ports, reached by
//! the store's own client and by stock etcdctl; a client without a certificate is refused.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use component_base::Shutdown;
use proto::etcdserverpb as pb;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use store::client::ClientTls;
use store::server::{self, Config, TlsFiles, Url};
use store::{GrpcStore, KvStore};

fn pki(dir: &Path) {
    let write = |name: &str, pem: String| std::fs::write(dir.join(name), pem).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "etcd-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    write("ca.crt", ca.self_signed(&ca_key).unwrap().pem());
    let issuer = Issuer::new(ca, ca_key);
    // Members serve and dial each other, so their certificate is for both ends (as kubeadm's
    // etcd peer certificate).
    let key = KeyPair::generate().unwrap();
    let mut member = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    member.distinguished_name.push(DnType::CommonName, "member");
    member.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    write("member.crt", member.signed_by(&key, &issuer).unwrap().pem());
    write("member.key", key.serialize_pem());
    let key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(Vec::new()).unwrap();
    client
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver-etcd-client");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    write("client.crt", client.signed_by(&key, &issuer).unwrap().pem());
    write("client.key", key.serialize_pem());
}

fn port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn files(dir: &Path) -> TlsFiles {
    TlsFiles {
        cert_file: dir.join("member.crt"),
        key_file: dir.join("member.key"),
        trusted_ca_file: Some(dir.join("ca.crt")),
        client_cert_auth: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_with_mutual_tls_on_client_and_peer_ports() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir: PathBuf = dir.path().to_path_buf();
    pki(&pki_dir);
    let names = ["a", "b", "c"];
    let ports: Vec<(u16, u16)> = names.iter().map(|_| (port(), port())).collect();
    let cluster: std::collections::BTreeMap<String, Vec<String>> = names
        .iter()
        .zip(&ports)
        .map(|(n, (_, p))| (n.to_string(), vec![format!("https://127.0.0.1:{p}")]))
        .collect();
    let shutdown = Shutdown::new();
    let mut running = Vec::new();
    for (name, (client, peer)) in names.iter().zip(&ports) {
        let mut cfg = Config::single(pki_dir.join(name), *client, *peer);
        let client_url = format!("https://127.0.0.1:{client}");
        let peer_url = format!("https://127.0.0.1:{peer}");
        cfg.name = name.to_string();
        cfg.listen_client_urls = vec![Url::parse(&client_url).unwrap()];
        cfg.advertise_client_urls = vec![client_url];
        cfg.listen_peer_urls = vec![Url::parse(&peer_url).unwrap()];
        cfg.initial_advertise_peer_urls = vec![peer_url];
        cfg.initial_cluster = cluster.clone();
        cfg.initial_cluster_token = "tls-test".into();
        cfg.client_tls = Some(files(&pki_dir));
        cfg.peer_tls = Some(files(&pki_dir));
        running.push(server::start(cfg, shutdown.clone()).await.unwrap());
    }
    let endpoints: Vec<String> = ports
        .iter()
        .map(|(c, _)| format!("https://127.0.0.1:{c}"))
        .collect();
    let tls = ClientTls {
        ca_file: Some(pki_dir.join("ca.crt")),
        cert_file: Some(pki_dir.join("client.crt")),
        key_file: Some(pki_dir.join("client.key")),
    };
    // Each member in turn: a write through it is read back through another.
    for i in 0..3 {
        let writer = GrpcStore::connect(&endpoints[i..=i], Some(&tls)).unwrap();
        let reader = GrpcStore::connect(&endpoints[(i + 1) % 3..=(i + 1) % 3], Some(&tls)).unwrap();
        let key = format!("tls-{i}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let put = pb::PutRequest {
                key: key.clone().into(),
                value: b"v".to_vec(),
                ..Default::default()
            };
            match writer.put(put).await {
                Ok(_) => break,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "cluster not ready yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("put through member {i} over TLS: {e}"),
            }
        }
        let got = reader
            .range(pb::RangeRequest {
                key: key.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(got.kvs.len(), 1);
    }

    // No client certificate: the handshake is refused.
    let anonymous = ClientTls {
        ca_file: Some(pki_dir.join("ca.crt")),
        ..Default::default()
    };
    let store = GrpcStore::connect(&endpoints[..1], Some(&anonymous)).unwrap();
    let refused = store
        .range(pb::RangeRequest {
            key: b"tls-0".to_vec(),
            ..Default::default()
        })
        .await;
    assert!(
        refused.is_err(),
        "a client without a certificate was served"
    );

    // Stock etcdctl over TLS.
    let (endpoint, pki) = (endpoints[1].clone(), pki_dir.clone());
    let ctl = move |args: &[&str]| {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .arg(format!("--cacert={}", pki.join("ca.crt").display()))
            .arg(format!("--cert={}", pki.join("client.crt").display()))
            .arg(format!("--key={}", pki.join("client.key").display()))
            .arg("--command-timeout=10s")
            .args(args)
            .output()
            .expect("etcdctl is installed by make deps")
    };
    let out = tokio::task::spawn_blocking(move || ctl(&["get", "tls-2", "--print-value-only"]))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v");

    shutdown.trigger();
    for r in running {
        tokio::time::timeout(Duration::from_secs(20), r.wait())
            .await
            .unwrap();
    }
}
