//! What a call through the C ABI costs beyond the Rust call it wraps: the same calls on the same bundle, once
//! through `steer_runtime` and once through the `extern "C"` functions (NULL and alignment checks, shape checks,
//! the panic boundary, the thread-local message, copying results into the caller's buffers). The target is under
//! 1 µs per call.
//!
//! The bundle has the demo's NP-BTL architecture (d = 1, H = 128) with seeded random weights (the test kit's). Run with
//! `cargo bench -p steer-ffi --bench call_overhead`.

use std::hint::black_box;
use std::ptr;

use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::{Array2, ArrayView1};
use steer::*;
use steer_runtime::{LoadOptions, Model};
use steer_testkit::{NpBtlShape, np_btl_bundle};

const K: usize = 10;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    np_btl_bundle(dir.path(), NpBtlShape::DEMO, 0);

    let rust = Model::load(dir.path(), &LoadOptions::default()).expect("load through Rust");
    let path = std::ffi::CString::new(dir.path().to_str().expect("UTF-8 path")).expect("path");
    let mut c_model = ptr::null_mut();
    // SAFETY: a valid path and out-pointer.
    let status = unsafe { steer_model_load(path.as_ptr(), ptr::null(), &mut c_model) };
    assert_eq!(status, steer_status::Ok);

    let chosen: Vec<f32> = (0..K).map(|i| 0.9 - 0.05 * i as f32).collect();
    let rejected: Vec<f32> = (0..K).map(|i| 0.1 + 0.03 * i as f32).collect();
    let candidates = [0.3f32, 0.8];
    let chosen2 = Array2::from_shape_vec((K, 1), chosen.clone()).expect("chosen");
    let rejected2 = Array2::from_shape_vec((K, 1), rejected.clone()).expect("rejected");
    let candidates2 = Array2::from_shape_vec((2, 1), candidates.to_vec()).expect("candidates");
    let profile = rust.infer_profile(chosen2.view(), rejected2.view()).expect("profile");
    let mut c_profile = ptr::null_mut();
    // SAFETY: arrays of K floats and a valid out-pointer.
    let status =
        unsafe { steer_model_infer_profile(c_model, chosen.as_ptr(), rejected.as_ptr(), K, 1, &mut c_profile) };
    assert_eq!(status, steer_status::Ok);

    let mut group = c.benchmark_group("embedding_dim");
    group.bench_function("rust", |b| b.iter(|| black_box(black_box(&rust).dims().embedding_dim)));
    group.bench_function("c_abi", |b| {
        let mut d = 0usize;
        // SAFETY: a live model and a valid out-pointer.
        b.iter(|| unsafe { black_box(steer_model_embedding_dim(black_box(c_model), &mut d)) })
    });
    group.finish();

    let mut group = c.benchmark_group("score_2_options");
    group.bench_function("rust", |b| b.iter(|| black_box(rust.score(&profile, candidates2.view()).expect("score"))));
    group.bench_function("c_abi", |b| {
        let mut rewards = [0.0f32; 2];
        // SAFETY: live handles, 2 floats in and out.
        b.iter(|| unsafe {
            let status =
                steer_model_score(c_model, c_profile, candidates.as_ptr(), 2, 1, rewards.as_mut_ptr(), ptr::null_mut());
            black_box((status, rewards))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("preference");
    let (a, b) = (ArrayView1::from(&candidates[..1]), ArrayView1::from(&candidates[1..]));
    group.bench_function("rust", |bench| bench.iter(|| black_box(rust.preference(&profile, a, b).expect("p"))));
    group.bench_function("c_abi", |bench| {
        let mut p = 0.0f32;
        // SAFETY: live handles, one float each for a and b, a valid out-pointer.
        bench.iter(|| unsafe {
            black_box(steer_model_preference(c_model, c_profile, &candidates[0], &candidates[1], 1, &mut p))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("infer_profile_k10");
    group.bench_function("rust", |b| {
        b.iter(|| black_box(rust.infer_profile(chosen2.view(), rejected2.view()).expect("profile")))
    });
    group.bench_function("c_abi", |b| {
        // SAFETY: arrays of K floats, a valid out-pointer; each profile is freed.
        b.iter(|| unsafe {
            let mut out = ptr::null_mut();
            let status = steer_model_infer_profile(c_model, chosen.as_ptr(), rejected.as_ptr(), K, 1, &mut out);
            steer_profile_free(black_box(out));
            status
        })
    });
    group.finish();

    // SAFETY: live handles, freed once.
    unsafe {
        steer_profile_free(c_profile);
        steer_model_free(c_model);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(60).warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
