//! `chipbench compare`: the regression gate. Exit 0 when no cell regressed, 1 when one did, 2 on
//! a usage error (unreadable run, different hosts without --allow-different-hosts, ...).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use chipbench_core::result::RunResult;
use chipbench_report::gate::{self, Baseline, CellKey, GateSettings, Metric};
use chipbench_report::history::{DEFAULT_PATH, History};
use clap::{Args, ValueEnum};

use crate::cmd::report::load_runs;
use crate::{Outcome, UsageError};

#[derive(Args)]
pub struct CompareArgs {
    /// BASELINE CURRENT: run folders, run.json files or history:RUN_ID. With --against-history,
    /// only CURRENT.
    #[arg(required = true, num_args = 1..=2, value_name = "RUN")]
    runs: Vec<String>,
    /// p50, p90, p99 (latency quantiles), throughput, or energy (per inference), for every cell
    /// [default: each scenario's own: single-stream p50, offline throughput, server and
    /// multi-stream p99].
    #[arg(long, value_parser = parse_metric)]
    metric: Option<Metric>,
    /// The change that matters, e.g. 3% or 0.03: regressed above 1 + t, improved below 1 / (1 + t)
    /// [default: 3%].
    #[arg(long, value_parser = parse_threshold, value_name = "PERCENT")]
    threshold: Option<f64>,
    /// Family-wise significance level of one comparison: Holm's step-down over the tested
    /// cells keeps the chance that an unchanged run flags any cell below it [default: 0.01].
    #[arg(long, value_name = "P")]
    alpha: Option<f64>,
    /// Run-to-run noise one run cannot show, as a relative standard deviation per run, e.g. 1%;
    /// 0 trusts each run's sessions (see the README) [default: 0.5%].
    #[arg(long, value_parser = parse_fraction, value_name = "PERCENT")]
    run_noise: Option<f64>,
    /// Fewer samples than this on either side make a cell inconclusive [default: 20].
    #[arg(long, value_name = "N")]
    min_samples: Option<usize>,
    /// Bootstrap replicates of each ratio [default: 2000].
    #[arg(long, value_name = "N")]
    resamples: Option<usize>,
    /// text, md (GitHub-flavoured, for a PR comment) or json.
    #[arg(long, short = 'f', value_enum, default_value_t = CompareFormat::Text)]
    format: CompareFormat,
    /// Also write the output to this file (created before any work).
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Compare runs from hosts with different fingerprints (said on top of the output).
    #[arg(long)]
    allow_different_hosts: bool,
    /// Baseline: per cell, the median over the last N runs of this host that measured the cell,
    /// from the history database [N default: 5].
    #[arg(long, num_args = 0..=1, default_missing_value = "5", value_name = "N")]
    against_history: Option<usize>,
    /// History database for --against-history and history:RUN_ID.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_PATH)]
    db: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompareFormat {
    Text,
    Md,
    Json,
}

fn parse_metric(text: &str) -> Result<Metric, String> {
    text.parse()
        .map_err(|e: chipbench_report::ReportError| e.to_string())
}

/// `5%`, `5 %`, `0.05`: a fraction; a bare number above 1 is read as a percentage.
pub fn parse_threshold(text: &str) -> Result<f64, String> {
    let fraction = parse_fraction(text)?;
    if fraction == 0.0 {
        return Err(format!(
            "'{text}': the threshold must lie between 0 % and 100 %"
        ));
    }
    Ok(fraction)
}

/// Like the threshold, and 0 is allowed (the run noise).
fn parse_fraction(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    let (number, percent) = match trimmed.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (trimmed, false),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}': expected a percentage such as 3% or 0.03"))?;
    let fraction = if percent || value >= 1.0 {
        value / 100.0
    } else {
        value
    };
    if !(0.0..1.0).contains(&fraction) {
        return Err(format!("'{text}': must lie between 0 % and 100 %"));
    }
    Ok(fraction)
}

pub fn run(args: CompareArgs) -> anyhow::Result<Outcome> {
    let output = match &args.output {
        Some(path) => Some(
            std::fs::File::create(path)
                .map_err(|e| UsageError(format!("{}: {e}", path.display())))?,
        ),
        None => None,
    };
    let defaults = GateSettings::default();
    let settings = GateSettings {
        metric: args.metric.unwrap_or(defaults.metric),
        per_scenario: args.metric.is_none(),
        threshold: args.threshold.unwrap_or(defaults.threshold),
        alpha: args.alpha.unwrap_or(defaults.alpha),
        run_noise: args.run_noise.unwrap_or(defaults.run_noise),
        min_samples: args.min_samples.unwrap_or(defaults.min_samples),
        resamples: args.resamples.unwrap_or(defaults.resamples),
        seed: defaults.seed,
    };
    if !(settings.alpha > 0.0 && settings.alpha < 1.0) {
        return Err(UsageError(format!(
            "--alpha {}: must lie between 0 and 1",
            settings.alpha
        ))
        .into());
    }
    let comparison = match args.against_history {
        Some(n) => {
            let [current] = args.runs.as_slice() else {
                return Err(
                    UsageError("with --against-history give only the CURRENT run".into()).into(),
                );
            };
            if n == 0 {
                return Err(UsageError("--against-history N: N must be at least 1".into()).into());
            }
            let current = load_runs(std::slice::from_ref(current), &args.db)?.remove(0);
            let history =
                History::open_existing(&args.db).map_err(|e| UsageError(e.to_string()))?;
            let baseline_runs = history_baseline(&history, &current, n)?;
            let baseline = Baseline {
                label: format!(
                    "median of the last {n} runs per cell on host {} in {} ({} runs)",
                    current.host.fingerprint,
                    args.db.display(),
                    baseline_runs.len()
                ),
                runs: baseline_runs.iter().collect(),
                window: Some(n),
            };
            gate::compare(&baseline, &current, &settings, None)
        }
        None => {
            let [baseline, current] = args.runs.as_slice() else {
                return Err(UsageError(
                    "give BASELINE and CURRENT (or CURRENT with --against-history)".into(),
                )
                .into());
            };
            let mut runs = load_runs(&[baseline.clone(), current.clone()], &args.db)?;
            let current = runs.remove(1);
            let baseline = runs.remove(0);
            let warning = gate::check_hosts(&[&baseline], &current, args.allow_different_hosts)
                .map_err(|e| UsageError(e.to_string()))?;
            let label = format!("{} ({})", baseline.run_id, args.runs[0]);
            gate::compare(
                &Baseline {
                    label,
                    runs: vec![&baseline],
                    window: None,
                },
                &current,
                &settings,
                warning,
            )
        }
    };
    let text = match args.format {
        CompareFormat::Text => gate::render_text(&comparison),
        CompareFormat::Md => gate::render_markdown(&comparison),
        CompareFormat::Json => serde_json::to_string_pretty(&comparison)? + "\n",
    };
    print!("{text}");
    if let (Some(mut file), Some(path)) = (output, &args.output) {
        file.write_all(text.as_bytes())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    Ok(if comparison.regressed() {
        Outcome::Regressed
    } else {
        Outcome::Success
    })
}

/// The runs that make up the history baseline: for each cell of `current`, the last `n` runs of
/// the same host fingerprint that measured it (never `current` itself), newest first.
fn history_baseline(
    history: &History,
    current: &RunResult,
    n: usize,
) -> Result<Vec<RunResult>, UsageError> {
    let mut by_id: BTreeMap<String, RunResult> = BTreeMap::new();
    for cell in &current.cells {
        let key = CellKey::of(cell);
        let runs = history
            .recent_runs_with(&key, &current.host.fingerprint, n, &current.run_id)
            .map_err(|e| UsageError(e.to_string()))?;
        for run in runs {
            by_id.entry(run.run_id.clone()).or_insert(run);
        }
    }
    if by_id.is_empty() {
        return Err(UsageError(format!(
            "{}: no earlier run of host {} measured any cell of {}; record runs with `chipbench bench` (or \
             `chipbench history add`) first",
            history.path().display(),
            current.host.fingerprint,
            current.run_id
        )));
    }
    let mut runs: Vec<RunResult> = by_id.into_values().collect();
    runs.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| b.run_id.cmp(&a.run_id))
    });
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_read_as_percentages_or_fractions() {
        assert_eq!(parse_threshold("5%").unwrap(), 0.05);
        assert_eq!(parse_threshold("2.5 %").unwrap(), 0.025);
        assert_eq!(parse_threshold("0.03").unwrap(), 0.03);
        assert_eq!(parse_threshold("3").unwrap(), 0.03);
        assert!(parse_threshold("0%").is_err());
        assert_eq!(parse_fraction("0").unwrap(), 0.0);
        assert!((parse_fraction("0.9%").unwrap() - 0.009).abs() < 1e-12);
        assert!(parse_threshold("abc").is_err());
        assert!(parse_threshold("150%").is_err());
    }
}
