//! The verdict rule: significant and beyond the threshold, unless the host's own change explains
//! it; unchanged when the whole CI lies within the band; inconclusive otherwise, with the reason.

use super::comparison::Verdict;
use super::format::{fmt_p, host_change, pct, signed_pct};
use super::settings::{GateSettings, HOST_CHECK_NOISE, Metric};

/// The verdict rule of the gate's module documentation.
pub(super) fn decide(
    ratio: f64,
    ci: (f64, f64),
    p: f64,
    host_speed_ratio: Option<f64>,
    metric: Metric,
    settings: &GateSettings,
) -> (Verdict, String) {
    let upper = 1.0 + settings.threshold;
    let lower = 1.0 / upper;
    let significant = p < settings.alpha && (ci.0 > 1.0 || ci.1 < 1.0);
    let beyond = ratio > upper || ratio < lower;
    let worse = if metric.higher_is_better() {
        ratio < 1.0
    } else {
        ratio > 1.0
    };
    let band = format!("±{} %", pct(settings.threshold));
    let change = format!(
        "{} (CI {} .. {}, p = {})",
        signed_pct(ratio),
        signed_pct(ci.0),
        signed_pct(ci.1),
        fmt_p(p)
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
        format!(
            "{change}: beyond {band} but not significant (needs p < {} and a CI excluding 0 %)",
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
    use crate::test_support::{baseline_of, run_with_host};

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
    fn verdict_rule() {
        let s = GateSettings::default();
        assert_eq!(
            decide(1.10, (1.08, 1.12), 1e-9, None, Metric::P50, &s).0,
            Verdict::Regressed
        );
        assert_eq!(
            decide(1.10, (1.08, 1.12), 0.5, None, Metric::P50, &s).0,
            Verdict::Inconclusive
        );
        assert_eq!(
            decide(1.01, (1.005, 1.015), 1e-9, None, Metric::P50, &s).0,
            Verdict::Unchanged
        );
        assert_eq!(
            decide(0.90, (0.88, 0.92), 1e-9, None, Metric::Throughput, &s).0,
            Verdict::Regressed
        );
        assert_eq!(
            decide(1.0, (0.9, 1.1), 0.9, None, Metric::P50, &s).0,
            Verdict::Inconclusive
        );
    }
}
