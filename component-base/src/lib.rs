//! Shared daemon plumbing (filled in by the component-base work).
