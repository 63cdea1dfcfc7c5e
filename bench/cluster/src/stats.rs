//! Latency samples and the figures drawn from them.

use std::time::Duration;

/// The latencies of one measured phase and how long the phase took.
#[derive(Debug, Clone)]
pub(crate) struct Latencies {
    /// Every call's latency in nanoseconds, sorted ascending.
    sorted_ns: Vec<u64>,
    /// Wall time of the whole phase (all callers).
    elapsed: Duration,
}

impl Latencies {
    /// Figures from unsorted per-call latencies and the phase's wall time.
    pub(crate) fn new(mut samples_ns: Vec<u64>, elapsed: Duration) -> Self {
        samples_ns.sort_unstable();
        Self {
            sorted_ns: samples_ns,
            elapsed,
        }
    }

    /// The `quantile` (0..=1) latency by nearest rank, in microseconds.
    pub(crate) fn percentile_us(&self, quantile: f64) -> f64 {
        let Some(last) = self.sorted_ns.len().checked_sub(1) else {
            return f64::NAN;
        };
        // Nearest rank: the smallest sample with at least `quantile` of the
        // samples at or below it.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((quantile * self.sorted_ns.len() as f64).ceil() as usize).clamp(1, last + 1);
        nanos_to_us(self.sorted_ns[rank - 1])
    }

    /// Calls completed per second of wall time.
    pub(crate) fn calls_per_s(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let calls = self.sorted_ns.len() as f64;
        calls / self.elapsed.as_secs_f64()
    }
}

#[allow(clippy::cast_precision_loss)]
fn nanos_to_us(nanos: u64) -> f64 {
    nanos as f64 / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<u64> = (1..=100).rev().map(|us| us * 1_000).collect();
        let latencies = Latencies::new(samples, Duration::from_secs(1));
        assert!((latencies.percentile_us(0.5) - 50.0).abs() < f64::EPSILON);
        assert!((latencies.percentile_us(0.99) - 99.0).abs() < f64::EPSILON);
        assert!((latencies.percentile_us(1.0) - 100.0).abs() < f64::EPSILON);
        assert!((latencies.calls_per_s() - 100.0).abs() < f64::EPSILON);
    }
}
