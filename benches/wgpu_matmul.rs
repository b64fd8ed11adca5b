//! The wgpu backend's tiled matrix-product kernel against a naive one (one output per
//! invocation, operands read straight from memory) on the same adapter, in one run: achieved
//! GFLOP/s of both and their ratio over alternating rounds, for f32 and, where the adapter has
//! SHADER_F16, f16 storage; then the adapter's device-to-device copy bandwidth.
//!
//! Run: `cargo bench --bench wgpu_matmul` (options after `--`: `--size N`, `--runs N`,
//! `--device ID`; default: 512, 5 runs, the adapter `--backend wgpu` would pick).

use chipbench_backend_wgpu::{MatmulKernel, Precision, WgpuBackend};
use chipbench_core::Backend;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let size: usize = option("--size").and_then(|s| s.parse().ok()).unwrap_or(512);
    let runs: usize = option("--runs").and_then(|s| s.parse().ok()).unwrap_or(5);
    let backend = WgpuBackend::default();
    let devices = match backend.devices() {
        Ok(d) => d,
        Err(reason) => {
            println!("wgpu_matmul skipped: {reason}");
            return;
        }
    };
    let device = match option("--device") {
        Some(id) => devices.iter().find(|d| d.id == id).cloned(),
        None => backend.default_devices(devices.clone()).into_iter().next(),
    };
    let Some(device) = device else {
        println!(
            "wgpu_matmul: no such device (have {:?})",
            devices.iter().map(|d| &d.id).collect::<Vec<_>>()
        );
        std::process::exit(2);
    };
    println!(
        "adapter wgpu:{}: {} [{}]",
        device.id,
        device.name,
        device.kind.label()
    );
    // Alternating rounds, so that load from other processes hits both kernels alike; the
    // figures are the medians over the rounds.
    let rounds = 3;
    for precision in [Precision::F32, Precision::F16] {
        let measure = |kernel| backend.matmul_throughput(&device, kernel, precision, size, runs);
        let mut tiled = Vec::new();
        let mut naive = Vec::new();
        let mut clock = None;
        for _ in 0..rounds {
            match (measure(MatmulKernel::Tiled), measure(MatmulKernel::Naive)) {
                (Ok(t), Ok(n)) => {
                    clock = Some(t.clock);
                    tiled.push(t.gflops);
                    naive.push(n.gflops);
                }
                (Err(e), _) | (_, Err(e)) => {
                    println!("{precision:?}: not measured: {e}");
                    break;
                }
            }
        }
        let Some(clock) = clock.filter(|_| tiled.len() == rounds) else {
            continue;
        };
        let ratios: Vec<f64> = tiled.iter().zip(&naive).map(|(t, n)| t / n).collect();
        println!(
            "{precision:?} {size}x{size}x{size}: tiled {:.2} GFLOP/s, naive {:.2} GFLOP/s, tiled/naive {:.2}x \
             (per round: {}); medians of {rounds} alternating rounds of {runs} runs, {}",
            median(&tiled),
            median(&naive),
            median(&ratios),
            ratios
                .iter()
                .map(|r| format!("{r:.2}x"))
                .collect::<Vec<_>>()
                .join(", "),
            clock.describe()
        );
    }
    match backend.copy_bandwidth(&device, 64 << 20, runs) {
        Ok(copy) => println!(
            "copy of {} MiB: {:.2} GB/s (bytes read + written), median of {runs}, {}",
            copy.bytes >> 20,
            copy.gb_per_s,
            copy.clock.describe()
        ),
        Err(e) => println!("copy bandwidth: not measured: {e}"),
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}
