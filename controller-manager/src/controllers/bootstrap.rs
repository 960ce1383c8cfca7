//! Bootstrap tokens: bootstrapsigner signs the `kube-public/cluster-info` ConfigMap's kubeconfig
//! with every signing token (`jws-kubeconfig-<token-id>`, a detached HS256 JWS that `kubeadm
//! join` verifies), and tokencleaner deletes bootstrap token Secrets once they expire.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::chrono::{DateTime, Utc};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;

/// Namespace of the cluster-info ConfigMap.
pub const KUBE_PUBLIC: &str = "kube-public";
/// Name of the ConfigMap bootstrapsigner signs.
pub const CLUSTER_INFO: &str = "cluster-info";
/// Key of the kubeconfig inside it.
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// Prefix of signature keys.
pub const JWS_PREFIX: &str = "jws-kubeconfig-";
/// Secret type of bootstrap tokens.
pub const TOKEN_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Namespace of bootstrap token Secrets.
pub const KUBE_SYSTEM: &str = "kube-system";
/// Longest requeue: kube-runtime's scheduler panics on deadlines years away (tokens may
/// expire in 2099).
const MAX_REQUEUE: Duration = Duration::from_secs(3600);

/// The detached JWS (`header..signature`, HS256, `kid` = token id) of `content`.
pub fn detached_jws(content: &str, token_id: &str, token_secret: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = serde_json::json!({"alg": "HS256", "kid": token_id}).to_string();
    let header = b64.encode(header);
    let payload = b64.encode(content);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token_secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{header}.{payload}").as_bytes());
    format!("{header}..{}", b64.encode(tag.as_ref()))
}

/// A bootstrap token Secret's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The public part, `[a-z0-9]{6}`.
    pub id: String,
    /// The private part, `[a-z0-9]{16}`.
    pub secret: String,
    /// When it stops being valid.
    pub expiration: Option<DateTime<Utc>>,
    /// Whether it may sign cluster-info.
    pub signing: bool,
}

fn field<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    let bytes = secret.data.as_ref()?.get(key)?;
    std::str::from_utf8(&bytes.0).ok()
}

fn valid_part(s: &str, len: usize) -> bool {
    s.len() == len
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// The token a Secret holds, if it is a well-formed bootstrap token (right type, id and secret
/// shapes, named `bootstrap-token-<id>`).
pub fn parse_token(secret: &Secret) -> Option<Token> {
    if secret.type_.as_deref() != Some(TOKEN_TYPE) {
        return None;
    }
    let id = field(secret, "token-id")?;
    let token_secret = field(secret, "token-secret")?;
    if !valid_part(id, 6) || !valid_part(token_secret, 16) {
        return None;
    }
    if secret.metadata.name.as_deref() != Some(format!("bootstrap-token-{id}").as_str()) {
        return None;
    }
    let expiration = match field(secret, "expiration") {
        Some(text) => Some(DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc)),
        None => None,
    };
    Some(Token {
        id: id.to_owned(),
        secret: token_secret.to_owned(),
        expiration,
        signing: field(secret, "usage-bootstrap-signing") == Some("true"),
    })
}

/// The signatures cluster-info should carry for `kubeconfig` and the live signing tokens.
pub fn signatures(
    kubeconfig: &str,
    tokens: &[Token],
    now: DateTime<Utc>,
) -> BTreeMap<String, String> {
    tokens
        .iter()
        .filter(|t| t.signing && t.expiration.is_none_or(|e| e > now))
        .map(|t| {
            (
                format!("{JWS_PREFIX}{}", t.id),
                detached_jws(kubeconfig, &t.id, &t.secret),
            )
        })
        .collect()
}

fn tokens(secrets: &Store<Secret>) -> Vec<Token> {
    secrets
        .state()
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(KUBE_SYSTEM))
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .filter_map(|s| parse_token(s))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// bootstrapsigner

struct SignerCtx {
    client: kube::Client,
    secrets: Store<Secret>,
}

/// Builds the bootstrapsigner controller.
pub fn start_signer(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let config_maps = ctx.informers.get::<ConfigMap>();
    let secrets = ctx.informers.get::<Secret>();
    let state = Arc::new(SignerCtx {
        client: ctx.client.clone(),
        secrets: secrets.store(),
    });
    let cluster_info = || ObjectRef::<ConfigMap>::new(CLUSTER_INFO).within(KUBE_PUBLIC);
    let controller = Controller::for_shared_stream(config_maps.subscribe(), config_maps.store())
        .watches_shared_stream(secrets.subscribe(), move |s: Arc<Secret>| {
            (s.type_.as_deref() == Some(TOKEN_TYPE)).then(cluster_info)
        })
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(1));
    Ok(drain("bootstrapsigner", controller.run(sign, error_policy, state)).boxed())
}

async fn sign(cm: Arc<ConfigMap>, ctx: Arc<SignerCtx>) -> Result<Action, Error> {
    if cm.namespace().as_deref() != Some(KUBE_PUBLIC) || cm.name_any() != CLUSTER_INFO {
        return Ok(Action::await_change());
    }
    let data = cm.data.clone().unwrap_or_default();
    let Some(kubeconfig) = data.get(KUBECONFIG_KEY) else {
        return Ok(Action::await_change());
    };
    let now = Utc::now();
    let tokens = tokens(&ctx.secrets);
    let want = signatures(kubeconfig, &tokens, now);
    let mut updated_data: BTreeMap<String, String> = data
        .iter()
        .filter(|(k, _)| !k.starts_with(JWS_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    updated_data.extend(want);
    // Signatures stop at expiry: look again then.
    let next_expiry = tokens
        .iter()
        .filter(|t| t.signing)
        .filter_map(|t| t.expiration)
        .filter(|e| *e > now)
        .min()
        .and_then(|e| (e - now).to_std().ok());
    let action = next_expiry.map_or(Action::await_change(), |d| {
        crate::controllers::requeue_after(d.min(MAX_REQUEUE) + Duration::from_secs(1))
    });
    if updated_data == data {
        return Ok(action);
    }
    let mut updated = (*cm).clone();
    updated.data = Some(updated_data);
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), KUBE_PUBLIC);
    match api
        .replace(CLUSTER_INFO, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => {
            tracing::info!("signed cluster-info with the bootstrap signing tokens");
            Ok(action)
        }
        Err(e) if is_status(&e, 409) || is_status(&e, 404) => Ok(
            crate::controllers::requeue_after(Duration::from_millis(500)),
        ),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// tokencleaner

struct CleanerCtx {
    client: kube::Client,
}

/// Builds the tokencleaner controller.
pub fn start_cleaner(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let secrets = ctx.informers.get::<Secret>();
    let state = Arc::new(CleanerCtx {
        client: ctx.client.clone(),
    });
    let controller = Controller::for_shared_stream(secrets.subscribe(), secrets.store())
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(1));
    Ok(drain("tokencleaner", controller.run(clean, error_policy, state)).boxed())
}

/// When a bootstrap token Secret should be deleted: its `expiration`, if it has one.
pub fn expires_at(secret: &Secret) -> Option<DateTime<Utc>> {
    if secret.type_.as_deref() != Some(TOKEN_TYPE) {
        return None;
    }
    let text = field(secret, "expiration")?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

async fn clean(secret: Arc<Secret>, ctx: Arc<CleanerCtx>) -> Result<Action, Error> {
    if secret.namespace().as_deref() != Some(KUBE_SYSTEM)
        || secret.metadata.deletion_timestamp.is_some()
    {
        return Ok(Action::await_change());
    }
    let Some(at) = expires_at(&secret) else {
        return Ok(Action::await_change());
    };
    let now = Utc::now();
    if at > now {
        let wait = (at - now).to_std().unwrap_or_default();
        return Ok(crate::controllers::requeue_after(
            wait.min(MAX_REQUEUE) + Duration::from_secs(1),
        ));
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), KUBE_SYSTEM);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: secret.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&secret.name_any(), &params).await {
        Ok(_) => {
            tracing::info!(secret = %secret.name_any(), "deleted expired bootstrap token");
            Ok(Action::await_change())
        }
        Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::ByteString;

    fn secret(name: &str, pairs: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(KUBE_SYSTEM.into()),
                ..ObjectMeta::default()
            },
            type_: Some(TOKEN_TYPE.into()),
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn detached_jws_matches_an_independent_hs256() {
        // Computed with Python's hmac/base64 for the same header, payload and key.
        assert_eq!(
            detached_jws(
                "apiVersion: v1\nkind: Config\n",
                "abcdef",
                "0123456789abcdef"
            ),
            "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiY2RlZiJ9..vH_kT4yiol-nrAWgjfCYqvum5wsKETXe0S7OOp1VgnE"
        );
    }

    #[test]
    fn tokens_parse_and_only_live_signing_tokens_sign() {
        let now = Utc::now();
        let good = secret(
            "bootstrap-token-abcdef",
            &[
                ("token-id", "abcdef"),
                ("token-secret", "0123456789abcdef"),
                ("usage-bootstrap-signing", "true"),
            ],
        );
        let expired = secret(
            "bootstrap-token-zzzzzz",
            &[
                ("token-id", "zzzzzz"),
                ("token-secret", "0123456789abcdef"),
                ("usage-bootstrap-signing", "true"),
                ("expiration", "2020-01-01T00:00:00Z"),
            ],
        );
        let not_signing = secret(
            "bootstrap-token-nnnnnn",
            &[("token-id", "nnnnnn"), ("token-secret", "0123456789abcdef")],
        );
        let misnamed = secret(
            "my-token",
            &[("token-id", "abcdef"), ("token-secret", "0123456789abcdef")],
        );
        let bad_secret = secret(
            "bootstrap-token-abcdef",
            &[("token-id", "abcdef"), ("token-secret", "short")],
        );
        assert!(parse_token(&misnamed).is_none());
        assert!(parse_token(&bad_secret).is_none());
        let tokens: Vec<Token> = [good, expired.clone(), not_signing]
            .iter()
            .filter_map(parse_token)
            .collect();
        assert_eq!(tokens.len(), 3);
        let sigs = signatures("cfg", &tokens, now);
        assert_eq!(
            sigs.keys().collect::<Vec<_>>(),
            vec!["jws-kubeconfig-abcdef"]
        );
        assert!(expires_at(&expired).is_some_and(|e| e < now));
    }
}
