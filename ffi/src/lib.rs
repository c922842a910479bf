//! `libsteer`: the C ABI of Steer, over [`steer_runtime`].
//!
//! A C or C++ program links `libsteer.so` or `libsteer.a`, includes `steer.h` (generated from this crate by
//! cbindgen, committed as `include/steer.h`), loads a bundle, turns a user's choices into a profile and scores
//! options for that user:
//!
//! ```c
//! steer_model *model = NULL;
//! if (steer_model_load("out/demo/bundles/np-btl", NULL, &model) != STEER_STATUS_OK) {
//!     fprintf(stderr, "%s\n", steer_last_error_message());
//!     return 1;
//! }
//! const float chosen[] = {0.48f, 0.35f, 0.52f}, rejected[] = {0.91f, 0.77f, 0.63f};
//! steer_profile *user = NULL;
//! steer_model_infer_profile(model, chosen, rejected, 3, 1, &user); // k = 3 pairs of d = 1 floats
//! const float a[] = {0.55f}, b[] = {0.95f};
//! float p;
//! steer_model_preference(model, user, a, b, 1, &p); // p(0.55 preferred over 0.95) for this user
//! steer_profile_free(user);
//! steer_model_free(model);
//! ```
//!
//! # Conventions
//!
//! These hold for every function; each function's documentation only adds what is particular to it.
//!
//! - **Names.** Every symbol starts with `steer_` (macros and enum values with `STEER_`). Objects are opaque
//!   handles, `steer_<object>`, and functions are `steer_<object>_<verb>`.
//! - **Status.** A function that can fail returns a [`steer_status`]: `STEER_STATUS_OK` (0) on success, otherwise a
//!   non-zero code. Codes have explicit values that never change and are never reused: 1xx the bundle, 2xx ONNX
//!   Runtime and execution providers, 3xx the values passed in, 4xx the use of the C ABI itself (a NULL argument,
//!   invalid UTF-8, a buffer too small, an invalid argument, a panic), 9xx internal failures. The 1xx–3xx and 9xx
//!   codes are `steer_runtime::Error::code()` values.
//! - **Messages.** After a failure, [`steer_last_error_message`] describes it: what was wrong and what was expected.
//!   The message is thread-local; it is the empty string after a call that succeeded. The pointer stays valid until
//!   the next call on the same thread of a function that returns a `steer_status`.
//! - **Out-parameters** (`out_*`) are written only on success. On failure they keep whatever they held.
//! - **Ownership.** A handle returned through `steer_*_new`, `steer_model_load`, `steer_model_infer_profile*` or
//!   `steer_model_generate*` is owned by the caller and released with the matching `steer_*_free`;
//!   `steer_*_free(NULL)` does nothing. Everything the caller passes in (strings, float arrays, handles) is
//!   borrowed for the duration of the call only; nothing keeps a pointer to it afterwards. Strings returned as `const char *` are owned by the library; the
//!   documentation of each says how long it lives.
//! - **Arrays** are `float` (`f32`), row-major and contiguous, with their shape passed beside them, e.g.
//!   `options` of `n × d` floats. A pointer to an array may be NULL only when the array has no elements. Output
//!   buffers are provided by the caller. Where their size follows from the arguments (`n` rewards for `n` options)
//!   it is not passed again; where it depends on the model (a profile's `latent_dim`) the caller passes the
//!   buffer's capacity and gets `STEER_STATUS_BUFFER_TOO_SMALL` if it is not enough.
//! - **NULL** handles and required pointers are rejected with `STEER_STATUS_NULL_ARGUMENT`, never dereferenced.
//! - **Strings** passed in are NUL-terminated UTF-8; anything else is `STEER_STATUS_INVALID_UTF8`. Texts are passed
//!   as arrays of strings (`const char *const *responses`, `n` of them); the array may be NULL only when empty, and
//!   no string in it may be NULL. A message about one string names its index, e.g. `responses[2]`.
//! - **Threads.** A `steer_model` may be shared by any number of threads: all functions that take a
//!   `const steer_model *` are thread-safe (ONNX Runtime sessions are pooled; see
//!   `steer_options_set_session_pool_size`). A `steer_profile` is immutable and may be read from many threads. A
//!   `steer_options` must not be changed by one thread while another uses it. No handle may be freed while another
//!   thread uses it.
//! - **Panics.** Every function runs inside one panic boundary (`boundary.rs`): a bug inside the library returns
//!   `STEER_STATUS_PANIC` with a message instead of unwinding into C; functions that return a value instead of a
//!   status return their documented fallback.
//! - **Versions.** [`steer_version`] is the library's version string; [`steer_abi_version`] returns the ABI version
//!   the library was built with, which a program compares with the header's [`STEER_ABI_VERSION`]. The ABI only
//!   grows: functions are added, and no existing signature changes.
//!
//! # Generation
//!
//! On bundles with a steerable policy (`steer_model_has_policy`), `steer_model_generate` writes replies to several
//! prompts, each steered by its own user's profile, in one batch:
//!
//! ```c
//! steer_generation_params params;
//! steer_generation_params_default(model, &params); // the bundle's defaults
//! params.temperature = 0.0f;                       // greedy
//! const char *prompts[] = {"How do I boil an egg?", "How do I boil an egg?"};
//! const steer_profile *users[] = {user_a, user_b};
//! steer_generation *out = NULL;
//! if (steer_model_generate(model, prompts, users, 2, &params, on_token, &state, &out) == STEER_STATUS_OK) {
//!     const char *text;
//!     size_t len;
//!     steer_generation_text(out, 1, &text, &len); // user B's reply, valid until steer_generation_free
//!     steer_generation_free(out);
//! }
//! ```
//!
//! The optional [`steer_token_callback`] `bool (*)(void *user_data, size_t row, uint32_t token_id, const char
//! *text_delta, size_t len)` streams every token's text as it is sampled (borrowed for the duration of the
//! callback) and returns `false` to cancel. `steer_model_generate_best_of_n` samples `n` replies and reranks them
//! with the bundle's reward for the same profile. Parameters out of range are `STEER_STATUS_INVALID_GENERATION_PARAM`
//! (308), a prompt that does not fit the context window `STEER_STATUS_PROMPT_TOO_LONG` (309), a bundle without a
//! policy `STEER_STATUS_NO_POLICY` (310).
//!
//! # How the API grows
//!
//! Profiles and results are opaque handles and options are set one at a time, so new capabilities are new
//! functions beside the existing ones. Profiles from text,
//! `steer_model_infer_profile_text(model, prompts, chosen, rejected, k, &profile)`, return the same
//! `steer_profile`, and scoring text (`steer_model_score_text`) takes a `const char *const *responses` array and
//! fills the same `out_rewards` buffer, on bundles with a text embedder (`steer_model_has_text`). The one plain
//! struct, [`steer_generation_params`], is passed by pointer and its layout is part of the ABI: it never changes;
//! new generation settings would come with a new struct and new functions.
//!
//! # Finding ONNX Runtime
//!
//! libsteer loads ONNX Runtime at run time, on the first `steer_model_load` of the process, from the first of:
//! [`steer_options_set_ort_library`], the `ORT_DYLIB_PATH` variable, the project cache
//! (`$STEER_CACHE_DIR/onnxruntime/libonnxruntime.so` when `STEER_CACHE_DIR` is set; otherwise
//! `.cache/onnxruntime/` above the current directory, above the executable, or in the workspace libsteer was built
//! in). See `steer_runtime::ort_env`.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
// The exported names are the C names (`steer_model`, `steer_status`), so the header and the Rust code agree.
#![allow(non_camel_case_types)]

// The modules are in the order their items appear in steer.h (cbindgen keeps the parse order).
mod version;

mod status;

mod last_error;

mod options;

mod model;

mod profile;

mod infer;

mod score;

mod text;

mod generate;

// Helpers without exports.
mod args;
mod boundary;

pub use generate::{
    steer_finish_reason, steer_finish_reason_name, steer_generation, steer_generation_count,
    steer_generation_finish_reason, steer_generation_free, steer_generation_params, steer_generation_params_default,
    steer_generation_prompt_tokens, steer_generation_text, steer_generation_token_count, steer_generation_tokens,
    steer_model_generate, steer_model_generate_best_of_n, steer_model_has_policy, steer_token_callback,
};
pub use infer::{
    steer_model_infer_profile, steer_model_infer_profile_batch, steer_model_infer_profile_batch_padded,
    steer_model_infer_profiles, steer_model_infer_profiles_padded,
};
pub use last_error::steer_last_error_message;
pub use model::{
    steer_kind, steer_kind_name, steer_model, steer_model_embedding_dim, steer_model_execution_provider,
    steer_model_execution_provider_count, steer_model_free, steer_model_has_text, steer_model_kind,
    steer_model_latent_dim, steer_model_load, steer_model_provider_fallback, steer_model_provider_fallback_count,
};
pub use options::{
    steer_execution_provider, steer_options, steer_options_add_execution_provider,
    steer_options_clear_execution_providers, steer_options_free, steer_options_new,
    steer_options_set_allow_cpu_fallback, steer_options_set_intra_op_threads, steer_options_set_ort_library,
    steer_options_set_session_pool_size,
};
pub use profile::{steer_profile, steer_profile_free, steer_profile_latent_dim, steer_profile_new, steer_profile_read};
pub use score::{
    steer_model_preference, steer_model_preference_batch, steer_model_preference_profile_batch, steer_model_score,
    steer_model_score_batch, steer_model_score_profile_batch,
};
pub use status::{steer_status, steer_status_name};
pub use text::{
    steer_model_infer_profile_batch_text, steer_model_infer_profile_text, steer_model_infer_profiles_text,
    steer_model_score_text, steer_model_score_text_batch, steer_model_score_text_profile_batch,
};
pub use version::{STEER_ABI_VERSION, steer_abi_version, steer_version};
