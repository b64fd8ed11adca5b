//! Executes a benchmark plan, one cell (model variant x backend device x scenario x threads) at a
//! time: load, first inference, warm-up, timed loop under the stop rule, CPU time and peak memory,
//! accuracy against the fp32 reference, and the journal. Knows backends only as `dyn Backend`.

mod energy;
pub mod held;
pub mod measure;
pub mod resources;
pub mod roofline;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chipbench_core::result::{
    BackendRecord, CellResult, InputData, ModelRecord, OperatorProfile, Status, StopReason,
    TimedLoop, Warmup,
};
use chipbench_core::spec::{check_input, random_inputs};
use chipbench_core::task::{self, Decoding};
use chipbench_core::tensor::format_shape;
use chipbench_core::{
    Backend, Device, Error, InputSpec, ModelSource, Result, Session, SessionOptions, Tensor,
    TensorInfo, accuracy, stats,
};

pub use chipbench_core::settings::MeasureSettings;
pub use measure::{Bookkeeping, Feed, Measurement, StopRule, WarmUp};

use resources::{CPU_TIME_METHOD, PeakMemory, process_cpu_time};
use serde::{Deserialize, Serialize};

/// The only scenario so far: one inference at a time, the next starts when the previous ends.
pub const SINGLE_STREAM: &str = "single-stream";

/// Operators kept in a cell's profile (`--operator-times`), the slowest first.
pub const PROFILE_TOP_OPERATORS: usize = 15;

/// A model file ready to be benchmarked: what it is, its inputs bound to concrete shapes, and the
/// fp32 model whose outputs are its reference.
#[derive(Clone, Debug)]
pub struct ModelUnderTest {
    pub record: ModelRecord,
    pub path: PathBuf,
    pub specs: Vec<InputSpec>,
    pub bound: Vec<TensorInfo>,
    /// User-supplied tensors (`--input-file`) that replace the generated ones.
    pub fixed_inputs: BTreeMap<String, Tensor>,
    /// Real samples (`--data real`) in place of the seeded random data.
    pub real: Option<RealInputs>,
    /// The fp32 source model the accuracy is measured against (the model itself for fp32).
    pub reference: PathBuf,
    /// How its outputs become the decisions it makes (zoo models): the accuracy check then
    /// also compares those decisions with the reference's.
    pub decoding: Option<Decoding>,
}

/// Real sample inputs: a zoo model's held-out split, which the accuracy check and the timed loop
/// run on, and the calibration split beside it, which int8-static calibrates on.
#[derive(Clone, Debug)]
pub struct RealInputs {
    /// The `.npz` the held-out samples were read from (a worker process reads it again).
    pub held_out: PathBuf,
    pub calibration: PathBuf,
    /// The data set in words, for the cells' provenance.
    pub source: String,
    /// One `Vec` per sample, in the order of the model's bound inputs.
    pub samples: Arc<Vec<Vec<Tensor>>>,
}

impl RealInputs {
    /// Reads the held-out samples, refusing a file whose arrays do not fit the bound inputs.
    pub fn load(
        held_out: PathBuf,
        calibration: PathBuf,
        source: String,
        bound: &[TensorInfo],
    ) -> Result<RealInputs> {
        let samples = chipbench_core::npz::load(&held_out, bound)
            .map_err(|e| Error::input(held_out.display().to_string(), e))?;
        if samples.is_empty() {
            return Err(Error::input(held_out.display().to_string(), "no samples"));
        }
        Ok(RealInputs {
            held_out,
            calibration,
            source,
            samples: Arc::new(samples),
        })
    }
}

impl ModelUnderTest {
    /// Inputs of sample `index`: the real samples (cycled) or seeded random data, with
    /// user-supplied tensors in their place.
    pub fn inputs(&self, seed: u64, index: u64) -> Vec<Tensor> {
        let mut inputs = match &self.real {
            Some(real) => real.samples[index as usize % real.samples.len()].clone(),
            None => random_inputs(&self.specs, &self.bound, seed, index),
        };
        for (info, tensor) in self.bound.iter().zip(inputs.iter_mut()) {
            if let Some(fixed) = self.fixed_inputs.get(&info.name) {
                *tensor = fixed.clone();
            }
        }
        inputs
    }

    /// Records on a cell which data its inputs are, and in its provenance where they come from.
    pub fn record_input_data(&self, seed: u64, cell: &mut CellResult) {
        let (kind, how) = match &self.real {
            Some(real) => (
                InputData::Real,
                format!(
                    "real: the {} held-out samples of {} ({}); inference i of the accuracy \
                     check and of the timed loop runs sample i mod {}",
                    real.samples.len(),
                    real.source,
                    real.held_out.display(),
                    real.samples.len()
                ),
            ),
            None => (
                InputData::Random,
                format!("random: values drawn from the input specs, seed {seed}"),
            ),
        };
        let fixed: Vec<&str> = self.fixed_inputs.keys().map(String::as_str).collect();
        cell.input_data = Some(kind);
        cell.provenance.insert(
            "input_data".into(),
            if fixed.is_empty() {
                how
            } else {
                format!("{how}; from --input-file: {}", fixed.join(", "))
            },
        );
    }

    /// The timed loop's inputs: every real sample in turn (or the one seeded sample), prepared
    /// once; with feedback pairs, each inference's inputs carry the previous one's outputs.
    pub fn feed(
        &self,
        session: &mut dyn Session,
        seed: u64,
        feedback: Vec<(usize, usize)>,
    ) -> Result<Feed> {
        let count = self.real.as_ref().map_or(1, |r| r.samples.len());
        let samples: Vec<Vec<Tensor>> = (0..count as u64).map(|i| self.inputs(seed, i)).collect();
        if feedback.is_empty() {
            Feed::cycled(session, &samples)
        } else {
            Feed::with_feedback(session, samples, feedback)
        }
    }

    /// The outputs of `n` inferences on samples 0..n, each fed the previous one's outputs for
    /// the feedback pairs.
    fn run_chain(
        &self,
        session: &mut dyn Session,
        seed: u64,
        feedback: &[(usize, usize)],
        n: usize,
    ) -> Result<Outputs> {
        let mut outputs: Outputs = Vec::with_capacity(n);
        for i in 0..n {
            let mut inputs = self.inputs(seed, i as u64);
            if let Some(previous) = outputs.last() {
                for &(o, k) in feedback {
                    inputs[k] = previous[o].clone();
                }
            }
            outputs.push(session.run(&inputs)?);
        }
        Ok(outputs)
    }

    fn source(&self, path: PathBuf) -> ModelSource {
        ModelSource {
            path,
            inputs: self.bound.clone(),
        }
    }
}

/// `--feedback OUT=IN` pairs as (output, input) indices of a session; an unknown name is an
/// error naming the option and the names there are.
pub fn feedback_pairs(
    session: &dyn Session,
    feedback: &[(String, String)],
) -> Result<Vec<(usize, usize)>> {
    let names = |infos: &[TensorInfo]| {
        infos
            .iter()
            .map(|i| i.name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    feedback
        .iter()
        .map(|(output, input)| {
            let missing = |what: &str, name: &str, infos: &[TensorInfo]| {
                Error::Run(format!(
                    "--feedback {output}={input}: the model has no {what} '{name}' (its {what}s: {})",
                    names(infos)
                ))
            };
            let o = session
                .outputs()
                .iter()
                .position(|i| &i.name == output)
                .ok_or_else(|| missing("output", output, session.outputs()))?;
            let k = session
                .inputs()
                .iter()
                .position(|i| &i.name == input)
                .ok_or_else(|| missing("input", input, session.inputs()))?;
            Ok((o, k))
        })
        .collect()
}

/// Each fed-back output of a first inference must fit the input it feeds.
fn check_feedback(
    session: &dyn Session,
    feedback: &[(String, String)],
    pairs: &[(usize, usize)],
    outputs: &[Tensor],
) -> Result<()> {
    for ((output, input), &(o, k)) in feedback.iter().zip(pairs) {
        let info = &session.inputs()[k];
        let fed = &outputs[o];
        if fed.dtype() != info.dtype || fed.shape() != info.shape.as_slice() {
            return Err(Error::Run(format!(
                "--feedback {output}={input}: output '{output}' is {} {}, input '{input}' takes {} {}",
                fed.dtype(),
                format_shape(fed.shape()),
                info.dtype,
                format_shape(&info.shape)
            )));
        }
    }
    Ok(())
}

/// A backend and one of its devices.
pub struct Target<'a> {
    pub backend: &'a dyn Backend,
    pub device: Device,
}

impl Target<'_> {
    /// A cell of `model` on this target that failed before it measured anything (its process
    /// died, timed out or could not start), with the reason.
    pub fn failed_cell(
        &self,
        model: &ModelUnderTest,
        threads: Option<usize>,
        reason: String,
    ) -> CellResult {
        let mut cell = CellResult::not_run(
            model.record.clone(),
            self.record(threads),
            SINGLE_STREAM,
            Status::Failed,
            reason,
        );
        cell.inputs = model.bound.clone();
        cell
    }

    pub fn label(&self) -> String {
        format!("{}:{}", self.backend.name(), self.device.id)
    }

    pub fn record(&self, threads: Option<usize>) -> BackendRecord {
        BackendRecord {
            name: self.backend.name().to_string(),
            version: self.backend.version(),
            device: self.device.id.clone(),
            device_name: self.device.name.clone(),
            device_kind: self.device.kind,
            threads,
            settings: BTreeMap::new(),
        }
    }
}

type Outputs = Vec<Vec<Tensor>>;

/// The fp32 outputs a model's cells are compared with, and what computed them.
#[derive(Clone)]
struct Reference {
    outputs: Outputs,
    /// `tract:cpu fp32`, or a fallback with the reason the first choice could not run it.
    label: String,
}

/// One further session of a cell: its median latency and how its timed loop ended (serialised as
/// one flat object, `{"p50_ms", "inferences", "stop_reason"}`, for a session measured in a process
/// of its own).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FreshSession {
    pub p50_ms: f64,
    #[serde(flatten)]
    pub timed: TimedLoop,
}

/// Runs cells and remembers the reference outputs of each fp32 model so that every variant and
/// backend is compared with the same numbers.
pub struct Sweep<'a> {
    pub settings: MeasureSettings,
    /// Meters and estimate for the energy of each cell; `None` records no energy.
    pub energy: Option<Arc<chipbench_energy::EnergyPlan>>,
    references: Vec<Target<'a>>,
    computed: HashMap<PathBuf, std::result::Result<Reference, String>>,
}

impl<'a> Sweep<'a> {
    /// `references` run the fp32 models that produce the reference outputs, in order of
    /// preference (tract on the CPU, then ONNX Runtime's CPU provider where present): a model
    /// the first cannot run is compared with the next one's outputs, and its accuracy says so.
    pub fn new(settings: MeasureSettings, references: Vec<Target<'a>>) -> Self {
        Sweep {
            settings,
            energy: None,
            references,
            computed: HashMap::new(),
        }
    }

    /// The targets that run the fp32 reference models, in order of preference.
    pub fn references(&self) -> &[Target<'a>] {
        &self.references
    }

    /// Measures one cell. Never panics and never returns an error: a failure is a failed cell
    /// with the reason.
    pub fn run_cell(
        &mut self,
        model: &ModelUnderTest,
        target: &Target,
        threads: Option<usize>,
    ) -> CellResult {
        let mut cell = CellResult::not_run(
            model.record.clone(),
            target.record(threads),
            SINGLE_STREAM,
            Status::Failed,
            String::new(),
        );
        cell.inputs = model.bound.clone();
        model.record_input_data(self.settings.seed, &mut cell);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            self.measure(model, target, threads, &mut cell)
        }));
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(payload) => Some(format!("the backend panicked: {}", panic_message(payload))),
        };
        match error {
            None => {
                cell.status = Status::Ok;
                cell.error = None;
            }
            Some(e) => {
                cell.status = Status::Failed;
                cell.error = Some(e);
            }
        }
        cell
    }

    /// Loads the model afresh, warms it up and times it under the `for_extra_session` rules:
    /// one further session of a cell (see [`MeasureSettings::sessions`]). Returns its median latency and
    /// how its timed loop ended, or the reason it could not be measured.
    pub fn fresh_session_p50(
        &self,
        model: &ModelUnderTest,
        target: &Target,
        threads: Option<usize>,
    ) -> std::result::Result<FreshSession, String> {
        let settings = &self.settings;
        let options = SessionOptions {
            threads,
            profile: settings.operator_times,
            settings: settings.backend_settings.clone(),
        };
        let warmup = WarmUp::for_extra_session(&settings.warmup);
        let stop = StopRule::for_extra_session(&settings.stop);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut session =
                target
                    .backend
                    .load(&model.source(model.path.clone()), &target.device, &options)?;
            let pairs = feedback_pairs(session.as_ref(), &settings.feedback)?;
            let mut feed = model.feed(session.as_mut(), settings.seed, pairs)?;
            measure::warm_up(session.as_mut(), feed.first(), &warmup)?;
            let timed = measure::timed_loop_prepared(session.as_mut(), &mut feed, &stop);
            // The cell's first session recorded the engine's warnings; a further one repeats them.
            session.engine_warnings();
            timed
        }));
        match outcome {
            Ok(Ok(m)) => stats::summarize(&m.samples_ms)
                .map(|latency| FreshSession {
                    p50_ms: latency.p50,
                    timed: TimedLoop {
                        inferences: m.samples_ms.len() as u64,
                        stop_reason: m.stop_reason,
                    },
                })
                .ok_or_else(|| "no timed inference".to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(payload) => Err(format!("the backend panicked: {}", panic_message(payload))),
        }
    }

    fn measure(
        &mut self,
        model: &ModelUnderTest,
        target: &Target,
        threads: Option<usize>,
        cell: &mut CellResult,
    ) -> Result<()> {
        let settings = self.settings.clone();
        let options = SessionOptions {
            threads,
            profile: settings.operator_times,
            settings: settings.backend_settings.clone(),
        };
        // The reference session runs before the memory window opens, so that a model's first
        // cell does not count it in its peak.
        let reference = (settings.accuracy_samples > 0).then(|| self.reference_outputs(model));
        let memory = PeakMemory::reset();
        cell.provenance
            .insert("peak_rss_bytes".into(), memory.method().into());

        let t = Instant::now();
        let mut session =
            target
                .backend
                .load(&model.source(model.path.clone()), &target.device, &options)?;
        cell.load_ms = Some(ms(t.elapsed()));
        cell.backend.threads = Some(session.threads());
        cell.backend.settings = session.settings();
        cell.placement = session.placement();
        if cell.placement.is_some() {
            cell.provenance.insert(
                "placement".into(),
                "reported by the engine: nodes per execution provider after graph partitioning"
                    .into(),
            );
        }

        let inputs = model.inputs(settings.seed, 0);
        for (info, tensor) in session.inputs().iter().zip(&inputs) {
            check_input(info, tensor)?;
        }
        let pairs = feedback_pairs(session.as_ref(), &settings.feedback)?;
        let t = Instant::now();
        let first = session.run(&inputs)?;
        cell.first_inference_ms = Some(ms(t.elapsed()));
        reject_non_finite(session.outputs(), &first)?;
        check_feedback(session.as_ref(), &settings.feedback, &pairs, &first)?;

        // Converted once, outside every timed inference (see `Session::timed_window`).
        let mut feed = model.feed(session.as_mut(), settings.seed, pairs.clone())?;
        let (iterations, duration) =
            measure::warm_up(session.as_mut(), feed.first(), &settings.warmup)?;
        cell.warmup = Some(Warmup {
            iterations,
            duration_ms: ms(duration),
        });

        let energy_window = energy::open(self.energy.as_deref(), cell);
        let cpu_before = process_cpu_time();
        let discarded_before = session.discarded_device_times();
        let m = measure::timed_loop_prepared(session.as_mut(), &mut feed, &settings.stop)?;
        let discarded = session.discarded_device_times() - discarded_before;
        let cpu_after = process_cpu_time();
        if let Some(window) = energy_window {
            let device = (target.device.kind, target.device.name.as_str());
            window.close(session.as_mut(), feed.first(), &m, device, cell)?;
        }
        let n = m.samples_ms.len();
        cell.latency_ms = stats::summarize(&m.samples_ms);
        if let Some(latency) = &cell.latency_ms {
            let r = &model.record;
            cell.roofline = roofline::figures(
                &r.variant,
                r.macs,
                r.weight_bytes,
                &model.bound,
                session.outputs(),
                latency.p50,
            );
            cell.provenance.insert(
                "roofline".into(),
                match cell.roofline {
                    Some(_) => roofline::PROVENANCE.into(),
                    None => "not derived: the model's MACs or weight bytes are unknown".into(),
                },
            );
        }
        cell.stop_reason = Some(m.stop_reason);
        cell.throughput_per_s = Some(n as f64 / m.wall.as_secs_f64());
        if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
            let inferences = b.saturating_sub(a).saturating_sub(m.bookkeeping.cpu);
            cell.cpu_ms_per_inference = Some(ms(inferences) / n as f64);
            cell.provenance
                .insert("cpu_ms_per_inference".into(), CPU_TIME_METHOD.into());
        }
        cell.samples_ms = m.samples_ms;
        cell.provenance.insert(
            "latency_ms".into(),
            format!(
                "measured: host monotonic clock (std::time::Instant) around each timed inference \
                 (Session::run_prepared on inputs the session converted {}); what \
                 one timed inference holds on {}: {}; percentiles by linear interpolation (type 7); \
                 median CI95 by exact percentile bootstrap{}",
                if settings.feedback.is_empty() {
                    "once before warm-up".to_string()
                } else {
                    let pairs: Vec<String> =
                        settings.feedback.iter().map(|(o, i)| format!("{o}={i}")).collect();
                    format!(
                        "between inferences with the clocks paused, --feedback {} carrying each \
                         inference's outputs into the next",
                        pairs.join(",")
                    )
                },
                target.label(),
                session.timed_window(),
                if settings.operator_times {
                    "; the engine's profiler was on (--operator-times) and its overhead is included"
                } else {
                    ""
                }
            ),
        );
        cell.device_latency_ms = stats::summarize(&m.device_samples_ms);
        if cell.device_latency_ms.is_some() || discarded > 0 {
            cell.device_time_discarded = Some(discarded);
            cell.provenance.insert(
                "device_latency_ms".into(),
                format!(
                    "measured: device-side time of each timed inference as the backend reports it \
                     (Session::last_device_time: GPU timestamp queries for wgpu); {discarded} of {n} \
                     timed inferences discarded as implausible (end timestamp not after start, or \
                     longer than the host end-to-end time)"
                ),
            );
        }
        if settings.operator_times {
            // Every inference since load was profiled: the first, the warm-up and the timed loop.
            let runs = 1 + iterations + n as u64;
            match session.operator_profile()? {
                Some(operators) => {
                    cell.profile = Some(OperatorProfile::summarize(
                        operators,
                        runs,
                        PROFILE_TOP_OPERATORS,
                    ));
                    cell.provenance.insert(
                        "profile".into(),
                        format!(
                            "measured: the engine's own per-operator profiler over {runs} \
                             inferences (first, warm-up, timed loop)"
                        ),
                    );
                }
                None => {
                    cell.provenance.insert(
                        "profile".into(),
                        format!(
                            "not measured: {} has no per-operator profile",
                            target.label()
                        ),
                    );
                }
            }
        }
        cell.provenance.insert(
            "throughput_per_s".into(),
            format!(
                "derived: timed inferences / wall time of the timed loop (single-stream), less its \
                 bookkeeping between inferences (the stop rule's checks of the CI, {}, and the growth \
                 of the sample buffers: {:.3} ms left out)",
                m.bookkeeping.checks,
                ms(m.bookkeeping.wall)
            ),
        );
        cell.provenance.insert(
            "load_ms".into(),
            "measured: monotonic clock around Backend::load (parse, optimise, prepare)".into(),
        );
        cell.provenance.insert(
            "first_inference_ms".into(),
            "measured: monotonic clock, the first Session::run after load".into(),
        );

        if let Some(reference) = reference {
            match reference {
                Ok(Reference {
                    outputs: reference,
                    label,
                }) => {
                    let actual = model.run_chain(
                        session.as_mut(),
                        settings.seed,
                        &pairs,
                        reference.len(),
                    )?;
                    for outputs in &actual {
                        reject_non_finite(session.outputs(), outputs)?;
                    }
                    let names: Vec<String> =
                        session.outputs().iter().map(|o| o.name.clone()).collect();
                    let mut a = accuracy::compare(&label, &names, &reference, &actual)?;
                    let samples = format!(
                        "{} {} input samples",
                        reference.len(),
                        if model.real.is_some() {
                            "real held-out"
                        } else {
                            "seeded"
                        }
                    );
                    if let Some(decoding) = &model.decoding {
                        let t = Instant::now();
                        a.task = task::compare(decoding, &names, &reference, &actual)?;
                        if let Some(task) = &a.task {
                            cell.provenance.insert(
                                "task_accuracy".into(),
                                format!(
                                    "measured: the cell's outputs on the accuracy check's {samples} \
                                     decoded by the zoo catalog's {} decoding ({}) and compared \
                                     with {label}'s decoded outputs on the same inputs; decoding \
                                     both took {:.3} ms",
                                    task.decoding,
                                    decoding.describe(),
                                    ms(t.elapsed())
                                ),
                            );
                        }
                    }
                    cell.accuracy = Some(a);
                    cell.provenance.insert(
                        "accuracy".into(),
                        format!(
                            "measured: outputs on {samples} against {label} on the same inputs"
                        ),
                    );
                }
                Err(reason) => {
                    cell.provenance
                        .insert("accuracy".into(), format!("not measured: {reason}"));
                }
            }
        }
        cell.warnings = session.engine_warnings();
        drop(session);
        cell.peak_rss_bytes = memory.peak_bytes();
        cell.rss_before_load_bytes = memory.baseline_bytes();
        cell.session_p50_ms = cell.latency_ms.iter().map(|l| l.p50).collect();
        cell.session_loops = cell
            .latency_ms
            .iter()
            .map(|_| TimedLoop {
                inferences: n as u64,
                stop_reason: m.stop_reason,
            })
            .collect();
        Ok(())
    }

    /// Outputs of the fp32 reference model on the accuracy samples, computed once per model by
    /// the first reference target that can run it.
    fn reference_outputs(
        &mut self,
        model: &ModelUnderTest,
    ) -> std::result::Result<Reference, String> {
        if let Some(cached) = self.computed.get(&model.reference) {
            return cached.clone();
        }
        let settings = &self.settings;
        let options = SessionOptions::default();
        let mut failures: Vec<String> = Vec::new();
        let mut result = Err(String::new());
        for target in &self.references {
            let outputs = (|| -> Result<Outputs> {
                let mut session = target.backend.load(
                    &model.source(model.reference.clone()),
                    &target.device,
                    &options,
                )?;
                let pairs = feedback_pairs(session.as_ref(), &settings.feedback)?;
                model.run_chain(
                    session.as_mut(),
                    settings.seed,
                    &pairs,
                    settings.accuracy_samples,
                )
            })();
            match outputs {
                Ok(outputs) => {
                    let mut label = format!("{} fp32", target.label());
                    if !failures.is_empty() {
                        label += &format!(" (fallback reference: {})", failures.join("; "));
                    }
                    result = Ok(Reference { outputs, label });
                    break;
                }
                Err(e) => failures.push(format!("{} could not run it: {e}", target.label())),
            }
        }
        if result.is_err() {
            result = Err(if failures.is_empty() {
                "no reference backend is available".to_string()
            } else {
                format!("the reference failed: {}", failures.join("; "))
            });
        }
        self.computed
            .insert(model.reference.clone(), result.clone());
        result
    }
}

fn stop_label(reason: StopReason) -> &'static str {
    match reason {
        StopReason::CiWithinTarget => "CI within target",
        StopReason::MaxDuration => "maximum duration",
        StopReason::Interrupted => "interrupted",
    }
}

fn reject_non_finite(infos: &[TensorInfo], outputs: &[Tensor]) -> Result<()> {
    for (i, t) in outputs.iter().enumerate() {
        if t.has_non_finite() {
            let name = infos.get(i).map(|o| o.name.as_str()).unwrap_or("?");
            return Err(Error::Run(format!(
                "output '{name}' contains NaN or infinite values"
            )));
        }
    }
    Ok(())
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces the default panic printer: a panic inside a backend becomes the error message of its
/// cell instead of a backtrace on the user's terminal.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{message}{location}")));
    }));
}

/// The message of a caught panic (from the hook when installed, else from the payload).
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    LAST_PANIC
        .with(|p| p.borrow_mut().take())
        .unwrap_or_else(|| {
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into())
        })
}

/// Appends a further session's median and loop to a measured cell and says in its provenance
/// how the sessions were measured (`how`: "in a process of its own each", say), with the
/// inferences each further session really timed. A failure is noted there instead; returns
/// whether the session was measured.
pub fn record_session(
    settings: &MeasureSettings,
    cell: &mut CellResult,
    session: std::result::Result<FreshSession, String>,
    how: &str,
) -> bool {
    let measured = session.is_ok();
    let failure = match session {
        Ok(s) => {
            cell.session_p50_ms.push(s.p50_ms);
            cell.session_loops.push(s.timed);
            String::new()
        }
        Err(e) => format!("; a further session failed, so no more were measured: {e}"),
    };
    let warmup = WarmUp::for_extra_session(&settings.warmup);
    let stop = StopRule::for_extra_session(&settings.stop);
    let further = cell.session_loops.get(1..).unwrap_or_default();
    let loops = if further.is_empty() {
        String::new()
    } else {
        let each: Vec<String> = further
            .iter()
            .map(|l| {
                format!(
                    "{} inferences ({})",
                    l.inferences,
                    stop_label(l.stop_reason)
                )
            })
            .collect();
        let short = further
            .iter()
            .filter(|l| {
                l.stop_reason == StopReason::MaxDuration && l.inferences < stop.min_iterations
            })
            .count();
        format!(
            "; the further sessions timed {}{}",
            each.join(", "),
            if short > 0 {
                format!(
                    "; {short} of them reached the maximum duration before the minimum of {} inferences",
                    stop.min_iterations
                )
            } else {
                String::new()
            }
        )
    };
    cell.provenance.insert(
        "session_p50_ms".into(),
        format!(
            "measured: the median of each of {} sessions (monotonic clock); the first is the cell's, the \
             others loaded afresh {how}, each warmed up for at least {} inferences and {:.2} s, then timed \
             until the 95 % CI of its median was within ±{} % after at least {} inferences and {:.2} s, \
             or until {:.2} s had passed, whichever came first{loops}{failure}",
            cell.session_p50_ms.len(),
            warmup.min_iterations,
            warmup.min_duration.as_secs_f64(),
            stop.target_relative_ci * 100.0,
            stop.min_iterations,
            stop.min_duration.as_secs_f64(),
            stop.max_duration.as_secs_f64()
        ),
    );
    measured
}
