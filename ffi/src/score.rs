//! Scoring options for a user, and the probability that a user prefers one option over another; one user or a
//! batch.

use ndarray::{Array2, ArrayView1};
use steer_runtime::BatchScores;

use crate::args::{Out, OutFloats, array2, array3, elements, floats};
use crate::boundary::{Failure, call};
use crate::model::{model, steer_model};
use crate::profile::{profile, profile_batch, raw_profiles, steer_profile};
use crate::status::steer_status;

/// Scores `n` options for the user with `profile`: writes one reward per option to `out_rewards` (`n` floats),
/// and, if `out_stds` is not NULL, one standard deviation per option to `out_stds` (`n` floats; the spread of a
/// dpl model's reward distribution, 0 for np-btl and btl). A higher reward means the user likes the option more.
///
/// `options` is `n × d` floats, row-major; `d` must be the model's embedding size (else
/// `STEER_STATUS_SHAPE_MISMATCH`). `n` 0: `STEER_STATUS_EMPTY_INPUT`; NaN or infinity: `STEER_STATUS_NON_FINITE`;
/// a profile of another length than the model's `latent_dim`: `STEER_STATUS_PROFILE_LENGTH`; `model`, `profile`
/// or `out_rewards` NULL (or `options` with `n * d > 0`): `STEER_STATUS_NULL_ARGUMENT`. On failure nothing is
/// written. Thread-safe.
///
/// # Safety
/// `model` and `profile` are NULL or live handles; `options` is NULL or points to `n * d` floats; `out_rewards`
/// and `out_stds` are NULL or valid for writing `n` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_model_score(
    model: *const steer_model,
    profile: *const steer_profile,
    options: *const f32,
    n: usize,
    d: usize,
    out_rewards: *mut f32,
    out_stds: *mut f32,
) -> steer_status {
    call("steer_model_score", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let profile = unsafe { self::profile(profile) }?;
        let options = unsafe { array2(options, [n, d], "options") }?;
        let out = unsafe { ScoreOut::new(out_rewards, out_stds, n) }?;
        let scores = model.score(profile, options)?;
        out.write(&scores.reward, scores.std.as_deref());
        Ok(())
    })
}

/// Writes the probability that the user with `profile` prefers option `a` over option `b` (each `d` floats) to
/// `*out_probability`: `sigmoid(r_a − r_b)` for np-btl and btl, and for dpl
/// `sigmoid(sqrt(2π)·(μ_a − μ_b) / sqrt(σ_a² + σ_b²))`. The probability of preferring `b` is one minus it.
///
/// `d` not the model's: `STEER_STATUS_SHAPE_MISMATCH`; NaN or infinity: `STEER_STATUS_NON_FINITE`; a profile of
/// the wrong length: `STEER_STATUS_PROFILE_LENGTH`; a NULL argument (`a`, `b` only when `d > 0`):
/// `STEER_STATUS_NULL_ARGUMENT`. On failure `*out_probability` is not written. Thread-safe.
///
/// # Safety
/// `model` and `profile` are NULL or live handles; `a` and `b` are NULL or point to `d` floats;
/// `out_probability` is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_model_preference(
    model: *const steer_model,
    profile: *const steer_profile,
    a: *const f32,
    b: *const f32,
    d: usize,
    out_probability: *mut f32,
) -> steer_status {
    call("steer_model_preference", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let profile = unsafe { self::profile(profile) }?;
        let a = unsafe { floats(a, d, "a") }?;
        let b = unsafe { floats(b, d, "b") }?;
        let out = unsafe { Out::new(out_probability, "out_probability") }?;
        out.write(model.preference(profile, ArrayView1::from(a), ArrayView1::from(b))?);
        Ok(())
    })
}

/// Scores a batch: user `i` (row `i` of `z`, `batch × latent_dim` floats, e.g. from `steer_model_infer_profiles`)
/// gets the `n` options in row `i` of `options` (`batch × n × d` floats). Raw floats carry no record of the encoder
/// that made them (like `steer_profile_new`'s), so a profile from another bundle cannot be refused here:
/// `steer_model_score_profile_batch` takes profile handles and checks them. Writes `batch × n` rewards to
/// `out_rewards` and, if `out_stds` is not NULL, `batch × n` standard deviations to `out_stds` (0 except for dpl).
/// All users run in one batch.
///
/// For btl and dpl `latent_dim` is 0 and `z` may be NULL. `latent_dim` or `d` not the model's:
/// `STEER_STATUS_SHAPE_MISMATCH`; `batch` or `n` 0: `STEER_STATUS_EMPTY_INPUT`; NaN or infinity:
/// `STEER_STATUS_NON_FINITE`; `model` or `out_rewards` NULL, or an input NULL although it has elements:
/// `STEER_STATUS_NULL_ARGUMENT`. On failure nothing is written. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle; `z` is NULL or points to `batch * latent_dim` floats, `options` to
/// `batch * n * d` floats; `out_rewards` and `out_stds` are NULL or valid for writing `batch * n` floats.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn steer_model_score_batch(
    model: *const steer_model,
    z: *const f32,
    batch: usize,
    latent_dim: usize,
    options: *const f32,
    n: usize,
    d: usize,
    out_rewards: *mut f32,
    out_stds: *mut f32,
) -> steer_status {
    call("steer_model_score_batch", || {
        let len = elements("out_rewards", &[batch, n])?;
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let z = unsafe { array2(z, [batch, latent_dim], "z") }?;
        let options = unsafe { array3(options, [batch, n, d], "options") }?;
        let out = unsafe { ScoreOut::new(out_rewards, out_stds, len) }?;
        out.write_batch(&model.score_batch(&raw_profiles(model, z)?, options)?);
        Ok(())
    })
}

/// Preference probabilities for a batch: entry `[i, j]` of `out_probabilities` (`batch × n` floats) is the
/// probability that user `i` (row `i` of `z`, `batch × latent_dim` floats) prefers option `a[i, j]` over option
/// `b[i, j]` (`a` and `b` are `batch × n × d` floats). Scores `a` and `b` in one run. Raw floats cannot be checked
/// for the encoder that made them: `steer_model_preference_profile_batch` takes profile handles and checks them.
///
/// For btl and dpl `latent_dim` is 0 and `z` may be NULL. `latent_dim` or `d` not the model's:
/// `STEER_STATUS_SHAPE_MISMATCH`; `batch` or `n` 0: `STEER_STATUS_EMPTY_INPUT`; NaN or infinity:
/// `STEER_STATUS_NON_FINITE`; `model` or `out_probabilities` NULL, or an input NULL although it has elements:
/// `STEER_STATUS_NULL_ARGUMENT`. On failure nothing is written. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle; `z` is NULL or points to `batch * latent_dim` floats, `a` and `b` to
/// `batch * n * d` floats each; `out_probabilities` is NULL or valid for writing `batch * n` floats.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn steer_model_preference_batch(
    model: *const steer_model,
    z: *const f32,
    batch: usize,
    latent_dim: usize,
    a: *const f32,
    b: *const f32,
    n: usize,
    d: usize,
    out_probabilities: *mut f32,
) -> steer_status {
    call("steer_model_preference_batch", || {
        let len = elements("out_probabilities", &[batch, n])?;
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let z = unsafe { array2(z, [batch, latent_dim], "z") }?;
        let a = unsafe { array3(a, [batch, n, d], "a") }?;
        let b = unsafe { array3(b, [batch, n, d], "b") }?;
        let out = unsafe { OutFloats::new(out_probabilities, len.max(1), "out_probabilities") }?;
        out.write(&row_major(&model.preference_batch(&raw_profiles(model, z)?, a, b)?));
        Ok(())
    })
}

/// Scores a batch of users given as profile handles: user `i` (`profiles[i]`) gets the `n` options in row `i` of
/// `options` (`batch × n × d` floats); outputs as for `steer_model_score_batch`. Each profile is checked as in
/// `steer_model_score`: one inferred by another bundle's encoder is `STEER_STATUS_PROFILE_SPACE`, one of the wrong
/// length `STEER_STATUS_PROFILE_LENGTH`. Prefer this to `steer_model_score_batch`, whose raw floats cannot be
/// checked for where they came from. Users whose profiles are stored apart (from different calls) can share one
/// batch.
///
/// `profiles` holds `batch` handles (btl and dpl take their empty profiles). `batch` or `n` 0:
/// `STEER_STATUS_EMPTY_INPUT`; `d` not the model's: `STEER_STATUS_SHAPE_MISMATCH`; NaN or infinity:
/// `STEER_STATUS_NON_FINITE`; `model`, `profiles`, one of its handles or `out_rewards` NULL, or `options` NULL
/// although it has elements: `STEER_STATUS_NULL_ARGUMENT` (a NULL handle is named, e.g. `profiles[2]`). On failure
/// nothing is written. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle; `profiles` is NULL or points to `batch` pointers, each NULL or a live profile
/// handle; `options` is NULL or points to `batch * n * d` floats; `out_rewards` and `out_stds` are NULL or valid
/// for writing `batch * n` floats.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn steer_model_score_profile_batch(
    model: *const steer_model,
    profiles: *const *const steer_profile,
    batch: usize,
    options: *const f32,
    n: usize,
    d: usize,
    out_rewards: *mut f32,
    out_stds: *mut f32,
) -> steer_status {
    call("steer_model_score_profile_batch", || {
        let len = elements("out_rewards", &[batch, n])?;
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let profiles = unsafe { profile_batch(profiles, batch) }?;
        let options = unsafe { array3(options, [batch, n, d], "options") }?;
        let out = unsafe { ScoreOut::new(out_rewards, out_stds, len) }?;
        out.write_batch(&model.score_batch(&profiles, options)?);
        Ok(())
    })
}

/// Preference probabilities for a batch of users given as profile handles: entry `[i, j]` of `out_probabilities`
/// (`batch × n` floats) is the probability that user `i` (`profiles[i]`) prefers option `a[i, j]` over `b[i, j]`
/// (`a` and `b` are `batch × n × d` floats). Profiles are checked as in `steer_model_score_profile_batch`
/// (`STEER_STATUS_PROFILE_SPACE`, `STEER_STATUS_PROFILE_LENGTH`); the other errors are those of
/// `steer_model_preference_batch`. On failure nothing is written. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle; `profiles` is NULL or points to `batch` pointers, each NULL or a live profile
/// handle; `a` and `b` are NULL or point to `batch * n * d` floats each; `out_probabilities` is NULL or valid for
/// writing `batch * n` floats.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn steer_model_preference_profile_batch(
    model: *const steer_model,
    profiles: *const *const steer_profile,
    batch: usize,
    a: *const f32,
    b: *const f32,
    n: usize,
    d: usize,
    out_probabilities: *mut f32,
) -> steer_status {
    call("steer_model_preference_profile_batch", || {
        let len = elements("out_probabilities", &[batch, n])?;
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let profiles = unsafe { profile_batch(profiles, batch) }?;
        let a = unsafe { array3(a, [batch, n, d], "a") }?;
        let b = unsafe { array3(b, [batch, n, d], "b") }?;
        let out = unsafe { OutFloats::new(out_probabilities, len.max(1), "out_probabilities") }?;
        out.write(&row_major(&model.preference_batch(&profiles, a, b)?));
        Ok(())
    })
}

/// The two outputs of a scoring call, checked when the call starts and written only when it succeeds: `len`
/// rewards, and optionally `len` standard deviations (0 for point models).
pub(crate) struct ScoreOut {
    rewards: OutFloats,
    stds: Option<OutFloats>,
}

impl ScoreOut {
    /// Checks `out_rewards` (required) and `out_stds` (NULL when not wanted), `len` floats each.
    ///
    /// # Safety
    /// Each pointer is NULL or valid for writing `len` floats until the call returns.
    pub(crate) unsafe fn new(out_rewards: *mut f32, out_stds: *mut f32, len: usize) -> Result<ScoreOut, Failure> {
        // SAFETY: forwarded contract, for each buffer.
        let rewards = unsafe { OutFloats::new(out_rewards, len.max(1), "out_rewards") }?;
        let stds = unsafe { OutFloats::optional(out_stds, len, "out_stds") }?;
        Ok(ScoreOut { rewards, stds })
    }

    /// Writes the rewards, and the stds (zeros when the model has none) if the caller wants them.
    pub(crate) fn write(self, reward: &[f32], std: Option<&[f32]>) {
        self.rewards.write(reward);
        if let Some(stds) = self.stds {
            stds.write(&std.map_or_else(|| vec![0.0; reward.len()], <[f32]>::to_vec));
        }
    }

    /// Writes a batch's `[batch, n]` rewards and stds row by row.
    pub(crate) fn write_batch(self, scores: &BatchScores) {
        self.write(&row_major(&scores.reward), scores.std.as_ref().map(row_major).as_deref());
    }
}

/// The values of a `[batch, n]` result, row by row.
pub(crate) fn row_major(values: &Array2<f32>) -> Vec<f32> {
    values.iter().copied().collect()
}
