//! The behaviour suite through the C ABI: the same test bodies as `tests/rust_api.rs`, calling the `extern "C"`
//! functions of libsteer the way a C program does (raw pointers, out-parameters, status codes, the thread-local
//! message).

mod behaviour;

use std::ffi::{CStr, CString, c_char, c_void};
use std::path::Path;
use std::ptr;

use behaviour::{Api, Failure, OnToken, Options, Res, Scored};
use steer::*;
use steer_runtime::{BestOfN, Dims, ExecutionProvider, FinishReason, Generation, GenerationParams, ModelKind};

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
        other => panic!("the C ABI has no value for {other}"),
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
    ) -> Res<Vec<CProfile>> {
        let batch = k.len();
        assert!(chosen.len() == batch * max_k * d && rejected.len() == chosen.len());
        let (c, r) = (chosen.as_ptr(), rejected.as_ptr());
        // SAFETY: arrays of the stated shapes, `batch` handle slots out.
        let profiles = out_profiles(batch, |out| unsafe {
            steer_model_infer_profile_batch(model.0, c, r, k.as_ptr(), batch, max_k, d, out)
        });
        // SAFETY: as above, an output of `len` floats.
        let raw = raw_z(model, batch, |z, len| unsafe {
            steer_model_infer_profiles(model.0, c, r, k.as_ptr(), batch, max_k, d, z, len)
        });
        agree(profiles, raw)
    }

    fn infer_profiles_padded(
        model: &CModel,
        context: &[f32],
        mask: &[f32],
        batch: usize,
        k: usize,
        d: usize,
    ) -> Res<Vec<CProfile>> {
        assert!(context.len() == batch * k * 2 * d && mask.len() == batch * k);
        let (c, m) = (context.as_ptr(), mask.as_ptr());
        // SAFETY: arrays of the stated shapes, `batch` handle slots out.
        let profiles = out_profiles(batch, |out| unsafe {
            steer_model_infer_profile_batch_padded(model.0, c, m, batch, k, d, out)
        });
        // SAFETY: as above, an output of `len` floats.
        let raw = raw_z(model, batch, |z, len| unsafe {
            steer_model_infer_profiles_padded(model.0, c, m, batch, k, d, z, len)
        });
        agree(profiles, raw)
    }

    fn score_batch(model: &CModel, profiles: &[&CProfile], options: &[f32], n: usize, d: usize) -> Res<Scored> {
        let batch = profiles.len();
        assert_eq!(options.len(), batch * n * d);
        let handles = handles(profiles);
        let (mut reward, mut std) = (vec![f32::NAN; batch * n], vec![f32::NAN; batch * n]);
        // SAFETY: `batch` live handles, arrays of the stated shapes, outputs of batch * n floats.
        let status = unsafe {
            steer_model_score_profile_batch(
                model.0,
                handles.as_ptr(),
                batch,
                options.as_ptr(),
                n,
                d,
                reward.as_mut_ptr(),
                std.as_mut_ptr(),
            )
        };
        check(status)?;
        // The raw-float twin gives the same numbers for the same values.
        let (z, latent_dim) = stacked(profiles);
        let (mut raw_reward, mut raw_std) = (vec![f32::NAN; batch * n], vec![f32::NAN; batch * n]);
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
                raw_reward.as_mut_ptr(),
                raw_std.as_mut_ptr(),
            )
        };
        check(status).unwrap();
        assert_eq!((&raw_reward, &raw_std), (&reward, &std));
        Ok(Scored { reward, std })
    }

    fn preference_batch(
        model: &CModel,
        profiles: &[&CProfile],
        a: &[f32],
        b: &[f32],
        n: usize,
        d: usize,
    ) -> Res<Vec<f32>> {
        let batch = profiles.len();
        assert!(a.len() == batch * n * d && b.len() == a.len());
        let handles = handles(profiles);
        let mut p = vec![f32::NAN; batch * n];
        // SAFETY: `batch` live handles, arrays of the stated shapes, an output of batch * n floats.
        let status = unsafe {
            steer_model_preference_profile_batch(
                model.0,
                handles.as_ptr(),
                batch,
                a.as_ptr(),
                b.as_ptr(),
                n,
                d,
                p.as_mut_ptr(),
            )
        };
        check(status)?;
        let (z, latent_dim) = stacked(profiles);
        let mut raw = vec![f32::NAN; batch * n];
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
                raw.as_mut_ptr(),
            )
        };
        check(status).unwrap();
        assert_eq!(raw, p);
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
    ) -> Res<Vec<CProfile>> {
        assert!(prompts.len() == chosen.len() && chosen.len() == rejected.len());
        let (prompts, chosen, rejected) = (CStrings::new(prompts), CStrings::new(chosen), CStrings::new(rejected));
        let (p, c, r, batch) = (prompts.as_ptr(), chosen.as_ptr(), rejected.as_ptr(), k.len());
        // SAFETY: arrays of Σk valid strings, k.len() counts, `batch` handle slots out.
        let profiles = out_profiles(batch, |out| unsafe {
            steer_model_infer_profile_batch_text(model.0, p, c, r, k.as_ptr(), batch, out)
        });
        // SAFETY: as above, an output of `len` floats.
        let raw = raw_z(model, batch, |z, len| unsafe {
            steer_model_infer_profiles_text(model.0, p, c, r, k.as_ptr(), batch, z, len)
        });
        agree(profiles, raw)
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
        profiles: &[&CProfile],
        prompts: &[&str],
        responses: &[&str],
        n: usize,
    ) -> Res<Scored> {
        let batch = profiles.len();
        assert!(prompts.len() == batch && responses.len() == batch * n);
        let (prompts, responses) = (CStrings::new(prompts), CStrings::new(responses));
        let handles = handles(profiles);
        let (mut reward, mut std) = (vec![f32::NAN; batch * n], vec![f32::NAN; batch * n]);
        // SAFETY: `batch` live handles, arrays of the stated lengths, outputs of batch * n floats.
        let status = unsafe {
            steer_model_score_text_profile_batch(
                model.0,
                handles.as_ptr(),
                batch,
                prompts.as_ptr(),
                responses.as_ptr(),
                n,
                reward.as_mut_ptr(),
                std.as_mut_ptr(),
            )
        };
        check(status)?;
        let (z, latent_dim) = stacked(profiles);
        let (mut raw_reward, mut raw_std) = (vec![f32::NAN; batch * n], vec![f32::NAN; batch * n]);
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
                raw_reward.as_mut_ptr(),
                raw_std.as_mut_ptr(),
            )
        };
        check(status).unwrap();
        assert_eq!((&raw_reward, &raw_std), (&reward, &std));
        Ok(Scored { reward, std })
    }

    fn has_policy(model: &CModel) -> bool {
        let mut has_policy = std::mem::MaybeUninit::<bool>::uninit();
        // SAFETY: a live model and a valid out-pointer; read only after a successful call wrote it.
        unsafe {
            check(steer_model_has_policy(model.0, has_policy.as_mut_ptr())).unwrap();
            has_policy.assume_init()
        }
    }

    fn generation_defaults(model: &CModel) -> Res<GenerationParams> {
        let mut params = std::mem::MaybeUninit::<steer_generation_params>::uninit();
        // SAFETY: a live model and a valid out-pointer; read only after a successful call wrote it.
        check(unsafe { steer_generation_params_default(model.0, params.as_mut_ptr()) })?;
        // SAFETY: written by the successful call; its stop strings live as long as the process.
        let params = unsafe { params.assume_init() };
        let stop = (0..params.n_stop)
            // SAFETY: `n_stop` valid NUL-terminated strings.
            .map(|i| unsafe { CStr::from_ptr(*params.stop.add(i)) }.to_str().unwrap().to_string())
            .collect();
        Ok(GenerationParams {
            max_new_tokens: params.max_new_tokens,
            temperature: params.temperature,
            top_k: params.top_k,
            top_p: params.top_p,
            repetition_penalty: params.repetition_penalty,
            seed: params.seed,
            stop,
        })
    }

    fn generate(
        model: &CModel,
        prompts: &[&str],
        profiles: &[&CProfile],
        params: Option<&GenerationParams>,
        on_token: Option<OnToken<'_>>,
    ) -> Res<Vec<Generation>> {
        assert_eq!(prompts.len(), profiles.len());
        let n = prompts.len();
        let prompts = CStrings::new(prompts);
        let handles: Vec<*const steer_profile> = profiles.iter().map(|p| p.0.cast_const()).collect();
        let params = params.map(CParams::new);
        let params_ptr = params.as_ref().map_or(ptr::null(), |p| &p.params as *const steer_generation_params);
        let mut out = ptr::null_mut();
        let status = match on_token {
            // SAFETY: arrays of n valid strings and handles, valid parameters, a valid out-pointer.
            None => unsafe {
                steer_model_generate(
                    model.0,
                    prompts.as_ptr(),
                    handles.as_ptr(),
                    n,
                    params_ptr,
                    None,
                    ptr::null_mut(),
                    &mut out,
                )
            },
            Some(on_token) => {
                let mut on_token: &mut dyn FnMut(usize, u32, &str) -> bool = on_token;
                let user_data = (&mut on_token as *mut &mut dyn FnMut(usize, u32, &str) -> bool).cast::<c_void>();
                // SAFETY: as above; `user_data` is the closure `trampoline` expects, alive during the call.
                unsafe {
                    steer_model_generate(
                        model.0,
                        prompts.as_ptr(),
                        handles.as_ptr(),
                        n,
                        params_ptr,
                        Some(trampoline),
                        user_data,
                        &mut out,
                    )
                }
            }
        };
        let result = check(status);
        if result.is_err() {
            assert!(out.is_null(), "out_generation is written only on success");
        }
        result?;
        let generation = CGeneration(out);
        assert_eq!(generation.count(), n);
        Ok((0..n).map(|row| generation.row(row)).collect())
    }

    fn generate_best_of_n(
        model: &CModel,
        prompt: &str,
        profile: &CProfile,
        n: usize,
        params: Option<&GenerationParams>,
    ) -> Res<BestOfN> {
        let prompt = CString::new(prompt).unwrap();
        let params = params.map(CParams::new);
        let params_ptr = params.as_ref().map_or(ptr::null(), |p| &p.params as *const steer_generation_params);
        let (mut out, mut best, mut rewards) = (ptr::null_mut(), usize::MAX, vec![f32::NAN; n]);
        // SAFETY: a valid string and handle, valid parameters, valid out-pointers, `n` floats.
        let status = unsafe {
            steer_model_generate_best_of_n(
                model.0,
                prompt.as_ptr(),
                profile.0,
                n,
                params_ptr,
                &mut out,
                &mut best,
                rewards.as_mut_ptr(),
            )
        };
        let result = check(status);
        if result.is_err() {
            assert!(out.is_null() && best == usize::MAX, "nothing is written on failure");
            assert!(rewards.iter().all(|r| r.is_nan()), "nothing is written on failure");
        }
        result?;
        let generation = CGeneration(out);
        assert_eq!(generation.count(), n);
        let candidates = (0..n).map(|row| generation.row(row)).collect();
        // Without the optional rewards, the same call gives the same best candidate.
        let (mut again, mut best_again) = (ptr::null_mut(), usize::MAX);
        // SAFETY: as above, with out_rewards NULL.
        let status = unsafe {
            steer_model_generate_best_of_n(
                model.0,
                prompt.as_ptr(),
                profile.0,
                n,
                params_ptr,
                &mut again,
                &mut best_again,
                ptr::null_mut(),
            )
        };
        check(status).unwrap();
        let again = CGeneration(again);
        assert_eq!(best_again, best);
        assert_eq!((0..n).map(|row| again.row(row)).collect::<Vec<_>>(), candidates);
        Ok(BestOfN { best, candidates, rewards })
    }
}

/// Calls the `&mut dyn FnMut` behind `user_data` with the event; checks the delta is NUL-terminated UTF-8.
unsafe extern "C" fn trampoline(
    user_data: *mut c_void,
    row: usize,
    token_id: u32,
    text_delta: *const c_char,
    len: usize,
) -> bool {
    // SAFETY: `user_data` is the `&mut dyn FnMut` set up in `generate`; `text_delta` holds `len` bytes and a NUL.
    let (on_token, bytes) = unsafe {
        let on_token = &mut *user_data.cast::<&mut dyn FnMut(usize, u32, &str) -> bool>();
        (on_token, std::slice::from_raw_parts(text_delta.cast::<u8>(), len + 1))
    };
    assert_eq!(bytes[len], 0, "the delta is NUL-terminated");
    on_token(row, token_id, std::str::from_utf8(&bytes[..len]).expect("deltas are UTF-8"))
}

/// A `steer_generation_params` and the stop strings it points to.
struct CParams {
    params: steer_generation_params,
    _stop: CStrings,
}

impl CParams {
    fn new(params: &GenerationParams) -> CParams {
        let stop = CStrings::new(&params.stop.iter().map(String::as_str).collect::<Vec<_>>());
        let params = steer_generation_params {
            max_new_tokens: params.max_new_tokens,
            temperature: params.temperature,
            top_k: params.top_k,
            top_p: params.top_p,
            repetition_penalty: params.repetition_penalty,
            seed: params.seed,
            stop: if stop.len() == 0 { ptr::null() } else { stop.as_ptr() },
            n_stop: stop.len(),
        };
        CParams { params, _stop: stop }
    }
}

/// An owned `steer_generation *`.
struct CGeneration(*mut steer_generation);

impl Drop for CGeneration {
    fn drop(&mut self) {
        // SAFETY: a live handle from this library, freed once.
        unsafe { steer_generation_free(self.0) }
    }
}

impl CGeneration {
    fn count(&self) -> usize {
        let mut n = usize::MAX;
        // SAFETY: a live handle and a valid out-pointer.
        check(unsafe { steer_generation_count(self.0, &mut n) }).unwrap();
        n
    }

    /// Row `row` read back through every accessor.
    fn row(&self, row: usize) -> Generation {
        let (mut text, mut len, mut reason) = (ptr::null(), usize::MAX, steer_finish_reason::Cancelled);
        let (mut ids, mut n_ids, mut count, mut prompt_tokens) = (ptr::null(), usize::MAX, usize::MAX, usize::MAX);
        // SAFETY: a live handle and valid out-pointers; the text and ids are read while the handle lives.
        unsafe {
            check(steer_generation_text(self.0, row, &mut text, &mut len)).unwrap();
            check(steer_generation_finish_reason(self.0, row, &mut reason)).unwrap();
            check(steer_generation_tokens(self.0, row, &mut ids, &mut n_ids)).unwrap();
            check(steer_generation_token_count(self.0, row, &mut count)).unwrap();
            check(steer_generation_prompt_tokens(self.0, row, &mut prompt_tokens)).unwrap();
            let bytes = std::slice::from_raw_parts(text.cast::<u8>(), len + 1);
            assert_eq!(bytes[len], 0, "the text is NUL-terminated");
            assert_eq!(CStr::from_ptr(text).to_bytes().len(), len);
            assert_eq!(count, n_ids);
            let token_ids = if n_ids == 0 { Vec::new() } else { std::slice::from_raw_parts(ids, n_ids).to_vec() };
            let finish = match reason {
                steer_finish_reason::Eos => FinishReason::Eos,
                steer_finish_reason::Stop => FinishReason::Stop,
                steer_finish_reason::Length => FinishReason::Length,
                steer_finish_reason::Cancelled => FinishReason::Cancelled,
            };
            let name = CStr::from_ptr(steer_finish_reason_name(reason as u32)).to_str().unwrap();
            assert_eq!(name, format!("{finish:?}").to_lowercase());
            Generation {
                text: std::str::from_utf8(&bytes[..len]).unwrap().to_string(),
                token_ids,
                prompt_tokens,
                finish,
            }
        }
    }
}

/// Owned NUL-terminated copies of some strings and the `const char *const *` array C takes.
/// Runs a call that writes `batch` profile handles, and owns them.
fn out_profiles(batch: usize, call: impl FnOnce(*mut *mut steer_profile) -> steer_status) -> Res<Vec<CProfile>> {
    let mut slots = vec![ptr::null_mut(); batch];
    check(call(slots.as_mut_ptr()))?;
    assert!(slots.iter().all(|p| !p.is_null()), "a successful call fills every slot");
    Ok(slots.into_iter().map(CProfile).collect())
}

/// Runs a call that writes `batch × latent_dim` raw floats.
fn raw_z(model: &CModel, batch: usize, call: impl FnOnce(*mut f32, usize) -> steer_status) -> Res<Vec<f32>> {
    let len = batch * count(model, steer_model_latent_dim);
    let mut z = vec![f32::NAN; len];
    check(call(z.as_mut_ptr(), len))?;
    Ok(z)
}

/// A batch call that returns profile handles and its raw-float twin agree: the same status, the same values.
fn agree(profiles: Res<Vec<CProfile>>, raw: Res<Vec<f32>>) -> Res<Vec<CProfile>> {
    match (&profiles, raw) {
        (Ok(profiles), Ok(raw)) => {
            assert_eq!(profiles.iter().flat_map(CApi::profile_values).collect::<Vec<_>>(), raw);
        }
        (Err(handles), Err(raw)) => assert_eq!(handles.code, raw.code, "{} / {}", handles.message, raw.message),
        (handles, raw) => panic!("the two forms disagree: {:?} vs {raw:?}", handles.as_ref().map(Vec::len)),
    }
    profiles
}

/// The handles, as a C `const steer_profile *const *` array.
fn handles(profiles: &[&CProfile]) -> Vec<*const steer_profile> {
    profiles.iter().map(|p| p.0.cast_const()).collect()
}

/// The profiles' floats as one `[batch, latent_dim]` array (for the raw batch calls), with `latent_dim`.
fn stacked(profiles: &[&CProfile]) -> (Vec<f32>, usize) {
    let z: Vec<f32> = profiles.iter().flat_map(|p| CApi::profile_values(p)).collect();
    let latent_dim = profiles.first().map_or(0, |p| CApi::profile_values(p).len());
    (z, latent_dim)
}

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
