//! Roofline ceilings of this host: stored after `chipbench roofline` measures them (compute
//! through a backend's matmul, memory with a STREAM-style triad), and the bound they put on a
//! cell.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chipbench_core::DeviceKind;
use chipbench_core::result::{CellRoofline, CpuCache, Host};
use serde::{Deserialize, Serialize};

use crate::catalog::Precision;
use crate::{Error, Result};

pub const SCHEMA: &str = "chipbench.roofline/1";

/// Measured ceilings of the devices of one host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ceilings {
    pub schema: String,
    /// The host they were measured on; its fingerprint names the file.
    pub host: Host,
    /// RFC 3339, UTC.
    pub measured_at: String,
    pub devices: Vec<DeviceCeilings>,
}

/// The ceilings of one device at one thread count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceCeilings {
    /// The engine whose kernels were timed (`tract`, `wgpu`).
    pub backend: String,
    pub device: String,
    pub device_name: String,
    pub device_kind: DeviceKind,
    pub threads: Option<usize>,
    pub fp32_gflops: Option<f64>,
    pub fp16_gflops: Option<f64>,
    /// Integer multiply-accumulate rate, 2 operations per MAC.
    pub int8_gops: Option<f64>,
    /// Main-memory (DRAM) bandwidth.
    pub memory_gbs: Option<f64>,
    /// Bandwidth of each cache level at this thread count: a working set that fits a cache is
    /// served from it in a loop of inferences, so it is the memory roof of such a cell.
    #[serde(default)]
    pub cache_bandwidth: Vec<LevelBandwidth>,
    /// How each figure was measured, or why it is missing, keyed by field name.
    pub provenance: BTreeMap<String, String>,
}

/// The bandwidth of one level of the memory hierarchy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LevelBandwidth {
    /// `L1`, `L2`, `L3`.
    pub level: String,
    /// Bytes of this level the measuring threads had between them.
    pub capacity_bytes: u64,
    /// The working set it was measured on (0 in files written before it was recorded).
    #[serde(default)]
    pub footprint_bytes: u64,
    pub gbs: f64,
}

impl DeviceCeilings {
    /// The bandwidth that serves a working set of `bytes`: the fastest level that holds it
    /// (main memory holds everything), with the level's name. Taking the fastest rather than
    /// the smallest keeps the bound an upper bound when noise slowed a small level's
    /// measurement below a larger one's.
    pub fn bandwidth_for(&self, bytes: f64) -> Option<(f64, String)> {
        let dram = self.memory_gbs.map(|g| (g, "DRAM".to_string()));
        self.cache_bandwidth
            .iter()
            .filter(|l| bytes <= l.capacity_bytes as f64)
            .map(|l| (l.gbs, l.level.clone()))
            .chain(dram)
            .max_by(|a, b| a.0.total_cmp(&b.0))
    }

    pub fn compute_gflops(&self, precision: Precision) -> Option<f64> {
        match precision {
            Precision::Fp32 => self.fp32_gflops,
            Precision::Fp16 => self.fp16_gflops,
            Precision::Int8 => self.int8_gops,
        }
    }
}

/// Where ceilings of the host with `fingerprint` are kept under a results folder:
/// `<dir>/roofline/<fingerprint>.json`.
pub fn path_for(results_dir: &Path, fingerprint: &str) -> PathBuf {
    results_dir
        .join("roofline")
        .join(format!("{fingerprint}.json"))
}

impl Ceilings {
    pub fn load(path: &Path) -> Result<Ceilings> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let ceilings: Ceilings = serde_json::from_str(&text).map_err(|e| {
            Error::Ceilings(format!(
                "{}: not a chipbench roofline file: {e}",
                path.display()
            ))
        })?;
        if ceilings.schema != SCHEMA {
            return Err(Error::Ceilings(format!(
                "{}: schema '{}', expected '{SCHEMA}'",
                path.display(),
                ceilings.schema
            )));
        }
        Ok(ceilings)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let text =
            serde_json::to_string_pretty(self).map_err(|e| Error::Ceilings(e.to_string()))?;
        let tmp = path.with_extension("json.partial");
        std::fs::write(&tmp, text + "\n").map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// The ceilings that apply to a cell: a CPU cell's at the same thread count; a GPU's by
    /// name; a software rasterizer's by name, else (it runs on the CPU) the CPU's at the most
    /// threads measured.
    pub fn for_device(
        &self,
        kind: DeviceKind,
        device_name: &str,
        threads: Option<usize>,
    ) -> Option<&DeviceCeilings> {
        let cpu = || {
            self.devices
                .iter()
                .filter(|d| d.device_kind == DeviceKind::Cpu)
        };
        match kind {
            DeviceKind::Cpu => cpu().find(|d| d.threads == threads),
            _ => self
                .devices
                .iter()
                .find(|d| d.device_kind == kind && d.device_name == device_name)
                .or_else(|| {
                    (kind == DeviceKind::SoftwareRasterizer)
                        .then(|| cpu().max_by_key(|d| d.threads.unwrap_or(0)))
                        .flatten()
                }),
        }
    }
}

/// The roofline: attainable GFLOP/s at `intensity` FLOPs per byte is the lower of the compute
/// ceiling and intensity x bandwidth. Returns (GFLOP/s, `compute` or `memory`).
pub fn attainable(
    peak_gflops: f64,
    bandwidth_gbs: Option<f64>,
    intensity: f64,
) -> (f64, &'static str) {
    match bandwidth_gbs {
        Some(bw) if intensity * bw < peak_gflops => (intensity * bw, "memory"),
        _ => (peak_gflops, "compute"),
    }
}

/// Fills the bound and the fraction reached of a cell's roofline from stored ceilings, or says
/// why there is none. `source` names the ceilings file.
pub fn bound_cell(
    roofline: &mut CellRoofline,
    ceilings: Option<(&Ceilings, &str)>,
    kind: DeviceKind,
    device_name: &str,
    threads: Option<usize>,
) {
    let Some(precision) = Precision::from_label(&roofline.precision) else {
        roofline.ceilings = format!("no bound: unknown precision '{}'", roofline.precision);
        return;
    };
    let Some((ceilings, source)) = ceilings else {
        roofline.ceilings =
            "no bound: no stored ceilings for this host (run `chipbench roofline`)".into();
        return;
    };
    let Some(device) = ceilings.for_device(kind, device_name, threads) else {
        roofline.ceilings = format!(
            "no bound: {source} has no ceilings for {device_name} at {} threads (run `chipbench roofline --threads N`)",
            threads
                .map(|t| t.to_string())
                .unwrap_or_else(|| "default".into())
        );
        return;
    };
    let Some(peak) = device.compute_gflops(precision) else {
        roofline.ceilings = format!(
            "no bound: {source} has no {} compute ceiling for {}",
            precision.label(),
            device.device_name
        );
        return;
    };
    let bandwidth = device.bandwidth_for(roofline.bytes_per_inference);
    let (bound, by) = attainable(
        peak,
        bandwidth.as_ref().map(|(g, _)| *g),
        roofline.arithmetic_intensity,
    );
    roofline.bound_gflops = Some(bound);
    roofline.bound_by = Some(by.into());
    roofline.fraction_of_bound = Some(roofline.achieved_gflops / bound);
    roofline.ceilings = format!(
        "measured: {source}, {} {} at {} threads via {} ({} {:.1} GFLOP/s; memory {})",
        device.device,
        device.device_name,
        device
            .threads
            .map(|t| t.to_string())
            .unwrap_or_else(|| "default".into()),
        device.backend,
        precision.label(),
        peak,
        match bandwidth {
            Some((gbs, level)) => format!(
                "{gbs:.1} GB/s from {level}, the fastest level holding the {:.0} KiB working set",
                roofline.bytes_per_inference / 1024.0
            ),
            None => "not measured".into(),
        }
    );
}

/// A STREAM-style memory bandwidth figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Bandwidth {
    pub gbs: f64,
    pub method: String,
}

/// Main-memory bandwidth by the STREAM triad `a[i] = b[i] + s * c[i]` on three f64 arrays of
/// `array_bytes` each (make them several times the last-level cache), split over `threads`,
/// best of `repetitions`; bytes counted as STREAM counts them (two reads and one write per
/// element; write-allocate traffic not counted).
pub fn stream_triad(threads: usize, array_bytes: usize, repetitions: usize) -> Bandwidth {
    let gbs = best_gbs(
        Kernel::Triad,
        threads,
        3 * array_bytes,
        1,
        repetitions,
        Duration::ZERO,
    );
    Bandwidth {
        gbs,
        method: format!(
            "measured: STREAM triad a[i] = b[i] + s*c[i] (widest SIMD of the CPU), 3 x {} MiB f64 arrays, \
             {} threads, best of {} repetitions; 24 bytes per element counted (write-allocate traffic not counted, as in STREAM)",
            array_bytes >> 20,
            threads.max(1),
            repetitions.max(1)
        ),
    }
}

pub const CACHE_METHOD: &str = "measured: per data cache level, the faster of a STREAM triad and a \
read-only sum (widest SIMD of the CPU) on a working set just past the level above (twice its capacity, \
at most halfway into this level: the level's most favourable point, so the figure bounds every working \
set the level serves), best of many short repetitions per thread (a short one that lands in a quiet \
moment of a shared host shows the level's speed), the threads' rates added up";

/// The bandwidth of every data cache level the `threads` have between them (private caches add
/// up, a shared one counts once per group of CPUs sharing it): see [`CACHE_METHOD`]. Each
/// kernel repeats for at least `budget` per level.
///
/// Why not half of each level, as before: on a shared host the last-level cache is shared with
/// other tenants, so a working set of half of it is partly evicted and measures close to main
/// memory, while a model of a few MiB still runs from it: the "bound" then fell below what cells
/// achieved (the mlp at 38 GFLOP/s against a bound of 19.5).
pub fn cache_bandwidths(
    caches: &[CpuCache],
    threads: usize,
    budget: Duration,
) -> Vec<LevelBandwidth> {
    let threads = threads.max(1);
    let mut levels: Vec<&CpuCache> = caches.iter().filter(|c| c.kind != "instruction").collect();
    levels.sort_by_key(|c| c.level);
    levels.dedup_by_key(|c| c.level);
    let mut above = 0u64;
    let mut measured = Vec::new();
    for cache in levels {
        let instances = threads.div_ceil(cache.shared_by.max(1)) as u64;
        let capacity = cache.size_bytes * instances;
        if capacity <= above {
            continue;
        }
        let footprint = working_set_within(above, capacity);
        above = capacity;
        let footprint_bytes = footprint as usize;
        // Each repetition moves about 8 MiB per thread: tens of microseconds from a cache.
        let passes = ((8usize << 20) * threads / footprint_bytes.max(1)).max(1);
        let rate = |kernel| best_gbs(kernel, threads, footprint_bytes, passes, 5, budget);
        measured.push(LevelBandwidth {
            level: format!("L{}", cache.level),
            capacity_bytes: capacity,
            footprint_bytes: footprint,
            gbs: rate(Kernel::Triad).max(rate(Kernel::Read)),
        });
    }
    measured
}

/// The working set that measures a level of `capacity` below levels holding `above` bytes:
/// twice the level above (so that level cannot serve it), at most halfway into this one.
fn working_set_within(above: u64, capacity: u64) -> u64 {
    if above == 0 {
        capacity / 2
    } else {
        (2 * above).min(above + (capacity - above) / 2)
    }
}

#[derive(Clone, Copy)]
enum Kernel {
    /// `a[i] = b[i] + s * c[i]` on f64, 24 bytes per element counted.
    Triad,
    /// A sum of f32 in 128 independent lanes: reads only, as the weights of an inference are.
    Read,
}

/// GB/s of a kernel over `footprint` bytes split over `threads`, each thread timing
/// repetitions of `passes` passes over its share until it has done `min_repetitions` and
/// `budget` has passed; the sum of the threads' best rates. Threads start once, so no spawn
/// time is inside a timing.
fn best_gbs(
    kernel: Kernel,
    threads: usize,
    footprint: usize,
    passes: usize,
    min_repetitions: usize,
    budget: Duration,
) -> f64 {
    let threads = threads.max(1);
    let share = footprint / threads;
    let one_thread = move || -> f64 {
        let mut best = f64::INFINITY;
        let mut repetitions = 0;
        let started = Instant::now();
        let bytes;
        match kernel {
            Kernel::Triad => {
                let n = (share / 24).max(8);
                bytes = (24 * n * passes) as f64;
                let mut a = vec![0.0f64; n];
                let b = vec![1.0f64; n];
                let c = vec![2.0f64; n];
                let scalar = std::hint::black_box(3.0f64);
                while repetitions < min_repetitions.max(1) || started.elapsed() < budget {
                    let t = Instant::now();
                    triad_widest(&mut a, &b, &c, scalar, passes);
                    best = best.min(t.elapsed().as_secs_f64());
                    repetitions += 1;
                }
            }
            Kernel::Read => {
                let n = (share / 4).next_multiple_of(LANES).max(LANES);
                bytes = (4 * n * passes) as f64;
                let data = vec![1.0f32; n];
                while repetitions < min_repetitions.max(1) || started.elapsed() < budget {
                    let t = Instant::now();
                    std::hint::black_box(read_widest(&data, passes));
                    best = best.min(t.elapsed().as_secs_f64());
                    repetitions += 1;
                }
            }
        }
        bytes / best / 1e9
    };
    if threads == 1 {
        return one_thread();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(one_thread)).collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
    })
}

/// The triad loop, compiled for the widest vectors this CPU has, so the figure is the memory
/// system's and not the baseline instruction set's (SSE2 alone halves L1 bandwidth).
fn triad_widest(a: &mut [f64], b: &[f64], c: &[f64], scalar: f64, passes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { triad_avx512(a, b, c, scalar, passes) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { triad_avx2(a, b, c, scalar, passes) };
        }
    }
    triad_passes(a, b, c, scalar, passes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn triad_avx512(a: &mut [f64], b: &[f64], c: &[f64], scalar: f64, passes: usize) {
    triad_passes(a, b, c, scalar, passes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn triad_avx2(a: &mut [f64], b: &[f64], c: &[f64], scalar: f64, passes: usize) {
    triad_passes(a, b, c, scalar, passes)
}

#[inline(always)]
fn triad_passes(a: &mut [f64], b: &[f64], c: &[f64], scalar: f64, passes: usize) {
    for _ in 0..passes {
        for ((x, y), z) in a.iter_mut().zip(b).zip(c) {
            *x = y + scalar * z;
        }
        std::hint::black_box(&mut *a);
    }
}

/// Independent accumulators of the read kernel: enough that the adds' latency never limits the
/// loads (8 AVX-512 or 16 AVX2 registers), and lane-wise, so the compiler may vectorise without
/// reassociating.
const LANES: usize = 128;

/// The read-only sum, compiled for the widest vectors this CPU has.
fn read_widest(data: &[f32], passes: usize) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { read_avx512(data, passes) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { read_avx2(data, passes) };
        }
    }
    read_passes(data, passes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn read_avx512(data: &[f32], passes: usize) -> f32 {
    read_passes(data, passes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn read_avx2(data: &[f32], passes: usize) -> f32 {
    read_passes(data, passes)
}

#[inline(always)]
fn read_passes(data: &[f32], passes: usize) -> f32 {
    let mut lanes = [0.0f32; LANES];
    for _ in 0..passes {
        for chunk in std::hint::black_box(data).chunks_exact(LANES) {
            for (lane, x) in lanes.iter_mut().zip(chunk) {
                *lane += x;
            }
        }
    }
    lanes.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roof_is_the_lower_of_compute_and_bandwidth() {
        assert_eq!(attainable(100.0, Some(10.0), 2.0), (20.0, "memory"));
        assert_eq!(attainable(100.0, Some(10.0), 50.0), (100.0, "compute"));
        assert_eq!(attainable(100.0, None, 0.1), (100.0, "compute"));
    }

    #[test]
    fn triad_bandwidth_is_plausible_and_caches_are_faster_than_memory() {
        let dram = stream_triad(1, 64 << 20, 2);
        // Any machine that runs this suite moves between 0.5 and 1000 GB/s from memory.
        assert!(dram.gbs > 0.5 && dram.gbs < 1000.0, "{dram:?}");
        assert!(dram.method.starts_with("measured: STREAM triad"));
        let l1 = CpuCache {
            level: 1,
            kind: "data".into(),
            size_bytes: 32 << 10,
            shared_by: 1,
        };
        let levels = cache_bandwidths(&[l1], 1, Duration::from_millis(20));
        assert_eq!(levels[0].footprint_bytes, 16 << 10);
        assert_eq!(levels[0].level, "L1");
        assert!(
            levels[0].gbs > dram.gbs,
            "L1 {} GB/s vs memory {} GB/s",
            levels[0].gbs,
            dram.gbs
        );
    }

    #[test]
    fn each_level_is_measured_past_the_level_above_it() {
        assert_eq!(working_set_within(0, 48 << 10), 24 << 10);
        assert_eq!(working_set_within(48 << 10, 1 << 20), 96 << 10);
        assert_eq!(working_set_within(1 << 20, 32 << 20), 2 << 20);
        // A level only a little larger than the one above: halfway into it.
        assert_eq!(working_set_within(1 << 20, 3 << 19), 5 << 18);
    }

    #[test]
    fn a_working_set_is_served_by_the_fastest_level_holding_it() {
        let level = |name: &str, capacity, gbs| LevelBandwidth {
            level: name.into(),
            capacity_bytes: capacity,
            footprint_bytes: capacity / 2,
            gbs,
        };
        let d = DeviceCeilings {
            backend: "tract".into(),
            device: "cpu".into(),
            device_name: "CPU".into(),
            device_kind: DeviceKind::Cpu,
            threads: Some(1),
            fp32_gflops: Some(100.0),
            fp16_gflops: None,
            int8_gops: None,
            memory_gbs: Some(20.0),
            cache_bandwidth: vec![level("L3", 32 << 20, 150.0), level("L2", 1 << 20, 400.0)],
            provenance: BTreeMap::new(),
        };
        assert_eq!(d.bandwidth_for(500e3), Some((400.0, "L2".into())));
        assert_eq!(d.bandwidth_for(2e6), Some((150.0, "L3".into())));
        assert_eq!(d.bandwidth_for(1e9), Some((20.0, "DRAM".into())));
        let noisy = DeviceCeilings {
            cache_bandwidth: vec![level("L3", 32 << 20, 150.0), level("L2", 1 << 20, 90.0)],
            ..d
        };
        assert_eq!(
            noisy.bandwidth_for(500e3),
            Some((150.0, "L3".into())),
            "L3 holds it too, and measured faster"
        );
    }
}
