//! `chipbench man`: the manual page, generated from the clap definition that parses the command
//! line (the help texts of every option), so it cannot fall behind the options.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::Outcome;

#[derive(Args)]
pub struct ManArgs {
    /// Write chipbench.1 and one page per command (chipbench-bench.1, ...) into DIR instead of
    /// printing chipbench.1.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn run(args: ManArgs) -> anyhow::Result<Outcome> {
    let command = crate::cli_command();
    match args.out {
        None => match clap_mangen::Man::new(command).render(&mut std::io::stdout()) {
            // `chipbench man | head`: the reader left, as other tools stop quietly.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            written => written.context("cannot write the manual page to stdout")?,
        },
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
            println!("wrote the manual pages into {}", dir.display());
        }
    }
    Ok(Outcome::Success)
}
