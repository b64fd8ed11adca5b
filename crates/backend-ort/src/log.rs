//! ONNX Runtime's own log, kept for chipbench instead of written raw on the terminal: the
//! environment's messages at warning level and above are collected here (one environment, so
//! one log, per process) and handed to the cell they came with, as its warnings or in its error.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use ort::logging::{LogLevel, LoggerFunction};

use crate::error::engine_message;

/// Lines kept between two drains at most: a model that warns once per node cannot fill memory.
const KEPT: usize = 100;

static LOG: Log = Log::new();

/// The environment's logger (see [`Log::keep`]).
pub fn logger() -> LoggerFunction {
    Arc::new(|level, _category, _id, _location, message| LOG.keep(level, message))
}

/// What the environment logged since the last call (see [`Log::drain`]).
pub fn drain() -> Vec<String> {
    LOG.drain()
}

/// `error` with what the environment logged about it (see [`Log::with_log`]).
pub fn with_log(error: String) -> String {
    LOG.with_log(error)
}

struct Log {
    lines: Mutex<Vec<String>>,
}

impl Log {
    const fn new() -> Log {
        Log {
            lines: Mutex::new(Vec::new()),
        }
    }

    /// Keeps warnings, errors and fatal messages; drops the rest.
    fn keep(&self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Fatal => "fatal",
            LogLevel::Verbose | LogLevel::Info => return,
        };
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() < KEPT {
            lines.push(format!("onnxruntime {level}: {}", engine_message(message)));
        }
    }

    /// The lines kept since the last drain, each once, in order.
    fn drain(&self) -> Vec<String> {
        let mut lines = std::mem::take(&mut *self.lines.lock().unwrap_or_else(|p| p.into_inner()));
        let mut seen = HashSet::new();
        lines.retain(|line| seen.insert(line.clone()));
        lines
    }

    /// `error` followed by the lines that say more than it does (ONNX Runtime often logs the
    /// error it then returns: that one is not repeated).
    fn with_log(&self, error: String) -> String {
        let more: Vec<String> = self
            .drain()
            .into_iter()
            .filter(|line| {
                let text = line
                    .split_once(": ")
                    .map_or(line.as_str(), |(_, text)| text);
                !error.contains(text) && !text.contains(error.as_str())
            })
            .collect();
        if more.is_empty() {
            error
        } else {
            format!("{error} (ONNX Runtime log: {})", more.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_kept_once_and_the_returned_error_is_not_repeated() {
        let log = Log::new();
        log.keep(LogLevel::Info, "chatter");
        log.keep(LogLevel::Warning, "unused initializer w");
        log.keep(LogLevel::Warning, "unused initializer w");
        log.keep(
            LogLevel::Error,
            "Non-zero status code returned while running Expand node",
        );
        assert_eq!(
            log.with_log("Non-zero status code returned while running Expand node".into()),
            "Non-zero status code returned while running Expand node (ONNX Runtime log: \
             onnxruntime warning: unused initializer w)"
        );
        assert!(log.drain().is_empty(), "a drain empties the log");
    }
}
