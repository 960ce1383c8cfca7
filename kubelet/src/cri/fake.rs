//! An in-memory CRI v1 runtime (RuntimeService + ImageService) served over a unix socket, for
//! hollow nodes: kubemark's idea of a kubelet that does all its API work for real while its
//! "containers" are only records. Sandboxes get an address from the node's range, containers
//! run until they are stopped, every image is pullable and exec'd commands succeed.
//!
//! This is a fake on purpose (the point is thousand-node scale runs on one VM); every real
//! test of the kubelet runs on containerd.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use super::api;
use api::image_service_server::{ImageService, ImageServiceServer};
use api::runtime_service_server::{RuntimeService, RuntimeServiceServer};

pub const RUNTIME_NAME: &str = "fake";

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

struct Sandbox {
    metadata: Option<api::PodSandboxMetadata>,
    state: api::PodSandboxState,
    created_at: i64,
    ip: String,
    labels: HashMap<String, String>,
    annotations: HashMap<String, String>,
}

struct Container {
    sandbox_id: String,
    metadata: Option<api::ContainerMetadata>,
    image: Option<api::ImageSpec>,
    state: api::ContainerState,
    created_at: i64,
    started_at: i64,
    finished_at: i64,
    labels: HashMap<String, String>,
    annotations: HashMap<String, String>,
    log_path: String,
}

#[derive(Default)]
struct State {
    next_id: u64,
    next_ip: u32,
    sandboxes: BTreeMap<String, Sandbox>,
    containers: BTreeMap<String, Container>,
    images: BTreeMap<String, api::Image>,
}

impl State {
    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("{:064x}", self.next_id)
    }
}

/// One node's runtime. Sandbox addresses come from `first_ip` upwards (a /24 is plenty for
/// 110 pods; addresses are not reused).
pub struct FakeRuntime {
    base: u32,
    state: Mutex<State>,
    /// ContainerStatus and PodSandboxStatus calls answered (what a relist should spare).
    status_calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl FakeRuntime {
    pub fn new(first_ip: Ipv4Addr) -> Self {
        Self {
            base: u32::from(first_ip),
            state: Mutex::new(State::default()),
            status_calls: Default::default(),
        }
    }

    /// A counter of the ContainerStatus and PodSandboxStatus calls this runtime answers.
    pub fn status_calls(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.status_calls.clone()
    }

    fn count_status_call(&self) {
        self.status_calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-written in a way that
        // matters to a fake; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves this runtime on `socket` (removed first if it exists) until `shutdown` resolves.
    pub async fn serve(
        self,
        socket: &Path,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        let runtime = std::sync::Arc::new(self);
        let router = tonic::transport::Server::builder()
            .add_service(RuntimeServiceServer::from_arc(runtime.clone()))
            .add_service(ImageServiceServer::from_arc(runtime));
        Ok(tokio::spawn(async move {
            if let Err(e) = router
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
                .await
            {
                tracing::warn!(error = %e, "fake CRI server stopped");
            }
        }))
    }
}

fn labels_match(want: &HashMap<String, String>, have: &HashMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

fn not_found(what: &str, id: &str) -> Status {
    Status::not_found(format!("{what} {id:?} not found"))
}

fn image_record(reference: &str) -> api::Image {
    api::Image {
        id: format!("sha256:{:064x}", fxhash(reference)),
        repo_tags: vec![reference.to_string()],
        size: 1 << 20,
        spec: Some(api::ImageSpec {
            image: reference.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A stable, dependency-free hash for fake image ids.
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

impl FakeRuntime {
    fn container_status(&self, id: &str, c: &Container) -> api::ContainerStatus {
        let image = c
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let exited = c.state == api::ContainerState::ContainerExited;
        api::ContainerStatus {
            id: id.to_string(),
            metadata: c.metadata.clone(),
            state: c.state as i32,
            created_at: c.created_at,
            started_at: c.started_at,
            finished_at: c.finished_at,
            exit_code: 0,
            image: c.image.clone(),
            image_ref: image_record(&image).id,
            reason: if exited {
                "Completed".into()
            } else {
                String::new()
            },
            labels: c.labels.clone(),
            annotations: c.annotations.clone(),
            log_path: c.log_path.clone(),
            ..Default::default()
        }
    }

    fn stop_sandbox_containers(state: &mut State, sandbox_id: &str) {
        let now = now_ns();
        for c in state.containers.values_mut() {
            if c.sandbox_id == sandbox_id && c.state == api::ContainerState::ContainerRunning {
                c.state = api::ContainerState::ContainerExited;
                c.finished_at = now;
            }
        }
    }
}

#[tonic::async_trait]
impl RuntimeService for FakeRuntime {
    async fn version(
        &self,
        _: Request<api::VersionRequest>,
    ) -> Result<Response<api::VersionResponse>, Status> {
        Ok(Response::new(api::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn status(
        &self,
        _: Request<api::StatusRequest>,
    ) -> Result<Response<api::StatusResponse>, Status> {
        let condition = |t: &str| api::RuntimeCondition {
            r#type: t.into(),
            status: true,
            ..Default::default()
        };
        Ok(Response::new(api::StatusResponse {
            status: Some(api::RuntimeStatus {
                conditions: vec![condition("RuntimeReady"), condition("NetworkReady")],
            }),
            ..Default::default()
        }))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<api::RunPodSandboxRequest>,
    ) -> Result<Response<api::RunPodSandboxResponse>, Status> {
        let config = request
            .into_inner()
            .config
            .ok_or_else(|| Status::invalid_argument("sandbox config is required"))?;
        let mut state = self.lock();
        let id = state.id();
        state.next_ip += 1;
        let ip = Ipv4Addr::from(self.base.wrapping_add(state.next_ip)).to_string();
        state.sandboxes.insert(
            id.clone(),
            Sandbox {
                metadata: config.metadata,
                state: api::PodSandboxState::SandboxReady,
                created_at: now_ns(),
                ip,
                labels: config.labels,
                annotations: config.annotations,
            },
        );
        Ok(Response::new(api::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<api::StopPodSandboxRequest>,
    ) -> Result<Response<api::StopPodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let mut state = self.lock();
        // Stopping a sandbox that is already gone succeeds, as CRI asks.
        if let Some(s) = state.sandboxes.get_mut(&id) {
            s.state = api::PodSandboxState::SandboxNotready;
        }
        Self::stop_sandbox_containers(&mut state, &id);
        Ok(Response::new(api::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<api::RemovePodSandboxRequest>,
    ) -> Result<Response<api::RemovePodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let mut state = self.lock();
        state.sandboxes.remove(&id);
        state.containers.retain(|_, c| c.sandbox_id != id);
        Ok(Response::new(api::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<api::PodSandboxStatusRequest>,
    ) -> Result<Response<api::PodSandboxStatusResponse>, Status> {
        self.count_status_call();
        let id = request.into_inner().pod_sandbox_id;
        let state = self.lock();
        let s = state
            .sandboxes
            .get(&id)
            .ok_or_else(|| not_found("sandbox", &id))?;
        Ok(Response::new(api::PodSandboxStatusResponse {
            status: Some(api::PodSandboxStatus {
                id,
                metadata: s.metadata.clone(),
                state: s.state as i32,
                created_at: s.created_at,
                network: Some(api::PodSandboxNetworkStatus {
                    ip: s.ip.clone(),
                    additional_ips: Vec::new(),
                }),
                labels: s.labels.clone(),
                annotations: s.annotations.clone(),
                ..Default::default()
            }),
            timestamp: now_ns(),
            ..Default::default()
        }))
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<api::ListPodSandboxRequest>,
    ) -> Result<Response<api::ListPodSandboxResponse>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let state = self.lock();
        let items = state
            .sandboxes
            .iter()
            .filter(|(id, s)| {
                (filter.id.is_empty() || **id == filter.id)
                    && filter
                        .state
                        .as_ref()
                        .is_none_or(|v| v.state == s.state as i32)
                    && labels_match(&filter.label_selector, &s.labels)
            })
            .map(|(id, s)| api::PodSandbox {
                id: id.clone(),
                metadata: s.metadata.clone(),
                state: s.state as i32,
                created_at: s.created_at,
                labels: s.labels.clone(),
                annotations: s.annotations.clone(),
                runtime_handler: String::new(),
            })
            .collect();
        Ok(Response::new(api::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        request: Request<api::CreateContainerRequest>,
    ) -> Result<Response<api::CreateContainerResponse>, Status> {
        let request = request.into_inner();
        let config = request
            .config
            .ok_or_else(|| Status::invalid_argument("container config is required"))?;
        let mut state = self.lock();
        if !state.sandboxes.contains_key(&request.pod_sandbox_id) {
            return Err(not_found("sandbox", &request.pod_sandbox_id));
        }
        let id = state.id();
        state.containers.insert(
            id.clone(),
            Container {
                sandbox_id: request.pod_sandbox_id,
                metadata: config.metadata,
                image: config.image,
                state: api::ContainerState::ContainerCreated,
                created_at: now_ns(),
                started_at: 0,
                finished_at: 0,
                labels: config.labels,
                annotations: config.annotations,
                log_path: config.log_path,
            },
        );
        Ok(Response::new(api::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        request: Request<api::StartContainerRequest>,
    ) -> Result<Response<api::StartContainerResponse>, Status> {
        let id = request.into_inner().container_id;
        let mut state = self.lock();
        let c = state
            .containers
            .get_mut(&id)
            .ok_or_else(|| not_found("container", &id))?;
        if c.state != api::ContainerState::ContainerCreated {
            return Err(Status::failed_precondition(format!(
                "container {id:?} is not in created state"
            )));
        }
        c.state = api::ContainerState::ContainerRunning;
        c.started_at = now_ns();
        Ok(Response::new(api::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<api::StopContainerRequest>,
    ) -> Result<Response<api::StopContainerResponse>, Status> {
        let id = request.into_inner().container_id;
        let mut state = self.lock();
        let c = state
            .containers
            .get_mut(&id)
            .ok_or_else(|| not_found("container", &id))?;
        if c.state == api::ContainerState::ContainerRunning {
            c.state = api::ContainerState::ContainerExited;
            c.finished_at = now_ns();
        }
        Ok(Response::new(api::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<api::RemoveContainerRequest>,
    ) -> Result<Response<api::RemoveContainerResponse>, Status> {
        let id = request.into_inner().container_id;
        self.lock().containers.remove(&id);
        Ok(Response::new(api::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        request: Request<api::ListContainersRequest>,
    ) -> Result<Response<api::ListContainersResponse>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let state = self.lock();
        let containers = state
            .containers
            .iter()
            .filter(|(id, c)| {
                (filter.id.is_empty() || **id == filter.id)
                    && (filter.pod_sandbox_id.is_empty() || c.sandbox_id == filter.pod_sandbox_id)
                    && filter
                        .state
                        .as_ref()
                        .is_none_or(|v| v.state == c.state as i32)
                    && labels_match(&filter.label_selector, &c.labels)
            })
            .map(|(id, c)| {
                let image = c
                    .image
                    .as_ref()
                    .map(|i| i.image.clone())
                    .unwrap_or_default();
                api::Container {
                    id: id.clone(),
                    pod_sandbox_id: c.sandbox_id.clone(),
                    metadata: c.metadata.clone(),
                    image: c.image.clone(),
                    image_ref: image_record(&image).id,
                    state: c.state as i32,
                    created_at: c.created_at,
                    labels: c.labels.clone(),
                    annotations: c.annotations.clone(),
                    image_id: String::new(),
                }
            })
            .collect();
        Ok(Response::new(api::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        request: Request<api::ContainerStatusRequest>,
    ) -> Result<Response<api::ContainerStatusResponse>, Status> {
        self.count_status_call();
        let id = request.into_inner().container_id;
        let state = self.lock();
        let c = state
            .containers
            .get(&id)
            .ok_or_else(|| not_found("container", &id))?;
        Ok(Response::new(api::ContainerStatusResponse {
            status: Some(self.container_status(&id, c)),
            info: HashMap::new(),
        }))
    }

    async fn exec_sync(
        &self,
        request: Request<api::ExecSyncRequest>,
    ) -> Result<Response<api::ExecSyncResponse>, Status> {
        let id = request.into_inner().container_id;
        let state = self.lock();
        match state.containers.get(&id) {
            Some(c) if c.state == api::ContainerState::ContainerRunning => {
                Ok(Response::new(api::ExecSyncResponse::default()))
            }
            Some(_) => Err(Status::failed_precondition(format!(
                "container {id:?} is not running"
            ))),
            None => Err(not_found("container", &id)),
        }
    }

    async fn list_container_stats(
        &self,
        _: Request<api::ListContainerStatsRequest>,
    ) -> Result<Response<api::ListContainerStatsResponse>, Status> {
        Ok(Response::new(api::ListContainerStatsResponse::default()))
    }

    async fn list_pod_sandbox_stats(
        &self,
        _: Request<api::ListPodSandboxStatsRequest>,
    ) -> Result<Response<api::ListPodSandboxStatsResponse>, Status> {
        Ok(Response::new(api::ListPodSandboxStatsResponse::default()))
    }

    async fn update_runtime_config(
        &self,
        _: Request<api::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<api::UpdateRuntimeConfigResponse>, Status> {
        Ok(Response::new(api::UpdateRuntimeConfigResponse {}))
    }
}

#[tonic::async_trait]
impl ImageService for FakeRuntime {
    async fn list_images(
        &self,
        _: Request<api::ListImagesRequest>,
    ) -> Result<Response<api::ListImagesResponse>, Status> {
        let images = self.lock().images.values().cloned().collect();
        Ok(Response::new(api::ListImagesResponse { images }))
    }

    async fn image_status(
        &self,
        request: Request<api::ImageStatusRequest>,
    ) -> Result<Response<api::ImageStatusResponse>, Status> {
        let reference = request
            .into_inner()
            .image
            .map(|i| i.image)
            .unwrap_or_default();
        let image = self.lock().images.get(&reference).cloned();
        Ok(Response::new(api::ImageStatusResponse {
            image,
            ..Default::default()
        }))
    }

    async fn pull_image(
        &self,
        request: Request<api::PullImageRequest>,
    ) -> Result<Response<api::PullImageResponse>, Status> {
        let reference = request
            .into_inner()
            .image
            .map(|i| i.image)
            .filter(|i| !i.is_empty())
            .ok_or_else(|| Status::invalid_argument("image is required"))?;
        let record = image_record(&reference);
        let id = record.id.clone();
        self.lock().images.insert(reference, record);
        Ok(Response::new(api::PullImageResponse { image_ref: id }))
    }

    async fn remove_image(
        &self,
        request: Request<api::RemoveImageRequest>,
    ) -> Result<Response<api::RemoveImageResponse>, Status> {
        let reference = request
            .into_inner()
            .image
            .map(|i| i.image)
            .unwrap_or_default();
        let mut state = self.lock();
        state
            .images
            .retain(|name, image| *name != reference && image.id != reference);
        Ok(Response::new(api::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _: Request<api::ImageFsInfoRequest>,
    ) -> Result<Response<api::ImageFsInfoResponse>, Status> {
        Ok(Response::new(api::ImageFsInfoResponse::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::Runtime;

    fn sandbox_config(name: &str, uid: &str) -> api::PodSandboxConfig {
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            labels: HashMap::from([("io.kubernetes.pod.uid".to_string(), uid.to_string())]),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn runs_a_pod_through_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("cri.sock");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = FakeRuntime::new(Ipv4Addr::new(10, 64, 0, 0))
            .serve(&socket, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        let rt = Runtime::new(&format!("unix://{}", socket.display())).unwrap();
        assert_eq!(rt.version().await.unwrap().runtime_name, RUNTIME_NAME);

        assert!(rt.image_status("busybox").await.unwrap().is_none());
        rt.pull_image("busybox", None, None).await.unwrap();
        assert!(rt.image_status("busybox").await.unwrap().is_some());

        let config = sandbox_config("web", "u1");
        let sandbox = rt.run_pod_sandbox(config.clone()).await.unwrap();
        let status = rt.pod_sandbox_status(&sandbox).await.unwrap();
        assert_eq!(status.network.unwrap().ip, "10.64.0.1");
        let second = rt
            .run_pod_sandbox(sandbox_config("db", "u2"))
            .await
            .unwrap();
        assert_eq!(
            rt.pod_sandbox_status(&second)
                .await
                .unwrap()
                .network
                .unwrap()
                .ip,
            "10.64.0.2"
        );

        let container = rt
            .create_container(
                &sandbox,
                api::ContainerConfig {
                    metadata: Some(api::ContainerMetadata {
                        name: "c".into(),
                        attempt: 0,
                    }),
                    image: Some(api::ImageSpec {
                        image: "busybox".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                config,
            )
            .await
            .unwrap();
        rt.start_container(&container).await.unwrap();
        let running = rt.container_status(&container).await.unwrap();
        assert_eq!(running.state, api::ContainerState::ContainerRunning as i32);
        assert!(running.started_at > 0);

        let by_label = rt
            .list_pod_sandbox(Some(api::PodSandboxFilter {
                label_selector: HashMap::from([(
                    "io.kubernetes.pod.uid".to_string(),
                    "u2".to_string(),
                )]),
                ..Default::default()
            }))
            .await
            .unwrap();
        assert_eq!(by_label.len(), 1);
        assert_eq!(by_label[0].id, second);

        rt.stop_pod_sandbox(&sandbox).await.unwrap();
        let stopped = rt.container_status(&container).await.unwrap();
        assert_eq!(stopped.state, api::ContainerState::ContainerExited as i32);
        rt.remove_pod_sandbox(&sandbox).await.unwrap();
        let err = rt.container_status(&container).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(rt.list_containers(None).await.unwrap().len(), 0);

        tx.send(()).unwrap();
        task.await.unwrap();
    }
}
