"""Drives kube-apiserver with the official Python `kubernetes` client.

Usage: python_client.py <kubeconfig> <namespace>. Exits non-zero (with a message) on the
first thing that does not behave as against upstream.
"""
import sys
import threading

from kubernetes import client, config, watch


def main() -> None:
    kubeconfig, ns = sys.argv[1], sys.argv[2]
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    apps = client.AppsV1Api()

    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    names = [n.metadata.name for n in core.list_namespace().items]
    assert ns in names and "kube-system" in names, names

    cm = core.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py", labels={"app": "py"}), data={"a": "1"})
    )
    assert cm.metadata.uid and cm.metadata.resource_version, cm.metadata

    # A watch from the list's resourceVersion sees the update that follows.
    listed = core.list_namespaced_config_map(ns, label_selector="app=py")
    assert [c.metadata.name for c in listed.items] == ["py"], listed.items
    seen = []

    def follow() -> None:
        w = watch.Watch()
        for ev in w.stream(
            core.list_namespaced_config_map,
            ns,
            resource_version=listed.metadata.resource_version,
            timeout_seconds=20,
        ):
            seen.append((ev["type"], ev["object"].data))
            if ev["type"] == "MODIFIED":
                w.stop()

    t = threading.Thread(target=follow)
    t.start()
    core.patch_namespaced_config_map("py", ns, {"data": {"a": "2"}})
    t.join(30)
    assert ("MODIFIED", {"a": "2"}) in seen, seen

    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "web"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="app", image="nginx:1.1")]),
            ),
        ),
    )
    created = apps.create_namespaced_deployment(ns, dep)
    assert created.spec.strategy.type == "RollingUpdate", created.spec.strategy
    scale = apps.read_namespaced_deployment_scale("web", ns)
    assert scale.spec.replicas == 2, scale

    try:
        core.read_namespaced_config_map("missing", ns)
        raise AssertionError("reading a missing configmap succeeded")
    except client.exceptions.ApiException as e:
        assert e.status == 404, e

    try:
        core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="Bad_Name")))
        raise AssertionError("an invalid name was accepted")
    except client.exceptions.ApiException as e:
        assert e.status == 422, e

    core.delete_namespaced_config_map("py", ns)
    print("python client: ok")


if __name__ == "__main__":
    main()
