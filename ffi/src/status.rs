//! `steer_status`: what every fallible call returns.

use std::ffi::c_char;

use crate::boundary::guard;

/// The result of a call: `STEER_STATUS_OK` (0) or the reason it failed; `steer_last_error_message()` has the
/// details.
///
/// Values are explicit, never change and are never reused. 1xx: the bundle; 2xx: ONNX Runtime and execution
/// providers; 3xx: the values passed in; 4xx: the use of the C ABI; 9xx: internal failures. The 1xx-3xx and 9xx
/// values are the runtime's `Error::code()` values. Treat any value you do not know as a failure: a newer library
/// may add codes.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum steer_status {
    /// The call succeeded.
    Ok = 0,
    /// The bundle folder does not exist.
    BundleNotFound = 100,
    /// A bundle file could not be read.
    Io = 101,
    /// `manifest.json` is not valid JSON or does not match the schema.
    ManifestParse = 102,
    /// The bundle's format version is not one this library reads.
    UnsupportedFormatVersion = 103,
    /// A manifest field is inconsistent.
    InvalidManifest = 104,
    /// A file listed in the manifest is missing.
    MissingFile = 105,
    /// A bundle file does not match its recorded SHA-256 (corrupt or truncated).
    HashMismatch = 106,
    /// A graph's inputs or outputs do not match the manifest.
    GraphSignature = 107,
    /// The bundle's `tokenizer.json` cannot be read as a tokenizer.
    Tokenizer = 108,
    /// The bundle's tokenizer does not match its manifest (another vocabulary size, a missing special token).
    TokenizerMismatch = 109,
    /// No ONNX Runtime library was found; the message lists every place searched.
    OrtNotFound = 200,
    /// The ONNX Runtime file cannot be loaded as a shared library.
    OrtLoad = 201,
    /// The shared library is not ONNX Runtime.
    OrtNotOnnxRuntime = 202,
    /// The ONNX Runtime library is too old.
    OrtVersion = 203,
    /// ONNX Runtime is already loaded from another file in this process.
    OrtAlreadyLoaded = 204,
    /// The ONNX Runtime environment could not be created.
    OrtEnvironment = 205,
    /// ONNX Runtime cannot load a graph of the bundle.
    Session = 206,
    /// A requested execution provider is not available and CPU fallback was not allowed.
    ProviderUnavailable = 207,
    /// ONNX Runtime failed while running a graph.
    Inference = 208,
    /// A graph returned an output of an unexpected type or shape.
    UnexpectedOutput = 209,
    /// The load options are invalid (checked by `steer_model_load`).
    InvalidOptions = 300,
    /// An array has the wrong shape, e.g. `d` is not the model's embedding size.
    ShapeMismatch = 301,
    /// An input holds NaN or an infinity.
    NonFinite = 302,
    /// An input is empty where at least one element is needed.
    EmptyInput = 303,
    /// A mask value is neither 0 nor 1.
    InvalidMask = 304,
    /// A profile does not have the model's `latent_dim` values.
    ProfileLength = 305,
    /// The tokenizer failed on a text that was passed in.
    Tokenization = 306,
    /// A text call was made on a bundle without a text embedder (see `steer_model_has_text`).
    NoTextEmbedder = 307,
    /// A generation parameter is out of its range (`temperature`, `top_p`, `repetition_penalty`, `max_new_tokens`,
    /// an empty stop string, or `n` 0 for best-of-n); the message names it.
    InvalidGenerationParam = 308,
    /// A prompt, with its chat template and `max_new_tokens`, does not fit the policy's context window.
    PromptTooLong = 309,
    /// A generation call was made on a bundle without a policy (see `steer_model_has_policy`).
    NoPolicy = 310,
    /// A profile inferred by another bundle's encoder (a context embedded another way) was used with this model.
    ProfileSpace = 311,
    /// A required pointer argument is NULL.
    NullArgument = 400,
    /// A string argument is not valid UTF-8.
    InvalidUtf8 = 401,
    /// An output buffer is smaller than the result; the message says how large it must be.
    BufferTooSmall = 402,
    /// An argument is invalid: an unknown enum value, an index out of range, sizes whose product overflows, a
    /// misaligned pointer, or a per-user count larger than its bound.
    InvalidArgument = 403,
    /// An error this version of the C ABI has no status for (not expected; please report it).
    UnknownError = 498,
    /// The library panicked (a bug; please report it). The call had no effect on its out-parameters.
    Panic = 499,
    /// A session is unusable because another thread panicked while running it.
    Poisoned = 900,
}

/// Every status, in the order of their values.
const ALL: [steer_status; 40] = [
    steer_status::Ok,
    steer_status::BundleNotFound,
    steer_status::Io,
    steer_status::ManifestParse,
    steer_status::UnsupportedFormatVersion,
    steer_status::InvalidManifest,
    steer_status::MissingFile,
    steer_status::HashMismatch,
    steer_status::GraphSignature,
    steer_status::Tokenizer,
    steer_status::TokenizerMismatch,
    steer_status::OrtNotFound,
    steer_status::OrtLoad,
    steer_status::OrtNotOnnxRuntime,
    steer_status::OrtVersion,
    steer_status::OrtAlreadyLoaded,
    steer_status::OrtEnvironment,
    steer_status::Session,
    steer_status::ProviderUnavailable,
    steer_status::Inference,
    steer_status::UnexpectedOutput,
    steer_status::InvalidOptions,
    steer_status::ShapeMismatch,
    steer_status::NonFinite,
    steer_status::EmptyInput,
    steer_status::InvalidMask,
    steer_status::ProfileLength,
    steer_status::Tokenization,
    steer_status::NoTextEmbedder,
    steer_status::InvalidGenerationParam,
    steer_status::PromptTooLong,
    steer_status::NoPolicy,
    steer_status::ProfileSpace,
    steer_status::NullArgument,
    steer_status::InvalidUtf8,
    steer_status::BufferTooSmall,
    steer_status::InvalidArgument,
    steer_status::UnknownError,
    steer_status::Panic,
    steer_status::Poisoned,
];

impl steer_status {
    /// Every status, in the order of their values.
    pub fn all() -> &'static [steer_status] {
        &ALL
    }

    /// The status with this numeric value, if there is one.
    pub fn from_code(code: i32) -> Option<steer_status> {
        ALL.iter().copied().find(|status| *status as i32 == code)
    }

    /// The status for a runtime error: the one whose value is the error's `code()`.
    pub fn of_runtime_error(error: &steer_runtime::Error) -> steer_status {
        match Self::from_code(error.code()) {
            Some(status) if status.is_runtime_code() => status,
            _ => steer_status::UnknownError,
        }
    }

    /// Whether this value comes from `steer_runtime::Error::code()` (1xx-3xx, 9xx).
    fn is_runtime_code(self) -> bool {
        matches!(self as i32, 100..400 | 900..1000)
    }

    /// The C name of the status, e.g. `STEER_STATUS_NULL_ARGUMENT`.
    pub fn name(self) -> &'static str {
        self.c_name().trim_end_matches('\0')
    }

    /// The C name with its NUL terminator.
    fn c_name(self) -> &'static str {
        match self {
            steer_status::Ok => "STEER_STATUS_OK\0",
            steer_status::BundleNotFound => "STEER_STATUS_BUNDLE_NOT_FOUND\0",
            steer_status::Io => "STEER_STATUS_IO\0",
            steer_status::ManifestParse => "STEER_STATUS_MANIFEST_PARSE\0",
            steer_status::UnsupportedFormatVersion => "STEER_STATUS_UNSUPPORTED_FORMAT_VERSION\0",
            steer_status::InvalidManifest => "STEER_STATUS_INVALID_MANIFEST\0",
            steer_status::MissingFile => "STEER_STATUS_MISSING_FILE\0",
            steer_status::HashMismatch => "STEER_STATUS_HASH_MISMATCH\0",
            steer_status::GraphSignature => "STEER_STATUS_GRAPH_SIGNATURE\0",
            steer_status::Tokenizer => "STEER_STATUS_TOKENIZER\0",
            steer_status::TokenizerMismatch => "STEER_STATUS_TOKENIZER_MISMATCH\0",
            steer_status::OrtNotFound => "STEER_STATUS_ORT_NOT_FOUND\0",
            steer_status::OrtLoad => "STEER_STATUS_ORT_LOAD\0",
            steer_status::OrtNotOnnxRuntime => "STEER_STATUS_ORT_NOT_ONNX_RUNTIME\0",
            steer_status::OrtVersion => "STEER_STATUS_ORT_VERSION\0",
            steer_status::OrtAlreadyLoaded => "STEER_STATUS_ORT_ALREADY_LOADED\0",
            steer_status::OrtEnvironment => "STEER_STATUS_ORT_ENVIRONMENT\0",
            steer_status::Session => "STEER_STATUS_SESSION\0",
            steer_status::ProviderUnavailable => "STEER_STATUS_PROVIDER_UNAVAILABLE\0",
            steer_status::Inference => "STEER_STATUS_INFERENCE\0",
            steer_status::UnexpectedOutput => "STEER_STATUS_UNEXPECTED_OUTPUT\0",
            steer_status::InvalidOptions => "STEER_STATUS_INVALID_OPTIONS\0",
            steer_status::ShapeMismatch => "STEER_STATUS_SHAPE_MISMATCH\0",
            steer_status::NonFinite => "STEER_STATUS_NON_FINITE\0",
            steer_status::EmptyInput => "STEER_STATUS_EMPTY_INPUT\0",
            steer_status::InvalidMask => "STEER_STATUS_INVALID_MASK\0",
            steer_status::ProfileLength => "STEER_STATUS_PROFILE_LENGTH\0",
            steer_status::Tokenization => "STEER_STATUS_TOKENIZATION\0",
            steer_status::NoTextEmbedder => "STEER_STATUS_NO_TEXT_EMBEDDER\0",
            steer_status::InvalidGenerationParam => "STEER_STATUS_INVALID_GENERATION_PARAM\0",
            steer_status::PromptTooLong => "STEER_STATUS_PROMPT_TOO_LONG\0",
            steer_status::NoPolicy => "STEER_STATUS_NO_POLICY\0",
            steer_status::ProfileSpace => "STEER_STATUS_PROFILE_SPACE\0",
            steer_status::NullArgument => "STEER_STATUS_NULL_ARGUMENT\0",
            steer_status::InvalidUtf8 => "STEER_STATUS_INVALID_UTF8\0",
            steer_status::BufferTooSmall => "STEER_STATUS_BUFFER_TOO_SMALL\0",
            steer_status::InvalidArgument => "STEER_STATUS_INVALID_ARGUMENT\0",
            steer_status::UnknownError => "STEER_STATUS_UNKNOWN_ERROR\0",
            steer_status::Panic => "STEER_STATUS_PANIC\0",
            steer_status::Poisoned => "STEER_STATUS_POISONED\0",
        }
    }
}

/// The name of a status value as a static string, e.g. `"STEER_STATUS_NULL_ARGUMENT"`, or
/// `"STEER_STATUS_UNKNOWN"` for a value this library does not define.
///
/// Takes any `int32_t`, so it is safe to call with a value from a newer library. The string is owned by the
/// library and lives as long as the process; do not free it. Thread-safe; does not change the thread's last error
/// message.
#[unsafe(no_mangle)]
pub extern "C" fn steer_status_name(status: i32) -> *const c_char {
    const UNKNOWN: &str = "STEER_STATUS_UNKNOWN\0";
    guard(UNKNOWN.as_ptr().cast(), || {
        steer_status::from_code(status).map_or(UNKNOWN, steer_status::c_name).as_ptr().cast()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_value_once_in_order() {
        let values: Vec<i32> = steer_status::all().iter().map(|s| *s as i32).collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
        for &status in steer_status::all() {
            assert_eq!(steer_status::from_code(status as i32), Some(status));
            assert!(status.name().starts_with("STEER_STATUS_"));
            assert!(status.c_name().ends_with('\0') && !status.name().contains('\0'));
        }
        assert_eq!(steer_status::from_code(1), None);
    }
}
