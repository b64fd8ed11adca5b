use std::path::PathBuf;

/// Everything that can go wrong while reading runs, rendering, comparing or keeping history.
/// Messages name the file or the input at fault and the cause, in one line.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file that is not a chipbench run (wrong JSON, wrong schema version).
    #[error("{}: not a chipbench run: {reason}", path.display())]
    NotARun { path: PathBuf, reason: String },
    /// The history database cannot be used (corrupt, locked, from a newer chipbench, ...).
    #[error("history database {}: {reason}", path.display())]
    History { path: PathBuf, reason: String },
    /// A request that does not fit the data: an unknown format, an ambiguous cell, no runs.
    #[error("{0}")]
    Invalid(String),
    /// plotters failed to draw a chart.
    #[error("chart '{chart}': {reason}")]
    Chart { chart: String, reason: String },
    #[error("cannot serialize the report: {0}")]
    Serialize(#[from] serde_json::Error),
}

pub type Result<T, E = ReportError> = std::result::Result<T, E>;

impl ReportError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ReportError::Io {
            path: path.into(),
            source,
        }
    }
}
