//! Bad input through the C ABI, the mistakes only a C caller can make: NULL pointers, invalid UTF-8, sizes that
//! overflow, buffers too small, unknown enum values, misaligned pointers. Each gets its own status and a message
//! naming the function and the argument, out-parameters keep their values, and nothing crashes. (Wrong dims, NaN
//! and broken bundles are in the behaviour suite, which runs through the C ABI too.)

mod behaviour;

use std::ffi::{CStr, c_char};
use std::ptr::{null, null_mut};

use steer::*;
use steer_runtime::ModelKind;

fn message() -> String {
    // SAFETY: never NULL; copied at once.
    unsafe { CStr::from_ptr(steer_last_error_message()) }.to_string_lossy().into_owned()
}

/// Asserts the status and that the message names `function` and contains `needle`.
#[track_caller]
fn expect(status: steer_status, expected: steer_status, function: &str, needle: &str) {
    let message = message();
    assert_eq!(status, expected, "{message}");
    assert!(message.starts_with(&format!("{function}: ")), "{message:?} should name {function}");
    assert!(message.contains(needle), "{message:?} should contain {needle:?}");
}

#[track_caller]
fn expect_null(status: steer_status, function: &str, argument: &str) {
    expect(status, steer_status::NullArgument, function, &format!("argument `{argument}` is NULL"));
}

/// A loaded np-btl test model (d = 3, latent_dim = 2) and a profile for it.
struct Fixture {
    _dir: tempfile::TempDir,
    model: *mut steer_model,
    profile: *mut steer_profile,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let bundle = behaviour::bundle(dir.path(), ModelKind::NpBtl);
        let path = std::ffi::CString::new(bundle.to_str().unwrap()).unwrap();
        let (mut model, mut profile) = (null_mut(), null_mut());
        // SAFETY: valid arguments throughout.
        unsafe {
            assert_eq!(steer_model_load(path.as_ptr(), null(), &mut model), steer_status::Ok, "{}", message());
            let status = steer_model_infer_profile(
                model,
                behaviour::CHOSEN.as_ptr(),
                behaviour::REJECTED.as_ptr(),
                2,
                3,
                &mut profile,
            );
            assert_eq!(status, steer_status::Ok, "{}", message());
        }
        Fixture { _dir: dir, model, profile }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // SAFETY: live handles, freed once.
        unsafe {
            steer_profile_free(self.profile);
            steer_model_free(self.model);
        }
    }
}

const SENTINEL: f32 = -12345.0;

#[test]
fn every_null_pointer_is_rejected_and_out_parameters_keep_their_values() {
    let fx = Fixture::new();
    let (m, p) = (fx.model as *const steer_model, fx.profile as *const steer_profile);
    let one = [0.5f32; 3];
    let six = [0.5f32; 6];
    let z = behaviour::Z;
    let mut out = [SENTINEL; 8];
    let o = out.as_mut_ptr();
    let mut size = 777usize;
    let mut model_out: *mut steer_model = null_mut();
    let mut profile_out: *mut steer_profile = null_mut();
    let (mut kind, mut provider, mut device, mut reason) = (steer_kind::Btl, steer_execution_provider::Cuda, 9, null());
    let k = [1usize];
    let path = c"/nowhere".as_ptr();

    // SAFETY: every pointer is NULL or valid; the library must reject the NULL ones before reading anything.
    unsafe {
        expect_null(steer_options_new(null_mut()), "steer_options_new", "out_options");
        let o_ = null_mut();
        let f = "steer_options_set_intra_op_threads";
        expect_null(steer_options_set_intra_op_threads(o_, 1), f, "options");
        let f = "steer_options_set_session_pool_size";
        expect_null(steer_options_set_session_pool_size(o_, 1), f, "options");
        expect_null(steer_options_set_ort_library(o_, path), "steer_options_set_ort_library", "options");
        let f = "steer_options_clear_execution_providers";
        expect_null(steer_options_clear_execution_providers(o_), f, "options");
        let f = "steer_options_add_execution_provider";
        expect_null(steer_options_add_execution_provider(o_, 0, 0), f, "options");
        let f = "steer_options_set_allow_cpu_fallback";
        expect_null(steer_options_set_allow_cpu_fallback(o_, true), f, "options");
        let mut options = null_mut();
        assert_eq!(steer_options_new(&mut options), steer_status::Ok);
        expect_null(steer_options_set_ort_library(options, null()), "steer_options_set_ort_library", "path");
        steer_options_free(options);

        expect_null(steer_model_load(null(), null(), &mut model_out), "steer_model_load", "bundle_dir");
        expect_null(steer_model_load(path, null(), null_mut()), "steer_model_load", "out_model");
        expect_null(steer_model_kind(null(), &mut kind), "steer_model_kind", "model");
        expect_null(steer_model_kind(m, null_mut()), "steer_model_kind", "out_kind");
        expect_null(steer_model_embedding_dim(null(), &mut size), "steer_model_embedding_dim", "model");
        expect_null(steer_model_embedding_dim(m, null_mut()), "steer_model_embedding_dim", "out_dim");
        expect_null(steer_model_latent_dim(null(), &mut size), "steer_model_latent_dim", "model");
        expect_null(steer_model_latent_dim(m, null_mut()), "steer_model_latent_dim", "out_dim");
        let count = "steer_model_execution_provider_count";
        expect_null(steer_model_execution_provider_count(null(), &mut size), count, "model");
        expect_null(steer_model_execution_provider_count(m, null_mut()), count, "out_count");
        let get = "steer_model_execution_provider";
        expect_null(steer_model_execution_provider(null(), 0, &mut provider, &mut device), get, "model");
        expect_null(steer_model_execution_provider(m, 0, null_mut(), &mut device), get, "out_provider");
        expect_null(steer_model_execution_provider(m, 0, &mut provider, null_mut()), get, "out_device_id");
        let count = "steer_model_provider_fallback_count";
        expect_null(steer_model_provider_fallback_count(null(), &mut size), count, "model");
        expect_null(steer_model_provider_fallback_count(m, null_mut()), count, "out_count");
        let get = "steer_model_provider_fallback";
        expect_null(steer_model_provider_fallback(null(), 0, &mut provider, &mut device, &mut reason), get, "model");
        expect_null(steer_model_provider_fallback(m, 0, null_mut(), &mut device, &mut reason), get, "out_provider");
        expect_null(steer_model_provider_fallback(m, 0, &mut provider, null_mut(), &mut reason), get, "out_device_id");
        expect_null(steer_model_provider_fallback(m, 0, &mut provider, &mut device, null_mut()), get, "out_reason");

        expect_null(steer_profile_new(null(), 2, &mut profile_out), "steer_profile_new", "z");
        expect_null(steer_profile_new(z.as_ptr(), 2, null_mut()), "steer_profile_new", "out_profile");
        expect_null(steer_profile_latent_dim(null(), &mut size), "steer_profile_latent_dim", "profile");
        expect_null(steer_profile_latent_dim(p, null_mut()), "steer_profile_latent_dim", "out_latent_dim");
        expect_null(steer_profile_read(null(), o, 8), "steer_profile_read", "profile");
        expect_null(steer_profile_read(p, null_mut(), 8), "steer_profile_read", "out_z");

        let f = "steer_model_infer_profile";
        expect_null(steer_model_infer_profile(null(), one.as_ptr(), one.as_ptr(), 1, 3, &mut profile_out), f, "model");
        expect_null(steer_model_infer_profile(m, null(), one.as_ptr(), 1, 3, &mut profile_out), f, "chosen");
        expect_null(steer_model_infer_profile(m, one.as_ptr(), null(), 1, 3, &mut profile_out), f, "rejected");
        expect_null(steer_model_infer_profile(m, one.as_ptr(), one.as_ptr(), 1, 3, null_mut()), f, "out_profile");

        let f = "steer_model_infer_profiles";
        let (c, r) = (one.as_ptr(), one.as_ptr());
        expect_null(steer_model_infer_profiles(null(), c, r, k.as_ptr(), 1, 1, 3, o, 8), f, "model");
        expect_null(steer_model_infer_profiles(m, null(), r, k.as_ptr(), 1, 1, 3, o, 8), f, "chosen");
        expect_null(steer_model_infer_profiles(m, c, null(), k.as_ptr(), 1, 1, 3, o, 8), f, "rejected");
        expect_null(steer_model_infer_profiles(m, c, r, null(), 1, 1, 3, o, 8), f, "k");
        expect_null(steer_model_infer_profiles(m, c, r, k.as_ptr(), 1, 1, 3, null_mut(), 8), f, "out_z");

        let f = "steer_model_infer_profiles_padded";
        let mask = [1.0f32];
        expect_null(steer_model_infer_profiles_padded(null(), six.as_ptr(), mask.as_ptr(), 1, 1, 3, o, 8), f, "model");
        expect_null(steer_model_infer_profiles_padded(m, null(), mask.as_ptr(), 1, 1, 3, o, 8), f, "context");
        expect_null(steer_model_infer_profiles_padded(m, six.as_ptr(), null(), 1, 1, 3, o, 8), f, "mask");
        expect_null(
            steer_model_infer_profiles_padded(m, six.as_ptr(), mask.as_ptr(), 1, 1, 3, null_mut(), 8),
            f,
            "out_z",
        );

        let f = "steer_model_score";
        expect_null(steer_model_score(null(), p, one.as_ptr(), 1, 3, o, o), f, "model");
        expect_null(steer_model_score(m, null(), one.as_ptr(), 1, 3, o, o), f, "profile");
        expect_null(steer_model_score(m, p, null(), 1, 3, o, o), f, "options");
        expect_null(steer_model_score(m, p, one.as_ptr(), 1, 3, null_mut(), o), f, "out_rewards");

        let f = "steer_model_preference";
        let mut prob = SENTINEL;
        expect_null(steer_model_preference(null(), p, one.as_ptr(), one.as_ptr(), 3, &mut prob), f, "model");
        expect_null(steer_model_preference(m, null(), one.as_ptr(), one.as_ptr(), 3, &mut prob), f, "profile");
        expect_null(steer_model_preference(m, p, null(), one.as_ptr(), 3, &mut prob), f, "a");
        expect_null(steer_model_preference(m, p, one.as_ptr(), null(), 3, &mut prob), f, "b");
        expect_null(steer_model_preference(m, p, one.as_ptr(), one.as_ptr(), 3, null_mut()), f, "out_probability");

        let f = "steer_model_score_batch";
        expect_null(steer_model_score_batch(null(), z.as_ptr(), 1, 2, one.as_ptr(), 1, 3, o, o), f, "model");
        expect_null(steer_model_score_batch(m, null(), 1, 2, one.as_ptr(), 1, 3, o, o), f, "z");
        expect_null(steer_model_score_batch(m, z.as_ptr(), 1, 2, null(), 1, 3, o, o), f, "options");
        expect_null(steer_model_score_batch(m, z.as_ptr(), 1, 2, one.as_ptr(), 1, 3, null_mut(), o), f, "out_rewards");

        let f = "steer_model_preference_batch";
        let (a, b) = (one.as_ptr(), one.as_ptr());
        expect_null(steer_model_preference_batch(null(), z.as_ptr(), 1, 2, a, b, 1, 3, o), f, "model");
        expect_null(steer_model_preference_batch(m, null(), 1, 2, a, b, 1, 3, o), f, "z");
        expect_null(steer_model_preference_batch(m, z.as_ptr(), 1, 2, null(), b, 1, 3, o), f, "a");
        expect_null(steer_model_preference_batch(m, z.as_ptr(), 1, 2, a, null(), 1, 3, o), f, "b");
        expect_null(steer_model_preference_batch(m, z.as_ptr(), 1, 2, a, b, 1, 3, null_mut()), f, "out_probabilities");

        assert_eq!(prob, SENTINEL);
    }
    assert_eq!(out, [SENTINEL; 8], "out-parameters are written only on success");
    assert_eq!((size, model_out, profile_out), (777, null_mut(), null_mut()));
    assert_eq!((kind, provider, device, reason), (steer_kind::Btl, steer_execution_provider::Cuda, 9, null()));
}

#[test]
fn free_null_does_nothing() {
    // SAFETY: NULL is documented as a no-op.
    unsafe {
        steer_options_free(null_mut());
        steer_model_free(null_mut());
        steer_profile_free(null_mut());
    }
}

#[test]
fn paths_must_be_utf8() {
    let invalid: &[u8] = b"out/\xff\xfe/bundle\0";
    let path = invalid.as_ptr().cast::<c_char>();
    let mut model = null_mut();
    let mut options = null_mut();
    // SAFETY: NUL-terminated strings, valid out-pointers.
    unsafe {
        expect(steer_model_load(path, null(), &mut model), steer_status::InvalidUtf8, "steer_model_load", "UTF-8");
        assert!(model.is_null());
        assert_eq!(steer_options_new(&mut options), steer_status::Ok);
        let status = steer_options_set_ort_library(options, path);
        expect(status, steer_status::InvalidUtf8, "steer_options_set_ort_library", "`path` is not valid UTF-8");
        steer_options_free(options);
        // An empty path is valid UTF-8 and names no bundle.
        expect(
            steer_model_load(c"".as_ptr(), null(), &mut model),
            steer_status::BundleNotFound,
            "steer_model_load",
            "",
        );
    }
}

#[test]
fn sizes_counts_capacities_and_enum_values_are_checked() {
    let fx = Fixture::new();
    let (m, p) = (fx.model as *const steer_model, fx.profile as *const steer_profile);
    let one = [0.5f32; 3];
    let mut out = [SENTINEL; 8];
    let mut profile = null_mut();
    // SAFETY: pointers are valid for what the library may read before it rejects the sizes.
    unsafe {
        // k × d that overflows, or that cannot be memory.
        let f = "steer_model_infer_profile";
        let status = steer_model_infer_profile(m, one.as_ptr(), one.as_ptr(), usize::MAX, 2, &mut profile);
        expect(status, steer_status::InvalidArgument, f, "too large");
        let status =
            steer_model_infer_profiles_padded(m, one.as_ptr(), one.as_ptr(), 1, 1, usize::MAX, out.as_mut_ptr(), 8);
        expect(status, steer_status::InvalidArgument, "steer_model_infer_profiles_padded", "`d`");
        let status = steer_model_score_batch(
            m,
            one.as_ptr(),
            1,
            2,
            one.as_ptr(),
            usize::MAX,
            usize::MAX,
            out.as_mut_ptr(),
            null_mut(),
        );
        expect(status, steer_status::InvalidArgument, "steer_model_score_batch", "too large");

        // A user's k larger than max_k.
        let k = [1usize, 3];
        let six = [0.5f32; 12];
        let f = "steer_model_infer_profiles";
        let status =
            steer_model_infer_profiles(m, six.as_ptr(), six.as_ptr(), k.as_ptr(), 2, 2, 3, out.as_mut_ptr(), 8);
        expect(status, steer_status::InvalidArgument, f, "`k` [1] is 3; expected at most max_k = 2");

        // Output buffers smaller than the result.
        let k = [1usize, 2];
        let status =
            steer_model_infer_profiles(m, six.as_ptr(), six.as_ptr(), k.as_ptr(), 2, 2, 3, out.as_mut_ptr(), 3);
        expect(status, steer_status::BufferTooSmall, f, "`out_z` holds 3 floats, but batch × latent_dim needs 4");
        let status = steer_profile_read(p, out.as_mut_ptr(), 1);
        expect(status, steer_status::BufferTooSmall, "steer_profile_read", "needs 2");
        assert_eq!(out, [SENTINEL; 8]);
        assert_eq!(steer_profile_read(p, out.as_mut_ptr(), 8), steer_status::Ok);
        behaviour::assert_close(&out[..2], &behaviour::Z);
        assert_eq!(&out[2..], &[SENTINEL; 6], "only latent_dim floats are written");

        // Unknown enum values and indices past the end.
        let mut options = null_mut();
        assert_eq!(steer_options_new(&mut options), steer_status::Ok);
        let f = "steer_options_add_execution_provider";
        expect(steer_options_add_execution_provider(options, 7, 0), steer_status::InvalidArgument, f, "is 7");
        steer_options_free(options);
        let (mut provider, mut device) = (steer_execution_provider::Cuda, 9);
        let status = steer_model_execution_provider(m, 1, &mut provider, &mut device);
        expect(status, steer_status::InvalidArgument, "steer_model_execution_provider", "below the count, 1");
        let mut reason = null();
        let status = steer_model_provider_fallback(m, 0, &mut provider, &mut device, &mut reason);
        expect(status, steer_status::InvalidArgument, "steer_model_provider_fallback", "below the count, 0");
        assert_eq!((provider, device, reason), (steer_execution_provider::Cuda, 9, null()));

        // Misaligned float arrays and out-pointers.
        let bytes = [0u32; 8];
        let misaligned = bytes.as_ptr().cast::<u8>().wrapping_add(1).cast::<f32>();
        let status = steer_model_score(m, p, misaligned, 1, 3, out.as_mut_ptr(), null_mut());
        expect(status, steer_status::InvalidArgument, "steer_model_score", "not aligned");
        let mut sizes = [0usize; 2];
        let status = steer_model_latent_dim(m, sizes.as_mut_ptr().cast::<u8>().wrapping_add(1).cast());
        expect(status, steer_status::InvalidArgument, "steer_model_latent_dim", "not aligned");
    }
}

#[test]
fn the_last_error_message_is_per_thread_and_cleared_by_success() {
    let fx = Fixture::new();
    let mut dim = 0usize;
    // SAFETY: valid or NULL pointers as documented.
    unsafe {
        assert_eq!(steer_model_embedding_dim(null(), &mut dim), steer_status::NullArgument);
        let first = steer_last_error_message();
        assert!(!CStr::from_ptr(first).is_empty());
        // Another thread has its own message.
        std::thread::spawn(|| assert_eq!(message(), "")).join().unwrap();
        assert!(message().contains("`model` is NULL"));
        // Value-returning functions leave it alone; the next status-returning call replaces it.
        assert!(!steer_version().is_null() && steer_abi_version() == STEER_ABI_VERSION);
        assert!(message().contains("`model` is NULL"));
        assert_eq!(steer_model_embedding_dim(fx.model, &mut dim), steer_status::Ok);
        assert_eq!((message(), dim), (String::new(), 3));
    }
}

#[test]
fn statuses_and_kinds_have_names() {
    let name = |status: i32| {
        // SAFETY: static strings.
        unsafe { CStr::from_ptr(steer_status_name(status)) }.to_str().unwrap().to_string()
    };
    assert_eq!(name(0), "STEER_STATUS_OK");
    assert_eq!(name(400), "STEER_STATUS_NULL_ARGUMENT");
    assert_eq!(name(305), "STEER_STATUS_PROFILE_LENGTH");
    assert_eq!(name(-1), "STEER_STATUS_UNKNOWN");
    assert_eq!(name(401), "STEER_STATUS_INVALID_UTF8");
    for &status in steer_status::all() {
        assert_eq!(name(status as i32), status.name());
    }
    // SAFETY: static strings.
    let kind = |k: u32| unsafe { CStr::from_ptr(steer_kind_name(k)) }.to_str().unwrap();
    assert_eq!([kind(0), kind(1), kind(2), kind(3)], ["np-btl", "btl", "dpl", "unknown"]);
}

#[test]
fn every_runtime_error_code_is_a_status_with_the_same_value() {
    use std::path::PathBuf;
    use steer_runtime::Error;
    let (path, s) = (PathBuf::from("x"), String::from("s"));
    let errors = [
        Error::BundleNotFound { path: path.clone() },
        Error::Io { path: path.clone(), source: std::io::Error::other("e") },
        Error::ManifestParse { path: path.clone(), message: s.clone() },
        Error::UnsupportedFormatVersion { found: s.clone(), supported: 1 },
        Error::InvalidManifest { field: s.clone(), expected: s.clone(), found: s.clone() },
        Error::MissingFile { path: path.clone() },
        Error::HashMismatch { path: path.clone(), expected: s.clone(), actual: s.clone() },
        Error::GraphSignature { graph: s.clone(), tensor: s.clone(), expected: s.clone(), found: s.clone() },
        Error::OrtNotFound { searched: vec![], required_minor: 31 },
        Error::OrtLoad { path: path.clone(), message: s.clone() },
        Error::OrtNotOnnxRuntime { path: path.clone(), message: s.clone() },
        Error::OrtVersion { path: path.clone(), found: s.clone(), required_minor: 31 },
        Error::OrtAlreadyLoaded { loaded: path.clone(), requested: path.clone() },
        Error::OrtEnvironment { message: s.clone() },
        Error::Session { graph: s.clone(), message: s.clone() },
        Error::ProviderUnavailable {
            provider: steer_runtime::ExecutionProvider::Cuda { device_id: 0 },
            reason: s.clone(),
        },
        Error::Inference { graph: s.clone(), message: s.clone() },
        Error::UnexpectedOutput { graph: s.clone(), tensor: s.clone(), expected: s.clone(), found: s.clone() },
        Error::InvalidOptions { option: s.clone(), expected: s.clone(), found: s.clone() },
        Error::ShapeMismatch { input: s.clone(), expected: s.clone(), found: s.clone() },
        Error::NonFinite { input: s.clone(), index: vec![0], value: f32::NAN },
        Error::EmptyInput { input: s.clone(), expected: s.clone() },
        Error::InvalidMask { index: vec![0], value: 0.5 },
        Error::ProfileLength { expected: 2, found: 1 },
        Error::Poisoned { graph: s.clone() },
    ];
    for error in &errors {
        let status = steer_status::of_runtime_error(error);
        assert_eq!(status as i32, error.code(), "{error:?}");
    }
    let runtime_codes: Vec<i32> = errors.iter().map(Error::code).collect();
    for &status in steer_status::all() {
        let value = status as i32;
        let runtime_range = (100..400).contains(&value) || (900..1000).contains(&value);
        assert_eq!(runtime_range, runtime_codes.contains(&value), "{status:?}: 1xx-3xx and 9xx are runtime codes");
    }
}
