//! `chipbench worker` (hidden): measures for a parent `bench` in a process of its own, speaking
//! the harness's protocol on stdin and stdout (see `chipbench_harness::protocol`).

use crate::Outcome;
use crate::cmd::backends::{self, EngineArgs};

pub fn run() -> anyhow::Result<Outcome> {
    let registry = |engines: &_| backends::registry(&EngineArgs::from_map(engines));
    chipbench_harness::worker::serve(std::io::stdin().lock(), std::io::stdout().lock(), &registry)?;
    Ok(Outcome::Success)
}
