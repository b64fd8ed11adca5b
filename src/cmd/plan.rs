//! `chipbench plan`: the cells of a `bench` command line, with the model files' hashes, routed to
//! host labels and split into shards once, written for a fleet (see `cmd::fleet`).

use std::path::PathBuf;

use clap::Args;

use crate::cmd::bench::BenchArgs;
use crate::{Outcome, UsageError};

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    bench: BenchArgs,
    /// Where to write the plan.
    #[arg(long, short = 'o', value_name = "FILE", default_value = "plan.json")]
    output: PathBuf,
}

pub fn run(args: PlanArgs) -> anyhow::Result<Outcome> {
    if args.bench.fleet.plan.is_some() {
        return Err(
            UsageError("plan: --plan belongs to `bench` (it measures a plan)".into()).into(),
        );
    }
    // The options after `plan`, less -o, which every node runs the plan's cells with.
    let argv = without_output(std::env::args().skip(2).collect());
    crate::cmd::bench::plan(args.bench, argv, &args.output)
}

/// `argv` without the `-o/--output FILE` of `plan`, which `bench` does not take.
fn without_output(argv: Vec<String>) -> Vec<String> {
    let mut kept = Vec::new();
    let mut words = argv.into_iter();
    while let Some(word) = words.next() {
        if word == "-o" || word == "--output" {
            words.next();
        } else if !(word.starts_with("--output=")
            || (word.starts_with("-o") && word.len() > 2 && !word.starts_with("--")))
        {
            kept.push(word);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_option_is_left_out_of_the_options_nodes_run() {
        let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            without_output(words("-m mlp -o p.json --quick --output=q.json -ox.json")),
            words("-m mlp --quick")
        );
    }
}
