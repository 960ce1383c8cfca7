//! The scheduler's Prometheus metrics.

use prometheus::{
    CounterVec, HistogramOpts, HistogramVec, IntCounter, IntGaugeVec, Opts, Registry,
};

/// Every metric the scheduler exports.
#[derive(Clone)]
pub struct Metrics {
    /// The registry served on /metrics.
    pub registry: Registry,
    /// scheduler_schedule_attempts_total{result,profile}.
    pub schedule_attempts: CounterVec,
    /// scheduler_scheduling_attempt_duration_seconds{result,profile}.
    pub attempt_duration: HistogramVec,
    /// scheduler_pending_pods{queue}.
    pub pending_pods: IntGaugeVec,
    /// scheduler_preemption_attempts_total.
    pub preemption_attempts: IntCounter,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let schedule_attempts = CounterVec::new(
            Opts::new(
                "scheduler_schedule_attempts_total",
                "Number of attempts to schedule pods, by the result.",
            ),
            &["result", "profile"],
        )?;
        let attempt_duration = HistogramVec::new(
            HistogramOpts::new(
                "scheduler_scheduling_attempt_duration_seconds",
                "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            )
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 15)?),
            &["result", "profile"],
        )?;
        let pending_pods = IntGaugeVec::new(
            Opts::new(
                "scheduler_pending_pods",
                "Number of pending pods, by the queue type.",
            ),
            &["queue"],
        )?;
        let preemption_attempts = IntCounter::new(
            "scheduler_preemption_attempts_total",
            "Total preemption attempts in the cluster till now",
        )?;
        registry.register(Box::new(schedule_attempts.clone()))?;
        registry.register(Box::new(attempt_duration.clone()))?;
        registry.register(Box::new(pending_pods.clone()))?;
        registry.register(Box::new(preemption_attempts.clone()))?;
        Ok(Self {
            registry,
            schedule_attempts,
            attempt_duration,
            pending_pods,
            preemption_attempts,
        })
    }
}
