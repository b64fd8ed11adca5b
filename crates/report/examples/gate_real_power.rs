//! The regression gate's false-alarm and detection rates on **real** runs: N runs of the suite
//! (BASE_DIR) and N of its twin (TWIN_DIR: the suite with an mlp of about 5 % more MACs, see
//! `suite::generate_twin`), recorded by `scripts/gate-real-power.sh`, which drives this example.
//!
//! Pairs are drawn from the runs, each run whole, so that the drift a run shares across its
//! cells stays in the pairs:
//! - **A/A**: ordered pairs of two different runs of the same kind (base/base and twin/twin);
//!   every `regressed` verdict is a false alarm.
//! - **A/B**: a base run as the baseline, a twin run as the current run; a `regressed` verdict on
//!   a cell whose model file differs (the mlp) is a detection, one on another cell a false alarm.
//!
//! Each rate is the share over all such pairs (or `--pairs` of them drawn at random when there
//! are more). The pairs share runs, so they are not independent: the 95 % interval is the
//! Clopper–Pearson interval of the same rate over only as many pairs as the runs make without
//! sharing one (N/2 per kind for A/A, N for A/B). That is conservative: for a rate over all pairs
//! of N runs, Hoeffding's decomposition bounds the variance by that of N/2 (A/A) or N (A/B)
//! independent pairs. Per cell the count is multiplied by the cells, which treats the cells of a
//! pair of runs as independent; the per-gate-run interval assumes nothing of the kind.
//!
//! `cargo run --release -p chipbench-report --example gate_real_power -- BASE_DIR TWIN_DIR
//!  [--pairs N] [--seed S] [--metric M] [--threshold T] [--alpha A] [--run-noise SD] [--min-samples N]`

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chipbench_core::result::RunResult;
use chipbench_report::gate::{
    Baseline, CellKey, Comparison, GateSettings, Metric, Verdict, clopper_pearson, compare,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Options {
    base: PathBuf,
    twin: PathBuf,
    pairs: usize,
    seed: u64,
    settings: GateSettings,
}

const USAGE: &str = "usage: gate_real_power BASE_DIR TWIN_DIR [--pairs N] [--seed S] [--metric M] \
    [--threshold T] [--alpha A] [--run-noise SD] [--min-samples N]";

fn parse() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut dirs = Vec::new();
    let mut o = Options {
        base: PathBuf::new(),
        twin: PathBuf::new(),
        pairs: 4000,
        seed: 1,
        settings: GateSettings::default(),
    };
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |text: String| text.parse::<f64>().map_err(|e| format!("'{text}': {e}"));
        match a.as_str() {
            "--pairs" => o.pairs = (number(value("--pairs")?)? as usize).max(1),
            "--seed" => o.seed = number(value("--seed")?)? as u64,
            "--metric" => {
                o.settings.metric = value("--metric")?
                    .parse::<Metric>()
                    .map_err(|e| e.to_string())?
            }
            "--threshold" => o.settings.threshold = number(value("--threshold")?)?,
            "--alpha" => o.settings.alpha = number(value("--alpha")?)?,
            "--run-noise" => o.settings.run_noise = number(value("--run-noise")?)?,
            "--min-samples" => o.settings.min_samples = number(value("--min-samples")?)? as usize,
            other if !other.starts_with('-') && dirs.len() < 2 => dirs.push(PathBuf::from(other)),
            other => return Err(format!("unexpected argument '{other}'\n{USAGE}")),
        }
    }
    let [base, twin] = <[PathBuf; 2]>::try_from(dirs).map_err(|_| USAGE.to_string())?;
    (o.base, o.twin) = (base, twin);
    Ok(o)
}

/// The runs in the run folders directly under `dir`, in name order.
fn runs_in(dir: &Path) -> Result<Vec<RunResult>, String> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("run.json").is_file())
        .collect();
    folders.sort();
    folders
        .iter()
        .map(|f| chipbench_report::load_run(f).map_err(|e| e.to_string()))
        .collect()
}

/// Ordered pairs (baseline, current): all of them, or `limit` drawn at random.
fn pairs(all: Vec<(usize, usize)>, limit: usize, rng: &mut ChaCha8Rng) -> Vec<(usize, usize)> {
    if all.len() <= limit {
        return all;
    }
    (0..limit)
        .map(|_| all[rng.random_range(0..all.len())])
        .collect()
}

/// Events over trials, and the independent trials the runs support.
#[derive(Default)]
struct Tally {
    events: usize,
    trials: usize,
}

impl Tally {
    fn add(&mut self, event: bool) {
        self.events += usize::from(event);
        self.trials += 1;
    }

    /// "1.23 % (95 % CI 0.40 .. 8.81 %, 12/976 pairs, as 40 independent)".
    fn describe(&self, independent: f64) -> String {
        if self.trials == 0 {
            return "no pairs".into();
        }
        let rate = self.events as f64 / self.trials as f64;
        let (lo, hi) = clopper_pearson(rate * independent, independent);
        format!(
            "{:.2} % (95 % CI {:.2} .. {:.2} %; {}/{} pairs, as {independent:.0} independent)",
            100.0 * rate,
            100.0 * lo,
            100.0 * hi,
            self.events,
            self.trials
        )
    }
}

/// Independent trials that give a zero-event upper bound of `rate` (or an all-event lower bound
/// of 1 - `rate`) at 95 % (two-sided Clopper–Pearson: 0.025 in the tail).
fn needed(rate: f64) -> usize {
    (0.025f64.ln() / (1.0 - rate).ln()).ceil() as usize
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let (base, twin) = match (runs_in(&o.base), runs_in(&o.twin)) {
        (Ok(b), Ok(t)) => (b, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if base.len() < 2 || twin.len() < 2 {
        eprintln!(
            "error: need at least 2 runs of each kind, found {} in {} and {} in {}",
            base.len(),
            o.base.display(),
            twin.len(),
            o.twin.display()
        );
        return ExitCode::from(2);
    }
    // The changed cells: their model file differs between the kinds.
    let changed: Vec<CellKey> = twin[0]
        .cells
        .iter()
        .filter(|t| {
            base[0]
                .cells
                .iter()
                .any(|b| CellKey::of(b) == CellKey::of(t) && b.model.sha256 != t.model.sha256)
        })
        .map(CellKey::of)
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    let within = |n: usize| -> Vec<(usize, usize)> {
        (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .collect()
    };
    let gate = |b: &RunResult, c: &RunResult| -> Comparison {
        let baseline = Baseline {
            label: b.run_id.clone(),
            runs: vec![b],
            window: None,
        };
        compare(&baseline, c, &o.settings, None)
    };
    println!("gate settings: {}", o.settings.describe());
    println!(
        "{} base runs ({}), {} twin runs ({}); changed cells: {}\n",
        base.len(),
        o.base.display(),
        twin.len(),
        o.twin.display(),
        if changed.is_empty() {
            "none (no model file differs)".to_string()
        } else {
            changed
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );

    // A/A pairs of both kinds.
    let (mut aa_runs, mut aa_cells) = (Tally::default(), Tally::default());
    let mut aa_verdicts = [0usize; 4];
    let mut cells_per_run = 0usize;
    for group in [&base, &twin] {
        let half = o.pairs / 2;
        for (i, j) in pairs(within(group.len()), half.max(1), &mut rng) {
            let c = gate(&group[i], &group[j]);
            cells_per_run = cells_per_run.max(c.cells.len());
            aa_runs.add(c.regressed());
            for r in &c.cells {
                aa_cells.add(r.verdict == Verdict::Regressed);
                aa_verdicts[verdict_index(r.verdict)] += 1;
            }
        }
    }
    // A/B pairs: base as baseline, twin as current.
    let all_ab: Vec<(usize, usize)> = (0..base.len())
        .flat_map(|i| (0..twin.len()).map(move |j| (i, j)))
        .collect();
    let (mut detected, mut ab_other, mut ab_runs_other) =
        (Tally::default(), Tally::default(), Tally::default());
    let mut ab_verdicts = [0usize; 4];
    for (i, j) in pairs(all_ab, o.pairs, &mut rng) {
        let c = gate(&base[i], &twin[j]);
        let mut other = false;
        for r in &c.cells {
            let regressed = r.verdict == Verdict::Regressed;
            if changed.contains(&r.key) {
                detected.add(regressed);
                ab_verdicts[verdict_index(r.verdict)] += 1;
            } else {
                ab_other.add(regressed);
                other |= regressed;
            }
        }
        ab_runs_other.add(other);
    }
    let aa_independent = (base.len() / 2 + twin.len() / 2) as f64;
    let ab_independent = base.len().min(twin.len()) as f64;
    let cells = cells_per_run.max(1) as f64;
    let others = (cells - changed.len() as f64).max(1.0);
    let share = |counts: &[usize; 4]| {
        let total = counts.iter().sum::<usize>().max(1) as f64;
        ["regressed", "improved", "unchanged", "inconclusive"]
            .iter()
            .zip(counts)
            .map(|(name, k)| format!("{name} {:.1} %", 100.0 * *k as f64 / total))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("| rate | estimate (95 % CI; pairs, as independent pairs) |");
    println!("|---|---|");
    println!(
        "| false alarms per gate run (A/A: any cell regressed) | {} |",
        aa_runs.describe(aa_independent)
    );
    println!(
        "| false alarms per cell (A/A) | {} |",
        aa_cells.describe(aa_independent * cells)
    );
    println!(
        "| detection of the twin's slowdown per cell (A/B, changed cells) | {} |",
        detected.describe(ab_independent * changed.len().max(1) as f64)
    );
    println!(
        "| false alarms on the unchanged cells of A/B pairs, per cell | {} |",
        ab_other.describe(ab_independent * others)
    );
    println!(
        "| A/B gate runs with a false alarm besides the changed cells | {} |",
        ab_runs_other.describe(ab_independent)
    );
    println!("\nA/A cell verdicts: {}", share(&aa_verdicts));
    println!("A/B verdicts of the changed cells: {}", share(&ab_verdicts));
    println!(
        "\ngoal: <= 1 % false alarms per gate run, >= 95 % detection per cell. The runs bound them at best to \
         {:.1} % and {:.1} % (no false alarm, every slowdown detected); an upper bound of 1 % needs {} runs of each \
         kind, a lower bound of 95 % {} of each.",
        100.0 * clopper_pearson(0.0, aa_independent).1,
        100.0 * clopper_pearson(ab_independent, ab_independent).0,
        needed(0.01),
        needed(0.05)
    );
    ExitCode::SUCCESS
}

fn verdict_index(v: Verdict) -> usize {
    match v {
        Verdict::Regressed => 0,
        Verdict::Improved => 1,
        Verdict::Unchanged => 2,
        Verdict::Inconclusive => 3,
    }
}
