//! What `chipbench bench` takes from the hardware side: the energy plan (the meters readable
//! here, and the catalog's active powers for the estimate), the idle baseline, the stored
//! roofline ceilings that bound each cell, and the projections onto catalog chips.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chipbench_core::result::{CellResult, Host, IdleBaseline, Projections, Status};
use chipbench_core::{Device, DeviceKind};
use chipbench_energy::{ActivePower, EnergyPlan, EstimateModel};
use chipbench_probe::catalog::{self, Chip, Precision};
use chipbench_probe::projection::{self, Workload};
use chipbench_probe::roofline::{self, Ceilings};
use chipbench_runner::Target;

use crate::UsageError;

/// Where `chipbench roofline` keeps ceilings, and `chipbench bench` looks for them.
pub const RESULTS_DIR: &str = "bench-results";

pub struct Hardware {
    energy: Arc<EnergyPlan>,
    /// The ceilings and how to name them in provenance.
    ceilings: Option<(Ceilings, String)>,
    chips: Vec<Chip>,
}

impl Hardware {
    /// Discovers the meters, measures the idle baseline when asked, and loads the ceilings of
    /// this host (`explicit`, else `bench-results/roofline/<fingerprint>.json` when present).
    pub fn prepare(
        host: &Host,
        targets: &[Target],
        idle_baseline: Option<Duration>,
        explicit_ceilings: Option<&Path>,
        talk: bool,
    ) -> anyhow::Result<Hardware> {
        let chips = catalog::catalog().context("the built-in chip catalog is invalid")?;
        let devices: Vec<&Device> = targets.iter().map(|t| &t.device).collect();
        let (mut plan, _) =
            EnergyPlan::discover(Path::new("/"), estimate_model(host, &chips, &devices));
        if let Some(duration) = idle_baseline {
            if talk && !plan.meters().is_empty() {
                eprintln!(
                    "measuring the idle baseline for {} (keep the machine quiet)...",
                    humantime::format_duration(duration)
                );
            }
            let baseline = plan.measure_idle(duration);
            if talk && let Some(note) = &baseline.note {
                eprintln!("idle baseline not measured: {note}");
            }
        }
        let ceilings = load_ceilings(host, explicit_ceilings)?;
        Ok(Hardware {
            energy: Arc::new(plan),
            ceilings,
            chips,
        })
    }

    pub fn energy_plan(&self) -> Arc<EnergyPlan> {
        self.energy.clone()
    }

    pub fn idle_baseline(&self) -> Option<IdleBaseline> {
        self.energy.idle_baseline().cloned()
    }

    /// Adds the host's bound to a measured cell's roofline.
    pub fn bound(&self, cell: &mut CellResult) {
        let (kind, name, threads) = (
            cell.backend.device_kind,
            cell.backend.device_name.clone(),
            cell.backend.threads,
        );
        if let Some(r) = cell.roofline.as_mut() {
            let ceilings = self.ceilings.as_ref().map(|(c, label)| (c, label.as_str()));
            roofline::bound_cell(r, ceilings, kind, &name, threads);
        }
    }

    /// Every measured model variant projected onto every catalog chip; `None` when no cell has
    /// the figures (MACs unknown, or nothing ran). Where a catalog entry names this host's CPU,
    /// its lower bounds are checked against the cells measured here.
    pub fn projections(&self, cells: &[CellResult], host: &Host) -> Option<Projections> {
        let mut workloads: Vec<Workload> = Vec::new();
        for cell in cells.iter().filter(|c| c.status == Status::Ok) {
            let Some(r) = &cell.roofline else { continue };
            let Some(precision) = Precision::from_label(&r.precision) else {
                continue;
            };
            if workloads
                .iter()
                .any(|w| w.model == cell.model.name && w.variant == cell.model.variant)
            {
                continue;
            }
            workloads.push(Workload {
                model: cell.model.name.clone(),
                variant: cell.model.variant.clone(),
                precision,
                flops: r.flops_per_inference,
                bytes: r.bytes_per_inference,
                weight_bytes: cell.model.weight_bytes.unwrap_or(0) as f64,
            });
        }
        if workloads.is_empty() {
            return None;
        }
        let mut projections = projection::project(&workloads, &self.chips);
        if let Some(own) =
            catalog::cpu_core_for(&self.chips, host).filter(|chip| chip.matches(&host.cpu_brand))
        {
            projections.checks = projection::check(&projections, own, cells, host.logical_cores);
        }
        Some(projections)
    }
}

/// Active powers for the estimate: the catalog entry of this CPU's cores (or the stated
/// conservative default), and the catalog's rated power of each GPU the run uses.
pub fn estimate_model(host: &Host, chips: &[Chip], devices: &[&Device]) -> EstimateModel {
    let cpu_core =
        match catalog::cpu_core_for(chips, host).and_then(|c| Some((c, c.per_core_active_w?))) {
            Some((chip, watts)) => ActivePower {
                watts,
                source: format!(
                    "catalog '{}'{}: {}",
                    chip.id,
                    if chip.matches(&host.cpu_brand) {
                        ""
                    } else {
                        ", as no entry matches this CPU"
                    },
                    chip.derived
                        .get("per_core_active_w")
                        .cloned()
                        .unwrap_or_else(|| chip.source_text())
                ),
            },
            None => chipbench_energy::estimate::conservative_per_core(),
        };
    let mut model = EstimateModel::cpu_only(cpu_core);
    for device in devices
        .iter()
        .filter(|d| !matches!(d.kind, DeviceKind::Cpu | DeviceKind::SoftwareRasterizer))
    {
        if let Some((chip, (watts, basis))) =
            catalog::gpu_for(chips, &device.name).and_then(|c| Some((c, c.rated_power()?)))
        {
            let source = format!(
                "catalog '{}' {basis}, the board at full load: an upper-side figure",
                chip.id
            );
            model
                .gpus
                .insert(device.name.clone(), ActivePower { watts, source });
        }
    }
    model
}

/// The stored ceilings of this host and the label provenance gives them. An explicit file must
/// load; the default one is used when present and valid.
fn load_ceilings(
    host: &Host,
    explicit: Option<&Path>,
) -> anyhow::Result<Option<(Ceilings, String)>> {
    let (path, required): (PathBuf, bool) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => (
            roofline::path_for(Path::new(RESULTS_DIR), &host.fingerprint),
            false,
        ),
    };
    if !required && !path.is_file() {
        return Ok(None);
    }
    match Ceilings::load(&path) {
        Ok(ceilings) => {
            let mut label = path.display().to_string();
            if ceilings.host.fingerprint != host.fingerprint {
                label.push_str(&format!(
                    " (measured on another host, fingerprint {})",
                    ceilings.host.fingerprint
                ));
            }
            Ok(Some((ceilings, label)))
        }
        Err(e) if required => Err(UsageError(format!("--ceilings {e}")).into()),
        Err(e) => {
            eprintln!("warning: ignoring the stored roofline ceilings: {e}");
            Ok(None)
        }
    }
}
