//! The nftables proxier: one `kube-proxy` table with verdict maps, one `nft -f -` transaction
//! per sync.

use std::collections::BTreeMap;

use crate::changes::{ServiceKey, ServicePort};
use crate::{Error, NodePortAddresses, RuleConfig, SyncReport};

pub struct Proxier {
    _cfg: RuleConfig,
    _nodeport_addresses: NodePortAddresses,
}

impl Proxier {
    pub fn new(cfg: RuleConfig, nodeport_addresses: NodePortAddresses) -> Self {
        Self {
            _cfg: cfg,
            _nodeport_addresses: nodeport_addresses,
        }
    }

    pub fn sync(
        &mut self,
        _changes: &BTreeMap<ServiceKey, Vec<ServicePort>>,
        _full: bool,
    ) -> Result<SyncReport, Error> {
        Err(Error::Tool {
            tool: "nft",
            stderr: "nftables mode is not implemented yet".into(),
        })
    }
}

pub fn cleanup() -> Result<(), Error> {
    Ok(())
}

/// The name of a Service port's chain (stub).
pub fn service_chain(spn: &str, proto: &str) -> String {
    format!("service-{spn}-{proto}")
}
