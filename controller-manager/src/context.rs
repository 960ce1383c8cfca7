//! What every controller constructor gets: clients, shared informers, settings and shutdown.

use std::sync::Arc;

use component_base::Shutdown;
use kube::Client;

use crate::informers::SharedInformers;
use crate::options::Config;

/// Shared state handed to each controller's constructor.
#[derive(Clone)]
pub struct ControllerContext {
    /// Client authenticated as the controller-manager.
    pub client: Client,
    /// The process-wide informers.
    pub informers: Arc<SharedInformers>,
    /// Validated flags.
    pub config: Arc<Config>,
    /// Triggers when the process stops or loses leadership.
    pub shutdown: Shutdown,
}
