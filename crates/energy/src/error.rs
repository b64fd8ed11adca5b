use std::path::PathBuf;

/// Why an energy figure could not be read. Messages name the file or library and the cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("permission denied reading {}{hint}", path.display())]
    PermissionDenied { path: PathBuf, hint: &'static str },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: expected a non-negative integer, found '{text}'", path.display())]
    Parse { path: PathBuf, text: String },
    #[error(
        "{}: the counter went back from {start} to {end} µJ and its range is unknown, so the \
         wrap-around cannot be undone",
        path.display()
    )]
    UnknownWrap { path: PathBuf, start: u64, end: u64 },
    #[error("NVML: {0}")]
    Nvml(String),
    #[error("the power sampling thread failed: {0}")]
    Sampler(String),
    #[error("no energy figure: {0}")]
    NoFigure(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
