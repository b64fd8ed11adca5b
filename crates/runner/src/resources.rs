//! Process resources around a cell: CPU time (user + system, all threads) and peak resident memory.

use std::time::Duration;

use chipbench_core::TensorInfo;

/// User + system CPU time consumed so far by every thread of this process (`getrusage`).
pub fn process_cpu_time() -> Option<Duration> {
    #[cfg(unix)]
    {
        // SAFETY: getrusage only writes into the struct we pass.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return None;
        }
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        Some(tv(usage.ru_utime) + tv(usage.ru_stime))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// CPU time consumed so far by the calling thread (`CLOCK_THREAD_CPUTIME_ID`, nanoseconds): what
/// the timed loop's own bookkeeping costs, without the engine's worker threads.
pub fn thread_cpu_time() -> Option<Duration> {
    #[cfg(unix)]
    {
        // SAFETY: clock_gettime only writes into the struct we pass.
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
            return None;
        }
        Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

pub const CPU_TIME_METHOD: &str = "measured: getrusage(RUSAGE_SELF) user+sys of the whole process over the timed loop, \
     less the CPU time of the loop's bookkeeping between inferences (the stop rule's checks of the CI and the growth of \
     the sample buffers, clock_gettime(CLOCK_THREAD_CPUTIME_ID) around each on the measuring thread), divided by its \
     inferences";

/// Peak resident set size of the process, resettable between cells.
///
/// On Linux, writing `5` to `/proc/self/clear_refs` resets the high-water mark (`VmHWM`) to the
/// current RSS, so each cell gets its own peak. Elsewhere `ru_maxrss` is the peak since the process
/// started, and the method string says so.
pub struct PeakMemory {
    resettable: bool,
    baseline: Option<u64>,
}

impl PeakMemory {
    /// Starts a new observation window.
    pub fn reset() -> PeakMemory {
        let resettable = cfg!(target_os = "linux")
            && std::fs::write("/proc/self/clear_refs", "5").is_ok()
            && vm_hwm().is_some();
        PeakMemory {
            resettable,
            baseline: status_kib("VmRSS:").map(|kib| kib * 1024),
        }
    }

    /// Resident memory when the window started: what the process already held (the harness,
    /// engine libraries loaded by backend discovery, reference outputs) before this cell.
    pub fn baseline_bytes(&self) -> Option<u64> {
        self.baseline
    }

    /// Peak RSS in bytes since [`PeakMemory::reset`] (or process start, see `method`).
    pub fn peak_bytes(&self) -> Option<u64> {
        if self.resettable { vm_hwm() } else { max_rss() }
    }

    pub fn method(&self) -> &'static str {
        if self.resettable {
            "measured: VmHWM of /proc/self/status after a reset through /proc/self/clear_refs; whole process (harness, reference outputs and this cell's session)"
        } else {
            "measured: getrusage ru_maxrss, peak of the whole process since it started (not resettable here)"
        }
    }
}

fn vm_hwm() -> Option<u64> {
    status_kib("VmHWM:").map(|kib| kib * 1024)
}

/// A `kB` field of `/proc/self/status` (Linux only).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn max_rss() -> Option<u64> {
    #[cfg(unix)]
    {
        // SAFETY: getrusage only writes into the struct we pass.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return None;
        }
        // Linux reports KiB, macOS bytes.
        let scale = if cfg!(target_os = "macos") { 1 } else { 1024 };
        Some(usage.ru_maxrss as u64 * scale)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_advances_with_work() {
        let before = process_cpu_time().unwrap();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(process_cpu_time().unwrap() > before);
    }

    #[test]
    fn thread_cpu_time_counts_this_thread_only() {
        let before = thread_cpu_time().unwrap();
        let sleeper = std::thread::spawn(|| {
            let start = std::time::Instant::now();
            let mut x = 0u64;
            while start.elapsed() < Duration::from_millis(100) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            std::hint::black_box(x);
        });
        std::thread::sleep(Duration::from_millis(100));
        sleeper.join().unwrap();
        let spent = thread_cpu_time().unwrap() - before;
        assert!(
            spent < Duration::from_millis(50),
            "{spent:?}: another thread's spinning counted"
        );
    }

    #[test]
    fn peak_memory_sees_a_large_allocation() {
        let window = PeakMemory::reset();
        let before = window.peak_bytes().unwrap();
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        let after = window.peak_bytes().unwrap();
        assert!(after >= before + (60 << 20), "{before} -> {after}");
        assert!(
            window.baseline_bytes().unwrap() <= before + (4 << 20),
            "the baseline predates the allocation"
        );
    }
}

/// The least memory a cell holds besides the engine's working memory, estimated before it runs:
/// the inputs it generates (the timed set and one accuracy sample at a time), the weights (the
/// engine's copy and the file it reads), and every output it keeps (the first inference's, and
/// the reference's and its own for each accuracy sample). Outputs whose shapes are unknown count
/// as nothing, so the estimate stays a lower bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryNeed {
    pub bytes: u64,
    /// The largest input, by name, and its size.
    pub largest_input: Option<(String, u64)>,
    /// The outputs of one inference, where their shapes are known.
    pub output_bytes: u64,
}

impl MemoryNeed {
    /// The estimate for inputs `bound`, outputs of `output_bytes` per inference in all, weights
    /// of `weight_bytes` and `accuracy_samples` accuracy samples. The error names an input whose
    /// size overflows or that has a dimension of 0.
    pub fn estimate(
        bound: &[TensorInfo],
        output_bytes: u64,
        weight_bytes: u64,
        accuracy_samples: usize,
    ) -> Result<MemoryNeed, String> {
        let mut inputs: u64 = 0;
        let mut largest_input: Option<(String, u64)> = None;
        for info in bound {
            if info.shape.contains(&0) {
                return Err(format!(
                    "input '{}' has a dimension of 0 ({}): there is no data to feed",
                    info.name,
                    chipbench_core::tensor::format_shape(&info.shape)
                ));
            }
            let bytes = info.bytes().ok_or_else(|| {
                format!(
                    "input '{}' ({}, {}): its size overflows",
                    info.name,
                    chipbench_core::tensor::format_shape(&info.shape),
                    info.dtype
                )
            })?;
            inputs = inputs.saturating_add(bytes);
            if largest_input.as_ref().is_none_or(|(_, b)| bytes > *b) {
                largest_input = Some((info.name.clone(), bytes));
            }
        }
        let outputs_kept = 1 + 2 * accuracy_samples as u64;
        let bytes = inputs
            .saturating_mul(2)
            .saturating_add(weight_bytes.saturating_mul(2))
            .saturating_add(output_bytes.saturating_mul(outputs_kept));
        Ok(MemoryNeed {
            bytes,
            largest_input,
            output_bytes,
        })
    }

    /// Why a cell with this need cannot run under `budget` bytes (`how`: where the budget comes
    /// from); `None` when it fits.
    pub fn over(&self, budget: u64, how: &str) -> Option<String> {
        (self.bytes > budget).then(|| {
            // What makes it large: the largest input, or the outputs when they weigh more.
            let input = self.largest_input.clone().unwrap_or_default();
            let cause = if self.output_bytes > input.1 {
                format!(
                    "its outputs are {} per inference; ",
                    chipbench_core::format_bytes(self.output_bytes as f64)
                )
            } else if input.1 > 0 {
                format!(
                    "input '{}' is {}; ",
                    input.0,
                    chipbench_core::format_bytes(input.1 as f64)
                )
            } else {
                String::new()
            };
            format!(
                "{cause}the cell needs at least {}; its budget is {} ({how}); set --memory-cap to change it",
                chipbench_core::format_bytes(self.bytes as f64),
                chipbench_core::format_bytes(budget as f64)
            )
        })
    }
}

#[cfg(test)]
mod need_tests {
    use chipbench_core::{DType, TensorInfo};

    use super::MemoryNeed;

    fn input(name: &str, shape: &[usize]) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dtype: DType::F32,
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn an_8_gib_input_is_over_a_budget_with_the_figures() {
        let need = MemoryNeed::estimate(&[input("x", &[1, 1 << 31])], 4, 1 << 20, 8).unwrap();
        // Inputs twice (8 GiB each), weights twice, the output 17 times.
        assert_eq!(need.bytes, (16u64 << 30) + (2 << 20) + 17 * 4);
        let why = need.over(18 << 30, "a test").is_none();
        assert!(why, "16 GiB fits 18 GiB");
        let why = need.over(4 << 30, "80 % of available").unwrap();
        assert!(
            why.starts_with("input 'x' is 8.0 GiB; the cell needs at least 16.0 GiB; its budget is 4.0 GiB (80 % of available)"),
            "{why}"
        );
    }

    #[test]
    fn a_zero_or_overflowing_dimension_names_the_input() {
        let zero = MemoryNeed::estimate(&[input("ids", &[1, 0])], 0, 0, 0).unwrap_err();
        assert!(
            zero.starts_with("input 'ids' has a dimension of 0"),
            "{zero}"
        );
        let huge = MemoryNeed::estimate(&[input("x", &[usize::MAX, 4])], 0, 0, 0).unwrap_err();
        assert!(
            huge.contains("input 'x'") && huge.contains("overflows"),
            "{huge}"
        );
    }
}
