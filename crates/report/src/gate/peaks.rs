//! `--find-peak`'s peaks compared. A peak is one number per search, with no samples of its own:
//! with fewer than [`MIN_SEARCHES`] searches of a point on a side it is shown, not gated. From
//! that many on each side (`bench --find-peak-repeats`), each search's peak is a sample of
//! throughput's test (Welch's t test of the means), the change the ratio of the medians, and the
//! gated peaks share the comparison's alpha (Bonferroni: they are few, and apart from the cells'
//! Holm family).

use chipbench_core::result::{PeakQps, RunResult};
use serde::Serialize;

use super::comparison::{CellKey, Verdict};
use super::estimation::{median, welch_p};
use super::settings::GateSettings;

/// Searches a side needs for its peak to be gated.
pub const MIN_SEARCHES: usize = 3;

/// One searched point on both sides.
#[derive(Clone, Debug, Serialize)]
pub struct PeakComparison {
    /// As the search's planned cell: scenario `server/c1-peak`.
    pub key: CellKey,
    /// The bound searched under, `p99 ≤ 10.0 ms`.
    pub bound: String,
    /// The peak of each search, queries per second (a search that found no VALID rate has none).
    pub baseline: Vec<f64>,
    pub current: Vec<f64>,
    /// Median current / median baseline; NaN without a peak on a side.
    pub ratio: f64,
    /// Welch's p; NaN when not gated.
    pub p_value: f64,
    pub verdict: Verdict,
    pub reason: String,
}

fn key(p: &PeakQps) -> CellKey {
    CellKey {
        model: p.model.clone(),
        variant: p.variant.clone(),
        backend: p.backend.clone(),
        device: p.device.clone(),
        scenario: format!("server/{}-peak", p.point),
        threads: p.threads,
    }
}

fn peaks_of(runs: &[&RunResult], k: &CellKey, bound: &str) -> Vec<f64> {
    runs.iter()
        .flat_map(|r| &r.peaks)
        .filter(|p| key(p) == *k && crate::peaks::bound(p) == bound)
        .filter_map(|p| p.valid_qps)
        .collect()
}

/// Every point searched in `current` and in the baseline runs.
pub fn compare_peaks(
    baseline: &[&RunResult],
    current: &RunResult,
    settings: &GateSettings,
) -> Vec<PeakComparison> {
    let mut points: Vec<(CellKey, String)> = Vec::new();
    for p in &current.peaks {
        let point = (key(p), crate::peaks::bound(p));
        let in_baseline = baseline
            .iter()
            .flat_map(|r| &r.peaks)
            .any(|b| key(b) == point.0 && crate::peaks::bound(b) == point.1);
        if in_baseline && !points.contains(&point) {
            points.push(point);
        }
    }
    let mut out: Vec<PeakComparison> = points
        .into_iter()
        .map(|(key, bound)| {
            let base = peaks_of(baseline, &key, &bound);
            let cur = peaks_of(&[current], &key, &bound);
            let ratio = if base.is_empty() || cur.is_empty() {
                f64::NAN
            } else {
                median(&mut cur.clone()) / median(&mut base.clone())
            };
            PeakComparison {
                key,
                bound,
                baseline: base,
                current: cur,
                ratio,
                p_value: f64::NAN,
                verdict: Verdict::Inconclusive,
                reason: String::new(),
            }
        })
        .collect();
    let gated = out
        .iter()
        .filter(|c| c.baseline.len().min(c.current.len()) >= MIN_SEARCHES)
        .count();
    for c in &mut out {
        let fewest = c.baseline.len().min(c.current.len());
        if fewest < MIN_SEARCHES {
            c.reason = match fewest {
                0 => "not gated: no VALID rate on a side".into(),
                1 => "not gated: one search per side (a peak is one number; bench \
                      --find-peak-repeats 3 or more gives it samples)"
                    .into(),
                n => format!(
                    "not gated: {n} searches on a side, {MIN_SEARCHES} needed (bench \
                     --find-peak-repeats)"
                ),
            };
            continue;
        }
        let alpha = settings.alpha / gated as f64;
        let p = welch_p(&c.baseline, &c.current).unwrap_or(1.0);
        c.p_value = p;
        let upper = 1.0 + settings.threshold;
        let band = format!("±{} %", super::format::pct(settings.threshold));
        (c.verdict, c.reason) = if p < alpha && c.ratio < 1.0 / upper {
            (
                Verdict::Regressed,
                format!("the peak fell beyond {band}, Welch's p {p:.2e} < {alpha}"),
            )
        } else if p < alpha && c.ratio > upper {
            (
                Verdict::Improved,
                format!("the peak rose beyond {band}, Welch's p {p:.2e} < {alpha}"),
            )
        } else if (1.0 / upper..=upper).contains(&c.ratio) {
            (
                Verdict::Unchanged,
                format!("the medians differ by less than {band}"),
            )
        } else {
            (
                Verdict::Inconclusive,
                format!("beyond {band} but not significant (Welch's p {p:.2e}, alpha {alpha})"),
            )
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::run_with;

    fn with_peaks(id: &str, peaks: &[f64]) -> RunResult {
        let mut run = run_with(id, Vec::new());
        for (n, &q) in peaks.iter().enumerate() {
            run.peaks.push(PeakQps {
                model: "mlp".into(),
                variant: "fp32".into(),
                backend: "tract".into(),
                device: "cpu".into(),
                threads: Some(1),
                point: "c1".into(),
                search: n + 1,
                percentile: 0.99,
                bound_ms: 10.0,
                bounds: None,
                tolerance: 0.02,
                start_qps: Some(q * 2.0),
                start: "--target-qps".into(),
                valid_qps: Some(q),
                invalid_qps: Some(q * 1.02),
                converged: true,
                cells: Vec::new(),
                stopped: None,
            });
        }
        run
    }

    fn verdict(base: &[f64], current: &[f64]) -> PeakComparison {
        let (b, c) = (with_peaks("b", base), with_peaks("c", current));
        let out = compare_peaks(&[&b], &c, &GateSettings::default());
        assert_eq!(out.len(), 1);
        out[0].clone()
    }

    #[test]
    fn one_search_per_side_is_shown_not_gated() {
        let c = verdict(&[1000.0], &[500.0]);
        assert_eq!(c.verdict, Verdict::Inconclusive);
        assert!((c.ratio - 0.5).abs() < 1e-12);
        assert!(c.reason.contains("one search per side"), "{}", c.reason);
    }

    #[test]
    fn repeated_searches_gate_the_peak() {
        let base = [1000.0, 1010.0, 990.0, 1005.0, 995.0];
        let slower = [800.0, 810.0, 790.0, 805.0, 795.0];
        assert_eq!(verdict(&base, &slower).verdict, Verdict::Regressed);
        let faster: Vec<f64> = slower.iter().map(|q| q * 1.6).collect();
        assert_eq!(verdict(&base, &faster).verdict, Verdict::Improved);
        let same = [1001.0, 1008.0, 992.0, 1004.0, 996.0];
        assert_eq!(verdict(&base, &same).verdict, Verdict::Unchanged);
        // Two searches on a side are not enough.
        let few = verdict(&base, &slower[..2]);
        assert!(few.reason.contains("2 searches"), "{}", few.reason);
    }
}
