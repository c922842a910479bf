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

/// A bundle loaded through the C ABI and a profile for it, freed on drop.
struct Fixture {
    _dir: tempfile::TempDir,
    model: *mut steer_model,
    profile: *mut steer_profile,
}

impl Fixture {
    /// The np-btl test model (d = 3, latent_dim = 2) and a profile inferred from the behaviour suite's context.
    fn new() -> Fixture {
        Fixture::load(
            |dir| behaviour::bundle(dir, ModelKind::NpBtl),
            |model, profile| {
                // SAFETY: a live model, valid context arrays of 2 × 3 values and a valid out-pointer.
                unsafe {
                    steer_model_infer_profile(
                        model,
                        behaviour::CHOSEN.as_ptr(),
                        behaviour::REJECTED.as_ptr(),
                        2,
                        3,
                        profile,
                    )
                }
            },
        )
    }

    /// Writes a bundle with `write_bundle` into a fresh folder, loads it, and makes the profile with `make_profile`.
    fn load(
        write_bundle: impl FnOnce(&std::path::Path) -> std::path::PathBuf,
        make_profile: impl FnOnce(*const steer_model, *mut *mut steer_profile) -> steer_status,
    ) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let bundle = write_bundle(dir.path());
        let path = std::ffi::CString::new(bundle.to_str().unwrap()).unwrap();
        let (mut model, mut profile) = (null_mut(), null_mut());
        // SAFETY: a valid path and out-pointer.
        unsafe {
            assert_eq!(steer_model_load(path.as_ptr(), null(), &mut model), steer_status::Ok, "{}", message());
        }
        assert_eq!(make_profile(model, &mut profile), steer_status::Ok, "{}", message());
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

        // The batch calls over profile handles (issue 14): the array, and a NULL handle in it, are named.
        let mut slots = [null_mut::<steer_profile>(); 2];
        let s = slots.as_mut_ptr();
        let f = "steer_model_infer_profile_batch";
        expect_null(steer_model_infer_profile_batch(null(), c, r, k.as_ptr(), 1, 1, 3, s), f, "model");
        expect_null(steer_model_infer_profile_batch(m, null(), r, k.as_ptr(), 1, 1, 3, s), f, "chosen");
        expect_null(steer_model_infer_profile_batch(m, c, r, null(), 1, 1, 3, s), f, "k");
        expect_null(steer_model_infer_profile_batch(m, c, r, k.as_ptr(), 1, 1, 3, null_mut()), f, "out_profiles");
        let f = "steer_model_infer_profile_batch_padded";
        expect_null(steer_model_infer_profile_batch_padded(m, null(), mask.as_ptr(), 1, 1, 3, s), f, "context");
        expect_null(
            steer_model_infer_profile_batch_padded(m, six.as_ptr(), mask.as_ptr(), 1, 1, 3, null_mut()),
            f,
            "out_profiles",
        );
        let (handles, with_null) = ([p, p], [p, null()]);
        let f = "steer_model_score_profile_batch";
        let two = [0.5f32; 6];
        expect_null(steer_model_score_profile_batch(null(), handles.as_ptr(), 2, two.as_ptr(), 1, 3, o, o), f, "model");
        expect_null(steer_model_score_profile_batch(m, null(), 2, two.as_ptr(), 1, 3, o, o), f, "profiles");
        expect_null(
            steer_model_score_profile_batch(m, with_null.as_ptr(), 2, two.as_ptr(), 1, 3, o, o),
            f,
            "profiles[1]",
        );
        expect_null(steer_model_score_profile_batch(m, handles.as_ptr(), 2, null(), 1, 3, o, o), f, "options");
        expect_null(
            steer_model_score_profile_batch(m, handles.as_ptr(), 2, two.as_ptr(), 1, 3, null_mut(), o),
            f,
            "out_rewards",
        );
        let f = "steer_model_preference_profile_batch";
        let (a, b) = (two.as_ptr(), two.as_ptr());
        expect_null(steer_model_preference_profile_batch(m, null(), 2, a, b, 1, 3, o), f, "profiles");
        expect_null(steer_model_preference_profile_batch(m, with_null.as_ptr(), 2, a, b, 1, 3, o), f, "profiles[1]");
        expect_null(steer_model_preference_profile_batch(m, handles.as_ptr(), 2, a, null(), 1, 3, o), f, "b");
        expect_null(
            steer_model_preference_profile_batch(m, handles.as_ptr(), 2, a, b, 1, 3, null_mut()),
            f,
            "out_probabilities",
        );
        assert_eq!(slots, [null_mut(); 2], "out_profiles is written only on success");

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
    assert_eq!(name(108), "STEER_STATUS_TOKENIZER");
    assert_eq!(name(109), "STEER_STATUS_TOKENIZER_MISMATCH");
    assert_eq!(name(306), "STEER_STATUS_TOKENIZATION");
    assert_eq!(name(307), "STEER_STATUS_NO_TEXT_EMBEDDER");
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
        Error::ProfileLength { profile: s.clone(), expected: 2, found: 1 },
        Error::Tokenizer { path: path.clone(), message: s.clone() },
        Error::TokenizerMismatch { expected: s.clone(), found: s.clone() },
        Error::Tokenization { text: s.clone(), message: s.clone() },
        Error::NoTextEmbedder { kind: s.clone() },
        Error::InvalidGenerationParam { param: s.clone(), expected: s.clone(), found: s.clone() },
        Error::PromptTooLong { prompt_tokens: 1, max_new_tokens: 1, max_positions: 1 },
        Error::NoPolicy { kind: s.clone() },
        Error::ProfileSpace { profile: s.clone(), expected: s.clone(), found: s.clone() },
        Error::Poisoned { graph: s.clone() },
    ];
    for error in &errors {
        let status = error.status();
        assert_eq!(status as i32, error.code(), "{error:?}");
    }
    let runtime_codes: Vec<i32> = errors.iter().map(Error::code).collect();
    for &status in steer_status::all() {
        let value = status as i32;
        let runtime_range = (100..400).contains(&value) || (900..1000).contains(&value);
        assert_eq!(runtime_range, runtime_codes.contains(&value), "{status:?}: 1xx-3xx and 9xx are runtime codes");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The text calls. Their arguments are checked before the model is asked for its embedder, so these run on the
// fixture's bundle without text; the last test loads a text bundle.

#[test]
fn text_calls_reject_null_pointers_and_keep_out_parameters() {
    let fx = Fixture::new();
    let (m, p) = (fx.model as *const steer_model, fx.profile as *const steer_profile);
    let one = [c"yes".as_ptr()];
    let two = [c"yes".as_ptr(), c"no".as_ptr()];
    let with_null = [c"yes".as_ptr(), null()];
    let prompt = c"?".as_ptr();
    let z = behaviour::Z;
    let k = [1usize];
    let mut out = [SENTINEL; 8];
    let o = out.as_mut_ptr();
    let mut profile_out: *mut steer_profile = null_mut();
    let mut has_text = true;
    let (s1, s2) = (one.as_ptr(), two.as_ptr());

    // SAFETY: every pointer is NULL or valid; the library must reject the NULL ones before reading anything.
    unsafe {
        expect_null(steer_model_has_text(null(), &mut has_text), "steer_model_has_text", "model");
        expect_null(steer_model_has_text(m, null_mut()), "steer_model_has_text", "out_has_text");

        let f = "steer_model_infer_profile_text";
        expect_null(steer_model_infer_profile_text(null(), s1, s1, s1, 1, &mut profile_out), f, "model");
        // k > 0 with a NULL array.
        expect_null(steer_model_infer_profile_text(m, null(), s1, s1, 1, &mut profile_out), f, "prompts");
        expect_null(steer_model_infer_profile_text(m, s1, null(), s1, 1, &mut profile_out), f, "chosen");
        expect_null(steer_model_infer_profile_text(m, s1, s1, null(), 1, &mut profile_out), f, "rejected");
        expect_null(steer_model_infer_profile_text(m, s1, s1, s1, 1, null_mut()), f, "out_profile");
        // A NULL string inside an array is named by its index.
        let wn = with_null.as_ptr();
        expect_null(steer_model_infer_profile_text(m, s2, wn, s2, 2, &mut profile_out), f, "chosen[1]");

        let f = "steer_model_infer_profiles_text";
        let kp = k.as_ptr();
        expect_null(steer_model_infer_profiles_text(null(), s1, s1, s1, kp, 1, o, 8), f, "model");
        expect_null(steer_model_infer_profiles_text(m, s1, s1, s1, null(), 1, o, 8), f, "k");
        expect_null(steer_model_infer_profiles_text(m, null(), s1, s1, kp, 1, o, 8), f, "prompts");
        expect_null(steer_model_infer_profiles_text(m, s1, null(), s1, kp, 1, o, 8), f, "chosen");
        expect_null(steer_model_infer_profiles_text(m, s1, s1, null(), kp, 1, o, 8), f, "rejected");
        expect_null(steer_model_infer_profiles_text(m, s1, s1, s1, kp, 1, null_mut(), 8), f, "out_z");
        let k2 = [0usize, 2];
        expect_null(steer_model_infer_profiles_text(m, wn, s2, s2, k2.as_ptr(), 2, o, 8), f, "prompts[1]");

        let f = "steer_model_score_text";
        expect_null(steer_model_score_text(null(), p, prompt, s2, 2, o, o), f, "model");
        expect_null(steer_model_score_text(m, null(), prompt, s2, 2, o, o), f, "profile");
        expect_null(steer_model_score_text(m, p, null(), s2, 2, o, o), f, "prompt");
        expect_null(steer_model_score_text(m, p, prompt, null(), 2, o, o), f, "responses");
        expect_null(steer_model_score_text(m, p, prompt, wn, 2, o, o), f, "responses[1]");
        expect_null(steer_model_score_text(m, p, prompt, s2, 2, null_mut(), o), f, "out_rewards");

        let f = "steer_model_score_text_batch";
        let zp = z.as_ptr();
        expect_null(steer_model_score_text_batch(null(), zp, 1, 2, s1, s2, 2, o, o), f, "model");
        expect_null(steer_model_score_text_batch(m, null(), 1, 2, s1, s2, 2, o, o), f, "z");
        expect_null(steer_model_score_text_batch(m, zp, 1, 2, null(), s2, 2, o, o), f, "prompts");
        expect_null(steer_model_score_text_batch(m, zp, 1, 2, s1, null(), 2, o, o), f, "responses");
        expect_null(steer_model_score_text_batch(m, zp, 1, 2, s1, wn, 2, o, o), f, "responses[1]");
        expect_null(steer_model_score_text_batch(m, zp, 1, 2, s1, s2, 2, null_mut(), o), f, "out_rewards");

        let f = "steer_model_infer_profile_batch_text";
        let mut slots = [null_mut::<steer_profile>(); 1];
        expect_null(steer_model_infer_profile_batch_text(null(), s1, s1, s1, kp, 1, slots.as_mut_ptr()), f, "model");
        expect_null(steer_model_infer_profile_batch_text(m, null(), s1, s1, kp, 1, slots.as_mut_ptr()), f, "prompts");
        expect_null(steer_model_infer_profile_batch_text(m, s1, s1, s1, kp, 1, null_mut()), f, "out_profiles");
        assert!(slots[0].is_null());
        let f = "steer_model_score_text_profile_batch";
        let (one, with_null_handle) = ([p], [null::<steer_profile>()]);
        expect_null(steer_model_score_text_profile_batch(m, null(), 1, s1, s2, 2, o, o), f, "profiles");
        expect_null(
            steer_model_score_text_profile_batch(m, with_null_handle.as_ptr(), 1, s1, s2, 2, o, o),
            f,
            "profiles[0]",
        );
        expect_null(steer_model_score_text_profile_batch(m, one.as_ptr(), 1, s1, wn, 2, o, o), f, "responses[1]");
        expect_null(
            steer_model_score_text_profile_batch(m, one.as_ptr(), 1, s1, s2, 2, null_mut(), o),
            f,
            "out_rewards",
        );
    }
    assert_eq!(out, [SENTINEL; 8], "out-parameters are written only on success");
    assert!(profile_out.is_null());
    assert!(has_text);
}

#[test]
fn text_must_be_utf8_and_the_message_names_the_string() {
    let fx = Fixture::new();
    let (m, p) = (fx.model as *const steer_model, fx.profile as *const steer_profile);
    let invalid = c"caf\xe9".as_ptr();
    let yes = c"yes".as_ptr();
    let with_invalid = [yes, yes, invalid];
    let valid = [yes, yes, yes];
    let (bad, good) = (with_invalid.as_ptr(), valid.as_ptr());
    let z = behaviour::Z;
    let mut out = [SENTINEL; 8];
    let o = out.as_mut_ptr();
    let mut profile_out = null_mut();
    let utf8 = steer_status::InvalidUtf8;
    // SAFETY: arrays of valid pointers to NUL-terminated strings.
    unsafe {
        let status = steer_model_score_text(m, p, yes, bad, 3, o, null_mut());
        expect(status, utf8, "steer_model_score_text", "argument `responses[2]` is not valid UTF-8");
        let status = steer_model_score_text(m, p, invalid, good, 3, o, null_mut());
        expect(status, utf8, "steer_model_score_text", "argument `prompt` is not valid UTF-8");
        let status = steer_model_infer_profile_text(m, good, good, bad, 3, &mut profile_out);
        expect(status, utf8, "steer_model_infer_profile_text", "argument `rejected[2]` is not valid UTF-8");
        let k = [1usize, 2];
        let status = steer_model_infer_profiles_text(m, bad, good, good, k.as_ptr(), 2, o, 8);
        expect(status, utf8, "steer_model_infer_profiles_text", "argument `prompts[2]`");
        let status = steer_model_score_text_batch(m, z.as_ptr(), 1, 2, good, bad, 3, o, null_mut());
        expect(status, utf8, "steer_model_score_text_batch", "argument `responses[2]`");
    }
    assert_eq!(out, [SENTINEL; 8]);
    assert!(profile_out.is_null());
}

#[test]
fn text_counts_and_capacities_are_checked() {
    let fx = Fixture::new();
    let m = fx.model as *const steer_model;
    let yes = [c"yes".as_ptr(); 4];
    let s = yes.as_ptr();
    let z = [0.0f32; 4];
    let mut out = [SENTINEL; 8];
    let o = out.as_mut_ptr();
    // SAFETY: pointers are valid for what the library may read before it rejects the sizes.
    unsafe {
        // Counts whose sum overflows.
        let k = [usize::MAX, 2];
        let status = steer_model_infer_profiles_text(m, s, s, s, k.as_ptr(), 2, o, 8);
        expect(status, steer_status::InvalidArgument, "steer_model_infer_profiles_text", "`k` has counts");
        // An output smaller than batch × latent_dim.
        let k = [1usize, 1];
        let status = steer_model_infer_profiles_text(m, s, s, s, k.as_ptr(), 2, o, 3);
        let needle = "`out_z` holds 3 floats, but batch × latent_dim needs 4";
        expect(status, steer_status::BufferTooSmall, "steer_model_infer_profiles_text", needle);
        // batch × n that overflows.
        let status = steer_model_score_text_batch(m, z.as_ptr(), 2, 2, s, s, usize::MAX, o, null_mut());
        expect(status, steer_status::InvalidArgument, "steer_model_score_text_batch", "too large");
    }
    assert_eq!(out, [SENTINEL; 8]);
}

#[test]
fn text_calls_on_a_bundle_without_text_fail_with_no_text_embedder() {
    let fx = Fixture::new();
    let (m, p) = (fx.model as *const steer_model, fx.profile as *const steer_profile);
    let yes = [c"yes".as_ptr(); 2];
    let s = yes.as_ptr();
    let z = behaviour::Z;
    let k = [1usize];
    let mut out = [SENTINEL; 8];
    let o = out.as_mut_ptr();
    let mut profile_out = null_mut();
    let mut has_text = true;
    let no_text = steer_status::NoTextEmbedder;
    let needle = "np-btl bundle has no text embedder";
    // SAFETY: valid arguments throughout.
    unsafe {
        assert_eq!(steer_model_has_text(m, &mut has_text), steer_status::Ok);
        assert!(!has_text);
        let status = steer_model_infer_profile_text(m, s, s, s, 1, &mut profile_out);
        expect(status, no_text, "steer_model_infer_profile_text", needle);
        // Even with nothing to embed, a prior from text needs a text bundle.
        let status = steer_model_infer_profile_text(m, null(), null(), null(), 0, &mut profile_out);
        expect(status, no_text, "steer_model_infer_profile_text", needle);
        let status = steer_model_infer_profiles_text(m, s, s, s, k.as_ptr(), 1, o, 8);
        expect(status, no_text, "steer_model_infer_profiles_text", needle);
        let status = steer_model_score_text(m, p, c"?".as_ptr(), s, 2, o, o);
        expect(status, no_text, "steer_model_score_text", needle);
        let status = steer_model_score_text_batch(m, z.as_ptr(), 1, 2, s, s, 2, o, o);
        expect(status, no_text, "steer_model_score_text_batch", needle);
    }
    assert_eq!(out, [SENTINEL; 8]);
    assert!(profile_out.is_null());

    // A text bundle says it has text.
    let dir = tempfile::tempdir().unwrap();
    let bundle = behaviour::text_bundle(dir.path(), ModelKind::NpBtl);
    let path = std::ffi::CString::new(bundle.to_str().unwrap()).unwrap();
    let mut model = null_mut();
    // SAFETY: valid arguments; the model is freed once.
    unsafe {
        assert_eq!(steer_model_load(path.as_ptr(), null(), &mut model), steer_status::Ok, "{}", message());
        has_text = false;
        assert_eq!(steer_model_has_text(model, &mut has_text), steer_status::Ok);
        steer_model_free(model);
    }
    assert!(has_text);
}

/// The generation functions: NULL pointers, invalid UTF-8 in a prompt or a stop string, a row out of range.
/// (Parameters out of range, long prompts and bundles without a policy are in the behaviour suite.)
mod generation {
    use std::ffi::c_void;

    use super::*;

    impl Fixture {
        /// The policy bundle loaded through the C ABI, with the profile (1, 0).
        fn policy() -> Fixture {
            Fixture::load(behaviour::policy_bundle, |_, profile| {
                let z = behaviour::Z_A;
                // SAFETY: a valid array of z.len() values and a valid out-pointer.
                unsafe { steer_profile_new(z.as_ptr(), z.len(), profile) }
            })
        }

        fn defaults(&self) -> steer_generation_params {
            let mut params = std::mem::MaybeUninit::uninit();
            // SAFETY: a live model and a valid out-pointer; read after the call succeeded.
            unsafe {
                assert_eq!(steer_generation_params_default(self.model, params.as_mut_ptr()), steer_status::Ok);
                params.assume_init()
            }
        }
    }

    /// A pointer no successful call would write, to show out-parameters are left alone.
    fn sentinel<T>() -> *mut T {
        std::ptr::dangling_mut::<T>()
    }

    #[test]
    fn null_pointers_are_rejected_and_out_parameters_keep_their_values() {
        let fx = Fixture::policy();
        let (m, p) = (fx.model as *const steer_model, fx.profile as *const steer_profile);
        let prompts = [c"a".as_ptr()];
        let profiles = [p];
        let params = fx.defaults();
        let mut out: *mut steer_generation = sentinel();
        let mut best = 77usize;
        let mut flag = true;
        let f = "steer_model_generate";
        // SAFETY: every pointer is NULL or valid; the library must reject the NULL ones before reading anything.
        unsafe {
            expect_null(steer_model_has_policy(null(), &mut flag), "steer_model_has_policy", "model");
            expect_null(steer_model_has_policy(m, null_mut()), "steer_model_has_policy", "out_has_policy");
            let mut filled = params;
            filled.max_new_tokens = 999;
            expect_null(
                steer_generation_params_default(null(), &mut filled),
                "steer_generation_params_default",
                "model",
            );
            assert_eq!(filled.max_new_tokens, 999);
            let g = "steer_generation_params_default";
            expect_null(steer_generation_params_default(m, null_mut()), g, "out_params");

            let call = |model, prompts, profiles, n, params, out| {
                steer_model_generate(model, prompts, profiles, n, params, None, null_mut(), out)
            };
            expect_null(call(null(), prompts.as_ptr(), profiles.as_ptr(), 1, &params, &mut out), f, "model");
            expect_null(call(m, null(), profiles.as_ptr(), 1, &params, &mut out), f, "prompts");
            expect_null(call(m, prompts.as_ptr(), null(), 1, &params, &mut out), f, "profiles");
            expect_null(call(m, [null()].as_ptr(), profiles.as_ptr(), 1, &params, &mut out), f, "prompts[0]");
            expect_null(
                call(m, [prompts[0], prompts[0]].as_ptr(), [p, null()].as_ptr(), 2, &params, &mut out),
                f,
                "profiles[1]",
            );
            expect_null(call(m, prompts.as_ptr(), profiles.as_ptr(), 1, &params, null_mut()), f, "out_generation");
            let stop_null = steer_generation_params { stop: null(), n_stop: 1, ..params };
            expect_null(call(m, prompts.as_ptr(), profiles.as_ptr(), 1, &stop_null, &mut out), f, "stop");
            let stops = [c"e".as_ptr(), null()];
            let stop_element = steer_generation_params { stop: stops.as_ptr(), n_stop: 2, ..params };
            expect_null(call(m, prompts.as_ptr(), profiles.as_ptr(), 1, &stop_element, &mut out), f, "stop[1]");
            assert_eq!(out, sentinel(), "out_generation is written only on success");

            let b = "steer_model_generate_best_of_n";
            let mut rewards = [-5.0f32; 2];
            let r = rewards.as_mut_ptr();
            let a = c"a".as_ptr();
            expect_null(steer_model_generate_best_of_n(null(), a, p, 2, &params, &mut out, &mut best, r), b, "model");
            expect_null(steer_model_generate_best_of_n(m, null(), p, 2, &params, &mut out, &mut best, r), b, "prompt");
            expect_null(steer_model_generate_best_of_n(m, a, null(), 2, &params, &mut out, &mut best, r), b, "profile");
            let no_out = steer_model_generate_best_of_n(m, a, p, 2, &params, null_mut(), &mut best, r);
            expect_null(no_out, b, "out_generation");
            expect_null(steer_model_generate_best_of_n(m, a, p, 2, &params, &mut out, null_mut(), r), b, "out_best");
            assert_eq!((out, best, rewards), (sentinel(), 77, [-5.0; 2]));

            // The result's accessors.
            let mut n = 5usize;
            let mut text: *const c_char = sentinel();
            let mut reason = steer_finish_reason::Stop;
            let mut ids: *const u32 = sentinel();
            expect_null(steer_generation_count(null(), &mut n), "steer_generation_count", "generation");
            expect_null(steer_generation_text(null(), 0, &mut text, &mut n), "steer_generation_text", "generation");
            let fr = "steer_generation_finish_reason";
            expect_null(steer_generation_finish_reason(null(), 0, &mut reason), fr, "generation");
            expect_null(steer_generation_tokens(null(), 0, &mut ids, &mut n), "steer_generation_tokens", "generation");
            let tc = "steer_generation_token_count";
            expect_null(steer_generation_token_count(null(), 0, &mut n), tc, "generation");
            let pt = "steer_generation_prompt_tokens";
            expect_null(steer_generation_prompt_tokens(null(), 0, &mut n), pt, "generation");
            assert_eq!(
                (n, text, reason, ids),
                (5, sentinel::<c_char>().cast_const(), steer_finish_reason::Stop, sentinel::<u32>().cast_const())
            );
            steer_generation_free(null_mut());
        }
    }

    #[test]
    fn invalid_utf8_in_a_prompt_or_a_stop_string_is_named() {
        let fx = Fixture::policy();
        let (m, p) = (fx.model as *const steer_model, fx.profile as *const steer_profile);
        let bad = c"n\xffo".as_ptr();
        let params = fx.defaults();
        let mut out: *mut steer_generation = sentinel();
        let mut best = 77usize;
        let f = "steer_model_generate";
        // SAFETY: valid pointers to NUL-terminated strings throughout.
        unsafe {
            let prompts = [c"a".as_ptr(), bad];
            let status =
                steer_model_generate(m, prompts.as_ptr(), [p, p].as_ptr(), 2, &params, None, null_mut(), &mut out);
            expect(status, steer_status::InvalidUtf8, f, "argument `prompts[1]` is not valid UTF-8");
            let stops = [c"e".as_ptr(), bad];
            let with_stop = steer_generation_params { stop: stops.as_ptr(), n_stop: 2, ..params };
            let status =
                steer_model_generate(m, prompts.as_ptr(), [p].as_ptr(), 1, &with_stop, None, null_mut(), &mut out);
            expect(status, steer_status::InvalidUtf8, f, "argument `stop[1]` is not valid UTF-8");
            let b = "steer_model_generate_best_of_n";
            let status = steer_model_generate_best_of_n(m, bad, p, 2, &params, &mut out, &mut best, null_mut());
            expect(status, steer_status::InvalidUtf8, b, "argument `prompt` is not valid UTF-8");
            let status =
                steer_model_generate_best_of_n(m, c"a".as_ptr(), p, 2, &with_stop, &mut out, &mut best, null_mut());
            expect(status, steer_status::InvalidUtf8, b, "argument `stop[1]` is not valid UTF-8");
            assert_eq!((out, best), (sentinel(), 77));
        }
    }

    extern "C" fn count_tokens(
        user_data: *mut c_void,
        _row: usize,
        _token: u32,
        _text: *const c_char,
        _len: usize,
    ) -> bool {
        // SAFETY: `user_data` is the counter passed below.
        unsafe { *user_data.cast::<usize>() += 1 };
        true
    }

    #[test]
    fn results_hold_their_rows_and_reject_others() {
        let fx = Fixture::policy();
        let (m, p) = (fx.model as *const steer_model, fx.profile as *const steer_profile);
        let mut params = fx.defaults();
        assert_eq!((params.stop, params.n_stop, params.max_new_tokens), (null(), 0, 8));
        params.max_new_tokens = 3;
        let mut out = null_mut();
        let mut tokens = 0usize;
        // SAFETY: valid arguments; the result is read while alive and freed once.
        unsafe {
            let prompts = [c"a".as_ptr()];
            let user_data = (&mut tokens as *mut usize).cast();
            let status = steer_model_generate(
                m,
                prompts.as_ptr(),
                [p].as_ptr(),
                1,
                &params,
                Some(count_tokens),
                user_data,
                &mut out,
            );
            assert_eq!(status, steer_status::Ok, "{}", message());
            assert_eq!(tokens, 3);
            let (mut text, mut len) = (null(), 0usize);
            assert_eq!(steer_generation_text(out, 0, &mut text, &mut len), steer_status::Ok);
            assert_eq!(CStr::from_ptr(text).to_str().unwrap(), "a c a");
            assert_eq!(len, 5);
            let mut reason = steer_finish_reason::Eos;
            assert_eq!(steer_generation_finish_reason(out, 0, &mut reason), steer_status::Ok);
            assert_eq!(reason, steer_finish_reason::Length);
            let (mut sentinel_text, mut sentinel_len) = (text, 99usize);
            let status = steer_generation_text(out, 1, &mut sentinel_text, &mut sentinel_len);
            expect(
                status,
                steer_status::InvalidArgument,
                "steer_generation_text",
                "argument `row` is 1, but the result has 1 rows",
            );
            assert_eq!((sentinel_text, sentinel_len), (text, 99));
            let mut n = 99usize;
            let status = steer_generation_token_count(out, 7, &mut n);
            expect(status, steer_status::InvalidArgument, "steer_generation_token_count", "`row` is 7");
            assert_eq!(n, 99);
            steer_generation_free(out);
            for (value, name) in
                [(0, "eos"), (1, "stop"), (2, "length"), (3, "cancelled"), (4, "unknown"), (u32::MAX, "unknown")]
            {
                assert_eq!(CStr::from_ptr(steer_finish_reason_name(value)).to_str().unwrap(), name);
            }
        }
    }
}
