//! [`Status`]: the stable code of every outcome, defined once by the table in this file, for Rust
//! ([`Error::status`](crate::Error::status), [`Error::code`](crate::Error::code)) and for the C ABI (whose
//! `steer_status` is this enum).
//!
//! Each row of the table is one status: its meaning (the doc comment), its name and its value; the C name is
//! `STEER_STATUS_` and the name in SCREAMING_SNAKE_CASE. `status_table!` declares from it the enum, the value
//! and name lookups, and the Markdown of `docs/status-codes.md`. cbindgen does not expand macros, so the macro also
//! keeps the enum's C declaration as source text ([`Status::DECLARATION`]), and `ffi/tests/header.rs` has cbindgen
//! read that to write the C enum of `include/steer.h`. A status that is no longer returned moves to the table's
//! `retired` list, so that its value is never given to another status (checked at compile time).

use std::ffi::CStr;

/// Declares [`Status`] and what is derived from its table (see the module doc); used once, just below.
macro_rules! status_table {
    (
        $(#[doc = $doc:literal])*
        pub enum Status {
            $( $(#[doc = $status_doc:literal])+ $status:ident = $value:literal, )+
        }
        retired {
            $( $(#[doc = $retired_doc:literal])+ $retired:ident = $retired_value:literal, )*
        }
    ) => {
        $(#[doc = $doc])*
        #[repr(i32)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Status {
            $( $(#[doc = $status_doc])+ $status = $value, )+
        }

        /// The doc comment of the enum, one line per doc line.
        const DOC: &str = concat!($($doc, "\n"),*);

        /// Every status, in the order of their values.
        static ALL: &[Status] = &[$(Status::$status),+];

        /// Every status's row of the table, in the order of their values.
        const ROWS: &[Row] = &[$(
            Row { value: $value, name: stringify!($status), doc: concat!($($status_doc, "\n"),+) }
        ),+];

        /// The retired values, each with the name and meaning it had.
        const RETIRED: &[Row] = &[$(
            Row { value: $retired_value, name: stringify!($retired), doc: concat!($($retired_doc, "\n"),+) }
        ),*];

        // The table lists each value once and in order, and never gives a retired value to a status.
        const _: () = assert!(
            well_formed(ROWS, RETIRED),
            "status values must increase down the table and its retired list, and a retired value must not be reused"
        );

        impl Status {
            /// The Rust source of this enum's declaration under its C name `steer_status`, with its values and doc
            /// comments. cbindgen reads it to write the C enum in `steer.h`, as it does not expand the macro that
            /// declares the enum.
            pub const DECLARATION: &str = stringify!(
                $(#[doc = $doc])*
                #[repr(i32)]
                pub enum steer_status {
                    $( $(#[doc = $status_doc])+ $status = $value, )+
                }
            );

            /// The status with this numeric value, if there is one (a retired value has none).
            pub fn from_code(code: i32) -> Option<Status> {
                match code {
                    $( $value => Some(Status::$status), )+
                    _ => None,
                }
            }

            /// The C name, NUL-terminated in static memory.
            fn c_name(self) -> &'static CName {
                match self {
                    $( Status::$status => {
                        const NAME: CName = CName::of(stringify!($status));
                        &NAME
                    } )+
                }
            }
        }
    };
}

status_table! {
    /// The result of a call: `STEER_STATUS_OK` (0) or the reason it failed; `steer_last_error_message()` has the
    /// details.
    ///
    /// Values are explicit, never change and are never reused. 1xx: the bundle; 2xx: ONNX Runtime and execution
    /// providers; 3xx: the values passed in; 4xx: the use of the C ABI; 9xx: internal failures. The 1xx-3xx and 9xx
    /// values are the runtime's `Error::code()` values. Treat any value you do not know as a failure: a newer library
    /// may add codes.
    pub enum Status {
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
    retired {
        // A status that is no longer returned moves here, with its doc, name and value; the value stays reserved.
    }
}

impl Status {
    /// Every status, in the order of their values.
    pub fn all() -> &'static [Status] {
        ALL
    }

    /// The stable numeric value (`Status::ShapeMismatch.code()` is 301).
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The C name of the status, e.g. `STEER_STATUS_NULL_ARGUMENT`.
    pub fn name(self) -> &'static str {
        self.c_name().as_str()
    }

    /// The C name as a NUL-terminated string in static memory, for the C ABI's `Status_name`.
    pub fn name_c_str(self) -> &'static CStr {
        self.c_name().as_c_str()
    }

    /// The page `docs/status-codes.md`: the enum's doc, then the value, C name and meaning of every status, then
    /// the retired values. `ffi/tests/header.rs` checks that the committed page is this.
    pub fn markdown() -> String {
        let mut page = String::from(
            "# Status codes\n\n\
             <!-- Generated from the table in runtime/src/status.rs by `make header`; do not edit by hand. -->\n\n",
        );
        for line in DOC.lines() {
            page.push_str(line.strip_prefix(' ').unwrap_or(line));
            page.push('\n');
        }
        page.push_str("\n| value | C name | meaning |\n|---|---|---|\n");
        ROWS.iter().for_each(|row| page.push_str(&row.markdown()));
        page.push_str(
            "\n## Retired values\n\n\
             These values are no longer returned. They stay reserved: no other status will ever have them.\n\n",
        );
        if RETIRED.is_empty() {
            page.push_str("None so far.\n");
        } else {
            page.push_str("| value | C name | meaning |\n|---|---|---|\n");
            RETIRED.iter().for_each(|row| page.push_str(&row.markdown()));
        }
        page
    }
}

/// One row of the table: a status's value, its name in the enum and its doc comment.
struct Row {
    value: i32,
    name: &'static str,
    doc: &'static str,
}

impl Row {
    /// The row as a line of a Markdown table: value, C name and the doc comment joined into one line.
    fn markdown(&self) -> String {
        let meaning: Vec<&str> = self.doc.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
        let name = CName::of(self.name);
        format!("| {} | `{}` | {} |\n", self.value, name.as_str(), meaning.join(" ").replace('|', "\\|"))
    }
}

/// Whether the table lists each value once and in order, gives no retired value to a status, and every C name fits.
const fn well_formed(statuses: &[Row], retired: &[Row]) -> bool {
    increasing(statuses)
        && increasing(retired)
        && disjoint(statuses, retired)
        && names_fit(statuses)
        && names_fit(retired)
}

/// Whether the values increase down the list (so each appears once).
const fn increasing(rows: &[Row]) -> bool {
    let mut i = 1;
    while i < rows.len() {
        if rows[i - 1].value >= rows[i].value {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether no value is in both lists.
const fn disjoint(a: &[Row], b: &[Row]) -> bool {
    let mut i = 0;
    while i < a.len() {
        let mut j = 0;
        while j < b.len() {
            if a[i].value == b[j].value {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

/// Whether every C name fits its buffer with the NUL terminator.
const fn names_fit(rows: &[Row]) -> bool {
    let mut i = 0;
    while i < rows.len() {
        if !CName::of(rows[i].name).complete {
            return false;
        }
        i += 1;
    }
    true
}

/// Room for the longest C name and its NUL terminator.
const NAME_CAPACITY: usize = 64;

/// A status's C name, built at compile time in a zeroed buffer, so that it is also a NUL-terminated C string.
struct CName {
    bytes: [u8; NAME_CAPACITY],
    len: usize,
    /// Whether the whole name fitted, with room left for the NUL.
    complete: bool,
}

impl CName {
    /// `STEER_STATUS_` and `name` in SCREAMING_SNAKE_CASE: the name cbindgen gives the enumerator
    /// (`rename_variants = "ScreamingSnakeCase"` and `prefix_with_name` in `ffi/cbindgen.toml`).
    const fn of(name: &str) -> CName {
        let (mut bytes, mut len) = ([0; NAME_CAPACITY], 0);
        let prefix = b"STEER_STATUS_";
        while len < prefix.len() {
            bytes[len] = prefix[len];
            len += 1;
        }
        let name = name.as_bytes();
        let mut i = 0;
        // Leaves room for an underscore, the letter and the NUL; `well_formed` checks that the whole name fitted.
        while i < name.len() && len + 2 < NAME_CAPACITY {
            // A word starts at a capital after a small letter or a digit: `InvalidUtf8` is `INVALID_UTF8`.
            if i > 0 && name[i].is_ascii_uppercase() && !name[i - 1].is_ascii_uppercase() {
                bytes[len] = b'_';
                len += 1;
            }
            bytes[len] = name[i].to_ascii_uppercase();
            len += 1;
            i += 1;
        }
        CName { bytes, len, complete: i == name.len() }
    }

    /// The name without its NUL terminator.
    fn as_str(&self) -> &str {
        // Always ASCII: a prefix and an identifier.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("STEER_STATUS_UNKNOWN")
    }

    /// The name as a NUL-terminated C string (the buffer is zeroed past the name, and `well_formed` checks that a
    /// NUL fits).
    fn as_c_str(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.bytes).unwrap_or(c"STEER_STATUS_UNKNOWN")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_is_found_by_its_value_and_named_by_its_variant() {
        assert_eq!(Status::all().len(), ROWS.len());
        for (&status, row) in Status::all().iter().zip(ROWS) {
            assert_eq!((status as i32, format!("{status:?}")), (row.value, row.name.to_string()));
            assert_eq!(Status::from_code(row.value), Some(status));
        }
        assert_eq!(Status::NullArgument.name(), "STEER_STATUS_NULL_ARGUMENT");
        assert_eq!(Status::InvalidUtf8.name(), "STEER_STATUS_INVALID_UTF8");
        assert_eq!(Status::OrtNotOnnxRuntime.name(), "STEER_STATUS_ORT_NOT_ONNX_RUNTIME");
        for unknown in [i32::MIN, -1, 1, 99, 110, 312, 404, 500, 901, i32::MAX] {
            assert_eq!(Status::from_code(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn c_names_are_nul_terminated_and_too_long_ones_are_refused() {
        for &status in Status::all() {
            let name = status.c_name();
            assert_eq!(name.bytes[name.len], 0, "{status:?}");
            assert!(name.complete && !name.as_str().contains('\0'));
        }
        let long: &'static str = "A".repeat(NAME_CAPACITY).leak();
        assert!(!CName::of(long).complete);
        assert!(!names_fit(&[Row { value: 1, name: long, doc: "" }]));
    }

    #[test]
    fn the_table_check_refuses_a_reused_retired_value_and_values_out_of_order() {
        let row = |value| Row { value, name: "Name", doc: "" };
        assert!(well_formed(&[row(0), row(100)], &[row(101)]));
        assert!(!well_formed(&[row(0), row(100)], &[row(100)]), "a retired value reused");
        assert!(!well_formed(&[row(100), row(0)], &[]), "out of order");
        assert!(!well_formed(&[row(0), row(0)], &[]), "listed twice");
        assert!(!well_formed(&[row(0)], &[row(7), row(5)]), "retired out of order");
    }

    #[test]
    fn the_markdown_has_a_row_per_status() {
        let page = Status::markdown();
        assert!(page.contains("| 0 | `STEER_STATUS_OK` | The call succeeded. |\n"), "{page}");
        let rows = page.lines().filter(|line| line.starts_with("| ") && !line.starts_with("| value")).count();
        assert_eq!(rows, Status::all().len() + RETIRED.len());
    }
}
