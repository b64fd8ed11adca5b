//! `--find-peak`: the highest query rate whose server run is VALID, by bracketing (doubling or
//! halving from a first guess) and then bisection until the bracket is within a relative
//! tolerance. Each probe is a run of its own; the search only decides which rate comes next
//! (the harness runs each probe as a cell: `crate::scenario::search`).

use serde::{Deserialize, Serialize};

/// `--find-peak`, on the planned cell that stands for the searches of one sweep point.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeakSettings {
    /// `--peak-tolerance`, as a fraction: stop when (invalid - valid) / valid is at most this.
    pub tolerance: f64,
    /// `--find-peak-repeats`: searches run one after another, each with arrivals seeded anew.
    pub repeats: usize,
}

/// `--peak-tolerance`'s default, percent.
pub const DEFAULT_TOLERANCE_PERCENT: f64 = 2.0;

/// Probes of one search at the most: bracketing from a first guess within a factor of 16 of the
/// peak takes 5, bisection of a factor-2 bracket to 2 % another 6.
pub const MAX_PROBES: usize = 12;

/// Which search a probe cell belongs to (1-based, of `--find-peak-repeats`) and which probe it
/// is (0: the offline run that sets the first rate; then 1, 2, ... in the order probed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOf {
    pub search: usize,
    pub probe: usize,
}

/// How a search runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeakSearch {
    /// The first rate probed, queries per second.
    pub start_qps: f64,
    /// Stop when (invalid - valid) / valid is at most this.
    pub tolerance: f64,
    /// Give up after this many probes (the bracket is then reported as it stands).
    pub max_probes: usize,
}

/// One probed rate and its verdict.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Probe {
    pub qps: f64,
    pub valid: bool,
}

/// What a search found.
#[derive(Clone, Debug, PartialEq)]
pub struct Peak {
    /// The highest rate probed VALID; `None` when none was.
    pub valid_qps: Option<f64>,
    /// The lowest rate probed INVALID above it; `None` when none was.
    pub invalid_qps: Option<f64>,
    /// The bracket is within the tolerance.
    pub converged: bool,
    pub probes: Vec<Probe>,
    /// A probe gave no verdict (it failed, or the run was stopped): the search ended there, its
    /// bracket as it stood.
    pub stopped: bool,
}

/// Searches with `probe`, which runs the system at a rate and says whether the run was VALID,
/// or `None` when it gives no verdict, which ends the search.
pub fn find_peak(search: &PeakSearch, mut probe: impl FnMut(f64) -> Option<bool>) -> Peak {
    let mut probes = Vec::new();
    let mut run = |qps: f64, probes: &mut Vec<Probe>| -> Result<bool, ()> {
        let valid = probe(qps).ok_or(())?;
        probes.push(Probe { qps, valid });
        Ok(valid)
    };
    let (lo, hi, stopped) = match bracket_and_bisect(search, &mut run, &mut probes) {
        Ok((lo, hi)) => (lo, hi, false),
        Err((lo, hi)) => (lo, hi, true),
    };
    let within = |lo: f64, hi: f64| (hi - lo) / lo <= search.tolerance;
    Peak {
        valid_qps: lo,
        invalid_qps: hi,
        converged: matches!((lo, hi), (Some(l), Some(h)) if within(l, h)),
        probes,
        stopped,
    }
}

type Bracket = (Option<f64>, Option<f64>);

/// The bracket found, or the bracket as it stood when a probe gave no verdict.
fn bracket_and_bisect(
    search: &PeakSearch,
    run: &mut impl FnMut(f64, &mut Vec<Probe>) -> Result<bool, ()>,
    probes: &mut Vec<Probe>,
) -> Result<Bracket, Bracket> {
    let (mut lo, mut hi): (Option<f64>, Option<f64>) = (None, None);
    let mut qps = search.start_qps;
    // Bracket: double while valid, halve while invalid, until both ends are known.
    while (lo.is_none() || hi.is_none()) && probes.len() < search.max_probes {
        qps = significant(qps);
        if run(qps, probes).map_err(|_| (lo, hi))? {
            lo = Some(qps);
            qps *= 2.0;
        } else {
            hi = Some(qps);
            qps /= 2.0;
        }
    }
    let within = |lo: f64, hi: f64| (hi - lo) / lo <= search.tolerance;
    while let (Some(l), Some(h)) = (lo, hi) {
        if within(l, h) || probes.len() >= search.max_probes {
            break;
        }
        let mid = significant((l + h) / 2.0);
        if run(mid, probes).map_err(|_| (lo, hi))? {
            lo = Some(mid);
        } else {
            hi = Some(mid);
        }
    }
    Ok((lo, hi))
}

/// `qps` to 4 significant figures, so that probe rates read well in cell ids (`-q1234`, not
/// `-q1234.0703125`); far finer than any tolerance the search accepts (0.5 % at the least).
pub fn significant(qps: f64) -> f64 {
    if !(qps.is_finite() && qps > 0.0) {
        return qps;
    }
    let digits = 3 - qps.log10().floor() as i32;
    if digits >= 0 {
        let scale = 10f64.powi(digits);
        (qps * scale).round() / scale
    } else {
        let scale = 10f64.powi(-digits);
        (qps / scale).round() * scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(start_qps: f64) -> PeakSearch {
        PeakSearch {
            start_qps,
            tolerance: 0.02,
            max_probes: 40,
        }
    }

    #[test]
    fn finds_a_capacity_from_below_and_from_above() {
        let capacity = 1234.5;
        for start in [10.0, 1000.0, 50_000.0] {
            let peak = find_peak(&search(start), |q| Some(q <= capacity));
            let (lo, hi) = (peak.valid_qps.unwrap(), peak.invalid_qps.unwrap());
            assert!(peak.converged);
            assert!(lo <= capacity && capacity < hi, "{lo} {hi}");
            assert!((capacity - lo) / capacity <= 0.02, "{lo}");
            assert_eq!(
                peak.probes.last().map(|p| p.qps == lo || p.qps == hi),
                Some(true)
            );
            for p in &peak.probes {
                assert_eq!(p.qps, significant(p.qps));
            }
        }
    }

    #[test]
    fn rates_keep_four_significant_figures_and_print_short() {
        assert_eq!(significant(1234.0703125).to_string(), "1234");
        assert_eq!(significant(123_456.7).to_string(), "123500");
        assert_eq!(significant(0.123_456).to_string(), "0.1235");
        assert_eq!(significant(77.777_77).to_string(), "77.78");
    }

    #[test]
    fn a_system_never_valid_has_no_peak_and_a_probe_without_verdict_ends_the_search() {
        let peak = find_peak(&search(100.0), |_| Some(false));
        assert_eq!(
            (peak.valid_qps, peak.converged, peak.stopped),
            (None, false, false)
        );
        assert_eq!(peak.probes.len(), 40);
        // Valid at 100 and 200, then the probe at 400 fails: the bracket is kept as it stood.
        let failed = find_peak(&search(100.0), |q| (q < 300.0).then_some(true));
        assert_eq!(
            (failed.valid_qps, failed.invalid_qps, failed.stopped),
            (Some(200.0), None, true)
        );
        assert_eq!(failed.probes.len(), 2);
    }
}
