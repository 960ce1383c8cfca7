//! ServiceAccount: pods run as an existing service account and get its API credentials as a
//! projected `kube-api-access-*` volume; mirror pods may reference neither.

use serde_json::{json, Value};

use super::helpers::{arr_at, is_mirror_pod, references_secrets, str_at};
use super::{forbidden, Attributes, Operation, Plugin};
use crate::error::ApiError;

/// The account pods get when they name none.
pub const DEFAULT_SERVICE_ACCOUNT_NAME: &str = "default";
/// Where the token volume is mounted in every container.
pub const DEFAULT_API_TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Prefix of the generated token volume name.
pub const SERVICE_ACCOUNT_VOLUME_NAME: &str = "kube-api-access";
/// Lifetime of projected tokens; upstream's `WarnOnlyBoundTokenExpirationSeconds`.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// Service-account annotation that restricts pods to the secrets the account lists.
const ENFORCE_MOUNTABLE_SECRETS_ANNOTATION: &str = "kubernetes.io/enforce-mountable-secrets";

/// Characters of upstream's `utilrand.String`, used for generated name suffixes.
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Upstream `ServiceAccount`, reading `serviceaccounts` of the pod's namespace.
pub struct ServiceAccount {
    suffix: fn() -> String,
}

impl ServiceAccount {
    /// The plugin with random 5-character volume name suffixes.
    pub fn new() -> Self {
        Self {
            suffix: random_suffix,
        }
    }
}

impl Default for ServiceAccount {
    fn default() -> Self {
        Self::new()
    }
}

/// Five characters from upstream's name alphabet, from a v4 UUID's random bytes.
pub(crate) fn random_suffix() -> String {
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| char::from(NAME_ALPHABET[usize::from(*b) % NAME_ALPHABET.len()]))
        .collect()
}

fn applies(attrs: &Attributes<'_>) -> bool {
    attrs.operation == Operation::Create
        && attrs.is("", "pods")
        && attrs.subresource.is_empty()
        && attrs.obj().is_some()
}

/// `spec.serviceAccountName`, falling back to the deprecated `spec.serviceAccount`.
fn account_name(pod: &Value) -> &str {
    let name = str_at(pod, "/spec/serviceAccountName");
    if name.is_empty() {
        str_at(pod, "/spec/serviceAccount")
    } else {
        name
    }
}

fn lookup(attrs: &Attributes<'_>, name: &str) -> Result<std::sync::Arc<Value>, ApiError> {
    attrs
        .source
        .get("", "serviceaccounts", attrs.namespace, name)
        .ok_or_else(|| {
            forbidden(
                attrs,
                format_args!(
                    "error looking up service account {}/{name}: serviceaccount \"{name}\" not found",
                    attrs.namespace
                ),
            )
        })
}

impl Plugin for ServiceAccount {
    fn name(&self) -> &'static str {
        "ServiceAccount"
    }

    fn admit(&self, attrs: &mut Attributes<'_>) -> Result<(), ApiError> {
        if !applies(attrs) {
            return Ok(());
        }
        let Some(pod) = attrs.obj() else {
            return Ok(());
        };
        // The kubelet deletes mirror pods whose spec it did not write, so they are only checked.
        if is_mirror_pod(pod) {
            return Ok(());
        }
        let name = match account_name(pod) {
            "" => DEFAULT_SERVICE_ACCOUNT_NAME.to_string(),
            n => n.to_string(),
        };
        let sa = lookup(attrs, &name)?;
        let suffix = (self.suffix)();
        let Some(pod) = attrs.object.as_deref_mut() else {
            return Ok(());
        };
        if !pod["spec"].is_object() {
            pod["spec"] = json!({});
        }
        pod["spec"]["serviceAccountName"] = json!(name);
        pod["spec"]["serviceAccount"] = json!(name);
        if should_automount(&sa, pod) {
            mount_token(pod, &suffix);
        }
        if arr_at(pod, "/spec/imagePullSecrets").is_empty() {
            let secrets: Vec<Value> = arr_at(&sa, "/imagePullSecrets")
                .iter()
                .map(|s| json!({"name": str_at(s, "/name")}))
                .collect();
            if !secrets.is_empty() {
                pod["spec"]["imagePullSecrets"] = Value::Array(secrets);
            }
        }
        Ok(())
    }

    fn validate(
        &self,
        attrs: &Attributes<'_>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if !applies(attrs) {
            return Ok(());
        }
        let Some(pod) = attrs.obj() else {
            return Ok(());
        };
        if is_mirror_pod(pod) {
            if !account_name(pod).is_empty() {
                return Err(forbidden(
                    attrs,
                    "a mirror pod may not reference service accounts",
                ));
            }
            if references_secrets(pod) {
                return Err(forbidden(attrs, "a mirror pod may not reference secrets"));
            }
            let projects_token = arr_at(pod, "/spec/volumes").iter().any(|v| {
                arr_at(v, "/projected/sources")
                    .iter()
                    .any(|s| s.get("serviceAccountToken").is_some_and(|t| !t.is_null()))
            });
            if projects_token {
                return Err(forbidden(
                    attrs,
                    "a mirror pod may not use ServiceAccountToken volume projections",
                ));
            }
            return Ok(());
        }
        let sa = lookup(attrs, account_name(pod))?;
        let enforce = sa
            .pointer(&format!(
                "/metadata/annotations/{}",
                ENFORCE_MOUNTABLE_SECRETS_ANNOTATION.replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .is_some_and(|v| matches!(v, "true" | "1" | "t" | "T" | "TRUE" | "True"));
        if enforce {
            if let Some(why) = limit_secret_references(&sa, pod) {
                return Err(forbidden(attrs, why));
            }
        }
        Ok(())
    }
}

/// The pod's `automountServiceAccountToken` wins, then the account's; the default is true.
fn should_automount(sa: &Value, pod: &Value) -> bool {
    pod.pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            sa.get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        })
        .unwrap_or(true)
}

/// The projected volume upstream's `TokenVolumeSource` describes.
fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]
        }
    })
}

/// Mounts the token volume read-only in every container and init container that does not
/// already mount something at the token path, adding the volume if any container needs it.
fn mount_token(pod: &mut Value, suffix: &str) {
    let existing = arr_at(pod, "/spec/volumes")
        .iter()
        .map(|v| str_at(v, "/name"))
        .find(|n| n.starts_with(&format!("{SERVICE_ACCOUNT_VOLUME_NAME}-")))
        .map(str::to_string);
    let volume_name = existing
        .clone()
        .unwrap_or_else(|| format!("{SERVICE_ACCOUNT_VOLUME_NAME}-{suffix}"));
    let mount = json!({
        "name": volume_name,
        "readOnly": true,
        "mountPath": DEFAULT_API_TOKEN_MOUNT_PATH,
    });
    let mut needs_volume = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = pod["spec"].get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers.iter_mut() {
            let mounted = arr_at(c, "/volumeMounts")
                .iter()
                .any(|m| str_at(m, "/mountPath") == DEFAULT_API_TOKEN_MOUNT_PATH);
            if mounted || !c.is_object() {
                continue;
            }
            match c.get_mut("volumeMounts").and_then(Value::as_array_mut) {
                Some(mounts) => mounts.push(mount.clone()),
                None => c["volumeMounts"] = json!([mount.clone()]),
            }
            needs_volume = true;
        }
    }
    if existing.is_none() && needs_volume {
        match pod["spec"].get_mut("volumes").and_then(Value::as_array_mut) {
            Some(volumes) => volumes.push(token_volume(&volume_name)),
            None => pod["spec"]["volumes"] = json!([token_volume(&volume_name)]),
        }
    }
}

/// With enforcement on, secrets the pod uses must be listed by the account.
fn limit_secret_references(sa: &Value, pod: &Value) -> Option<String> {
    let sa_name = str_at(sa, "/metadata/name");
    let mountable: Vec<&str> = arr_at(sa, "/secrets")
        .iter()
        .map(|s| str_at(s, "/name"))
        .collect();
    for v in arr_at(pod, "/spec/volumes") {
        let secret = str_at(v, "/secret/secretName");
        if v.get("secret").is_some_and(|s| !s.is_null()) && !mountable.contains(&secret) {
            return Some(format!(
                "volume with secret.secretName=\"{secret}\" is not allowed because service account {sa_name} does not reference that secret"
            ));
        }
    }
    for (list, label) in [
        ("initContainers", "init container"),
        ("containers", "container"),
    ] {
        for c in arr_at(pod, &format!("/spec/{list}")) {
            for e in arr_at(c, "/env") {
                if e.pointer("/valueFrom/secretKeyRef")
                    .is_none_or(Value::is_null)
                {
                    continue;
                }
                let secret = str_at(e, "/valueFrom/secretKeyRef/name");
                if !mountable.contains(&secret) {
                    return Some(format!(
                        "{label} {} with envVar {} referencing secret.secretName=\"{secret}\" is not allowed because service account {sa_name} does not reference that secret",
                        str_at(c, "/name"),
                        str_at(e, "/name")
                    ));
                }
            }
        }
    }
    let pull: Vec<&str> = arr_at(sa, "/imagePullSecrets")
        .iter()
        .map(|s| str_at(s, "/name"))
        .collect();
    for (i, s) in arr_at(pod, "/spec/imagePullSecrets").iter().enumerate() {
        let name = str_at(s, "/name");
        if !pull.contains(&name) {
            return Some(format!(
                "imagePullSecrets[{i}].name=\"{name}\" is not allowed because service account {sa_name} does not reference that imagePullSecret"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn plugin() -> ServiceAccount {
        ServiceAccount {
            suffix: || "abcde".to_string(),
        }
    }

    fn sa(name: &str, extra: Value) -> Value {
        let mut v = json!({"metadata": {"name": name, "namespace": "ns"}});
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        v
    }

    fn run(p: Value, account: Value) -> (Result<Vec<String>, ApiError>, Value) {
        let mut req = Req::create_pod("ns", p).with("", "serviceaccounts", account);
        let r = req.plugin(&plugin());
        (r, req.object.unwrap())
    }

    #[test]
    fn default_account_and_token_volume_are_added() {
        let (r, pod) = run(
            json!({"metadata": {"name": "p"}, "spec": {
                "containers": [{"name": "c"}],
                "initContainers": [{"name": "i", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}]
            }}),
            sa("default", json!({"imagePullSecrets": [{"name": "reg"}]})),
        );
        r.unwrap();
        let spec = &pod["spec"];
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["serviceAccount"], "default");
        assert_eq!(spec["volumes"][0], token_volume("kube-api-access-abcde"));
        let mount = json!({"name": "kube-api-access-abcde", "readOnly": true,
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"});
        assert_eq!(spec["containers"][0]["volumeMounts"][0], mount);
        assert_eq!(spec["initContainers"][0]["volumeMounts"][1], mount);
        assert_eq!(spec["imagePullSecrets"], json!([{"name": "reg"}]));
        assert_eq!(
            spec["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]
                ["expirationSeconds"],
            3607
        );
    }

    #[test]
    fn missing_account_is_forbidden_with_upstream_wording() {
        let (r, _) = run(
            json!({"metadata": {"name": "p"}, "spec": {"serviceAccountName": "robot", "containers": []}}),
            sa("default", json!({})),
        );
        assert_eq!(
            r.unwrap_err().message,
            "pods \"p\" is forbidden: error looking up service account ns/robot: serviceaccount \"robot\" not found"
        );
    }

    #[test]
    fn automount_false_on_pod_or_account_skips_the_volume() {
        let (r, pod) = run(
            json!({"metadata": {"name": "p"}, "spec": {"automountServiceAccountToken": false, "containers": [{"name": "c"}]}}),
            sa("default", json!({})),
        );
        r.unwrap();
        assert!(pod["spec"].get("volumes").is_none());
        let (r, pod) = run(
            pod_v(),
            sa("default", json!({"automountServiceAccountToken": false})),
        );
        r.unwrap();
        assert!(pod["spec"].get("volumes").is_none());
        // the pod's explicit true wins over the account's false
        let mut p = pod_v();
        p["spec"]["automountServiceAccountToken"] = json!(true);
        let (r, pod) = run(
            p,
            sa("default", json!({"automountServiceAccountToken": false})),
        );
        r.unwrap();
        assert!(pod["spec"]["volumes"].is_array());
    }

    fn pod_v() -> Value {
        pod("p", json!([{"name": "c"}]))
    }

    #[test]
    fn existing_mounts_at_the_token_path_are_respected() {
        let (r, pod) = run(
            pod(
                "p",
                json!([{"name": "c", "volumeMounts": [{"name": "mine", "mountPath": DEFAULT_API_TOKEN_MOUNT_PATH}]}]),
            ),
            sa("default", json!({})),
        );
        r.unwrap();
        assert!(pod["spec"].get("volumes").is_none());
        assert_eq!(
            pod["spec"]["containers"][0]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn mirror_pods_may_not_reference_accounts_or_secrets() {
        let mirror = |spec: Value| json!({"metadata": {"name": "m", "annotations": {"kubernetes.io/config.mirror": "x"}}, "spec": spec});
        let (r, pod) = run(
            mirror(json!({"containers": [{"name": "c"}]})),
            sa("default", json!({})),
        );
        r.unwrap();
        assert!(pod["spec"].get("serviceAccountName").is_none());
        let (r, _) = run(
            mirror(json!({"serviceAccountName": "default", "containers": []})),
            sa("default", json!({})),
        );
        assert_eq!(
            r.unwrap_err().message,
            "pods \"m\" is forbidden: a mirror pod may not reference service accounts"
        );
        let (r, _) = run(
            mirror(
                json!({"containers": [], "volumes": [{"name": "s", "secret": {"secretName": "x"}}]}),
            ),
            sa("default", json!({})),
        );
        assert_eq!(
            r.unwrap_err().message,
            "pods \"m\" is forbidden: a mirror pod may not reference secrets"
        );
    }

    #[test]
    fn enforced_mountable_secrets_limit_references() {
        let account = sa(
            "default",
            json!({"metadata": {"name": "default", "namespace": "ns",
                "annotations": {"kubernetes.io/enforce-mountable-secrets": "true"}},
                "secrets": [{"name": "ok"}]}),
        );
        let (r, _) = run(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}],
                "volumes": [{"name": "v", "secret": {"secretName": "other"}}]}}),
            account,
        );
        assert_eq!(
            r.unwrap_err().message,
            "pods \"p\" is forbidden: volume with secret.secretName=\"other\" is not allowed because service account default does not reference that secret"
        );
    }

    #[test]
    fn random_suffixes_use_the_upstream_alphabet() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.bytes().all(|b| NAME_ALPHABET.contains(&b)));
    }
}
