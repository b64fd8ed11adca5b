//! Writes the twin of the built-in suite into DIR: the suite with a bert-tiny of about 5 % more
//! MACs (`suite::generate_twin`), for `scripts/gate-real-power.sh` and `scripts/ab-power.sh`,
//! which benchmark it (`bench --suite DIR`, `ab --b-suite DIR`) as the real slowdown the
//! regression gates have to see.
//!
//! `cargo run --release -p chipbench-optimize --example twin_suite -- DIR`

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: twin_suite DIR");
        return ExitCode::from(2);
    };
    match chipbench_optimize::suite::generate_twin(std::path::Path::new(&dir)) {
        Ok(files) => {
            for f in files {
                println!("wrote {}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
