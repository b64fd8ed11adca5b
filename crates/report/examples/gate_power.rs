//! The power of the regression gate at its default settings, on synthetic samples shaped like a
//! real run: for every measured cell of RUN.json, lognormal samples with the cell's sample count,
//! median and spread (the log-samples' median absolute deviation x 1.4826, a spread that the
//! occasional scheduler outlier does not inflate), compared as A/A pairs (same distribution) and
//! as A/B pairs with a 5 % and a 10 % slowdown.
//!
//! Prints, per cell and overall, the detection rate (`regressed` verdicts on A/B pairs) and the
//! false-alarm rate (`regressed` verdicts on A/A pairs).
//!
//! `cargo run --release -p chipbench-report --example gate_power -- RUN.json [--pairs N]
//!  [--samples N] [--run-offset SD] [--sessions N] [--history N] [--threshold T] [--alpha A] [--min-samples N] [--seed S]`
//!
//! `--samples N` gives every cell N samples instead of its own count (how the gate does at the
//! `--quick` minimum of 20, say).
//!
//! `--run-offset SD` multiplies each simulated session by exp(N(0, SD)): the drift from one
//! session (and run) to the next of a real machine (buffer placement, frequency, neighbours),
//! which one session's samples cannot show. Each simulated run records `--sessions N` (default 5,
//! as `bench` does) session medians, the first being the session its samples come from.
//!
//! `--history N` makes the baseline N runs (each with its own drift), as
//! `compare --against-history N` uses them: the median of the N runs' figures.

use std::process::ExitCode;

use chipbench_core::result::{RunResult, Status};
use chipbench_core::stats;
use chipbench_report::gate::{Baseline, GateSettings, Verdict, compare};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal};

struct Options {
    run: String,
    pairs: usize,
    samples: Option<usize>,
    run_offset: f64,
    sessions: usize,
    history: usize,
    seed: u64,
    settings: GateSettings,
}

fn parse() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut o = Options {
        run: String::new(),
        pairs: 500,
        samples: None,
        run_offset: 0.0,
        sessions: 5,
        history: 1,
        seed: 1,
        settings: GateSettings::default(),
    };
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |text: String| text.parse::<f64>().map_err(|e| format!("'{text}': {e}"));
        match a.as_str() {
            "--pairs" => o.pairs = number(value("--pairs")?)? as usize,
            "--samples" => o.samples = Some(number(value("--samples")?)? as usize),
            "--history" => o.history = (number(value("--history")?)? as usize).max(1),
            "--sessions" => o.sessions = (number(value("--sessions")?)? as usize).max(1),
            "--run-offset" => o.run_offset = number(value("--run-offset")?)?,
            "--threshold" => o.settings.threshold = number(value("--threshold")?)?,
            "--alpha" => o.settings.alpha = number(value("--alpha")?)?,
            "--min-samples" => o.settings.min_samples = number(value("--min-samples")?)? as usize,
            "--seed" => o.seed = number(value("--seed")?)? as u64,
            other if o.run.is_empty() && !other.starts_with('-') => o.run = other.to_string(),
            other => return Err(format!("unexpected argument '{other}'")),
        }
    }
    if o.run.is_empty() {
        return Err("usage: gate_power RUN.json [--pairs N] [--samples N] [--run-offset SD] [--sessions N] [--history N] [--threshold T] [--alpha A] \
                    [--min-samples N] [--seed S]"
            .into());
    }
    Ok(o)
}

/// Median and robust log-spread of a cell's samples.
fn shape(samples: &[f64]) -> (f64, f64) {
    let mut logs: Vec<f64> = samples.iter().map(|x| x.ln()).collect();
    logs.sort_by(f64::total_cmp);
    let centre = stats::percentile(&logs, 0.5);
    let mut deviations: Vec<f64> = logs.iter().map(|l| (l - centre).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    (centre.exp(), 1.4826 * stats::percentile(&deviations, 0.5))
}

/// `template` with cell `index` alone: its sessions' medians, and its samples replaced by `n`
/// lognormal draws around the first session's.
fn synthetic(
    template: &RunResult,
    index: usize,
    sessions: Vec<f64>,
    sigma: f64,
    n: usize,
    rng: &mut ChaCha8Rng,
) -> RunResult {
    let mut run = template.clone();
    // Each simulated run is a run of its own (a run compared with itself has no run-to-run noise).
    run.run_id = format!("synthetic-{:016x}", rng.random::<u64>());
    let mut cell = run.cells.swap_remove(index);
    let dist =
        LogNormal::new(sessions[0].ln(), sigma.max(1e-9)).expect("finite lognormal parameters");
    cell.session_p50_ms = sessions;
    cell.samples_ms = (0..n).map(|_| dist.sample(rng)).collect();
    cell.latency_ms = stats::summarize(&cell.samples_ms);
    let mean = cell.samples_ms.iter().sum::<f64>() / n as f64;
    cell.throughput_per_s = Some(1000.0 / mean);
    run.cells = vec![cell];
    run
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
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    let drift = Normal::new(0.0, o.run_offset.max(0.0)).expect("finite drift");
    println!("gate settings: {}", o.settings.describe());
    println!(
        "{} pairs per case; samples: lognormal with each cell's n, median and robust spread; session-to-session \
         drift sd {}, {} session(s) per run; baseline: {} run(s)\n",
        o.pairs, o.run_offset, o.sessions, o.history
    );
    println!(
        "{:<44} {:>6} {:>7}  {:>12} {:>12}  {:>12} {:>13} {:>13}",
        "cell (from the run)",
        "n",
        "sigma",
        "detect 5 %",
        "detect 10 %",
        "false alarm",
        "A/A unchanged",
        "A/A inconcl."
    );
    let (mut detected5, mut detected10, mut alarms, mut total) = (0usize, 0usize, 0usize, 0usize);
    for (index, cell) in template.cells.iter().enumerate() {
        if cell.status != Status::Ok || cell.samples_ms.len() < 2 {
            continue;
        }
        let n = o.samples.unwrap_or(cell.samples_ms.len());
        let (median, sigma) = shape(&cell.samples_ms);
        let verdicts = |slowdown: f64, rng: &mut ChaCha8Rng| -> Vec<Verdict> {
            (0..o.pairs)
                .map(|_| {
                    let sessions = |level: f64, rng: &mut ChaCha8Rng| -> Vec<f64> {
                        (0..o.sessions)
                            .map(|_| level * drift.sample(rng).exp())
                            .collect()
                    };
                    let runs: Vec<RunResult> = (0..o.history)
                        .map(|_| {
                            let a = sessions(median, rng);
                            synthetic(&template, index, a, sigma, n, rng)
                        })
                        .collect();
                    let b = sessions(median * slowdown, rng);
                    let b = synthetic(&template, index, b, sigma, n, rng);
                    let baseline = Baseline {
                        label: "a".into(),
                        runs: runs.iter().collect(),
                        window: None,
                    };
                    compare(&baseline, &b, &o.settings, None).cells[0].verdict
                })
                .collect()
        };
        let count = |v: &[Verdict], which: Verdict| v.iter().filter(|&&x| x == which).count();
        let aa = verdicts(1.0, &mut rng);
        let ab5 = verdicts(1.05, &mut rng);
        let ab10 = verdicts(1.10, &mut rng);
        let rate = |k: usize| format!("{:.1} %", 100.0 * k as f64 / o.pairs as f64);
        let label = format!(
            "{} {} {}:{}",
            cell.model.name, cell.model.variant, cell.backend.name, cell.backend.device
        );
        println!(
            "{label:<44} {n:>6} {sigma:>7.4}  {:>12} {:>12}  {:>12} {:>13} {:>13}",
            rate(count(&ab5, Verdict::Regressed)),
            rate(count(&ab10, Verdict::Regressed)),
            rate(count(&aa, Verdict::Regressed)),
            rate(count(&aa, Verdict::Unchanged)),
            rate(count(&aa, Verdict::Inconclusive)),
        );
        detected5 += count(&ab5, Verdict::Regressed);
        detected10 += count(&ab10, Verdict::Regressed);
        alarms += count(&aa, Verdict::Regressed);
        total += o.pairs;
    }
    if total == 0 {
        eprintln!("error: {}: no measured cell to take the noise from", o.run);
        return ExitCode::from(2);
    }
    let pct = |k: usize| 100.0 * k as f64 / total as f64;
    println!(
        "\noverall: detection of a 5 % slowdown {:.1} % ({detected5}/{total}), of a 10 % slowdown {:.1} %; \
         false alarms {:.2} % ({alarms}/{total})",
        pct(detected5),
        pct(detected10),
        pct(alarms)
    );
    println!("goal: >= 95 % detection of a 5 % slowdown, <= 1 % false alarms");
    ExitCode::SUCCESS
}
