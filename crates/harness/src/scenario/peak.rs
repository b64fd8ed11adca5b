//! `--find-peak`: the highest query rate whose server run is VALID, by bracketing (doubling or
//! halving from a first guess) and then bisection until the bracket is within a relative
//! tolerance. Each probe is a run of its own; the search only decides which rate comes next.

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
}

/// Searches with `probe`, which runs the system at a rate and says whether the run was VALID.
/// A probe that fails ends the search with its error.
pub fn find_peak<E>(
    search: &PeakSearch,
    mut probe: impl FnMut(f64) -> Result<bool, E>,
) -> Result<Peak, E> {
    let mut probes = Vec::new();
    let mut run = |qps: f64, probes: &mut Vec<Probe>| -> Result<bool, E> {
        let valid = probe(qps)?;
        probes.push(Probe { qps, valid });
        Ok(valid)
    };
    let (mut lo, mut hi): (Option<f64>, Option<f64>) = (None, None);
    let mut qps = search.start_qps;
    // Bracket: double while valid, halve while invalid, until both ends are known.
    while (lo.is_none() || hi.is_none()) && probes.len() < search.max_probes {
        if run(qps, &mut probes)? {
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
        let mid = (l + h) / 2.0;
        if run(mid, &mut probes)? {
            lo = Some(mid);
        } else {
            hi = Some(mid);
        }
    }
    Ok(Peak {
        valid_qps: lo,
        invalid_qps: hi,
        converged: matches!((lo, hi), (Some(l), Some(h)) if within(l, h)),
        probes,
    })
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
            let peak = find_peak(&search(start), |q| Ok::<_, ()>(q <= capacity)).unwrap();
            let (lo, hi) = (peak.valid_qps.unwrap(), peak.invalid_qps.unwrap());
            assert!(peak.converged);
            assert!(lo <= capacity && capacity < hi, "{lo} {hi}");
            assert!((capacity - lo) / capacity <= 0.02, "{lo}");
            assert_eq!(
                peak.probes.last().map(|p| p.qps == lo || p.qps == hi),
                Some(true)
            );
        }
    }

    #[test]
    fn a_system_never_valid_has_no_peak_and_errors_end_the_search() {
        let peak = find_peak(&search(100.0), |_| Ok::<_, ()>(false)).unwrap();
        assert_eq!((peak.valid_qps, peak.converged), (None, false));
        assert_eq!(peak.probes.len(), 40);
        let failed = find_peak(&search(100.0), |q| {
            if q > 300.0 { Err("died") } else { Ok(true) }
        });
        assert_eq!(failed, Err("died"));
    }
}
