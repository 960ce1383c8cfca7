//! Strategies of the `batch` group.

pub mod cron;
pub mod cronjob;
pub mod job;
