//! The behaviour suite through the C ABI: the same test bodies as `tests/rust_api.rs`, calling the `extern "C"`
//! functions of libsteer the way a C program does (raw pointers, out-parameters, status codes, the thread-local
//! message).

mod behaviour;

use std::ffi::{CStr, CString};
use std::path::Path;
use std::ptr;

use behaviour::{Api, Failure, Options, Res, Scored};
use steer::*;
use steer_runtime::{Dims, ExecutionProvider, ModelKind};

struct CApi;

/// An owned `steer_model *`.
struct CModel(*mut steer_model);

/// An owned `steer_profile *`.
struct CProfile(*mut steer_profile);

// SAFETY: the C ABI documents every function that takes a `const steer_model *` as thread-safe, and profiles as
// immutable; only `Drop` frees them, once.
unsafe impl Send for CModel {}
unsafe impl Sync for CModel {}
unsafe impl Send for CProfile {}
unsafe impl Sync for CProfile {}

impl Drop for CModel {
    fn drop(&mut self) {
        // SAFETY: a live handle from steer_model_load, freed once.
        unsafe { steer_model_free(self.0) }
    }
}

impl Drop for CProfile {
    fn drop(&mut self) {
        // SAFETY: a live handle from this library, freed once.
        unsafe { steer_profile_free(self.0) }
    }
}

/// `Ok` for `STEER_STATUS_OK`; otherwise the status and `steer_last_error_message()`.
fn check(status: steer_status) -> Res<()> {
    if status == steer_status::Ok {
        // SAFETY: never NULL; copied before the next call.
        let message = unsafe { CStr::from_ptr(steer_last_error_message()) };
        assert!(message.is_empty(), "a successful call leaves an empty message, found {message:?}");
        return Ok(());
    }
    // SAFETY: never NULL; copied before the next call.
    let message = unsafe { CStr::from_ptr(steer_last_error_message()) }.to_string_lossy().into_owned();
    assert!(message.starts_with("steer_"), "messages name the function: {message}");
    Err(Failure { code: status as i32, message })
}

fn provider(kind: steer_execution_provider, device_id: i32) -> ExecutionProvider {
    match kind {
        steer_execution_provider::Cpu => ExecutionProvider::Cpu,
        steer_execution_provider::Cuda => ExecutionProvider::Cuda { device_id },
        steer_execution_provider::Tensorrt => ExecutionProvider::TensorRt { device_id },
    }
}

fn provider_value(provider: ExecutionProvider) -> (u32, i32) {
    match provider {
        ExecutionProvider::Cpu => (steer_execution_provider::Cpu as u32, 0),
        ExecutionProvider::Cuda { device_id } => (steer_execution_provider::Cuda as u32, device_id),
        ExecutionProvider::TensorRt { device_id } => (steer_execution_provider::Tensorrt as u32, device_id),
    }
}

/// The `steer_options` for `options`; freed by the caller.
fn c_options(options: &Options) -> *mut steer_options {
    let mut handle = ptr::null_mut();
    // SAFETY: every call gets a live handle and valid pointers.
    unsafe {
        check(steer_options_new(&mut handle)).unwrap();
        check(steer_options_set_allow_cpu_fallback(handle, options.allow_cpu_fallback)).unwrap();
        if let Some(threads) = options.intra_op_threads {
            check(steer_options_set_intra_op_threads(handle, threads)).unwrap();
        }
        if let Some(size) = options.session_pool_size {
            check(steer_options_set_session_pool_size(handle, size)).unwrap();
        }
        if let Some(providers) = &options.providers {
            check(steer_options_clear_execution_providers(handle)).unwrap();
            for &p in providers {
                let (kind, device_id) = provider_value(p);
                check(steer_options_add_execution_provider(handle, kind, device_id)).unwrap();
            }
        }
        if let Some(library) = &options.ort_library {
            let path = CString::new(library.to_str().unwrap()).unwrap();
            check(steer_options_set_ort_library(handle, path.as_ptr())).unwrap();
        }
    }
    handle
}

fn count(model: &CModel, f: unsafe extern "C" fn(*const steer_model, *mut usize) -> steer_status) -> usize {
    let mut n = usize::MAX;
    // SAFETY: a live model and a valid out-pointer.
    check(unsafe { f(model.0, &mut n) }).unwrap();
    n
}

impl Api for CApi {
    type Model = CModel;
    type Profile = CProfile;

    fn load(dir: &Path, options: &Options) -> Res<CModel> {
        let dir = CString::new(dir.to_str().unwrap()).unwrap();
        let handle = c_options(options);
        let mut model = ptr::null_mut();
        // SAFETY: valid string, live options, valid out-pointer.
        let status = unsafe { steer_model_load(dir.as_ptr(), handle, &mut model) };
        // SAFETY: the model does not keep the options.
        unsafe { steer_options_free(handle) };
        let result = check(status);
        if result.is_err() {
            assert!(model.is_null(), "out_model is written only on success");
        }
        result.map(|()| CModel(model))
    }

    fn kind(model: &CModel) -> ModelKind {
        let mut kind = steer_kind::Dpl;
        // SAFETY: a live model and a valid out-pointer.
        check(unsafe { steer_model_kind(model.0, &mut kind) }).unwrap();
        // SAFETY: a static string.
        let name = unsafe { CStr::from_ptr(steer_kind_name(kind as u32)) }.to_str().unwrap();
        match kind {
            steer_kind::NpBtl => assert_eq!(name, "np-btl"),
            steer_kind::Btl => assert_eq!(name, "btl"),
            steer_kind::Dpl => assert_eq!(name, "dpl"),
        }
        serde_json::from_value(serde_json::Value::String(name.into())).unwrap()
    }

    fn dims(model: &CModel) -> Dims {
        Dims {
            embedding_dim: count(model, steer_model_embedding_dim),
            latent_dim: count(model, steer_model_latent_dim),
        }
    }

    fn providers(model: &CModel) -> Vec<ExecutionProvider> {
        (0..count(model, steer_model_execution_provider_count))
            .map(|i| {
                let (mut kind, mut device_id) = (steer_execution_provider::Tensorrt, -7);
                // SAFETY: a live model and valid out-pointers.
                check(unsafe { steer_model_execution_provider(model.0, i, &mut kind, &mut device_id) }).unwrap();
                provider(kind, device_id)
            })
            .collect()
    }

    fn fallbacks(model: &CModel) -> Vec<(ExecutionProvider, String)> {
        (0..count(model, steer_model_provider_fallback_count))
            .map(|i| {
                let (mut kind, mut device_id, mut reason) = (steer_execution_provider::Cpu, -7, ptr::null());
                // SAFETY: a live model and valid out-pointers.
                let status =
                    unsafe { steer_model_provider_fallback(model.0, i, &mut kind, &mut device_id, &mut reason) };
                check(status).unwrap();
                // SAFETY: owned by the model, which is alive.
                let reason = unsafe { CStr::from_ptr(reason) }.to_str().unwrap().to_string();
                (provider(kind, device_id), reason)
            })
            .collect()
    }

    fn infer_profile(model: &CModel, chosen: &[f32], rejected: &[f32], k: usize, d: usize) -> Res<CProfile> {
        assert!(chosen.len() == k * d && rejected.len() == k * d);
        let mut profile = ptr::null_mut();
        // SAFETY: arrays of k * d floats, a valid out-pointer.
        check(unsafe { steer_model_infer_profile(model.0, chosen.as_ptr(), rejected.as_ptr(), k, d, &mut profile) })?;
        Ok(CProfile(profile))
    }

    fn profile_from(z: &[f32]) -> Res<CProfile> {
        let mut profile = ptr::null_mut();
        // SAFETY: z.len() floats and a valid out-pointer.
        check(unsafe { steer_profile_new(z.as_ptr(), z.len(), &mut profile) })?;
        Ok(CProfile(profile))
    }

    fn profile_values(profile: &CProfile) -> Vec<f32> {
        let mut len = usize::MAX;
        // SAFETY: a live profile and valid buffers of the stated sizes.
        unsafe {
            check(steer_profile_latent_dim(profile.0, &mut len)).unwrap();
            let mut values = vec![f32::NAN; len];
            check(steer_profile_read(profile.0, values.as_mut_ptr(), len)).unwrap();
            values
        }
    }

    fn score(model: &CModel, profile: &CProfile, options: &[f32], n: usize, d: usize) -> Res<Scored> {
        assert_eq!(options.len(), n * d);
        let (mut reward, mut std) = (vec![f32::NAN; n], vec![f32::NAN; n]);
        // SAFETY: n * d floats in, n floats out each.
        let status = unsafe {
            steer_model_score(model.0, profile.0, options.as_ptr(), n, d, reward.as_mut_ptr(), std.as_mut_ptr())
        };
        check(status)?;
        // Without the optional stds, the rewards are the same.
        let mut only = vec![f32::NAN; n];
        // SAFETY: as above, with out_stds NULL.
        let status = unsafe {
            steer_model_score(model.0, profile.0, options.as_ptr(), n, d, only.as_mut_ptr(), ptr::null_mut())
        };
        check(status).unwrap();
        assert_eq!(only, reward);
        Ok(Scored { reward, std })
    }

    fn preference(model: &CModel, profile: &CProfile, a: &[f32], b: &[f32]) -> Res<f32> {
        assert_eq!(a.len(), b.len());
        let mut p = f32::NAN;
        // SAFETY: two arrays of a.len() floats and a valid out-pointer.
        check(unsafe { steer_model_preference(model.0, profile.0, a.as_ptr(), b.as_ptr(), a.len(), &mut p) })?;
        Ok(p)
    }

    fn infer_profiles(
        model: &CModel,
        chosen: &[f32],
        rejected: &[f32],
        k: &[usize],
        max_k: usize,
        d: usize,
    ) -> Res<Vec<f32>> {
        let batch = k.len();
        assert!(chosen.len() == batch * max_k * d && rejected.len() == chosen.len());
        let len = batch * count(model, steer_model_latent_dim);
        let mut z = vec![f32::NAN; len];
        // SAFETY: arrays of the stated shapes, an output of `len` floats.
        let status = unsafe {
            steer_model_infer_profiles(
                model.0,
                chosen.as_ptr(),
                rejected.as_ptr(),
                k.as_ptr(),
                batch,
                max_k,
                d,
                z.as_mut_ptr(),
                len,
            )
        };
        check(status)?;
        Ok(z)
    }

    fn infer_profiles_padded(
        model: &CModel,
        context: &[f32],
        mask: &[f32],
        batch: usize,
        k: usize,
        d: usize,
    ) -> Res<Vec<f32>> {
        assert!(context.len() == batch * k * 2 * d && mask.len() == batch * k);
        let len = batch * count(model, steer_model_latent_dim);
        let mut z = vec![f32::NAN; len];
        // SAFETY: arrays of the stated shapes, an output of `len` floats.
        let status = unsafe {
            steer_model_infer_profiles_padded(
                model.0,
                context.as_ptr(),
                mask.as_ptr(),
                batch,
                k,
                d,
                z.as_mut_ptr(),
                len,
            )
        };
        check(status)?;
        Ok(z)
    }

    fn score_batch(
        model: &CModel,
        z: &[f32],
        batch: usize,
        latent_dim: usize,
        options: &[f32],
        n: usize,
        d: usize,
    ) -> Res<Scored> {
        assert!(z.len() == batch * latent_dim && options.len() == batch * n * d);
        let (mut reward, mut std) = (vec![f32::NAN; batch * n], vec![f32::NAN; batch * n]);
        // SAFETY: arrays of the stated shapes, outputs of batch * n floats.
        let status = unsafe {
            steer_model_score_batch(
                model.0,
                z.as_ptr(),
                batch,
                latent_dim,
                options.as_ptr(),
                n,
                d,
                reward.as_mut_ptr(),
                std.as_mut_ptr(),
            )
        };
        check(status)?;
        Ok(Scored { reward, std })
    }

    fn preference_batch(
        model: &CModel,
        z: &[f32],
        batch: usize,
        latent_dim: usize,
        a: &[f32],
        b: &[f32],
        n: usize,
        d: usize,
    ) -> Res<Vec<f32>> {
        assert!(z.len() == batch * latent_dim && a.len() == batch * n * d && b.len() == a.len());
        let mut p = vec![f32::NAN; batch * n];
        // SAFETY: arrays of the stated shapes, an output of batch * n floats.
        let status = unsafe {
            steer_model_preference_batch(
                model.0,
                z.as_ptr(),
                batch,
                latent_dim,
                a.as_ptr(),
                b.as_ptr(),
                n,
                d,
                p.as_mut_ptr(),
            )
        };
        check(status)?;
        Ok(p)
    }

    fn has_text(model: &CModel) -> bool {
        // Not the answer either way, so a call that writes nothing shows.
        let mut has_text = std::mem::MaybeUninit::<bool>::uninit();
        // SAFETY: a live model and a valid out-pointer; read only after a successful call wrote it.
        unsafe {
            check(steer_model_has_text(model.0, has_text.as_mut_ptr())).unwrap();
            has_text.assume_init()
        }
    }

    fn infer_profile_text(model: &CModel, prompts: &[&str], chosen: &[&str], rejected: &[&str]) -> Res<CProfile> {
        assert!(prompts.len() == chosen.len() && chosen.len() == rejected.len());
        let (prompts, chosen, rejected) = (CStrings::new(prompts), CStrings::new(chosen), CStrings::new(rejected));
        let mut profile = ptr::null_mut();
        // SAFETY: arrays of k valid strings, a valid out-pointer.
        let status = unsafe {
            steer_model_infer_profile_text(
                model.0,
                prompts.as_ptr(),
                chosen.as_ptr(),
                rejected.as_ptr(),
                prompts.len(),
                &mut profile,
            )
        };
        check(status)?;
        Ok(CProfile(profile))
    }

    fn infer_profiles_text(
        model: &CModel,
        prompts: &[&str],
        chosen: &[&str],
        rejected: &[&str],
        k: &[usize],
    ) -> Res<Vec<f32>> {
        assert!(prompts.len() == chosen.len() && chosen.len() == rejected.len());
        let (prompts, chosen, rejected) = (CStrings::new(prompts), CStrings::new(chosen), CStrings::new(rejected));
        let len = k.len() * count(model, steer_model_latent_dim);
        let mut z = vec![f32::NAN; len];
        // SAFETY: arrays of Σk valid strings, k.len() counts, an output of `len` floats.
        let status = unsafe {
            steer_model_infer_profiles_text(
                model.0,
                prompts.as_ptr(),
                chosen.as_ptr(),
                rejected.as_ptr(),
                k.as_ptr(),
                k.len(),
                z.as_mut_ptr(),
                len,
            )
        };
        check(status)?;
        Ok(z)
    }

    fn score_text(model: &CModel, profile: &CProfile, prompt: &str, responses: &[&str]) -> Res<Scored> {
        let n = responses.len();
        let prompt = CString::new(prompt).unwrap();
        let responses = CStrings::new(responses);
        let (mut reward, mut std) = (vec![f32::NAN; n], vec![f32::NAN; n]);
        // SAFETY: a valid string, n valid strings, n floats out each.
        let status = unsafe {
            steer_model_score_text(
                model.0,
                profile.0,
                prompt.as_ptr(),
                responses.as_ptr(),
                n,
                reward.as_mut_ptr(),
                std.as_mut_ptr(),
            )
        };
        check(status)?;
        // Without the optional stds, the rewards are the same.
        let mut only = vec![f32::NAN; n];
        // SAFETY: as above, with out_stds NULL.
        let status = unsafe {
            steer_model_score_text(
                model.0,
                profile.0,
                prompt.as_ptr(),
                responses.as_ptr(),
                n,
                only.as_mut_ptr(),
                ptr::null_mut(),
            )
        };
        check(status).unwrap();
        assert_eq!(only, reward);
        Ok(Scored { reward, std })
    }

    fn score_text_batch(
        model: &CModel,
        z: &[f32],
        batch: usize,
        latent_dim: usize,
        prompts: &[&str],
        responses: &[&str],
        n: usize,
    ) -> Res<Scored> {
        assert!(z.len() == batch * latent_dim && prompts.len() == batch && responses.len() == batch * n);
        let (prompts, responses) = (CStrings::new(prompts), CStrings::new(responses));
        let (mut reward, mut std) = (vec![f32::NAN; batch * n], vec![f32::NAN; batch * n]);
        // SAFETY: arrays of the stated lengths, outputs of batch * n floats.
        let status = unsafe {
            steer_model_score_text_batch(
                model.0,
                z.as_ptr(),
                batch,
                latent_dim,
                prompts.as_ptr(),
                responses.as_ptr(),
                n,
                reward.as_mut_ptr(),
                std.as_mut_ptr(),
            )
        };
        check(status)?;
        Ok(Scored { reward, std })
    }
}

/// Owned NUL-terminated copies of some strings and the `const char *const *` array C takes.
struct CStrings {
    _owned: Vec<CString>,
    pointers: Vec<*const std::ffi::c_char>,
}

impl CStrings {
    fn new(strings: &[&str]) -> CStrings {
        let owned: Vec<CString> = strings.iter().map(|s| CString::new(*s).unwrap()).collect();
        let pointers = owned.iter().map(|s| s.as_ptr()).collect();
        CStrings { _owned: owned, pointers }
    }

    fn as_ptr(&self) -> *const *const std::ffi::c_char {
        self.pointers.as_ptr()
    }

    fn len(&self) -> usize {
        self.pointers.len()
    }
}

behaviour_tests!(CApi);
