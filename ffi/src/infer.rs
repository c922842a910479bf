//! Inferring profiles from a user's choices: one user, a batch with a different k per user, and already padded
//! batches.

use ndarray::{ArrayView2, ArrayView3, s};
use steer_runtime::{Context, Profile};

use crate::args::{Out, OutFloats, OutHandles, array2, array3, elements, slice};
use crate::boundary::{Failure, call};
use crate::model::{model, steer_model};
use crate::profile::{handles, into_handle, steer_profile};
use crate::status::steer_status;

/// Infers a user's profile from `k` of their choices and writes it to `*out_profile`.
///
/// `chosen` and `rejected` are `k × d` floats, row-major: the user preferred row `i` of `chosen` over row `i` of
/// `rejected`. `d` must be the model's embedding size (else `STEER_STATUS_SHAPE_MISMATCH`). `k` may be 0 (then
/// both may be NULL): the profile is the population prior the model learned. For btl and dpl models the profile
/// is empty and nothing runs. The caller owns the profile and releases it with `steer_profile_free`.
///
/// `model` or `out_profile` NULL, or an array NULL with `k * d > 0`: `STEER_STATUS_NULL_ARGUMENT`; NaN or
/// infinity: `STEER_STATUS_NON_FINITE`. On failure `*out_profile` is not written. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`; `chosen` and `rejected` are NULL or point to `k * d`
/// floats; `out_profile` is NULL or valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_model_infer_profile(
    model: *const steer_model,
    chosen: *const f32,
    rejected: *const f32,
    k: usize,
    d: usize,
    out_profile: *mut *mut steer_profile,
) -> steer_status {
    call("steer_model_infer_profile", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let chosen = unsafe { array2(chosen, [k, d], "chosen") }?;
        let rejected = unsafe { array2(rejected, [k, d], "rejected") }?;
        let out = unsafe { Out::new(out_profile, "out_profile") }?;
        let profile = model.infer_profile(chosen, rejected)?;
        out.write(into_handle(profile));
        Ok(())
    })
}

/// Infers the profiles of `batch` users in one run, each from their own number of choices, and writes them to
/// `out_z` as `batch × latent_dim` floats (row `b` is user `b`'s profile, usable with `steer_model_score_batch` or
/// `steer_profile_new`).
///
/// `chosen` and `rejected` are padded to `batch × max_k × d` floats: user `b`'s choices are the first `k[b]` rows
/// of their `max_k` rows, and the rest is ignored. `k` has `batch` entries, each at most `max_k` (else
/// `STEER_STATUS_INVALID_ARGUMENT`); a user with `k[b] = 0` gets the population prior. `out_z` holds
/// `out_capacity` floats; fewer than `batch × latent_dim`: `STEER_STATUS_BUFFER_TOO_SMALL`. For btl and dpl
/// models `latent_dim` is 0 and nothing is written.
///
/// `batch` 0: `STEER_STATUS_EMPTY_INPUT`; `d` not the model's: `STEER_STATUS_SHAPE_MISMATCH`; NaN or infinity in a
/// user's first `k[b]` rows: `STEER_STATUS_NON_FINITE`; `model` NULL, or an array NULL although it has elements:
/// `STEER_STATUS_NULL_ARGUMENT`. On failure `out_z` is not written. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`; `chosen` and `rejected` are NULL or point to
/// `batch * max_k * d` floats; `k` is NULL or points to `batch` values; `out_z` is NULL or valid for writing
/// `out_capacity` floats.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn steer_model_infer_profiles(
    model: *const steer_model,
    chosen: *const f32,
    rejected: *const f32,
    k: *const usize,
    batch: usize,
    max_k: usize,
    d: usize,
    out_z: *mut f32,
    out_capacity: usize,
) -> steer_status {
    call("steer_model_infer_profiles", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let users = unsafe { Users::read(chosen, rejected, k, batch, max_k, d) }?;
        let out = unsafe { OutFloats::new(out_z, out_capacity, "out_z") }?;
        out.check_fits(elements("out_z", &[batch, model.dims().latent_dim])?, "out_z", "batch × latent_dim")?;
        write_z(out, &model.infer_profiles(&users.contexts())?);
        Ok(())
    })
}

/// Infers the profiles of `batch` users in one run, each from their own number of choices, like
/// `steer_model_infer_profiles`, and writes them as `batch` profile handles to `out_profiles[0 .. batch]`. Each
/// profile remembers this model's encoder, so the batch calls that take profiles (`steer_model_score_profile_batch`,
/// ...) refuse it with another bundle's model. The caller owns the profiles and releases each with
/// `steer_profile_free`.
///
/// `chosen`, `rejected`, `k`, `max_k` and the errors are as for `steer_model_infer_profiles`; `out_profiles` NULL:
/// `STEER_STATUS_NULL_ARGUMENT`. On failure nothing is written to `out_profiles`. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`; `chosen` and `rejected` are NULL or point to
/// `batch * max_k * d` floats; `k` is NULL or points to `batch` values; `out_profiles` is NULL or valid for writing
/// `batch` pointers.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn steer_model_infer_profile_batch(
    model: *const steer_model,
    chosen: *const f32,
    rejected: *const f32,
    k: *const usize,
    batch: usize,
    max_k: usize,
    d: usize,
    out_profiles: *mut *mut steer_profile,
) -> steer_status {
    call("steer_model_infer_profile_batch", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let users = unsafe { Users::read(chosen, rejected, k, batch, max_k, d) }?;
        let out = unsafe { OutHandles::new(out_profiles, batch, "out_profiles") }?;
        out.write(handles(model.infer_profiles(&users.contexts())?));
        Ok(())
    })
}

/// The padded choices of `batch` users, user `b`'s first `k[b]` rows being theirs.
struct Users<'a> {
    chosen: ArrayView3<'a, f32>,
    rejected: ArrayView3<'a, f32>,
    k: &'a [usize],
}

impl<'a> Users<'a> {
    /// Reads the arrays and checks every `k[b] <= max_k`.
    ///
    /// # Safety
    /// `chosen` and `rejected` are NULL or point to `batch * max_k * d` floats; `k` is NULL or points to `batch`
    /// values; none is written during `'a`.
    unsafe fn read(
        chosen: *const f32,
        rejected: *const f32,
        k: *const usize,
        batch: usize,
        max_k: usize,
        d: usize,
    ) -> Result<Users<'a>, Failure> {
        // SAFETY: forwarded contract, for each argument.
        let chosen = unsafe { array3(chosen, [batch, max_k, d], "chosen") }?;
        let rejected = unsafe { array3(rejected, [batch, max_k, d], "rejected") }?;
        let k = unsafe { slice(k, batch, "k", "size_t") }?;
        if let Some((user, &too_many)) = k.iter().enumerate().find(|(_, k)| **k > max_k) {
            return Err(Failure::invalid(
                "k",
                format_args!("[{user}] is {too_many}; expected at most max_k = {max_k}"),
            ));
        }
        Ok(Users { chosen, rejected, k })
    }

    fn contexts(&self) -> Vec<Context<'a>> {
        let (chosen, rejected) = (self.chosen, self.rejected);
        self.k
            .iter()
            .enumerate()
            .map(|(user, &k)| {
                Context::new(chosen.slice_move(s![user, ..k, ..]), rejected.slice_move(s![user, ..k, ..]))
            })
            .collect()
    }
}

/// Infers the profiles of `batch` users from input padded the way the encoder graph takes it, and writes them to
/// `out_z` as `batch × latent_dim` floats.
///
/// `context` is `batch × k × 2d` floats, each row the chosen option followed by the rejected one
/// (`[chosen ‖ rejected]`); `mask` is `batch × k` floats, 1 for a real pair and 0 for padding (any other value:
/// `STEER_STATUS_INVALID_MASK`). `k` may be 0, giving every user the population prior. `out_z` holds
/// `out_capacity` floats; fewer than `batch × latent_dim`: `STEER_STATUS_BUFFER_TOO_SMALL`.
///
/// `batch` 0: `STEER_STATUS_EMPTY_INPUT`; `d` not the model's: `STEER_STATUS_SHAPE_MISMATCH`; NaN or infinity:
/// `STEER_STATUS_NON_FINITE`; `model` NULL, or an array NULL although it has elements:
/// `STEER_STATUS_NULL_ARGUMENT`. On failure `out_z` is not written. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`; `context` is NULL or points to `batch * k * 2 * d`
/// floats and `mask` to `batch * k` floats; `out_z` is NULL or valid for writing `out_capacity` floats.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn steer_model_infer_profiles_padded(
    model: *const steer_model,
    context: *const f32,
    mask: *const f32,
    batch: usize,
    k: usize,
    d: usize,
    out_z: *mut f32,
    out_capacity: usize,
) -> steer_status {
    call("steer_model_infer_profiles_padded", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let (context, mask) = unsafe { padded(context, mask, batch, k, d) }?;
        let out = unsafe { OutFloats::new(out_z, out_capacity, "out_z") }?;
        out.check_fits(elements("out_z", &[batch, model.dims().latent_dim])?, "out_z", "batch × latent_dim")?;
        write_z(out, &model.infer_profiles_padded(context, mask)?);
        Ok(())
    })
}

/// Infers the profiles of `batch` users from padded input, like `steer_model_infer_profiles_padded`, and writes them
/// as `batch` profile handles to `out_profiles[0 .. batch]`, each remembering this model's encoder (see
/// `steer_model_infer_profile_batch`). The caller releases each with `steer_profile_free`.
///
/// `context`, `mask`, `k` and the errors are as for `steer_model_infer_profiles_padded`; `out_profiles` NULL:
/// `STEER_STATUS_NULL_ARGUMENT`. On failure nothing is written to `out_profiles`. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`; `context` is NULL or points to `batch * k * 2 * d`
/// floats and `mask` to `batch * k` floats; `out_profiles` is NULL or valid for writing `batch` pointers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_model_infer_profile_batch_padded(
    model: *const steer_model,
    context: *const f32,
    mask: *const f32,
    batch: usize,
    k: usize,
    d: usize,
    out_profiles: *mut *mut steer_profile,
) -> steer_status {
    call("steer_model_infer_profile_batch_padded", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let (context, mask) = unsafe { padded(context, mask, batch, k, d) }?;
        let out = unsafe { OutHandles::new(out_profiles, batch, "out_profiles") }?;
        out.write(handles(model.infer_profiles_padded(context, mask)?));
        Ok(())
    })
}

/// Reads padded context rows `[batch, k, 2d]` and their mask `[batch, k]`.
///
/// # Safety
/// `context` is NULL or points to `batch * k * 2 * d` floats and `mask` to `batch * k` floats, not written during
/// `'a`.
unsafe fn padded<'a>(
    context: *const f32,
    mask: *const f32,
    batch: usize,
    k: usize,
    d: usize,
) -> Result<(ArrayView3<'a, f32>, ArrayView2<'a, f32>), Failure> {
    let pair = d.checked_mul(2).ok_or_else(|| Failure::invalid("d", format_args!("is {d}, which is too large")))?;
    // SAFETY: forwarded contract, for each argument.
    let context = unsafe { array3(context, [batch, k, pair], "context") }?;
    let mask = unsafe { array2(mask, [batch, k], "mask") }?;
    Ok((context, mask))
}

/// Writes profiles row by row, as `[batch, latent_dim]` floats.
pub(crate) fn write_z(out: OutFloats, profiles: &[Profile]) {
    out.write(&profiles.iter().flat_map(|profile| profile.as_slice().iter().copied()).collect::<Vec<f32>>());
}
