//! The trainer's one error type.

use std::path::PathBuf;

/// Result alias used throughout the trainer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while sampling, training, exporting or evaluating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed inside candle.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// The runtime rejected a bundle or an input.
    #[error("runtime: {0}")]
    Runtime(#[from] steer_runtime::Error),
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A configuration value is out of range.
    #[error("invalid config `{field}`: expected {expected}, got {got}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What it should be.
        expected: String,
        /// What it was.
        got: String,
    },
    /// A JSON file could not be parsed or written.
    #[error("JSON error in {path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// Training produced a non-finite loss.
    #[error("training diverged at step {step}: loss is {loss}")]
    Diverged {
        /// The step.
        step: usize,
        /// The loss value.
        loss: f32,
    },
    /// The ONNX export met something it cannot express.
    #[error("ONNX export: {0}")]
    Export(String),
    /// A plot could not be drawn.
    #[error("plot {path}: {message}")]
    Plot {
        /// The output file.
        path: PathBuf,
        /// The backend's message.
        message: String,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
