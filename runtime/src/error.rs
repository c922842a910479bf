//! The runtime's one error type. Every variant names what was wrong and what was expected.
//!
//! Each variant has a stable numeric [`Error::code`], which the C ABI maps to its status values:
//!
//! | range | group |
//! |---|---|
//! | 100–199 | the bundle: folder, manifest, files, graph signatures |
//! | 200–299 | ONNX Runtime: finding and loading the library, providers, sessions, runs |
//! | 300–399 | the caller's input: options, shapes, values, profiles |
//! | 900–999 | internal failures |
//!
//! Codes are never reused or renumbered; a new variant gets a new number. Each code is defined once, in the
//! status table ([`Status`], `runtime/src/status.rs`, published as `docs/status-codes.md`) with its C name and
//! meaning; [`Error::status`] says which status each variant is, and the C ABI returns that status.

use std::path::PathBuf;

use crate::options::ExecutionProvider;
use crate::ort_env::SearchedLocation;
use crate::status::Status;

/// Result alias used throughout the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when loading or running a bundle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bundle folder does not exist.
    #[error("bundle folder {path} does not exist (expected a folder holding manifest.json)")]
    BundleNotFound {
        /// The folder that was asked for.
        path: PathBuf,
    },
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `manifest.json` is not valid JSON or does not match the schema.
    #[error("cannot parse manifest {path}: {message}")]
    ManifestParse {
        /// The manifest file.
        path: PathBuf,
        /// The parser's message (field and position).
        message: String,
    },
    /// The bundle was written in a format version this runtime does not read.
    #[error("unsupported bundle format_version {found}: this runtime reads version {supported}")]
    UnsupportedFormatVersion {
        /// The version found in the manifest.
        found: String,
        /// The version this runtime reads.
        supported: u32,
    },
    /// A manifest field is inconsistent.
    #[error("invalid manifest field `{field}`: expected {expected}, found {found}")]
    InvalidManifest {
        /// The field.
        field: String,
        /// What it should be.
        expected: String,
        /// What it is.
        found: String,
    },
    /// A file listed in the manifest is missing.
    #[error("bundle file {path} is missing (listed in manifest.json)")]
    MissingFile {
        /// The missing file.
        path: PathBuf,
    },
    /// A bundle file does not match its recorded SHA-256.
    #[error("bundle file {path} is corrupt: sha256 {actual}, manifest expects {expected}")]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// The manifest's hash.
        expected: String,
        /// The file's actual hash.
        actual: String,
    },
    /// An ONNX graph's inputs or outputs do not match what the manifest says it must have.
    #[error("graph {graph} does not match the manifest: tensor `{tensor}`: expected {expected}, found {found}")]
    GraphSignature {
        /// The graph file, e.g. `encoder.onnx`.
        graph: String,
        /// The input or output name.
        tensor: String,
        /// What the manifest requires.
        expected: String,
        /// What the graph declares.
        found: String,
    },

    /// No ONNX Runtime library was found in any of the places searched.
    #[error(
        "ONNX Runtime library not found; searched:\n{}\nfetch it with `scripts/fetch-onnxruntime.sh` (or `make ort`), \
         or set ORT_DYLIB_PATH to a libonnxruntime.so of version 1.{required_minor} or newer",
        list_searched(.searched)
    )]
    OrtNotFound {
        /// Every location that was tried, in order.
        searched: Vec<SearchedLocation>,
        /// The lowest ONNX Runtime minor version this build accepts.
        required_minor: u32,
    },
    /// The file exists but cannot be loaded as a shared library (not a library, wrong architecture, missing
    /// dependencies).
    #[error("cannot load {path} as a shared library: {message}")]
    OrtLoad {
        /// The file.
        path: PathBuf,
        /// The dynamic loader's message.
        message: String,
    },
    /// The shared library loads but is not ONNX Runtime (it has no usable `OrtGetApiBase`).
    #[error("{path} is not an ONNX Runtime library: {message}")]
    OrtNotOnnxRuntime {
        /// The library.
        path: PathBuf,
        /// What was wrong with it.
        message: String,
    },
    /// The ONNX Runtime library is older than this build of the runtime needs.
    #[error(
        "ONNX Runtime at {path} is version {found}, but steer-runtime needs 1.{required_minor} or newer; \
         fetch a suitable one with `scripts/fetch-onnxruntime.sh`"
    )]
    OrtVersion {
        /// The library.
        path: PathBuf,
        /// The version it reports.
        found: String,
        /// The lowest minor version accepted.
        required_minor: u32,
    },
    /// ONNX Runtime is process-global and was already loaded from another file.
    #[error(
        "ONNX Runtime is already loaded from {loaded} in this process; it cannot also be loaded from {requested} \
         (a process can hold one ONNX Runtime library)"
    )]
    OrtAlreadyLoaded {
        /// The library in use.
        loaded: PathBuf,
        /// The library that was asked for.
        requested: PathBuf,
    },
    /// Creating the process-wide ONNX Runtime environment failed.
    #[error("cannot create the ONNX Runtime environment: {message}")]
    OrtEnvironment {
        /// ONNX Runtime's message.
        message: String,
    },
    /// ONNX Runtime could not create a session for a graph (invalid or unsupported ONNX file).
    #[error("ONNX Runtime cannot load graph {graph}: {message}")]
    Session {
        /// The graph file.
        graph: String,
        /// ONNX Runtime's message.
        message: String,
    },
    /// A requested execution provider cannot be used and CPU fallback was not allowed.
    #[error(
        "execution provider {provider} is not available: {reason} \
         (allow CPU fallback in LoadOptions to continue without it)"
    )]
    ProviderUnavailable {
        /// The provider that was requested.
        provider: ExecutionProvider,
        /// Why it cannot be used.
        reason: String,
    },
    /// ONNX Runtime failed while running a graph.
    #[error("running graph {graph} failed: {message}")]
    Inference {
        /// The graph file.
        graph: String,
        /// ONNX Runtime's message.
        message: String,
    },
    /// A graph returned an output that does not have the declared type or shape.
    #[error("graph {graph} returned an unexpected `{tensor}`: expected {expected}, found {found}")]
    UnexpectedOutput {
        /// The graph file.
        graph: String,
        /// The output name.
        tensor: String,
        /// What was expected.
        expected: String,
        /// What came back.
        found: String,
    },

    /// A [`LoadOptions`](crate::LoadOptions) value is invalid.
    #[error("invalid load option `{option}`: expected {expected}, found {found}")]
    InvalidOptions {
        /// The option.
        option: String,
        /// What it should be.
        expected: String,
        /// What it is.
        found: String,
    },
    /// An input array has the wrong shape.
    #[error("input `{input}` has shape {found}, expected {expected}")]
    ShapeMismatch {
        /// The input, e.g. `options` or `contexts[2].chosen`.
        input: String,
        /// The expected shape; named axes (`k`, `n`, `batch`) may have any size.
        expected: String,
        /// The shape that was passed.
        found: String,
    },
    /// An input holds NaN or an infinity.
    #[error("input `{input}` holds the non-finite value {value} at index {index:?}; all values must be finite")]
    NonFinite {
        /// The input.
        input: String,
        /// The index of the first non-finite value.
        index: Vec<usize>,
        /// The value found there.
        value: f32,
    },
    /// An input is empty where at least one element is needed.
    #[error("input `{input}` is empty: expected {expected}")]
    EmptyInput {
        /// The input.
        input: String,
        /// What is needed.
        expected: String,
    },
    /// A mask value is neither 0 nor 1.
    #[error("input `mask` holds {value} at index {index:?}; mask values must be 0.0 (padding) or 1.0 (a real pair)")]
    InvalidMask {
        /// The index of the first invalid value.
        index: Vec<usize>,
        /// The value found there.
        value: f32,
    },
    /// A profile does not have the model's latent size.
    #[error("{profile} has {found} values, but this model's profiles have latent_dim = {expected}")]
    ProfileLength {
        /// Which profile: `profile`, or its place in a batch, e.g. `profiles[3]` or `requests[1].profile`.
        profile: String,
        /// The model's `latent_dim`.
        expected: usize,
        /// The profile's length.
        found: usize,
    },

    /// A profile inferred by another model's encoder (so from a context embedded another way) is used with this one.
    #[error(
        "{profile} was inferred by another encoder (space {found}); this model's profiles come from encoder {expected}: \
         infer it again from the user's choices with this bundle"
    )]
    ProfileSpace {
        /// Which profile: `profile`, or its place in a batch, e.g. `profiles[3]` or `requests[1].profile`.
        profile: String,
        /// This model's encoder hash.
        expected: String,
        /// The profile's encoder hash.
        found: String,
    },

    /// The bundle's `tokenizer.json` cannot be read as a Hugging Face tokenizer.
    #[error("cannot load tokenizer {path}: {message}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// The tokenizers library's message.
        message: String,
    },
    /// The tokenizer does not match the bundle's text spec (another vocabulary, a missing special token).
    #[error("the tokenizer does not match the bundle: expected {expected}, found {found}")]
    TokenizerMismatch {
        /// What the manifest's text spec requires.
        expected: String,
        /// What the tokenizer has.
        found: String,
    },
    /// The tokenizer failed on an input text.
    #[error("cannot tokenize the text starting {text:?}: {message}")]
    Tokenization {
        /// The first characters of the text.
        text: String,
        /// The tokenizers library's message.
        message: String,
    },
    /// A text call was made on a bundle without a text embedder.
    #[error(
        "this {kind} bundle has no text embedder (no `text` in its manifest): use the embedding calls, or \
             export the model with a text embedder"
    )]
    NoTextEmbedder {
        /// The bundle's model kind.
        kind: String,
    },

    /// A generation parameter is out of its range.
    #[error("invalid generation parameter `{param}`: expected {expected}, found {found}")]
    InvalidGenerationParam {
        /// The parameter, e.g. `temperature`.
        param: String,
        /// Its valid range.
        expected: String,
        /// The value that was passed.
        found: String,
    },
    /// A prompt, with its chat template, leaves no room for `max_new_tokens` in the policy's context window.
    #[error(
        "the prompt is too long: {prompt_tokens} prompt tokens (chat template included) + max_new_tokens \
         {max_new_tokens} exceed the policy's context window of {max_positions} tokens"
    )]
    PromptTooLong {
        /// The prompt's tokens, chat template included.
        prompt_tokens: usize,
        /// The requested `max_new_tokens`.
        max_new_tokens: usize,
        /// The policy's `max_positions`.
        max_positions: usize,
    },
    /// A generation call was made on a bundle without a policy.
    #[error(
        "this {kind} bundle has no policy (no `policy` in its manifest): text generation needs a bundle exported \
         with a steerable policy"
    )]
    NoPolicy {
        /// The bundle's model kind.
        kind: String,
    },

    /// A session's lock was poisoned: another thread panicked while it was running the graph.
    #[error("a session of graph {graph} is unusable: another thread panicked while running it")]
    Poisoned {
        /// The graph file.
        graph: String,
    },
}

impl Error {
    /// The stable numeric code of this error: its [`Status`]'s value, which the C ABI returns.
    ///
    /// The numbers are part of the public contract: they never change and are never reused.
    pub fn code(&self) -> i32 {
        self.status().code()
    }

    /// The status of this error in the one table of status codes ([`Status`], `docs/status-codes.md`).
    pub fn status(&self) -> Status {
        match self {
            Error::BundleNotFound { .. } => Status::BundleNotFound,
            Error::Io { .. } => Status::Io,
            Error::ManifestParse { .. } => Status::ManifestParse,
            Error::UnsupportedFormatVersion { .. } => Status::UnsupportedFormatVersion,
            Error::InvalidManifest { .. } => Status::InvalidManifest,
            Error::MissingFile { .. } => Status::MissingFile,
            Error::HashMismatch { .. } => Status::HashMismatch,
            Error::GraphSignature { .. } => Status::GraphSignature,
            Error::Tokenizer { .. } => Status::Tokenizer,
            Error::TokenizerMismatch { .. } => Status::TokenizerMismatch,
            Error::OrtNotFound { .. } => Status::OrtNotFound,
            Error::OrtLoad { .. } => Status::OrtLoad,
            Error::OrtNotOnnxRuntime { .. } => Status::OrtNotOnnxRuntime,
            Error::OrtVersion { .. } => Status::OrtVersion,
            Error::OrtAlreadyLoaded { .. } => Status::OrtAlreadyLoaded,
            Error::OrtEnvironment { .. } => Status::OrtEnvironment,
            Error::Session { .. } => Status::Session,
            Error::ProviderUnavailable { .. } => Status::ProviderUnavailable,
            Error::Inference { .. } => Status::Inference,
            Error::UnexpectedOutput { .. } => Status::UnexpectedOutput,
            Error::InvalidOptions { .. } => Status::InvalidOptions,
            Error::ShapeMismatch { .. } => Status::ShapeMismatch,
            Error::NonFinite { .. } => Status::NonFinite,
            Error::EmptyInput { .. } => Status::EmptyInput,
            Error::InvalidMask { .. } => Status::InvalidMask,
            Error::ProfileLength { .. } => Status::ProfileLength,
            Error::ProfileSpace { .. } => Status::ProfileSpace,
            Error::Tokenization { .. } => Status::Tokenization,
            Error::NoTextEmbedder { .. } => Status::NoTextEmbedder,
            Error::InvalidGenerationParam { .. } => Status::InvalidGenerationParam,
            Error::PromptTooLong { .. } => Status::PromptTooLong,
            Error::NoPolicy { .. } => Status::NoPolicy,
            Error::Poisoned { .. } => Status::Poisoned,
        }
    }
}

/// The first characters of a text, for error messages.
pub(crate) fn preview(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Formats the searched locations one per line for [`Error::OrtNotFound`].
fn list_searched(searched: &[SearchedLocation]) -> String {
    searched.iter().map(|location| format!("  - {location}")).collect::<Vec<_>>().join("\n")
}

// Errors cross threads and end up in `anyhow` and the C ABI's thread-local message.
const _: () = {
    const fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Error>();
};

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::ort_env::LibrarySource;

    fn one_of_each() -> Vec<Error> {
        let path = PathBuf::from("x");
        let s = || String::from("s");
        vec![
            Error::BundleNotFound { path: path.clone() },
            Error::Io { path: path.clone(), source: std::io::Error::other("e") },
            Error::ManifestParse { path: path.clone(), message: s() },
            Error::UnsupportedFormatVersion { found: s(), supported: 1 },
            Error::InvalidManifest { field: s(), expected: s(), found: s() },
            Error::MissingFile { path: path.clone() },
            Error::HashMismatch { path: path.clone(), expected: s(), actual: s() },
            Error::GraphSignature { graph: s(), tensor: s(), expected: s(), found: s() },
            Error::OrtNotFound {
                searched: vec![SearchedLocation { path: path.clone(), source: LibrarySource::Workspace }],
                required_minor: 31,
            },
            Error::OrtLoad { path: path.clone(), message: s() },
            Error::OrtNotOnnxRuntime { path: path.clone(), message: s() },
            Error::OrtVersion { path: path.clone(), found: s(), required_minor: 31 },
            Error::OrtAlreadyLoaded { loaded: path.clone(), requested: path.clone() },
            Error::OrtEnvironment { message: s() },
            Error::Session { graph: s(), message: s() },
            Error::ProviderUnavailable { provider: ExecutionProvider::Cuda { device_id: 0 }, reason: s() },
            Error::Inference { graph: s(), message: s() },
            Error::UnexpectedOutput { graph: s(), tensor: s(), expected: s(), found: s() },
            Error::InvalidOptions { option: s(), expected: s(), found: s() },
            Error::ShapeMismatch { input: s(), expected: s(), found: s() },
            Error::NonFinite { input: s(), index: vec![0], value: f32::NAN },
            Error::EmptyInput { input: s(), expected: s() },
            Error::InvalidMask { index: vec![0], value: 0.5 },
            Error::ProfileLength { profile: s(), expected: 2, found: 1 },
            Error::ProfileSpace { profile: s(), expected: s(), found: s() },
            Error::Tokenizer { path: path.clone(), message: s() },
            Error::TokenizerMismatch { expected: s(), found: s() },
            Error::Tokenization { text: s(), message: s() },
            Error::NoTextEmbedder { kind: s() },
            Error::InvalidGenerationParam { param: s(), expected: s(), found: s() },
            Error::PromptTooLong { prompt_tokens: 1, max_new_tokens: 1, max_positions: 1 },
            Error::NoPolicy { kind: s() },
            Error::Poisoned { graph: s() },
        ]
    }

    #[test]
    fn codes_are_unique_and_grouped() {
        let errors = one_of_each();
        let codes: HashSet<i32> = errors.iter().map(Error::code).collect();
        assert_eq!(codes.len(), errors.len(), "a code is used twice");
        for err in &errors {
            let group = match err {
                Error::BundleNotFound { .. }
                | Error::Io { .. }
                | Error::ManifestParse { .. }
                | Error::UnsupportedFormatVersion { .. }
                | Error::InvalidManifest { .. }
                | Error::MissingFile { .. }
                | Error::HashMismatch { .. }
                | Error::GraphSignature { .. }
                | Error::Tokenizer { .. }
                | Error::TokenizerMismatch { .. } => 100..200,
                Error::InvalidOptions { .. }
                | Error::ShapeMismatch { .. }
                | Error::NonFinite { .. }
                | Error::EmptyInput { .. }
                | Error::InvalidMask { .. }
                | Error::ProfileLength { .. }
                | Error::ProfileSpace { .. }
                | Error::Tokenization { .. }
                | Error::NoTextEmbedder { .. }
                | Error::InvalidGenerationParam { .. }
                | Error::PromptTooLong { .. }
                | Error::NoPolicy { .. } => 300..400,
                Error::Poisoned { .. } => 900..1000,
                _ => 200..300,
            };
            assert!(group.contains(&err.code()), "{err:?} has code {}", err.code());
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn not_found_lists_each_location_on_its_own_line() {
        let err = Error::OrtNotFound {
            searched: vec![
                SearchedLocation { path: "/a/libonnxruntime.so".into(), source: LibrarySource::CurrentDir },
                SearchedLocation { path: "/b/libonnxruntime.so".into(), source: LibrarySource::Workspace },
            ],
            required_minor: 31,
        };
        assert_eq!(
            err.to_string(),
            "ONNX Runtime library not found; searched:\n  \
             - /a/libonnxruntime.so (project cache above the current directory)\n  \
             - /b/libonnxruntime.so (workspace cache)\n\
             fetch it with `scripts/fetch-onnxruntime.sh` (or `make ort`), \
             or set ORT_DYLIB_PATH to a libonnxruntime.so of version 1.31 or newer"
        );
    }

    #[test]
    fn previews_are_cut_on_a_character_boundary() {
        assert_eq!(preview("short"), "short");
        let long = "é".repeat(50);
        assert_eq!(preview(&long), format!("{}…", "é".repeat(40)));
    }
}
