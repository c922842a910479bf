//! Text generation with the bundle's steerable policy: the generation parameters, batched generation with an
//! optional streaming callback, best-of-n, and the `steer_generation` result (see `steer_runtime::generate` for the
//! sampling rule, when a row ends and what is streamed).

use std::collections::HashMap;
use std::ffi::{CString, c_char, c_void};
use std::ops::ControlFlow;
use std::sync::{Mutex, OnceLock, PoisonError};

use steer_runtime::{FinishReason, Generation, GenerationParams, GenerationRequest, Model, Profile};

use crate::args::{Out, OutFloats, handle, slice, utf8, utf8_array};
use crate::boundary::{Failure, call, guard};
use crate::model::{model, steer_model};
use crate::profile::{PROFILE, profile, steer_profile};
use crate::status::steer_status;

/// How text is generated: the sampling parameters and the stop strings. A plain struct the caller owns; fill it
/// with `steer_generation_params_default` (the bundle's defaults) and change what you need.
///
/// The fields mean what they mean in `steer_runtime::GenerationParams`. Each row samples its next token from the
/// logits after the repetition penalty; `temperature` 0 is greedy (argmax), otherwise the `top_k` most likely
/// tokens (0 keeps all) are cut to the nucleus of mass `top_p` and one is drawn with a generator seeded by
/// `seed + row`. Out of range (`temperature` < 0 or not finite, `top_p` outside (0, 1], `repetition_penalty` ≤ 0
/// or not finite, `max_new_tokens` 0, an empty stop string): `STEER_STATUS_INVALID_GENERATION_PARAM`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct steer_generation_params {
    /// The most tokens generated per row (EOS and stop strings end a row earlier); at least 1.
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 means greedy. Finite and ≥ 0.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens before sampling; 0 keeps all.
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p`; in (0, 1].
    pub top_p: f32,
    /// Divides positive logits (multiplies negative ones) of tokens already in the row, prompt included; 1 is
    /// off. Finite and > 0.
    pub repetition_penalty: f32,
    /// Seed of the sampler: the same seed, prompt and profile give the same text; row `i` uses `seed + i`.
    pub seed: u64,
    /// `n_stop` NUL-terminated, non-empty UTF-8 strings; a row ends when its text contains one of them, and its
    /// text is cut before it. May be NULL when `n_stop` is 0. Borrowed for the duration of the call that takes
    /// the parameters.
    pub stop: *const *const c_char,
    /// The number of strings in `stop`.
    pub n_stop: usize,
}

/// Why a row stopped generating.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum steer_finish_reason {
    /// The policy produced an end-of-sequence token (not part of the text or the tokens).
    Eos = 0,
    /// The text reached a stop string; the text is cut before it.
    Stop = 1,
    /// `max_new_tokens` tokens were generated.
    Length = 2,
    /// The streaming callback returned `false`.
    Cancelled = 3,
}

impl steer_finish_reason {
    /// The C value of a finish reason; one this C ABI has no value for yet is `STEER_STATUS_UNKNOWN_ERROR`.
    fn of(finish: FinishReason) -> Result<steer_finish_reason, Failure> {
        match finish {
            FinishReason::Eos => Ok(steer_finish_reason::Eos),
            FinishReason::Stop => Ok(steer_finish_reason::Stop),
            FinishReason::Length => Ok(steer_finish_reason::Length),
            FinishReason::Cancelled => Ok(steer_finish_reason::Cancelled),
            other => Err(Failure::new(steer_status::UnknownError, format!("finish reason {other:?} has no C value"))),
        }
    }
}

/// Called once for every token a row samples (EOS included), on the thread that called `steer_model_generate`,
/// before that call returns.
///
/// `row` is the index of the prompt the token belongs to and `token_id` the sampled token. `text_delta` points to
/// the `len` bytes of UTF-8 the row's text gained with this token, followed by a NUL; it may be empty while text is
/// held back (a character split across tokens, or what may be the start of a stop string). It is borrowed: it is
/// valid only until the callback returns. For rows that end by EOS, a stop string or the length limit the deltas
/// concatenate to the row's final text.
///
/// Return `true` to continue, `false` to stop: every row still running then ends with
/// `STEER_FINISH_REASON_CANCELLED`, and the call returns what was generated so far (text held back is in the
/// result, not streamed). The callback may call other libsteer functions, but must not free the model or the
/// profiles in use.
pub type steer_token_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        row: usize,
        token_id: u32,
        text_delta: *const c_char,
        len: usize,
    ) -> bool,
>;

/// One row of a result: the runtime's reply and its text with a NUL after it.
struct Row {
    generation: Generation,
    /// `generation.text` followed by a NUL byte.
    text: Vec<u8>,
}

/// The result of a generation call: one reply per prompt (or per candidate of best-of-n), in order. An opaque
/// handle created by `steer_model_generate` or `steer_model_generate_best_of_n` and released by
/// `steer_generation_free`.
///
/// Immutable and independent of the model (it may outlive it). Thread-safe to read from many threads; it must not
/// be freed while another thread reads it.
pub struct steer_generation {
    rows: Vec<Row>,
}

const GENERATION: &str = "a steer_generation from steer_model_generate or steer_model_generate_best_of_n";

impl steer_generation {
    fn new(generations: Vec<Generation>) -> steer_generation {
        let rows = generations
            .into_iter()
            .map(|generation| {
                let mut text = Vec::with_capacity(generation.text.len() + 1);
                text.extend_from_slice(generation.text.as_bytes());
                text.push(0);
                Row { generation, text }
            })
            .collect();
        steer_generation { rows }
    }
}

/// Borrows row `row` of a result.
///
/// # Safety
/// `generation` is NULL or a live handle.
unsafe fn row<'a>(generation: *const steer_generation, row: usize) -> Result<&'a Row, Failure> {
    // SAFETY: forwarded contract.
    let generation = unsafe { handle(generation, "generation", GENERATION) }?;
    generation.rows.get(row).ok_or_else(|| {
        Failure::invalid(
            "row",
            format_args!("is {row}, but the result has {} rows; expected an index below that", generation.rows.len()),
        )
    })
}

/// The runtime's parameters from the caller's struct; NULL is the bundle's defaults.
///
/// # Safety
/// `params` is NULL or points to a struct whose `stop` is NULL or points to `n_stop` pointers, each NULL or to a
/// NUL-terminated string.
unsafe fn params_of(model: &Model, params: *const steer_generation_params) -> Result<GenerationParams, Failure> {
    if params.is_null() {
        return defaults(model).cloned();
    }
    // SAFETY: forwarded contract.
    let params = unsafe { handle(params, "params", "a steer_generation_params") }?;
    // SAFETY: forwarded contract.
    let stop = unsafe { utf8_array(params.stop, params.n_stop, "stop", "a non-empty stop string") }?;
    Ok(GenerationParams {
        max_new_tokens: params.max_new_tokens,
        temperature: params.temperature,
        top_k: params.top_k,
        top_p: params.top_p,
        repetition_penalty: params.repetition_penalty,
        seed: params.seed,
        stop: stop.into_iter().map(String::from).collect(),
    })
}

/// The bundle's generation defaults, or `NoPolicy` (310).
fn defaults(model: &Model) -> Result<&GenerationParams, Failure> {
    model
        .policy()
        .map(|policy| &policy.spec().defaults)
        .ok_or_else(|| Failure::from(steer_runtime::Error::NoPolicy { kind: model.kind().to_string() }))
}

/// NUL-terminated copies of a list of stop strings and the array of pointers to them.
struct StopStrings {
    _strings: Vec<CString>,
    pointers: Vec<*const c_char>,
}

// SAFETY: the pointers point into `_strings`, which is never changed or dropped once in the table below.
unsafe impl Send for StopStrings {}

/// The stop strings of every bundle's defaults handed to C so far, each list once; they live until the process
/// ends, so the pointers in a `steer_generation_params` filled by `steer_generation_params_default` never dangle.
fn interned_stop_strings(stop: &[String]) -> Result<(*const *const c_char, usize), Failure> {
    static TABLE: OnceLock<Mutex<HashMap<Vec<String>, Box<StopStrings>>>> = OnceLock::new();
    if stop.is_empty() {
        return Ok((std::ptr::null(), 0));
    }
    let mut table = TABLE.get_or_init(Mutex::default).lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(entry) = table.get(stop) {
        return Ok((entry.pointers.as_ptr(), entry.pointers.len()));
    }
    let strings = stop
        .iter()
        .enumerate()
        .map(|(i, s)| {
            CString::new(s.as_str()).map_err(|_| {
                Failure::invalid(
                    "model",
                    format_args!("has a default stop string {i} with a NUL byte, which C cannot hold"),
                )
            })
        })
        .collect::<Result<Vec<CString>, Failure>>()?;
    let pointers = strings.iter().map(|s| s.as_ptr()).collect();
    let entry = Box::new(StopStrings { _strings: strings, pointers });
    let result = (entry.pointers.as_ptr(), entry.pointers.len());
    table.insert(stop.to_vec(), entry);
    Ok(result)
}

/// Writes whether the bundle has a steerable policy to `*out_has_policy`: `true` when its manifest has a `policy`,
/// so that `steer_model_generate` and `steer_model_generate_best_of_n` work; on a bundle without one they fail with
/// `STEER_STATUS_NO_POLICY`.
///
/// `model` or `out_has_policy` NULL: `STEER_STATUS_NULL_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`; `out_has_policy` is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_model_has_policy(model: *const steer_model, out_has_policy: *mut bool) -> steer_status {
    call("steer_model_has_policy", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        unsafe { Out::new(out_has_policy, "out_has_policy") }?.write(model.policy().is_some());
        Ok(())
    })
}

/// Fills `*out_params` with the generation defaults stored in the bundle (its policy's `defaults`).
///
/// `out_params->stop` then points to `n_stop` NUL-terminated strings owned by the library; they stay valid until
/// the process ends (they outlive the model), and must not be freed or written. Point `stop` to your own array to
/// use other stop strings.
///
/// The bundle has no policy: `STEER_STATUS_NO_POLICY`; `model` or `out_params` NULL: `STEER_STATUS_NULL_ARGUMENT`; a
/// default stop string that holds a NUL byte (C cannot represent it): `STEER_STATUS_INVALID_ARGUMENT`. On failure
/// `*out_params` is not written. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`; `out_params` is NULL or valid for writing a
/// `steer_generation_params`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_generation_params_default(
    model: *const steer_model,
    out_params: *mut steer_generation_params,
) -> steer_status {
    call("steer_generation_params_default", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let out = unsafe { Out::new(out_params, "out_params") }?;
        let defaults = defaults(model)?;
        let (stop, n_stop) = interned_stop_strings(&defaults.stop)?;
        out.write(steer_generation_params {
            max_new_tokens: defaults.max_new_tokens,
            temperature: defaults.temperature,
            top_k: defaults.top_k,
            top_p: defaults.top_p,
            repetition_penalty: defaults.repetition_penalty,
            seed: defaults.seed,
            stop,
            n_stop,
        });
        Ok(())
    })
}

/// Generates one reply per prompt with the bundle's policy, row `i` replying to `prompts[i]` for the user with
/// `profiles[i]`, all `n` rows in one batch, and writes the result to `*out_generation` (read it with
/// `steer_generation_text` and the other `steer_generation_*` functions; the caller owns it and releases it with
/// `steer_generation_free`).
///
/// `prompts` is an array of `n` NUL-terminated UTF-8 strings (the bundle's chat template is applied to each) and
/// `profiles` an array of `n` profiles with the model's `latent_dim` (the same profile may appear in several rows).
/// `params` NULL means the bundle's defaults (`steer_generation_params_default`). `callback`, if not NULL, is
/// called for every sampled token with `user_data` (see `steer_token_callback`); returning `false` cancels every
/// running row. The same seed, prompt and profile give the same text whatever else is in the batch.
///
/// The bundle has no policy: `STEER_STATUS_NO_POLICY`; a parameter out of range or `max_new_tokens` 0:
/// `STEER_STATUS_INVALID_GENERATION_PARAM` (the message names it); a prompt that, with its chat template and
/// `max_new_tokens`, exceeds the policy's context window: `STEER_STATUS_PROMPT_TOO_LONG`; `n` 0:
/// `STEER_STATUS_EMPTY_INPUT`; a profile of another length: `STEER_STATUS_PROFILE_LENGTH`; `model` or
/// `out_generation` NULL, `prompts` or `profiles` NULL with `n > 0`, a NULL prompt, profile or stop string, or
/// `params->stop` NULL with `n_stop > 0`: `STEER_STATUS_NULL_ARGUMENT`; a prompt or stop string that is not UTF-8:
/// `STEER_STATUS_INVALID_UTF8` (the message names it, e.g. `prompts[1]` or `stop[0]`). On failure
/// `*out_generation` is not written (a failure after some tokens were streamed returns no partial result).
/// Thread-safe: several threads may generate with one model at once.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`; `prompts` is NULL or points to `n` pointers, each NULL
/// or to a NUL-terminated string; `profiles` is NULL or points to `n` pointers, each NULL or a live profile handle;
/// `params` is NULL or points to a `steer_generation_params` whose `stop` is NULL or points to `n_stop` pointers,
/// each NULL or to a NUL-terminated string; `callback` is NULL or a function that may be called with `user_data`;
/// `out_generation` is NULL or valid for writing a pointer.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn steer_model_generate(
    model: *const steer_model,
    prompts: *const *const c_char,
    profiles: *const *const steer_profile,
    n: usize,
    params: *const steer_generation_params,
    callback: steer_token_callback,
    user_data: *mut c_void,
    out_generation: *mut *mut steer_generation,
) -> steer_status {
    call("steer_model_generate", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let prompts = unsafe { utf8_array(prompts, n, "prompts", "the prompt of each row") }?;
        let handles = unsafe { slice(profiles, n, "profiles", "const steer_profile *") }?;
        let profiles = handles
            .iter()
            .enumerate()
            // SAFETY: each element is NULL or a live handle (the caller's contract).
            .map(|(i, &p)| unsafe { handle(p, &format!("profiles[{i}]"), PROFILE) }.map(|p| &p.profile))
            .collect::<Result<Vec<&Profile>, Failure>>()?;
        let params = unsafe { params_of(model, params) }?;
        let out = unsafe { Out::new(out_generation, "out_generation") }?;
        let requests: Vec<GenerationRequest<'_>> =
            prompts.iter().zip(&profiles).map(|(prompt, profile)| GenerationRequest::new(prompt, profile)).collect();
        let generations = match callback {
            None => model.generate(&requests, &params)?,
            Some(callback) => {
                // The delta with a NUL after it, reused for every token.
                let mut delta = Vec::new();
                model.generate_stream(&requests, &params, &mut |event| {
                    delta.clear();
                    delta.extend_from_slice(event.text.as_bytes());
                    delta.push(0);
                    // SAFETY: the caller's contract for `callback` and `user_data`; `delta` holds `len` bytes and a
                    // NUL and lives until the callback returns.
                    let go_on = unsafe {
                        callback(user_data, event.row, event.token_id, delta.as_ptr().cast(), event.text.len())
                    };
                    if go_on { ControlFlow::Continue(()) } else { ControlFlow::Break(()) }
                })?
            }
        };
        out.write(Box::into_raw(Box::new(steer_generation::new(generations))));
        Ok(())
    })
}

/// Best-of-n: samples `n` replies to `prompt` for the user with `profile` in one batch (candidate `i` uses seed
/// `params->seed + i`), scores each with the bundle's own reward for the same profile (as `steer_model_score_text`
/// does), writes the candidates to `*out_generation` (row `i` is candidate `i`; the caller owns it and releases it
/// with `steer_generation_free`), the index of the highest reward (the first on a tie) to `*out_best` and, if
/// `out_rewards` is not NULL, the `n` rewards to `out_rewards`.
///
/// `params` NULL means the bundle's defaults; with temperature 0 every candidate is the same greedy reply. The bundle
/// has no policy: `STEER_STATUS_NO_POLICY`; `n` 0 or a parameter out of range: `STEER_STATUS_INVALID_GENERATION_PARAM`;
/// a prompt too long for the context window: `STEER_STATUS_PROMPT_TOO_LONG`; a profile of another length:
/// `STEER_STATUS_PROFILE_LENGTH`; no text embedder to score with: `STEER_STATUS_NO_TEXT_EMBEDDER`; `model`,
/// `prompt`, `profile`, `out_generation` or `out_best` NULL, or a NULL stop string: `STEER_STATUS_NULL_ARGUMENT`;
/// `prompt` or a stop string not UTF-8: `STEER_STATUS_INVALID_UTF8`. On failure nothing is written. Thread-safe.
///
/// # Safety
/// `model` and `profile` are NULL or live handles; `prompt` is NULL or a NUL-terminated string; `params` is as for
/// `steer_model_generate`; `out_generation` is NULL or valid for writing a pointer, `out_best` for writing a
/// `size_t`, and `out_rewards` NULL or valid for writing `n` floats.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn steer_model_generate_best_of_n(
    model: *const steer_model,
    prompt: *const c_char,
    profile: *const steer_profile,
    n: usize,
    params: *const steer_generation_params,
    out_generation: *mut *mut steer_generation,
    out_best: *mut usize,
    out_rewards: *mut f32,
) -> steer_status {
    call("steer_model_generate_best_of_n", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let prompt = unsafe { utf8(prompt, "prompt", "the prompt to reply to") }?;
        let profile = unsafe { self::profile(profile) }?;
        let params = unsafe { params_of(model, params) }?;
        let out = unsafe { Out::new(out_generation, "out_generation") }?;
        let best_out = unsafe { Out::new(out_best, "out_best") }?;
        let rewards = unsafe { OutFloats::optional(out_rewards, n, "out_rewards") }?;
        let best = model.generate_best_of_n(prompt, profile, n, &params)?;
        if let Some(rewards) = rewards {
            rewards.write(&best.rewards);
        }
        best_out.write(best.best);
        out.write(Box::into_raw(Box::new(steer_generation::new(best.candidates))));
        Ok(())
    })
}

/// Writes the number of rows of a result to `*out_count`: the number of prompts, or of best-of-n candidates.
///
/// `generation` or `out_count` NULL: `STEER_STATUS_NULL_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `generation` is NULL or a live handle; `out_count` is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_generation_count(
    generation: *const steer_generation,
    out_count: *mut usize,
) -> steer_status {
    call("steer_generation_count", || {
        // SAFETY: the caller's contract, for each argument.
        let generation = unsafe { handle(generation, "generation", GENERATION) }?;
        unsafe { Out::new(out_count, "out_count") }?.write(generation.rows.len());
        Ok(())
    })
}

/// Writes row `row`'s reply to `*out_text` (UTF-8, followed by a NUL) and its length in bytes, without the NUL, to
/// `*out_len`: the decoded tokens with special tokens skipped, cut before a stop string.
///
/// The text is owned by `generation` and valid until `steer_generation_free`; do not free or write it.
/// `generation`, `out_text` or `out_len` NULL: `STEER_STATUS_NULL_ARGUMENT`; `row` not below the row count:
/// `STEER_STATUS_INVALID_ARGUMENT`. On failure nothing is written. Thread-safe.
///
/// # Safety
/// `generation` is NULL or a live handle; `out_text` and `out_len` are NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_generation_text(
    generation: *const steer_generation,
    row: usize,
    out_text: *mut *const c_char,
    out_len: *mut usize,
) -> steer_status {
    call("steer_generation_text", || {
        // SAFETY: the caller's contract, for each argument.
        let row = unsafe { self::row(generation, row) }?;
        let text = unsafe { Out::new(out_text, "out_text") }?;
        let len = unsafe { Out::new(out_len, "out_len") }?;
        text.write(row.text.as_ptr().cast());
        len.write(row.text.len() - 1);
        Ok(())
    })
}

/// Writes why row `row` stopped generating to `*out_reason`.
///
/// `generation` or `out_reason` NULL: `STEER_STATUS_NULL_ARGUMENT`; `row` out of range:
/// `STEER_STATUS_INVALID_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `generation` is NULL or a live handle; `out_reason` is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_generation_finish_reason(
    generation: *const steer_generation,
    row: usize,
    out_reason: *mut steer_finish_reason,
) -> steer_status {
    call("steer_generation_finish_reason", || {
        // SAFETY: the caller's contract, for each argument.
        let row = unsafe { self::row(generation, row) }?;
        unsafe { Out::new(out_reason, "out_reason") }?.write(steer_finish_reason::of(row.generation.finish)?);
        Ok(())
    })
}

/// Writes row `row`'s generated token ids to `*out_ids` and their number to `*out_count`. The EOS token is not
/// included; with a stop string the token(s) that completed it are. `*out_ids` is owned by `generation` and valid
/// until `steer_generation_free` (it may be NULL when the count is 0).
///
/// `generation`, `out_ids` or `out_count` NULL: `STEER_STATUS_NULL_ARGUMENT`; `row` out of range:
/// `STEER_STATUS_INVALID_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `generation` is NULL or a live handle; `out_ids` and `out_count` are NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_generation_tokens(
    generation: *const steer_generation,
    row: usize,
    out_ids: *mut *const u32,
    out_count: *mut usize,
) -> steer_status {
    call("steer_generation_tokens", || {
        // SAFETY: the caller's contract, for each argument.
        let row = unsafe { self::row(generation, row) }?;
        let ids = unsafe { Out::new(out_ids, "out_ids") }?;
        let count = unsafe { Out::new(out_count, "out_count") }?;
        let tokens = &row.generation.token_ids;
        ids.write(if tokens.is_empty() { std::ptr::null() } else { tokens.as_ptr() });
        count.write(tokens.len());
        Ok(())
    })
}

/// Writes the number of tokens row `row` generated (as `steer_generation_tokens` counts them) to `*out_count`.
///
/// `generation` or `out_count` NULL: `STEER_STATUS_NULL_ARGUMENT`; `row` out of range:
/// `STEER_STATUS_INVALID_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `generation` is NULL or a live handle; `out_count` is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_generation_token_count(
    generation: *const steer_generation,
    row: usize,
    out_count: *mut usize,
) -> steer_status {
    call("steer_generation_token_count", || {
        // SAFETY: the caller's contract, for each argument.
        let row = unsafe { self::row(generation, row) }?;
        unsafe { Out::new(out_count, "out_count") }?.write(row.generation.token_ids.len());
        Ok(())
    })
}

/// Writes the length in tokens of row `row`'s prompt, chat template included, to `*out_count`.
///
/// `generation` or `out_count` NULL: `STEER_STATUS_NULL_ARGUMENT`; `row` out of range:
/// `STEER_STATUS_INVALID_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `generation` is NULL or a live handle; `out_count` is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_generation_prompt_tokens(
    generation: *const steer_generation,
    row: usize,
    out_count: *mut usize,
) -> steer_status {
    call("steer_generation_prompt_tokens", || {
        // SAFETY: the caller's contract, for each argument.
        let row = unsafe { self::row(generation, row) }?;
        unsafe { Out::new(out_count, "out_count") }?.write(row.generation.prompt_tokens);
        Ok(())
    })
}

/// Releases a generation result and the texts and token ids it holds. NULL does nothing. It must not be used
/// afterwards, nor freed while another thread reads it.
///
/// # Safety
/// `generation` is NULL or a handle from this library that has not been freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_generation_free(generation: *mut steer_generation) {
    guard((), || {
        if !generation.is_null() {
            // SAFETY: the caller's contract: a live handle, released once.
            drop(unsafe { Box::from_raw(generation) });
        }
    })
}

/// The name of a finish reason as a static string, e.g. `"eos"`, `"stop"`, `"length"`, `"cancelled"`, or
/// `"unknown"` for a value this library does not define.
///
/// Takes any `uint32_t`. The string is owned by the library and lives as long as the process; do not free it.
/// Thread-safe; does not change the thread's last error message.
#[unsafe(no_mangle)]
pub extern "C" fn steer_finish_reason_name(reason: u32) -> *const c_char {
    const UNKNOWN: &std::ffi::CStr = c"unknown";
    guard(UNKNOWN.as_ptr(), || {
        let name = match reason {
            0 => c"eos",
            1 => c"stop",
            2 => c"length",
            3 => c"cancelled",
            _ => UNKNOWN,
        };
        name.as_ptr()
    })
}
