//! Which strategy serves each built-in resource: the registry's, except that
//! CustomResourceDefinitions get the CRD module's (it also fills their status).

use std::sync::Arc;

use crate::registry::Strategy;

pub fn strategy_for(group: &str, resource: &str) -> Arc<dyn Strategy> {
    if group == "apiextensions.k8s.io" && resource == "customresourcedefinitions" {
        return Arc::new(crate::crd::CrdStrategy::new());
    }
    crate::registry::strategy_for(group, resource)
}
