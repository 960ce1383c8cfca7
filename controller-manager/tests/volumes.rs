//! persistentvolume-binder against the real apiserver: claims bind to the smallest matching
//! volume, pre-bound pairs bind both ways, WaitForFirstConsumer claims wait for the scheduler,
//! deleted claims release (or fail to reclaim) their volumes and deleted volumes lose claims.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "kcm/mod.rs"]
mod kcm;

use kcm::{events, eventually, ApiServer, Kcm};
use serde_json::Value;

const BINDER: &str = "--controllers=persistentvolume-binder";
const COMPONENT: &str = "persistentvolume-controller";

fn volume(name: &str, size: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {name}}}\nspec:\n  \
         capacity: {{storage: {size}}}\n  accessModes: [ReadWriteOnce]\n  {extra_spec}\n"
    )
}

fn host_path(name: &str, size: &str, policy: &str, path: &str, extra: &str) -> String {
    volume(
        name,
        size,
        &format!(
            "persistentVolumeReclaimPolicy: {policy}\n  hostPath: {{path: {path}}}\n  {extra}"
        ),
    )
}

fn claim(name: &str, size: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: {size}}}}}\n  \
         {extra_spec}\n"
    )
}

fn apply(server: &ApiServer, yaml: &str) {
    server.ok_stdin(&["apply", "-f", "-"], yaml);
}

fn get(server: &ApiServer, kind: &str, name: &str) -> Value {
    server.json(&["get", kind, name, "-n", "default"])
}

fn phase_of(server: &ApiServer, kind: &str, name: &str) -> String {
    let out = server.kubectl(&["get", kind, name, "-n", "default", "-o", "json"]);
    if !out.success() {
        return String::new();
    }
    out.json()["status"]["phase"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn wait_phase(server: &ApiServer, kind: &str, name: &str, want: &str) {
    eventually(&format!("{kind} {name} {want}"), || {
        phase_of(server, kind, name) == want
    });
}

fn event_messages(server: &ApiServer, kind: &str, reason: &str) -> Vec<String> {
    events(server, "default", kind, reason, COMPONENT)
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn wait_event(server: &ApiServer, kind: &str, name: &str, reason: &str, message: &str) {
    eventually(&format!("{reason} event on {kind} {name}"), || {
        events(server, "default", kind, reason, COMPONENT)
            .iter()
            .any(|e| e["involvedObject"]["name"] == name && e["message"] == message)
    });
}

#[test]
fn immediate_claims_bind_to_the_smallest_matching_volume_or_wait_for_one() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &[BINDER]);
    for (name, size) in [
        ("pv-big", "10Gi"),
        ("pv-small", "2Gi"),
        ("pv-tiny", "500Mi"),
    ] {
        apply(&server, &host_path(name, size, "Retain", "/data", ""));
    }
    // Big enough but read-only: not for a ReadWriteOnce claim.
    apply(
        &server,
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: pv-rox}\nspec:\n  \
         capacity: {storage: 1Gi}\n  accessModes: [ReadOnlyMany]\n  hostPath: {path: /data}\n",
    );
    apply(&server, &claim("data", "1Gi", "storageClassName: \"\""));
    wait_phase(&server, "pvc", "data", "Bound");

    let pvc = get(&server, "pvc", "data");
    assert_eq!(pvc["spec"]["volumeName"], "pv-small", "{pvc}");
    let ann = &pvc["metadata"]["annotations"];
    assert_eq!(ann["pv.kubernetes.io/bind-completed"], "yes", "{pvc}");
    assert_eq!(ann["pv.kubernetes.io/bound-by-controller"], "yes", "{pvc}");
    assert_eq!(pvc["status"]["capacity"]["storage"], "2Gi", "{pvc}");
    assert_eq!(
        pvc["status"]["accessModes"],
        serde_json::json!(["ReadWriteOnce"])
    );
    wait_phase(&server, "pv", "pv-small", "Bound");
    let pv = get(&server, "pv", "pv-small");
    let claim_ref = &pv["spec"]["claimRef"];
    assert_eq!(claim_ref["name"], "data", "{pv}");
    assert_eq!(claim_ref["namespace"], "default", "{pv}");
    assert_eq!(claim_ref["kind"], "PersistentVolumeClaim", "{pv}");
    assert_eq!(claim_ref["uid"], pvc["metadata"]["uid"], "{pv}");
    assert_eq!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"],
        "yes"
    );
    for other in ["pv-big", "pv-tiny", "pv-rox"] {
        wait_phase(&server, "pv", other, "Available");
    }
    // What an operator sees.
    let table = server.ok(&["get", "pvc", "data"]);
    assert!(
        table.contains("Bound") && table.contains("pv-small") && table.contains("2Gi"),
        "{table}"
    );
    let table = server.ok(&["get", "pv", "pv-small"]);
    assert!(table.contains("default/data"), "{table}");

    // Nothing fits 20Gi: Pending with upstream's event, until a big enough volume appears.
    apply(&server, &claim("huge", "20Gi", ""));
    wait_event(
        &server,
        "PersistentVolumeClaim",
        "huge",
        "FailedBinding",
        "no persistent volumes available for this claim and no storage class is set",
    );
    assert_eq!(phase_of(&server, "pvc", "huge"), "Pending");
    apply(
        &server,
        &host_path("pv-huge", "50Gi", "Retain", "/data", ""),
    );
    wait_phase(&server, "pvc", "huge", "Bound");
    assert_eq!(get(&server, "pvc", "huge")["spec"]["volumeName"], "pv-huge");

    // A class nobody provisions for: upstream's ProvisioningFailed.
    apply(
        &server,
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: manual}\n\
         provisioner: kubernetes.io/no-provisioner\nvolumeBindingMode: Immediate\n",
    );
    apply(&server, &claim("manual", "1Gi", "storageClassName: manual"));
    wait_event(
        &server,
        "PersistentVolumeClaim",
        "manual",
        "ProvisioningFailed",
        "no volume plugin matched name: kubernetes.io/no-provisioner",
    );
    assert_eq!(phase_of(&server, "pvc", "manual"), "Pending");
}

#[test]
fn pre_bound_volumes_and_claims_bind_to_each_other() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &[BINDER]);
    // A volume reserved for a claim wins over a smaller free one.
    apply(&server, &host_path("pv-free", "1Gi", "Retain", "/data", ""));
    apply(
        &server,
        &host_path(
            "pv-reserved",
            "5Gi",
            "Retain",
            "/data",
            "claimRef: {namespace: default, name: reserved}",
        ),
    );
    wait_phase(&server, "pv", "pv-reserved", "Available");
    apply(&server, &claim("reserved", "1Gi", "storageClassName: \"\""));
    wait_phase(&server, "pvc", "reserved", "Bound");
    let pvc = get(&server, "pvc", "reserved");
    assert_eq!(pvc["spec"]["volumeName"], "pv-reserved");
    let pv = get(&server, "pv", "pv-reserved");
    assert!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"].is_null(),
        "the user made this binding: {pv}"
    );
    assert_eq!(pv["spec"]["claimRef"]["uid"], pvc["metadata"]["uid"]);

    // A claim naming its volume gets exactly that one.
    apply(
        &server,
        &claim(
            "named",
            "1Gi",
            "volumeName: pv-free\n  storageClassName: \"\"",
        ),
    );
    wait_phase(&server, "pvc", "named", "Bound");
    let pvc = get(&server, "pvc", "named");
    assert!(
        pvc["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"].is_null(),
        "{pvc}"
    );
    assert_eq!(
        pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"],
        "yes"
    );
    let pv = get(&server, "pv", "pv-free");
    assert_eq!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"],
        "yes"
    );
    wait_phase(&server, "pv", "pv-free", "Bound");

    // Named but missing: Pending until the volume is created.
    apply(
        &server,
        &claim(
            "later",
            "1Gi",
            "volumeName: pv-later\n  storageClassName: \"\"",
        ),
    );
    eventually("later is Pending", || {
        phase_of(&server, "pvc", "later") == "Pending"
    });
    apply(
        &server,
        &host_path("pv-later", "1Gi", "Retain", "/data", ""),
    );
    wait_phase(&server, "pvc", "later", "Bound");

    // Named but too small: VolumeMismatch.
    apply(&server, &host_path("pv-mini", "1Mi", "Retain", "/data", ""));
    wait_phase(&server, "pv", "pv-mini", "Available");
    apply(
        &server,
        &claim(
            "picky",
            "1Gi",
            "volumeName: pv-mini\n  storageClassName: \"\"",
        ),
    );
    wait_event(
        &server,
        "PersistentVolumeClaim",
        "picky",
        "VolumeMismatch",
        "Cannot bind to requested volume \"pv-mini\": requested PV is too small",
    );
    assert_eq!(phase_of(&server, "pvc", "picky"), "Pending");
}

#[test]
fn wait_for_first_consumer_claims_bind_only_what_the_scheduler_chose() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &[BINDER]);
    apply(
        &server,
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: local}\n\
         provisioner: kubernetes.io/no-provisioner\nvolumeBindingMode: WaitForFirstConsumer\n\
         ---\napiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: csi}\n\
         provisioner: csi.example.com\nvolumeBindingMode: WaitForFirstConsumer\n",
    );
    apply(
        &server,
        &host_path(
            "pv-local",
            "1Gi",
            "Retain",
            "/data",
            "storageClassName: local",
        ),
    );
    apply(&server, &claim("wffc", "1Gi", "storageClassName: local"));
    wait_event(
        &server,
        "PersistentVolumeClaim",
        "wffc",
        "WaitForFirstConsumer",
        "waiting for first consumer to be created before binding",
    );
    wait_phase(&server, "pv", "pv-local", "Available");
    assert_eq!(phase_of(&server, "pvc", "wffc"), "Pending");
    assert!(get(&server, "pvc", "wffc")["spec"]["volumeName"].is_null());

    // What the scheduler's PreBind does: claimRef on the chosen volume; the binder finishes.
    let uid = get(&server, "pvc", "wffc")["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let patch = format!(
        r#"{{"spec":{{"claimRef":{{"kind":"PersistentVolumeClaim","apiVersion":"v1","namespace":"default","name":"wffc","uid":"{uid}"}}}},"metadata":{{"annotations":{{"pv.kubernetes.io/bound-by-controller":"yes"}}}}}}"#
    );
    server.ok(&["patch", "pv", "pv-local", "--type=merge", "-p", &patch]);
    wait_phase(&server, "pvc", "wffc", "Bound");
    assert_eq!(
        get(&server, "pvc", "wffc")["spec"]["volumeName"],
        "pv-local"
    );
    wait_phase(&server, "pv", "pv-local", "Bound");

    // A node was selected and nothing matches: an external provisioner is asked for.
    apply(
        &server,
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: dynamic\n  namespace: default\n  \
         annotations: {volume.kubernetes.io/selected-node: node-a}\nspec:\n  accessModes: [ReadWriteOnce]\n  \
         resources: {requests: {storage: 1Gi}}\n  storageClassName: csi\n",
    );
    wait_event(
        &server,
        "PersistentVolumeClaim",
        "dynamic",
        "ExternalProvisioning",
        "Waiting for a volume to be created either by the external provisioner 'csi.example.com' \
         or manually by the system administrator. If volume creation is delayed, please verify \
         that the provisioner is running and correctly registered.",
    );
    let pvc = get(&server, "pvc", "dynamic");
    let ann = &pvc["metadata"]["annotations"];
    assert_eq!(
        ann["volume.kubernetes.io/storage-provisioner"],
        "csi.example.com"
    );
    assert_eq!(
        ann["volume.beta.kubernetes.io/storage-provisioner"],
        "csi.example.com"
    );
    assert_eq!(phase_of(&server, "pvc", "dynamic"), "Pending");
}

#[test]
fn deleted_claims_release_or_reclaim_their_volumes_and_deleted_volumes_lose_claims() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(
        &server,
        &["--controllers=persistentvolume-binder,pvc-protection,pv-protection"],
    );
    let tmp = std::path::PathBuf::from(format!(
        "/tmp/kcm-pv-e2e-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(tmp.join("data")).expect("scratch dir");
    std::fs::write(tmp.join("data/file"), "x").expect("scratch file");
    let tmp_data = tmp.join("data").display().to_string();
    let local = "local: {path: /mnt/disk}\n  nodeAffinity: {required: {nodeSelectorTerms: \
                 [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [node-a]}]}]}}\n  \
                 persistentVolumeReclaimPolicy: Delete";
    let vols = [
        host_path("pv-retain", "1Gi", "Retain", "/data/r", ""),
        host_path("pv-delete", "1Gi", "Delete", "/data/d", ""),
        host_path("pv-tmp", "1Gi", "Delete", &tmp_data, ""),
        volume("pv-local", "1Gi", local),
        host_path("pv-lost", "1Gi", "Retain", "/data/l", ""),
    ];
    for (pv, name) in vols
        .iter()
        .zip(["retain", "delete", "tmp", "local", "lost"])
    {
        apply(&server, pv);
        apply(
            &server,
            &claim(
                name,
                "1Gi",
                &format!("volumeName: pv-{name}\n  storageClassName: \"\""),
            ),
        );
    }
    for name in ["retain", "delete", "tmp", "local", "lost"] {
        wait_phase(&server, "pvc", name, "Bound");
        wait_phase(&server, "pv", &format!("pv-{name}"), "Bound");
    }

    for name in ["retain", "delete", "tmp", "local"] {
        server.ok(&["delete", "pvc", name]);
    }
    wait_phase(&server, "pv", "pv-retain", "Released");
    assert_eq!(
        get(&server, "pv", "pv-retain")["spec"]["claimRef"]["name"],
        "retain",
        "a Released volume keeps its claimRef"
    );

    let failed = "host_path deleter only supports /tmp/.+ but received provided /data/d";
    wait_phase(&server, "pv", "pv-delete", "Failed");
    assert_eq!(get(&server, "pv", "pv-delete")["status"]["message"], failed);
    wait_event(
        &server,
        "PersistentVolume",
        "pv-delete",
        "VolumeFailedDelete",
        failed,
    );

    let failed =
        r#"error getting deleter volume plugin for volume "pv-local": no volume plugin matched"#;
    wait_phase(&server, "pv", "pv-local", "Failed");
    wait_event(
        &server,
        "PersistentVolume",
        "pv-local",
        "VolumeFailedDelete",
        failed,
    );

    // Upstream's hostPath deleter removes directories under /tmp, then the volume.
    eventually("pv-tmp deleted", || {
        !server.kubectl(&["get", "pv", "pv-tmp"]).success()
    });
    assert!(
        !tmp.join("data").exists(),
        "the hostPath directory is removed"
    );
    let _ = std::fs::remove_dir_all(&tmp);

    // pv-protection holds a bound volume's deletion; an unbound one goes at once.
    server.ok(&["delete", "pv", "pv-lost", "--wait=false"]);
    apply(
        &server,
        &host_path("pv-free", "1Gi", "Retain", "/data/f", ""),
    );
    let pv = get(&server, "pv", "pv-free");
    assert_eq!(
        pv["metadata"]["finalizers"],
        serde_json::json!(["kubernetes.io/pv-protection"]),
        "{pv}"
    );
    server.ok(&["delete", "pv", "pv-free"]);
    let pv = get(&server, "pv", "pv-lost");
    assert!(pv["metadata"]["deletionTimestamp"].is_string(), "{pv}");
    assert_eq!(phase_of(&server, "pvc", "lost"), "Bound");
    // The volume of a bound claim disappears anyway (its finalizer removed by hand): the
    // claim is Lost.
    server.ok(&[
        "patch",
        "pv",
        "pv-lost",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    wait_phase(&server, "pvc", "lost", "Lost");
    wait_event(
        &server,
        "PersistentVolumeClaim",
        "lost",
        "ClaimLost",
        "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
    );
    assert_eq!(
        event_messages(&server, "PersistentVolumeClaim", "ClaimLost").len(),
        1,
        "ClaimLost is reported once, on the transition"
    );
}

#[test]
fn a_repeated_event_bumps_its_count_instead_of_adding_events() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(&server, &[BINDER, "--pvclaimbinder-sync-period=1s"]);
    apply(&server, &claim("lonely", "1Gi", "storageClassName: \"\""));
    // Every resync finds nothing to bind and says so again: one Event, a growing count.
    eventually("FailedBinding seen three times", || {
        events(
            &server,
            "default",
            "PersistentVolumeClaim",
            "FailedBinding",
            COMPONENT,
        )
        .iter()
        .any(|e| e["count"].as_i64().is_some_and(|c| c >= 3))
    });
    let all = events(
        &server,
        "default",
        "PersistentVolumeClaim",
        "FailedBinding",
        COMPONENT,
    );
    assert_eq!(all.len(), 1, "{all:?}");
    let e = &all[0];
    assert_ne!(e["firstTimestamp"], e["lastTimestamp"], "{e}");
    let described = server.ok(&["describe", "pvc", "lonely"]);
    assert!(described.contains("FailedBinding"), "{described}");
}

#[test]
fn a_claim_in_use_by_a_pod_stays_until_the_pod_is_gone() {
    let server = ApiServer::start();
    let _kcm = Kcm::start(
        &server,
        &["--controllers=persistentvolume-binder,pvc-protection,pv-protection,serviceaccount"],
    );
    eventually("default service account", || {
        server
            .kubectl(&["get", "serviceaccount", "default"])
            .success()
    });
    apply(
        &server,
        &host_path("pv-used", "1Gi", "Retain", "/data/u", ""),
    );
    apply(&server, &claim("used", "1Gi", "storageClassName: \"\""));
    wait_phase(&server, "pvc", "used", "Bound");
    let pvc = get(&server, "pvc", "used");
    assert_eq!(
        pvc["metadata"]["finalizers"],
        serde_json::json!(["kubernetes.io/pvc-protection"]),
        "{pvc}"
    );
    apply(
        &server,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: user}\nspec:\n  containers: [{name: c, image: busybox}]\n  \
         volumes: [{name: d, persistentVolumeClaim: {claimName: used}}]\n",
    );
    server.ok(&["delete", "pvc", "used", "--wait=false"]);
    // An unused claim deleted after it goes at once: the controller has looked at both.
    apply(&server, &claim("spare", "1Gi", "storageClassName: \"\""));
    server.ok(&["delete", "pvc", "spare"]);
    let pvc = get(&server, "pvc", "used");
    assert!(pvc["metadata"]["deletionTimestamp"].is_string(), "{pvc}");
    let table = server.ok(&["get", "pvc", "used"]);
    assert!(table.contains("Terminating"), "{table}");
    server.ok(&["delete", "pod", "user", "--grace-period=0", "--force"]);
    eventually("claim gone once its pod is", || {
        !server.kubectl(&["get", "pvc", "used"]).success()
    });
    wait_phase(&server, "pv", "pv-used", "Released");
}
