//! The energy window around a cell's timed loop: opened just before it, closed just after, and
//! stretched with untimed inferences only when the loop was shorter than the slowest sensor
//! needs (a few refresh periods).

use std::sync::atomic::Ordering;
use std::time::Duration;

use chipbench_core::result::CellResult;
use chipbench_core::{DeviceKind, Result, Session, Tensor};
use chipbench_energy::{EnergyPlan, GpuWork, OpenEnergy, Work};

use crate::measure::{INTERRUPTED, Measurement};
use crate::resources::process_cpu_time;

/// An open energy window and the process CPU time when it opened.
pub(crate) struct EnergyWindow<'a> {
    plan: &'a EnergyPlan,
    open: OpenEnergy<'a>,
    cpu_at_open: Option<Duration>,
}

/// Opens the window; a meter that cannot be opened leaves the cell without energy and says why.
pub(crate) fn open<'a>(
    plan: Option<&'a EnergyPlan>,
    cell: &mut CellResult,
) -> Option<EnergyWindow<'a>> {
    let plan = plan?;
    match plan.open() {
        Ok(open) => Some(EnergyWindow {
            plan,
            open,
            cpu_at_open: process_cpu_time(),
        }),
        Err(e) => {
            cell.provenance
                .insert("energy".into(), format!("not measured: {e}"));
            None
        }
    }
}

impl EnergyWindow<'_> {
    /// Runs untimed inferences until the window is long enough, closes it and records the
    /// cell's energy. A sensor failure leaves the cell without energy (and the reason); only an
    /// inference failure is an error.
    pub(crate) fn close(
        self,
        session: &mut dyn Session,
        inputs: &[Tensor],
        timed: &Measurement,
        device: (DeviceKind, &str),
        cell: &mut CellResult,
    ) -> Result<()> {
        let min_window = self.plan.min_window();
        let mut extra = 0u64;
        // Ctrl-C ends the stretch too: the user asked for the results now.
        while self.open.elapsed() < min_window && !INTERRUPTED.load(Ordering::Relaxed) {
            session.run(inputs)?;
            extra += 1;
        }
        let short = self.open.elapsed() < min_window;
        let cpu_at_close = process_cpu_time();
        let timed_n = timed.samples_ms.len() as u64;
        let inferences = timed_n + extra;
        let work = Work {
            inferences,
            cpu_time: self
                .cpu_at_open
                .zip(cpu_at_close)
                .map(|(a, b)| b.saturating_sub(a)),
            gpu: gpu_work(device, timed, inferences),
        };
        match self.open.close(&work) {
            Ok(closed) => {
                let mut provenance = closed.provenance;
                if extra > 0 {
                    provenance.push_str(&format!(
                        "; the timed loop ended before the window spanned {} ms ({} refreshes of the slowest \
                         sensor), so {extra} untimed inferences ran past the stop rule inside the window",
                        min_window.as_millis(),
                        chipbench_energy::plan::MIN_UPDATE_PERIODS
                    ));
                }
                if short {
                    provenance.push_str(&format!(
                        "; interrupted: the window is shorter than {} ms, the sensors' figures are coarse",
                        min_window.as_millis()
                    ));
                }
                cell.energy = Some(closed.energy);
                cell.provenance.insert("energy".into(), provenance);
            }
            Err(e) => {
                cell.provenance
                    .insert("energy".into(), format!("not measured: {e}"));
            }
        }
        Ok(())
    }
}

/// How long the GPU was busy over the window: the device-side time of the timed inferences
/// where the backend measures it, otherwise their host latency (an upper bound), scaled to every
/// inference in the window.
fn gpu_work(
    (kind, name): (DeviceKind, &str),
    timed: &Measurement,
    inferences: u64,
) -> Option<GpuWork> {
    let gpu = matches!(
        kind,
        DeviceKind::DiscreteGpu
            | DeviceKind::IntegratedGpu
            | DeviceKind::VirtualGpu
            | DeviceKind::Accelerator
    );
    if !gpu || timed.samples_ms.is_empty() {
        return None;
    }
    let device_timed = timed.device_samples_ms.len() == timed.samples_ms.len();
    let (samples, basis) = if device_timed {
        (&timed.device_samples_ms, "device timestamps")
    } else {
        (
            &timed.samples_ms,
            "host latency, an upper bound on GPU busy time",
        )
    };
    let mean_ms = samples.iter().sum::<f64>() / samples.len() as f64;
    Some(GpuWork {
        device: name.to_string(),
        busy: Duration::from_secs_f64(mean_ms * inferences as f64 / 1e3),
        basis: basis.into(),
    })
}
