//! Process-wide tracing setup: fmt output to stderr filtered by `RUST_LOG` or a default level.

use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber.
///
/// The filter comes from `RUST_LOG` when it is set and parses, otherwise from `default_level`
/// (any `EnvFilter` directive, e.g. `info` or `info,store=debug`). Calling it again is harmless:
/// the first subscriber stays, which is what tests that each call `init` need.
pub fn init(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // An error here only means a subscriber is already installed.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn init_can_be_called_twice() {
        super::init("info");
        super::init("debug");
        tracing::info!("still logging");
    }
}
