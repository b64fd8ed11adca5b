//! The worker's side of the protocol: a `chipbench worker` process answers each request on its
//! stdin, in order, until `Stop` or the end of its input. Only the parent writes the journal.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use chipbench_core::Backend;
use chipbench_runner::Sweep;
use chipbench_runner::held::HeldSession;
use chipbench_runner::measure::INTERRUPTED;

use crate::protocol::{Job, Message, Observed};
use crate::targets;

/// What a worker prints on stderr first, so that a process a memory cap kept from starting is
/// told apart from one that failed later.
pub const STARTED: &str = "chipbench worker: started";

/// How the further sessions of a constrained cell are measured, for its provenance.
const CONSTRAINED_SESSIONS: &str = "one after another in the cell's constrained process";

/// The backends a worker measures with, built from the engine options a job carries.
pub type Registry = dyn Fn(&BTreeMap<String, String>) -> Vec<Box<dyn Backend>>;

/// Serves the requests on `input`, answering on `output`, with the backends `registry` builds
/// (once per set of engine options). Installs the worker's panic and Ctrl-C handling first.
pub fn serve(
    input: impl BufRead,
    mut output: impl Write,
    registry: &Registry,
) -> std::io::Result<()> {
    eprintln!("{STARTED}");
    // The engines catch some panics and keep only that one happened; the parent reads the
    // messages on stderr.
    let recorder = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("panic: {info}");
        recorder(info);
    }));
    // Ctrl-C reaches the whole process group: end early and keep the samples, as bench does.
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
    Message::hello().send(&mut output)?;
    let mut greeted = false;
    // The backends of the engine options of the last job, built again when they change.
    let mut built_for: Option<BTreeMap<String, String>> = None;
    let mut backends: Vec<Box<dyn Backend>> = Vec::new();
    let mut lines = input.lines();
    while let Some(line) = lines.next() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = match Message::parse(&line) {
            Some(hello @ Message::Hello { .. }) => match hello.incompatible() {
                None => {
                    greeted = true;
                    continue;
                }
                Some(why) => {
                    Message::Failed(why).send(&mut output)?;
                    return Ok(());
                }
            },
            Some(Message::Stop) => return Ok(()),
            Some(_) if !greeted => {
                Message::Failed("the parent did not start with a Hello".into())
                    .send(&mut output)?;
                return Ok(());
            }
            Some(request) => {
                let engines = request_engines(&request).cloned().unwrap_or_default();
                if built_for.as_ref() != Some(&engines) {
                    backends = registry(&engines);
                    built_for = Some(engines);
                }
                if let Message::OpenSession(job) = request {
                    if hold_session(&job, &backends, &mut lines, &mut output)? {
                        return Ok(());
                    }
                    continue;
                }
                answer(request, &backends)
            }
            None => Message::Failed(format!(
                "not a request of protocol version {}: {}",
                crate::protocol::PROTOCOL_VERSION,
                line.chars().take(200).collect::<String>()
            )),
        };
        reply.send(&mut output)?;
    }
    Ok(())
}

fn request_engines(request: &Message) -> Option<&BTreeMap<String, String>> {
    match request {
        Message::MeasureCell(job)
        | Message::MeasureConstrained(job)
        | Message::FurtherSession(job)
        | Message::OpenSession(job) => Some(&job.engines),
        _ => None,
    }
}

fn answer(request: Message, registry: &[Box<dyn Backend>]) -> Message {
    let result = match request {
        Message::MeasureCell(job) => prepare(&job, registry).map(|(mut sweep, model, target)| {
            let scenario = job.scenario.as_ref();
            let cell =
                crate::scenario::cell::measure(&mut sweep, &model, &target, job.threads, scenario);
            Message::Cell {
                cell: Box::new(cell),
                observed: None,
            }
        }),
        Message::MeasureConstrained(job) => {
            prepare(&job, registry).map(|(mut sweep, model, target)| {
                let mut cell = sweep.run_cell(&model, &target, job.threads);
                // The further sessions run here: this process is the cell's, under its
                // constraints.
                for _ in 1..sweep.settings.sessions {
                    if cell.status != chipbench_core::result::Status::Ok
                        || INTERRUPTED.load(Ordering::Relaxed)
                    {
                        break;
                    }
                    let session = sweep.fresh_session_p50(&model, &target, job.threads);
                    if !chipbench_runner::record_session(
                        &sweep.settings,
                        &mut cell,
                        session,
                        CONSTRAINED_SESSIONS,
                    ) {
                        break;
                    }
                }
                Message::Cell {
                    cell: Box::new(cell),
                    observed: Some(Observed::now()),
                }
            })
        }
        Message::FurtherSession(job) => prepare(&job, registry).map(|(sweep, model, target)| {
            match sweep.fresh_session_p50(&model, &target, job.threads) {
                Ok(session) => Message::Session(session),
                Err(e) => Message::Failed(e),
            }
        }),
        _ => Err("a worker answers measurement requests only".into()),
    };
    result.unwrap_or_else(Message::Failed)
}

/// One side of `chipbench ab`: loads the job's model once and warms it up, answers `Opened`, then
/// times a window per `TimeWindow` until `CloseSession`. True when the parent is done with the
/// worker (`Stop`, or its input ended).
fn hold_session(
    job: &Job,
    registry: &[Box<dyn Backend>],
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    output: &mut impl Write,
) -> std::io::Result<bool> {
    let opened = prepare(job, registry).and_then(|(sweep, model, target)| {
        HeldSession::open(&model, &target, job.threads, &sweep.settings)
    });
    let mut held = match opened {
        Ok(held) => held,
        Err(why) => {
            Message::Failed(why).send(output)?;
            return Ok(false);
        }
    };
    Message::Opened {
        load_ms: held.load_ms,
        threads: held.threads,
    }
    .send(output)?;
    for line in lines {
        let reply = match Message::parse(&line?) {
            Some(Message::TimeWindow { seconds }) if seconds.is_finite() && seconds > 0.0 => {
                match held.time(Duration::from_secs_f64(seconds)) {
                    Ok(w) => Message::Window {
                        p50_ms: w.p50_ms,
                        inferences: w.inferences,
                    },
                    Err(why) => Message::Failed(why),
                }
            }
            Some(Message::CloseSession) => return Ok(false),
            Some(Message::Stop) => return Ok(true),
            _ => Message::Failed("a held session answers TimeWindow and CloseSession only".into()),
        };
        reply.send(output)?;
    }
    Ok(true)
}

/// What a job measures: the sweep, the model and the target.
fn prepare<'r>(
    job: &Job,
    registry: &'r [Box<dyn Backend>],
) -> Result<
    (
        Sweep<'r>,
        chipbench_runner::ModelUnderTest,
        chipbench_runner::Target<'r>,
    ),
    String,
> {
    let target = targets::find(registry, &job.backend)
        .map_err(|e| format!("{} is not available in the worker: {e}", job.backend))?;
    let references = targets::references(registry, target.backend.name() == "ort")?;
    let model = job.model().map_err(|e| e.to_string())?;
    let mut sweep = Sweep::new(job.settings.clone(), references);
    sweep.energy = job.energy_plan();
    Ok((sweep, model, target))
}
