//! `steer_profile`: a user's profile (the vector z), made from floats or by `steer_model_infer_profile`, and read
//! back as floats.

use ndarray::ArrayView2;
use steer_runtime::{Error, Model, Profile};

use crate::args::{self, Out, OutFloats, elements, floats, handle};
use crate::boundary::{Failure, call, guard};
use crate::status::steer_status;

/// A user's profile: the `latent_dim` floats z that condition a model's rewards on that user. An opaque handle
/// created by `steer_model_infer_profile` or `steer_profile_new` and released by `steer_profile_free`.
///
/// Immutable, and independent of the model that inferred it (store it per user and reuse it; it may outlive the
/// model). Thread-safe to read from many threads. Profiles of btl and dpl models are empty (`latent_dim` 0).
pub struct steer_profile {
    pub(crate) profile: Profile,
}

pub(crate) const PROFILE: &str = "a steer_profile from steer_model_infer_profile or steer_profile_new";

/// Borrows the profile behind a handle.
///
/// # Safety
/// `profile` is NULL or a live handle.
pub(crate) unsafe fn profile<'a>(profile: *const steer_profile) -> Result<&'a Profile, Failure> {
    // SAFETY: forwarded contract.
    unsafe { handle(profile, "profile", PROFILE) }.map(|p| &p.profile)
}

/// Moves a profile to the heap and hands it to the caller.
pub(crate) fn into_handle(profile: Profile) -> *mut steer_profile {
    Box::into_raw(Box::new(steer_profile { profile }))
}

/// Wraps profiles for [`OutHandles`](crate::args::OutHandles).
pub(crate) fn handles(profiles: Vec<Profile>) -> Vec<steer_profile> {
    profiles.into_iter().map(|profile| steer_profile { profile }).collect()
}

/// Borrows the profiles behind an array of `batch` handles, naming a bad one by its index (`profiles[2]`).
///
/// # Safety
/// `profiles` is NULL or points to `batch` pointers, each NULL or a live handle.
pub(crate) unsafe fn profile_batch<'a>(
    profiles: *const *const steer_profile,
    batch: usize,
) -> Result<Vec<&'a Profile>, Failure> {
    // SAFETY: forwarded contract.
    let handles = unsafe { args::handles(profiles, batch, "profiles", PROFILE) }?;
    Ok(handles.into_iter().map(|handle| &handle.profile).collect())
}

/// Rows of raw floats `z` `[batch, latent_dim]` as profiles with no encoder (like `steer_profile_new`'s): the input
/// of the batch calls that take floats. A width other than the model's, or a NaN or infinity, is named as `z`.
pub(crate) fn raw_profiles(model: &Model, z: ArrayView2<'_, f32>) -> Result<Vec<Profile>, Failure> {
    let latent_dim = model.dims().latent_dim;
    if z.ncols() != latent_dim {
        return Err(Error::ShapeMismatch {
            input: "z".into(),
            expected: format!("[{}, {latent_dim}]", z.nrows()),
            found: format!("{:?}", z.shape()),
        }
        .into());
    }
    if let Some(((row, column), &value)) = z.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NonFinite { input: "z".into(), index: vec![row, column], value }.into());
    }
    Ok(z.rows().into_iter().map(|row| Profile::from_vec(row.to_vec())).collect::<Result<_, Error>>()?)
}

/// Creates a profile from `latent_dim` stored floats `z` (e.g. read earlier with `steer_profile_read`) and writes
/// it to `*out_profile`. The floats are copied. Its length is checked against a model when it is used
/// (`STEER_STATUS_PROFILE_LENGTH`). The caller owns the profile and releases it with `steer_profile_free`.
///
/// `out_profile` NULL, or `z` NULL with `latent_dim > 0`: `STEER_STATUS_NULL_ARGUMENT`; a NaN or infinite value:
/// `STEER_STATUS_NON_FINITE`. On failure `*out_profile` is not written. Thread-safe.
///
/// # Safety
/// `z` is NULL or points to `latent_dim` floats; `out_profile` is NULL or valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_profile_new(
    z: *const f32,
    latent_dim: usize,
    out_profile: *mut *mut steer_profile,
) -> steer_status {
    call("steer_profile_new", || {
        let len = elements("z", &[latent_dim])?;
        // SAFETY: the caller's contract, for each argument.
        let z = unsafe { floats(z, len, "z") }?;
        let out = unsafe { Out::new(out_profile, "out_profile") }?;
        let profile = Profile::from_vec(z.to_vec())?;
        out.write(into_handle(profile));
        Ok(())
    })
}

/// Releases a profile. NULL does nothing. The profile must not be used afterwards, nor freed while another thread
/// uses it.
///
/// # Safety
/// `profile` is NULL or a handle from this library that has not been freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_profile_free(profile: *mut steer_profile) {
    guard((), || {
        if !profile.is_null() {
            // SAFETY: the caller's contract: a live handle, released once.
            drop(unsafe { Box::from_raw(profile) });
        }
    })
}

/// Writes the number of floats in the profile (its model's `latent_dim`; 0 for btl and dpl) to `*out_latent_dim`.
///
/// `profile` or `out_latent_dim` NULL: `STEER_STATUS_NULL_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `profile` is NULL or a live handle; `out_latent_dim` is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_profile_latent_dim(
    profile: *const steer_profile,
    out_latent_dim: *mut usize,
) -> steer_status {
    call("steer_profile_latent_dim", || {
        // SAFETY: the caller's contract, for each argument.
        let profile = unsafe { self::profile(profile) }?;
        unsafe { Out::new(out_latent_dim, "out_latent_dim") }?.write(profile.latent_dim());
        Ok(())
    })
}

/// Copies the profile's floats into `out_z`, a caller-owned buffer of `capacity` floats (the first `latent_dim`
/// are written; see `steer_profile_latent_dim`).
///
/// `profile` NULL, or `out_z` NULL with `capacity > 0`: `STEER_STATUS_NULL_ARGUMENT`; `capacity < latent_dim`:
/// `STEER_STATUS_BUFFER_TOO_SMALL` (nothing is written). Thread-safe.
///
/// # Safety
/// `profile` is NULL or a live handle; `out_z` is NULL or valid for writing `capacity` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_profile_read(
    profile: *const steer_profile,
    out_z: *mut f32,
    capacity: usize,
) -> steer_status {
    call("steer_profile_read", || {
        // SAFETY: the caller's contract, for each argument.
        let profile = unsafe { self::profile(profile) }?;
        let out = unsafe { OutFloats::new(out_z, capacity, "out_z") }?;
        out.check_fits(profile.latent_dim(), "out_z", "this profile")?;
        out.write(profile.as_slice());
        Ok(())
    })
}
