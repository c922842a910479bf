//! `steer_model`: loading a bundle, releasing it, and what the loaded model is.

use std::ffi::{CString, c_char};

use steer_runtime::{LoadOptions, Model, ModelKind};

use crate::args::{Out, handle, utf8};
use crate::boundary::{Failure, call, guard};
use crate::options::{steer_execution_provider, steer_options};
use crate::status::steer_status;

/// A loaded, validated bundle: an opaque handle created by `steer_model_load` and released by `steer_model_free`.
///
/// Immutable once loaded. Every function that takes a `const steer_model *` is thread-safe, so one model serves
/// any number of threads; each graph runs on a pool of ONNX Runtime sessions
/// (`steer_options_set_session_pool_size`), and a call waits for an idle one.
pub struct steer_model {
    pub(crate) model: Model,
    /// `provider_fallbacks()[i].reason`, NUL-terminated, owned here so C can borrow them.
    fallback_reasons: Vec<CString>,
}

/// Which model a bundle holds.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum steer_kind {
    /// Neural-process Bradley-Terry: infers a per-user profile from the user's choices.
    NpBtl = 0,
    /// Bradley-Terry reward model, the same for everyone (profiles are empty).
    Btl = 1,
    /// Distributional preference learning: a mean and a standard deviation per option, the same for everyone.
    Dpl = 2,
}

impl steer_kind {
    /// The C value of a model kind; one this C ABI has no value for yet is `STEER_STATUS_UNKNOWN_ERROR`.
    fn of(kind: ModelKind) -> Result<steer_kind, Failure> {
        match kind {
            ModelKind::NpBtl => Ok(steer_kind::NpBtl),
            ModelKind::Btl => Ok(steer_kind::Btl),
            ModelKind::Dpl => Ok(steer_kind::Dpl),
            other => Err(Failure::new(steer_status::UnknownError, format!("model kind {other} has no C value"))),
        }
    }
}

pub(crate) const MODEL: &str = "a steer_model from steer_model_load";

/// Borrows the model behind a handle.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`.
pub(crate) unsafe fn model<'a>(model: *const steer_model) -> Result<&'a Model, Failure> {
    // SAFETY: forwarded contract.
    unsafe { handle(model, "model", MODEL) }.map(|m| &m.model)
}

/// Loads the bundle in the folder `bundle_dir` (a NUL-terminated UTF-8 path) and writes the new model to
/// `*out_model`.
///
/// The manifest, the SHA-256 of every file and each graph's inputs and outputs are checked before anything runs;
/// a bundle that fails any check is not loaded (1xx statuses). The first load of the process also loads ONNX
/// Runtime (2xx statuses; see "Finding ONNX Runtime" in the README). `options` NULL means the defaults; the model
/// does not keep `options`, which the caller may free right after. The caller owns the model and releases it with
/// `steer_model_free`.
///
/// `bundle_dir` or `out_model` NULL: `STEER_STATUS_NULL_ARGUMENT`; `bundle_dir` not UTF-8:
/// `STEER_STATUS_INVALID_UTF8`. On failure `*out_model` is not written. Thread-safe: several threads may load
/// models at once.
///
/// # Safety
/// `bundle_dir` is NULL or a NUL-terminated string; `options` is NULL or a live handle from `steer_options_new`
/// that no thread changes during the call; `out_model` is NULL or valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_model_load(
    bundle_dir: *const c_char,
    options: *const steer_options,
    out_model: *mut *mut steer_model,
) -> steer_status {
    call("steer_model_load", || {
        // SAFETY: the caller's contract, for each argument.
        let dir = unsafe { utf8(bundle_dir, "bundle_dir", "the path of a bundle folder") }?;
        let out = unsafe { Out::new(out_model, "out_model") }?;
        let defaults = LoadOptions::default();
        let load_options = if options.is_null() {
            &defaults
        } else {
            // SAFETY: non-NULL; the caller's contract.
            &unsafe { handle(options, "options", "a steer_options from steer_options_new, or NULL") }?.load
        };
        let model = Model::load(dir, load_options)?;
        let fallback_reasons = model
            .provider_fallbacks()
            .iter()
            .map(|fallback| CString::new(fallback.reason.replace('\0', " ")).unwrap_or_default())
            .collect();
        out.write(Box::into_raw(Box::new(steer_model { model, fallback_reasons })));
        Ok(())
    })
}

/// Releases a model and its ONNX Runtime sessions. NULL does nothing. Profiles inferred with the model are
/// independent of it and stay valid. The model must not be used afterwards, nor freed while another thread uses
/// it.
///
/// # Safety
/// `model` is NULL or a handle from `steer_model_load` that has not been freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_model_free(model: *mut steer_model) {
    guard((), || {
        if !model.is_null() {
            // SAFETY: the caller's contract: a live handle from `steer_model_load`, released once.
            drop(unsafe { Box::from_raw(model) });
        }
    })
}

/// Writes which model the bundle holds (a `steer_kind` value) to `*out_kind`.
///
/// `model` or `out_kind` NULL: `STEER_STATUS_NULL_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`; `out_kind` is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_model_kind(model: *const steer_model, out_kind: *mut steer_kind) -> steer_status {
    call("steer_model_kind", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        unsafe { Out::new(out_kind, "out_kind") }?.write(steer_kind::of(model.kind())?);
        Ok(())
    })
}

/// The name of a `steer_kind` value as used in bundle manifests (`"np-btl"`, `"btl"`, `"dpl"`), or `"unknown"`.
/// A static string owned by the library; never NULL. Thread-safe; does not change the last error message.
#[unsafe(no_mangle)]
pub extern "C" fn steer_kind_name(kind: u32) -> *const c_char {
    const UNKNOWN: &str = "unknown\0";
    guard(UNKNOWN.as_ptr().cast(), || {
        let name = match kind {
            0 => "np-btl\0",
            1 => "btl\0",
            2 => "dpl\0",
            _ => UNKNOWN,
        };
        name.as_ptr().cast()
    })
}

/// Writes the size `d` of one option embedding to `*out_dim` (1 for the synthetic 1-D task). Every option, chosen
/// and rejected array passed to this model has `d` floats per row.
///
/// `model` or `out_dim` NULL: `STEER_STATUS_NULL_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`; `out_dim` is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_model_embedding_dim(model: *const steer_model, out_dim: *mut usize) -> steer_status {
    call("steer_model_embedding_dim", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        unsafe { Out::new(out_dim, "out_dim") }?.write(model.dims().embedding_dim);
        Ok(())
    })
}

/// Writes the number of values in this model's profiles (`latent_dim`) to `*out_dim`; 0 for models that do not
/// condition on the user (btl, dpl).
///
/// `model` or `out_dim` NULL: `STEER_STATUS_NULL_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`; `out_dim` is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_model_latent_dim(model: *const steer_model, out_dim: *mut usize) -> steer_status {
    call("steer_model_latent_dim", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        unsafe { Out::new(out_dim, "out_dim") }?.write(model.dims().latent_dim);
        Ok(())
    })
}

/// Writes whether the bundle has a text embedder to `*out_has_text`: `true` when it carries a tokenizer and an
/// embedder graph, so the `steer_model_*_text` functions take prompts and responses as strings. On a bundle
/// without one they fail with `STEER_STATUS_NO_TEXT_EMBEDDER`, and only the embedding functions apply.
///
/// `model` or `out_has_text` NULL: `STEER_STATUS_NULL_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`; `out_has_text` is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_model_has_text(model: *const steer_model, out_has_text: *mut bool) -> steer_status {
    call("steer_model_has_text", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        unsafe { Out::new(out_has_text, "out_has_text") }?.write(model.embedder().is_some());
        Ok(())
    })
}

/// Writes how many execution providers the model runs on to `*out_count` (at least 1: the list always ends with
/// the CPU).
///
/// `model` or `out_count` NULL: `STEER_STATUS_NULL_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`; `out_count` is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_model_execution_provider_count(
    model: *const steer_model,
    out_count: *mut usize,
) -> steer_status {
    call("steer_model_execution_provider_count", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        unsafe { Out::new(out_count, "out_count") }?.write(model.execution_providers().len());
        Ok(())
    })
}

/// Writes the execution provider at `index` (0 = highest priority) and its device id (0 for the CPU).
///
/// `model`, `out_provider` or `out_device_id` NULL: `STEER_STATUS_NULL_ARGUMENT`; `index` not below
/// `steer_model_execution_provider_count`: `STEER_STATUS_INVALID_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`; the out-pointers are NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_model_execution_provider(
    model: *const steer_model,
    index: usize,
    out_provider: *mut steer_execution_provider,
    out_device_id: *mut i32,
) -> steer_status {
    call("steer_model_execution_provider", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        let out_provider = unsafe { Out::new(out_provider, "out_provider") }?;
        let out_device_id = unsafe { Out::new(out_device_id, "out_device_id") }?;
        let providers = model.execution_providers();
        let provider = providers.get(index).ok_or_else(|| out_of_range(index, providers.len()))?;
        let (provider, device_id) = steer_execution_provider::of(*provider)?;
        out_provider.write(provider);
        out_device_id.write(device_id);
        Ok(())
    })
}

/// Writes how many requested providers were skipped because they could not be used (only with
/// `steer_options_set_allow_cpu_fallback`) to `*out_count`; 0 when everything requested is active.
///
/// `model` or `out_count` NULL: `STEER_STATUS_NULL_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`; `out_count` is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_model_provider_fallback_count(
    model: *const steer_model,
    out_count: *mut usize,
) -> steer_status {
    call("steer_model_provider_fallback_count", || {
        // SAFETY: the caller's contract, for each argument.
        let model = unsafe { self::model(model) }?;
        unsafe { Out::new(out_count, "out_count") }?.write(model.provider_fallbacks().len());
        Ok(())
    })
}

/// Writes the skipped provider at `index`, its device id, and why it was skipped. `*out_reason` is a
/// NUL-terminated string owned by the model: valid until `steer_model_free`, not to be freed by the caller.
///
/// Any NULL argument: `STEER_STATUS_NULL_ARGUMENT`; `index` not below `steer_model_provider_fallback_count`:
/// `STEER_STATUS_INVALID_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `model` is NULL or a live handle from `steer_model_load`; the out-pointers are NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_model_provider_fallback(
    model: *const steer_model,
    index: usize,
    out_provider: *mut steer_execution_provider,
    out_device_id: *mut i32,
    out_reason: *mut *const c_char,
) -> steer_status {
    call("steer_model_provider_fallback", || {
        // SAFETY: the caller's contract, for each argument.
        let wrapper = unsafe { handle(model, "model", MODEL) }?;
        let out_provider = unsafe { Out::new(out_provider, "out_provider") }?;
        let out_device_id = unsafe { Out::new(out_device_id, "out_device_id") }?;
        let out_reason = unsafe { Out::new(out_reason, "out_reason") }?;
        let fallbacks = wrapper.model.provider_fallbacks();
        let fallback = fallbacks.get(index).ok_or_else(|| out_of_range(index, fallbacks.len()))?;
        let reason = wrapper.fallback_reasons.get(index).ok_or_else(|| out_of_range(index, fallbacks.len()))?;
        let (provider, device_id) = steer_execution_provider::of(fallback.provider)?;
        out_provider.write(provider);
        out_device_id.write(device_id);
        out_reason.write(reason.as_ptr());
        Ok(())
    })
}

fn out_of_range(index: usize, count: usize) -> Failure {
    Failure::invalid("index", format_args!("is {index}; expected an index below the count, {count}"))
}
