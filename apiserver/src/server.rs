//! The running apiserver: storage (embedded store or remote endpoints), the catalog of
//! served resources with their watch caches, and the HTTPS server in front of them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use component_base::{Health, Shutdown};
use serde_json::{json, Value};
use store::client::KvStore;

use crate::allocator::{Allocation, Allocator};
use crate::authn::Authenticator;
use crate::catalog::{Catalog, Entry};
use crate::error::{ApiError, FieldError, Result};
use crate::limits::InflightLimiter;
use crate::metrics::Metrics;
use crate::openapi::Schemas;
use crate::options::Config;
use crate::resources::ResourceInfo;
use crate::storage::cacher::Cacher;
use crate::storage::{compactor, Storage, StorageError};
use crate::table::Column;
use crate::typed::Untyped;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("starting the embedded store")]
    Store(#[source] store::server::Error),
    #[error("connecting to the store")]
    Connect(#[source] store::client::ConnectError),
    #[error("the store: {0}")]
    Storage(#[from] StorageError),
    #[error("serving certificate")]
    Certs(#[source] crate::certs::CertError),
    #[error("tls configuration")]
    Tls(#[source] component_base::Error),
    #[error("authentication configuration")]
    Authn(#[source] crate::authn::AuthnError),
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics")]
    Metrics(#[source] prometheus::Error),
    #[error("encryption provider configuration")]
    Encryption(#[source] crate::storage::transformer::Error),
    #[error("audit configuration")]
    Audit(#[source] crate::audit::Error),
    #[error("admission plugins: {0}")]
    Admission(String),
    #[error("service account key")]
    ServiceAccountKey(#[source] crate::serviceaccount::KeyError),
    #[error("service account token configuration")]
    ServiceAccounts(#[source] crate::serviceaccount::ConfigError),
}

/// kubeadm's issuer, used when --service-account-issuer is not given.
pub const DEFAULT_SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Service-account tokens as the --service-account-* flags say. With no signing key given, a
/// key is generated into --cert-dir (as the serving certificate is), so a one-machine start
/// can issue tokens; with no issuer, kubeadm's default issuer is used.
fn service_account_authority(
    config: &Config,
) -> std::result::Result<Option<Arc<crate::serviceaccount::TokenAuthority>>, Error> {
    use crate::serviceaccount::{
        load_public_keys, SigningKey, TokenAuthority, TokenAuthorityConfig,
    };
    let signing_path = match &config.service_account_signing_key_file {
        Some(p) => p.clone(),
        None => {
            let p =
                crate::certs::ensure_service_account_key(&config.cert_dir).map_err(Error::Certs)?;
            tracing::info!(path = %p.display(), "no --service-account-signing-key-file; signing service account tokens with a generated key");
            p
        }
    };
    let signing_key = SigningKey::from_file(&signing_path).map_err(Error::ServiceAccountKey)?;
    let verification_keys =
        load_public_keys(&config.service_account_key_files).map_err(Error::ServiceAccountKey)?;
    let issuers = if config.service_account_issuers.is_empty() {
        vec![DEFAULT_SERVICE_ACCOUNT_ISSUER.to_owned()]
    } else {
        config.service_account_issuers.clone()
    };
    let mut c = TokenAuthorityConfig::new(issuers);
    c.signing_key = Some(signing_key);
    c.verification_keys = verification_keys;
    c.api_audiences = config.api_audiences.clone();
    c.max_expiration_seconds = config
        .service_account_max_token_expiration
        .map(|d| d.as_secs() as i64);
    c.extend_expiration = config.service_account_extend_token_expiration;
    c.jwks_uri = config.service_account_jwks_uri.clone();
    c.external_address = Some(format!(
        "{}:{}",
        config.advertise_address,
        config.bind_address.port()
    ));
    let authority = TokenAuthority::new(c).map_err(Error::ServiceAccounts)?;
    Ok(Some(Arc::new(authority)))
}

/// Everything a request handler reaches.
pub struct ApiServer {
    pub config: Config,
    pub storage: Storage,
    pub catalog: Catalog,
    pub metrics: Arc<Metrics>,
    pub registry: prometheus::Registry,
    pub authn: Authenticator,
    /// Audit events, when --audit-log-path and --audit-policy-file are set.
    pub audit: Option<Arc<crate::audit::Auditor>>,
    /// --authorization-mode.
    pub authz: crate::authz::chain::AuthorizerChain,
    /// --enable-admission-plugins / --disable-admission-plugins.
    pub admission: crate::admission::Chain,
    pub limiter: InflightLimiter,
    pub schemas: Arc<Schemas>,
    pub allocator: Allocator,
    pub health: Health,
    pub shutdown: Shutdown,
    /// The bound secure port (the flag may say 0).
    pub port: std::sync::OnceLock<u16>,
    pub openapi: std::sync::Mutex<OpenApiCache>,
    /// The defaults exist: until then /readyz fails.
    pub bootstrapped: Arc<std::sync::atomic::AtomicBool>,
}

/// A started server.
pub struct Running {
    pub addr: SocketAddr,
    pub api: Arc<ApiServer>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    store: Option<store::server::Running>,
}

impl Running {
    /// Waits until shutdown has finished serving and the embedded store has stopped.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(s) = self.store {
            s.wait().await;
        }
    }
}

/// Runs until `shutdown` triggers.
pub async fn run(config: Config, shutdown: Shutdown) -> std::result::Result<(), Error> {
    start(config, shutdown).await?.wait().await;
    Ok(())
}

async fn open_store(
    config: &Config,
    shutdown: &Shutdown,
) -> std::result::Result<(Arc<dyn KvStore>, Option<store::server::Running>), Error> {
    if !config.etcd_servers.is_empty() {
        let tls = store::client::ClientTls {
            ca_file: config.etcd_ca_file.clone(),
            cert_file: config
                .etcd_client_cert
                .as_ref()
                .map(|p| p.cert_file.clone()),
            key_file: config.etcd_client_cert.as_ref().map(|p| p.key_file.clone()),
        };
        let any_tls = tls.ca_file.is_some() || tls.cert_file.is_some();
        let kv = store::client::GrpcStore::connect(&config.etcd_servers, any_tls.then_some(&tls))
            .map_err(Error::Connect)?;
        return Ok((Arc::new(kv), None));
    }
    let mut sc = store::server::Config::single(config.data_dir.clone(), 0, 0);
    // In-process only: no client listener; peers are this member alone.
    sc.listen_client_urls.clear();
    sc.advertise_client_urls.clear();
    sc.listen_peer_urls.clear();
    let running = store::server::start(sc, shutdown.clone())
        .await
        .map_err(Error::Store)?;
    tracing::info!(data_dir = %config.data_dir.display(), "embedded a single-member store (no --etcd-servers given)");
    let kv = store::server::EmbeddedStore::new(
        running.server.clone(),
        shutdown.clone(),
        Duration::from_secs(5),
    );
    Ok((Arc::new(kv), Some(running)))
}

/// Opens storage, loads every cache, bootstraps defaults and starts serving.
pub async fn start(config: Config, shutdown: Shutdown) -> std::result::Result<Running, Error> {
    let registry = prometheus::Registry::new();
    let metrics = Arc::new(Metrics::new(&registry).map_err(Error::Metrics)?);
    let _ = component_base::metrics::register_process_collector(&registry);
    let (kv, store) = open_store(&config, &shutdown).await?;
    let encryption = config
        .encryption_provider_config
        .as_deref()
        .map(crate::storage::transformer::EncryptionConfig::load)
        .transpose()
        .map_err(Error::Encryption)?;
    if encryption.is_some() {
        tracing::info!("encrypting data at rest as the encryption provider config says");
    }
    let codec = crate::storage::Codec::new(
        encryption,
        crate::resources::builtin()
            .into_iter()
            .map(|r| (r.resource, r.group)),
    );
    let storage = Storage::new(kv, metrics.clone(), codec);
    let audit = match &config.audit {
        Some(a) => crate::audit::AuditOptions {
            log_path: Some(a.log_path.clone()),
            policy_file: a.policy_file.clone(),
            log_max_size_mb: a.max_size_mb,
            log_max_backup: a.max_backups,
            log_max_age_days: a.max_age_days,
            log_format: "json".into(),
        }
        .build()
        .map_err(Error::Audit)?,
        None => None,
    };
    let service_accounts = service_account_authority(&config)?;
    let mut authn = Authenticator::new(config.token_auth_file.as_deref())
        .map_err(Error::Authn)?
        .with_bootstrap_tokens(config.enable_bootstrap_token_auth)
        .with_anonymous(config.anonymous_auth);
    if let Some(a) = service_accounts {
        authn = authn.with_service_accounts(a);
    }
    let authz = crate::authz::chain::AuthorizerChain::new(config.authorization_modes.clone());
    let admission = crate::admission::Chain::from_flags_with(
        &config.enable_admission_plugins,
        &config.disable_admission_plugins,
        crate::admission::ChainOptions {
            default_not_ready_toleration_seconds: config.default_not_ready_toleration_seconds,
            default_unreachable_toleration_seconds: config.default_unreachable_toleration_seconds,
        },
    )
    .map_err(Error::Admission)?;
    tracing::info!(plugins = ?admission.enabled(), "admission plugins");
    let limiter = InflightLimiter::new(
        config.max_requests_inflight,
        config.max_mutating_requests_inflight,
    )
    .with_metrics((*metrics).clone());
    let schemas = Arc::new(Schemas::builtin());
    let allocator = Allocator::new(
        storage.clone(),
        config.service_cluster_ip_range,
        config.service_node_port_range,
    );
    let health = Health::new();
    let bootstrapped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = bootstrapped.clone();
    health.add_readiness_check("poststarthook/bootstrap-controller", move || {
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            Ok(())
        } else {
            Err("not finished".into())
        }
    });
    let api = Arc::new(ApiServer {
        config,
        storage: storage.clone(),
        catalog: Catalog::default(),
        metrics,
        registry,
        authn,
        audit,
        authz,
        admission,
        limiter,
        schemas,
        allocator,
        health,
        shutdown: shutdown.clone(),
        port: std::sync::OnceLock::new(),
        openapi: Default::default(),
        bootstrapped,
    });
    for info in crate::resources::builtin() {
        let strategy = crate::registry::strategy_for(&info.group, &info.resource);
        let cacher = api.cacher_for(&info).await?;
        api.catalog.add(Entry {
            info: Arc::new(info),
            strategy,
            cacher,
            custom: None,
        });
    }
    let (addr, serve) = crate::http::serve(api.clone()).await?;
    let _ = api.port.set(addr.port());
    crate::bootstrap::ensure_defaults(&api).await;
    api.bootstrapped
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut tasks = vec![serve];
    tasks.push(tokio::spawn(crate::crd_sync::run(api.clone())));
    let compacted = api.clone();
    tasks.push(tokio::spawn(compactor::run(
        storage,
        api.config.etcd_compaction_interval,
        shutdown.clone(),
        move |rev| {
            for c in compacted.catalog.cachers() {
                c.compacted(rev);
            }
        },
    )));
    tasks.push(tokio::spawn(crate::bootstrap::maintain(api.clone())));
    tasks.push(tokio::spawn(report_inflight(api.clone())));
    Ok(Running {
        addr,
        api,
        tasks,
        store,
    })
}

/// apiserver_current_inflight_requests reports each second's peak, as upstream does.
async fn report_inflight(api: Arc<ApiServer>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = api.shutdown.wait() => return,
            _ = tick.tick() => {
                api.limiter.record_watermarks();
            }
        }
    }
}

impl ApiServer {
    /// The port clients reach this server on.
    pub fn secure_port(&self) -> u16 {
        self.port
            .get()
            .copied()
            .unwrap_or_else(|| self.config.bind_address.port())
    }

    /// Waits (up to `deadline` each) until the caches of `group`'s `resources` have seen the
    /// store's current revision, for reads through [`crate::source::ObjectSource`] that must
    /// not miss a write made a moment ago.
    pub async fn catch_up(&self, group: &str, resources: &[&str], deadline: Duration) {
        let Ok(rev) = self.storage.current_revision().await else {
            return;
        };
        for resource in resources {
            if let Some(e) = self.catalog.find_any(group, resource) {
                e.cacher.wait_for(rev, deadline).await;
            }
        }
    }

    /// The watch cache over `info`'s storage prefix, shared with resources stored together.
    pub async fn cacher_for(
        &self,
        info: &ResourceInfo,
    ) -> std::result::Result<Arc<Cacher>, StorageError> {
        if let Some(c) = self.catalog.cacher(&info.storage_prefix) {
            return Ok(c);
        }
        let c = Cacher::start(
            self.storage.clone(),
            &info.resource,
            format!("{}/", info.storage_prefix),
            self.metrics.clone(),
            self.shutdown.clone(),
        )
        .await?;
        self.catalog.add_cacher(&info.storage_prefix, c.clone());
        Ok(c)
    }

    fn node(&self, entry: &Entry) -> Option<crate::openapi::Node> {
        if entry.info.custom {
            return None;
        }
        self.schemas
            .node(&entry.info.group, &entry.info.version, &entry.info.kind)
    }

    /// Paths of fields the resource's schema does not know.
    pub fn unknown_fields(&self, entry: &Entry, obj: &Value) -> Vec<String> {
        if let Some(cr) = &entry.custom {
            let Some(schema) = &cr.schema else {
                return Vec::new();
            };
            let mut copy = obj.clone();
            return crate::openapi::validate::prune(schema, &mut copy);
        }
        match self.node(entry) {
            Some(node) => crate::openapi::validate::unknown_fields(&node, obj),
            None => Vec::new(),
        }
    }

    /// Drops unknown fields: a decoded object only holds what its type has.
    pub fn prune(&self, entry: &Entry, obj: &mut Value) {
        self.prune_reporting(entry, obj);
    }

    /// [`Self::prune`], returning the paths it dropped (what [`Self::unknown_fields`] reports),
    /// so one walk serves both fieldValidation and pruning.
    pub fn prune_reporting(&self, entry: &Entry, obj: &mut Value) -> Vec<String> {
        if let Some(cr) = &entry.custom {
            return match &cr.schema {
                Some(schema) => crate::openapi::validate::prune(schema, obj),
                None => Vec::new(),
            };
        }
        let unknown = self.unknown_fields(entry, obj);
        for path in &unknown {
            remove_path(obj, path);
        }
        unknown
    }

    /// Schema validation of custom resources.
    pub fn validate_custom(&self, entry: &Entry, obj: &Value) -> Vec<FieldError> {
        match entry.custom.as_ref().and_then(|c| c.schema.as_ref()) {
            Some(schema) => crate::openapi::validate::validate(schema, obj, ""),
            None => Vec::new(),
        }
    }

    /// Objects may only be created in a namespace that exists and is not terminating.
    pub async fn check_namespace_open(&self, ns: &str) -> Result<()> {
        if ns.is_empty() {
            return Err(ApiError::bad_request(
                "the server could not find the requested resource: a namespace is required",
            ));
        }
        let key = format!("/registry/namespaces/{ns}");
        let cached = self
            .catalog
            .find("", "v1", "namespaces")
            .and_then(|e| e.cacher.get(&key).0);
        let obj = match cached {
            Some(o) => Some((*o).clone()),
            None => self
                .storage
                .get(&key, "namespaces")
                .await
                .map_err(|e| e.to_api("", "namespaces", ns))?
                .map(|(o, _)| o),
        };
        let Some(obj) = obj else {
            return Err(ApiError::not_found("", "namespaces", ns));
        };
        if obj["metadata"].get("deletionTimestamp").is_some() {
            return Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ))
            .with_details(json!({"name": ns, "kind": "namespaces", "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]})));
        }
        Ok(())
    }

    pub fn update_managed_fields(
        &self,
        entry: &Entry,
        old: Option<&Value>,
        new: &mut Value,
        manager: &str,
        subresource: Option<&str>,
    ) {
        let now = crate::object::now_rfc3339();
        let av = entry.info.api_version();
        match self.node(entry) {
            Some(node) => crate::fieldmanager::update_managed_fields(
                old,
                new,
                manager,
                &av,
                subresource,
                &now,
                Some(&node),
            ),
            None => crate::fieldmanager::update_managed_fields::<Untyped>(
                old,
                new,
                manager,
                &av,
                subresource,
                &now,
                None,
            ),
        }
    }

    /// Server-side apply of `applied` onto `live`.
    pub fn apply(
        &self,
        entry: &Entry,
        live: Option<&Value>,
        applied: &Value,
        manager: &str,
        force: bool,
    ) -> Result<Value> {
        let now = crate::object::now_rfc3339();
        let av = entry.info.api_version();
        let name = applied["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let mut applied = applied.clone();
        self.prune(entry, &mut applied);
        let out = match self.node(entry) {
            Some(node) => {
                crate::fieldmanager::apply(live, &applied, manager, &av, force, &now, Some(&node))
            }
            None => crate::fieldmanager::apply::<Untyped>(
                live, &applied, manager, &av, force, &now, None,
            ),
        };
        out.map_err(|e| e.to_api_error(&entry.info.group, &entry.info.resource, &name))
    }

    /// Strategic merge patch with the resource's patch strategies.
    pub fn strategic_merge(&self, entry: &Entry, cur: &Value, patch: &Value) -> Result<Value> {
        let out = match self.node(entry) {
            Some(node) => crate::patch::strategic_merge_patch(cur, patch, Some(&node)),
            None => crate::patch::strategic_merge_patch::<Untyped>(cur, patch, None),
        };
        out.map_err(|e| ApiError::new(422, "Invalid", e.to_string()))
    }

    /// The stored shape of an object (events.k8s.io events are kept as core events).
    pub fn to_storage(&self, entry: &Entry, obj: Value) -> Value {
        if entry.info.group == "events.k8s.io" {
            return crate::registry::events_v1_to_core(&obj);
        }
        obj
    }

    /// The served shape of a stored object.
    pub fn from_storage(&self, entry: &Entry, obj: Value) -> Value {
        if entry.info.group == "events.k8s.io" {
            return crate::registry::core_to_events_v1(&obj);
        }
        obj
    }

    pub async fn allocate(
        &self,
        entry: &Entry,
        obj: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> Result<Allocation> {
        if entry.info.group.is_empty() && entry.info.resource == "services" {
            let name = crate::object::name(obj).to_string();
            return self.allocator.allocate(&name, obj, old, dry_run).await;
        }
        Ok(Allocation::default())
    }

    pub async fn release(&self, keys: &[String]) {
        self.allocator.release(keys).await;
    }

    /// Frees what a deleted object held.
    pub async fn release_for(&self, entry: &Entry, obj: &Value) {
        if entry.info.group.is_empty() && entry.info.resource == "services" {
            self.allocator.release_service(obj).await;
        }
    }

    pub fn table_columns(&self, entry: &Entry) -> Vec<Column> {
        match &entry.custom {
            Some(cr) => crate::table::custom_columns(&cr.printer_columns),
            None => crate::table::columns(&entry.info),
        }
    }

    /// Columns and the row of one object.
    pub fn table_row(&self, entry: &Entry, obj: &Value) -> (Vec<Column>, Vec<Value>) {
        match &entry.custom {
            Some(cr) => (
                crate::table::custom_columns(&cr.printer_columns),
                crate::table::custom_row(&cr.printer_columns, obj),
            ),
            None => (
                crate::table::columns(&entry.info),
                crate::table::row(&entry.info, obj),
            ),
        }
    }

    /// Refuses an eviction that would break a PodDisruptionBudget with no disruptions left.
    pub async fn check_disruption(&self, ns: &str, pod: &str) -> Result<()> {
        let Some(pods) = self.catalog.find("", "v1", "pods") else {
            return Ok(());
        };
        let Some(pdbs) = self.catalog.find("policy", "v1", "poddisruptionbudgets") else {
            return Ok(());
        };
        let Some(p) = pods.cacher.get(&pods.key(ns, pod)).0 else {
            return Err(ApiError::not_found("", "pods", pod));
        };
        let (budgets, _) = pdbs.cacher.list(&pdbs.scope_prefix(ns), None);
        for (_, pdb) in budgets {
            let Ok(sel) = crate::selector::LabelSelector::from_json(&pdb["spec"]["selector"])
            else {
                continue;
            };
            let matches = sel.matches(|k| p["metadata"]["labels"][k].as_str());
            if matches && pdb["status"]["disruptionsAllowed"].as_i64().unwrap_or(0) <= 0 {
                return Err(ApiError::too_many_requests(10).with_message(
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                ));
            }
        }
        Ok(())
    }
}

/// Removes the field at a path like `spec.template.spec.containers[0].foo`.
fn remove_path(obj: &mut Value, path: &str) {
    let mut parts: Vec<(String, Option<usize>)> = Vec::new();
    for seg in path.split('.') {
        match seg.split_once('[') {
            Some((name, rest)) => {
                parts.push((name.to_string(), None));
                for idx in rest.split('[') {
                    let i = idx.trim_end_matches(']').parse().ok();
                    parts.push((String::new(), i));
                }
            }
            None => parts.push((seg.to_string(), None)),
        }
    }
    let Some((last, head)) = parts.split_last() else {
        return;
    };
    let mut cur = obj;
    for (name, idx) in head {
        let next = match idx {
            Some(i) => cur.get_mut(*i),
            None => cur.get_mut(name.as_str()),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if last.1.is_none() {
        if let Some(m) = cur.as_object_mut() {
            m.remove(&last.0);
        }
    }
}

impl ApiServer {
    fn custom_schemas(&self, group: &str, version: &str) -> Vec<(String, Value)> {
        self.catalog
            .all()
            .into_iter()
            .filter(|e| e.info.custom && e.info.group == group && e.info.version == version)
            .filter_map(|e| {
                let cr = e.custom.as_ref()?;
                Some((
                    e.info.kind.clone(),
                    cr.schema.clone().unwrap_or(
                        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
                    ),
                ))
            })
            .collect()
    }

    /// The cached documents, dropped when the served resources changed.
    fn openapi_cache(&self) -> std::sync::MutexGuard<'_, OpenApiCache> {
        let mut cache = self.openapi.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.catalog.generation();
        if cache.generation != generation {
            *cache = OpenApiCache {
                generation,
                ..OpenApiCache::default()
            };
        }
        cache
    }

    /// `/openapi/v3`: one entry per served group-version, with the hash of its document.
    pub fn openapi_v3_root(&self) -> Bytes {
        let generation = {
            let cache = self.openapi_cache();
            if let Some(root) = cache.root.clone() {
                return root;
            }
            cache.generation
        };
        let gvs: Vec<(String, String)> = self
            .catalog
            .group_versions()
            .into_iter()
            .flat_map(|(g, vs)| vs.into_iter().map(move |v| (g.clone(), v)))
            .collect();
        let mut hashed = Vec::with_capacity(gvs.len());
        for (g, v) in &gvs {
            let path = crate::openapi::group_version_path(g, v);
            let (_, hash) = self.openapi_v3_document(&path, g, v);
            hashed.push((path, hash));
        }
        let root = to_bytes(&crate::openapi::v3_root_with_hashes(&hashed));
        let mut cache = self.openapi_cache();
        if cache.generation == generation {
            cache.root = Some(root.clone());
        }
        root
    }

    /// One group-version's document and its hash, built once per catalog generation.
    fn openapi_v3_document(&self, path: &str, group: &str, version: &str) -> (Bytes, String) {
        let generation = {
            let cache = self.openapi_cache();
            if let Some(doc) = cache.v3.get(path) {
                return doc.clone();
            }
            cache.generation
        };
        let resources: Vec<ResourceInfo> = self
            .catalog
            .all()
            .into_iter()
            .filter(|e| e.info.group == group && e.info.version == version)
            .map(|e| (*e.info).clone())
            .collect();
        let doc = self.schemas.v3_group_version(
            group,
            version,
            &resources,
            &self.custom_schemas(group, version),
        );
        let entry = (to_bytes(&doc), crate::openapi::document_hash(&doc));
        let mut cache = self.openapi_cache();
        // Built from a catalog that changed meanwhile: serve it, do not keep it.
        if cache.generation == generation {
            cache.v3.insert(path.to_string(), entry.clone());
        }
        entry
    }

    /// `/openapi/v3/api/v1`, `/openapi/v3/apis/apps/v1`.
    pub fn openapi_v3(&self, gv: &str) -> Option<Bytes> {
        let parts: Vec<&str> = gv.split('/').collect();
        let (group, version) = match parts.as_slice() {
            ["api", v] => ("", *v),
            ["apis", g, v] => (*g, *v),
            _ => return None,
        };
        let served = self
            .catalog
            .group_versions()
            .into_iter()
            .any(|(g, vs)| g == group && vs.iter().any(|v| v == version));
        served.then(|| self.openapi_v3_document(gv, group, version).0)
    }

    /// `/openapi/v2`: everything in one Swagger 2.0 document.
    pub fn openapi_v2(&self) -> Bytes {
        let generation = {
            let cache = self.openapi_cache();
            if let Some(doc) = cache.v2.clone() {
                return doc;
            }
            cache.generation
        };
        let resources: Vec<ResourceInfo> = self
            .catalog
            .all()
            .into_iter()
            .map(|e| (*e.info).clone())
            .collect();
        let doc = to_bytes(&self.schemas.v2(&resources));
        let mut cache = self.openapi_cache();
        if cache.generation == generation {
            cache.v2 = Some(doc.clone());
        }
        doc
    }
}

/// Serialized OpenAPI documents of one catalog generation (core/v1 alone takes ~20 ms to build).
#[derive(Default)]
pub struct OpenApiCache {
    generation: u64,
    root: Option<Bytes>,
    v2: Option<Bytes>,
    /// Path (`apis/apps/v1`) -> document and its hash.
    v3: HashMap<String, (Bytes, String)>,
}

fn to_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).expect("JSON values always serialize"))
}
