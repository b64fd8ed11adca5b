//! The distribution functions the gate's tests need, from `statrs`: the two-sided p of Student's
//! t (the normal for infinite degrees of freedom), and the Clopper–Pearson interval of a binomial
//! rate that the power examples report.

use statrs::distribution::{Beta, ContinuousCDF, Normal, StudentsT};

/// The two-sided p of a statistic `t` that is Student's t with `df` degrees of freedom (normal
/// when `df` is infinite) under the null hypothesis.
pub(crate) fn two_sided_t(t: f64, df: f64) -> f64 {
    if t.is_nan() {
        return f64::NAN;
    }
    let tail = if df.is_finite() {
        StudentsT::new(0.0, 1.0, df).map(|d| d.sf(t.abs()))
    } else {
        Ok(Normal::standard().sf(t.abs()))
    };
    tail.map_or(f64::NAN, |tail| (2.0 * tail).clamp(0.0, 1.0))
}

/// The `p` quantile of Student's t with `df` degrees of freedom (normal when `df` is infinite).
pub(crate) fn t_quantile(p: f64, df: f64) -> f64 {
    if df.is_finite() {
        StudentsT::new(0.0, 1.0, df).map_or(f64::NAN, |d| d.inverse_cdf(p))
    } else {
        Normal::standard().inverse_cdf(p)
    }
}

/// The Clopper–Pearson ("exact") two-sided 95 % confidence interval of a binomial rate from
/// `k` events in `n` trials. `k` and `n` may be fractional: an effective count (the power
/// examples scale dependent pairs down to the number of independent ones).
pub fn clopper_pearson(k: f64, n: f64) -> (f64, f64) {
    if n <= 0.0 {
        return (0.0, 1.0);
    }
    let k = k.clamp(0.0, n);
    let quantile = |p: f64, a: f64, b: f64| Beta::new(a, b).map_or(f64::NAN, |d| d.inverse_cdf(p));
    let tail = 0.025;
    let lower = if k <= 0.0 {
        0.0
    } else {
        quantile(tail, k, n - k + 1.0)
    };
    let upper = if k >= n {
        1.0
    } else {
        quantile(1.0 - tail, k + 1.0, n - k)
    };
    (lower, upper)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_match_tabulated_values() {
        // Student's t: t(0.975, 8) = 2.306004, t(0.995, 19) = 2.860935, t(0.975, 1) = 12.7062.
        assert!((two_sided_t(2.306_004, 8.0) - 0.05).abs() < 1e-6);
        assert!((two_sided_t(-2.306_004, 8.0) - 0.05).abs() < 1e-6);
        assert!((two_sided_t(2.860_935, 19.0) - 0.01).abs() < 1e-6);
        assert!((two_sided_t(12.706_2, 1.0) - 0.05).abs() < 1e-5);
        // Normal: P(|Z| > 1.959964) = 0.05.
        assert!((two_sided_t(1.959_964, f64::INFINITY) - 0.05).abs() < 1e-6);
    }

    #[test]
    fn clopper_pearson_matches_tabulated_bounds() {
        // 0 of 30: upper 0.1157 (the "rule of three" ~ 3.7/n at 97.5 %); 0 of 40: 0.0881.
        let (lo, hi) = clopper_pearson(0.0, 30.0);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.115_7).abs() < 1e-4, "{hi}");
        assert!((clopper_pearson(0.0, 40.0).1 - 0.088_1).abs() < 1e-4);
        // 5 of 100: 0.01643 .. 0.11284.
        let (lo, hi) = clopper_pearson(5.0, 100.0);
        assert!(
            (lo - 0.016_43).abs() < 1e-4 && (hi - 0.112_84).abs() < 1e-4,
            "{lo} {hi}"
        );
        // All 40 of 40: the lower bound is 0.025^(1/40) = 0.9119.
        let (lo, hi) = clopper_pearson(40.0, 40.0);
        assert!((lo - 0.911_9).abs() < 1e-4 && hi == 1.0, "{lo}");
    }
}
