//! The verdict rule: significant and beyond the threshold, unless the host's own change explains
//! it; unchanged when the whole CI lies within the band; inconclusive otherwise, with the reason.
//! Significance is judged on p-values adjusted over all tested cells of the comparison (Holm), so
//! that one gate run, not one cell, has at most alpha chance of a false verdict.

use super::comparison::Verdict;
use super::format::{fmt_p, host_change, pct, signed_pct};
use super::settings::{GateSettings, HOST_CHECK_NOISE, Metric};

/// A cell's p-value and what Holm's adjustment made of it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Significance {
    pub p: f64,
    /// `p` adjusted over the `family` tested cells of the comparison.
    pub adjusted: f64,
    pub family: usize,
}

impl Significance {
    /// A cell tested alone.
    #[cfg(test)]
    fn alone(p: f64) -> Self {
        Significance {
            p,
            adjusted: p,
            family: 1,
        }
    }

    fn describe(&self) -> String {
        if self.family > 1 {
            format!(
                "p = {}, Holm-adjusted over {} cells {}",
                fmt_p(self.p),
                self.family,
                fmt_p(self.adjusted)
            )
        } else {
            format!("p = {}", fmt_p(self.p))
        }
    }
}

/// Holm's step-down adjustment: the i-th smallest of m p-values is multiplied by m - i + 1 and
/// the running maximum taken, so that comparing every adjusted p with alpha rejects exactly
/// what Holm's procedure rejects. NaN (untested) entries stay NaN and do not count in m.
pub(super) fn holm(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let m = order.len();
    let mut adjusted = vec![f64::NAN; p.len()];
    let mut running = 0.0_f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// The verdict rule of the gate's module documentation.
pub(super) fn decide(
    ratio: f64,
    ci: (f64, f64),
    p: Significance,
    host_speed_ratio: Option<f64>,
    metric: Metric,
    settings: &GateSettings,
) -> (Verdict, String) {
    let upper = 1.0 + settings.threshold;
    let lower = 1.0 / upper;
    let significant = p.adjusted < settings.alpha && (ci.0 > 1.0 || ci.1 < 1.0);
    let beyond = ratio > upper || ratio < lower;
    let worse = if metric.higher_is_better() {
        ratio < 1.0
    } else {
        ratio > 1.0
    };
    let band = format!("±{} %", pct(settings.threshold));
    let change = format!(
        "{} (CI {} .. {}, {})",
        signed_pct(ratio),
        signed_pct(ci.0),
        signed_pct(ci.1),
        p.describe()
    );
    if significant && beyond {
        if let Some(host) = host_speed_ratio.filter(|h| h.ln().abs() > HOST_CHECK_NOISE) {
            // A slower host raises latency and energy per inference and lowers throughput.
            let without_host = if metric.higher_is_better() {
                ratio * host
            } else {
                ratio / host
            };
            if (lower..=upper).contains(&without_host) {
                return (
                    Verdict::Inconclusive,
                    format!(
                        "{change}: significant and beyond {band}, but the host itself ran {} around this cell \
                         (speed check) and the change is {} once that is taken out: the code cannot be told \
                         from the host; rerun on a quieter host",
                        host_change(host),
                        signed_pct(without_host)
                    ),
                );
            }
        }
        let what = if worse {
            Verdict::Regressed
        } else {
            Verdict::Improved
        };
        return (what, format!("{change}: significant and beyond {band}"));
    }
    if ci.0 >= lower && ci.1 <= upper {
        return (
            Verdict::Unchanged,
            format!("{change}: the whole CI lies within {band}"),
        );
    }
    let why = if beyond {
        let adjusted = if p.family > 1 { "an adjusted " } else { "" };
        format!(
            "{change}: beyond {band} but not significant (needs {adjusted}p < {} and a CI excluding 0 %)",
            settings.alpha
        )
    } else {
        format!(
            "{change}: the CI reaches beyond {band}, too noisy to rule out a change that large; more samples would settle it"
        )
    };
    (Verdict::Inconclusive, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::compare;
    use crate::test_support::{baseline_of, cell, lognormal_samples, run_with, run_with_host};
    use chipbench_core::result::RunResult;

    #[test]
    fn a_change_the_host_explains_is_withheld_and_one_it_does_not_is_not() {
        let s = GateSettings::default();
        let base = run_with_host("a", 1.0, 1, 0.300);
        // 5 % slower while the host itself ran 4 % slower: +1 % once that is out.
        let slow_host = run_with_host("b", 1.05, 2, 0.312);
        let r = &compare(&baseline_of(&base), &slow_host, &s, None).cells[0];
        assert_eq!(r.verdict, Verdict::Inconclusive, "{}", r.reason);
        assert!(
            r.reason.contains("host itself ran 4.0 % slower"),
            "{}",
            r.reason
        );
        assert!((r.host_speed_ratio.unwrap() - 1.04).abs() < 1e-9);
        // The same slowdown on an unchanged host is a regression ...
        let same_host = run_with_host("c", 1.05, 2, 0.3005);
        let r = &compare(&baseline_of(&base), &same_host, &s, None).cells[0];
        assert_eq!(r.verdict, Verdict::Regressed, "{}", r.reason);
        // ... and so it is on a host that ran faster (the code is slower still).
        let fast_host = run_with_host("d", 1.05, 2, 0.290);
        let r = &compare(&baseline_of(&base), &fast_host, &s, None).cells[0];
        assert_eq!(r.verdict, Verdict::Regressed, "{}", r.reason);
        // A 10 % slowdown is beyond what a 4 % slower host explains.
        let much_slower = run_with_host("e", 1.10, 2, 0.312);
        let r = &compare(&baseline_of(&base), &much_slower, &s, None).cells[0];
        assert_eq!(r.verdict, Verdict::Regressed, "{}", r.reason);
        // Throughput: the slower host lowers it; the same pair is withheld.
        let t = GateSettings {
            metric: Metric::Throughput,
            ..GateSettings::default()
        };
        let r = &compare(&baseline_of(&base), &slow_host, &t, None).cells[0];
        assert_eq!(r.verdict, Verdict::Inconclusive, "{}", r.reason);
        // Runs without checks (older results) compare as before.
        let mut unchecked = slow_host.clone();
        unchecked.speed_checks.clear();
        let r = &compare(&baseline_of(&base), &unchecked, &s, None).cells[0];
        assert_eq!((r.verdict, r.host_speed_ratio), (Verdict::Regressed, None));
    }

    #[test]
    fn holm_adjusts_the_smallest_p_by_the_family_size() {
        let adjusted = holm(&[0.01, 0.04, f64::NAN, 0.03, 0.005]);
        let expected = [0.03, 0.06, f64::NAN, 0.06, 0.02];
        for (a, e) in adjusted.iter().zip(expected) {
            assert!(
                a.is_nan() && e.is_nan() || (a - e).abs() < 1e-12,
                "{adjusted:?}"
            );
        }
        assert_eq!(holm(&[0.5]), vec![0.5]);
        assert_eq!(holm(&[0.6, 0.7]), vec![1.0, 1.0]);
    }

    /// A run of `cells` cells, each 6 % slower than its baseline by the geometric mean of five
    /// sessions that spread by 2.3 %: alone, p is about 0.004.
    fn family(cells: usize) -> (RunResult, RunResult) {
        let sessions = |level: f64| -> Vec<f64> {
            [0.0, -2.0, -1.0, 1.0, 2.0]
                .iter()
                .map(|k| level * (k * 0.023 / 1.581_14_f64).exp())
                .collect()
        };
        let side = |id: &str, level: f64, seed: u64| {
            let cells = (0..cells)
                .map(|i| {
                    let mut c = cell(
                        &format!("m{i}"),
                        "fp32",
                        "tract",
                        lognormal_samples(level, 0.02, 400, seed + i as u64),
                        None,
                    );
                    c.session_p50_ms = sessions(level);
                    c
                })
                .collect();
            run_with(id, cells)
        };
        (side("a", 1.0, 1), side("b", 1.06, 100))
    }

    #[test]
    fn one_cell_of_a_large_family_needs_a_smaller_p() {
        let s = GateSettings {
            run_noise: 0.0,
            ..GateSettings::default()
        };
        let (base, current) = family(1);
        let c = compare(&baseline_of(&base), &current, &s, None);
        let r = &c.cells[0];
        assert_eq!(r.verdict, Verdict::Regressed, "{}", r.reason);
        assert!(r.p_value > 0.002 && r.p_value < 0.008, "{}", r.p_value);
        assert_eq!((c.tested, r.p_adjusted), (1, r.p_value));
        // Eight such cells in one comparison: each p times 8 is over alpha. Without the
        // adjustment, the chance of a false alarm of the whole gate would grow with the cells.
        let (base, current) = family(8);
        let c = compare(&baseline_of(&base), &current, &s, None);
        assert_eq!(c.tested, 8);
        for r in &c.cells {
            assert_eq!(r.verdict, Verdict::Inconclusive, "{}", r.reason);
            assert!(
                r.reason.contains("Holm-adjusted over 8 cells")
                    && r.reason.contains("needs an adjusted p < 0.01"),
                "{}",
                r.reason
            );
            assert!((r.p_adjusted - (8.0 * r.p_value).min(1.0)).abs() < 1e-12);
        }
        assert!(!c.regressed());
    }

    #[test]
    fn verdict_rule() {
        let s = GateSettings::default();
        assert_eq!(
            decide(
                1.10,
                (1.08, 1.12),
                Significance::alone(1e-9),
                None,
                Metric::P50,
                &s
            )
            .0,
            Verdict::Regressed
        );
        assert_eq!(
            decide(
                1.10,
                (1.08, 1.12),
                Significance::alone(0.5),
                None,
                Metric::P50,
                &s
            )
            .0,
            Verdict::Inconclusive
        );
        assert_eq!(
            decide(
                1.01,
                (1.005, 1.015),
                Significance::alone(1e-9),
                None,
                Metric::P50,
                &s
            )
            .0,
            Verdict::Unchanged
        );
        assert_eq!(
            decide(
                0.90,
                (0.88, 0.92),
                Significance::alone(1e-9),
                None,
                Metric::Throughput,
                &s
            )
            .0,
            Verdict::Regressed
        );
        assert_eq!(
            decide(
                1.0,
                (0.9, 1.1),
                Significance::alone(0.9),
                None,
                Metric::P50,
                &s
            )
            .0,
            Verdict::Inconclusive
        );
    }
}
