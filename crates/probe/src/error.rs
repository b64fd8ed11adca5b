use std::path::{Path, PathBuf};

/// Why the catalog or a ceilings file could not be used. Messages name the file and the cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("chip catalog {0}")]
    Catalog(String),
    #[error("roofline ceilings {0}")]
    Ceilings(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
