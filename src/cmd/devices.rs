//! `chipbench devices`: what this host is and can measure — CPU and ISA features, caches,
//! clocks, memory, VM or container, GPUs (NVML and the backends' adapters), energy sensors with
//! the reason for each unreadable one, the catalog entries that describe it, and its stored
//! roofline ceilings.

use std::path::Path;

use chipbench_core::result::Host;
use chipbench_core::{Backend, Device};
use chipbench_probe::catalog;
use chipbench_probe::roofline::{self, Ceilings};
use clap::Args;

use crate::Outcome;
use crate::cmd::backends::{self, EngineArgs};
use crate::hardware::{RESULTS_DIR, estimate_model};

#[derive(Args)]
pub struct DevicesArgs {
    /// Print everything as JSON (the `host` block is the one run.json records).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    engines: EngineArgs,
}

/// The host, with the GPUs the backends see added to those NVML lists, and every device of
/// every available backend.
pub fn probe_host(engines: &EngineArgs) -> (Host, Vec<Device>) {
    let mut host = chipbench_probe::host();
    let devices = add_backend_gpus(&mut host, &backends::registry(engines));
    (host, devices)
}

/// Adds the non-CPU devices of the backends (wgpu adapters...) to the host's GPUs; returns
/// every device of every available backend.
pub fn add_backend_gpus(host: &mut Host, registry: &[Box<dyn Backend>]) -> Vec<Device> {
    let mut devices = Vec::new();
    for backend in registry {
        if let Ok(list) = backend.devices() {
            chipbench_probe::gpu::add_backend_devices(host, backend.name(), &list);
            devices.extend(list);
        }
    }
    devices
}

pub fn run(args: DevicesArgs) -> anyhow::Result<Outcome> {
    let (host, devices) = probe_host(&args.engines);
    let chips = catalog::catalog()?;
    let device_refs: Vec<&Device> = devices.iter().collect();
    let estimate = estimate_model(&host, &chips, &device_refs);
    let ceilings_path = roofline::path_for(Path::new(RESULTS_DIR), &host.fingerprint);
    let ceilings = ceilings_path
        .is_file()
        .then(|| Ceilings::load(&ceilings_path));

    if args.json {
        let gpu_entries: serde_json::Map<String, serde_json::Value> = host
            .gpus
            .iter()
            .filter_map(|g| {
                catalog::gpu_for(&chips, &g.name).map(|c| (g.name.clone(), c.id.clone().into()))
            })
            .collect();
        let value = serde_json::json!({
            "host": host,
            "catalog": {
                "cpu_core": catalog::cpu_core_for(&chips, &host).map(|c| c.id.clone()),
                "gpus": gpu_entries,
            },
            "energy_estimate": {
                "method": chipbench_energy::estimate::CPU_METHOD,
                "watts_per_busy_core": estimate.cpu_core.watts,
                "source": estimate.cpu_core.source,
            },
            "ceilings": match &ceilings {
                Some(Ok(c)) => serde_json::json!({ "path": ceilings_path, "measured_at": c.measured_at, "devices": c.devices }),
                Some(Err(e)) => serde_json::json!({ "path": ceilings_path, "error": e.to_string() }),
                None => serde_json::Value::Null,
            },
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(Outcome::Success);
    }

    let h = &host;
    println!("CPU      {} ({}), {}", h.cpu_brand, h.cpu_vendor, h.arch);
    println!(
        "cores    {} logical / {} physical",
        h.logical_cores,
        h.physical_cores
            .map(|c| c.to_string())
            .unwrap_or_else(|| "?".into())
    );
    let mhz = |v: Option<f64>| {
        v.map(|f| format!("{f:.0} MHz"))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "clock    base {}, max {}, now {}",
        mhz(h.cpu_frequency_mhz.base),
        mhz(h.cpu_frequency_mhz.max),
        mhz(h.cpu_frequency_mhz.current)
    );
    println!(
        "governor {}, turbo {}",
        h.frequency_governor.as_deref().unwrap_or("-"),
        h.turbo.map(|t| if t { "on" } else { "off" }).unwrap_or("-")
    );
    println!(
        "ISA      {}",
        if h.isa_flags.is_empty() {
            "-".into()
        } else {
            h.isa_flags.join(" ")
        }
    );
    for c in &h.caches {
        println!(
            "cache    L{} {:<11} {:>10}  shared by {} CPU(s)",
            c.level,
            c.kind,
            chipbench_report::format_bytes(c.size_bytes as f64),
            c.shared_by
        );
    }
    println!(
        "memory   {}",
        chipbench_report::format_bytes(h.memory_bytes as f64)
    );
    println!("OS       {}, kernel {}", h.os, h.kernel);
    println!(
        "virtual  {}; container {}",
        h.hypervisor
            .as_deref()
            .map(|v| format!("VM under {v}"))
            .unwrap_or_else(|| "no hypervisor detected".into()),
        h.container.as_deref().unwrap_or("none detected")
    );
    if h.gpus.is_empty() {
        println!(
            "GPUs     none ({})",
            h.provenance.get("gpus").map(String::as_str).unwrap_or("-")
        );
    }
    for g in &h.gpus {
        let entry = catalog::gpu_for(&chips, &g.name)
            .map(|c| format!(" — catalog '{}'", c.id))
            .unwrap_or_default();
        let what = if g.kind == chipbench_core::DeviceKind::SoftwareRasterizer {
            "adapter"
        } else {
            "GPU"
        };
        println!(
            "{what:<8} [{}] {} ({}){entry}",
            g.source,
            g.name,
            g.kind.label()
        );
    }
    println!("energy sensors:");
    for s in &h.energy_sensors {
        let state = match (s.readable, &s.reason) {
            (true, note) => format!(
                "readable, refreshes every {} ms{}",
                s.update_period_ms
                    .map(|p| format!("{p}"))
                    .unwrap_or_else(|| "?".into()),
                note.as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ),
            (false, reason) => reason.clone().unwrap_or_default(),
        };
        println!("  {:<8} {:<24} {:<9} {state}", s.meter, s.name, s.scope);
    }
    println!(
        "energy without a sensor: {} at {} W per busy core ({})",
        chipbench_energy::estimate::CPU_METHOD,
        estimate.cpu_core.watts,
        estimate.cpu_core.source
    );
    match ceilings {
        Some(Ok(c)) => {
            println!(
                "roofline ceilings ({}, measured {}):",
                ceilings_path.display(),
                c.measured_at
            );
            for d in &c.devices {
                let g = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
                println!(
                    "  {}:{} threads {}: fp32 {} GFLOP/s, int8 {} GOP/s, memory {} GB/s",
                    d.backend,
                    d.device,
                    d.threads
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "-".into()),
                    g(d.fp32_gflops),
                    g(d.int8_gops),
                    g(d.memory_gbs)
                );
            }
        }
        Some(Err(e)) => println!("roofline ceilings: unreadable: {e}"),
        None => println!("roofline ceilings: none stored for this host (run `chipbench roofline`)"),
    }
    Ok(Outcome::Success)
}
