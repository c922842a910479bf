//! Text bundles: profiles from a user's choices between responses, and scores of responses, passed as strings. The
//! bundle's own tokenizer and embedder turn each `(prompt, response)` into an embedding (see
//! `steer_runtime::text`), then the same graphs as the embedding functions run.

use std::ffi::c_char;

use steer_runtime::TextPair;

use crate::args::{Out, OutFloats, OutHandles, array2, elements, slice, utf8, utf8_array};
use crate::boundary::{Failure, call};
use crate::infer::write_z;
use crate::model::{model, steer_model};
use crate::profile::{handles, into_handle, profile, profile_batch, raw_profiles, steer_profile};
use crate::score::ScoreOut;
use crate::status::steer_status;

/// Pairs `prompts[i]`, `chosen[i]`, `rejected[i]`.
fn pairs<'a>(prompts: &[&'a str], chosen: &[&'a str], rejected: &[&'a str]) -> Vec<TextPair<'a>> {
    prompts.iter().zip(chosen).zip(rejected).map(|((p, c), r)| TextPair::new(p, c, r)).collect()
}

/// Infers a user's profile from `k` of their choices between two responses, given as text, and writes it to
/// `*out_profile`; the text form of `steer_model_infer_profile`.
///
/// `prompts`, `chosen` and `rejected` are arrays of `k` NUL-terminated UTF-8 strings: the user preferred response
/// `chosen[i]` over `rejected[i]` as a reply to `prompts[i]` (which may be the empty string). `k` may be 0 (then
/// the arrays may be NULL): the profile is the population prior. For btl and dpl models the profile is empty. The
/// caller owns the profile and releases it with `steer_profile_free`.
///
/// The bundle has no text embedder (`steer_model_has_text`): `STEER_STATUS_NO_TEXT_EMBEDDER`; a string the
/// tokenizer cannot encode: `STEER_STATUS_TOKENIZATION`; `model` or `out_profile` NULL, an array NULL with `k > 0`,
/// or a NULL string: `STEER_STATUS_NULL_ARGUMENT`; a string that is not UTF-8: `STEER_STATUS_INVALID_UTF8` (the
/// message names it, e.g. `chosen[2]`). On failure `*out_profile` is not written. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`; `prompts`, `chosen` and `rejected` are NULL or point to
/// `k` pointers, each NULL or to a NUL-terminated string; `out_profile` is NULL or valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_model_infer_profile_text(
    model: *const steer_model,
    prompts: *const *const c_char,
    chosen: *const *const c_char,
    rejected: *const *const c_char,
    k: usize,
    out_profile: *mut *mut steer_profile,
) -> steer_status {
    call("steer_model_infer_profile_text", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let prompts = unsafe { utf8_array(prompts, k, "prompts", "the prompt of each choice") }?;
        let chosen = unsafe { utf8_array(chosen, k, "chosen", "the preferred response of each choice") }?;
        let rejected = unsafe { utf8_array(rejected, k, "rejected", "the other response of each choice") }?;
        let out = unsafe { Out::new(out_profile, "out_profile") }?;
        let profile = model.infer_profile_text(&pairs(&prompts, &chosen, &rejected))?;
        out.write(into_handle(profile));
        Ok(())
    })
}

/// Infers the profiles of `batch` users in one run, each from their own number of choices given as text, and writes
/// them to `out_z` as `batch × latent_dim` floats (row `b` is user `b`'s profile, usable with
/// `steer_model_score_text_batch` or `steer_profile_new`); the text form of `steer_model_infer_profiles`.
///
/// `k` has `batch` entries; user `b` made `k[b]` choices (0 gives the population prior). The choices of all users
/// are concatenated, user 0's first: `prompts`, `chosen` and `rejected` each hold `k[0] + … + k[batch − 1]`
/// NUL-terminated UTF-8 strings, and user `b`'s are the `k[b]` entries after those of users `0 … b − 1`. `out_z`
/// holds `out_capacity` floats; fewer than `batch × latent_dim`: `STEER_STATUS_BUFFER_TOO_SMALL`. For btl and dpl
/// models `latent_dim` is 0 and nothing is written.
///
/// `batch` 0: `STEER_STATUS_EMPTY_INPUT`; counts in `k` whose sum overflows: `STEER_STATUS_INVALID_ARGUMENT`; no text
/// embedder: `STEER_STATUS_NO_TEXT_EMBEDDER`; a string the tokenizer cannot encode: `STEER_STATUS_TOKENIZATION`;
/// `model` NULL, an array NULL although it has elements, or a NULL string: `STEER_STATUS_NULL_ARGUMENT`; a string
/// that is not UTF-8: `STEER_STATUS_INVALID_UTF8`. On failure `out_z` is not written. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`; `k` is NULL or points to `batch` values; `prompts`,
/// `chosen` and `rejected` are NULL or point to `k[0] + … + k[batch − 1]` pointers, each NULL or to a
/// NUL-terminated string; `out_z` is NULL or valid for writing `out_capacity` floats.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn steer_model_infer_profiles_text(
    model: *const steer_model,
    prompts: *const *const c_char,
    chosen: *const *const c_char,
    rejected: *const *const c_char,
    k: *const usize,
    batch: usize,
    out_z: *mut f32,
    out_capacity: usize,
) -> steer_status {
    call("steer_model_infer_profiles_text", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let k = unsafe { slice(k, batch, "k", "size_t") }?;
        let total = total_choices(k)?;
        let choices = unsafe { Choices::read(prompts, chosen, rejected, total) }?;
        let out = unsafe { OutFloats::new(out_z, out_capacity, "out_z") }?;
        out.check_fits(elements("out_z", &[batch, model.dims().latent_dim])?, "out_z", "batch × latent_dim")?;
        let pairs = choices.pairs();
        write_z(out, &model.infer_profiles_text(&by_user(&pairs, k))?);
        Ok(())
    })
}

/// Infers the profiles of `batch` users from their choices given as text, like `steer_model_infer_profiles_text`,
/// and writes them as `batch` profile handles to `out_profiles[0 .. batch]`, each remembering this model's encoder
/// (see `steer_model_infer_profile_batch`). The caller releases each with `steer_profile_free`.
///
/// `prompts`, `chosen`, `rejected`, `k` and the errors are as for `steer_model_infer_profiles_text`;
/// `out_profiles` NULL: `STEER_STATUS_NULL_ARGUMENT`. On failure nothing is written to `out_profiles`. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`; `k` is NULL or points to `batch` values; `prompts`,
/// `chosen` and `rejected` are NULL or point to `k[0] + … + k[batch − 1]` pointers, each NULL or to a
/// NUL-terminated string; `out_profiles` is NULL or valid for writing `batch` pointers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_model_infer_profile_batch_text(
    model: *const steer_model,
    prompts: *const *const c_char,
    chosen: *const *const c_char,
    rejected: *const *const c_char,
    k: *const usize,
    batch: usize,
    out_profiles: *mut *mut steer_profile,
) -> steer_status {
    call("steer_model_infer_profile_batch_text", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let k = unsafe { slice(k, batch, "k", "size_t") }?;
        let total = total_choices(k)?;
        let choices = unsafe { Choices::read(prompts, chosen, rejected, total) }?;
        let out = unsafe { OutHandles::new(out_profiles, batch, "out_profiles") }?;
        let pairs = choices.pairs();
        out.write(handles(model.infer_profiles_text(&by_user(&pairs, k))?));
        Ok(())
    })
}

/// The number of choices of all users together, `k[0] + … + k[batch − 1]`; the arrays' length, so it is checked
/// before any of them is read.
fn total_choices(k: &[usize]) -> Result<usize, Failure> {
    k.iter()
        .try_fold(0usize, |sum, &k| sum.checked_add(k))
        .ok_or_else(|| Failure::invalid("k", "has counts whose sum is too large"))
}

/// The choices of every user, concatenated: `prompts[i]`, `chosen[i]`, `rejected[i]`.
struct Choices<'a> {
    prompts: Vec<&'a str>,
    chosen: Vec<&'a str>,
    rejected: Vec<&'a str>,
}

impl<'a> Choices<'a> {
    /// Reads `total` strings from each array.
    ///
    /// # Safety
    /// Each array is NULL or points to `total` pointers, each NULL or to a NUL-terminated string not written
    /// during `'a`.
    unsafe fn read(
        prompts: *const *const c_char,
        chosen: *const *const c_char,
        rejected: *const *const c_char,
        total: usize,
    ) -> Result<Choices<'a>, Failure> {
        // SAFETY: forwarded contract, for each argument.
        let prompts = unsafe { utf8_array(prompts, total, "prompts", "the prompt of each choice") }?;
        let chosen = unsafe { utf8_array(chosen, total, "chosen", "the preferred response of each choice") }?;
        let rejected = unsafe { utf8_array(rejected, total, "rejected", "the other response of each choice") }?;
        Ok(Choices { prompts, chosen, rejected })
    }

    fn pairs(&self) -> Vec<TextPair<'a>> {
        pairs(&self.prompts, &self.chosen, &self.rejected)
    }
}

/// Splits the concatenated pairs into users, user `b` taking the `k[b]` after those of the users before it.
fn by_user<'p, 'a>(pairs: &'p [TextPair<'a>], k: &[usize]) -> Vec<&'p [TextPair<'a>]> {
    let mut rest = pairs;
    k.iter()
        .map(|&k| {
            // The counts sum to `pairs.len()`, so each split is in range.
            let (user, after) = rest.split_at(k.min(rest.len()));
            rest = after;
            user
        })
        .collect()
}

/// Scores `n` responses to `prompt` for the user with `profile`: writes one reward per response to `out_rewards`
/// (`n` floats) and, if `out_stds` is not NULL, one standard deviation per response to `out_stds` (`n` floats; 0
/// except for dpl); the text form of `steer_model_score`. A higher reward means the user likes the response more.
///
/// `prompt` is a NUL-terminated UTF-8 string (it may be empty) and `responses` an array of `n` of them. `n` 0:
/// `STEER_STATUS_EMPTY_INPUT`; a profile of another length than the model's `latent_dim`:
/// `STEER_STATUS_PROFILE_LENGTH`; no text embedder: `STEER_STATUS_NO_TEXT_EMBEDDER`; a string the tokenizer cannot
/// encode: `STEER_STATUS_TOKENIZATION`; `model`, `profile`, `prompt` or `out_rewards` NULL, `responses` NULL with
/// `n > 0`, or a NULL response: `STEER_STATUS_NULL_ARGUMENT`; a string that is not UTF-8:
/// `STEER_STATUS_INVALID_UTF8` (the message names it, e.g. `responses[1]`). On failure nothing is written.
/// Thread-safe.
///
/// # Safety
/// `model` and `profile` are NULL or live handles; `prompt` is NULL or a NUL-terminated string; `responses` is NULL
/// or points to `n` pointers, each NULL or to a NUL-terminated string; `out_rewards` and `out_stds` are NULL or
/// valid for writing `n` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_model_score_text(
    model: *const steer_model,
    profile: *const steer_profile,
    prompt: *const c_char,
    responses: *const *const c_char,
    n: usize,
    out_rewards: *mut f32,
    out_stds: *mut f32,
) -> steer_status {
    call("steer_model_score_text", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let profile = unsafe { self::profile(profile) }?;
        let prompt = unsafe { utf8(prompt, "prompt", "the prompt the responses answer (may be empty)") }?;
        let responses = unsafe { utf8_array(responses, n, "responses", "a response") }?;
        let out = unsafe { ScoreOut::new(out_rewards, out_stds, n) }?;
        let scores = model.score_text(profile, prompt, &responses)?;
        out.write(&scores.reward, scores.std.as_deref());
        Ok(())
    })
}

/// Scores a batch of text: user `i` (row `i` of `z`, `batch × latent_dim` floats, e.g. from
/// `steer_model_infer_profiles_text`) gets the `n` responses `responses[i × n] … responses[i × n + n − 1]` to
/// `prompts[i]`. Raw floats cannot be checked for the encoder that made them: `steer_model_score_text_profile_batch`
/// takes profile handles and checks them. Writes `batch × n` rewards to `out_rewards` and, if `out_stds` is not NULL, `batch × n` standard
/// deviations to `out_stds` (0 except for dpl); the text form of `steer_model_score_batch`. All responses are
/// embedded together and all users run in one batch.
///
/// `prompts` holds `batch` and `responses` `batch × n` NUL-terminated UTF-8 strings. For btl and dpl `latent_dim`
/// is 0 and `z` may be NULL. `latent_dim` not the model's: `STEER_STATUS_SHAPE_MISMATCH`; `batch` or `n` 0:
/// `STEER_STATUS_EMPTY_INPUT`; `batch × n` overflows: `STEER_STATUS_INVALID_ARGUMENT`; NaN or infinity in `z`:
/// `STEER_STATUS_NON_FINITE`; no text embedder: `STEER_STATUS_NO_TEXT_EMBEDDER`; a string the tokenizer cannot
/// encode: `STEER_STATUS_TOKENIZATION`; `model` or `out_rewards` NULL, an input NULL although it has elements, or a
/// NULL string: `STEER_STATUS_NULL_ARGUMENT`; a string that is not UTF-8: `STEER_STATUS_INVALID_UTF8`. On failure
/// nothing is written. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle; `z` is NULL or points to `batch * latent_dim` floats; `prompts` is NULL or
/// points to `batch` pointers and `responses` to `batch * n` pointers, each NULL or to a NUL-terminated string;
/// `out_rewards` and `out_stds` are NULL or valid for writing `batch * n` floats.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn steer_model_score_text_batch(
    model: *const steer_model,
    z: *const f32,
    batch: usize,
    latent_dim: usize,
    prompts: *const *const c_char,
    responses: *const *const c_char,
    n: usize,
    out_rewards: *mut f32,
    out_stds: *mut f32,
) -> steer_status {
    call("steer_model_score_text_batch", || {
        let len = elements("out_rewards", &[batch, n])?;
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let z = unsafe { array2(z, [batch, latent_dim], "z") }?;
        let prompts = unsafe { utf8_array(prompts, batch, "prompts", "the prompt of each row") }?;
        let responses = unsafe { utf8_array(responses, len, "responses", "a response") }?;
        let out = unsafe { ScoreOut::new(out_rewards, out_stds, len) }?;
        out.write_batch(&model.score_text_batch(&raw_profiles(model, z)?, &prompts, &responses, n)?);
        Ok(())
    })
}

/// Scores a batch of text for users given as profile handles: user `i` (`profiles[i]`) gets the `n` responses
/// `responses[i × n] … responses[i × n + n − 1]` to `prompts[i]`; outputs and errors as for
/// `steer_model_score_text_batch`, and each profile is checked as in `steer_model_score_profile_batch`
/// (`STEER_STATUS_PROFILE_SPACE`, `STEER_STATUS_PROFILE_LENGTH`) before any text is embedded. On failure nothing is
/// written. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle; `profiles` is NULL or points to `batch` pointers, each NULL or a live profile
/// handle; `prompts` is NULL or points to `batch` pointers and `responses` to `batch * n` pointers, each NULL or to
/// a NUL-terminated string; `out_rewards` and `out_stds` are NULL or valid for writing `batch * n` floats.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn steer_model_score_text_profile_batch(
    model: *const steer_model,
    profiles: *const *const steer_profile,
    batch: usize,
    prompts: *const *const c_char,
    responses: *const *const c_char,
    n: usize,
    out_rewards: *mut f32,
    out_stds: *mut f32,
) -> steer_status {
    call("steer_model_score_text_profile_batch", || {
        let len = elements("out_rewards", &[batch, n])?;
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let profiles = unsafe { profile_batch(profiles, batch) }?;
        let prompts = unsafe { utf8_array(prompts, batch, "prompts", "the prompt of each row") }?;
        let responses = unsafe { utf8_array(responses, len, "responses", "a response") }?;
        let out = unsafe { ScoreOut::new(out_rewards, out_stds, len) }?;
        out.write_batch(&model.score_text_batch(&profiles, &prompts, &responses, n)?);
        Ok(())
    })
}
