//! The energy window around a cell's timed loop: opened just before it, closed just after, and
//! stretched with untimed inferences only when the loop was shorter than the slowest sensor
//! needs (a few refresh periods).

use std::sync::atomic::Ordering;
use std::time::Duration;

use chipbench_core::result::CellResult;
use chipbench_core::{DeviceKind, PreparedInputs, Result, Session};
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
        inputs: &PreparedInputs,
        timed: &Measurement,
        device: (DeviceKind, &str),
        cell: &mut CellResult,
    ) -> Result<()> {
        let min_window = self.plan.min_window();
        let mut extra = 0u64;
        // Ctrl-C ends the stretch too: the user asked for the results now.
        while self.open.elapsed() < min_window && !INTERRUPTED.load(Ordering::Relaxed) {
            session.run_prepared(inputs)?;
            extra += 1;
        }
        let short = self.open.elapsed() < min_window;
        let cpu_at_close = process_cpu_time();
        let timed_n = timed.samples_ms.len() as u64;
        let inferences = timed_n + extra;
        let work = Work {
            inferences,
            // The timed loop's bookkeeping is no inference's work (see `Bookkeeping`).
            cpu_time: self
                .cpu_at_open
                .zip(cpu_at_close)
                .map(|(a, b)| b.saturating_sub(a).saturating_sub(timed.bookkeeping.cpu)),
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
                provenance.push_str(&bookkeeping_note(&closed.energy.method, timed));
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

/// What the timed loop's bookkeeping between inferences (see `Bookkeeping`) does to the figure:
/// left out of the CPU time an estimate is made from, inside a sensor's reading.
fn bookkeeping_note(method: &str, timed: &Measurement) -> String {
    let b = timed.bookkeeping;
    if b.checks == 0 && b.wall.is_zero() {
        return String::new();
    }
    let mut note = String::new();
    if method.contains(chipbench_energy::estimate::CPU_METHOD) {
        note += &format!(
            "; the CPU time leaves out the timed loop's bookkeeping between inferences (the stop \
             rule's checks of the CI, {}, and the growth of the sample buffers: {:.3} ms on the \
             measuring thread)",
            b.checks,
            b.cpu.as_secs_f64() * 1e3
        );
    }
    if method.contains("measured:") {
        note += &format!(
            "; the sensors' readings include that bookkeeping ({:.3} ms of the window)",
            b.wall.as_secs_f64() * 1e3
        );
    }
    note
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
