//! `--find-peak`'s results in the reports: the highest query rate VALID under the latency bound,
//! per model variant, backend, device, threads and sweep point (one line or row per search).

use chipbench_core::result::{CellResult, PeakQps, RunResult};

/// `mlp fp32 on tract:cpu c2 (t1)`: what a search measured.
fn subject(p: &PeakQps) -> String {
    let threads = p.threads.map(|t| format!(" (t{t})")).unwrap_or_default();
    format!(
        "{} {} on {}:{} {}{threads}",
        p.model, p.variant, p.backend, p.device, p.point
    )
}

/// `p99 ≤ 10 ms`, or a generate search's bounds as given (`ttft:p99=2s,tpot:p99=200ms`).
pub fn bound(p: &PeakQps) -> String {
    if let Some(bounds) = &p.bounds {
        return bounds.clone();
    }
    format!(
        "p{} ≤ {} ms",
        p.percentile * 100.0,
        crate::fmt_ms(p.bound_ms)
    )
}

fn qps(q: Option<f64>) -> String {
    q.map_or_else(|| "none".into(), |q| format!("{q}"))
}

/// How a search ended: converged, or why not.
fn outcome(p: &PeakQps) -> String {
    match (&p.stopped, p.converged) {
        (_, true) => format!("within {} %", p.tolerance * 100.0),
        (Some(why), false) => format!("not converged: {why}"),
        (None, false) => "not converged".into(),
    }
}

/// One line per search, for the terminal.
pub fn terminal(run: &RunResult) -> Option<String> {
    if run.peaks.is_empty() {
        return None;
    }
    let mut out = String::from(
        "\npeak QPS under the latency bound (--find-peak: the highest rate probed VALID by the \
         early-stopping verdict, each probe a cell):\n",
    );
    for p in &run.peaks {
        out.push_str(&format!(
            "  {} search {}: {} QPS under {} (first INVALID: {}; {}; {} cells)\n",
            subject(p),
            p.search,
            qps(p.valid_qps),
            bound(p),
            qps(p.invalid_qps),
            outcome(p),
            p.cells.len()
        ));
    }
    Some(out)
}

/// A table with a row per search, for `report.md`.
pub fn markdown(run: &RunResult) -> Option<String> {
    if run.peaks.is_empty() {
        return None;
    }
    let mut out = String::from(
        "\n## Peak QPS under the latency bound\n\n`--find-peak`: the highest rate probed VALID \
         (MLPerf's early-stopping verdict on the measured query latencies), by bracketing then \
         bisection; each probe is a cell of the run.\n\n\
         | model | backend | point | search | bound | peak QPS | first INVALID | search ended | cells |\n\
         |---|---|---|---:|---|---:|---:|---|---:|\n",
    );
    for p in &run.peaks {
        out.push_str(&format!(
            "| {} {} | {}:{} | {} | {} | {} | {} | {} | {} | {} |\n",
            p.model,
            p.variant,
            p.backend,
            p.device,
            p.point,
            p.search,
            bound(p),
            qps(p.valid_qps),
            qps(p.invalid_qps),
            outcome(p).replace('|', "/"),
            p.cells.len()
        ));
    }
    Some(out)
}

/// The search whose peak `cell` is (the probe at its VALID rate), if any.
pub fn peak_of<'r>(run: &'r RunResult, cell: &CellResult) -> Option<&'r PeakQps> {
    let point = cell.scenario_point.as_deref()?;
    let rate = cell.scenario_run.as_ref()?.target_qps?;
    run.peaks.iter().find(|p| {
        p.valid_qps == Some(rate)
            && p.model == cell.model.name
            && p.variant == cell.model.variant
            && p.backend == cell.backend.name
            && p.device == cell.backend.device
            && point.starts_with(&format!("{}-peak{}-p", p.point, p.search))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{cell, load_generated, run_with};

    #[test]
    fn each_search_has_a_line_and_a_row_and_its_peak_cell_is_found() {
        let mut probe = load_generated(
            cell("mlp", "fp32", "tract", vec![1.0; 20], None),
            "server",
            "c1-peak1-p4-q1200",
            vec![1200.0; 10],
        );
        probe.scenario_run.as_mut().unwrap().target_qps = Some(1200.0);
        let mut run = run_with("r", vec![probe.clone()]);
        assert_eq!(terminal(&run), None);
        run.peaks.push(PeakQps {
            model: "mlp".into(),
            variant: "fp32".into(),
            backend: "tract".into(),
            device: probe.backend.device.clone(),
            threads: Some(1),
            point: "c1".into(),
            search: 1,
            percentile: 0.99,
            bound_ms: 10.0,
            bounds: None,
            tolerance: 0.02,
            start_qps: Some(3000.0),
            start: "offline capacity of cell x".into(),
            valid_qps: Some(1200.0),
            invalid_qps: Some(1219.0),
            converged: true,
            cells: vec!["a".into(), "b".into()],
            stopped: None,
        });
        let line = terminal(&run).unwrap();
        assert!(
            line.contains("1200 QPS under p99 ≤ 10.0 ms (first INVALID: 1219; within 2 %"),
            "{line}"
        );
        let table = markdown(&run).unwrap();
        assert!(
            table.contains("| 1 | p99 ≤ 10.0 ms | 1200 | 1219 | within 2 % | 2 |"),
            "{table}"
        );
        assert!(peak_of(&run, &probe).is_some());
        probe.scenario_run.as_mut().unwrap().target_qps = Some(1219.0);
        assert!(peak_of(&run, &probe).is_none());
    }
}
