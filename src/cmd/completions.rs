//! `chipbench completions SHELL`: the shell completion script, generated from the same clap
//! definition that parses the command line, so it cannot fall behind the options.

use clap::Args;
use clap_complete::Shell;

use crate::Outcome;

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

pub fn run(args: CompletionsArgs) -> anyhow::Result<Outcome> {
    let mut command = crate::cli_command();
    clap_complete::generate(
        args.shell,
        &mut command,
        "chipbench",
        &mut std::io::stdout(),
    );
    Ok(Outcome::Success)
}
