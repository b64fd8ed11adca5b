use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading, analysing, transforming or writing ONNX. Every
/// message is one line that names the file (or, for in-memory models, the tensor or node) at
/// fault and the cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file that is not an ONNX model: not protobuf, truncated, or protobuf without a graph.
    #[error("{}: not a valid ONNX model: {reason}", path.display())]
    NotOnnx { path: PathBuf, reason: String },
    /// A tensor whose data cannot be found or read (external data, unsupported element type,
    /// a byte count that does not match the dims).
    #[error("{}tensor '{name}': {reason}", location(path))]
    Tensor {
        path: Option<PathBuf>,
        name: String,
        reason: String,
    },
    /// A graph that is not well-formed (an input nobody produces, a duplicate output name).
    #[error("graph '{graph}': {reason}")]
    Graph { graph: String, reason: String },
    /// A model or input declaration that chipbench cannot use as it is.
    #[error("{}{reason}", location(path))]
    Unsupported {
        path: Option<PathBuf>,
        reason: String,
    },
    /// A calibration file that cannot be used for this model.
    #[error("{}: calibration data: {reason}", path.display())]
    Calibration { path: PathBuf, reason: String },
    /// The caller's model runner failed on a model a recipe needed to run (calibration, the
    /// sensitivity pass).
    #[error("running {what} failed: {reason}")]
    Runner { what: String, reason: String },
    /// A variant cache entry that cannot be read or written.
    #[error("{}: variant cache: {reason}", path.display())]
    Cache { path: PathBuf, reason: String },
    /// A `suite.toml` that cannot be parsed or that names files that do not exist.
    #[error("{}: {reason}", path.display())]
    Suite { path: PathBuf, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn location(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("{}: ", p.display()),
        None => String::new(),
    }
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn tensor(name: &str, reason: impl ToString) -> Self {
        Error::Tensor {
            path: None,
            name: name.to_string(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn unsupported(reason: impl ToString) -> Self {
        Error::Unsupported {
            path: None,
            reason: reason.to_string(),
        }
    }

    /// Attaches the model file to an error raised while the file was not known, so that the
    /// message names it.
    pub fn in_file(self, file: &Path) -> Self {
        match self {
            Error::Tensor {
                path: None,
                name,
                reason,
            } => Error::Tensor {
                path: Some(file.to_path_buf()),
                name,
                reason,
            },
            Error::Unsupported { path: None, reason } => Error::Unsupported {
                path: Some(file.to_path_buf()),
                reason,
            },
            other => other,
        }
    }
}

/// The runner and the backends speak `chipbench_core::Error`; a problem with a model file found
/// here becomes a model error there, with the same one-line message.
impl From<Error> for chipbench_core::Error {
    fn from(e: Error) -> Self {
        use chipbench_core::Error as Core;
        match e {
            Error::Io { path, source } => Core::Io { path, source },
            Error::NotOnnx { path, reason } => {
                Core::model(path, format!("not a valid ONNX model: {reason}"))
            }
            Error::Suite { path, reason } => Core::model(path, reason),
            Error::Calibration { path, reason } => {
                Core::model(path, format!("calibration data: {reason}"))
            }
            Error::Tensor {
                path: Some(path),
                name,
                reason,
            } => Core::model(path, format!("tensor '{name}': {reason}")),
            Error::Unsupported {
                path: Some(path),
                reason,
            } => Core::model(path, reason),
            other => Core::Unsupported(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn becomes_a_core_model_error_with_the_same_message() {
        let e = Error::NotOnnx {
            path: "m.onnx".into(),
            reason: "the file is empty".into(),
        };
        let message = e.to_string();
        let core: chipbench_core::Error = e.into();
        assert!(matches!(core, chipbench_core::Error::Model { .. }));
        assert_eq!(core.to_string(), message);
        let e = Error::tensor("w", "bad").in_file(Path::new("m.onnx"));
        assert_eq!(e.to_string(), "m.onnx: tensor 'w': bad");
        assert_eq!(
            chipbench_core::Error::from(e).to_string(),
            "m.onnx: tensor 'w': bad"
        );
    }
}
