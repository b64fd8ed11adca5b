//! Projections onto chips this run did not measure: the roofline lower bound of latency (and
//! the energy at rated power over that time) from datasheet figures. They answer "could this
//! accelerator be worth it?", never "how fast is it": labelled, and kept apart from
//! measurements.

use chipbench_core::DeviceKind;
use chipbench_core::result::{CellResult, Projection, ProjectionCheck, Projections, Status};

use crate::catalog::{Chip, Precision};

pub const LABEL: &str = "projection (roofline lower bound from datasheet figures)";

pub const METHOD: &str = "latency >= max(FLOPs / published peak at the variant's precision, bytes \
beyond the published on-chip memory / published memory bandwidth), FLOPs = 2 x MACs, bytes = weights + \
model inputs + outputs; a working set that fits on chip stays there from one inference to the next and \
costs no memory traffic, and a chip without a published on-chip size is bounded by compute alone; \
energy = that time x the chip's TDP (else typical power). A lower bound from vendor figures, not a \
prediction: kernels, launch overheads and batch-1 utilisation put real latency above it.";

/// One model variant's work per inference.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub model: String,
    pub variant: String,
    pub precision: Precision,
    pub flops: f64,
    pub bytes: f64,
    pub weight_bytes: f64,
}

/// Every workload on every catalog chip.
pub fn project(workloads: &[Workload], chips: &[Chip]) -> Projections {
    let entries = workloads
        .iter()
        .flat_map(|w| chips.iter().map(move |c| project_one(w, c)))
        .collect();
    Projections {
        label: LABEL.into(),
        method: METHOD.into(),
        entries,
        checks: Vec::new(),
    }
}

fn project_one(work: &Workload, chip: &Chip) -> Projection {
    let mut notes = Vec::new();
    let mut entry = Projection {
        model: work.model.clone(),
        variant: work.variant.clone(),
        precision: work.precision.label().into(),
        chip: chip.id.clone(),
        chip_name: chip.name.clone(),
        class: chip.class.label().into(),
        flops: work.flops,
        bytes: work.bytes,
        latency_lower_bound_ms: None,
        bound_by: None,
        energy_j: None,
        note: None,
    };
    match chip.peak(work.precision) {
        None => notes.push(format!("no published {} peak", work.precision.label())),
        Some(peak) => {
            if !peak.precision_stated {
                notes.push("the vendor's peak does not state its precision".into());
            }
            let compute_s = work.flops / peak.ops_per_s;
            let memory_s = match (chip.memory_bandwidth_gbs, chip.on_chip_mb) {
                (None, _) => {
                    notes.push("no published memory bandwidth: compute bound only".into());
                    None
                }
                (Some(_), None) => {
                    notes.push(
                        "no published on-chip memory size: compute bound only (the working set may stay on chip)"
                            .into(),
                    );
                    None
                }
                (Some(bw), Some(on_chip_mb)) => {
                    Some((work.bytes - on_chip_mb * 1e6).max(0.0) / (bw * 1e9))
                }
            };
            let (seconds, by) = match memory_s {
                Some(m) if m > compute_s => (m, "memory"),
                _ => (compute_s, "compute"),
            };
            entry.latency_lower_bound_ms = Some(seconds * 1e3);
            entry.bound_by = Some(by.into());
            match chip.rated_power() {
                Some((watts, basis)) => {
                    entry.energy_j = Some(seconds * watts);
                    if basis != "TDP" {
                        notes.push(format!("energy at {basis} ({watts} W)"));
                    }
                }
                None => notes.push("no published power: no energy".into()),
            }
        }
    }
    if let Some(gb) = chip.memory_gb
        && work.weight_bytes > gb * 1e9
    {
        notes.push(format!(
            "the weights ({:.1} GB) exceed the chip's {gb} GB of memory",
            work.weight_bytes / 1e9
        ));
    }
    entry.note = (!notes.is_empty()).then(|| notes.join("; "));
    entry
}

/// Holds the lower bounds that `own_chip` (the catalog entry of this host's CPU) gives against
/// the CPU cells measured here: a per-core entry bounds a cell of T threads at its bound / T,
/// and the bound must hold for the fastest inference. `default_threads` stands for cells whose
/// engine chose its thread count.
pub fn check(
    projections: &Projections,
    own_chip: &Chip,
    cells: &[CellResult],
    default_threads: usize,
) -> Vec<ProjectionCheck> {
    let per_core = own_chip.kind == "cpu-core";
    cells
        .iter()
        .filter(|c| c.status == Status::Ok && c.backend.device_kind == DeviceKind::Cpu)
        .filter_map(|cell| {
            let measured_min_ms = cell.latency_ms.as_ref()?.min;
            let entry = projections.entries.iter().find(|e| {
                e.chip == own_chip.id
                    && e.model == cell.model.name
                    && e.variant == cell.model.variant
            })?;
            let cores = if per_core {
                cell.backend.threads.unwrap_or(default_threads).max(1) as f64
            } else {
                1.0
            };
            let lower_bound_ms = entry.latency_lower_bound_ms? / cores;
            Some(ProjectionCheck {
                model: cell.model.name.clone(),
                variant: cell.model.variant.clone(),
                backend: format!("{}:{}", cell.backend.name, cell.backend.device),
                threads: cell.backend.threads,
                chip: own_chip.id.clone(),
                lower_bound_ms,
                measured_min_ms,
                holds: measured_min_ms >= lower_bound_ms,
            })
        })
        .collect()
}
