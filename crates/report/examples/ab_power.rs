//! The paired gate's (`chipbench ab`) false-alarm and detection rates on **real** jobs, recorded by
//! `scripts/ab-power.sh`: N A/A jobs (AA_DIR: the suite against itself) and N A/B jobs (AB_DIR:
//! the suite against its twin, whose bert-tiny has about 5 % more MACs).
//!
//! - **jobs**: each job's own verdicts. A/A: a job with any `regressed` cell is a false alarm of
//!   that gate run. A/B: `regressed` on the cell whose sides run different files is a detection;
//!   on another cell, a false alarm. 95 % intervals: Clopper–Pearson over the N jobs.
//! - **resampled**: a few dozen jobs cannot show a 1 % rate, so many more gate runs are drawn from
//!   the recorded process pairs (the unit of the paired statistics): per model, as many pairs as a
//!   job has, drawn with replacement from every job of the kind, judged together with Holm as a
//!   job is. The draws share their pairs, so the 95 % interval is Clopper–Pearson of the same rate
//!   over only as many gate runs as the recorded pairs make without sharing one (pairs recorded /
//!   pairs per job): conservative, as in `gate_real_power`.
//!
//! `cargo run --release -p chipbench-report --example ab_power -- AA_DIR AB_DIR [--draws N] [--seed S]`

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use chipbench_core::paired::{AbRun, PairedCell, Round};
use chipbench_report::gate::clopper_pearson;
use chipbench_report::gate::paired::judge;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(aa), Some(ab)) = (args.first(), args.get(1)) else {
        eprintln!("usage: ab_power AA_DIR AB_DIR [--draws N] [--seed S]");
        return ExitCode::from(2);
    };
    let option = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (draws, seed) = (option("--draws", 2000) as usize, option("--seed", 0));
    let (aa, ab) = match (load(Path::new(aa)), load(Path::new(ab))) {
        (Ok(aa), Ok(ab)) if !aa.is_empty() && !ab.is_empty() => (aa, ab),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
        _ => {
            eprintln!("no ab.json in {} or {}", args[0], args[1]);
            return ExitCode::FAILURE;
        }
    };
    println!("| paired gate (chipbench ab) | rate | 95 % CI | over |");
    println!("|---|---|---|---|");
    let line = |what: &str, hits: usize, n: usize, over: String| {
        let (lo, hi) = clopper_pearson(hits as f64, n as f64);
        println!(
            "| {what} | {:.1} % ({hits}/{n}) | {:.1} - {:.1} % | {over} |",
            100.0 * hits as f64 / n as f64,
            100.0 * lo,
            100.0 * hi
        );
    };
    let jobs =
        |runs: &[AbRun], count: &dyn Fn(&AbRun) -> bool| runs.iter().filter(|r| count(r)).count();
    line(
        "false alarms per gate run, A/A jobs",
        jobs(&aa, &|r| r.cells.iter().any(regressed)),
        aa.len(),
        format!("{} jobs", aa.len()),
    );
    line(
        "detection of the twin's ~5 % slowdown, A/B jobs",
        jobs(&ab, &|r| r.cells.iter().any(|c| changed(c) && regressed(c))),
        ab.len(),
        format!("{} jobs", ab.len()),
    );
    line(
        "false alarms on the unchanged cells, A/B jobs",
        jobs(&ab, &|r| {
            r.cells.iter().any(|c| !changed(c) && regressed(c))
        }),
        ab.len(),
        format!("{} jobs", ab.len()),
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (kind, runs) in [("A/A", &aa), ("A/B", &ab)] {
        let (draw, independent) = Resampler::new(runs);
        let (mut any_false, mut detected) = (0, 0);
        for _ in 0..draws {
            let mut cells = draw.job(&mut rng);
            judge(&mut cells, &runs[0].settings);
            any_false += usize::from(cells.iter().any(|c| !changed(c) && regressed(c)));
            detected += usize::from(cells.iter().any(|c| changed(c) && regressed(c)));
        }
        let scale =
            |hits: usize| (hits as f64 * independent as f64 / draws as f64).round() as usize;
        let over = format!(
            "{draws} gate runs drawn from the process pairs of {} jobs",
            runs.len()
        );
        let rate = |what: &str, hits: usize| {
            let (lo, hi) = clopper_pearson(scale(hits) as f64, independent as f64);
            println!(
                "| {what} | {:.2} % ({hits}/{draws}) | {:.1} - {:.1} % | {over} |",
                100.0 * hits as f64 / draws as f64,
                100.0 * lo,
                100.0 * hi
            );
        };
        rate(
            &format!("false alarms per gate run, resampled {kind}"),
            any_false,
        );
        if kind == "A/B" {
            rate("detection, resampled A/B", detected);
        }
    }
    ExitCode::SUCCESS
}

fn regressed(cell: &PairedCell) -> bool {
    cell.verdict
        .as_ref()
        .is_some_and(|v| v.verdict == "regressed")
}

/// The sides run different model files.
fn changed(cell: &PairedCell) -> bool {
    cell.a.path != cell.b.path
}

fn load(dir: &Path) -> Result<Vec<AbRun>, String> {
    let mut runs = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let file = entry.path().join("ab.json");
        if let Ok(text) = std::fs::read_to_string(&file) {
            runs.push(serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?);
        }
    }
    Ok(runs)
}

/// Every recorded process pair of every cell of the jobs, by model, for drawing new jobs.
struct Resampler<'a> {
    /// Per model: a cell to copy the sides from, and every process pair's rounds.
    models: BTreeMap<String, (&'a PairedCell, Vec<Vec<Round>>)>,
    processes: usize,
}

impl<'a> Resampler<'a> {
    /// The resampler, and how many gate runs its pairs make without sharing one.
    fn new(runs: &'a [AbRun]) -> (Resampler<'a>, usize) {
        let mut models: BTreeMap<String, (&PairedCell, Vec<Vec<Round>>)> = BTreeMap::new();
        for cell in runs
            .iter()
            .flat_map(|r| &r.cells)
            .filter(|c| c.error.is_none())
        {
            let entry = models
                .entry(cell.a.model.clone())
                .or_insert((cell, Vec::new()));
            let mut pairs: BTreeMap<usize, Vec<Round>> = BTreeMap::new();
            for r in &cell.rounds {
                pairs.entry(r.process).or_default().push(r.clone());
            }
            entry.1.extend(pairs.into_values());
        }
        let processes = runs[0].settings.processes;
        let fewest = models.values().map(|(_, p)| p.len()).min().unwrap_or(0);
        (
            Resampler { models, processes },
            (fewest / processes.max(1)).max(1),
        )
    }

    /// A job drawn from the recorded pairs: per model, `processes` pairs with replacement.
    fn job(&self, rng: &mut impl Rng) -> Vec<PairedCell> {
        self.models
            .values()
            .map(|(template, pairs)| {
                let mut cell = (*template).clone();
                cell.verdict = None;
                cell.rounds = (0..self.processes)
                    .flat_map(|process| {
                        let drawn = &pairs[rng.random_range(0..pairs.len())];
                        drawn.iter().map(move |r| Round {
                            process,
                            ..r.clone()
                        })
                    })
                    .collect();
                cell
            })
            .collect()
    }
}
