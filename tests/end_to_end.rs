//! End-to-end: candle model → our ONNX export → bundle → runtime (ONNX Runtime).
//! Parity, bundle validation, and a short seeded training run.

use std::fs;
use std::path::Path;

use candle_core::{Device, Tensor};
use ndarray::{Array2, Array3};
use rand::SeedableRng;
use rand::rngs::StdRng;
use steer_runtime::{LoadOptions, Model, ModelKind};
use steer_trainer::eval::{EvalConfig, evaluate, parity};
use steer_trainer::export::write_bundle;
use steer_trainer::model::{ModelConfig, RewardModel};
use steer_trainer::sampler::{ContextSize, Sampler};
use steer_trainer::tasks::{Split, Task, TaskSpec};
use steer_trainer::train::{TrainConfig, init_model, train};

fn export_random(kind: ModelKind, dim: usize, dir: &Path) -> RewardModel {
    let cfg = ModelConfig { kind, embedding_dim: dim, hidden: 32, heads: 4 };
    let (model, _) = init_model(&cfg, 11, &Device::Cpu).unwrap();
    write_bundle(&model, &cfg, dir, serde_json::json!({}), serde_json::json!({})).unwrap();
    model
}

fn load(dir: &Path) -> steer_runtime::Result<Model> {
    Model::load(dir, &LoadOptions::default())
}

#[test]
fn parity_candle_vs_onnxruntime_with_mixed_k_and_k_zero() {
    let task = Task::generate(TaskSpec::GaussianRho { rho: 0.3 }, 2_000, 5).unwrap();
    let sampler = Sampler::new(&task, 20).unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    // Padded batch with k ~ U{0..10}: mixed context sizes, k = 0 rows included.
    let mixed = sampler.sample(Split::Test, 64, ContextSize::Uniform { max: 10 }, &mut rng).unwrap();
    assert!(mixed.k.contains(&0) && mixed.k.iter().any(|&k| k >= 5), "want mixed k: {:?}", mixed.k);
    let only_k0 = sampler.sample(Split::Test, 16, ContextSize::Fixed(0), &mut rng).unwrap();
    for kind in [ModelKind::NpBtl, ModelKind::Btl, ModelKind::Dpl] {
        let dir = tempfile::tempdir().unwrap();
        let candle = export_random(kind, 2, dir.path());
        let model = load(dir.path()).unwrap();
        for batch in [&mixed, &only_k0] {
            let diff = parity(&candle, &model, batch).unwrap();
            assert!(diff.max_normwise_diff <= 1e-5 && diff.max_probability_diff <= 1e-5, "{kind}: {diff:?}");
        }
    }
}

#[test]
fn empty_context_axis_gives_the_population_prior() {
    let dir = tempfile::tempdir().unwrap();
    let candle = export_random(ModelKind::NpBtl, 1, dir.path());
    let model = load(dir.path()).unwrap();
    // K = 0 in the graph itself, and k = 0 through the single-user call: both are z0 = out(0).
    let z_batch = model
        .infer_profiles_padded(Array3::<f32>::zeros((3, 0, 2)).view(), Array2::<f32>::zeros((3, 0)).view())
        .unwrap();
    let z_one = model.infer_profile(Array2::<f32>::zeros((0, 1)).view(), Array2::<f32>::zeros((0, 1)).view()).unwrap();
    let RewardModel::NpBtl(np) = &candle else { unreachable!() };
    let prior = candle_core::Module::forward(
        &np.encoder.out,
        &Tensor::zeros((1, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
    )
    .unwrap()
    .flatten_all()
    .unwrap()
    .to_vec1::<f32>()
    .unwrap();
    for profile in &z_batch {
        for (a, b) in profile.as_slice().iter().zip(&prior) {
            assert!((a - b).abs() <= 1e-5);
        }
    }
    for (a, b) in z_one.as_slice().iter().zip(&prior) {
        assert!((a - b).abs() <= 1e-5);
    }
}

#[test]
fn encoder_graph_itself_accepts_an_empty_context_axis() {
    // The runtime pads k = 0 to one masked slot; the exported graph must also take K = 0 as it is.
    let dir = tempfile::tempdir().unwrap();
    export_random(ModelKind::NpBtl, 1, dir.path());
    let env = steer_runtime::producer::ort_environment(&LoadOptions::default()).unwrap();
    let mut session =
        ort::session::Session::builder(&env).unwrap().commit_from_file(dir.path().join("encoder.onnx")).unwrap();
    let context = Array3::<f32>::zeros((3, 0, 2));
    let mask = Array2::<f32>::zeros((3, 0));
    let out = session
        .run(ort::inputs![
            "context" => ort::value::TensorRef::from_array_view(context.view()).unwrap(),
            "mask" => ort::value::TensorRef::from_array_view(mask.view()).unwrap(),
        ])
        .unwrap();
    let z_graph = out["z"].try_extract_array::<f32>().unwrap().to_owned();
    let model = load(dir.path()).unwrap();
    let z_runtime = model.infer_profiles_padded(context.view(), mask.view()).unwrap();
    assert_eq!(z_graph.shape(), &[3, 32]);
    assert_eq!(z_runtime.len(), 3);
    for (a, b) in z_graph.iter().zip(z_runtime.iter().flat_map(|p| p.as_slice())) {
        assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
    }
}

#[test]
fn preference_probabilities_are_complementary_through_the_runtime() {
    for kind in [ModelKind::NpBtl, ModelKind::Btl, ModelKind::Dpl] {
        let dir = tempfile::tempdir().unwrap();
        export_random(kind, 2, dir.path());
        let model = load(dir.path()).unwrap();
        let chosen = Array2::from_shape_vec((2, 2), vec![0.1f32, 0.9, -0.3, 0.2]).unwrap();
        let rejected = Array2::from_shape_vec((2, 2), vec![0.5f32, -0.4, 0.8, 0.0]).unwrap();
        let profile = model.infer_profile(chosen.view(), rejected.view()).unwrap();
        let a = ndarray::arr1(&[0.3f32, -1.2]);
        let b = ndarray::arr1(&[-0.7f32, 0.4]);
        let p_ab = model.preference(&profile, a.view(), b.view()).unwrap();
        let p_ba = model.preference(&profile, b.view(), a.view()).unwrap();
        assert!((p_ab + p_ba - 1.0).abs() < 1e-6, "{kind}: {p_ab} + {p_ba}");
    }
}

/// Copies a freshly exported bundle and lets `damage` break it.
fn damaged(damage: impl FnOnce(&Path)) -> steer_runtime::Error {
    let dir = tempfile::tempdir().unwrap();
    export_random(ModelKind::NpBtl, 1, dir.path());
    damage(dir.path());
    match load(dir.path()) {
        Ok(_) => panic!("a damaged bundle loaded"),
        Err(e) => e,
    }
}

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join(steer_runtime::manifest::MANIFEST_FILE);
    let mut value: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut value);
    fs::write(&path, serde_json::to_string(&value).unwrap()).unwrap();
}

#[test]
fn bundle_validation_errors() {
    let missing = damaged(|d| fs::remove_file(d.join("encoder.onnx")).unwrap());
    assert!(matches!(missing, steer_runtime::Error::MissingFile { .. }), "{missing}");
    assert!(missing.to_string().contains("encoder.onnx"));

    let corrupt = damaged(|d| {
        let mut bytes = fs::read(d.join("reward.onnx")).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(d.join("reward.onnx"), bytes).unwrap();
    });
    assert!(matches!(corrupt, steer_runtime::Error::HashMismatch { .. }), "{corrupt}");

    let version = damaged(|d| edit_manifest(d, |m| m["format_version"] = 99.into()));
    assert!(matches!(version, steer_runtime::Error::UnsupportedFormatVersion { .. }), "{version}");
    assert!(version.to_string().contains("99"));

    // The manifest claims 2-D options but the graphs were exported for 1-D ones.
    let dims = damaged(|d| edit_manifest(d, |m| m["dims"]["embedding_dim"] = 2.into()));
    assert!(dims.to_string().contains("embedding") || dims.to_string().contains("options"), "{dims}");
    let codes = [&missing, &corrupt, &version, &dims].map(|e| e.code());
    let mut unique = codes.to_vec();
    unique.dedup();
    assert_eq!(unique.len(), 4, "each failure has its own code: {codes:?}");

    let no_folder = load(Path::new("/nonexistent/steer-bundle")).unwrap_err();
    assert!(matches!(no_folder, steer_runtime::Error::BundleNotFound { .. }));
}

#[test]
fn bad_inputs_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    export_random(ModelKind::NpBtl, 2, dir.path());
    let model = load(dir.path()).unwrap();
    let ok = Array2::<f32>::zeros((1, 2));
    let wrong_dim = Array2::<f32>::zeros((1, 3));
    let mut nan = Array2::<f32>::zeros((1, 2));
    nan[[0, 1]] = f32::NAN;
    assert!(model.infer_profile(wrong_dim.view(), wrong_dim.view()).is_err());
    let nan_err = model.infer_profile(nan.view(), ok.view()).unwrap_err();
    assert!(nan_err.to_string().to_lowercase().contains("nan") || nan_err.to_string().contains("finite"), "{nan_err}");
    let profile = model.infer_profile(ok.view(), ok.view()).unwrap();
    assert!(model.score(&profile, Array2::<f32>::zeros((0, 2)).view()).is_err(), "no options is an error");
    assert!(model.score(&profile, Array2::<f32>::zeros((4, 1)).view()).is_err(), "wrong option size");
}

#[test]
fn short_seeded_training_beats_btl_at_k10() {
    let cfg = TrainConfig {
        hidden: 64,
        heads: 4,
        steps: 500,
        baseline_steps: 200,
        eval_every: 50,
        val_tasks: 256,
        ..TrainConfig::default()
    };
    let task = Task::generate(cfg.task, cfg.n_pairs, cfg.seed).unwrap();
    let eval = EvalConfig { ks: vec![0, 10], n_tasks: 400, ..EvalConfig::default() };
    let mut acc = std::collections::BTreeMap::new();
    for kind in [ModelKind::NpBtl, ModelKind::Btl] {
        let trained = train(kind, &task, &cfg, false).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_bundle(&trained.model, &trained.config, dir.path(), serde_json::json!({}), serde_json::json!({}))
            .unwrap();
        let model = load(dir.path()).unwrap();
        let result = evaluate(&model, &task, &eval, Some(&trained.model)).unwrap();
        let parity = result.parity.unwrap();
        assert!(parity.max_normwise_diff <= 1e-5 && parity.max_probability_diff <= 1e-5, "{kind}: {parity:?}");
        acc.insert(kind, result.accuracy["all"]["10"]);
    }
    let (np, btl) = (acc[&ModelKind::NpBtl], acc[&ModelKind::Btl]);
    assert!(btl > 65.0 && btl < 82.0, "BTL should sit near 75%: {btl}");
    assert!(np > btl + 10.0, "NP-BTL {np} must beat BTL {btl} clearly at k = 10");
}
