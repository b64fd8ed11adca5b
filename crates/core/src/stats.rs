//! Statistics of latency samples.
//!
//! - Percentiles use linear interpolation between order statistics (Hyndman & Fan type 7, numpy's
//!   default): for sorted samples `x[0..n]`, the q-quantile is at position `q * (n - 1)`.
//! - Confidence intervals of a quantile are percentile-bootstrap intervals computed exactly rather
//!   than by resampling: the bootstrap distribution of the order statistic `X*(m)` of a resample is
//!   `P(X*(m) <= x(k)) = P(Binomial(n, k/n) >= m)` (Maritz & Jarrett, 1978), which is what an
//!   infinite number of resamples would give. It costs a few evaluations of the regularised beta
//!   function, so the stop rule can check it every few hundred milliseconds on 10^6 samples.
//! - Two samples are compared with a Mann–Whitney U test (normal approximation with tie and
//!   continuity corrections).

use rand::Rng;
use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, Normal};

use crate::result::LatencyStats;

/// The q-quantile of sorted samples, by linear interpolation (type 7).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Summary statistics of latency samples (any unit; the caller keeps it consistent).
pub fn summarize(samples: &[f64]) -> Option<LatencyStats> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let mean = sorted.iter().sum::<f64>() / n as f64;
    let var = if n > 1 {
        sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    let (lo, hi) = quantile_ci_ranks(n, 0.5, 0.95);
    Some(LatencyStats {
        n,
        mean,
        stddev: var.sqrt(),
        min: sorted[0],
        p50: percentile(&sorted, 0.5),
        p90: percentile(&sorted, 0.9),
        p95: percentile(&sorted, 0.95),
        p99: percentile(&sorted, 0.99),
        p999: percentile(&sorted, 0.999),
        max: sorted[n - 1],
        median_ci95: [sorted[lo], sorted[hi]],
    })
}

/// The 95 % CI of the median of unsorted samples, in O(n) (two selections on a scratch copy).
pub fn median_ci95(samples: &[f64], scratch: &mut Vec<f64>) -> Option<(f64, f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let n = samples.len();
    let (lo, hi) = quantile_ci_ranks(n, 0.5, 0.95);
    scratch.clear();
    scratch.extend_from_slice(samples);
    let mut select = |k: usize| *scratch.select_nth_unstable_by(k, f64::total_cmp).1;
    let median_lo = select(n.saturating_sub(1) / 2);
    let median_hi = select(n / 2);
    Some(((median_lo + median_hi) / 2.0, select(lo), select(hi)))
}

/// Zero-based ranks `(lo, hi)` of the sorted samples that bound the percentile-bootstrap CI of
/// the q-quantile at confidence `level`. They depend on `n` alone.
pub fn quantile_ci_ranks(n: usize, q: f64, level: f64) -> (usize, usize) {
    if n <= 2 {
        return (0, n.saturating_sub(1));
    }
    let tail = (1.0 - level) / 2.0;
    let cdf = |k: usize| order_statistic_cdf(n, q, k);
    // Smallest one-based k with cdf(k) >= p.
    let search = |p: f64| {
        let (mut lo, mut hi) = (1usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if cdf(mid) >= p {
                hi = mid
            } else {
                lo = mid + 1
            }
        }
        lo - 1
    };
    (search(tail), search(1.0 - tail))
}

/// `P(Q* <= x(k))` for the bootstrap q-quantile `Q*` of `n` samples, `k` one-based. For a quantile
/// between two order statistics (the median of an even count) it averages their distributions.
fn order_statistic_cdf(n: usize, q: f64, k: usize) -> f64 {
    let pos = q * (n - 1) as f64 + 1.0; // one-based position of the quantile
    let (m_lo, m_hi) = (pos.floor() as u64, pos.ceil() as u64);
    let p = k as f64 / n as f64;
    let at_least = |m: u64| -> f64 {
        if m == 0 {
            return 1.0;
        }
        match Binomial::new(p.clamp(0.0, 1.0), n as u64) {
            Ok(b) => 1.0 - b.cdf(m - 1),
            Err(_) => f64::NAN,
        }
    };
    let w = pos - m_lo as f64;
    (1.0 - w) * at_least(m_lo) + w * at_least(m_hi)
}

/// The exact bootstrap distribution of a sample quantile, restricted to the order statistics
/// that carry all but a negligible part of its mass. Draws from it are bootstrap replicates of
/// the quantile, which is how a ratio of two quantiles gets its confidence interval.
#[derive(Clone, Debug)]
pub struct QuantileBootstrap {
    values: Vec<f64>,
    cdf: Vec<f64>,
}

impl QuantileBootstrap {
    pub fn new(samples: &[f64], q: f64) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let (first, last) = quantile_ci_ranks(n, q, 1.0 - 1e-9);
        let values = sorted[first..=last].to_vec();
        let mut cdf: Vec<f64> = (first..=last)
            .map(|k| order_statistic_cdf(n, q, k + 1))
            .collect();
        if let Some(end) = cdf.last_mut() {
            *end = 1.0;
        }
        Some(QuantileBootstrap { values, cdf })
    }

    /// One bootstrap replicate of the quantile.
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        let u: f64 = rng.random();
        let i = self
            .cdf
            .partition_point(|&c| c < u)
            .min(self.values.len() - 1);
        self.values[i]
    }
}

/// Two-sided p-value of the Mann–Whitney U test that `a` and `b` come from the same
/// distribution. `None` when either side is empty.
pub fn mann_whitney_p(a: &[f64], b: &[f64]) -> Option<f64> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&x| (x, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let (mut rank_sum_a, mut tie_term) = (0.0, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_a += average_rank * all[i..=j].iter().filter(|x| x.1).count() as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let u = rank_sum_a - n1f * (n1f + 1.0) / 2.0;
    let mean = n1f * n2f / 2.0;
    let var = n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)).max(1.0));
    if var <= 0.0 {
        return Some(1.0);
    }
    let z = ((u - mean).abs() - 0.5).max(0.0) / var.sqrt();
    let normal = Normal::standard();
    Some((2.0 * (1.0 - normal.cdf(z))).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, LogNormal};

    #[test]
    fn percentiles_interpolate_linearly() {
        let x = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&x, 0.0), 1.0);
        assert_eq!(percentile(&x, 1.0), 4.0);
        assert_eq!(percentile(&x, 0.5), 2.5);
        assert!((percentile(&x, 0.9) - 3.7).abs() < 1e-12);
    }

    #[test]
    fn summary_matches_hand_computed_values() {
        let s = summarize(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!((s.n, s.min, s.max, s.p50, s.mean), (5, 1.0, 5.0, 3.0, 3.0));
        assert!((s.stddev - 2.5f64.sqrt()).abs() < 1e-12);
        assert!(s.median_ci95[0] <= s.p50 && s.p50 <= s.median_ci95[1]);
        assert!(summarize(&[]).is_none());
    }

    /// The exact interval must agree with a brute-force resampling bootstrap.
    #[test]
    fn exact_median_ci_agrees_with_resampling() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let dist = LogNormal::new(0.0, 0.2).unwrap();
        let samples: Vec<f64> = (0..301).map(|_| dist.sample(&mut rng)).collect();
        let s = summarize(&samples).unwrap();
        let mut medians: Vec<f64> = (0..20000)
            .map(|_| {
                let mut r: Vec<f64> = (0..samples.len())
                    .map(|_| samples[rng.random_range(0..samples.len())])
                    .collect();
                r.sort_by(f64::total_cmp);
                r[r.len() / 2]
            })
            .collect();
        medians.sort_by(f64::total_cmp);
        let (lo, hi) = (percentile(&medians, 0.025), percentile(&medians, 0.975));
        let width = hi - lo;
        assert!(
            (s.median_ci95[0] - lo).abs() < 0.1 * width,
            "{:?} vs {lo}",
            s.median_ci95
        );
        assert!(
            (s.median_ci95[1] - hi).abs() < 0.1 * width,
            "{:?} vs {hi}",
            s.median_ci95
        );
    }

    #[test]
    fn median_ci_by_selection_matches_the_sorted_summary() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let samples: Vec<f64> = (0..1000).map(|_| rng.random::<f64>()).collect();
        let s = summarize(&samples).unwrap();
        let (median, lo, hi) = median_ci95(&samples, &mut Vec::new()).unwrap();
        assert!((median - s.p50).abs() < 1e-12);
        assert_eq!([lo, hi], s.median_ci95);
    }

    #[test]
    fn ci_narrows_with_more_samples() {
        let (lo1, hi1) = quantile_ci_ranks(100, 0.5, 0.95);
        let (lo2, hi2) = quantile_ci_ranks(10000, 0.5, 0.95);
        assert!(((hi1 - lo1) as f64 / 100.0) > ((hi2 - lo2) as f64 / 10000.0));
        // Normal approximation: the ranks sit about 1.96 * sqrt(n) / 2 around n / 2.
        assert!((lo2 as f64 - (5000.0 - 98.0)).abs() < 5.0, "{lo2}");
        assert!((hi2 as f64 - (5000.0 + 98.0)).abs() < 5.0, "{hi2}");
    }

    #[test]
    fn quantile_bootstrap_draws_near_the_quantile() {
        let samples: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        let b = QuantileBootstrap::new(&samples, 0.9).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let draws: Vec<f64> = (0..2000).map(|_| b.sample(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 899.0).abs() < 3.0, "{mean}");
    }

    #[test]
    fn mann_whitney_separates_shifted_samples_only() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let dist = LogNormal::new(0.0, 0.05).unwrap();
        let a: Vec<f64> = (0..200).map(|_| dist.sample(&mut rng)).collect();
        let b: Vec<f64> = (0..200).map(|_| dist.sample(&mut rng)).collect();
        let shifted: Vec<f64> = b.iter().map(|x| x * 1.05).collect();
        assert!(mann_whitney_p(&a, &b).unwrap() > 0.01);
        assert!(mann_whitney_p(&a, &shifted).unwrap() < 1e-6);
        // Identical constant samples: no evidence of a difference.
        assert_eq!(mann_whitney_p(&[1.0; 5], &[1.0; 5]).unwrap(), 1.0);
    }
}
