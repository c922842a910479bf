//! The writer's errors.

use std::path::PathBuf;

/// What can go wrong while building or writing a graph.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A graph was finished without declaring an output.
    #[error("graph {graph} has no output")]
    NoOutput {
        /// The graph's name.
        graph: String,
    },
    /// Weights do not have the size their shape says.
    #[error("{what}: expected {expected} values, got {got}")]
    WeightSize {
        /// Which weights.
        what: String,
        /// The size the shape gives.
        expected: usize,
        /// The size given.
        got: usize,
    },
    /// A model path has no file name.
    #[error("{} does not name a file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A file could not be written or removed.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The writer's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A closure that wraps an I/O error with the path it concerns, for `map_err`.
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io { path: path.to_path_buf(), source }
    }
}
