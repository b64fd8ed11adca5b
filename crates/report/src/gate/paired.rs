//! The verdict on paired rounds (`chipbench ab`): both sides measured in one job, round by round,
//! so that what drifts between rounds (the host's phase, another tenant) touches both sides of a
//! round alike and cancels in the round's ratio.
//!
//! The unit of the statistics is the **process pair**, not the round. Each side's process has a
//! memory placement of its own that makes all its windows faster or slower by a few percent
//! (measured here: the same mlp on tract against itself in one pair of processes came out
//! between -2.9 % and +4.7 % in five runs, each with a tight CI over its rounds); rounds in one
//! pair of processes share that offset, so a test over rounds would take it for a change. The
//! rounds are therefore spread over several pairs of fresh processes, and:
//! - **estimate**: each pair's log ratio d = mean over its rounds of ln(B/A) of the sides' window
//!   medians; the ratio is exp(mean d), B's latency relative to A's.
//! - **95 % CI**: Student's t interval of mean d over the pairs (n - 1 degrees of freedom).
//! - **p-value**: Student's one-sample t test of d against 0, two-sided; Wilcoxon's signed-rank
//!   test of d is recorded beside it as a check that assumes no normality (with n pairs it cannot
//!   go below 2 / 2^n, too coarse to decide under Holm with 10 pairs).
//! - **verdict**: the gate's words and rule (see the module [`crate::gate`]): `regressed` /
//!   `improved` when the Holm-adjusted p over the run's cells is below alpha, the CI excludes 1
//!   and the ratio lies beyond the threshold; `unchanged` when the whole CI lies within the band;
//!   `inconclusive` otherwise, with the reason.

use chipbench_core::paired::{AbSettings, PairedCell, PairedVerdict};

use super::comparison::Verdict;
use super::decision::holm;
use super::format::{fmt_p, signed_pct};
use super::special::{t_quantile, two_sided_t};

/// The fewest process pairs a cell is judged on (4 degrees of freedom).
pub const MIN_PROCESSES: usize = 5;

/// Judges every cell with enough process pairs (Holm over all of them) and returns whether any
/// regressed.
pub fn judge(cells: &mut [PairedCell], settings: &AbSettings) -> bool {
    let logs: Vec<Option<Vec<f64>>> = cells
        .iter()
        .map(|c| {
            let d = pair_logs(c);
            (c.error.is_none() && d.len() >= MIN_PROCESSES).then_some(d)
        })
        .collect();
    let tests: Vec<Option<(f64, [f64; 2], f64)>> =
        logs.iter().map(|d| d.as_deref().map(t_test)).collect();
    let p: Vec<f64> = tests.iter().map(|t| t.map_or(f64::NAN, |t| t.2)).collect();
    let adjusted = holm(&p);
    let family = p.iter().filter(|p| !p.is_nan()).count();
    let mut regressed = false;
    for (i, cell) in cells.iter_mut().enumerate() {
        let (Some(d), Some((ratio, ci95, p))) = (&logs[i], tests[i]) else {
            if cell.error.is_none() {
                cell.error = Some(format!(
                    "{} process pairs with rounds, fewer than the {MIN_PROCESSES} a verdict needs",
                    pair_logs(cell).len()
                ));
            }
            continue;
        };
        let (verdict, reason) = decide(
            ratio,
            ci95,
            p,
            adjusted[i],
            family,
            settings.threshold,
            settings.alpha,
        );
        regressed |= verdict == Verdict::Regressed;
        cell.verdict = Some(PairedVerdict {
            ratio,
            ci95,
            p_value: p,
            signed_rank_p: signed_rank_p(d),
            p_adjusted: adjusted[i],
            verdict: verdict.label().into(),
            reason,
        });
    }
    regressed
}

/// Each process pair's mean ln(B/A) over its rounds, in the order the pairs ran.
fn pair_logs(cell: &PairedCell) -> Vec<f64> {
    let mut sums: Vec<(f64, usize)> = Vec::new();
    for r in &cell.rounds {
        let d = (r.b_ms / r.a_ms).ln();
        if !d.is_finite() {
            continue;
        }
        if sums.len() <= r.process {
            sums.resize(r.process + 1, (0.0, 0));
        }
        sums[r.process].0 += d;
        sums[r.process].1 += 1;
    }
    sums.into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(sum, n)| sum / n as f64)
        .collect()
}

/// exp(mean d), its 95 % t interval and the t test's two-sided p.
fn t_test(d: &[f64]) -> (f64, [f64; 2], f64) {
    let n = d.len() as f64;
    let mean = d.iter().sum::<f64>() / n;
    let variance = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let se = (variance / n).sqrt();
    let df = n - 1.0;
    let p = if se > 0.0 {
        two_sided_t(mean / se, df)
    } else if mean == 0.0 {
        1.0
    } else {
        0.0
    };
    let half = t_quantile(0.975, df) * se;
    (mean.exp(), [(mean - half).exp(), (mean + half).exp()], p)
}

/// Two-sided p of Wilcoxon's signed-rank test of `d` against 0 (zeros dropped, ties given their
/// mean rank), by the normal approximation with tie and continuity corrections.
pub fn signed_rank_p(d: &[f64]) -> f64 {
    let mut nonzero: Vec<f64> = d.iter().copied().filter(|x| *x != 0.0).collect();
    let n = nonzero.len();
    if n == 0 {
        return 1.0;
    }
    nonzero.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
    let (mut w_plus, mut ties) = (0.0, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && nonzero[j + 1].abs() == nonzero[i].abs() {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        w_plus += rank * nonzero[i..=j].iter().filter(|x| **x > 0.0).count() as f64;
        i = j + 1;
    }
    let n = n as f64;
    let mean = n * (n + 1.0) / 4.0;
    let variance = n * (n + 1.0) * (2.0 * n + 1.0) / 24.0 - ties / 48.0;
    if variance <= 0.0 {
        return 1.0;
    }
    let excess = ((w_plus - mean).abs() - 0.5).max(0.0);
    two_sided_t(excess / variance.sqrt(), f64::INFINITY)
}

fn decide(
    ratio: f64,
    [lo, hi]: [f64; 2],
    p: f64,
    adjusted: f64,
    family: usize,
    threshold: f64,
    alpha: f64,
) -> (Verdict, String) {
    let (up, down) = (1.0 + threshold, 1.0 / (1.0 + threshold));
    let significance = if family > 1 {
        format!(
            "p = {}, Holm-adjusted over {family} cells {}",
            fmt_p(p),
            fmt_p(adjusted)
        )
    } else {
        format!("p = {}", fmt_p(p))
    };
    let band = format!("±{:.0} %", threshold * 100.0);
    let significant = adjusted < alpha;
    if significant && lo > 1.0 && ratio > up {
        let why = format!("B is {} slower ({significance})", signed_pct(ratio));
        return (Verdict::Regressed, why);
    }
    if significant && hi < 1.0 && ratio < down {
        let why = format!("B is {} faster ({significance})", signed_pct(ratio));
        return (Verdict::Improved, why);
    }
    if lo >= down && hi <= up {
        let why = format!("the whole CI lies within {band} ({significance})");
        return (Verdict::Unchanged, why);
    }
    let why = if significant {
        format!("a significant change within {band} ({significance})")
    } else {
        format!("not significant at alpha {alpha} and the CI reaches past {band} ({significance})")
    };
    (Verdict::Inconclusive, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chipbench_core::paired::{Round, SideRecord};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    fn side() -> SideRecord {
        SideRecord {
            model: "mlp".into(),
            path: "mlp.onnx".into(),
            variant: "fp32".into(),
            backend: "tract:cpu".into(),
            threads: Some(1),
            settings: Default::default(),
            bin: "chipbench".into(),
            ort_lib: None,
            mode: "protocol".into(),
            mode_reason: None,
        }
    }

    fn settings() -> AbSettings {
        AbSettings {
            rounds: 30,
            processes: 10,
            window_s: 0.1,
            order: "random".into(),
            duet: false,
            threshold: 0.03,
            alpha: 0.01,
            seed: 1,
        }
    }

    /// Rounds under heavy shared drift: the host's speed wanders by up to ±30 % between rounds (a
    /// random walk both sides of a round share); each process has an offset of its own (sd 1.6 %,
    /// as measured between processes here) and each window 1 % noise; B is `change` times A.
    fn drifting_cell(change: f64, processes: usize, rounds_each: usize, seed: u64) -> PairedCell {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let own = Normal::new(0.0, 0.01).unwrap();
        let placement = Normal::new(0.0, 0.016).unwrap();
        let walk = Normal::new(0.0, 0.08).unwrap();
        let mut phase: f64 = 0.0;
        let mut rounds = Vec::new();
        for process in 0..processes {
            let (pa, pb) = (placement.sample(&mut rng), placement.sample(&mut rng));
            for _ in 0..rounds_each {
                phase = (phase + walk.sample(&mut rng)).clamp(-0.3, 0.3);
                let base = 1.0 + phase;
                rounds.push(Round {
                    process,
                    first: "a".into(),
                    a_ms: base * (1.0 + pa) * (1.0 + own.sample(&mut rng)),
                    b_ms: base * change * (1.0 + pb) * (1.0 + own.sample(&mut rng)),
                    a_inferences: 100,
                    b_inferences: 100,
                });
            }
        }
        PairedCell {
            a: side(),
            b: side(),
            rounds,
            verdict: None,
            error: None,
            provenance: Default::default(),
        }
    }

    #[test]
    fn a_five_percent_slowdown_under_drift_is_detected_and_pure_drift_is_not() {
        let (mut detected, mut false_alarms) = (0, 0);
        for seed in 0..500 {
            let mut slower = [drifting_cell(1.05, 10, 3, seed)];
            detected += usize::from(judge(&mut slower, &settings()));
            let v = slower[0].verdict.as_ref().unwrap();
            assert!(v.ci95[0] < v.ratio && v.ratio < v.ci95[1], "{v:?}");
            let mut same = [drifting_cell(1.0, 10, 3, 10_000 + seed)];
            false_alarms += usize::from(judge(&mut same, &settings()));
        }
        // The t test holds its level: about 0.5 % of unchanged cells come out regressed at
        // alpha 0.01 (half the significant ones are "improved"); 9 of 500 is the binomial's
        // 99.9 % bound. The seeds are fixed, so this never flakes.
        assert!(false_alarms <= 9, "{false_alarms} false alarms in 500");
        assert!(detected >= 490, "{detected} of 500 slowdowns found");
    }

    #[test]
    fn rounds_of_one_pair_of_processes_are_one_observation() {
        // One pair of processes whose B happens to sit 3 % slower: many tight rounds, no verdict.
        let mut cells = [drifting_cell(1.03, 1, 40, 5)];
        assert!(!judge(&mut cells, &settings()));
        assert!(cells[0].verdict.is_none());
        assert!(
            cells[0]
                .error
                .as_deref()
                .unwrap()
                .contains("1 process pairs"),
            "{:?}",
            cells[0].error
        );
    }

    #[test]
    fn an_improvement_and_an_unchanged_cell_get_their_words() {
        let mut cells = [drifting_cell(0.9, 10, 3, 7), drifting_cell(1.0, 30, 3, 8)];
        assert!(!judge(&mut cells, &settings()));
        let verdict = |i: usize| cells[i].verdict.as_ref().unwrap().verdict.clone();
        assert_eq!(verdict(0), "improved");
        assert_eq!(verdict(1), "unchanged", "{:?}", cells[1].verdict);
        assert!(cells[1].verdict.as_ref().unwrap().reason.contains("Holm"));
    }

    #[test]
    fn the_signed_rank_p_matches_known_values() {
        // All 10 differences positive: W+ = 55, mean 27.5, sd sqrt(96.25); z = (27.5 - 0.5)/9.81.
        let p = signed_rank_p(&(1..=10).map(f64::from).collect::<Vec<_>>());
        assert!((p - 0.005_922).abs() < 1e-4, "{p}");
        // Symmetric differences: no evidence at all.
        let p = signed_rank_p(&[-3.0, -2.0, -1.0, 1.0, 2.0, 3.0]);
        assert!((p - 1.0).abs() < 1e-12, "{p}");
        assert_eq!(signed_rank_p(&[0.0, 0.0]), 1.0);
    }

    #[test]
    fn the_t_test_matches_a_hand_computed_case() {
        // d = 0.01, 0.02, 0.03: mean 0.02, sd 0.01, se 0.01/sqrt(3), t = 3.4641 with 2 df.
        let (ratio, ci, p) = t_test(&[0.01, 0.02, 0.03]);
        assert!((ratio - 0.02f64.exp()).abs() < 1e-12);
        assert!((p - 0.07418).abs() < 1e-4, "{p}");
        // t(0.975, 2) = 4.3027: the interval is 0.02 ± 0.024841.
        assert!((ci[0].ln() - (0.02 - 0.024841)).abs() < 1e-5, "{ci:?}");
    }
}
