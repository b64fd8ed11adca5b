//! MLPerf's early-stopping rule for a latency bound: a run of `n` queries, `h` of them over the
//! bound, shows that the true p-th percentile is within the bound (VALID) when, were the share of
//! queries over the bound exactly `1 - p`, seeing `h` or fewer of them would have a probability of
//! at most `1 - confidence` (a one-sided binomial test).

use std::time::Duration;

use chipbench_core::result::LatencyVerdict;
use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, DiscreteCDF};

/// `--latency-bound p99=10ms`: the percentile (a fraction) whose latency must stay within `bound`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyBound {
    pub percentile: f64,
    pub bound: Duration,
}

/// The confidence MLPerf's early stopping uses.
pub const CONFIDENCE: f64 = 0.99;

/// The most queries over the bound that `n` queries allow for it to hold, or `None` when even a
/// run with none over the bound would not show it (too few queries).
pub fn allowed_over_bound(n: u64, percentile: f64, confidence: f64) -> Option<u64> {
    let tail = Binomial::new(1.0 - percentile, n).ok()?;
    // The CDF grows with h: the largest h whose CDF is still within 1 - confidence.
    let within = |h: u64| tail.cdf(h) <= 1.0 - confidence;
    if !within(0) {
        return None;
    }
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if within(mid) { lo = mid } else { hi = mid - 1 }
    }
    Some(lo)
}

/// The fewest queries with which a run can be VALID at all (none over the bound).
pub fn min_queries(percentile: f64, confidence: f64) -> u64 {
    ((1.0 - confidence).ln() / percentile.ln()).ceil() as u64
}

/// The verdict on `latencies` (one per query) against `bound`.
pub fn verdict(latencies: &[Duration], bound: &LatencyBound) -> LatencyVerdict {
    let n = latencies.len() as u64;
    let over = latencies.iter().filter(|l| **l > bound.bound).count() as u64;
    let allowed = allowed_over_bound(n, bound.percentile, CONFIDENCE);
    LatencyVerdict {
        valid: allowed.is_some_and(|a| over <= a),
        percentile: bound.percentile,
        bound_ms: bound.bound.as_secs_f64() * 1e3,
        confidence: CONFIDENCE,
        queries: n,
        over_bound: over,
        allowed_over_bound: allowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_few_queries_cannot_be_valid() {
        // 0.99^n <= 0.01 first at n = 459.
        assert_eq!(min_queries(0.99, CONFIDENCE), 459);
        assert_eq!(allowed_over_bound(458, 0.99, CONFIDENCE), None);
        assert_eq!(allowed_over_bound(459, 0.99, CONFIDENCE), Some(0));
    }

    #[test]
    fn allowed_count_is_the_binomial_quantile() {
        let n = 10_000;
        let a = allowed_over_bound(n, 0.99, CONFIDENCE).unwrap();
        let tail = Binomial::new(0.01, n).unwrap();
        assert!(tail.cdf(a) <= 0.01 && tail.cdf(a + 1) > 0.01);
        // Below the 100 expected at exactly 1 %, by about 2.33 standard deviations (9.95).
        assert!((75..=78).contains(&a), "{a}");
    }

    #[test]
    fn verdict_counts_queries_over_the_bound() {
        let bound = LatencyBound {
            percentile: 0.99,
            bound: Duration::from_millis(10),
        };
        let ms = Duration::from_millis;
        let mut latencies = vec![ms(1); 10_000];
        assert!(verdict(&latencies, &bound).valid);
        latencies[..70].fill(ms(11));
        let v = verdict(&latencies, &bound);
        assert!(v.valid && v.over_bound == 70);
        latencies[..90].fill(ms(11));
        // 0.9 % over the bound is under 1 %, but not provably so at 99 % confidence.
        assert!(!verdict(&latencies, &bound).valid);
        // Exactly at the bound is within it.
        latencies[..90].fill(ms(10));
        assert!(verdict(&latencies, &bound).valid);
    }
}
