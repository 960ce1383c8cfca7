//! POST pods/<name>/binding against the real binary: the Binding's preconditions and
//! annotations, and no managedFields entry for the binding (as upstream's BindingREST).

mod common;

use common::{ApiServer, User};
use serde_json::json;

#[test]
fn binding_honours_uid_precondition_copies_annotations_and_records_no_managed_fields() {
    let k = ApiServer::start();
    let ns = k.namespace("bind-pre");
    k.ok_stdin(
        &["create", "-n", &ns, "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}})
        .to_string(),
    );
    let uid = k.json(&["get", "pod", "p", "-n", &ns])["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    let path = format!("/api/v1/namespaces/{ns}/pods/p/binding");
    let post = |meta: serde_json::Value| {
        let body = json!({"apiVersion": "v1", "kind": "Binding", "metadata": meta,
                          "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"}})
        .to_string();
        k.raw_request(
            "POST",
            &path,
            Some(body.as_bytes()),
            Some("application/json"),
            User::Admin,
        )
    };

    let (code, body) = post(json!({"name": "p", "uid": "not-the-pod"}));
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains(&format!(
            "Precondition failed: UID in precondition: not-the-pod, UID in object meta: {uid}"
        )),
        "{body}"
    );
    let pod = k.json(&["get", "pod", "p", "-n", &ns]);
    assert!(pod["spec"].get("nodeName").is_none(), "{pod:#}");

    let (code, body) = post(json!({"name": "p", "uid": uid, "annotations": {"bound-by": "test"}}));
    assert_eq!(code, 201, "{body}");
    let pod = k.json(&["get", "pod", "p", "-n", &ns, "--show-managed-fields"]);
    assert_eq!(pod["spec"]["nodeName"], "node-a", "{pod:#}");
    assert_eq!(
        pod["metadata"]["annotations"]["bound-by"], "test",
        "{pod:#}"
    );
    let scheduled = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "PodScheduled" && c["status"] == "True");
    assert!(scheduled, "{pod:#}");
    let managers = pod["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!managers.is_empty(), "the create is recorded: {pod:#}");
    assert!(
        managers.iter().all(|m| m["subresource"] != "binding"),
        "{pod:#}"
    );
}
