//! What every daemon shares: logging, graceful shutdown, TLS, health checks and the metrics server.

#[cfg(feature = "delegated")]
pub mod delegated;
pub mod duration;
pub mod error;
pub mod health;
pub mod http;
#[cfg(feature = "leaderelection")]
pub mod leaderelection;
pub mod logs;
pub mod metrics;
#[cfg(feature = "oci")]
pub mod oci;
#[cfg(feature = "ratelimit")]
pub mod ratelimit;
pub mod shutdown;
pub mod tls;
#[cfg(feature = "x509")]
pub mod x509;

pub use error::Error;
pub use health::Health;
pub use http::{serve, serve_guarded, Guard, Handler, Reply};
pub use shutdown::Shutdown;
