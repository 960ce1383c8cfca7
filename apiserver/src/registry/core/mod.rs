//! Strategies of the core (legacy, `v1`) group.

pub mod configmap;
pub mod event;
pub mod misc;
pub mod namespace;
pub mod node;
pub mod pod;
pub mod replicationcontroller;
pub mod secret;
pub mod service;
pub mod volume;
