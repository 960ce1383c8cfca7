//! The CertificateSigningRequest controllers: csrapproving auto-approves kubelet client
//! certificates whose requester may create them (a SubjectAccessReview on
//! `certificatesigningrequests/nodeclient` or `/selfnodeclient`), csrsigning issues certificates
//! for approved requests of the built-in signers with the cluster CA, and csrcleaner deletes
//! requests that are finished or stale.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::ResourceExt;
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use x509_parser::prelude::FromDer;

use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;

/// Signer of client certificates for the apiserver.
pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
/// Signer of kubelet client certificates.
pub const KUBE_APISERVER_CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Signer of kubelet serving certificates.
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
/// How far back issued certificates are valid, for clock skew (upstream's backdate).
const BACKDATE: Duration = Duration::from_secs(300);
/// Shortest validity a request may ask for.
const MIN_EXPIRATION_SECONDS: i32 = 600;

// ---------------------------------------------------------------------------------------------
// Requests

/// What the controllers read out of a PEM certificate request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Request {
    /// Subject common name.
    pub common_name: String,
    /// Subject organizations.
    pub organizations: Vec<String>,
    /// DNS names requested.
    pub dns_names: Vec<String>,
    /// IP addresses requested.
    pub ip_addresses: Vec<String>,
    /// Emails and URIs requested.
    pub other_sans: usize,
    /// Whether an attribute type (e.g. O) appears more than once in the subject.
    pub repeated_attributes: bool,
}

/// Parses the PEM-encoded PKCS#10 request of a CSR.
pub fn parse_request(pem: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "request is not PEM text".to_owned())?;
    let der = pem_block(text, "CERTIFICATE REQUEST")
        .ok_or_else(|| "PEM block type must be CERTIFICATE REQUEST".to_owned())?;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| format!("failed to parse certificate request: {e}"))?;
    let subject = &csr.certification_request_info.subject;
    let mut req = Request {
        common_name: subject
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_owned(),
        organizations: subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok().map(str::to_owned))
            .collect(),
        ..Request::default()
    };
    let mut seen = BTreeSet::new();
    for attr in subject.iter_attributes() {
        if !seen.insert(attr.attr_type().to_id_string()) {
            req.repeated_attributes = true;
        }
    }
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(d) => {
                        req.dns_names.push((*d).to_owned())
                    }
                    x509_parser::extensions::GeneralName::IPAddress(ip) => {
                        req.ip_addresses.push(format!("{ip:?}"))
                    }
                    _ => req.other_sans += 1,
                }
            }
        }
    }
    Ok(req)
}

/// The DER of the first PEM block of type `label`.
fn pem_block(text: &str, label: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let body: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

fn usages(csr: &CertificateSigningRequest) -> BTreeSet<&str> {
    csr.spec
        .usages
        .iter()
        .flatten()
        .map(String::as_str)
        .collect()
}

/// Whether `req` with `usages` is a kubelet client certificate (upstream's isNodeClientCert).
pub fn is_node_client_cert(req: &Request, usages: &BTreeSet<&str>) -> bool {
    let exact: BTreeSet<&str> = ["digital signature", "client auth"].into();
    let legacy: BTreeSet<&str> = ["digital signature", "key encipherment", "client auth"].into();
    req.organizations == ["system:nodes"]
        && req.dns_names.is_empty()
        && req.ip_addresses.is_empty()
        && req.other_sans == 0
        && req.common_name.starts_with("system:node:")
        && (usages == &exact || usages == &legacy)
}

/// Why a signer refuses `req`, or `None` when it may be signed.
pub fn signer_rejects(signer: &str, req: &Request, usages: &BTreeSet<&str>) -> Option<String> {
    let allowed: BTreeSet<&str> = match signer {
        KUBE_APISERVER_CLIENT | KUBE_APISERVER_CLIENT_KUBELET => {
            ["digital signature", "key encipherment", "client auth"].into()
        }
        KUBELET_SERVING => ["digital signature", "key encipherment", "server auth"].into(),
        _ => return Some(format!("unsupported signer {signer:?}")),
    };
    if let Some(bad) = usages.iter().find(|u| !allowed.contains(*u)) {
        return Some(format!(
            "usage {bad:?} is not allowed for signer {signer:?}"
        ));
    }
    match signer {
        KUBE_APISERVER_CLIENT if !usages.contains("client auth") => {
            Some("usages must include \"client auth\"".to_owned())
        }
        KUBE_APISERVER_CLIENT_KUBELET if !is_node_client_cert(req, usages) => Some(
            "subject must be O=system:nodes, CN=system:node:<name> with no SANs and client usages"
                .to_owned(),
        ),
        KUBELET_SERVING => {
            if req.organizations != ["system:nodes"] {
                Some("subject organization must be [\"system:nodes\"]".to_owned())
            } else if !req.common_name.starts_with("system:node:") {
                Some("subject common name must begin with \"system:node:\"".to_owned())
            } else if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
                Some("DNS or IP subjectAltName is required".to_owned())
            } else if req.other_sans > 0 {
                Some("email and URI subjectAltNames are not allowed".to_owned())
            } else if !usages.contains("server auth") {
                Some("usages must include \"server auth\"".to_owned())
            } else {
                None
            }
        }
        _ => None,
    }
}

fn has_condition(csr: &CertificateSigningRequest, type_: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

fn has_certificate(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
}

fn true_condition(type_: &str, reason: &str, message: &str) -> CertificateSigningRequestCondition {
    let now = Time(Utc::now());
    CertificateSigningRequestCondition {
        type_: type_.to_owned(),
        status: "True".to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

fn with_condition(
    csr: &CertificateSigningRequest,
    condition: CertificateSigningRequestCondition,
) -> CertificateSigningRequest {
    let mut updated = csr.clone();
    updated
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new)
        .push(condition);
    updated
}

fn conflict_or<T>(result: Result<T, kube::Error>) -> Result<Action, Error> {
    match result {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if is_status(&e, 409) || is_status(&e, 404) => Ok(
            crate::controllers::requeue_after(Duration::from_millis(500)),
        ),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// csrapproving

struct ApproverCtx {
    client: kube::Client,
}

/// Builds the csrapproving controller.
pub fn start_approving(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let csrs = ctx.informers.get::<CertificateSigningRequest>();
    let state = Arc::new(ApproverCtx {
        client: ctx.client.clone(),
    });
    let controller = Controller::for_shared_stream(csrs.subscribe(), csrs.store())
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(5));
    Ok(drain("csrapproving", controller.run(approve, error_policy, state)).boxed())
}

async fn allowed(
    client: &kube::Client,
    csr: &CertificateSigningRequest,
    subresource: &str,
) -> Result<bool, Error> {
    let sar = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: csr.spec.username.clone(),
            groups: csr.spec.groups.clone(),
            uid: csr.spec.uid.clone(),
            extra: csr.spec.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".to_owned()),
                resource: Some("certificatesigningrequests".to_owned()),
                verb: Some("create".to_owned()),
                subresource: Some(subresource.to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let review = api.create(&PostParams::default(), &sar).await?;
    Ok(review.status.is_some_and(|s| s.allowed))
}

async fn approve(
    csr: Arc<CertificateSigningRequest>,
    ctx: Arc<ApproverCtx>,
) -> Result<Action, Error> {
    if csr.spec.signer_name != KUBE_APISERVER_CLIENT_KUBELET
        || has_condition(&csr, "Approved")
        || has_condition(&csr, "Denied")
        || has_certificate(&csr)
    {
        return Ok(Action::await_change());
    }
    let Ok(req) = parse_request(&csr.spec.request.0) else {
        return Ok(Action::await_change());
    };
    if !is_node_client_cert(&req, &usages(&csr)) {
        return Ok(Action::await_change());
    }
    let mut recognizers = Vec::new();
    if csr.spec.username.as_deref() == Some(req.common_name.as_str()) {
        recognizers.push("selfnodeclient");
    }
    recognizers.push("nodeclient");
    for subresource in recognizers {
        if !allowed(&ctx.client, &csr, subresource).await? {
            continue;
        }
        let updated = with_condition(
            &csr,
            true_condition(
                "Approved",
                "AutoApproved",
                "Auto approving kubelet client certificate after SubjectAccessReview.",
            ),
        );
        let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
        let result = api
            .replace_subresource(
                "approval",
                &csr.name_any(),
                &PostParams::default(),
                serde_json::to_vec(&updated)?,
            )
            .await;
        if result.is_ok() {
            tracing::info!(csr = %csr.name_any(), "auto-approved kubelet client certificate");
        }
        return conflict_or(result);
    }
    Ok(Action::await_change())
}

// ---------------------------------------------------------------------------------------------
// csrsigning

struct SignerCtx {
    client: kube::Client,
    ca: (std::path::PathBuf, std::path::PathBuf),
    duration: Duration,
}

/// Builds the csrsigning controller; without `--cluster-signing-cert-file` and
/// `--cluster-signing-key-file` it has no CA and stays idle.
pub fn start_signing(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let Some(ca) = ctx.config.cluster_signing.clone() else {
        tracing::warn!(
            "no --cluster-signing-cert-file/--cluster-signing-key-file; csrsigning is idle"
        );
        return Ok(futures::future::ready(()).boxed());
    };
    // Fail at start on an unusable CA rather than on the first request.
    load_issuer(&ca).map_err(|e| crate::Error::Read {
        path: ca.0.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    let csrs = ctx.informers.get::<CertificateSigningRequest>();
    let state = Arc::new(SignerCtx {
        client: ctx.client.clone(),
        ca,
        duration: ctx.config.cluster_signing_duration,
    });
    let controller = Controller::for_shared_stream(csrs.subscribe(), csrs.store())
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(5));
    Ok(drain("csrsigning", controller.run(sign, error_policy, state)).boxed())
}

/// The CA as an rcgen issuer, and the CA certificate's notAfter.
fn load_issuer(
    (cert, key): &(std::path::PathBuf, std::path::PathBuf),
) -> Result<(Issuer<'static, KeyPair>, time::OffsetDateTime), String> {
    let cert_pem = std::fs::read_to_string(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    let key_pem = std::fs::read_to_string(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let key = load_key(&key_pem)?;
    let der = pem_block(&cert_pem, "CERTIFICATE").ok_or("no CERTIFICATE PEM block")?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| format!("failed to parse CA certificate: {e}"))?;
    let not_after = parsed.validity().not_after.to_datetime();
    let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| e.to_string())?;
    Ok((issuer, not_after))
}

/// A private key from PEM: PKCS#8 as is, PKCS#1 RSA ("RSA PRIVATE KEY", as kubeadm writes)
/// wrapped into PKCS#8.
fn load_key(pem: &str) -> Result<KeyPair, String> {
    if let Some(pkcs1) = pem_block(pem, "RSA PRIVATE KEY") {
        let der = pkcs1_to_pkcs8(&pkcs1);
        return KeyPair::try_from(der.as_slice()).map_err(|e| e.to_string());
    }
    KeyPair::from_pem(pem).map_err(|e| format!("unsupported private key: {e}"))
}

fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes: Vec<u8> = len
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

fn der_tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(body.len()));
    out.extend_from_slice(body);
    out
}

/// PrivateKeyInfo { version 0, rsaEncryption, OCTET STRING pkcs1 }.
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    const RSA_ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(RSA_ALGORITHM);
    body.extend(der_tlv(0x04, pkcs1));
    der_tlv(0x30, &body)
}

fn key_usage(u: &str) -> Option<KeyUsagePurpose> {
    Some(match u {
        "digital signature" => KeyUsagePurpose::DigitalSignature,
        "content commitment" => KeyUsagePurpose::ContentCommitment,
        "key encipherment" => KeyUsagePurpose::KeyEncipherment,
        "key agreement" => KeyUsagePurpose::KeyAgreement,
        "data encipherment" => KeyUsagePurpose::DataEncipherment,
        "cert sign" => KeyUsagePurpose::KeyCertSign,
        "crl sign" => KeyUsagePurpose::CrlSign,
        "encipher only" => KeyUsagePurpose::EncipherOnly,
        "decipher only" => KeyUsagePurpose::DecipherOnly,
        _ => return None,
    })
}

fn extended_key_usage(u: &str) -> Option<ExtendedKeyUsagePurpose> {
    Some(match u {
        "any" => ExtendedKeyUsagePurpose::Any,
        "server auth" => ExtendedKeyUsagePurpose::ServerAuth,
        "client auth" => ExtendedKeyUsagePurpose::ClientAuth,
        "code signing" => ExtendedKeyUsagePurpose::CodeSigning,
        "email protection" => ExtendedKeyUsagePurpose::EmailProtection,
        "timestamping" => ExtendedKeyUsagePurpose::TimeStamping,
        "ocsp signing" => ExtendedKeyUsagePurpose::OcspSigning,
        _ => return None,
    })
}

/// How long an issued certificate lives: the signing duration, shortened by the request's
/// `expirationSeconds` (at least ten minutes).
pub fn validity(duration: Duration, expiration_seconds: Option<i32>) -> Duration {
    match expiration_seconds {
        Some(s) => duration.min(Duration::from_secs(s.max(MIN_EXPIRATION_SECONDS) as u64)),
        None => duration,
    }
}

/// Signs the PEM request `request` for `usages`, valid from `now - 5m` to
/// `min(now + ttl, ca_not_after)`.
fn issue(
    request: &[u8],
    usages: &BTreeSet<&str>,
    ttl: Duration,
    issuer: &Issuer<'static, KeyPair>,
    ca_not_after: time::OffsetDateTime,
) -> Result<String, String> {
    let text = std::str::from_utf8(request).map_err(|_| "request is not PEM text")?;
    let parsed = CertificateSigningRequestParams::from_pem(text).map_err(|e| e.to_string())?;
    let mut params = CertificateParams::default();
    params.distinguished_name = parsed.params.distinguished_name.clone();
    params.subject_alt_names = parsed.params.subject_alt_names.clone();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = usages.iter().filter_map(|u| key_usage(u)).collect();
    params.extended_key_usages = usages
        .iter()
        .filter_map(|u| extended_key_usage(u))
        .collect();
    params.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = (now + ttl).min(ca_not_after);
    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
        .map_err(|_| "no randomness for a serial number")?;
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let signed = CertificateSigningRequestParams {
        params,
        public_key: parsed.public_key,
    }
    .signed_by(issuer)
    .map_err(|e| e.to_string())?;
    Ok(signed.pem())
}

async fn sign(csr: Arc<CertificateSigningRequest>, ctx: Arc<SignerCtx>) -> Result<Action, Error> {
    let signer = csr.spec.signer_name.as_str();
    if ![
        KUBE_APISERVER_CLIENT,
        KUBE_APISERVER_CLIENT_KUBELET,
        KUBELET_SERVING,
    ]
    .contains(&signer)
        || !has_condition(&csr, "Approved")
        || has_condition(&csr, "Denied")
        || has_condition(&csr, "Failed")
        || has_certificate(&csr)
    {
        return Ok(Action::await_change());
    }
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    let usages = usages(&csr);
    let rejection = match parse_request(&csr.spec.request.0) {
        Ok(req) => signer_rejects(signer, &req, &usages),
        Err(e) => Some(e),
    };
    // rcgen keeps one value per attribute type in a subject, so signing would silently drop
    // all but one group: refuse instead.
    let rejection = rejection.or_else(|| {
        parse_request(&csr.spec.request.0)
            .ok()
            .filter(|r| r.repeated_attributes)
            .map(|_| {
                "subjects with a repeated attribute (e.g. several organizations) are not supported \
                 by this signer yet"
                    .to_owned()
            })
    });
    if let Some(message) = rejection {
        let updated = with_condition(
            &csr,
            true_condition("Failed", "SignerValidationFailure", &message),
        );
        let body = serde_json::to_vec(&updated)?;
        return conflict_or(
            api.replace_status(&csr.name_any(), &PostParams::default(), body)
                .await,
        );
    }
    let (issuer, ca_not_after) = load_issuer(&ctx.ca).map_err(Error::Other)?;
    let ttl = validity(ctx.duration, csr.spec.expiration_seconds);
    let pem = match issue(&csr.spec.request.0, &usages, ttl, &issuer, ca_not_after) {
        Ok(pem) => pem,
        Err(message) => {
            let updated = with_condition(
                &csr,
                true_condition("Failed", "SignerValidationFailure", &message),
            );
            let body = serde_json::to_vec(&updated)?;
            return conflict_or(
                api.replace_status(&csr.name_any(), &PostParams::default(), body)
                    .await,
            );
        }
    };
    let mut updated = (*csr).clone();
    updated
        .status
        .get_or_insert_with(Default::default)
        .certificate = Some(ByteString(pem.into_bytes()));
    let result = api
        .replace_status(
            &csr.name_any(),
            &PostParams::default(),
            serde_json::to_vec(&updated)?,
        )
        .await;
    if result.is_ok() {
        tracing::info!(csr = %csr.name_any(), signer, "issued certificate");
    }
    conflict_or(result)
}

// ---------------------------------------------------------------------------------------------
// csrcleaner

/// Finished (approved, denied or failed) requests are kept this long.
const FINISHED_TTL: Duration = Duration::from_secs(3600);
/// Pending requests are kept this long.
const PENDING_TTL: Duration = Duration::from_secs(24 * 3600);

struct CleanerCtx {
    client: kube::Client,
}

/// Builds the csrcleaner controller.
pub fn start_cleaner(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let csrs = ctx.informers.get::<CertificateSigningRequest>();
    let state = Arc::new(CleanerCtx {
        client: ctx.client.clone(),
    });
    let controller = Controller::for_shared_stream(csrs.subscribe(), csrs.store())
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(1));
    Ok(drain("csrcleaner", controller.run(clean, error_policy, state)).boxed())
}

/// When a request should be deleted: an hour after it finished (issued, denied or failed), a
/// day after creation while pending, or when its issued certificate expired.
pub fn delete_at(csr: &CertificateSigningRequest) -> Option<DateTime<Utc>> {
    let hours = |d: Duration| {
        k8s_openapi::chrono::Duration::from_std(d).expect("an hour or a day fits chrono")
    };
    let conditions = csr.status.as_ref().and_then(|s| s.conditions.clone());
    let finished = conditions
        .iter()
        .flatten()
        .filter(|c| ["Approved", "Denied", "Failed"].contains(&c.type_.as_str()))
        .filter_map(|c| {
            c.last_update_time
                .as_ref()
                .or(c.last_transition_time.as_ref())
        })
        .map(|t| t.0)
        .max();
    let mut at = match finished {
        Some(t) => t + hours(FINISHED_TTL),
        None => csr.metadata.creation_timestamp.as_ref()?.0 + hours(PENDING_TTL),
    };
    if let Some(cert) = csr.status.as_ref().and_then(|s| s.certificate.as_ref()) {
        if let Some(expiry) = certificate_not_after(&cert.0) {
            at = at.min(expiry);
        }
    }
    Some(at)
}

fn certificate_not_after(pem: &[u8]) -> Option<DateTime<Utc>> {
    let der = pem_block(std::str::from_utf8(pem).ok()?, "CERTIFICATE")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
}

async fn clean(csr: Arc<CertificateSigningRequest>, ctx: Arc<CleanerCtx>) -> Result<Action, Error> {
    let Some(at) = delete_at(&csr) else {
        return Ok(Action::await_change());
    };
    let now = Utc::now();
    if at > now {
        let wait = (at - now).to_std().unwrap_or_default();
        return Ok(crate::controllers::requeue_after(
            wait.min(Duration::from_secs(3600)),
        ));
    }
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    match api.delete(&csr.name_any(), &DeleteParams::default()).await {
        Ok(_) => {
            tracing::info!(csr = %csr.name_any(), "cleaned up certificate signing request");
            Ok(Action::await_change())
        }
        Err(e) if is_status(&e, 404) => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestSpec, CertificateSigningRequestStatus,
    };
    use rcgen::DnType;

    fn request(cn: &str, orgs: &[&str], sans: Vec<String>) -> (String, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        let csr = params.serialize_request(&key).expect("csr");
        (csr.pem().expect("pem"), key)
    }

    fn set(items: &[&'static str]) -> BTreeSet<&'static str> {
        items.iter().copied().collect()
    }

    #[test]
    fn requests_parse_and_node_client_certs_are_recognized() {
        let (pem, _) = request("system:node:n1", &["system:nodes"], vec![]);
        let req = parse_request(pem.as_bytes()).expect("parses");
        assert_eq!(req.common_name, "system:node:n1");
        assert_eq!(req.organizations, ["system:nodes"]);
        let client = set(&["digital signature", "client auth"]);
        assert!(is_node_client_cert(&req, &client));
        assert!(is_node_client_cert(
            &req,
            &set(&["digital signature", "key encipherment", "client auth"])
        ));
        assert!(!is_node_client_cert(
            &req,
            &set(&["client auth", "server auth"])
        ));
        assert!(!req.repeated_attributes);
        let (pem, _) = request("alice", &["system:nodes"], vec![]);
        let alice = parse_request(pem.as_bytes()).expect("parses");
        assert!(!is_node_client_cert(&alice, &client));
        assert!(parse_request(b"not a request").is_err());
    }

    #[test]
    fn signers_validate_subjects_and_usages() {
        let (pem, _) = request(
            "system:node:n1",
            &["system:nodes"],
            vec!["n1.example".into()],
        );
        let serving = parse_request(pem.as_bytes()).expect("parses");
        let (pem, _) = request("bob", &["devs"], vec![]);
        let bob = parse_request(pem.as_bytes()).expect("parses");
        let cases = [
            (
                "client ok",
                KUBE_APISERVER_CLIENT,
                &bob,
                set(&["digital signature", "client auth"]),
                true,
            ),
            (
                "client without client auth",
                KUBE_APISERVER_CLIENT,
                &bob,
                set(&["digital signature"]),
                false,
            ),
            (
                "client with server auth",
                KUBE_APISERVER_CLIENT,
                &bob,
                set(&["client auth", "server auth"]),
                false,
            ),
            (
                "serving ok",
                KUBELET_SERVING,
                &serving,
                set(&["digital signature", "server auth"]),
                true,
            ),
            (
                "serving for a user",
                KUBELET_SERVING,
                &bob,
                set(&["server auth"]),
                false,
            ),
            (
                "kubelet client needs a node",
                KUBE_APISERVER_CLIENT_KUBELET,
                &bob,
                set(&["digital signature", "client auth"]),
                false,
            ),
            (
                "legacy-unknown is not ours",
                "kubernetes.io/legacy-unknown",
                &bob,
                set(&["client auth"]),
                false,
            ),
        ];
        for (name, signer, req, usages, ok) in cases {
            assert_eq!(signer_rejects(signer, req, &usages).is_none(), ok, "{name}");
        }
    }

    #[test]
    fn issued_certificates_carry_subject_usages_and_capped_validity() {
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::new()).expect("params");
        ca.distinguished_name.push(DnType::CommonName, "test-ca");
        ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_not_after = ca.not_after;
        let issuer = Issuer::new(ca, ca_key);
        let (pem, _) = request("bob", &["devs"], vec![]);
        let ttl = validity(Duration::from_secs(8760 * 3600), Some(3600));
        assert_eq!(ttl, Duration::from_secs(3600));
        assert_eq!(
            validity(Duration::from_secs(7200), Some(60)),
            Duration::from_secs(600)
        );
        let cert = issue(
            pem.as_bytes(),
            &set(&["digital signature", "client auth"]),
            ttl,
            &issuer,
            ca_not_after,
        )
        .expect("signed");
        let der = pem_block(&cert, "CERTIFICATE").expect("pem");
        let (_, x509) = x509_parser::parse_x509_certificate(&der).expect("x509");
        let cn = x509.subject().iter_common_name().next().expect("cn");
        assert_eq!(cn.as_str().expect("utf8"), "bob");
        assert_eq!(
            x509.issuer()
                .iter_common_name()
                .next()
                .expect("cn")
                .as_str()
                .expect("utf8"),
            "test-ca"
        );
        let lifetime =
            x509.validity().not_after.timestamp() - x509.validity().not_before.timestamp();
        assert_eq!(lifetime, 3600 + 300);
        let eku = x509.extended_key_usage().expect("ok").expect("eku");
        assert!(eku.value.client_auth && !eku.value.server_auth);
    }

    #[test]
    fn pkcs1_rsa_keys_are_wrapped_into_pkcs8() {
        // A PKCS#1 body wraps into a PrivateKeyInfo with the rsaEncryption algorithm.
        let wrapped = pkcs1_to_pkcs8(&[0x30, 0x03, 0x02, 0x01, 0x00]);
        assert_eq!(wrapped[0], 0x30);
        assert_eq!(&wrapped[2..5], &[0x02, 0x01, 0x00]);
        assert_eq!(wrapped[wrapped.len() - 7], 0x04);
        assert_eq!(der_len(200), vec![0x81, 200]);
        assert_eq!(der_len(0x1234), vec![0x82, 0x12, 0x34]);
    }

    #[test]
    fn cleaner_deadlines_follow_state() {
        let created = Utc::now() - k8s_openapi::chrono::Duration::hours(2);
        let mut csr = CertificateSigningRequest {
            metadata: kube::api::ObjectMeta {
                creation_timestamp: Some(Time(created)),
                ..Default::default()
            },
            spec: CertificateSigningRequestSpec::default(),
            status: None,
        };
        assert_eq!(
            delete_at(&csr),
            Some(created + k8s_openapi::chrono::Duration::hours(24))
        );
        let approved = true_condition("Approved", "AutoApproved", "");
        let at = approved.last_update_time.clone().expect("time").0;
        csr.status = Some(CertificateSigningRequestStatus {
            conditions: Some(vec![approved]),
            certificate: None,
        });
        assert_eq!(
            delete_at(&csr),
            Some(at + k8s_openapi::chrono::Duration::hours(1))
        );
    }
}
