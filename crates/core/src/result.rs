//! The result schema (`chipbench.run/2`): what `run.json` and `cells.jsonl` hold.
//!
//! Field names are a public contract; `schema/run.schema.json` in this crate describes them and a
//! test validates real output against it. Every figure has a provenance entry saying how it was
//! obtained (measured by which clock or counter, derived, or estimated).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{DeviceKind, NodePlacement, OperatorTime, TensorInfo};

mod fleet;
mod generation;
mod peak;
mod scenario;
pub use fleet::{FleetHost, FleetRecord, ShardRecord};
pub use generation::{
    GenerationAccuracy, GenerationRequest, GenerationRun, GenerationServing, TokenVerdict,
};
pub use peak::PeakQps;
pub use scenario::{LatencyVerdict, ScenarioRun, Throughput};

/// The version this build writes. Version 2 added `hosts`: a fleet run merged from the shards of
/// one plan holds cells of many hosts, each cell naming its own.
pub const SCHEMA: &str = "chipbench.run/2";

/// Every version this build reads: a version 1 run is a version 2 run with one host.
pub const READABLE_SCHEMAS: [&str; 2] = ["chipbench.run/1", SCHEMA];

/// The JSON Schema of `run.json`.
pub const RUN_JSON_SCHEMA: &str = include_str!("../schema/run.schema.json");

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub schema: String,
    pub run_id: String,
    pub tool_version: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: Option<String>,
    /// True when the user stopped the run before every planned cell was measured.
    #[serde(default)]
    pub interrupted: bool,
    pub host: Host,
    pub config: RunConfig,
    pub cells: Vec<CellResult>,
    /// Power drawn while idle, measured once before the cells (`--idle-baseline`).
    #[serde(default)]
    pub idle_baseline: Option<IdleBaseline>,
    /// Roofline lower bounds on catalog chips this run did not measure: projections from
    /// datasheet figures, never measurements; kept apart from `cells` so they cannot be mixed up.
    #[serde(default)]
    pub projections: Option<Projections>,
    /// The host's own speed, checked before the first cell and after each cell with a fixed
    /// kernel, so a comparison can tell a slower host from slower code.
    #[serde(default)]
    pub speed_checks: Vec<SpeedCheck>,
    /// What each `--find-peak` search found; its probes are among `cells`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peaks: Vec<PeakQps>,
    /// The hosts of a fleet run (`chipbench merge`), one per shard run, which each cell names in
    /// its `host`; empty for a run of one host, whose cells all ran on `host` (then `host` of a
    /// fleet run is its first shard's).
    #[serde(default)]
    pub hosts: Vec<FleetHost>,
    /// The part of a fleet plan this run measured (`bench --plan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRecord>,
    /// How the shards of a fleet run were merged, and the planned cells none delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetRecord>,
}

/// The machine a run was measured on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub cpu_brand: String,
    pub cpu_vendor: String,
    pub arch: String,
    pub logical_cores: usize,
    pub physical_cores: Option<usize>,
    pub memory_bytes: u64,
    pub os: String,
    pub kernel: String,
    pub hostname: String,
    /// Stable digest of what decides speed (CPU, cores, memory, OS, kernel); runs are compared
    /// only between equal fingerprints unless the user says otherwise.
    pub fingerprint: String,
    /// Instruction-set features that decide inference speed, spelled as Linux's /proc/cpuinfo
    /// spells them (`avx512_vnni`, `amx_int8`, `asimddp`), sorted.
    #[serde(default)]
    pub isa_flags: Vec<String>,
    #[serde(default)]
    pub cpu_frequency_mhz: CpuFrequency,
    #[serde(default)]
    pub caches: Vec<CpuCache>,
    /// The hypervisor this host runs under (`KVM`), when it is a virtual machine.
    #[serde(default)]
    pub hypervisor: Option<String>,
    /// The container runtime this process runs in (`docker`), when it is in one.
    #[serde(default)]
    pub container: Option<String>,
    /// The cpufreq scaling governor of CPU 0 (`performance`, `powersave`).
    #[serde(default)]
    pub frequency_governor: Option<String>,
    /// Whether turbo / boost is enabled.
    #[serde(default)]
    pub turbo: Option<bool>,
    #[serde(default)]
    pub gpus: Vec<Gpu>,
    /// Every energy sensor looked for: readable ones with scope and update period, the others
    /// with the reason.
    #[serde(default)]
    pub energy_sensors: Vec<EnergySensor>,
    /// How each host field was read, and why an empty one is empty.
    #[serde(default)]
    pub provenance: BTreeMap<String, String>,
}

/// CPU clock frequencies in MHz; `None` where the system does not expose them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuFrequency {
    pub base: Option<f64>,
    pub max: Option<f64>,
    /// What the kernel reported when the host was probed.
    pub current: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuCache {
    pub level: u8,
    /// `data`, `instruction` or `unified`.
    pub kind: String,
    pub size_bytes: u64,
    /// Logical CPUs sharing one instance of this cache.
    pub shared_by: usize,
}

/// A GPU seen by a driver library (NVML) or a graphics API (wgpu).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    /// Who reported it: `nvml`, `wgpu`.
    pub source: String,
    pub name: String,
    pub kind: DeviceKind,
    pub memory_bytes: Option<u64>,
    pub driver: Option<String>,
    /// The enforced board power limit.
    pub power_limit_w: Option<f64>,
}

/// An energy sensor, readable or not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnergySensor {
    /// The meter family: `rapl`, `nvml`, `hwmon`, `ina3221`.
    pub meter: String,
    /// The domain as the sensor names it (`package-0`, `dram`, `VDD_IN`, `GPU 0`).
    pub name: String,
    /// `package`, `core`, `uncore`, `dram`, `platform`, `gpu`, `board` or `rail`.
    pub scope: String,
    /// Where it was read (sysfs path or library).
    pub source: String,
    pub readable: bool,
    /// How often the sensor refreshes; energy windows last several of these.
    pub update_period_ms: Option<f64>,
    /// Why it cannot be read.
    pub reason: Option<String>,
}

/// What the run was asked to do.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub models: Vec<String>,
    pub backends: Vec<String>,
    pub variants: Vec<String>,
    /// Requested intra-op threads; `None` = each backend's default.
    pub threads: Option<usize>,
    pub scenario: String,
    /// How the cells were measured (written flat: `seed`, `warmup_min_iterations`, ...).
    #[serde(flatten)]
    pub settings: crate::settings::MeasureSettings,
    pub quick: bool,
    /// The edge device this run emulated on its host (`--edge-profile`): its timings are this
    /// host's under the profile's constraints, never the device's.
    #[serde(default)]
    pub edge_profile: Option<EdgeEmulation>,
}

/// What every timing of an `--edge-profile` run is.
pub const EDGE_LABEL: &str =
    "host timings under the profile's constraints, not measurements of the device";

/// An edge device emulated on the host: threads capped to its cores, each cell in its own process
/// pinned to that many CPUs and capped to its RAM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeEmulation {
    /// The profile id (`rpi4`) and name.
    pub profile: String,
    pub name: String,
    /// The catalog chip whose projection sits beside the cells; `None` when the catalog has none.
    pub chip: Option<String>,
    /// The profile's CPU cores.
    pub cores: usize,
    /// The CPUs of this host each cell's process was pinned to; empty when it could not be.
    pub pinned_cpus: Vec<usize>,
    /// The profile's RAM.
    pub memory_bytes: u64,
    /// The cap each cell's process ran under (the RAM unless `--memory-cap` says otherwise).
    pub memory_cap_bytes: u64,
    /// `cgroup-v2` (memory.max) or `cgroup-v1` (memory.limit_in_bytes), which cap resident
    /// memory, or `rlimit-as` (RLIMIT_AS), which caps virtual address space.
    pub memory_limit: String,
    /// [`EDGE_LABEL`].
    pub label: String,
    /// What the emulation could and could not do here, and where the profile's figures come from.
    pub notes: Vec<String>,
}

/// Whether a cell's model variant fits the emulated device, from the cell's own process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeFit {
    /// The profile id.
    pub profile: String,
    /// Peak RSS and model file both within the profile's RAM; `None` when unknown (the cell failed
    /// for another reason, or ran out of memory under a cap below the RAM).
    pub fits: Option<bool>,
    /// The cell's process ran out of memory under the cap.
    pub out_of_memory: bool,
    /// Peak memory as the cap counts it: the cgroup's peak usage, or the peak virtual size under
    /// RLIMIT_AS.
    pub capped_peak_bytes: Option<u64>,
    /// The CPUs the cell's process could run on, as it read them itself (sched_getaffinity).
    pub cpus: Vec<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
    Skipped,
}

/// Which rule ended the timed loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The minimums were met and the 95 % CI of the median was within the target.
    CiWithinTarget,
    /// The maximum duration was reached first.
    MaxDuration,
    /// The user interrupted the run (Ctrl-C); the samples taken so far are kept.
    Interrupted,
}

/// How a session's timed loop ended: how many inferences it timed, and which rule stopped it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimedLoop {
    pub inferences: u64,
    pub stop_reason: StopReason,
}

/// One measured combination of model variant, backend, device, scenario and threads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    pub model: ModelRecord,
    pub backend: BackendRecord,
    pub scenario: String,
    /// The point of a scenario's sweep the cell measured (`b4-c2`: batch 4, concurrency 2;
    /// `b1-c1-q500`: at 500 QPS); with the scenario and the threads it tells the cells of one
    /// model on one device apart. `None` for single-stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario_point: Option<String>,
    pub status: Status,
    pub error: Option<String>,
    /// The concrete input shapes the model ran with.
    pub inputs: Vec<TensorInfo>,
    /// Whether the inputs were real samples or seeded random data (its provenance says which
    /// samples); absent in runs from before chipbench recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_data: Option<InputData>,
    /// Model load + optimisation until the session is ready.
    pub load_ms: Option<f64>,
    /// The first inference after load, measured alone (cold caches, lazy initialisation).
    pub first_inference_ms: Option<f64>,
    pub warmup: Option<Warmup>,
    pub latency_ms: Option<LatencyStats>,
    /// Every timed inference, in the order measured.
    pub samples_ms: Vec<f64>,
    /// Median latency of each session measured for the cell, the first being the one all other
    /// figures come from, the others loaded afresh and timed briefly: how much the speed of a
    /// fresh session varies (buffer placement, the host), which one session's samples cannot show.
    #[serde(default)]
    pub session_p50_ms: Vec<f64>,
    /// How the timed loop of each session of `session_p50_ms` ended, in the same order (a
    /// further session's loop is short and may reach its maximum duration before its minimum
    /// count); empty in results written before chipbench recorded it.
    #[serde(default)]
    pub session_loops: Vec<TimedLoop>,
    pub stop_reason: Option<StopReason>,
    /// Device-side time of the timed inferences, where the backend measures it (GPU timestamp
    /// queries); `latency_ms` stays the host end-to-end time.
    #[serde(default)]
    pub device_latency_ms: Option<LatencyStats>,
    /// Timed inferences whose device time the backend discarded as implausible (an end timestamp
    /// not after its start, or a device time longer than the host end-to-end time); `None` when
    /// the backend measures no device time.
    #[serde(default)]
    pub device_time_discarded: Option<u64>,
    pub throughput_per_s: Option<f64>,
    pub cpu_ms_per_inference: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
    /// Resident memory just before the session was loaded: `peak_rss_bytes` minus this is what
    /// the cell itself added (the process also holds the harness and other engines' libraries).
    #[serde(default)]
    pub rss_before_load_bytes: Option<u64>,
    pub accuracy: Option<Accuracy>,
    /// Nodes per execution provider, where the engine distributes a model over several (ONNX
    /// Runtime places nodes its requested provider cannot run on the CPU provider).
    #[serde(default)]
    pub placement: Option<Vec<NodePlacement>>,
    /// The engine's own per-operator profile (`--operator-times`).
    #[serde(default)]
    pub profile: Option<OperatorProfile>,
    /// Energy over the timed loop; `method` says whether it was measured or estimated.
    #[serde(default)]
    pub energy: Option<CellEnergy>,
    /// Where the cell sits on this host's roofline.
    #[serde(default)]
    pub roofline: Option<CellRoofline>,
    /// Whether the model variant fits the emulated device (`--edge-profile` runs).
    #[serde(default)]
    pub edge: Option<EdgeFit>,
    /// How a cell of the offline, server or multi-stream scenario was driven and what came of it;
    /// `None` for single-stream, whose figures are the ones above.
    #[serde(default)]
    pub scenario_run: Option<ScenarioRun>,
    /// A generate-scenario cell's requests: TTFT, TPOT, tokens per second, the cache's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<GenerationRun>,
    /// What the engine logged at warning level or above while the cell ran (ONNX Runtime's
    /// log), one line each; its errors are in `error`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Measured by `bench --resume` after the run was interrupted (cells measured before keep
    /// `false`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
    /// In a fleet run, the id of the entry of `hosts` that measured the cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// How each figure above was obtained, keyed by field name.
    pub provenance: BTreeMap<String, String>,
}

impl CellResult {
    /// The scenario and its point (`offline/b4-c2`), or the scenario alone: the part of a cell's
    /// identity the cell ids, the gate's keys and the history use.
    pub fn scenario_label(&self) -> String {
        match &self.scenario_point {
            Some(point) => format!("{}/{point}", self.scenario),
            None => self.scenario.clone(),
        }
    }
}

/// Energy of a cell, from a window of many inferences.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellEnergy {
    /// `measured:rapl`, `measured:nvml`, `estimated:cpu-time x active-power`...; several meters
    /// are joined with `+`.
    pub method: String,
    pub joules_per_inference: f64,
    pub avg_power_w: f64,
    /// Length of the energy window.
    pub window_s: f64,
    /// Inferences run inside the window.
    pub inferences: u64,
    pub domains: Vec<EnergyDomain>,
    /// Power of the idle baseline over the domains counted here, when one was measured.
    pub idle_power_w: Option<f64>,
    /// Joules per inference minus the idle power over the window, when an idle baseline was
    /// measured.
    pub joules_per_inference_above_idle: Option<f64>,
}

impl CellEnergy {
    /// Whether the figure is wholly or partly an estimate. A sensor that does not cover every
    /// domain leaves the rest estimated (`measured:hwmon + estimated:cpu-time x active-power`);
    /// such a figure must not pass for a measurement, so any estimated part makes it one.
    pub fn is_estimate(&self) -> bool {
        self.method
            .split('+')
            .any(|part| part.trim_start().starts_with("estimated"))
    }
}

/// Energy of one domain (a RAPL zone, a GPU, a rail, the estimated CPU share).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnergyDomain {
    pub name: String,
    pub scope: String,
    pub method: String,
    pub joules: f64,
    /// Whether it adds to the cell's total; a sub-domain (RAPL `core` inside `package`) does not.
    pub in_total: bool,
}

/// One check of the host's speed (`chipbench_probe::speed`): a fixed compute kernel timed on one
/// thread with the monotonic clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpeedCheck {
    /// Cells recorded before this check: the check brackets cell `before_cell - 1` (after it)
    /// and cell `before_cell` (before it).
    pub before_cell: usize,
    /// Seconds since the run's first check.
    pub at_s: f64,
    /// Lower quartile of the kernel's timings (small f32 matmuls held in L1), ms.
    pub kernel_ms: f64,
}

/// Power drawn by the idle machine, measured once per run before the cells.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdleBaseline {
    pub method: String,
    pub duration_s: f64,
    /// Average power over the counted domains; `None` when nothing could be measured (`note`).
    pub avg_power_w: Option<f64>,
    pub domains: Vec<EnergyDomain>,
    pub note: Option<String>,
}

/// A cell on the roofline: what it achieved and what this host allows at its arithmetic
/// intensity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellRoofline {
    /// `fp32`, `fp16` or `int8`: which compute ceiling applies.
    pub precision: String,
    /// 2 x MACs of one inference.
    pub flops_per_inference: f64,
    /// Weights + model inputs + model outputs of one inference (compulsory memory traffic).
    pub bytes_per_inference: f64,
    /// FLOPs per byte.
    pub arithmetic_intensity: f64,
    /// FLOPs per inference / median latency (GOP/s for integer variants).
    pub achieved_gflops: f64,
    /// min(compute ceiling, intensity x memory bandwidth) from measured ceilings.
    pub bound_gflops: Option<f64>,
    /// `compute` or `memory`: which ceiling sets the bound.
    pub bound_by: Option<String>,
    pub fraction_of_bound: Option<f64>,
    /// Where the ceilings come from, or why there is no bound.
    pub ceilings: String,
}

/// Projections onto catalog chips, labelled as such.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Projections {
    /// `projection (roofline lower bound from datasheet figures)`.
    pub label: String,
    /// How the figures are computed.
    pub method: String,
    pub entries: Vec<Projection>,
    /// The lower bounds on this host's own catalog entry held against the cells measured here.
    #[serde(default)]
    pub checks: Vec<ProjectionCheck>,
}

/// A projection checked against ground truth: a cell of this host beside the lower bound its
/// own catalog entry gives. A measured latency below it means the catalog figures (or the
/// method) are wrong for this chip.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProjectionCheck {
    pub model: String,
    pub variant: String,
    /// `backend:device`.
    pub backend: String,
    pub threads: Option<usize>,
    pub chip: String,
    /// The entry's lower bound for the cores the cell used (a per-core entry's bound / threads).
    pub lower_bound_ms: f64,
    /// The fastest inference measured (a lower bound must hold for every one).
    pub measured_min_ms: f64,
    pub holds: bool,
}

/// The roofline lower bound of one model variant on one catalog chip.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    pub model: String,
    pub variant: String,
    pub precision: String,
    pub chip: String,
    pub chip_name: String,
    /// `general-purpose`, `specialised` or `edge`.
    pub class: String,
    pub flops: f64,
    pub bytes: f64,
    /// max(FLOPs / peak, bytes / bandwidth); `None` when the chip publishes no peak for this
    /// precision (`note`).
    pub latency_lower_bound_ms: Option<f64>,
    pub bound_by: Option<String>,
    /// Lower-bound latency x the chip's rated power.
    pub energy_j: Option<f64>,
    pub note: Option<String>,
}

/// A backend profiler's view of a cell: where the time went, by provider and by operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatorProfile {
    /// Inferences the profile covers (first inference, warm-up and timed loop).
    pub runs: u64,
    /// Time inside operators, summed over every profiled inference.
    pub total_ms: f64,
    /// Operator time per execution provider or device, largest first.
    pub by_provider: Vec<ProviderTime>,
    /// The operators (graph nodes) that took the most time, largest first.
    pub top_operators: Vec<OperatorTime>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderTime {
    pub provider: String,
    pub total_ms: f64,
    /// Fraction of [`OperatorProfile::total_ms`].
    pub share: f64,
}

impl OperatorProfile {
    /// Sums a backend's per-node times by provider and keeps the `top` slowest nodes; shares are
    /// fractions of the time of every node, not only of the kept ones.
    pub fn summarize(mut operators: Vec<OperatorTime>, runs: u64, top: usize) -> Self {
        let total_ms: f64 = operators.iter().map(|o| o.total_ms).sum();
        let share = |ms: f64| if total_ms > 0.0 { ms / total_ms } else { 0.0 };
        let mut by_provider: Vec<ProviderTime> = Vec::new();
        for op in &operators {
            match by_provider.iter_mut().find(|p| p.provider == op.provider) {
                Some(p) => p.total_ms += op.total_ms,
                None => by_provider.push(ProviderTime {
                    provider: op.provider.clone(),
                    total_ms: op.total_ms,
                    share: 0.0,
                }),
            }
        }
        for p in &mut by_provider {
            p.share = share(p.total_ms);
        }
        by_provider.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        operators.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        operators.truncate(top);
        for op in &mut operators {
            op.share = share(op.total_ms);
        }
        OperatorProfile {
            runs,
            total_ms,
            by_provider,
            top_operators: operators,
        }
    }
}

/// What a cell's inputs were.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputData {
    /// Samples built from files that packages ship (a zoo model's held-out split).
    Real,
    /// Seeded values drawn from the input specs.
    Random,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub name: String,
    pub path: String,
    pub sha256: String,
    pub variant: String,
    /// The recipe that derived this variant from its source model, when it is not the source.
    pub recipe: Option<String>,
    pub params: Option<u64>,
    pub macs: Option<u64>,
    pub weight_bytes: Option<u64>,
    pub file_bytes: Option<u64>,
    /// How a derived variant was made from its fp32 source; `None` for the source itself.
    #[serde(default)]
    pub derivation: Option<Derivation>,
}

/// How a derived variant was made, and what it changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Derivation {
    /// The fp32 model it was derived from, which is also its accuracy reference.
    pub source_path: String,
    pub source_sha256: String,
    /// Zeros among the elements of its weight tensors (initializers of rank 2 or more), as a
    /// fraction: counted in the file.
    pub sparsity: Option<f64>,
    /// Layers converted to int8 or float16.
    pub converted_layers: usize,
    /// Layers a precision step left in float, and why (first/last layer, sensitivity pass,
    /// numerically sensitive operators).
    pub kept_float: Vec<KeptFloat>,
    /// What int8-static calibrated its activation ranges on.
    pub calibration: Option<String>,
    /// The float-keeping policy of an int8 variant (`auto`, `first-last`, `none`).
    #[serde(default)]
    pub keep_float: Option<String>,
    /// Whether the file came from the variant cache of an earlier run.
    pub cached: bool,
    pub notes: Vec<String>,
    /// The backends this file is for, when the variant takes another form on the run's other
    /// backends (weight-only: ONNX Runtime's `MatMulNBits` on `ort`, `DequantizeLinear`
    /// elsewhere); empty: every backend.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<String>,
}

impl Derivation {
    /// Whether the cells of `backend` run this file.
    pub fn is_for(&self, backend: &str) -> bool {
        self.backends.is_empty() || self.backends.iter().any(|b| b == backend)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KeptFloat {
    pub node: String,
    pub op: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendRecord {
    pub name: String,
    pub version: String,
    pub device: String,
    pub device_name: String,
    pub device_kind: DeviceKind,
    /// The threads the engine really ran with (not merely the request).
    pub threads: Option<usize>,
    pub settings: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Warmup {
    pub iterations: u64,
    pub duration_ms: f64,
}

/// Latency statistics in milliseconds; see [`crate::stats`] for the methods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    pub n: usize,
    pub mean: f64,
    pub stddev: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub median_ci95: [f64; 2],
}

/// Agreement of a cell's outputs with the reference outputs on the same inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// What produced the reference outputs (`tract:cpu fp32`).
    pub reference: String,
    /// Number of input samples compared.
    pub samples: usize,
    /// Worst case over outputs.
    pub max_abs_err: f64,
    /// Largest absolute error divided by the largest reference magnitude, worst over outputs.
    pub max_rel_err: f64,
    /// Sum of absolute errors divided by the sum of reference magnitudes, worst over outputs.
    pub mean_rel_err: f64,
    /// Cosine similarity of the flattened outputs, lowest over outputs.
    pub cosine: f64,
    /// Fraction of positions whose argmax agrees, lowest over outputs that look like class scores.
    pub top1_agreement: Option<f64>,
    pub outputs: Vec<OutputAccuracy>,
    /// What the model decides (class, boxes, text, yes/no) against the reference's decisions on
    /// the same samples, by the decoding the zoo catalog names; absent for a model without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<crate::task::TaskAccuracy>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputAccuracy {
    pub name: String,
    pub max_abs_err: f64,
    pub max_rel_err: f64,
    pub mean_rel_err: f64,
    pub cosine: f64,
    pub top1_agreement: Option<f64>,
}

impl CellResult {
    /// A cell that did not produce measurements, with the reason.
    pub fn not_run(
        model: ModelRecord,
        backend: BackendRecord,
        scenario: &str,
        status: Status,
        error: String,
    ) -> Self {
        CellResult {
            model,
            backend,
            scenario: scenario.to_string(),
            scenario_point: None,
            status,
            error: Some(error),
            inputs: Vec::new(),
            input_data: None,
            load_ms: None,
            first_inference_ms: None,
            warmup: None,
            latency_ms: None,
            samples_ms: Vec::new(),
            session_p50_ms: Vec::new(),
            session_loops: Vec::new(),
            stop_reason: None,
            device_latency_ms: None,
            device_time_discarded: None,
            throughput_per_s: None,
            cpu_ms_per_inference: None,
            peak_rss_bytes: None,
            rss_before_load_bytes: None,
            accuracy: None,
            placement: None,
            profile: None,
            energy: None,
            roofline: None,
            edge: None,
            scenario_run: None,
            generation: None,
            warnings: Vec::new(),
            resumed: false,
            host: None,
            provenance: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_with_any_estimated_part_is_an_estimate() {
        let energy = |method: &str| CellEnergy {
            method: method.into(),
            joules_per_inference: 1e-3,
            avg_power_w: 10.0,
            window_s: 1.0,
            inferences: 10_000,
            domains: Vec::new(),
            idle_power_w: None,
            joules_per_inference_above_idle: None,
        };
        assert!(energy("estimated:cpu-time x active-power").is_estimate());
        assert!(energy("measured:hwmon + estimated:cpu-time x active-power").is_estimate());
        assert!(energy("measured:rapl + estimated:gpu-busy x active-power").is_estimate());
        assert!(!energy("measured:rapl").is_estimate());
        assert!(!energy("measured:rapl + measured:nvml").is_estimate());
    }

    #[test]
    fn a_cell_written_before_session_loops_or_scenario_runs_were_recorded_still_reads() {
        let backend = BackendRecord {
            name: "tract".into(),
            version: "0".into(),
            device: "cpu".into(),
            device_name: "CPU".into(),
            device_kind: crate::DeviceKind::Cpu,
            threads: Some(1),
            settings: BTreeMap::new(),
        };
        let mut cell = CellResult::not_run(
            ModelRecord::default(),
            backend,
            "single-stream",
            Status::Ok,
            String::new(),
        );
        cell.session_loops.push(TimedLoop {
            inferences: 12,
            stop_reason: StopReason::MaxDuration,
        });
        let mut json = serde_json::to_value(&cell).unwrap();
        assert_eq!(
            json["session_loops"],
            serde_json::json!([{ "inferences": 12, "stop_reason": "max_duration" }])
        );
        assert!(json["scenario_run"].is_null());
        json.as_object_mut().unwrap().remove("session_loops");
        json.as_object_mut().unwrap().remove("scenario_run");
        let old: CellResult = serde_json::from_value(json).unwrap();
        assert!(old.session_loops.is_empty() && old.scenario_run.is_none());
    }

    #[test]
    fn an_accuracy_written_before_task_accuracy_still_reads_and_one_without_it_omits_it() {
        let old = serde_json::json!({
            "reference": "tract:cpu fp32", "samples": 8, "max_abs_err": 0.0, "max_rel_err": 0.0,
            "mean_rel_err": 0.0, "cosine": 1.0, "top1_agreement": null, "outputs": []
        });
        let accuracy: Accuracy = serde_json::from_value(old.clone()).unwrap();
        assert!(accuracy.task.is_none());
        assert_eq!(serde_json::to_value(&accuracy).unwrap(), old);
        let with_task = Accuracy {
            task: Some(crate::task::TaskAccuracy {
                decoding: "top-k".into(),
                samples: 8,
                top1_agreement: Some(0.875),
                ..Default::default()
            }),
            ..accuracy
        };
        let json = serde_json::to_value(&with_task).unwrap();
        assert_eq!(
            json["task"],
            serde_json::json!({ "decoding": "top-k", "samples": 8, "top1_agreement": 0.875 })
        );
        assert_eq!(serde_json::from_value::<Accuracy>(json).unwrap(), with_task);
    }

    fn op(node: &str, provider: &str, total_ms: f64) -> OperatorTime {
        OperatorTime {
            op_type: "Conv".into(),
            node: node.into(),
            provider: provider.into(),
            total_ms,
            share: 0.0,
        }
    }

    #[test]
    fn a_profile_keeps_the_slowest_operators_with_shares_of_the_whole() {
        let ops = vec![
            op("a", "CPUExecutionProvider", 1.0),
            op("b", "CUDAExecutionProvider", 6.0),
            op("c", "CUDAExecutionProvider", 3.0),
        ];
        let p = OperatorProfile::summarize(ops, 4, 2);
        assert_eq!(p.runs, 4);
        assert_eq!(p.total_ms, 10.0);
        let top: Vec<(&str, f64)> = p
            .top_operators
            .iter()
            .map(|o| (o.node.as_str(), o.share))
            .collect();
        assert_eq!(top, [("b", 0.6), ("c", 0.3)]);
        let providers: Vec<(&str, f64)> = p
            .by_provider
            .iter()
            .map(|t| (t.provider.as_str(), t.share))
            .collect();
        assert_eq!(
            providers,
            [
                ("CUDAExecutionProvider", 0.9),
                ("CPUExecutionProvider", 0.1)
            ]
        );
    }
}
