//! The create-only review resources, answered from the request and never stored:
//! TokenReview and SelfSubjectReview (authentication.k8s.io), the access reviews
//! (authorization.k8s.io), and TokenRequest on `serviceaccounts/<name>/token`.

use std::time::Duration;

use serde_json::{json, Value};

use super::Ctx;
use crate::authn::UserInfo;
use crate::authz::review;
use crate::error::{ApiError, Result};
use crate::http::response::Resp;

/// Whether `(group, resource)` is a review answered by [`create`].
pub fn is_review(group: &str, resource: &str) -> bool {
    matches!(
        (group, resource),
        (
            "authentication.k8s.io",
            "tokenreviews" | "selfsubjectreviews"
        ) | (
            "authorization.k8s.io",
            "subjectaccessreviews"
                | "localsubjectaccessreviews"
                | "selfsubjectaccessreviews"
                | "selfsubjectrulesreviews"
        )
    )
}

/// POST of a review: the request object with its status filled in, 201 as upstream.
pub async fn create(ctx: &mut Ctx) -> Result<Resp> {
    let body = ctx.body_json()?;
    let api = ctx.api.clone();
    let out = match (ctx.group(), ctx.resource()) {
        ("authentication.k8s.io", "tokenreviews") => token_review(ctx, body)?,
        ("authentication.k8s.io", "selfsubjectreviews") => {
            let mut out = body;
            out["status"] = json!({"userInfo": user_json(&ctx.user)});
            out
        }
        ("authorization.k8s.io", "subjectaccessreviews") => {
            review::subject_access_review(&body, &api.authz, &api.catalog)?
        }
        ("authorization.k8s.io", "localsubjectaccessreviews") => {
            review::local_subject_access_review(
                &body,
                &ctx.info.namespace,
                &api.authz,
                &api.catalog,
            )?
        }
        ("authorization.k8s.io", "selfsubjectaccessreviews") => {
            review::self_subject_access_review(&body, &ctx.user, &api.authz, &api.catalog)?
        }
        ("authorization.k8s.io", "selfsubjectrulesreviews") => {
            review::self_subject_rules_review(&body, &ctx.user, &api.authz, &api.catalog)?
        }
        _ => {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ))
        }
    };
    Ok(ctx.respond_object(201, out))
}

/// `status.user` of a TokenReview, `status.userInfo` of a SelfSubjectReview.
fn user_json(user: &UserInfo) -> Value {
    let mut u = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        u["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        u["extra"] = json!(user.extra);
    }
    u
}

fn token_review(ctx: &Ctx, mut body: Value) -> Result<Value> {
    let token = body["spec"]["token"].as_str().unwrap_or("").to_owned();
    if token.is_empty() {
        return Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let audiences: Option<Vec<String>> = body["spec"]["audiences"].as_array().map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    });
    let api = &ctx.api;
    body["status"] = match api
        .authn
        .authenticate_token(&token, audiences.as_deref(), &api.catalog)
    {
        Some((user, auds)) => {
            let user = crate::authn::with_authenticated_group(user);
            json!({"authenticated": true, "user": user_json(&user), "audiences": auds})
        }
        None => json!({"user": {}, "error": "[invalid bearer token, token lookup failed]"}),
    };
    Ok(body)
}

/// POST `serviceaccounts/<name>/token`: a bound service-account token (TokenRequest).
pub async fn token_request(ctx: &mut Ctx) -> Result<Resp> {
    let api = ctx.api.clone();
    let Some(authority) = api.authn.service_accounts().cloned() else {
        return Err(ApiError::not_found(
            "",
            "serviceaccounts/token",
            &ctx.info.name,
        ));
    };
    let body = ctx.body_json()?;
    // The service account (and bound pod) may have been written a moment ago: let the caches
    // the token checks read catch up with the store first.
    api.catch_up(
        "",
        &["serviceaccounts", "pods", "secrets"],
        Duration::from_secs(3),
    )
    .await;
    let outcome = authority.token_request(
        &ctx.info.namespace,
        &ctx.info.name,
        &body,
        &api.catalog,
        std::time::SystemTime::now(),
    )?;
    ctx.warnings.extend(outcome.warnings);
    let mut r = crate::http::response::json(201, &outcome.object);
    crate::http::response::add_warnings(&mut r, &ctx.warnings);
    Ok(r)
}
