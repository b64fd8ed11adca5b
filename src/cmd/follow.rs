//! `chipbench follow DIR --pid PID` (hidden): the device's side of `chipbench remote`. The run
//! script starts `bench` and `exec`s this, so the run is its child; it reports the run folder
//! in the harness's messages on stdout until the run exits.

use std::path::PathBuf;

use clap::Args;

use crate::Outcome;

#[derive(Args)]
pub struct FollowArgs {
    /// The run folder `bench --out` writes.
    dir: PathBuf,
    /// The process id of that `bench`.
    #[arg(long)]
    pid: i32,
    /// The file its stderr goes to; the last lines come back with its exit code.
    #[arg(long)]
    stderr: PathBuf,
}

pub fn run(args: FollowArgs) -> anyhow::Result<Outcome> {
    chipbench_harness::remote::follow(
        &args.dir,
        args.pid,
        &args.stderr,
        &mut std::io::stdout().lock(),
    )?;
    Ok(Outcome::Success)
}
