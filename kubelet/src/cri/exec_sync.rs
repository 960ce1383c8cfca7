//! ExecSync: a command run to completion in a container (exec probes and hooks).

use std::time::Duration;

use super::{api, req, CriError, Runtime};

/// What a synchronous exec returned.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Runtime {
    /// Runs `cmd` in container `id`, giving the runtime `timeout` (0 means none) and the call a
    /// little more.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<ExecOutput, CriError> {
        let request = api::ExecSyncRequest {
            container_id: id.to_string(),
            cmd,
            timeout: timeout.as_secs() as i64,
        };
        self.runtime
            .clone()
            .exec_sync(req(request, timeout + Duration::from_secs(5)))
            .await
            .map(tonic::Response::into_inner)
            .map(|r| ExecOutput {
                exit_code: r.exit_code,
                stdout: r.stdout,
                stderr: r.stderr,
            })
            .map_err(|status| CriError::Call {
                op: "ExecSync",
                status,
            })
    }
}
