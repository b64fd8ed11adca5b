//! The ONNX Runtime backend: models through `ort` with the library loaded at run time
//! (`load-dynamic`), one device per execution provider of the library that registers on this
//! machine (`ort:cpu`, `ort:cuda`, `ort:tensorrt`, `ort:openvino`, `ort:xnnpack`).
//!
//! - The library is found by [`discovery`] (`--ort-lib`, `ORT_DYLIB_PATH`, `scripts/setup-ort.sh`'s
//!   `.ort/`, python3's `onnxruntime`), checked by [`library::inspect`] and loaded once per process.
//! - A requested provider that fails to register fails its cell; it never runs on the CPU provider
//!   unnoticed. Nodes ONNX Runtime places on the CPU provider anyway are counted per provider
//!   ([`chipbench_core::Session::placement`]).
//! - Threads: the count reported is the calling thread plus the worker threads ONNX Runtime
//!   actually started for the session, counted as it starts them.
//! - `--operator-times` turns on ONNX Runtime's profiler; its trace is parsed into per-node times.
//! - Device-side time: none of the providers exposes it through ONNX Runtime's API, so cells
//!   carry host end-to-end time only.

pub mod discovery;
pub mod error;
pub mod library;
pub mod log;
pub mod options;
pub mod profile;
pub mod provider;
pub mod session;

use std::path::PathBuf;
use std::sync::OnceLock;

use chipbench_core::{Backend, Device, ModelSource, Result, SessionOptions, Unavailable};

pub use discovery::{Discovery, SearchPlaces};
pub use error::Error;
pub use library::Runtime;
pub use options::{OrtSettings, SETTINGS_HELP};
pub use provider::Provider;
pub use session::OrtSession;

/// The `ort` release this crate is built against (pinned with `=` in the workspace manifest).
pub const ORT_CRATE_VERSION: &str = "2.0.0-rc.15";

/// ONNX Runtime, found and loaded on first use.
pub struct OrtBackend {
    places: SearchPlaces,
    state: OnceLock<State>,
}

struct State {
    discovery: Discovery,
    runtime: std::result::Result<&'static Runtime, Error>,
}

impl OrtBackend {
    /// The standard search, with `--ort-lib` when given.
    pub fn new(library: Option<PathBuf>) -> Self {
        OrtBackend::with_search(SearchPlaces::standard(library))
    }

    pub fn with_search(places: SearchPlaces) -> Self {
        OrtBackend {
            places,
            state: OnceLock::new(),
        }
    }

    fn state(&self) -> &State {
        self.state.get_or_init(|| {
            let discovery = Discovery::run(&self.places);
            let runtime = match &discovery.chosen {
                Some(candidate) => library::runtime(&candidate.path),
                None => Err(Error::NotFound {
                    searched: discovery.summary(),
                }),
            };
            State { discovery, runtime }
        })
    }

    /// The loaded runtime, or why there is none.
    pub fn runtime(&self) -> std::result::Result<&'static Runtime, Error> {
        self.state().runtime.clone()
    }

    /// Providers the library has that this build cannot register (and so offers no device for).
    fn unsupported_providers(runtime: &Runtime) -> Vec<&str> {
        runtime
            .providers
            .iter()
            .map(String::as_str)
            .filter(|name| Provider::from_ort_name(name).is_none())
            .collect()
    }
}

impl Backend for OrtBackend {
    fn name(&self) -> &'static str {
        "ort"
    }
    fn session_sharing(&self) -> &'static str {
        "per-worker: the ort crate's Session::run takes &mut self, so one session cannot serve \
         two inferences at once"
    }

    /// The ONNX Runtime library's version (the engine that runs the models).
    fn version(&self) -> String {
        match self.runtime() {
            Ok(runtime) => runtime.library.version.clone(),
            Err(_) => "(no library)".into(),
        }
    }

    fn devices(&self) -> std::result::Result<Vec<Device>, Unavailable> {
        let runtime = self.runtime().map_err(|e| Unavailable(e.to_string()))?;
        Ok(runtime
            .usable()
            .map(|p| Device {
                id: p.id().into(),
                name: p.ort_name().into(),
                kind: p.kind(),
                note: None,
            })
            .collect())
    }

    fn load(
        &self,
        model: &ModelSource,
        device: &Device,
        options: &SessionOptions,
    ) -> Result<Box<dyn chipbench_core::Session>> {
        let runtime = self.runtime()?;
        let provider = Provider::from_id(&device.id).ok_or_else(|| {
            chipbench_core::Error::Unsupported(format!("ort has no device '{}'", device.id))
        })?;
        Ok(Box::new(OrtSession::load(
            runtime, provider, model, options,
        )?))
    }

    /// ONNX Runtime fixes no dimension at load (no free-dimension overrides are set): a session
    /// runs any size the model leaves symbolic.
    fn load_growing(
        &self,
        model: &ModelSource,
        device: &Device,
        options: &SessionOptions,
        _growing: &[String],
    ) -> Result<Box<dyn chipbench_core::Session>> {
        self.load(model, device, options)
    }

    fn discovery(&self) -> Vec<String> {
        let state = self.state();
        let mut lines = state.discovery.steps.clone();
        lines.push(match &state.runtime {
            Ok(runtime) => {
                let source = state
                    .discovery
                    .chosen
                    .as_ref()
                    .map(|c| c.source.to_string());
                let mut line = format!(
                    "using {} (from {}): ONNX Runtime {}, providers {}",
                    runtime.library.path.display(),
                    source.unwrap_or_default(),
                    runtime.library.version,
                    runtime.providers.join(", ")
                );
                let unsupported = OrtBackend::unsupported_providers(runtime);
                if !unsupported.is_empty() {
                    line += &format!(
                        " ({} not offered: this build cannot register it)",
                        unsupported.join(", ")
                    );
                }
                line
            }
            Err(e) => format!("not usable: {e}"),
        });
        if let Ok(runtime) = &state.runtime {
            for (provider, registration) in &runtime.registration {
                if let Err(reason) = registration {
                    lines.push(format!(
                        "{} not offered: registering it fails here: {reason}",
                        provider.ort_name()
                    ));
                }
            }
        }
        lines
    }

    fn missing_device_reason(&self, device_id: &str) -> Option<String> {
        let runtime = self.runtime().ok()?;
        let passed_over = &self.state().discovery.passed_over;
        let known: Vec<&str> = Provider::ALL.iter().map(|p| p.id()).collect();
        let registration = |p: Provider| runtime.registration.iter().find(|(q, _)| *q == p);
        Some(match Provider::from_id(device_id) {
            None => format!(
                "unknown execution provider '{device_id}' (known: {})",
                known.join(", ")
            ),
            Some(p) if registration(p).is_some_and(|(_, r)| r.is_ok()) => return None,
            Some(p) if let Some((_, Err(reason))) = registration(p) => format!(
                "{} is in the ONNX Runtime library {} ({}) but registering it fails here: {reason}",
                p.ort_name(),
                runtime.library.path.display(),
                runtime.library.version
            ),
            Some(p) => {
                let fix = match p {
                    Provider::Cuda | Provider::TensorRt if !passed_over.is_empty() => {
                        format!("; {}", passed_over.join("; "))
                    }
                    Provider::Cuda | Provider::TensorRt => {
                        "; the GPU build has it: scripts/setup-ort.sh --gpu \
                         (chipbench prefers .ort/gpu over .ort/cpu)"
                            .to_string()
                    }
                    _ => String::new(),
                };
                format!(
                    "the ONNX Runtime library {} ({}) has no {} (it has: {}){fix}",
                    runtime.library.path.display(),
                    runtime.library.version,
                    p.ort_name(),
                    runtime.providers.join(", ")
                )
            }
        })
    }
}
