//! Projections onto chips this run did not measure: the roofline lower bound of latency (and
//! the energy at rated power over that time) from datasheet figures. They answer "could this
//! accelerator be worth it?", never "how fast is it": labelled, and kept apart from
//! measurements.

use chipbench_core::result::{Projection, Projections};

use crate::catalog::{Chip, Precision};

pub const LABEL: &str = "projection (roofline lower bound from datasheet figures)";

pub const METHOD: &str = "latency >= max(FLOPs / published peak at the variant's precision, bytes / \
published memory bandwidth), FLOPs = 2 x MACs, bytes = weights + model inputs + outputs, each moved \
once; energy = that time x the chip's TDP (else typical power). A lower bound from vendor figures, not a \
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
            let memory_s = chip.memory_bandwidth_gbs.map(|bw| work.bytes / (bw * 1e9));
            if memory_s.is_none() {
                notes.push("no published memory bandwidth: compute bound only".into());
            }
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
