//! The procedure for one matched cell: its figures, the bootstrap of the ratio with the noise
//! terms that apply, the p-value of a test of the metric itself; and the notes on what else
//! changed. The verdict waits for the other cells: `matching` adjusts the p-values of all tested
//! cells of the comparison together (Holm) before the rule of `decision` applies.

use chipbench_core::result::CellResult;
use chipbench_core::stats;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::comparison::{CellComparison, CellKey, Verdict};
use super::estimation::{
    Replicator, RunToRun, effective_df, geometric_mean, median, quantile_test_p, session_spread,
    spread_distribution, throughput_windows, welch_p,
};
use super::format::host_change;
use super::settings::{GateSettings, HOST_CHECK_NOISE, Metric};
use super::special::two_sided_t;

/// The p-value of a test of the metric itself on the samples of both sides (pooled over the
/// baseline's runs), `None` when the metric has no per-inference samples to test:
/// - `p50`: Mann–Whitney U (a shift of the latency distribution moves its median);
/// - `p90`, `p99`: the two-sample quantile test (how many samples of each side lie above the
///   pooled quantile: a worse tail at an unchanged median shows here and not in a rank test);
/// - `throughput`: Welch's t test of the mean latency (throughput is inferences / wall time, the
///   inverse of the mean: a few slow inferences lower it without moving the median); for a
///   load-generator cell, of its windows' rates (see [`test_samples`]);
/// - `energy`: none. The meter reads one window per cell, so there are no per-inference energy
///   samples; the ratio's own p (its bootstrap, see `compare_cell`) is the test.
pub(super) fn sample_test_p(metric: Metric, baseline: &[f64], current: &[f64]) -> Option<f64> {
    match metric {
        Metric::P50 | Metric::TtftP50 | Metric::TpotP50 => stats::mann_whitney_p(baseline, current),
        Metric::P90 | Metric::P99 | Metric::TtftP99 | Metric::TpotP99 => {
            quantile_test_p(baseline, current, metric.quantile()?)
        }
        Metric::Throughput => welch_p(baseline, current),
        Metric::Energy => None,
    }
}

/// The samples the metric's test compares: the rates of the throughput windows for the
/// throughput of load-generator cells on both sides (workers overlap, so latency does not give
/// throughput), the latency samples (pooled over the baseline's runs) otherwise.
fn test_samples(
    metric: Metric,
    baseline: &[&CellResult],
    current: &CellResult,
) -> (Vec<f64>, Vec<f64>) {
    let windows = |c: &CellResult| throughput_windows(c).map(<[f64]>::to_vec);
    if metric == Metric::Throughput
        && let (Some(base), Some(cur)) = (
            baseline
                .iter()
                .map(|c| windows(c))
                .collect::<Option<Vec<_>>>(),
            windows(current),
        )
    {
        return (base.concat(), cur);
    }
    let pooled = baseline
        .iter()
        .flat_map(|c| metric.samples(c).into_owned())
        .collect();
    (pooled, metric.samples(current).into_owned())
}

/// Compares one cell on both sides; `baseline` holds its usable records, one per baseline run.
/// Returns the comparison with its verdict pending (`true`: the cell was tested, `decide` gives
/// its verdict once the family's p-values are adjusted) or final (`false`: it could not be
/// tested, and the reason says why).
pub(super) fn compare_cell(
    key: CellKey,
    baseline: &[&CellResult],
    current: &CellResult,
    host_speed_ratio: Option<f64>,
    settings: &GateSettings,
    same_run: bool,
    rng: &mut impl Rng,
) -> (CellComparison, bool) {
    let metric = settings.metric_for(current);
    let run_noise = if same_run { 0.0 } else { settings.run_noise };
    let n_baseline = baseline
        .iter()
        .map(|c| metric.samples(c).len())
        .min()
        .unwrap_or(0);
    let n_current = metric.samples(current).len();
    let notes = notes(baseline, current, metric);
    let (pooled, current_samples) = test_samples(metric, baseline, current);
    let samples_p = sample_test_p(metric, &pooled, &current_samples);
    let mut base_values: Vec<f64> = baseline.iter().filter_map(|c| metric.value(c)).collect();
    let current_value = metric.value(current);
    let mut result = CellComparison {
        key,
        metric,
        baseline: f64::NAN,
        current: current_value.unwrap_or(f64::NAN),
        ratio: f64::NAN,
        ci95: (f64::NAN, f64::NAN),
        p_value: samples_p.unwrap_or(f64::NAN),
        p_adjusted: f64::NAN,
        n_baseline,
        n_current,
        verdict: Verdict::Inconclusive,
        reason: String::new(),
        notes,
        host_speed_ratio,
    };
    let load_generated =
        current.scenario_run.is_some() || baseline.iter().any(|c| c.scenario_run.is_some());
    if load_generated && metric == Metric::P50 {
        result.reason = "a load-generator cell (offline, server, multi-stream) is gated on its \
            throughput or p99 (--metric throughput, --metric p99), not on its median by \
            Mann-Whitney: queries that wait behind each other are not independent samples"
            .into();
        return (result, false);
    }
    if let Some(host) = host_speed_ratio.filter(|h| h.ln().abs() > HOST_CHECK_NOISE) {
        result.notes.push(format!(
            "the host ran {} around this cell (speed check)",
            host_change(host)
        ));
    }
    let (Some(current_value), false) = (current_value, base_values.len() < baseline.len()) else {
        result.reason = format!("no {} figure on both sides", metric.describe());
        return (result, false);
    };
    result.baseline = median(&mut base_values);
    result.ratio = current_value / result.baseline;
    let required = settings.required_samples(metric);
    if n_baseline.min(n_current) < required {
        let why = if required > settings.min_samples {
            format!(
                " (the {} needs {} samples beyond it on each side, or its bootstrap replicates are mostly the \
                 few largest samples)",
                metric.name(),
                super::settings::TAIL_SAMPLES
            )
        } else {
            String::new()
        };
        result.reason = format!(
            "too few samples: {n_baseline} baseline / {n_current} current, at least {required} needed on each side{why}"
        );
        return (result, false);
    }
    // The median against a history whose runs all have sessions: each run's figure is the
    // geometric mean of its session medians, replicated from their spread.
    let history_sessions = metric == Metric::P50
        && baseline.len() >= 2
        && baseline
            .iter()
            .chain([&current])
            .all(|c| geometric_mean(&c.session_p50_ms).is_some());
    let replicator = |c: &CellResult| {
        if history_sessions {
            Replicator::sessions(c)
        } else {
            Replicator::new(metric, c)
        }
    };
    let base_reps: Option<Vec<Replicator>> = baseline.iter().map(|c| replicator(c)).collect();
    let (Some(base_reps), Some(cur_rep)) = (base_reps, replicator(current)) else {
        result.reason = "cannot bootstrap the figure".into();
        return (result, false);
    };
    if history_sessions {
        base_values = baseline
            .iter()
            .filter_map(|c| geometric_mean(&c.session_p50_ms).map(|(g, _)| g))
            .collect();
        result.baseline = median(&mut base_values);
        result.current = geometric_mean(&current.session_p50_ms).map_or(f64::NAN, |(g, _)| g);
        result.ratio = result.current / result.baseline;
        result
            .notes
            .push("p50 here: each run's geometric mean of its session medians".into());
    }
    let sessions = session_spread(baseline.iter().copied().chain([current])).filter(|_| !same_run);
    if let Some((spread, _)) = sessions.filter(|(s, _)| *s > 0.0) {
        result.notes.push(format!(
            "fresh sessions vary by ±{:.1} % (sd of their medians); the CI carries that",
            spread * 100.0
        ));
    }
    let resamples = settings.resamples.max(1);
    let by_sessions = match (metric, baseline, sessions) {
        (Metric::P50, [base], Some((spread, df))) => geometric_mean(&base.session_p50_ms)
            .zip(geometric_mean(&current.session_p50_ms))
            .map(|(b, c)| (b, c, spread, df)),
        _ => None,
    };
    // The ratio's replicates and its own two-sided p. The p comes from the replicates' spread
    // rather than from counting the replicates beyond 1: Holm's adjustment asks for p-values
    // down to alpha / (number of cells), below what a count of a few thousand replicates
    // resolves.
    let (mut ratios, p_ratio): (Vec<f64>, f64) = match by_sessions {
        Some(((b, kb), (c, kc), spread, df)) => {
            result.baseline = b;
            result.current = c;
            result.ratio = c / b;
            result.notes.push(format!(
                "p50 here: geometric mean of the medians of {kb} baseline and {kc} current sessions; CI and p \
                 from Student's t on their logs ({df} degrees of freedom)"
            ));
            let estimated = spread.powi(2) * (1.0 / kb as f64 + 1.0 / kc as f64);
            let known = 2.0 * run_noise.powi(2);
            let se = (estimated + known).sqrt();
            let t = spread_distribution(estimated, df, known);
            let ratios = (0..resamples)
                .map(|_| {
                    let z = match &t {
                        Some(t) => t.sample(rng),
                        None => StandardNormal.sample(rng),
                    };
                    result.ratio * (se * z).exp()
                })
                .collect();
            let df = effective_df(estimated, df, known).unwrap_or(f64::INFINITY);
            (ratios, log_ratio_p(result.ratio, se, df))
        }
        None => {
            let run_to_run = RunToRun::new(
                sessions.filter(|_| !history_sessions),
                &base_values,
                run_noise,
            );
            let mut scratch = vec![0.0; base_reps.len()];
            let ratios: Vec<f64> = (0..resamples)
                .map(|_| {
                    for slot in scratch.iter_mut() {
                        *slot = base_reps[rng.random_range(0..base_reps.len())].draw(rng);
                    }
                    cur_rep.draw(rng) * run_to_run.draw(rng) / median(&mut scratch)
                })
                .collect();
            // The heaviest tail among the parts drawn: Student's t of the run-to-run factor or
            // of the current run's sessions; normal when none is estimated.
            let df = run_to_run
                .df()
                .into_iter()
                .chain(cur_rep.df())
                .fold(f64::INFINITY, f64::min);
            let p = log_ratio_p(result.ratio, log_sd(&ratios), df);
            (ratios, p)
        }
    };
    ratios.sort_by(f64::total_cmp);
    result.p_value = samples_p.map_or(p_ratio, |p| p.max(p_ratio));
    result.ci95 = (
        stats::percentile(&ratios, 0.025),
        stats::percentile(&ratios, 0.975),
    );
    (result, true)
}

/// The two-sided p of a log ratio with standard error `se` against no change, from Student's t
/// with `df` degrees of freedom (normal when infinite).
fn log_ratio_p(ratio: f64, se: f64, df: f64) -> f64 {
    let log = ratio.ln();
    if se > 0.0 && se.is_finite() {
        two_sided_t(log / se, df)
    } else if log == 0.0 {
        1.0
    } else {
        0.0
    }
}

/// The standard deviation of the logs of the replicates.
fn log_sd(ratios: &[f64]) -> f64 {
    let logs: Vec<f64> = ratios
        .iter()
        .filter(|r| **r > 0.0)
        .map(|r| r.ln())
        .collect();
    let n = logs.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean = logs.iter().sum::<f64>() / n;
    (logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
}

fn notes(baseline: &[&CellResult], current: &CellResult, metric: Metric) -> Vec<String> {
    let mut notes = Vec::new();
    if baseline
        .iter()
        .any(|b| b.model.sha256 != current.model.sha256 && !b.model.sha256.is_empty())
    {
        notes.push("the model file changed (sha256 differs)".into());
    }
    if let Some(b) = baseline
        .iter()
        .find(|b| b.backend.version != current.backend.version)
    {
        notes.push(format!(
            "backend version {} -> {}",
            b.backend.version, current.backend.version
        ));
    }
    if baseline.len() > 1 {
        notes.push(format!("baseline: median of {} runs", baseline.len()));
    }
    if let Some(e) = current.energy.as_ref().filter(|_| metric == Metric::Energy) {
        if let Some(b) = baseline
            .iter()
            .filter_map(|b| b.energy.as_ref())
            .find(|b| b.method != e.method)
        {
            notes.push(format!("energy method {} -> {}", b.method, e.method));
        }
        if e.is_estimate() {
            notes.push(format!(
                "energy is an estimate ({}), not a measurement",
                e.method
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use crate::gate::{CellComparison, GateSettings, Metric, Verdict, compare};
    use crate::test_support::{
        baseline_of, cell, load_generated, lognormal_samples, run_with, sample_run,
        with_estimated_energy,
    };
    use chipbench_core::result::RunResult;

    fn one_cell(id: &str, samples: Vec<f64>) -> RunResult {
        run_with(id, vec![cell("m", "fp32", "tract", samples, None)])
    }

    fn verdict(base: &RunResult, current: &RunResult, metric: Metric) -> CellComparison {
        let settings = GateSettings {
            metric,
            ..GateSettings::default()
        };
        compare(&baseline_of(base), current, &settings, None).cells[0].clone()
    }

    /// Latency samples whose largest `share` are `factor` times larger: a worse tail, the same
    /// median.
    fn stretched_tail(mut samples: Vec<f64>, share: f64, factor: f64) -> Vec<f64> {
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let cut = sorted[((1.0 - share) * sorted.len() as f64) as usize];
        samples
            .iter_mut()
            .filter(|x| **x >= cut)
            .for_each(|x| *x *= factor);
        samples
    }

    #[test]
    fn energy_alone_regresses() {
        // The same latency distribution at 10 % more power: only energy per inference moves.
        let base = run_with(
            "a",
            vec![with_estimated_energy(
                cell(
                    "m",
                    "fp32",
                    "tract",
                    lognormal_samples(1.0, 0.02, 400, 1),
                    None,
                ),
                6.25,
            )],
        );
        let more_power = run_with(
            "b",
            vec![with_estimated_energy(
                cell(
                    "m",
                    "fp32",
                    "tract",
                    lognormal_samples(1.0, 0.02, 400, 2),
                    None,
                ),
                6.875,
            )],
        );
        let r = verdict(&base, &more_power, Metric::Energy);
        assert_eq!(r.verdict, Verdict::Regressed, "{}", r.reason);
        assert!((r.ratio - 1.1).abs() < 0.005, "{}", r.ratio);
        assert_ne!(
            verdict(&base, &more_power, Metric::P50).verdict,
            Verdict::Regressed
        );
    }

    #[test]
    fn a_worse_tail_at_the_same_median_regresses_the_p99() {
        let base = one_cell("a", lognormal_samples(1.0, 0.02, 3000, 1));
        let tail = one_cell(
            "b",
            stretched_tail(lognormal_samples(1.0, 0.02, 3000, 2), 0.02, 1.25),
        );
        let r = verdict(&base, &tail, Metric::P99);
        assert_eq!(r.verdict, Verdict::Regressed, "{}", r.reason);
        assert!(r.ratio > 1.2, "{}", r.ratio);
        let median = verdict(&base, &tail, Metric::P50);
        assert_ne!(median.verdict, Verdict::Regressed, "{}", median.reason);
    }

    #[test]
    fn a_few_slow_inferences_regress_the_throughput_alone() {
        // One inference in 20 three times slower: the mean rises by 10 %, the median hardly.
        let mut slow = lognormal_samples(1.0, 0.02, 400, 2);
        slow.iter_mut().step_by(20).for_each(|x| *x *= 3.0);
        let (base, slow) = (
            one_cell("a", lognormal_samples(1.0, 0.02, 400, 1)),
            one_cell("b", slow),
        );
        let r = verdict(&base, &slow, Metric::Throughput);
        assert_eq!(r.verdict, Verdict::Regressed, "{}", r.reason);
        assert!((r.ratio - 1.0 / 1.1).abs() < 0.01, "{}", r.ratio);
        let median = verdict(&base, &slow, Metric::P50);
        assert_ne!(median.verdict, Verdict::Regressed, "{}", median.reason);
    }

    #[test]
    fn a_p99_of_too_few_samples_is_inconclusive() {
        // 600 samples a side: the p99 lies among the 6 largest, and the 3 % largest of the
        // current side are 50 % slower. The figure cannot be trusted to ±3 %, whatever the tests.
        let base = one_cell("a", lognormal_samples(1.0, 0.02, 600, 1));
        let tail = one_cell(
            "b",
            stretched_tail(lognormal_samples(1.0, 0.02, 600, 2), 0.03, 1.5),
        );
        let r = verdict(&base, &tail, Metric::P99);
        assert_eq!(r.verdict, Verdict::Inconclusive, "{}", r.reason);
        assert!(
            r.reason.starts_with("too few samples")
                && r.reason.contains("at least 1000")
                && r.reason.contains("10 samples beyond it"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn a_ten_percent_slowdown_regresses_and_a_speedup_improves() {
        let base = run_with(
            "a",
            vec![cell(
                "m",
                "fp32",
                "tract",
                lognormal_samples(1.0, 0.03, 400, 1),
                None,
            )],
        );
        let slow = run_with(
            "b",
            vec![cell(
                "m",
                "fp32",
                "tract",
                lognormal_samples(1.10, 0.03, 400, 2),
                None,
            )],
        );
        let fast = run_with(
            "c",
            vec![cell(
                "m",
                "fp32",
                "tract",
                lognormal_samples(0.90, 0.03, 400, 3),
                None,
            )],
        );
        let s = GateSettings::default();
        let c = compare(&baseline_of(&base), &slow, &s, None);
        assert_eq!(
            c.cells[0].verdict,
            Verdict::Regressed,
            "{}",
            c.cells[0].reason
        );
        assert!(
            c.cells[0].ci95.0 > 1.05 && c.cells[0].ci95.1 < 1.15,
            "{:?}",
            c.cells[0].ci95
        );
        assert!(c.regressed());
        let c = compare(&baseline_of(&base), &fast, &s, None);
        assert_eq!(
            c.cells[0].verdict,
            Verdict::Improved,
            "{}",
            c.cells[0].reason
        );
        // Throughput goes the other way: a slowdown lowers it, and that is the regression.
        let t = GateSettings {
            metric: Metric::Throughput,
            ..GateSettings::default()
        };
        let c = compare(&baseline_of(&base), &slow, &t, None);
        assert!(c.cells[0].ratio < 0.95);
        assert_eq!(
            c.cells[0].verdict,
            Verdict::Regressed,
            "{}",
            c.cells[0].reason
        );
    }

    #[test]
    fn few_or_noisy_samples_are_inconclusive_with_the_reason() {
        let base = run_with(
            "a",
            vec![cell(
                "m",
                "fp32",
                "tract",
                lognormal_samples(1.0, 0.03, 10, 1),
                None,
            )],
        );
        let cur = run_with(
            "b",
            vec![cell(
                "m",
                "fp32",
                "tract",
                lognormal_samples(1.2, 0.03, 10, 2),
                None,
            )],
        );
        let c = compare(&baseline_of(&base), &cur, &GateSettings::default(), None);
        assert_eq!(c.cells[0].verdict, Verdict::Inconclusive);
        assert!(
            c.cells[0].reason.starts_with("too few samples"),
            "{}",
            c.cells[0].reason
        );
        let base = run_with(
            "a",
            vec![cell(
                "m",
                "fp32",
                "tract",
                lognormal_samples(1.0, 0.5, 60, 1),
                None,
            )],
        );
        let cur = run_with(
            "b",
            vec![cell(
                "m",
                "fp32",
                "tract",
                lognormal_samples(1.0, 0.5, 60, 2),
                None,
            )],
        );
        let c = compare(&baseline_of(&base), &cur, &GateSettings::default(), None);
        assert_eq!(
            c.cells[0].verdict,
            Verdict::Inconclusive,
            "{}",
            c.cells[0].reason
        );
        let reason = &c.cells[0].reason;
        assert!(
            reason.contains("too noisy") || reason.contains("not significant"),
            "{reason}"
        );
    }

    #[test]
    fn energy_is_compared_with_its_method_stated() {
        let run = sample_run();
        let settings = GateSettings {
            metric: Metric::Energy,
            ..GateSettings::default()
        };
        let c = compare(&baseline_of(&run), &run, &settings, None);
        let with_energy: Vec<&CellComparison> =
            c.cells.iter().filter(|r| r.key.model == "mlp").collect();
        assert_eq!(with_energy.len(), 3);
        for r in &with_energy {
            assert_eq!(r.verdict, Verdict::Unchanged, "{}", r.reason);
            assert!(
                r.notes.iter().any(|n| n.contains("is an estimate")),
                "{:?}",
                r.notes
            );
        }
        let without = c
            .cells
            .iter()
            .find(|r| r.key.model == "resnet-mini")
            .unwrap();
        assert_eq!(without.verdict, Verdict::Inconclusive);
        assert!(
            without.reason.contains("no energy per inference figure"),
            "{}",
            without.reason
        );

        let mut slower = run.clone();
        for cell in &mut slower.cells {
            cell.samples_ms.iter_mut().for_each(|x| *x *= 1.1);
            if let Some(e) = cell.energy.as_mut() {
                e.joules_per_inference *= 1.1;
            }
        }
        let c = compare(&baseline_of(&run), &slower, &settings, None);
        let mlp = c.cells.iter().find(|r| r.key.model == "mlp").unwrap();
        assert_eq!(mlp.verdict, Verdict::Regressed, "{}", mlp.reason);
        assert!((mlp.ratio - 1.1).abs() < 1e-9);
    }

    #[test]
    fn a_partly_estimated_energy_figure_is_noted_as_an_estimate() {
        let with_method = |method: &str| {
            let mut run = sample_run();
            for e in run.cells.iter_mut().filter_map(|c| c.energy.as_mut()) {
                e.method = method.into();
            }
            run
        };
        let settings = GateSettings {
            metric: Metric::Energy,
            ..GateSettings::default()
        };
        let estimate_notes = |run: &_| {
            compare(&baseline_of(run), run, &settings, None)
                .cells
                .iter()
                .filter(|r| r.notes.iter().any(|n| n.contains("is an estimate")))
                .count()
        };
        let mixed = with_method("measured:hwmon + estimated:cpu-time x active-power");
        assert_eq!(estimate_notes(&mixed), 3);
        assert_eq!(estimate_notes(&with_method("measured:rapl")), 0);
    }

    fn offline_cell(id: &str, samples: Vec<f64>, windows: Vec<f64>) -> RunResult {
        run_with(
            id,
            vec![load_generated(
                cell("m", "fp32", "tract", samples, None),
                "offline",
                "b1-c2",
                windows,
            )],
        )
    }

    /// Throughput of a load-generator cell is tested on its windows' rates: the same latencies
    /// with 10 % fewer samples per second regress it; its median is not gated at all.
    #[test]
    fn load_generator_throughput_is_gated_on_its_windows_and_never_its_median() {
        let windows = |level: f64| -> Vec<f64> {
            (0..10)
                .map(|i| level * (1.0 + 0.01 * (i % 3) as f64))
                .collect()
        };
        let latencies = lognormal_samples(1.0, 0.05, 400, 1);
        let base = offline_cell("a", latencies.clone(), windows(1000.0));
        let slower = offline_cell("b", latencies.clone(), windows(900.0));
        let r = verdict(&base, &slower, Metric::Throughput);
        assert_eq!(r.verdict, Verdict::Regressed, "{}", r.reason);
        assert!((r.ratio - 0.9).abs() < 1e-9, "{}", r.ratio);
        let same = offline_cell("c", latencies, windows(1000.0));
        assert_eq!(
            verdict(&base, &same, Metric::Throughput).verdict,
            Verdict::Unchanged
        );
        let median = verdict(&base, &slower, Metric::P50);
        assert_eq!(median.verdict, Verdict::Inconclusive);
        assert!(
            median.reason.contains("--metric throughput"),
            "{}",
            median.reason
        );
    }

    /// Without --metric each cell is gated on its scenario's figure: single-stream on its median,
    /// offline on throughput (a 10 % drop regresses it with the latencies unchanged), server and
    /// multi-stream on their p99 (a worse tail regresses them with the median unchanged).
    #[test]
    fn without_a_metric_each_scenario_is_gated_on_its_own_figure() {
        let windows = |level: f64| -> Vec<f64> {
            (0..10)
                .map(|i| level * (1.0 + 0.01 * (i % 3) as f64))
                .collect()
        };
        let latencies = lognormal_samples(1.0, 0.05, 4000, 1);
        let tail = stretched_tail(latencies.clone(), 0.05, 1.5);
        let run = |id: &str, level: f64, samples: &[f64]| {
            let mut cells = vec![cell("m", "fp32", "tract", samples.to_vec(), None)];
            for (scenario, point) in [
                ("offline", "c2"),
                ("server", "c1-q100"),
                ("multi-stream", "c1-k8"),
            ] {
                cells.push(load_generated(
                    cell("m", "fp32", "tract", samples.to_vec(), None),
                    scenario,
                    point,
                    windows(level),
                ));
            }
            run_with(id, cells)
        };
        let settings = GateSettings {
            per_scenario: true,
            ..GateSettings::default()
        };
        let base = run("a", 1000.0, &latencies);
        // Offline 10 % slower, the other cells' tails worse at the same median.
        let mut current = run("b", 900.0, &tail);
        current.cells[0].samples_ms = latencies.clone();
        current.cells[1].samples_ms = latencies.clone();
        let c = compare(&baseline_of(&base), &current, &settings, None);
        let got: Vec<(Metric, Verdict)> = c.cells.iter().map(|r| (r.metric, r.verdict)).collect();
        assert_eq!(
            got,
            [
                (Metric::P50, Verdict::Unchanged),
                (Metric::Throughput, Verdict::Regressed),
                (Metric::P99, Verdict::Regressed),
                (Metric::P99, Verdict::Regressed),
            ],
            "{:?}",
            c.cells.iter().map(|r| &r.reason).collect::<Vec<_>>()
        );
        assert!(c.settings.describe().contains("each scenario's own"));
    }

    /// A generate cell as `--scenario generate` records it: 40 requests of 32 decode steps.
    fn generate_cell(id: &str, ttft_ms: f64, tpot_ms: f64, seed: u64) -> RunResult {
        use chipbench_core::result::{GenerationRequest, GenerationRun};
        use chipbench_core::stats::summarize;
        let ttfts = lognormal_samples(ttft_ms, 0.03, 40, seed);
        let tpots = lognormal_samples(tpot_ms, 0.03, 40 * 32, seed + 100);
        let per_request: Vec<GenerationRequest> = ttfts
            .iter()
            .zip(tpots.chunks(32))
            .map(|(&ttft, steps)| GenerationRequest {
                ttft_ms: ttft,
                tpot_ms: steps.to_vec(),
                end_to_end_ms: ttft + steps.iter().sum::<f64>(),
                prompt_tokens_per_s: 16e3 / ttft,
                gen_tokens_per_s: 32e3 / steps.iter().sum::<f64>(),
            })
            .collect();
        let ends: Vec<f64> = per_request.iter().map(|r| r.end_to_end_ms).collect();
        let mut c = cell("gpt", "fp32", "tract", ends.clone(), None);
        c.scenario = "generate".into();
        c.generation = Some(GenerationRun {
            prompt_tokens: 16,
            gen_tokens: 32,
            batch: 1,
            requests: 40,
            ttft_ms: summarize(&ttfts).unwrap(),
            tpot_ms: summarize(&tpots).unwrap(),
            end_to_end_ms: summarize(&ends).unwrap(),
            prompt_tokens_per_s: 0.0,
            gen_tokens_per_s: 0.0,
            kv_cache_bytes: 0,
            cache_feedback: "host".into(),
            cache_copies_per_step: None,
            per_request,
            accuracy: None,
            serving: None,
        });
        run_with(id, vec![c])
    }

    /// TPOT and TTFT are gated on their own samples: decode steps 10 % slower regress tpot-p50
    /// (the default of a generate cell) and leave TTFT unchanged; a slower prefill regresses
    /// ttft-p50 alone.
    #[test]
    fn a_generate_cell_is_gated_on_its_tokens_times() {
        let base = generate_cell("a", 2.0, 0.25, 1);
        let slower_decode = generate_cell("b", 2.0, 0.275, 2);
        let slower_prefill = generate_cell("c", 2.2, 0.25, 3);
        let settings = GateSettings {
            per_scenario: true,
            ..GateSettings::default()
        };
        let by_default =
            compare(&baseline_of(&base), &slower_decode, &settings, None).cells[0].clone();
        assert_eq!(by_default.metric, Metric::TpotP50);
        assert_eq!(
            by_default.verdict,
            Verdict::Regressed,
            "{}",
            by_default.reason
        );
        assert!(
            (by_default.ratio - 1.1).abs() < 0.02,
            "{}",
            by_default.ratio
        );
        let ttft = verdict(&base, &slower_decode, Metric::TtftP50);
        assert_ne!(ttft.verdict, Verdict::Regressed, "{}", ttft.reason);
        let r = verdict(&base, &slower_prefill, Metric::TtftP50);
        assert_eq!(r.verdict, Verdict::Regressed, "{}", r.reason);
        assert!((r.ratio - 1.1).abs() < 0.03, "{}", r.ratio);
        let tpot = verdict(&base, &slower_prefill, Metric::TpotP50);
        assert_ne!(tpot.verdict, Verdict::Regressed, "{}", tpot.reason);
    }
}
