//! The power of the regression gate at its default settings, on synthetic runs shaped like a
//! real one: every measured cell of RUN.json, compared as whole runs (all cells of a run in one
//! comparison, as `chipbench compare` does, Holm's adjustment included), as A/A pairs (nothing
//! changed) and as A/B pairs in which every cell is 5 % or 10 % slower.
//!
//! What a simulated run is made of, and why it is less kind to the gate than the gate's own model:
//! - **Heavy-tailed samples.** A lognormal body with the cell's median and robust spread (the
//!   log-samples' median absolute deviation x 1.4826), and outliers: with the cell's own outlier
//!   share (samples beyond 3 robust sd above the median, less the 0.13 % a lognormal puts there)
//!   a sample is replaced by a Pareto draw above that cut, with the tail index the Hill estimator
//!   gives on the cell's outliers (3 when it has fewer than 5). `--outliers F` and
//!   `--tail-index A` set them for every cell; `--outliers 0` is the plain lognormal.
//! - **Session drift**: each session median is moved by exp(N(0, SD)), independently
//!   (`--session-drift SD`; default: the spread of the template's own session medians).
//! - **Run-level drift** shared by all cells of a run: every cell of a run is moved by the same
//!   exp(N(0, SD)) (`--run-drift SD`, default 0.005), which no session of the run can show; and
//!   with probability P a run falls into a slow phase of the host that slows all of it by F
//!   (`--slow-phase P --slow-phase-size F`, default 0 and 0.08): what the README's real A/A runs
//!   saw once in 20.
//!
//! Prints per cell the detection rate (`regressed` on A/B pairs) and the false-alarm rate
//! (`regressed` on A/A pairs), then the rates per cell and **per gate run** (any cell
//! `regressed`), each with its exact (Clopper–Pearson) 95 % confidence interval: the simulated
//! pairs are independent.
//!
//! `cargo run --release -p chipbench-report --example gate_power -- RUN.json [--pairs N]
//!  [--samples N] [--sessions N] [--session-drift SD] [--run-drift SD] [--slow-phase P]
//!  [--slow-phase-size F] [--outliers F] [--tail-index A] [--history N] [--metric M]
//!  [--threshold T] [--alpha A] [--run-noise SD] [--min-samples N] [--seed S]`
//!
//! `--samples N` gives every cell N samples instead of its own count (how the gate does at the
//! `--quick` minimum of 20, say). `--history N` makes the baseline N runs (each with its own
//! drift), as `compare --against-history N` uses them. `--run-offset` is the old name of
//! `--session-drift`.

use std::process::ExitCode;

use chipbench_core::result::{RunResult, Status};
use chipbench_core::stats;
use chipbench_report::gate::{
    Baseline, Comparison, GateSettings, Metric, Verdict, clopper_pearson, compare,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal};

struct Options {
    run: String,
    pairs: usize,
    samples: Option<usize>,
    session_drift: Option<f64>,
    run_drift: f64,
    slow_phase: f64,
    slow_phase_size: f64,
    outliers: Option<f64>,
    tail_index: Option<f64>,
    sessions: usize,
    history: usize,
    seed: u64,
    settings: GateSettings,
}

const USAGE: &str = "usage: gate_power RUN.json [--pairs N] [--samples N] [--sessions N] [--session-drift SD] \
    [--run-drift SD] [--slow-phase P] [--slow-phase-size F] [--outliers F] [--tail-index A] [--history N] \
    [--metric M] [--threshold T] [--alpha A] [--run-noise SD] [--min-samples N] [--seed S]";

fn parse() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut o = Options {
        run: String::new(),
        pairs: 500,
        samples: None,
        session_drift: None,
        run_drift: 0.005,
        slow_phase: 0.0,
        slow_phase_size: 0.08,
        outliers: None,
        tail_index: None,
        sessions: 5,
        history: 1,
        seed: 1,
        settings: GateSettings::default(),
    };
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |text: String| text.parse::<f64>().map_err(|e| format!("'{text}': {e}"));
        match a.as_str() {
            "--pairs" => o.pairs = (number(value("--pairs")?)? as usize).max(1),
            "--samples" => o.samples = Some(number(value("--samples")?)? as usize),
            "--history" => o.history = (number(value("--history")?)? as usize).max(1),
            "--sessions" => o.sessions = (number(value("--sessions")?)? as usize).max(1),
            "--session-drift" | "--run-offset" => {
                o.session_drift = Some(number(value("--session-drift")?)?)
            }
            "--run-drift" => o.run_drift = number(value("--run-drift")?)?,
            "--slow-phase" => o.slow_phase = number(value("--slow-phase")?)?,
            "--slow-phase-size" => o.slow_phase_size = number(value("--slow-phase-size")?)?,
            "--outliers" => o.outliers = Some(number(value("--outliers")?)?),
            "--tail-index" => o.tail_index = Some(number(value("--tail-index")?)?),
            "--metric" => {
                o.settings.metric = value("--metric")?
                    .parse::<Metric>()
                    .map_err(|e| e.to_string())?
            }
            "--threshold" => o.settings.threshold = number(value("--threshold")?)?,
            "--alpha" => o.settings.alpha = number(value("--alpha")?)?,
            "--run-noise" => o.settings.run_noise = number(value("--run-noise")?)?,
            "--min-samples" => o.settings.min_samples = number(value("--min-samples")?)? as usize,
            "--seed" => o.seed = number(value("--seed")?)? as u64,
            other if o.run.is_empty() && !other.starts_with('-') => o.run = other.to_string(),
            other => return Err(format!("unexpected argument '{other}'\n{USAGE}")),
        }
    }
    if o.run.is_empty() {
        return Err(USAGE.into());
    }
    Ok(o)
}

/// The sample model of one cell.
struct Shape {
    median: f64,
    sigma: f64,
    /// Share of samples replaced by a Pareto draw above `cut` (in robust sd above the median).
    outliers: f64,
    tail_index: f64,
}

/// Where the outliers start, in robust sd of the log-samples above their median.
const CUT: f64 = 3.0;

impl Shape {
    /// Median, robust log-spread and the outliers of a cell's samples.
    fn of(samples: &[f64], outliers: Option<f64>, tail_index: Option<f64>) -> Shape {
        let mut logs: Vec<f64> = samples.iter().map(|x| x.ln()).collect();
        logs.sort_by(f64::total_cmp);
        let centre = stats::percentile(&logs, 0.5);
        let mut deviations: Vec<f64> = logs.iter().map(|l| (l - centre).abs()).collect();
        deviations.sort_by(f64::total_cmp);
        let sigma = (1.4826 * stats::percentile(&deviations, 0.5)).max(1e-9);
        let cut = centre + CUT * sigma;
        let beyond: Vec<f64> = logs.iter().filter(|&&l| l > cut).map(|l| l - cut).collect();
        // A lognormal puts 0.135 % beyond 3 sd; the rest are the outliers.
        let share = (beyond.len() as f64 / logs.len() as f64 - 0.00135).max(0.0);
        // Hill's estimator of the Pareto tail index of the exceedances of the cut.
        let hill = (beyond.len() >= 5).then(|| beyond.len() as f64 / beyond.iter().sum::<f64>());
        Shape {
            median: centre.exp(),
            sigma,
            outliers: outliers.unwrap_or(share),
            tail_index: tail_index.or(hill).unwrap_or(3.0).max(0.5),
        }
    }

    /// `n` samples of a session whose median is `level`.
    fn draw(&self, level: f64, n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
        let body = LogNormal::new(level.ln(), self.sigma).expect("finite lognormal parameters");
        let cut = level * (CUT * self.sigma).exp();
        (0..n)
            .map(|_| {
                if rng.random::<f64>() < self.outliers {
                    let u: f64 = 1.0 - rng.random::<f64>();
                    cut * u.powf(-1.0 / self.tail_index)
                } else {
                    body.sample(rng)
                }
            })
            .collect()
    }
}

/// Pooled standard deviation of the log session medians of the template's cells.
fn session_spread(run: &RunResult) -> Option<f64> {
    let (mut squares, mut df) = (0.0, 0usize);
    for c in &run.cells {
        let logs: Vec<f64> = c
            .session_p50_ms
            .iter()
            .filter(|s| **s > 0.0)
            .map(|s| s.ln())
            .collect();
        if logs.len() >= 2 {
            let mean = logs.iter().sum::<f64>() / logs.len() as f64;
            squares += logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>();
            df += logs.len() - 1;
        }
    }
    (df > 0).then(|| (squares / df as f64).sqrt())
}

struct Simulation<'a> {
    template: &'a RunResult,
    /// The measured cells: index in the template and their sample model.
    cells: Vec<(usize, Shape)>,
    o: &'a Options,
    session_drift: f64,
}

impl Simulation<'_> {
    /// One simulated run: every measured cell, `slowdown` times slower, with the run's own drift.
    fn run(&self, slowdown: f64, rng: &mut ChaCha8Rng) -> RunResult {
        let mut run = self.template.clone();
        // Each simulated run is a run of its own (a run compared with itself has no run-to-run
        // noise).
        run.run_id = format!("synthetic-{:016x}", rng.random::<u64>());
        run.speed_checks.clear();
        let shared = Normal::new(0.0, self.o.run_drift.max(0.0))
            .expect("finite drift")
            .sample(rng)
            .exp();
        let phase = if rng.random::<f64>() < self.o.slow_phase {
            1.0 + self.o.slow_phase_size
        } else {
            1.0
        };
        let session = Normal::new(0.0, self.session_drift.max(0.0)).expect("finite drift");
        run.cells = self
            .cells
            .iter()
            .map(|(index, shape)| {
                let mut cell = self.template.cells[*index].clone();
                let level = shape.median * slowdown * shared * phase;
                let sessions: Vec<f64> = (0..self.o.sessions)
                    .map(|_| level * session.sample(rng).exp())
                    .collect();
                let n = self.o.samples.unwrap_or(cell.samples_ms.len());
                cell.samples_ms = shape.draw(sessions[0], n, rng);
                cell.session_p50_ms = sessions;
                cell.latency_ms = stats::summarize(&cell.samples_ms);
                let average = mean(&cell.samples_ms);
                if let Some(e) = cell.energy.as_mut() {
                    // The meter's window at the same power: energy follows the mean latency.
                    e.joules_per_inference *=
                        average / mean(&self.template.cells[*index].samples_ms);
                }
                cell.throughput_per_s = Some(1000.0 / average);
                cell
            })
            .collect();
        run
    }

    /// One gate run: a baseline (one run or a history) against a current run.
    fn gate(&self, slowdown: f64, rng: &mut ChaCha8Rng) -> Comparison {
        let runs: Vec<RunResult> = (0..self.o.history).map(|_| self.run(1.0, rng)).collect();
        let current = self.run(slowdown, rng);
        let baseline = Baseline {
            label: "a".into(),
            runs: runs.iter().collect(),
            window: None,
        };
        compare(&baseline, &current, &self.o.settings, None)
    }
}

fn mean(samples: &[f64]) -> f64 {
    samples.iter().sum::<f64>() / samples.len().max(1) as f64
}

/// A rate and its exact 95 % interval, "1.2 % (0.8 .. 1.9 %)".
fn rate(k: usize, n: usize) -> String {
    let (lo, hi) = clopper_pearson(k as f64, n as f64);
    format!(
        "{:.2} % (95 % CI {:.2} .. {:.2} %, {k}/{n})",
        100.0 * k as f64 / n.max(1) as f64,
        100.0 * lo,
        100.0 * hi
    )
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let template = match chipbench_report::load_run(std::path::Path::new(&o.run)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cells: Vec<(usize, Shape)> = template
        .cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.status == Status::Ok && c.samples_ms.len() >= 2)
        .map(|(i, c)| (i, Shape::of(&c.samples_ms, o.outliers, o.tail_index)))
        .collect();
    if cells.is_empty() {
        eprintln!("error: {}: no measured cell to take the noise from", o.run);
        return ExitCode::from(2);
    }
    let session_drift = o
        .session_drift
        .or_else(|| session_spread(&template))
        .unwrap_or(0.0);
    let sim = Simulation {
        template: &template,
        cells,
        o: &o,
        session_drift,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    println!("gate settings: {}", o.settings.describe());
    println!(
        "{} gate runs per case, {} cell(s) each; samples: lognormal body with each cell's n, median and robust \
         spread, Pareto outliers; {} session(s) per run drifting by sd {:.2} % each{}; run-level drift shared by \
         all cells sd {:.2} %; slow phase of +{:.0} % in {:.1} % of runs; baseline: {} run(s)\n",
        o.pairs,
        sim.cells.len(),
        o.sessions,
        100.0 * session_drift,
        if o.session_drift.is_none() {
            " (the template's session spread)"
        } else {
            ""
        },
        100.0 * o.run_drift,
        100.0 * o.slow_phase_size,
        100.0 * o.slow_phase,
        o.history
    );
    let cases: Vec<Vec<Comparison>> = [1.0, 1.05, 1.10]
        .iter()
        .map(|&slowdown| (0..o.pairs).map(|_| sim.gate(slowdown, &mut rng)).collect())
        .collect();
    let (aa, ab5, ab10) = (&cases[0], &cases[1], &cases[2]);
    println!(
        "{:<40} {:>6} {:>7} {:>9} {:>5}  {:>10} {:>11}  {:>11} {:>13} {:>13}",
        "cell (from the run)",
        "n",
        "sigma",
        "outliers",
        "tail",
        "detect 5 %",
        "detect 10 %",
        "false alarm",
        "A/A unchanged",
        "A/A inconcl."
    );
    let count = |runs: &[Comparison], cell: usize, which: Verdict| {
        runs.iter()
            .filter(|c| c.cells.get(cell).is_some_and(|r| r.verdict == which))
            .count()
    };
    let pct = |k: usize| format!("{:.1} %", 100.0 * k as f64 / o.pairs as f64);
    for (position, (index, shape)) in sim.cells.iter().enumerate() {
        let cell = &template.cells[*index];
        let label = format!(
            "{} {} {}:{}",
            cell.model.name, cell.model.variant, cell.backend.name, cell.backend.device
        );
        println!(
            "{label:<40} {:>6} {:>7.4} {:>8.2}% {:>5.1}  {:>10} {:>11}  {:>11} {:>13} {:>13}",
            o.samples.unwrap_or(cell.samples_ms.len()),
            shape.sigma,
            100.0 * shape.outliers,
            shape.tail_index,
            pct(count(ab5, position, Verdict::Regressed)),
            pct(count(ab10, position, Verdict::Regressed)),
            pct(count(aa, position, Verdict::Regressed)),
            pct(count(aa, position, Verdict::Unchanged)),
            pct(count(aa, position, Verdict::Inconclusive)),
        );
    }
    let cells_total = o.pairs * sim.cells.len();
    let all = |runs: &[Comparison]| runs.iter().map(|c| c.count(Verdict::Regressed)).sum();
    let any = |runs: &[Comparison]| runs.iter().filter(|c| c.regressed()).count();
    println!("\nper cell ({cells_total} cell pairs per case):");
    println!(
        "  detection of a 5 % slowdown:  {}",
        rate(all(ab5), cells_total)
    );
    println!(
        "  detection of a 10 % slowdown: {}",
        rate(all(ab10), cells_total)
    );
    println!(
        "  false alarms (A/A):           {}",
        rate(all(aa), cells_total)
    );
    println!(
        "per gate run ({} runs per case, {} cells each, Holm over the tested cells):",
        o.pairs,
        sim.cells.len()
    );
    println!(
        "  false alarms (any cell regressed on A/A): {}",
        rate(any(aa), o.pairs)
    );
    println!(
        "  every cell 5 % slower, all of them flagged: {}",
        rate(
            ab5.iter()
                .filter(|c| c.count(Verdict::Regressed) == sim.cells.len())
                .count(),
            o.pairs
        )
    );
    println!(
        "goal: >= 95 % detection of a 5 % slowdown per cell, <= 1 % false alarms per gate run \
         (the 95 % CI says whether the simulation shows it)"
    );
    ExitCode::SUCCESS
}
