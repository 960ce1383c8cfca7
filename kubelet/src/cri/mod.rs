//! The CRI v1 client: RuntimeService and ImageService over the runtime's unix socket.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

#[allow(clippy::all, rust_2018_idioms, missing_docs)]
pub mod api {
    tonic::include_proto!("runtime.v1");
}

pub mod fake;

use api::image_service_client::ImageServiceClient;
use api::runtime_service_client::RuntimeServiceClient;

/// Upstream's --runtime-request-timeout default.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A failed CRI call.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("container runtime endpoint {0:?} is not a unix socket (want unix:///path)")]
    Endpoint(String),
    #[error("{op}: {}", .status.message())]
    Call {
        op: &'static str,
        #[source]
        status: tonic::Status,
    },
}

impl CriError {
    /// The gRPC code of a failed call.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            CriError::Call { status, .. } => Some(status.code()),
            CriError::Endpoint(_) => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(tonic::Code::NotFound)
    }
}

/// Connects tonic to a unix socket path, whatever URI it is asked for.
#[derive(Clone)]
struct UnixConnector(PathBuf);

impl tower::Service<Uri> for UnixConnector {
    type Response = TokioIo<UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { Ok(TokioIo::new(UnixStream::connect(path).await?)) })
    }
}

/// The socket path of `unix:///run/containerd/containerd.sock` (or a bare absolute path).
pub fn socket_path(endpoint: &str) -> Result<PathBuf, CriError> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if !path.starts_with('/') {
        return Err(CriError::Endpoint(endpoint.to_string()));
    }
    Ok(PathBuf::from(path))
}

/// A cheap-to-clone CRI client; the connection is made lazily and re-made after failures.
#[derive(Clone)]
pub struct Runtime {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

fn req<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(msg);
    request.set_timeout(timeout);
    request
}

macro_rules! call {
    ($self:ident . $svc:ident . $method:ident ($msg:expr), $op:literal) => {
        call!($self.$svc.$method($msg), $op, REQUEST_TIMEOUT)
    };
    ($self:ident . $svc:ident . $method:ident ($msg:expr), $op:literal, $timeout:expr) => {
        $self
            .$svc
            .clone()
            .$method(req($msg, $timeout))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| CriError::Call { op: $op, status })
    };
}

impl Runtime {
    /// A client for `endpoint` (`unix:///path`); nothing is dialled until the first call.
    pub fn new(endpoint: &str) -> Result<Self, CriError> {
        let path = socket_path(endpoint)?;
        let channel = Endpoint::from_static("http://localhost")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(UnixConnector(path));
        Ok(Self {
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(16 * 1024 * 1024),
            images: ImageServiceClient::new(channel).max_decoding_message_size(16 * 1024 * 1024),
        })
    }

    pub async fn version(&self) -> Result<api::VersionResponse, CriError> {
        call!(
            self.runtime.version(api::VersionRequest {
                version: "v1".into()
            }),
            "Version",
            Duration::from_secs(10)
        )
    }

    pub async fn status(&self) -> Result<api::StatusResponse, CriError> {
        call!(
            self.runtime.status(api::StatusRequest { verbose: false }),
            "Status",
            Duration::from_secs(10)
        )
    }

    pub async fn run_pod_sandbox(&self, config: api::PodSandboxConfig) -> Result<String, CriError> {
        call!(
            self.runtime.run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            }),
            "RunPodSandbox"
        )
        .map(|r| r.pod_sandbox_id)
    }

    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        call!(
            self.runtime.stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: id.into()
            }),
            "StopPodSandbox"
        )
        .map(drop)
    }

    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        call!(
            self.runtime
                .remove_pod_sandbox(api::RemovePodSandboxRequest {
                    pod_sandbox_id: id.into()
                }),
            "RemovePodSandbox"
        )
        .map(drop)
    }

    pub async fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus, CriError> {
        call!(
            self.runtime
                .pod_sandbox_status(api::PodSandboxStatusRequest {
                    pod_sandbox_id: id.into(),
                    verbose: false,
                }),
            "PodSandboxStatus"
        )
        .map(|r| r.status.unwrap_or_default())
    }

    pub async fn list_pod_sandbox(
        &self,
        filter: Option<api::PodSandboxFilter>,
    ) -> Result<Vec<api::PodSandbox>, CriError> {
        call!(
            self.runtime
                .list_pod_sandbox(api::ListPodSandboxRequest { filter }),
            "ListPodSandbox"
        )
        .map(|r| r.items)
    }

    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> Result<String, CriError> {
        call!(
            self.runtime.create_container(api::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.into(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            }),
            "CreateContainer"
        )
        .map(|r| r.container_id)
    }

    pub async fn start_container(&self, id: &str) -> Result<(), CriError> {
        call!(
            self.runtime.start_container(api::StartContainerRequest {
                container_id: id.into()
            }),
            "StartContainer"
        )
        .map(drop)
    }

    /// Stops a container: the runtime sends the stop signal, waits `grace`, then SIGKILL.
    pub async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), CriError> {
        call!(
            self.runtime.stop_container(api::StopContainerRequest {
                container_id: id.into(),
                timeout: grace.as_secs() as i64,
            }),
            "StopContainer",
            REQUEST_TIMEOUT + grace
        )
        .map(drop)
    }

    pub async fn remove_container(&self, id: &str) -> Result<(), CriError> {
        call!(
            self.runtime.remove_container(api::RemoveContainerRequest {
                container_id: id.into()
            }),
            "RemoveContainer"
        )
        .map(drop)
    }

    pub async fn list_containers(
        &self,
        filter: Option<api::ContainerFilter>,
    ) -> Result<Vec<api::Container>, CriError> {
        call!(
            self.runtime
                .list_containers(api::ListContainersRequest { filter }),
            "ListContainers"
        )
        .map(|r| r.containers)
    }

    pub async fn container_status(&self, id: &str) -> Result<api::ContainerStatus, CriError> {
        call!(
            self.runtime.container_status(api::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            }),
            "ContainerStatus"
        )
        .map(|r| r.status.unwrap_or_default())
    }

    /// A streaming-server URL for running `req.cmd` in a container (exec).
    pub async fn exec(&self, req: api::ExecRequest) -> Result<String, CriError> {
        call!(self.runtime.exec(req), "Exec").map(|r| r.url)
    }

    /// A streaming-server URL for attaching to a container's main process.
    pub async fn attach(&self, req: api::AttachRequest) -> Result<String, CriError> {
        call!(self.runtime.attach(req), "Attach").map(|r| r.url)
    }

    /// A streaming-server URL for forwarding ports into a sandbox's network namespace.
    pub async fn port_forward(
        &self,
        sandbox_id: &str,
        ports: Vec<i32>,
    ) -> Result<String, CriError> {
        call!(
            self.runtime.port_forward(api::PortForwardRequest {
                pod_sandbox_id: sandbox_id.into(),
                port: ports,
            }),
            "PortForward"
        )
        .map(|r| r.url)
    }

    /// CPU, memory and writable-layer usage of every container.
    pub async fn list_container_stats(&self) -> Result<Vec<api::ContainerStats>, CriError> {
        call!(
            self.runtime
                .list_container_stats(api::ListContainerStatsRequest { filter: None }),
            "ListContainerStats"
        )
        .map(|r| r.stats)
    }

    /// Removes an image (by ID or reference).
    pub async fn remove_image(&self, image: &str) -> Result<(), CriError> {
        call!(
            self.images.remove_image(api::RemoveImageRequest {
                image: Some(api::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
            }),
            "RemoveImage"
        )
        .map(|_| ())
    }

    /// The filesystems holding images: mountpoint and bytes used by images, per filesystem.
    pub async fn image_fs_info(&self) -> Result<Vec<(String, u64)>, CriError> {
        call!(
            self.images.image_fs_info(api::ImageFsInfoRequest {}),
            "ImageFsInfo"
        )
        .map(|r| {
            r.image_filesystems
                .into_iter()
                .map(|f| {
                    (
                        f.fs_id.map(|id| id.mountpoint).unwrap_or_default(),
                        f.used_bytes.map(|u| u.value).unwrap_or_default(),
                    )
                })
                .collect()
        })
    }

    /// The image's status, `None` when the runtime does not have it.
    pub async fn image_status(&self, image: &str) -> Result<Option<api::Image>, CriError> {
        call!(
            self.images.image_status(api::ImageStatusRequest {
                image: Some(api::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                verbose: false,
            }),
            "ImageStatus"
        )
        .map(|r| r.image)
    }

    /// Pulls `image`; returns the image reference (digest) the runtime stored.
    pub async fn pull_image(
        &self,
        image: &str,
        auth: Option<api::AuthConfig>,
        sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String, CriError> {
        call!(
            self.images.pull_image(api::PullImageRequest {
                image: Some(api::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                auth,
                sandbox_config,
            }),
            "PullImage"
        )
        .map(|r| r.image_ref)
    }

    pub async fn list_images(&self) -> Result<Vec<api::Image>, CriError> {
        call!(
            self.images
                .list_images(api::ListImagesRequest { filter: None }),
            "ListImages"
        )
        .map(|r| r.images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_unix_sockets() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock").expect("unix"),
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(
            socket_path("/tmp/c.sock").expect("bare path"),
            PathBuf::from("/tmp/c.sock")
        );
        assert!(socket_path("tcp://127.0.0.1:1234").is_err());
        assert!(socket_path("npipe:////./pipe/x").is_err());
    }
}

mod exec_sync;
