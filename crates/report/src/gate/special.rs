//! The distribution functions the gate's tests need and the `rand_distr` crate does not give: the
//! tails of the normal and of Student's t (through the regularized incomplete beta function),
//! and the Clopper–Pearson interval of a binomial rate that the power examples report.

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms: about 15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1 - x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The continued fraction of the incomplete beta function (modified Lentz).
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=10_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// The regularized incomplete beta function I_x(a, b), the CDF of Beta(a, b) at x.
pub(crate) fn regularized_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

/// P(T > t) for Student's t with `df` degrees of freedom; the normal tail for infinite `df`.
pub(crate) fn student_t_sf(t: f64, df: f64) -> f64 {
    if !df.is_finite() {
        return normal_sf(t);
    }
    if t.is_nan() {
        return f64::NAN;
    }
    let tail = 0.5 * regularized_beta(df / (df + t * t), df / 2.0, 0.5);
    if t >= 0.0 { tail } else { 1.0 - tail }
}

/// P(Z > z) for the standard normal (erfc by Chebyshev fitting, relative error under 1.2e-7).
pub(crate) fn normal_sf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    0.5 * if x >= 0.0 { erfc } else { 2.0 - erfc }
}

/// The two-sided p of a statistic `t` that is Student's t with `df` degrees of freedom (normal
/// when `df` is infinite) under the null hypothesis.
pub(crate) fn two_sided_t(t: f64, df: f64) -> f64 {
    (2.0 * student_t_sf(t.abs(), df)).clamp(0.0, 1.0)
}

/// The `p`-quantile of Beta(a, b), by bisection of its CDF.
fn beta_quantile(p: f64, a: f64, b: f64) -> f64 {
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if regularized_beta(mid, a, b) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-12 {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// The Clopper–Pearson ("exact") two-sided 95 % confidence interval of a binomial rate from
/// `k` events in `n` trials. `k` and `n` may be fractional: an effective count (the power
/// examples scale dependent pairs down to the number of independent ones).
pub fn clopper_pearson(k: f64, n: f64) -> (f64, f64) {
    if n <= 0.0 {
        return (0.0, 1.0);
    }
    let k = k.clamp(0.0, n);
    let tail = 0.025;
    let lower = if k <= 0.0 {
        0.0
    } else {
        beta_quantile(tail, k, n - k + 1.0)
    };
    let upper = if k >= n {
        1.0
    } else {
        beta_quantile(1.0 - tail, k + 1.0, n - k)
    };
    (lower, upper)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_match_tabulated_values() {
        // ln Γ: Γ(5) = 24, Γ(0.5) = √π.
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
        // Normal: P(Z > 1.959964) = 0.025, P(Z > 3) = 0.0013499.
        assert!((normal_sf(1.959_964) - 0.025).abs() < 1e-7);
        assert!((normal_sf(3.0) - 0.001_349_9).abs() < 1e-7);
        assert!((normal_sf(-1.0) - 0.841_344_7).abs() < 1e-6);
        // Student's t: t(0.975, 8) = 2.306004, t(0.995, 19) = 2.860935, t(0.975, 1) = 12.7062.
        assert!((student_t_sf(2.306_004, 8.0) - 0.025).abs() < 1e-6);
        assert!((two_sided_t(2.860_935, 19.0) - 0.01).abs() < 1e-6);
        assert!((student_t_sf(12.706_2, 1.0) - 0.025).abs() < 1e-6);
        assert!((student_t_sf(-2.306_004, 8.0) - 0.975).abs() < 1e-6);
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
