//! A cell of a load-generator scenario measured with real sessions: each worker thread loads a
//! session of its own (sessions need not be `Send`; ort's `Session::run` takes `&mut self`, so
//! one session cannot serve two inferences at once), checks and prepares the inputs, warms up,
//! then serves the generator's queries.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::time::Instant;

use chipbench_core::result::{CellResult, Status};
use chipbench_core::spec::{Dim, batch_dimension, check_input, with_batch};
use chipbench_core::{DeviceKind, ModelSource, PreparedInputs, Session, SessionOptions, stats};
use chipbench_energy::EnergyPlan;
use chipbench_runner::resources::PeakMemory;
use chipbench_runner::{MeasureSettings, ModelUnderTest, Sweep, Target, measure, panic_message};

use super::EnergyOf;
use super::driver::Work;
use super::figures::Workers;
use super::pool::Serve;
use super::settings::ScenarioSettings;

/// A worker's session and the inputs it runs on.
struct SessionServer {
    session: Box<dyn Session>,
    inputs: PreparedInputs,
}

impl Serve for SessionServer {
    fn serve(&mut self, _work: Work) -> Result<(), String> {
        // The batch is in the bound input shapes: one inference serves every sample of it.
        self.session
            .run_prepared(&self.inputs)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Measures a cell: through the runner's timed loop for single-stream (`scenario` `None`), through
/// the load generator otherwise.
pub fn measure(
    sweep: &mut Sweep,
    model: &ModelUnderTest,
    target: &Target,
    threads: Option<usize>,
    scenario: Option<&ScenarioSettings>,
) -> CellResult {
    match scenario {
        None => sweep.run_cell(model, target, threads),
        Some(s) => {
            let energy = sweep.energy.as_deref();
            let references = sweep.references();
            measure_cell(
                model,
                target,
                threads,
                &sweep.settings,
                s,
                energy,
                references,
            )
        }
    }
}

/// `model` bound to `batch` samples per inference (as it is when `None`), and that batch size.
/// A model without a batch dimension runs one sample per inference and refuses any other.
pub fn batched(
    model: &ModelUnderTest,
    batch: Option<usize>,
) -> Result<(ModelUnderTest, usize), String> {
    let mut batched = model.clone();
    let Some(b) = batch else {
        return Ok((batched, current_batch(model).unwrap_or(1)));
    };
    match with_batch(&model.specs, &model.bound, b).map_err(|e| e.to_string())? {
        Some(bound) if bound != model.bound && model.real.is_some() => {
            return Err(format!(
                "--batch {b}: the real samples of {} are single samples; run batches with \
                 --data random",
                model.record.name
            ));
        }
        Some(bound) => batched.bound = bound,
        None if b == 1 => {}
        None => {
            return Err(format!(
                "--batch {b}: {} has no batch dimension (no input dimension is named like a \
                 batch or is dynamic), so it runs one sample per inference",
                model.record.name
            ));
        }
    }
    Ok((batched, b))
}

/// The value the model's batch dimension is bound to.
fn current_batch(model: &ModelUnderTest) -> Option<usize> {
    let name = batch_dimension(&model.specs)?;
    model
        .specs
        .iter()
        .zip(&model.bound)
        .find_map(|(spec, info)| {
            let at = spec
                .shape
                .iter()
                .position(|d| matches!(d, Dim::Named(n) if n == name))?;
            info.shape.get(at).copied()
        })
}

/// Measures `model` on `target` under `scenario`, its energy with `energy`'s meters and estimate
/// (`None`: none recorded); a generate cell's tokens are compared with the fp32 model's on the
/// first of `references` that runs it. Never panics and never returns an error: a failure is a
/// failed cell with the reason.
#[allow(clippy::too_many_arguments)] // the cell's coordinates and what it is measured with
pub fn measure_cell(
    model: &ModelUnderTest,
    target: &Target,
    threads: Option<usize>,
    settings: &MeasureSettings,
    scenario: &ScenarioSettings,
    energy: Option<&EnergyPlan>,
    references: &[Target],
) -> CellResult {
    let mut cell = CellResult::not_run(
        model.record.clone(),
        target.record(threads),
        scenario.scenario.name(),
        Status::Failed,
        String::new(),
    );
    cell.scenario_point = Some(scenario.point());
    cell.inputs = model.bound.clone();
    model.record_input_data(settings.seed, &mut cell);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        if scenario.scenario == super::Scenario::Generate {
            return super::generate::measure_into(
                model, target, threads, settings, scenario, references, &mut cell,
            );
        }
        let (model, batch) = batched(model, scenario.batch)?;
        cell.inputs = model.bound.clone();
        measure_into(
            &model, batch, target, threads, settings, scenario, energy, &mut cell,
        )
    }));
    match outcome {
        Ok(Ok(())) => {
            cell.status = Status::Ok;
            cell.error = None;
        }
        Ok(Err(e)) => cell.error = Some(e),
        Err(payload) => {
            cell.error = Some(format!("the backend panicked: {}", panic_message(payload)))
        }
    }
    cell
}

#[allow(clippy::too_many_arguments)] // the cell's coordinates, each used once
fn measure_into(
    model: &ModelUnderTest,
    batch: usize,
    target: &Target,
    threads: Option<usize>,
    settings: &MeasureSettings,
    scenario: &ScenarioSettings,
    energy: Option<&EnergyPlan>,
    cell: &mut CellResult,
) -> Result<(), String> {
    let options = SessionOptions {
        threads,
        profile: false,
        settings: settings.backend_settings.clone(),
    };
    let source = ModelSource {
        path: model.path.clone(),
        inputs: model.bound.clone(),
    };
    let inputs = model.inputs(settings.seed, 0);
    // Per worker: load time, and the threads and settings the engine reports.
    let loaded = Mutex::new(Vec::new());
    let make = |_worker: usize| -> Result<Box<dyn Serve>, String> {
        let t = Instant::now();
        let mut session = target
            .backend
            .load(&source, &target.device, &options)
            .map_err(|e| e.to_string())?;
        let load_ms = t.elapsed().as_secs_f64() * 1e3;
        for (info, tensor) in session.inputs().iter().zip(&inputs) {
            check_input(info, tensor).map_err(|e| e.to_string())?;
        }
        let prepared = session.prepare_inputs(&inputs).map_err(|e| e.to_string())?;
        measure::warm_up(session.as_mut(), &prepared, &settings.warmup)
            .map_err(|e| e.to_string())?;
        let record = (load_ms, session.threads(), session.settings());
        loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
        Ok(Box::new(SessionServer {
            session,
            inputs: prepared,
        }))
    };
    let memory = PeakMemory::reset();
    let workers = Workers {
        concurrency: scenario.concurrency,
        shared_session: false,
        sessions_memory_bytes: None,
    };
    let gpu = matches!(
        target.device.kind,
        DeviceKind::DiscreteGpu
            | DeviceKind::IntegratedGpu
            | DeviceKind::VirtualGpu
            | DeviceKind::Accelerator
    );
    let energy = energy.map(|plan| EnergyOf {
        plan,
        gpu: gpu.then_some(target.device.name.as_str()),
    });
    let measured = super::measure(scenario, batch, &make, &workers, energy)?;
    let loaded = loaded.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some((_, threads, settings)) = loaded.first() {
        cell.backend.threads = Some(*threads);
        cell.backend.settings = settings.clone();
    }
    cell.load_ms = loaded.iter().map(|l| l.0).reduce(f64::max);
    cell.peak_rss_bytes = memory.peak_bytes();
    cell.rss_before_load_bytes = memory.baseline_bytes();
    let mut run = measured.run;
    run.sessions_reason = Some(target.backend.session_sharing().into());
    run.sessions_memory_bytes = cell
        .peak_rss_bytes
        .zip(cell.rss_before_load_bytes)
        .map(|(peak, before)| peak.saturating_sub(before));
    cell.latency_ms = stats::summarize(&measured.latencies_ms);
    cell.samples_ms = measured.latencies_ms;
    cell.throughput_per_s = Some(run.throughput.samples_per_s);
    cell.cpu_ms_per_inference = measured
        .cpu_time
        .map(|cpu| cpu.as_secs_f64() * 1e3 / run.samples as f64);
    provenance(cell, &memory);
    match measured.energy {
        Some(Ok(closed)) => {
            cell.energy = Some(closed.energy);
            cell.provenance.insert("energy".into(), closed.provenance);
        }
        Some(Err(e)) => {
            cell.provenance
                .insert("energy".into(), format!("not measured: {e}"));
        }
        None => {}
    }
    cell.scenario_run = Some(run);
    Ok(())
}

fn provenance(cell: &mut CellResult, memory: &PeakMemory) {
    let entries = [
        (
            "latency_ms",
            "measured: monotonic clock (CLOCK_MONOTONIC), each query from its scheduled arrival to \
             the end of its last inference (queueing included: no coordinated omission); \
             samples_ms holds one latency per query",
        ),
        (
            "throughput_per_s",
            "derived: samples completed / (last query's end - first query's issue) on the \
             monotonic clock; its 95 % CI in scenario_run.throughput comes from 10 equal windows",
        ),
        (
            "cpu_ms_per_inference",
            "measured: getrusage(RUSAGE_SELF) user+sys of the whole process over the load \
             generator's run (every worker and the generator), divided by the samples served: \
             CPU time per sample",
        ),
        (
            "load_ms",
            "measured: monotonic clock, the longest of the workers' session loads (each worker \
             loads its own, at the same time)",
        ),
        (
            "scenario_run",
            "measured: monotonic clock relative to the start of the load generator's run, \
             after every worker's session was loaded and warmed up",
        ),
        (
            "accuracy",
            "not recorded: the accuracy of a model on a backend is the single-stream cell's",
        ),
    ];
    for (field, how) in entries {
        cell.provenance.insert(field.into(), how.into());
    }
    cell.provenance
        .insert("peak_rss_bytes".into(), memory.method().into());
    cell.provenance.insert(
        "scenario_run.sessions_memory_bytes".into(),
        "measured: peak_rss_bytes - rss_before_load_bytes: what the workers' sessions added".into(),
    );
}
