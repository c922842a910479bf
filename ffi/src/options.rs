//! `steer_options`: how `steer_model_load` loads a bundle (threads, providers, fallback, ONNX Runtime library,
//! session pool), set one value at a time.

use std::ffi::c_char;

use steer_runtime::{ExecutionProvider, LoadOptions};

use crate::args::{Out, handle_mut, utf8};
use crate::boundary::{Failure, call, guard};
use crate::status::steer_status;

/// Load options: an opaque handle created by `steer_options_new` and released by `steer_options_free`.
///
/// It starts with the defaults: CPU only, no CPU fallback, 1 intra-op thread, 1 session per graph, and ONNX
/// Runtime found by discovery. Setters check what they can (a string's encoding, an enum value); everything else is
/// checked by `steer_model_load`, which fails with `STEER_STATUS_INVALID_OPTIONS`. A `steer_options` is not
/// synchronized: do not change it from one thread while another thread uses it.
pub struct steer_options {
    pub(crate) load: LoadOptions,
    providers: Vec<ExecutionProvider>,
}

/// An execution provider: the hardware backend ONNX Runtime runs the graphs on.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum steer_execution_provider {
    /// The CPU; always available, and always the last resort for what an accelerator cannot run.
    Cpu = 0,
    /// NVIDIA CUDA; needs a library built with the `cuda` feature and the GPU build of ONNX Runtime.
    Cuda = 1,
    /// NVIDIA TensorRT; needs a library built with the `tensorrt` feature and the GPU build of ONNX Runtime.
    Tensorrt = 2,
}

impl steer_execution_provider {
    /// The C value of a runtime provider, and its device id (0 for the CPU). A provider this C ABI has no value for
    /// yet (the runtime's list may grow first) is `STEER_STATUS_UNKNOWN_ERROR`.
    pub(crate) fn of(provider: ExecutionProvider) -> Result<(steer_execution_provider, i32), Failure> {
        match provider {
            ExecutionProvider::Cpu => Ok((steer_execution_provider::Cpu, 0)),
            ExecutionProvider::Cuda { device_id } => Ok((steer_execution_provider::Cuda, device_id)),
            ExecutionProvider::TensorRt { device_id } => Ok((steer_execution_provider::Tensorrt, device_id)),
            other => Err(Failure::new(steer_status::UnknownError, format!("provider {other} has no C value"))),
        }
    }

    fn to_runtime(provider: u32, device_id: i32) -> Result<ExecutionProvider, Failure> {
        match provider {
            0 => Ok(ExecutionProvider::Cpu),
            1 => Ok(ExecutionProvider::Cuda { device_id }),
            2 => Ok(ExecutionProvider::TensorRt { device_id }),
            _ => Err(Failure::invalid(
                "provider",
                format_args!(
                    "is {provider}; expected STEER_EXECUTION_PROVIDER_CPU (0), STEER_EXECUTION_PROVIDER_CUDA (1) or \
                     STEER_EXECUTION_PROVIDER_TENSORRT (2)"
                ),
            )),
        }
    }
}

const OPTIONS: &str = "a steer_options from steer_options_new";

/// Creates load options with the defaults (see `steer_options`) and writes the handle to `*out_options`.
///
/// The caller owns the handle and releases it with `steer_options_free`; a model loaded with it does not keep it.
/// `out_options` NULL: `STEER_STATUS_NULL_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `out_options` is NULL or valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_options_new(out_options: *mut *mut steer_options) -> steer_status {
    call("steer_options_new", || {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out_options, "out_options") }?;
        let options = steer_options { load: LoadOptions::default(), providers: vec![ExecutionProvider::Cpu] };
        out.write(Box::into_raw(Box::new(options)));
        Ok(())
    })
}

/// Releases load options. NULL does nothing. The handle must not be used afterwards, nor freed while another
/// thread uses it.
///
/// # Safety
/// `options` is NULL or a handle from `steer_options_new` that has not been freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_options_free(options: *mut steer_options) {
    guard((), || {
        if !options.is_null() {
            // SAFETY: the caller's contract: a live handle from `steer_options_new`, released once.
            drop(unsafe { Box::from_raw(options) });
        }
    })
}

/// Runs `change` on the options behind `options`.
///
/// # Safety
/// `options` is NULL or a live handle from `steer_options_new` that no other thread uses during the call.
unsafe fn update(
    function: &'static str,
    options: *mut steer_options,
    change: impl FnOnce(&mut steer_options) -> Result<(), Failure>,
) -> steer_status {
    call(function, || {
        // SAFETY: forwarded contract.
        let options = unsafe { handle_mut(options, "options", OPTIONS) }?;
        change(options)
    })
}

/// Sets the threads each ONNX Runtime session may use inside one operator (default 1; 0 means ONNX Runtime's
/// default of one per physical core). Steer's graphs are small: one thread per session is usually fastest, and
/// more sessions (`steer_options_set_session_pool_size`) serve more concurrent callers.
///
/// `options` NULL: `STEER_STATUS_NULL_ARGUMENT`. Not thread-safe for the same `options`.
///
/// # Safety
/// `options` is NULL or a live handle from `steer_options_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_options_set_intra_op_threads(
    options: *mut steer_options,
    threads: usize,
) -> steer_status {
    // SAFETY: forwarded contract.
    unsafe {
        update("steer_options_set_intra_op_threads", options, |o| {
            o.load = std::mem::take(&mut o.load).intra_op_threads(threads);
            Ok(())
        })
    }
}

/// Sets how many ONNX Runtime sessions each graph keeps (default 1). A session runs one call at a time, so this is
/// how many calls on one model run concurrently; set it to the number of threads sharing the model. Each session
/// holds a copy of the graph's weights. 0 is rejected by `steer_model_load` (`STEER_STATUS_INVALID_OPTIONS`).
///
/// `options` NULL: `STEER_STATUS_NULL_ARGUMENT`. Not thread-safe for the same `options`.
///
/// # Safety
/// `options` is NULL or a live handle from `steer_options_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_options_set_session_pool_size(options: *mut steer_options, size: usize) -> steer_status {
    // SAFETY: forwarded contract.
    unsafe {
        update("steer_options_set_session_pool_size", options, |o| {
            o.load = std::mem::take(&mut o.load).session_pool_size(size);
            Ok(())
        })
    }
}

/// Loads ONNX Runtime from the file `path` (a NUL-terminated UTF-8 path to `libonnxruntime.so`, relative to the
/// current directory or absolute) instead of discovering it.
///
/// ONNX Runtime is loaded once per process, by the first successful `steer_model_load`; a later load naming a
/// different file fails with `STEER_STATUS_ORT_ALREADY_LOADED`. A missing file fails at load time with
/// `STEER_STATUS_ORT_NOT_FOUND`. The string is copied; the caller keeps ownership of `path`.
///
/// `options` or `path` NULL: `STEER_STATUS_NULL_ARGUMENT`; `path` not UTF-8: `STEER_STATUS_INVALID_UTF8`. On
/// failure the options are unchanged. Not thread-safe for the same `options`.
///
/// # Safety
/// `options` is NULL or a live handle from `steer_options_new`; `path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_options_set_ort_library(
    options: *mut steer_options,
    path: *const c_char,
) -> steer_status {
    let change = |o: &mut steer_options| {
        // SAFETY: the caller's contract for `path`.
        let path = unsafe { utf8(path, "path", "the path of libonnxruntime.so") }?;
        o.load = std::mem::take(&mut o.load).ort_library(path);
        Ok(())
    };
    // SAFETY: forwarded contract.
    unsafe { update("steer_options_set_ort_library", options, change) }
}

/// Empties the list of execution providers, so that `steer_options_add_execution_provider` can build a new one
/// (the default list is CPU only). Loading with an empty list fails with `STEER_STATUS_INVALID_OPTIONS`.
///
/// `options` NULL: `STEER_STATUS_NULL_ARGUMENT`. Not thread-safe for the same `options`.
///
/// # Safety
/// `options` is NULL or a live handle from `steer_options_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_options_clear_execution_providers(options: *mut steer_options) -> steer_status {
    // SAFETY: forwarded contract.
    unsafe {
        update("steer_options_clear_execution_providers", options, |o| {
            o.providers.clear();
            o.load = std::mem::take(&mut o.load).execution_providers([]);
            Ok(())
        })
    }
}

/// Appends an execution provider to the list, which is in priority order; `provider` is a
/// `steer_execution_provider` value and `device_id` the CUDA device (ignored for the CPU). Call
/// `steer_options_clear_execution_providers` first to replace the default (CPU only), e.g. clear, add CUDA,
/// add CPU. The CPU, if listed, must come last; ONNX Runtime always keeps it as the final fallback.
///
/// A provider that is not available (library built without its feature, ONNX Runtime without it, no device)
/// fails the load with `STEER_STATUS_PROVIDER_UNAVAILABLE` unless `steer_options_set_allow_cpu_fallback` allows
/// skipping it. The order, duplicates and negative device ids are checked by `steer_model_load`
/// (`STEER_STATUS_INVALID_OPTIONS`).
///
/// `options` NULL: `STEER_STATUS_NULL_ARGUMENT`; an unknown `provider`: `STEER_STATUS_INVALID_ARGUMENT`. On failure
/// the options are unchanged. Not thread-safe for the same `options`.
///
/// # Safety
/// `options` is NULL or a live handle from `steer_options_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_options_add_execution_provider(
    options: *mut steer_options,
    provider: u32,
    device_id: i32,
) -> steer_status {
    // SAFETY: forwarded contract.
    unsafe {
        update("steer_options_add_execution_provider", options, |o| {
            let provider = steer_execution_provider::to_runtime(provider, device_id)?;
            o.providers.push(provider);
            o.load = std::mem::take(&mut o.load).execution_providers(o.providers.iter().copied());
            Ok(())
        })
    }
}

/// Whether a requested accelerator that cannot be used is skipped (true) or fails the load (false, the default).
/// A loaded model reports what it skipped through `steer_model_provider_fallback`.
///
/// `options` NULL: `STEER_STATUS_NULL_ARGUMENT`. Not thread-safe for the same `options`.
///
/// # Safety
/// `options` is NULL or a live handle from `steer_options_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn steer_options_set_allow_cpu_fallback(
    options: *mut steer_options,
    allow: bool,
) -> steer_status {
    // SAFETY: forwarded contract.
    unsafe {
        update("steer_options_set_allow_cpu_fallback", options, |o| {
            o.load = std::mem::take(&mut o.load).allow_cpu_fallback(allow);
            Ok(())
        })
    }
}
