//! Loading and running real (tiny, hand-encoded) ONNX graphs through ONNX Runtime.

use steer_testkit as common;

use std::path::Path;
use std::sync::Arc;

use common::{D, Graph, ensure_ort, expected_reward, expected_z, reward_graph, test_bundle, write_bundle};
use ndarray::{Array2, Array3, ArrayView2, ShapeBuilder, array, s};
use steer_runtime::{
    Context, Dims, Error, ExecutionProvider, LoadOptions, Model, ModelKind, Profile, Reward, preference_probability,
};

const D_EMB: usize = 3;
const LATENT: usize = 2;
const NP_DIMS: Dims = Dims { embedding_dim: D_EMB, latent_dim: LATENT };
const FLAT_DIMS: Dims = Dims { embedding_dim: D_EMB, latent_dim: 0 };

fn load(dir: &Path, kind: ModelKind) -> Model {
    ensure_ort();
    let dims = if kind.is_conditioned() { NP_DIMS } else { FLAT_DIMS };
    Model::load(test_bundle(dir, kind, dims), &LoadOptions::default()).unwrap()
}

fn rows(a: ArrayView2<'_, f32>) -> Vec<Vec<f32>> {
    a.rows().into_iter().map(|r| r.to_vec()).collect()
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-5 * (1.0 + y.abs()))
}

fn load_err(dir: &Path, options: &LoadOptions) -> Error {
    ensure_ort();
    Model::load(dir, options).unwrap_err()
}

#[test]
fn np_btl_profiles_match_the_encoder() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load(tmp.path(), ModelKind::NpBtl);
    assert_eq!(model.kind(), ModelKind::NpBtl);
    assert_eq!(model.dims(), NP_DIMS);
    assert_eq!(model.execution_providers(), &[ExecutionProvider::Cpu]);
    assert!(model.provider_fallbacks().is_empty());

    let chosen = array![[1.0f32, 0.5, -0.5], [0.2, 0.1, 0.0]];
    let rejected = array![[-1.0f32, 0.0, 2.0], [0.3, 0.3, 0.3]];
    let profile = model.infer_profile(chosen.view(), rejected.view()).unwrap();
    let expected = expected_z(&rows(chosen.view()), &rows(rejected.view()), D_EMB, LATENT);
    assert!(close(profile.as_slice(), &expected), "{:?} vs {expected:?}", profile.as_slice());

    // k = 0: the prior, which for this encoder is zero.
    let none = Array2::<f32>::zeros((0, D_EMB));
    let prior = model.infer_profile(none.view(), none.view()).unwrap();
    assert_eq!(prior.as_slice(), &[0.0, 0.0]);

    // Batched, with a different k per user, equals one call per user.
    let one = array![[0.7f32, -0.2, 0.4]];
    let one_rejected = array![[0.0f32, 0.9, -0.3]];
    let users = [
        Context::new(chosen.view(), rejected.view()),
        Context::new(none.view(), none.view()),
        Context::new(one.view(), one_rejected.view()),
    ];
    let batch = model.infer_profiles(&users).unwrap();
    assert_eq!(batch.len(), 3);
    for (b, user) in users.iter().enumerate() {
        let single = model.infer_profile(user.chosen, user.rejected).unwrap();
        assert!(close(batch[b].as_slice(), single.as_slice()));
        assert_eq!(batch[b].space(), model.profile_space().as_deref(), "batch profiles carry the encoder");
    }

    // The padded form, including K = 0 and a non-contiguous context.
    let mut context = Array3::<f32>::zeros((2, 2, 2 * D_EMB));
    context.slice_mut(s![0, .., ..D_EMB]).assign(&chosen);
    context.slice_mut(s![0, .., D_EMB..]).assign(&rejected);
    let mask = array![[1.0f32, 1.0], [0.0, 0.0]];
    let padded = model.infer_profiles_padded(context.view(), mask.view()).unwrap();
    assert!(close(padded[0].as_slice(), &expected));
    assert_eq!(padded[1].as_slice(), &[0.0, 0.0]);
    assert_eq!(padded[1].space(), model.profile_space().as_deref());
    let mut column_major = Array3::<f32>::zeros((2, 2, 2 * D_EMB).f());
    column_major.assign(&context);
    assert!(!column_major.is_standard_layout());
    assert_eq!(model.infer_profiles_padded(column_major.view(), mask.view()).unwrap(), padded);
    let empty_k = model.infer_profiles_padded(Array3::zeros((4, 0, 2 * D_EMB)).view(), Array2::zeros((4, 0)).view());
    assert_eq!(empty_k.unwrap(), vec![Profile::from_vec(vec![0.0; LATENT]).unwrap(); 4]);
}

/// One stored profile per row of `z`.
fn profiles(z: &Array2<f32>) -> Vec<Profile> {
    z.rows().into_iter().map(|row| Profile::from_vec(row.to_vec()).unwrap()).collect()
}

#[test]
fn np_btl_scores_and_preferences_match_the_reward_graph() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load(tmp.path(), ModelKind::NpBtl);
    let profile = Profile::from_vec(vec![0.5, -1.5]).unwrap();
    let options = array![[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0], [0.3, -0.2, 0.9]];

    let scores = model.score(&profile, options.view()).unwrap();
    assert_eq!(scores.std, None);
    let expected: Vec<f32> = options
        .rows()
        .into_iter()
        .map(|o| expected_reward(ModelKind::NpBtl, o.as_slice().unwrap(), profile.as_slice()).0)
        .collect();
    assert!(close(&scores.reward, &expected), "{:?} vs {expected:?}", scores.reward);

    // A transposed (non-contiguous) view gives the same scores.
    let options_t = options.t().to_owned();
    assert_eq!(model.score(&profile, options_t.t()).unwrap(), scores);

    let p = model.preference(&profile, options.row(0), options.row(1)).unwrap();
    let want = preference_probability(ModelKind::NpBtl, Reward::point(expected[0]), Reward::point(expected[1]));
    assert!((p - want).abs() < 1e-6, "{p} vs {want}");

    // Batches: two users, their own profiles.
    let z = array![[0.5f32, -1.5], [2.0, 0.25]];
    let users = profiles(&z);
    let mut batch_options = Array3::<f32>::zeros((2, 3, D_EMB));
    batch_options.slice_mut(s![0, .., ..]).assign(&options);
    batch_options.slice_mut(s![1, .., ..]).assign(&(&options * -2.0));
    let batch = model.score_batch(&users, batch_options.view()).unwrap();
    assert_eq!(batch.reward.dim(), (2, 3));
    for b in 0..2 {
        let user = Profile::from_vec(z.row(b).to_vec()).unwrap();
        let single = model.score(&user, batch_options.slice(s![b, .., ..])).unwrap();
        assert!(close(batch.reward.row(b).as_slice().unwrap(), &single.reward));
    }

    let a = batch_options.slice(s![.., 0..2, ..]).to_owned();
    let b = batch_options.slice(s![.., 1..3, ..]).to_owned();
    let prefs = model.preference_batch(&users, a.view(), b.view()).unwrap();
    assert_eq!(prefs.dim(), (2, 2));
    for i in 0..2 {
        let user = Profile::from_vec(z.row(i).to_vec()).unwrap();
        for j in 0..2 {
            let single = model.preference(&user, a.slice(s![i, j, ..]), b.slice(s![i, j, ..])).unwrap();
            assert!((prefs[[i, j]] - single).abs() < 1e-6);
        }
    }
}

#[test]
fn dpl_returns_stds_and_uses_the_distributional_preference() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load(tmp.path(), ModelKind::Dpl);
    let profile = model.infer_profile(Array2::zeros((0, D_EMB)).view(), Array2::zeros((0, D_EMB)).view()).unwrap();
    assert_eq!(profile, Profile::empty());
    let options = array![[1.0f32, 0.0, 0.5], [0.0, 1.0, -0.5]];
    let scores = model.score(&profile, options.view()).unwrap();
    let std = scores.std.clone().unwrap();
    for (n, option) in options.rows().into_iter().enumerate() {
        let (mean, sd) = expected_reward(ModelKind::Dpl, option.as_slice().unwrap(), &[]);
        assert!((scores.reward[n] - mean).abs() < 1e-5);
        assert!((std[n] - sd.unwrap()).abs() < 1e-5 && std[n] > 0.0);
    }
    let p = model.preference(&profile, options.row(0), options.row(1)).unwrap();
    let want = preference_probability(
        ModelKind::Dpl,
        Reward { mean: scores.reward[0], std: Some(std[0]) },
        Reward { mean: scores.reward[1], std: Some(std[1]) },
    );
    assert!((p - want).abs() < 1e-6);

    let batch = model.score_batch(&[Profile::empty()], options.view().insert_axis(ndarray::Axis(0))).unwrap();
    assert!(close(batch.std.unwrap().row(0).as_slice().unwrap(), &std));
}

#[test]
fn btl_needs_no_profile_and_rejects_one() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load(tmp.path(), ModelKind::Btl);
    assert_eq!(model.infer_profiles(&[]).unwrap_err().code(), 303);
    let padded = model.infer_profiles_padded(Array3::zeros((2, 1, 2 * D_EMB)).view(), Array2::ones((2, 1)).view());
    assert_eq!(padded.unwrap(), vec![Profile::empty(); 2]);
    let options = array![[1.0f32, 2.0, 3.0]];
    let scores = model.score(&Profile::empty(), options.view()).unwrap();
    assert!(close(&scores.reward, &[expected_reward(ModelKind::Btl, &[1.0, 2.0, 3.0], &[]).0]));
    let err = model.score(&Profile::from_vec(vec![1.0]).unwrap(), options.view()).unwrap_err();
    assert_eq!(err.code(), 305);
    assert!(matches!(err, Error::ProfileLength { expected: 0, found: 1, .. }));
}

#[test]
fn bad_inputs_get_typed_errors_with_stable_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load(tmp.path(), ModelKind::NpBtl);
    let profile = Profile::from_vec(vec![0.0, 0.0]).unwrap();
    let good = Array2::<f32>::ones((2, D_EMB));

    // Wrong embedding size.
    let err = model.score(&profile, Array2::zeros((2, 4)).view()).unwrap_err();
    assert_eq!((err.code(), err.to_string().as_str()), (301, "input `options` has shape [2, 4], expected [n, 3]"));
    // NaN, with its index.
    let mut nan = good.clone();
    nan[[1, 2]] = f32::NAN;
    match model.score(&profile, nan.view()).unwrap_err() {
        Error::NonFinite { input, index, .. } => assert_eq!((input.as_str(), index), ("options", vec![1, 2])),
        other => panic!("{other:?}"),
    }
    // No options.
    assert_eq!(model.score(&profile, Array2::zeros((0, D_EMB)).view()).unwrap_err().code(), 303);
    // Profile of the wrong length.
    let short = Profile::from_vec(vec![1.0]).unwrap();
    assert_eq!(model.score(&short, good.view()).unwrap_err().code(), 305);
    assert_eq!(model.preference(&short, good.row(0), good.row(1)).unwrap_err().code(), 305);
    // Chosen and rejected disagree, or hold infinities.
    let err = model.infer_profile(good.view(), Array2::zeros((1, D_EMB)).view()).unwrap_err();
    assert_eq!(err.code(), 301);
    let mut inf = good.clone();
    inf[[0, 0]] = f32::INFINITY;
    let err = model.infer_profiles(&[Context::new(good.view(), good.view()), Context::new(inf.view(), good.view())]);
    match err.unwrap_err() {
        Error::NonFinite { input, index, .. } => {
            assert_eq!((input.as_str(), index), ("contexts[1].chosen", vec![0, 0]))
        }
        other => panic!("{other:?}"),
    }
    // Mask values other than 0 and 1; mask of the wrong shape; empty batch.
    let context = Array3::<f32>::zeros((1, 2, 2 * D_EMB));
    let err = model.infer_profiles_padded(context.view(), array![[1.0f32, 0.5]].view()).unwrap_err();
    assert_eq!(err.code(), 304);
    let err = model.infer_profiles_padded(context.view(), array![[1.0f32]].view()).unwrap_err();
    assert_eq!((err.code(), err.to_string().as_str()), (301, "input `mask` has shape [1, 1], expected [1, 2]"));
    let err = model.infer_profiles_padded(Array3::zeros((0, 2, 2 * D_EMB)).view(), Array2::zeros((0, 2)).view());
    assert_eq!(err.unwrap_err().code(), 303);
    // Batched calls: one profile per row of the batch, each of the latent size; a and b the same shape.
    let options = Array3::<f32>::zeros((2, 3, D_EMB));
    let two = profiles(&Array2::zeros((2, LATENT)));
    let err = model.score_batch(&profiles(&Array2::zeros((3, LATENT))), options.view()).unwrap_err();
    assert_eq!(
        (err.code(), err.to_string().as_str()),
        (301, "input `profiles` has shape [3], expected [2] (one profile per row of the batch)")
    );
    let err = model.score_batch(&[&two[0], &short], options.view()).unwrap_err();
    assert!(
        matches!(err, Error::ProfileLength { expected: LATENT, found: 1, ref profile } if profile == "profiles[1]"),
        "{err:?}"
    );
    assert_eq!(model.score_batch(&two, Array3::zeros((2, 0, D_EMB)).view()).unwrap_err().code(), 303);
    let err = model.preference_batch(&two, options.view(), Array3::zeros((2, 2, D_EMB)).view());
    assert_eq!(err.unwrap_err().to_string(), "input `b` has shape [2, 2, 3], expected [2, 3, 3]");
    let mut options_nan = options.clone();
    options_nan[[1, 2, 0]] = f32::NEG_INFINITY;
    assert_eq!(model.score_batch(&two, options_nan.view()).unwrap_err().code(), 302);
}

#[test]
fn graphs_that_disagree_with_the_manifest_are_rejected_at_load() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = |name: &str, kind: ModelKind, dims: Dims, files: Vec<(&str, Vec<u8>)>| {
        let dir = tmp.path().join(name);
        write_bundle(&dir, kind, dims, &files);
        dir
    };
    let signature = |err: Error| match err {
        Error::GraphSignature { graph, tensor, expected, found } => (graph, tensor, expected, found),
        other => panic!("expected GraphSignature, got {other:?}"),
    };
    let options = LoadOptions::default();

    // The manifest says d = 4, the graphs were built for d = 3.
    let dir = bundle(
        "wide",
        ModelKind::NpBtl,
        Dims { embedding_dim: 4, latent_dim: LATENT },
        vec![
            ("encoder.onnx", common::encoder_graph(D_EMB, LATENT).into_bytes()),
            ("reward.onnx", reward_graph(ModelKind::NpBtl, D_EMB, LATENT).into_bytes()),
        ],
    );
    let err = load_err(&dir, &options);
    assert_eq!(err.code(), 107);
    let (graph, tensor, expected, found) = signature(err);
    assert_eq!((graph.as_str(), tensor.as_str()), ("encoder.onnx", "context"));
    assert_eq!(expected, "f32 [batch (dynamic), k (dynamic), 8 (2 * embedding_dim)]");
    assert_eq!(found, "f32 [batch (dynamic), k (dynamic), 6]");

    // np-btl whose reward graph takes no z.
    let dir = bundle(
        "no-z",
        ModelKind::NpBtl,
        NP_DIMS,
        vec![
            ("encoder.onnx", common::encoder_graph(D_EMB, LATENT).into_bytes()),
            ("reward.onnx", reward_graph(ModelKind::Btl, D_EMB, LATENT).into_bytes()),
        ],
    );
    let (graph, tensor, _, found) = signature(load_err(&dir, &options));
    assert_eq!((graph.as_str(), tensor.as_str()), ("reward.onnx", "z"));
    assert!(found.contains("no such input"), "{found}");

    // btl whose reward graph takes z; dpl without reward_std; btl with an extra reward_std.
    let cases = [
        ("btl-with-z", ModelKind::Btl, ModelKind::NpBtl, "z"),
        ("dpl-without-std", ModelKind::Dpl, ModelKind::Btl, "reward_std"),
        ("btl-with-std", ModelKind::Btl, ModelKind::Dpl, "reward_std"),
    ];
    for (name, kind, graph_kind, tensor) in cases {
        let dir =
            bundle(name, kind, FLAT_DIMS, vec![("reward.onnx", reward_graph(graph_kind, D_EMB, LATENT).into_bytes())]);
        let (graph, found_tensor, _, _) = signature(load_err(&dir, &options));
        assert_eq!((graph.as_str(), found_tensor.as_str()), ("reward.onnx", tensor), "{name}");
    }

    // A fixed batch axis and a wrongly sized z.
    let fixed_batch = Graph::default()
        .input("options", &[D::Fix(1), D::Sym("n"), D::Fix(D_EMB as i64)])
        .output("reward", &[D::Fix(1), D::Sym("n")])
        .axes("axis2", &[2])
        .reduce_sum("options", "axis2", "reward", 0);
    let dir = bundle("fixed-batch", ModelKind::Btl, FLAT_DIMS, vec![("reward.onnx", fixed_batch.into_bytes())]);
    let (_, tensor, expected, found) = signature(load_err(&dir, &options));
    assert_eq!(
        (tensor.as_str(), expected.as_str(), found.as_str()),
        ("options", "f32 [batch (dynamic), n (dynamic), 3 (embedding_dim)]", "f32 [1, n (dynamic), 3]")
    );

    let dir = bundle(
        "z-size",
        ModelKind::NpBtl,
        Dims { embedding_dim: D_EMB, latent_dim: 5 },
        vec![
            ("encoder.onnx", common::encoder_graph(D_EMB, 5).into_bytes()),
            ("reward.onnx", reward_graph(ModelKind::NpBtl, D_EMB, LATENT).into_bytes()),
        ],
    );
    let (graph, tensor, _, _) = signature(load_err(&dir, &options));
    assert_eq!((graph.as_str(), tensor.as_str()), ("reward.onnx", "z"));
}

#[test]
fn a_file_that_is_not_onnx_fails_as_a_session_error() {
    let tmp = tempfile::tempdir().unwrap();
    write_bundle(tmp.path(), ModelKind::Btl, FLAT_DIMS, &[("reward.onnx", b"definitely not protobuf".to_vec())]);
    let err = load_err(tmp.path(), &LoadOptions::default());
    assert_eq!(err.code(), 206, "{err}");
    assert!(err.to_string().contains("reward.onnx"), "{err}");
}

#[test]
fn unavailable_providers_fail_unless_fallback_is_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = test_bundle(tmp.path(), ModelKind::Btl, FLAT_DIMS);
    let cuda = ExecutionProvider::Cuda { device_id: 0 };
    let strict = LoadOptions::default().execution_providers([cuda, ExecutionProvider::Cpu]);
    let err = load_err(&dir, &strict);
    assert_eq!(err.code(), 207, "{err}");
    assert!(matches!(err, Error::ProviderUnavailable { provider, .. } if provider == cuda));

    let lenient = strict.allow_cpu_fallback(true);
    let model = Model::load(&dir, &lenient).unwrap();
    assert_eq!(model.execution_providers(), &[ExecutionProvider::Cpu]);
    assert_eq!(model.provider_fallbacks().len(), 1);
    assert_eq!(model.provider_fallbacks()[0].provider, cuda);
    assert!(!model.provider_fallbacks()[0].reason.is_empty());
    model.score(&Profile::empty(), array![[1.0f32, 1.0, 1.0]].view()).unwrap();
}

#[test]
fn one_model_serves_many_threads() {
    let tmp = tempfile::tempdir().unwrap();
    ensure_ort();
    let dir = test_bundle(tmp.path(), ModelKind::NpBtl, NP_DIMS);
    let options = LoadOptions::default().session_pool_size(2).intra_op_threads(0);
    let model = Arc::new(Model::load(&dir, &options).unwrap());
    let chosen = array![[1.0f32, 0.5, -0.5]];
    let rejected = array![[0.0f32, 0.25, 1.0]];
    let options_array = array![[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0]];
    let profile = model.infer_profile(chosen.view(), rejected.view()).unwrap();
    let reference = model.score(&profile, options_array.view()).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..50 {
                    let p = model.infer_profile(chosen.view(), rejected.view()).unwrap();
                    assert_eq!(p, profile);
                    assert_eq!(model.score(&p, options_array.view()).unwrap(), reference);
                }
            });
        }
    });
}

#[test]
fn a_profile_from_another_encoder_is_refused_issue_5() {
    ensure_ort();
    let tmp = tempfile::tempdir().unwrap();
    let model = load(&tmp.path().join("a"), ModelKind::NpBtl);
    // A second bundle of the same shape whose encoder graph differs (an extra, unused initializer): another space.
    let other_dir = tmp.path().join("b");
    let encoder = common::encoder_graph(D_EMB, LATENT).weight("unused", &[1], &[0.0]).into_bytes();
    write_bundle(
        &other_dir,
        ModelKind::NpBtl,
        NP_DIMS,
        &[("encoder.onnx", encoder), ("reward.onnx", reward_graph(ModelKind::NpBtl, D_EMB, LATENT).into_bytes())],
    );
    let other = Model::load(&other_dir, &LoadOptions::default()).unwrap();
    assert_ne!(model.profile_space(), other.profile_space());

    let chosen = array![[1.0f32, 0.5, -0.5]];
    let rejected = array![[-1.0f32, 0.0, 2.0]];
    let theirs = other.infer_profile(chosen.view(), rejected.view()).unwrap();
    assert_eq!(theirs.space(), other.profile_space().as_deref());
    let options = array![[0.1f32, 0.2, 0.3]];
    let err = model.score(&theirs, options.view()).unwrap_err();
    assert_eq!(err.code(), 311, "{err}");
    assert!(err.to_string().contains("another encoder"), "{err}");

    // The same values from our own encoder, or as plain numbers with no space, are accepted.
    let ours = model.infer_profile(chosen.view(), rejected.view()).unwrap();
    assert_eq!(ours, theirs);
    model.score(&ours, options.view()).unwrap();
    model.score(&Profile::from_vec(theirs.as_slice().to_vec()).unwrap(), options.view()).unwrap();

    // Batch calls check every profile too (issue 14), whether inferred alone or in a batch.
    let batch_options = array![[[0.1f32, 0.2, 0.3]], [[0.3, 0.2, 0.1]]];
    let err = model.score_batch(&[&ours, &theirs], batch_options.view()).unwrap_err();
    assert_eq!(err.code(), 311, "{err}");
    let theirs_batch = other.infer_profiles(&[Context::new(chosen.view(), rejected.view())]).unwrap();
    let one_option = batch_options.slice(s![..1, .., ..]);
    assert_eq!(model.preference_batch(&theirs_batch, one_option, one_option).unwrap_err().code(), 311);
    model.score_batch(&[&ours, &ours], batch_options.view()).unwrap();
}
