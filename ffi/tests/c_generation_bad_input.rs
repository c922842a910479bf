//! Bad input to the generation functions that only a C caller can pass: NULL pointers, invalid UTF-8 in a prompt
//! or a stop string, a row out of range. Each gets its status and a message naming the function and the argument,
//! and out-parameters keep their values. (Parameters out of range, long prompts and bundles without a policy are
//! in the behaviour suite, which runs through the C ABI too.)

mod behaviour;

use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr::{null, null_mut};

use steer::*;

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

/// The policy bundle loaded through the C ABI, with the profile (1, 0).
struct Fixture {
    _dir: tempfile::TempDir,
    model: *mut steer_model,
    profile: *mut steer_profile,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let bundle = behaviour::policy_bundle(dir.path());
        let path = CString::new(bundle.to_str().unwrap()).unwrap();
        let (mut model, mut profile) = (null_mut(), null_mut());
        // SAFETY: valid arguments throughout.
        unsafe {
            assert_eq!(steer_model_load(path.as_ptr(), null(), &mut model), steer_status::Ok, "{}", message());
            let z = behaviour::Z_A;
            assert_eq!(steer_profile_new(z.as_ptr(), z.len(), &mut profile), steer_status::Ok, "{}", message());
        }
        Fixture { _dir: dir, model, profile }
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

impl Drop for Fixture {
    fn drop(&mut self) {
        // SAFETY: live handles, freed once.
        unsafe {
            steer_profile_free(self.profile);
            steer_model_free(self.model);
        }
    }
}

/// A pointer no successful call would write, to show out-parameters are left alone.
fn sentinel<T>() -> *mut T {
    std::ptr::dangling_mut::<T>()
}

#[test]
fn null_pointers_are_rejected_and_out_parameters_keep_their_values() {
    let fx = Fixture::new();
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
        expect_null(steer_generation_params_default(null(), &mut filled), "steer_generation_params_default", "model");
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
    let fx = Fixture::new();
    let (m, p) = (fx.model as *const steer_model, fx.profile as *const steer_profile);
    let bad = c"n\xffo".as_ptr();
    let params = fx.defaults();
    let mut out: *mut steer_generation = sentinel();
    let mut best = 77usize;
    let f = "steer_model_generate";
    // SAFETY: valid pointers to NUL-terminated strings throughout.
    unsafe {
        let prompts = [c"a".as_ptr(), bad];
        let status = steer_model_generate(m, prompts.as_ptr(), [p, p].as_ptr(), 2, &params, None, null_mut(), &mut out);
        expect(status, steer_status::InvalidUtf8, f, "argument `prompts[1]` is not valid UTF-8");
        let stops = [c"e".as_ptr(), bad];
        let with_stop = steer_generation_params { stop: stops.as_ptr(), n_stop: 2, ..params };
        let status = steer_model_generate(m, prompts.as_ptr(), [p].as_ptr(), 1, &with_stop, None, null_mut(), &mut out);
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
    let fx = Fixture::new();
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
