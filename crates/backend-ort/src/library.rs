//! Loading the ONNX Runtime library: a check of the file before `ort` sees it, then the one
//! environment of the process.
//!
//! `ort` keeps the first library it loads for the life of the process, and some failures inside
//! it abort rather than return (a library older than the API it was built for). So every file is
//! first inspected here with `dlopen`: a missing file, a file that is not a shared library, a
//! library that is not ONNX Runtime and one that is too old are errors that name the file, and
//! they do not depend on what was loaded before in the process.

use std::ffi::{CStr, CString, c_char};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

use crate::error::{Error, engine_message};
use crate::provider::Provider;

/// The ONNX Runtime minor version `ort` is built for (`api-31`); older libraries lack functions
/// it calls.
pub const MIN_MINOR_VERSION: u32 = ort::MINOR_VERSION;

/// An ONNX Runtime library file and the version it reports.
#[derive(Clone, Debug, PartialEq)]
pub struct LibraryInfo {
    pub path: PathBuf,
    /// `OrtGetApiBase()->GetVersionString()`, e.g. `1.32.0`.
    pub version: String,
}

/// Opens `path`, asks it for its version, and rejects what `ort` could not use.
pub fn inspect(path: &Path) -> Result<LibraryInfo, Error> {
    if !path.exists() {
        return Err(Error::library(path, "no such file"));
    }
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::library(path, "the path contains a NUL byte"))?;
    // SAFETY: dlopen/dlsym/dlerror are called with valid C strings; the handle is closed on
    // every failure path and kept open on success (ONNX Runtime is never unloaded: `ort`
    // opens the same file next and keeps it for the process).
    unsafe {
        let handle = libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if handle.is_null() {
            return Err(Error::library(
                path,
                format!("cannot be loaded: {}", dl_error()),
            ));
        }
        let close_with = |reason: String| {
            libc::dlclose(handle);
            Err(Error::library(path, reason))
        };
        let symbol = libc::dlsym(handle, c"OrtGetApiBase".as_ptr());
        if symbol.is_null() {
            return close_with("not an ONNX Runtime library (it has no OrtGetApiBase)".into());
        }
        let get_api_base: unsafe extern "C" fn() -> *const ort::sys::OrtApiBase =
            std::mem::transmute(symbol);
        let base = get_api_base();
        if base.is_null() {
            return close_with("OrtGetApiBase returned nothing".into());
        }
        let version_ptr: *const c_char = ((*base).GetVersionString)();
        if version_ptr.is_null() {
            return close_with("GetVersionString returned nothing".into());
        }
        let version = CStr::from_ptr(version_ptr).to_string_lossy().into_owned();
        match parse_version(&version) {
            Some((1, minor)) if minor >= MIN_MINOR_VERSION => Ok(LibraryInfo {
                path: path.to_path_buf(),
                version,
            }),
            Some(_) => close_with(format!(
                "ONNX Runtime {version} is too old: chipbench needs 1.{MIN_MINOR_VERSION} or newer \
                 (ort {} with api-{MIN_MINOR_VERSION}); `scripts/setup-ort.sh` installs 1.32.0",
                crate::ORT_CRATE_VERSION
            )),
            None => close_with(format!("unreadable ONNX Runtime version '{version}'")),
        }
    }
}

/// Whether the dynamic loader can load `path` with every library it needs. A library that loads
/// stays loaded (ONNX Runtime loads the same file when it needs it).
pub fn loads(path: &Path) -> Result<(), String> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| "the path contains a NUL byte".to_string())?;
    // SAFETY: a valid C string; a null handle means failure and leaves nothing to close.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
    if handle.is_null() {
        Err(unsafe { dl_error() })
    } else {
        Ok(())
    }
}

/// `1.32.0` -> (1, 32).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

unsafe fn dl_error() -> String {
    // SAFETY: dlerror returns a thread-local C string or null.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        "unknown dlopen error".into()
    } else {
        unsafe { CStr::from_ptr(message) }
            .to_string_lossy()
            .into_owned()
    }
}

/// The library this process runs models with, its environment and the execution providers it
/// was built with.
pub struct Runtime {
    pub library: LibraryInfo,
    /// `GetAvailableProviders`, in the library's order of preference.
    pub providers: Vec<String>,
    /// For each provider of the library that chipbench can register: whether registering it
    /// works on this machine (a GPU build on a host without CUDA fails here, with the loader's
    /// message).
    pub registration: Vec<(Provider, Result<(), String>)>,
    pub environment: Environment,
}

impl Runtime {
    /// The providers that can be used here, in the library's order of preference.
    pub fn usable(&self) -> impl Iterator<Item = Provider> + '_ {
        self.registration
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(p, _)| *p)
    }
}

static RUNTIME: OnceLock<Result<Runtime, Error>> = OnceLock::new();

/// The process's ONNX Runtime, loaded from `path` on the first call. Later calls with the same
/// file get the same runtime (or the same error); a different file is an error, as `ort` cannot
/// switch libraries.
pub fn runtime(path: &Path) -> Result<&'static Runtime, Error> {
    let info = inspect(path)?;
    let runtime = RUNTIME
        .get_or_init(|| {
            let library = info.path.clone();
            // `ort` panics when a library that passed the version check still lacks the API.
            std::panic::catch_unwind(|| load(info)).unwrap_or_else(|payload| {
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                Err(Error::library(
                    library,
                    format!("ONNX Runtime failed to start: {message}"),
                ))
            })
        })
        .as_ref()
        .map_err(Clone::clone)?;
    if !same_file(&runtime.library.path, path) {
        return Err(Error::AlreadyLoaded {
            loaded: runtime.library.path.clone(),
            requested: path.to_path_buf(),
        });
    }
    Ok(runtime)
}

fn load(library: LibraryInfo) -> Result<Runtime, Error> {
    // `{:?}`: the Display of a load error drops the dlopen message.
    let builder = ort::init_from(&library.path)
        .map_err(|e| Error::library(&library.path, format!("{e:?}")))?;
    // ONNX Runtime's messages go to chipbench's log, never raw to the terminal.
    let environment = builder
        .with_name("chipbench")
        .with_telemetry(false)
        .with_logger(crate::log::logger())
        .build()?;
    environment.set_log_level(ort::logging::LogLevel::Warning);
    let providers = available_providers()?;
    let registration = providers
        .iter()
        .filter_map(|name| Provider::from_ort_name(name))
        .map(|p| (p, try_registration(&environment, p)))
        .collect();
    // What registering the providers logged is in `registration` already (and in `chipbench
    // backends`), not a cell's.
    crate::log::drain();
    Ok(Runtime {
        library,
        providers,
        registration,
        environment,
    })
}

/// Registers `provider` on a session builder that is then dropped: this loads the provider's
/// plugin and its dependencies (CUDA, cuDNN, TensorRT), the step that fails on a machine
/// without them.
fn try_registration(environment: &Environment, provider: Provider) -> Result<(), String> {
    let registrations = provider.registrations();
    if registrations.is_empty() {
        return Ok(());
    }
    ort::session::Session::builder(environment)
        .map_err(|e| engine_message(e.message()))?
        .with_execution_providers(registrations)
        .map(drop)
        .map_err(|e| engine_message(e.message()))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// `GetAvailableProviders` has no wrapper in `ort`; the raw C API is the way.
fn available_providers() -> Result<Vec<String>, Error> {
    let api = ort::api();
    let mut names: *mut *mut c_char = std::ptr::null_mut();
    let mut count: std::ffi::c_int = 0;
    // SAFETY: the out-pointers are valid; the array is released with the matching call.
    unsafe {
        check((api.GetAvailableProviders)(&mut names, &mut count))?;
        let providers = (0..count.max(0) as usize)
            .map(|i| CStr::from_ptr(*names.add(i)).to_string_lossy().into_owned())
            .collect();
        check((api.ReleaseAvailableProviders)(names, count))?;
        Ok(providers)
    }
}

/// Turns an `OrtStatus` of the raw C API into a `Result`, releasing it.
pub(crate) fn check(status: ort::sys::OrtStatusPtr) -> Result<(), Error> {
    if status.0.is_null() {
        return Ok(());
    }
    let api = ort::api();
    // SAFETY: a non-null status is a valid OrtStatus owned by the caller until released.
    let message = unsafe {
        let text = CStr::from_ptr((api.GetErrorMessage)(status.0))
            .to_string_lossy()
            .into_owned();
        (api.ReleaseStatus)(status.0);
        text
    };
    Err(Error::Engine(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_to_major_and_minor() {
        assert_eq!(parse_version("1.32.0"), Some((1, 32)));
        assert_eq!(parse_version("1.30.1-dev"), Some((1, 30)));
        assert_eq!(parse_version("garbage"), None);
    }
}
