//! VolumeBinding with the real kube-scheduler and kube-apiserver: a pod whose claim is missing
//! stays Pending with upstream's message until the claim exists and is bound; a bound volume's
//! node affinity decides the node; WaitForFirstConsumer claims need a matching available volume.
//! Nothing binds claims here (no PersistentVolume controller runs), so the tests bind them the
//! way that controller would (tests/volume_binding.rs runs the real one).

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "sched/mod.rs"]
mod sched;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use sched::*;

async fn scheduled_condition(pods: &Api<Pod>, name: &str) -> Option<String> {
    let p = pods.get(name).await.ok()?;
    let c = p
        .status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")?;
    (c.status == "False" && c.reason.as_deref() == Some("Unschedulable")).then_some(c.message?)
}

/// A hostPath PersistentVolume of 1Gi, optionally only on `host`, with `extra` spec fields.
fn volume(name: &str, host: Option<&str>, extra: serde_json::Value) -> PersistentVolume {
    let mut spec = json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
        "hostPath": {"path": format!("/tmp/{name}")}});
    if let Some(host) = host {
        spec["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [host]}]}]}});
    }
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name}, "spec": spec}))
    .expect("pv")
}

fn claim(name: &str, spec_extra: serde_json::Value) -> PersistentVolumeClaim {
    let mut spec = json!({"accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}}});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name}, "spec": spec}))
    .expect("pvc")
}

fn pod_using(name: &str, claim: &str) -> Pod {
    pod(
        name,
        "500m",
        json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}),
    )
}

/// Creates `pv` and claim `name` bound to each other as the PersistentVolume controller would
/// (claimRef, volumeName, bind-completed, phases Bound).
async fn bound_pair(c: &Cluster, name: &str, pv: PersistentVolume) {
    let pvs: Api<PersistentVolume> = Api::all(c.admin.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c.admin.clone(), &c.ns);
    let pv_name = pv.metadata.name.clone().expect("pv name");
    pvs.create(&PostParams::default(), &pv)
        .await
        .expect("create pv");
    let created = pvcs
        .create(
            &PostParams::default(),
            &claim(name, json!({"volumeName": pv_name})),
        )
        .await
        .expect("create pvc");
    pvs.patch(
        &pv_name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"claimRef": {"kind": "PersistentVolumeClaim",
            "apiVersion": "v1", "namespace": c.ns, "name": name, "uid": created.metadata.uid}}}),
        ),
    )
    .await
    .expect("pv claimRef");
    pvs.patch_status(
        &pv_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Bound"}})),
    )
    .await
    .expect("pv phase");
    pvcs.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {
            "pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes"}}})),
    )
    .await
    .expect("pvc annotations");
    pvcs.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "1Gi"}}}),
        ),
    )
    .await
    .expect("pvc phase");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_a_missing_claim_waits_for_it_to_exist_and_be_bound() {
    let c = cluster("vol-missing").await;
    let nodes: Api<Node> = Api::all(c.admin.clone());
    let pods: Api<Pod> = Api::namespaced(c.admin.clone(), &c.ns);
    fake_node(&nodes, "a", "4", json!({}), json!([])).await;
    fake_node(&nodes, "b", "4", json!({}), json!([])).await;
    pods.create(&PostParams::default(), &pod_using("web", "data"))
        .await
        .expect("pod");
    let message = wait_for("PodScheduled=False", async || {
        scheduled_condition(&pods, "web").await
    })
    .await;
    assert_eq!(
        message,
        "0/2 nodes are available: persistentvolumeclaim \"data\" not found. preemption: 0/2 \
         nodes are available: 2 Preemption is not helpful for scheduling.."
    );

    // An unbound claim without a class binds immediately, so the pod waits for the binding.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c.admin.clone(), &c.ns);
    pvcs.create(&PostParams::default(), &claim("pending", json!({})))
        .await
        .expect("pvc");
    pods.create(&PostParams::default(), &pod_using("waits", "pending"))
        .await
        .expect("pod");
    let message = wait_for("PodScheduled=False", async || {
        scheduled_condition(&pods, "waits").await
    })
    .await;
    assert_eq!(
        message,
        "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.."
    );
    assert_eq!(node_of(&pods, "web").await, None);

    // The claim appears bound to a volume: the PVC event moves the pod back and it is bound.
    bound_pair(&c, "data", volume("pv-data", None, json!({}))).await;
    let node = wait_for("web scheduled", async || node_of(&pods, "web").await).await;
    assert!(node == "a" || node == "b", "{node}");
    assert_eq!(node_of(&pods, "waits").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_node_affinity_decides_the_node() {
    let c = cluster("vol-affinity").await;
    let nodes: Api<Node> = Api::all(c.admin.clone());
    let pods: Api<Pod> = Api::namespaced(c.admin.clone(), &c.ns);
    // "big" has far more room, so every scorer prefers it.
    fake_node(&nodes, "big", "16", json!({}), json!([])).await;
    fake_node(&nodes, "small", "1", json!({}), json!([])).await;
    bound_pair(&c, "local", volume("pv-local", Some("small"), json!({}))).await;
    pods.create(&PostParams::default(), &pod_using("db", "local"))
        .await
        .expect("pod");
    let node = wait_for("db scheduled", async || node_of(&pods, "db").await).await;
    assert_eq!(node, "small");

    // WaitForFirstConsumer: a claim with no matching available volume keeps the pod Pending;
    // once a volume of its class appears on "small", the pod goes there.
    let classes: Api<StorageClass> = Api::all(c.admin.clone());
    let class: StorageClass = serde_json::from_value(json!({"apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass", "metadata": {"name": "local-wffc"},
        "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"}))
    .expect("class");
    classes
        .create(&PostParams::default(), &class)
        .await
        .expect("class");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c.admin.clone(), &c.ns);
    pvcs.create(
        &PostParams::default(),
        &claim("late", json!({"storageClassName": "local-wffc"})),
    )
    .await
    .expect("pvc");
    pods.create(&PostParams::default(), &pod_using("cache", "late"))
        .await
        .expect("pod");
    let message = wait_for("PodScheduled=False", async || {
        scheduled_condition(&pods, "cache").await
    })
    .await;
    assert_eq!(
        message,
        "0/2 nodes are available: 2 node(s) didn't find available persistent volumes to bind. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.."
    );
    let pvs: Api<PersistentVolume> = Api::all(c.admin.clone());
    pvs.create(
        &PostParams::default(),
        &volume(
            "pv-late",
            Some("small"),
            json!({"storageClassName": "local-wffc"}),
        ),
    )
    .await
    .expect("pv");
    pvs.patch_status(
        "pv-late",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Available"}})),
    )
    .await
    .expect("pv phase");
    // PreBind writes the chosen volume's claimRef, then waits for the claim to be bound.
    let late = wait_for("pv-late claimRef", async || {
        let pv = pvs.get("pv-late").await.ok()?;
        pv.spec?.claim_ref?.name.filter(|n| n == "late")
    })
    .await;
    assert_eq!(late, "late");
    assert_eq!(
        node_of(&pods, "cache").await,
        None,
        "bound only after its claim"
    );
    // What the PersistentVolume controller does next.
    pvcs.patch(
        "late",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"volumeName": "pv-late"}, "metadata": {"annotations": {
            "pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes"}}})),
    )
    .await
    .expect("bind claim");
    let node = wait_for("cache scheduled", async || node_of(&pods, "cache").await).await;
    assert_eq!(node, "small");
}
