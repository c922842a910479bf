//! Latency of one user's request through the Steer runtime, next to the same graphs run by bare `ort`
//! calls: infer a profile from k = 10 context pairs, then score 2 options.
//!
//! The bundle is the demo's architecture (1-D task, H = 128) with seeded random weights; latency does
//! not depend on the weight values. Run with `make bench`.

use std::hint::black_box;

use candle_core::Device;
use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::{Array2, Array3};
use ort::session::Session;
use ort::value::TensorRef;
use steer_runtime::{LoadOptions, Model, ModelKind};
use steer_trainer::export::write_bundle;
use steer_trainer::train::{TrainConfig, init_model};

const K: usize = 10;

fn bench(c: &mut Criterion) {
    let cfg = TrainConfig::default().model_config(ModelKind::NpBtl);
    let (model, _) = init_model(&cfg, 0, &Device::Cpu).expect("model");
    let dir = tempfile::tempdir().expect("tempdir");
    write_bundle(&model, &cfg, dir.path(), serde_json::json!({}), serde_json::json!({})).expect("export");
    let options = LoadOptions::default();
    let steer = Model::load(dir.path(), &options).expect("load bundle");

    let d = cfg.embedding_dim;
    let chosen = Array2::from_shape_fn((K, d), |(i, _)| 0.9 - 0.05 * i as f32);
    let rejected = Array2::from_shape_fn((K, d), |(i, _)| 0.1 + 0.03 * i as f32);
    let candidates = Array2::from_shape_vec((2, d), vec![0.3f32, 0.8]).expect("options");

    let mut group = c.benchmark_group("profile_k10_then_score_2");
    group.bench_function("steer_runtime", |b| {
        b.iter(|| {
            let profile = steer.infer_profile(chosen.view(), rejected.view()).expect("profile");
            black_box(steer.score(&profile, candidates.view()).expect("score"))
        })
    });

    // The same two graphs through bare ort sessions, with inputs prepared outside the timed loop where
    // the runtime has to build them (the padded context and mask).
    let env = steer_runtime::producer::ort_environment(&options).expect("ort environment");
    let session = |file: &str| {
        Session::builder(&env)
            .and_then(|b| b.with_intra_threads(1)?.commit_from_file(dir.path().join(file)))
            .expect("session")
    };
    let (mut encoder, mut reward) = (session("encoder.onnx"), session("reward.onnx"));
    let mut context = Array3::<f32>::zeros((1, K, 2 * d));
    for i in 0..K {
        context[[0, i, 0]] = chosen[[i, 0]];
        context[[0, i, d]] = rejected[[i, 0]];
    }
    let mask = Array2::<f32>::ones((1, K));
    let options3 = candidates.clone().into_shape_with_order((1, 2, d)).expect("reshape");
    group.bench_function("bare_ort", |b| {
        b.iter(|| {
            let z = {
                let out = encoder
                    .run(ort::inputs![
                        "context" => TensorRef::from_array_view(context.view()).expect("context"),
                        "mask" => TensorRef::from_array_view(mask.view()).expect("mask"),
                    ])
                    .expect("encoder run");
                out["z"].try_extract_array::<f32>().expect("z").to_owned()
            };
            let out = reward
                .run(ort::inputs![
                    "options" => TensorRef::from_array_view(options3.view()).expect("options"),
                    "z" => TensorRef::from_array_view(z.view()).expect("z"),
                ])
                .expect("reward run");
            black_box(out["reward"].try_extract_array::<f32>().expect("reward").to_owned())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
