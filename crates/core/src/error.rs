use std::path::PathBuf;

/// The error every backend and the runner speak. Messages name the file or input at fault and
/// the cause, in one line, so the CLI can print them as they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file that cannot be read, parsed or prepared.
    #[error("{}: {reason}", path.display())]
    Model { path: PathBuf, reason: String },
    /// An input whose name, type, shape or data does not fit the model.
    #[error("input '{name}': {reason}")]
    Input { name: String, reason: String },
    /// An operator or data type the backend cannot run.
    #[error("{0}")]
    Unsupported(String),
    /// A failure while running an inference.
    #[error("inference failed: {0}")]
    Run(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn model(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        Error::Model {
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    pub fn input(name: impl Into<String>, reason: impl ToString) -> Self {
        Error::Input {
            name: name.into(),
            reason: reason.to_string(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
