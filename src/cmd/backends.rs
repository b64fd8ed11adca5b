//! The concrete backends this build knows, `chipbench backends`, and the selection of backend
//! devices from `--backend NAME[:DEVICE]`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chipbench_backend_ort::OrtBackend;
use chipbench_backend_tract::TractBackend;
use chipbench_backend_wgpu::WgpuBackend;
use chipbench_core::{Backend, Coverage, Device, ModelSource};
use chipbench_runner::Target;
use clap::Args;

use crate::cmd::models::{self, DataChoice, Prepared};
use crate::{Outcome, UsageError};

#[derive(Args)]
pub struct BackendsArgs {
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
    /// Lists, per model, the operators each backend would refuse: each model is loaded (wgpu:
    /// lowered, without an adapter) and never run.
    #[arg(long)]
    coverage: bool,
    /// Print --coverage as a Markdown table: a row per model, a column per backend.
    #[arg(long, requires = "coverage", conflicts_with = "json")]
    markdown: bool,
    /// A model for --coverage: a suite name, zoo:NAME or a path to an .onnx file; repeatable
    /// (default: the built-in suite).
    #[arg(
        long = "model",
        short = 'm',
        value_name = "NAME|zoo:NAME|PATH",
        requires = "coverage"
    )]
    models: Vec<String>,
    /// Folder of the built-in suite (default: ./models, else the one generated in the cache).
    #[arg(long, value_name = "DIR", requires = "coverage")]
    suite: Option<PathBuf>,
    #[command(flatten)]
    inputs: models::InputArgs,
    #[command(flatten)]
    engines: EngineArgs,
}

/// Where the backends find the engines they load at run time.
#[derive(Args, Clone, Debug, Default)]
pub struct EngineArgs {
    /// The ONNX Runtime library to load (default: $ORT_DYLIB_PATH, then .ort/ as installed by
    /// scripts/setup-ort.sh, then the onnxruntime package of python3).
    #[arg(long, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,
}

impl EngineArgs {
    /// The options as a job carries them to a worker.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        if let Some(path) = &self.ort_lib {
            map.insert("ort_lib".into(), path.display().to_string());
        }
        map
    }

    /// The options a job carried.
    pub fn from_map(map: &BTreeMap<String, String>) -> EngineArgs {
        EngineArgs {
            ort_lib: map.get("ort_lib").map(PathBuf::from),
        }
    }
}

/// Every backend compiled into this binary, the reference backend (tract) first.
pub fn registry(engines: &EngineArgs) -> Vec<Box<dyn Backend>> {
    #[allow(unused_mut)]
    let mut backends: Vec<Box<dyn Backend>> = vec![
        Box::new(TractBackend),
        Box::new(OrtBackend::new(engines.ort_lib.clone())),
        Box::new(WgpuBackend::default()),
    ];
    #[cfg(feature = "crash-test")]
    if std::env::var_os("CHIPBENCH_CRASH_BACKEND").is_some() {
        backends.push(Box::new(crate::crash_backend::CrashBackend));
    }
    backends
}

pub fn run(args: BackendsArgs) -> anyhow::Result<Outcome> {
    let backends = registry(&args.engines);
    if args.coverage {
        return coverage(&args, &backends);
    }
    if args.json {
        let list: Vec<serde_json::Value> = backends
            .iter()
            .map(|b| match b.devices() {
                Ok(devices) => serde_json::json!({
                    "name": b.name(), "version": b.version(), "available": true, "devices": devices,
                    "discovery": b.discovery(),
                }),
                Err(reason) => serde_json::json!({
                    "name": b.name(), "version": b.version(), "available": false, "reason": reason.0,
                    "discovery": b.discovery(),
                }),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(Outcome::Success);
    }
    for backend in &backends {
        match backend.devices() {
            Ok(devices) => {
                println!("{} {}: available", backend.name(), backend.version());
                for d in devices {
                    let note = d
                        .note
                        .as_deref()
                        .map(|n| format!(" — {n}"))
                        .unwrap_or_default();
                    println!(
                        "  {}:{}  {} [{}]{note}",
                        backend.name(),
                        d.id,
                        d.name,
                        d.kind.label()
                    );
                }
            }
            Err(reason) => println!(
                "{} {}: unavailable: {reason}",
                backend.name(),
                backend.version()
            ),
        }
        let steps = backend.discovery();
        if !steps.is_empty() {
            println!("  discovery:");
            for step in steps {
                println!("    {step}");
            }
        }
    }
    Ok(Outcome::Success)
}

/// `--coverage`: every model through every backend's [`Backend::coverage`].
fn coverage(args: &BackendsArgs, backends: &[Box<dyn Backend>]) -> anyhow::Result<Outcome> {
    let suite_dir = models::suite_dir(args.suite.as_deref())?;
    let mut request = args.inputs.request()?;
    // Real samples change nothing about which operators load; random data skips reading them.
    request.data.get_or_insert(DataChoice::Random);
    let prepared = models::resolve(&suite_dir, &args.models, &request)?;
    let mut report: Vec<ModelCoverage> = Vec::new();
    for model in &prepared {
        let (name, path, found) = match model {
            Prepared::Ready(m) => {
                let source = ModelSource {
                    path: m.path.clone(),
                    inputs: m.bound.clone(),
                };
                let found: Vec<(&str, Coverage)> = backends
                    .iter()
                    .map(|b| (b.name(), b.coverage(&source)))
                    .collect();
                (&m.record.name, m.path.display().to_string(), Ok(found))
            }
            Prepared::Broken { record, error } => {
                (&record.name, record.path.clone(), Err(error.clone()))
            }
        };
        report.push((name.clone(), path, found));
    }
    if args.json {
        let list: Vec<serde_json::Value> = report
            .iter()
            .map(|(name, path, found)| match found {
                Ok(found) => {
                    let per_backend: Vec<serde_json::Value> = found
                        .iter()
                        .map(|(backend, c)| {
                            let mut v = serde_json::to_value(c).unwrap_or_default();
                            v["backend"] = serde_json::json!(backend);
                            v
                        })
                        .collect();
                    serde_json::json!({"model": name, "path": path, "backends": per_backend})
                }
                Err(error) => serde_json::json!({"model": name, "path": path, "error": error}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(Outcome::Success);
    }
    if args.markdown {
        print!("{}", coverage_table(backends, &report));
        return Ok(Outcome::Success);
    }
    println!("operators each backend would refuse (each model loaded, never run):");
    for (name, path, found) in &report {
        println!("{name} ({path})");
        let found = match found {
            Ok(found) => found,
            Err(error) => {
                println!("  cannot be prepared: {error}");
                continue;
            }
        };
        for (backend, c) in found {
            print!("  {backend:<6} ");
            match c {
                Coverage::Supported { nodes: Some(n) } => {
                    println!("runs every operator ({n} operator nodes)")
                }
                Coverage::Supported { nodes: None } => println!("loads"),
                Coverage::Refused { nodes, operators } => {
                    let refused: usize = operators.iter().map(|r| r.nodes.len().max(1)).sum();
                    match nodes {
                        Some(n) => println!(
                            "refuses {} operator(s) in {refused} of {n} operator nodes:",
                            operators.len()
                        ),
                        None => println!("refuses:"),
                    }
                    for r in operators {
                        if r.nodes.is_empty() {
                            println!("           {}", r.operator);
                        } else {
                            let nodes: Vec<String> =
                                r.nodes.iter().map(|n| format!("'{n}'")).collect();
                            println!("           {}: {}", r.operator, nodes.join(", "));
                        }
                    }
                }
                Coverage::Failed { reason } => println!("does not load: {reason}"),
                Coverage::Unavailable { reason } => println!("unavailable: {reason}"),
            }
        }
    }
    Ok(Outcome::Success)
}

/// One model's coverage: its name, its path, and per backend what loading it found (or why the
/// model could not be prepared at all).
type ModelCoverage<'a> = (String, String, Result<Vec<(&'a str, Coverage)>, String>);

/// `--coverage --markdown`: a row per model, a column per backend, each entry what a reader of
/// the README needs (the operators refused, how many of the nodes).
fn coverage_table(backends: &[Box<dyn Backend>], report: &[ModelCoverage]) -> String {
    let mut table = String::from("| model |");
    for b in backends {
        table += &format!(" {} |", b.name());
    }
    table += "\n|---|";
    table += &"---|".repeat(backends.len());
    table += "\n";
    for (name, path, found) in report {
        table += &format!("| {name} |");
        match found {
            Ok(found) => {
                for (_, c) in found {
                    let entry = match c {
                        Coverage::Supported { nodes: Some(n) } => format!("all {n} nodes"),
                        Coverage::Supported { nodes: None } => "loads".into(),
                        Coverage::Refused { nodes, operators } => {
                            let names: Vec<&str> = operators
                                .iter()
                                .map(|r| r.operator.split(':').next().unwrap_or(&r.operator))
                                .collect();
                            let refused: usize =
                                operators.iter().map(|r| r.nodes.len().max(1)).sum();
                            match nodes {
                                Some(n) => {
                                    format!("refuses {} ({refused} of {n} nodes)", names.join(", "))
                                }
                                None => format!("refuses {}", names.join(", ")),
                            }
                        }
                        Coverage::Failed { reason } => {
                            // The row names the model; its path would only widen the column.
                            let reason =
                                reason.strip_prefix(&format!("{path}: ")).unwrap_or(reason);
                            format!("does not load: {reason}")
                        }
                        Coverage::Unavailable { reason } => format!("unavailable: {reason}"),
                    };
                    table += &format!(" {} |", entry.replace('|', "\\|").replace('\n', " "));
                }
            }
            Err(error) => {
                table += &format!(" cannot be prepared: {error} |").repeat(backends.len());
            }
        }
        table += "\n";
    }
    table
}

pub use chipbench_harness::Unavailable;

/// Resolves `--backend` requests (`tract`, `ort:cuda`, `wgpu:0`) to targets; a backend named
/// without a device stands for the devices it prefers (`wgpu`: its best adapter). With no request,
/// every backend's preferred devices, leaving out software rasterizers; what is left out is
/// reported as skipped, with the reason.
pub fn select<'a>(
    backends: &'a [Box<dyn Backend>],
    requested: &[String],
) -> Result<(Vec<Target<'a>>, Vec<Unavailable>), UsageError> {
    let mut targets = Vec::new();
    let mut skipped = Vec::new();
    if requested.is_empty() {
        for backend in backends {
            match backend.devices() {
                Ok(devices) => {
                    let label = |d: &Device| format!("{}:{}", backend.name(), d.id);
                    let mut usable = Vec::new();
                    for device in devices {
                        match default_exclusion(&device) {
                            Some(reason) => skipped.push(Unavailable {
                                label: label(&device),
                                reason,
                            }),
                            None => usable.push(device),
                        }
                    }
                    // One preferred device per backend where it has a preference (wgpu: the
                    // same GPU is often listed once per graphics API), so a plain run does not
                    // measure one chip twice.
                    let chosen = backend.default_devices(usable.clone());
                    for device in usable.iter().filter(|d| !chosen.contains(d)) {
                        skipped.push(Unavailable {
                            label: label(device),
                            reason: format!(
                                "{} is not {}'s preferred device; name it with --backend {} to include it",
                                device.name,
                                backend.name(),
                                label(device)
                            ),
                        });
                    }
                    targets.extend(chosen.into_iter().map(|device| Target {
                        backend: backend.as_ref(),
                        device,
                    }));
                }
                Err(reason) => skipped.push(Unavailable {
                    label: backend.name().into(),
                    reason: reason.0,
                }),
            }
        }
        return Ok((targets, skipped));
    }
    for request in requested {
        let (name, device_id) = match request.split_once(':') {
            Some((n, d)) => (n, Some(d)),
            None => (request.as_str(), None),
        };
        let backend = backends.iter().find(|b| b.name() == name).ok_or_else(|| {
            let known: Vec<&str> = backends.iter().map(|b| b.name()).collect();
            UsageError(format!(
                "unknown backend '{name}' (this build has: {})",
                known.join(", ")
            ))
        })?;
        match backend.devices() {
            Ok(devices) => {
                let chosen: Vec<Device> = match device_id {
                    None => backend.default_devices(devices),
                    Some(id) => devices.into_iter().filter(|d| d.id == id).collect(),
                };
                if chosen.is_empty() {
                    let id = device_id.unwrap_or("");
                    skipped.push(Unavailable {
                        label: request.clone(),
                        reason: backend
                            .missing_device_reason(id)
                            .unwrap_or_else(|| format!("{name} has no device '{id}' here")),
                    });
                }
                targets.extend(chosen.into_iter().map(|device| Target {
                    backend: backend.as_ref(),
                    device,
                }));
            }
            Err(reason) => skipped.push(Unavailable {
                label: request.clone(),
                reason: reason.0,
            }),
        }
    }
    Ok((targets, skipped))
}

/// Devices a plain `chipbench bench` leaves out, with the reason; `--backend` includes them.
fn default_exclusion(device: &Device) -> Option<String> {
    (device.kind == chipbench_core::DeviceKind::SoftwareRasterizer).then(|| {
        format!(
            "{} is a software rasterizer (runs on the CPU, not a GPU); name it with --backend to include it",
            device.name
        )
    })
}
