//! Builders shared by the scaling tests.

use super::*;

/// A per-replica metric where every replica has data.
pub fn per_replica(name: &str, target: f64, values: &[f64]) -> MetricInput {
    MetricInput {
        name: name.to_owned(),
        target_per_replica: target,
        reading: MetricReading::PerReplica(values.iter().copied().map(Some).collect()),
        burst: None,
    }
}

/// A per-replica metric with some replicas missing (`None`).
pub fn partial(name: &str, target: f64, values: &[Option<f64>]) -> MetricInput {
    MetricInput {
        name: name.to_owned(),
        target_per_replica: target,
        reading: MetricReading::PerReplica(values.to_vec()),
        burst: None,
    }
}

/// A service-wide total.
pub fn total(name: &str, target: f64, value: f64) -> MetricInput {
    MetricInput {
        name: name.to_owned(),
        target_per_replica: target,
        reading: MetricReading::Total(value),
        burst: None,
    }
}

/// A failed source.
pub fn unavailable(name: &str, target: f64, why: &str) -> MetricInput {
    MetricInput {
        name: name.to_owned(),
        target_per_replica: target,
        reading: MetricReading::Unavailable(why.to_owned()),
        burst: None,
    }
}

/// Runs [`decide`] with the given bounds.
pub fn run(
    behavior: &Behavior,
    min: u32,
    max: u32,
    current: u32,
    metrics: &[MetricInput],
    history: &History,
    now_ms: u64,
) -> Decision {
    decide(&DecisionInput {
        behavior,
        replicas: &Replicas { min, max },
        current,
        metrics,
        history,
        now_ms,
    })
}
