use std::path::PathBuf;

/// What can go wrong between chipbench and ONNX Runtime. Each message is one line that names the
/// file or setting at fault and, where there is one, the command that fixes it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    /// No discovery step found a library.
    #[error(
        "libonnxruntime not found ({searched}); install it with `scripts/setup-ort.sh` (CPU) or \
         `scripts/setup-ort.sh --gpu` (CUDA, TensorRT), or pass --ort-lib PATH / set \
         ORT_DYLIB_PATH, or `pip install onnxruntime==1.32.0`"
    )]
    NotFound { searched: String },
    /// A file that was found but cannot serve as the ONNX Runtime library.
    #[error("{}: {reason}", path.display())]
    Library { path: PathBuf, reason: String },
    /// ONNX Runtime can be loaded once per process; a second, different library cannot replace it.
    #[error(
        "ONNX Runtime is already loaded from {} in this process; {} cannot be loaded as well",
        loaded.display(),
        requested.display()
    )]
    AlreadyLoaded { loaded: PathBuf, requested: PathBuf },
    /// A `--set ort.*` value that does not parse or is not a known key.
    #[error("--set {key}: {reason}")]
    Setting { key: String, reason: String },
    /// A call into ONNX Runtime failed; the text is ONNX Runtime's own.
    #[error("{0}")]
    Engine(String),
}

impl Error {
    pub(crate) fn library(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        Error::Library {
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn setting(key: &str, reason: impl ToString) -> Self {
        Error::Setting {
            key: key.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// `ort` errors carry what can be recovered (the builder); only the message is kept.
impl<R> From<ort::Error<R>> for Error {
    fn from(e: ort::Error<R>) -> Self {
        Error::Engine(engine_message(e.message()))
    }
}

/// ONNX Runtime's message without the source locations it carries
/// (`/onnxruntime_src/...cc:2043 ... [ONNXRuntimeError] : 1 : FAIL : `, and a kernel's
/// `/onnxruntime_src/...cc:360 void* onnxruntime::BFCArena::AllocateRawInternal(size_t, ...) `
/// inside it), on one line.
pub fn engine_message(message: &str) -> String {
    const MARK: &str = "[ONNXRuntimeError] : ";
    const SOURCE: &str = "/onnxruntime_src/";
    let mut text = match message.find(MARK) {
        // After the marker: "<code> : <NAME> : <message>".
        Some(i) => message[i + MARK.len()..]
            .splitn(3, " : ")
            .nth(2)
            .unwrap_or(message),
        None => message,
    }
    .to_string();
    // A location inside the message ends with the C++ signature of the function: up to its
    // closing parenthesis.
    while let Some(start) = text.find(SOURCE) {
        match text[start..].find(") ") {
            Some(end) => text.replace_range(start..start + end + 2, ""),
            None => break,
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl From<Error> for chipbench_core::Error {
    fn from(e: Error) -> Self {
        chipbench_core::Error::Unsupported(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_messages_lose_the_source_location_and_stay_on_one_line() {
        let raw = "/onnxruntime_src/onnxruntime/core/session/provider_bridge_ort.cc:2043 \
                   onnxruntime::Provider& onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 : \
                   FAIL : Failed to load library /x/libonnxruntime_providers_cuda.so with error: \
                   libcublasLt.so.13: cannot open shared object file: No such file or directory\n";
        assert_eq!(
            engine_message(raw),
            "Failed to load library /x/libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: \
             cannot open shared object file: No such file or directory"
        );
        assert_eq!(
            engine_message("CUDA execution provider is not enabled in this build."),
            "CUDA execution provider is not enabled in this build."
        );
        assert_eq!(
            engine_message(
                "Non-zero status code returned while running Expand node. Name:'y' Status Message: \
                 /onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:360 void* \
                 onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*) \
                 Failed to allocate memory for requested buffer of size 40000000000"
            ),
            "Non-zero status code returned while running Expand node. Name:'y' Status Message: \
             Failed to allocate memory for requested buffer of size 40000000000"
        );
    }
}
