//! The behaviour suite: what a user of Steer can check, written once and run twice, through the Rust API
//! (`tests/rust_api.rs`) and through the C ABI (`tests/c_abi.rs`). Both must give the same numbers and the same
//! status codes.
//!
//! Each test body is generic over [`Api`]; `behaviour_tests!(ApiType)` turns them into `#[test]` functions. The
//! numbers come from tiny hand-encoded ONNX graphs with known outputs (the runtime's test fixtures), so they are
//! checked against arithmetic, not against a recording; the thread test uses the demo's real NP-BTL architecture
//! (the kit's seeded weights).
#![allow(dead_code)]

pub use steer_testkit as fixtures;

use std::path::{Path, PathBuf};

use fixtures::{expected_reward, expected_z, test_bundle, write_bundle};
use steer_runtime::{
    BestOfN, Dims, ExecutionProvider, FinishReason, Generation, GenerationParams, ModelKind, Reward,
    preference_probability,
};

/// A failed call: the runtime's `Error::code()` or the C status, and the message.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

pub type Res<T> = Result<T, Failure>;

/// Load options, in the terms both APIs share; `None` keeps the default.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub intra_op_threads: Option<usize>,
    pub session_pool_size: Option<usize>,
    pub providers: Option<Vec<ExecutionProvider>>,
    pub allow_cpu_fallback: bool,
    pub ort_library: Option<PathBuf>,
}

/// Rewards and, for DPL, standard deviations (zeros for point models).
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub reward: Vec<f32>,
    pub std: Vec<f32>,
}

/// A streaming callback: gets `(row, token_id, text_delta)` and returns whether to continue.
pub type OnToken<'a> = &'a mut dyn FnMut(usize, u32, &str) -> bool;

/// The calls of the behaviour suite. Arrays are flat and row-major, with their shape beside them, as in C.
pub trait Api {
    type Model: Send + Sync;
    type Profile: Send + Sync;

    fn load(dir: &Path, options: &Options) -> Res<Self::Model>;
    fn kind(model: &Self::Model) -> ModelKind;
    fn dims(model: &Self::Model) -> Dims;
    fn providers(model: &Self::Model) -> Vec<ExecutionProvider>;
    fn fallbacks(model: &Self::Model) -> Vec<(ExecutionProvider, String)>;

    fn infer_profile(model: &Self::Model, chosen: &[f32], rejected: &[f32], k: usize, d: usize) -> Res<Self::Profile>;
    fn profile_from(z: &[f32]) -> Res<Self::Profile>;
    fn profile_values(profile: &Self::Profile) -> Vec<f32>;
    fn score(model: &Self::Model, profile: &Self::Profile, options: &[f32], n: usize, d: usize) -> Res<Scored>;
    fn preference(model: &Self::Model, profile: &Self::Profile, a: &[f32], b: &[f32]) -> Res<f32>;

    /// One profile per user; user `b`'s choices are the first `k[b]` of their `max_k` padded rows.
    fn infer_profiles(
        model: &Self::Model,
        chosen: &[f32],
        rejected: &[f32],
        k: &[usize],
        max_k: usize,
        d: usize,
    ) -> Res<Vec<Self::Profile>>;
    fn infer_profiles_padded(
        model: &Self::Model,
        context: &[f32],
        mask: &[f32],
        batch: usize,
        k: usize,
        d: usize,
    ) -> Res<Vec<Self::Profile>>;
    /// Row `i` is user `profiles[i]` with `options[i]` (`[batch, n, d]`, batch = `profiles.len()`).
    fn score_batch(
        model: &Self::Model,
        profiles: &[&Self::Profile],
        options: &[f32],
        n: usize,
        d: usize,
    ) -> Res<Scored>;
    fn preference_batch(
        model: &Self::Model,
        profiles: &[&Self::Profile],
        a: &[f32],
        b: &[f32],
        n: usize,
        d: usize,
    ) -> Res<Vec<f32>>;

    fn has_text(model: &Self::Model) -> bool;
    fn infer_profile_text(
        model: &Self::Model,
        prompts: &[&str],
        chosen: &[&str],
        rejected: &[&str],
    ) -> Res<Self::Profile>;
    /// User `b`'s choices are the `k[b]` entries after those of the users before it.
    fn infer_profiles_text(
        model: &Self::Model,
        prompts: &[&str],
        chosen: &[&str],
        rejected: &[&str],
        k: &[usize],
    ) -> Res<Vec<Self::Profile>>;
    fn score_text(model: &Self::Model, profile: &Self::Profile, prompt: &str, responses: &[&str]) -> Res<Scored>;
    /// Row `i` is user `profiles[i]` with `prompts[i]` and `responses[i * n .. (i + 1) * n]`.
    fn score_text_batch(
        model: &Self::Model,
        profiles: &[&Self::Profile],
        prompts: &[&str],
        responses: &[&str],
        n: usize,
    ) -> Res<Scored>;

    fn has_policy(model: &Self::Model) -> bool;
    fn generation_defaults(model: &Self::Model) -> Res<GenerationParams>;
    /// Row `i` replies to `prompts[i]` for `profiles[i]`; `params` `None` is the bundle's defaults. `on_token`
    /// gets `(row, token_id, text_delta)` and returns whether to continue.
    fn generate(
        model: &Self::Model,
        prompts: &[&str],
        profiles: &[&Self::Profile],
        params: Option<&GenerationParams>,
        on_token: Option<OnToken<'_>>,
    ) -> Res<Vec<Generation>>;
    fn generate_best_of_n(
        model: &Self::Model,
        prompt: &str,
        profile: &Self::Profile,
        n: usize,
        params: Option<&GenerationParams>,
    ) -> Res<BestOfN>;
}

/// Turns every test body below into a `#[test]` for one [`Api`] implementation.
#[macro_export]
macro_rules! behaviour_tests {
    ($api:ty) => {
        $crate::behaviour_tests!(
            $api;
            np_btl_profiles_match_the_encoder,
            k_zero_gives_the_population_prior,
            np_btl_scores_and_preferences_match_the_reward_graph,
            stored_profiles_score_like_inferred_ones,
            btl_and_dpl_need_no_profile,
            batched_calls_match_one_call_per_user,
            batches_refuse_a_profile_from_another_encoder_issue_14,
            model_info_and_provider_fallback,
            bad_values_get_stable_codes,
            bad_bundles_get_stable_codes,
            text_profiles_and_scores_match_the_embedding_calls,
            batched_text_calls_match_one_call_per_user,
            bad_text_calls_get_stable_codes,
            bad_text_bundles_get_stable_codes,
            generation_steers_each_row_by_its_profile,
            streamed_deltas_concatenate_and_false_cancels,
            best_of_n_reranks_with_the_bundle_reward,
            bad_generation_calls_get_stable_codes,
            eight_threads_share_one_model,
        );
    };
    ($api:ty; $($name:ident),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                behaviour::$name::<$api>();
            }
        )+
    };
}

// ---------------------------------------------------------------------------------------------------------------
// Fixtures: the hand-encoded graphs compute
//   z = (Σ_k mask·context) @ W with W[i, l] = 0.1 (i + 1)(l + 1);  reward = options·u (+ z·v);  dpl std = softplus(options·s)
// with u = [1, 0.5, 0], v = [0.25, 0.5], s = [0.3, 0.5, 0.7].

pub const D: usize = 3;
pub const LATENT: usize = 2;
const NP_DIMS: Dims = Dims { embedding_dim: D, latent_dim: LATENT };
const FLAT_DIMS: Dims = Dims { embedding_dim: D, latent_dim: 0 };

/// One user's two choices.
pub const CHOSEN: [f32; 6] = [1.0, 0.5, -0.5, 0.2, 0.1, 0.0];
pub const REJECTED: [f32; 6] = [-1.0, 0.0, 2.0, 0.3, 0.3, 0.3];
/// Their profile, by hand: the pairs sum to [1.2, 0.6, -0.5 ‖ -0.7, 0.3, 2.3], and Σ_i (i + 1)·sum_i = 13.4.
pub const Z: [f32; 2] = [1.34, 2.68];
/// Three options, and their rewards for that user: o·u + z·v = o·u + 1.675.
pub const OPTIONS: [f32; 9] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.3, -0.2, 0.9];
pub const REWARDS: [f32; 3] = [2.675, 2.175, 1.875];
/// sigmoid(2.675 - 2.175).
pub const P_0_OVER_1: f32 = 0.622_459_3;

pub fn bundle(root: &Path, kind: ModelKind) -> PathBuf {
    fixtures::ensure_ort();
    let dims = if kind.is_conditioned() { NP_DIMS } else { FLAT_DIMS };
    test_bundle(&root.join(kind.as_str()), kind, dims)
}

pub fn load<A: Api>(root: &Path, kind: ModelKind) -> A::Model {
    A::load(&bundle(root, kind), &Options::default()).unwrap_or_else(|f| panic!("load {kind}: {f:?}"))
}

pub fn close(found: &[f32], expected: &[f32]) -> bool {
    found.len() == expected.len() && found.iter().zip(expected).all(|(f, e)| (f - e).abs() <= 1e-5 * (1.0 + e.abs()))
}

#[track_caller]
pub fn assert_close(found: &[f32], expected: &[f32]) {
    assert!(close(found, expected), "found {found:?}, expected {expected:?}");
}

#[track_caller]
pub fn assert_code<T>(result: Res<T>, code: i32, needle: &str) {
    match result {
        Ok(_) => panic!("expected code {code}, got success"),
        Err(failure) => {
            assert_eq!(failure.code, code, "{}", failure.message);
            assert!(failure.message.contains(needle), "message {:?} lacks {needle:?}", failure.message);
        }
    }
}

/// The values of a batch of profiles, row by row.
pub fn values<A: Api>(profiles: &[A::Profile]) -> Vec<f32> {
    profiles.iter().flat_map(A::profile_values).collect()
}

/// Borrows each profile, as the batch calls take them.
pub fn refs<P>(profiles: &[P]) -> Vec<&P> {
    profiles.iter().collect()
}

fn rows(flat: &[f32], d: usize) -> Vec<Vec<f32>> {
    flat.chunks(d).map(<[f32]>::to_vec).collect()
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

// ---------------------------------------------------------------------------------------------------------------
// The suite.

pub fn np_btl_profiles_match_the_encoder<A: Api>() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load::<A>(tmp.path(), ModelKind::NpBtl);
    let profile = A::infer_profile(&model, &CHOSEN, &REJECTED, 2, D).unwrap();
    assert_close(&A::profile_values(&profile), &Z);
    assert_close(&Z, &expected_z(&rows(&CHOSEN, D), &rows(&REJECTED, D), D, LATENT));
    // One pair at a time adds up: the encoder sums over pairs.
    let first = A::infer_profile(&model, &CHOSEN[..D], &REJECTED[..D], 1, D).unwrap();
    assert_close(&A::profile_values(&first), &expected_z(&rows(&CHOSEN[..D], D), &rows(&REJECTED[..D], D), D, LATENT));
}

pub fn k_zero_gives_the_population_prior<A: Api>() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load::<A>(tmp.path(), ModelKind::NpBtl);
    let prior = A::infer_profile(&model, &[], &[], 0, D).unwrap();
    assert_eq!(A::profile_values(&prior), vec![0.0, 0.0]);
    let scores = A::score(&model, &prior, &OPTIONS, 3, D).unwrap();
    assert_close(&scores.reward, &[1.0, 0.5, 0.3 - 0.1]);
    let padded = A::infer_profiles_padded(&model, &[], &[], 3, 0, D).unwrap();
    assert_eq!(values::<A>(&padded), vec![0.0; 3 * LATENT]);
}

pub fn np_btl_scores_and_preferences_match_the_reward_graph<A: Api>() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load::<A>(tmp.path(), ModelKind::NpBtl);
    let profile = A::infer_profile(&model, &CHOSEN, &REJECTED, 2, D).unwrap();
    let scores = A::score(&model, &profile, &OPTIONS, 3, D).unwrap();
    assert_close(&scores.reward, &REWARDS);
    assert_eq!(scores.std, vec![0.0; 3], "point models have no spread");
    let by_formula: Vec<f32> = rows(&OPTIONS, D).iter().map(|o| expected_reward(ModelKind::NpBtl, o, &Z).0).collect();
    assert_close(&scores.reward, &by_formula);

    let p = A::preference(&model, &profile, &OPTIONS[..D], &OPTIONS[D..2 * D]).unwrap();
    assert!((p - P_0_OVER_1).abs() < 1e-5, "{p}");
    assert!((p - sigmoid(REWARDS[0] - REWARDS[1])).abs() < 1e-5, "{p}");
    let q = A::preference(&model, &profile, &OPTIONS[D..2 * D], &OPTIONS[..D]).unwrap();
    assert!((p + q - 1.0).abs() < 1e-6, "{p} + {q}");
}

pub fn stored_profiles_score_like_inferred_ones<A: Api>() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load::<A>(tmp.path(), ModelKind::NpBtl);
    let inferred = A::infer_profile(&model, &CHOSEN, &REJECTED, 2, D).unwrap();
    let stored = A::profile_from(&A::profile_values(&inferred)).unwrap();
    assert_eq!(A::profile_values(&stored), A::profile_values(&inferred));
    assert_eq!(
        A::score(&model, &stored, &OPTIONS, 3, D).unwrap(),
        A::score(&model, &inferred, &OPTIONS, 3, D).unwrap()
    );
    let other = A::profile_from(&[0.5, -1.5]).unwrap();
    let expected: Vec<f32> =
        rows(&OPTIONS, D).iter().map(|o| expected_reward(ModelKind::NpBtl, o, &[0.5, -1.5]).0).collect();
    assert_close(&A::score(&model, &other, &OPTIONS, 3, D).unwrap().reward, &expected);
    assert_code(A::profile_from(&[0.0, f32::NAN]), 302, "profile");
}

pub fn btl_and_dpl_need_no_profile<A: Api>() {
    let tmp = tempfile::tempdir().unwrap();
    let options = [1.0f32, 0.0, 0.5, 0.0, 1.0, -0.5];
    for kind in [ModelKind::Btl, ModelKind::Dpl] {
        let model = load::<A>(tmp.path(), kind);
        assert_eq!(A::kind(&model), kind);
        assert_eq!(A::dims(&model), FLAT_DIMS);
        let profile = A::infer_profile(&model, &CHOSEN, &REJECTED, 2, D).unwrap();
        assert!(A::profile_values(&profile).is_empty());
        let scores = A::score(&model, &profile, &options, 2, D).unwrap();
        let expected: Vec<(f32, Option<f32>)> =
            rows(&options, D).iter().map(|o| expected_reward(kind, o, &[])).collect();
        assert_close(&scores.reward, &expected.iter().map(|e| e.0).collect::<Vec<_>>());
        assert_close(&scores.std, &expected.iter().map(|e| e.1.unwrap_or(0.0)).collect::<Vec<_>>());
        // 1.0 vs 0.5 (and for dpl, spreads softplus(0.65) vs softplus(0.15)).
        assert_close(&scores.reward, &[1.0, 0.5]);
        let p = A::preference(&model, &profile, &options[..D], &options[D..]).unwrap();
        let reward = |i: usize| Reward { mean: scores.reward[i], std: (kind == ModelKind::Dpl).then(|| scores.std[i]) };
        assert!((p - preference_probability(kind, reward(0), reward(1))).abs() < 1e-6, "{kind}: {p}");
        if kind == ModelKind::Btl {
            assert!((p - sigmoid(0.5)).abs() < 1e-6);
        } else {
            assert!(scores.std.iter().all(|s| *s > 0.0) && p > 0.5 && p < 1.0, "{p}");
        }
        assert_code(A::score(&model, &A::profile_from(&[1.0]).unwrap(), &options, 2, D), 305, "latent_dim = 0");
    }
}

pub fn batched_calls_match_one_call_per_user<A: Api>() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load::<A>(tmp.path(), ModelKind::NpBtl);
    // Three users padded to max_k = 2: two choices, none, one.
    let (batch, max_k) = (3, 2);
    let mut chosen = vec![9.0f32; batch * max_k * D];
    let mut rejected = vec![9.0f32; batch * max_k * D];
    chosen[..2 * D].copy_from_slice(&CHOSEN);
    rejected[..2 * D].copy_from_slice(&REJECTED);
    chosen[2 * max_k * D..2 * max_k * D + D].copy_from_slice(&[0.7, -0.2, 0.4]);
    rejected[2 * max_k * D..2 * max_k * D + D].copy_from_slice(&[0.0, 0.9, -0.3]);
    let k = [2, 0, 1];
    let profiles = A::infer_profiles(&model, &chosen, &rejected, &k, max_k, D).unwrap();
    let z = values::<A>(&profiles);
    assert_eq!(z.len(), batch * LATENT);
    for user in 0..batch {
        let start = user * max_k * D;
        let end = start + k[user] * D;
        let single = A::infer_profile(&model, &chosen[start..end], &rejected[start..end], k[user], D).unwrap();
        assert_close(&z[user * LATENT..(user + 1) * LATENT], &A::profile_values(&single));
    }
    assert_close(&z[..LATENT], &Z);

    // The same users as padded context rows [chosen ‖ rejected] with a mask.
    let mut context = vec![0.0f32; batch * max_k * 2 * D];
    let mut mask = vec![0.0f32; batch * max_k];
    for user in 0..batch {
        for i in 0..k[user] {
            let row = (user * max_k + i) * 2 * D;
            let src = (user * max_k + i) * D;
            context[row..row + D].copy_from_slice(&chosen[src..src + D]);
            context[row + D..row + 2 * D].copy_from_slice(&rejected[src..src + D]);
            mask[user * max_k + i] = 1.0;
        }
    }
    assert_close(&values::<A>(&A::infer_profiles_padded(&model, &context, &mask, batch, max_k, D).unwrap()), &z);

    // Scores: user i's options are OPTIONS scaled by (i + 1).
    let n = 3;
    let options: Vec<f32> = (0..batch).flat_map(|i| OPTIONS.iter().map(move |o| o * (i + 1) as f32)).collect();
    let scores = A::score_batch(&model, &refs(&profiles), &options, n, D).unwrap();
    assert_eq!(scores.std, vec![0.0; batch * n]);
    for user in 0..batch {
        let single = A::score(&model, &profiles[user], &options[user * n * D..(user + 1) * n * D], n, D).unwrap();
        assert_close(&scores.reward[user * n..(user + 1) * n], &single.reward);
    }
    assert_close(&scores.reward[..n], &REWARDS);

    // Profiles stored apart (one inferred alone, one from stored floats) share a batch, in any order.
    let alone = A::infer_profile(&model, &CHOSEN, &REJECTED, 2, D).unwrap();
    let stored = A::profile_from(&z[2 * LATENT..]).unwrap();
    let mixed = A::score_batch(&model, &[&stored, &alone], &options[..2 * n * D], n, D).unwrap();
    assert_close(&mixed.reward[..n], &A::score(&model, &stored, &options[..n * D], n, D).unwrap().reward);
    assert_close(&mixed.reward[n..], &A::score(&model, &alone, &options[n * D..2 * n * D], n, D).unwrap().reward);

    // Preferences: a = options 0 and 1, b = options 1 and 2 of each user.
    let pick = |first: usize| -> Vec<f32> {
        (0..batch).flat_map(|u| options[(u * n + first) * D..(u * n + first + 2) * D].to_vec()).collect()
    };
    let (a, b) = (pick(0), pick(1));
    let p = A::preference_batch(&model, &refs(&profiles), &a, &b, 2, D).unwrap();
    assert_eq!(p.len(), batch * 2);
    for user in 0..batch {
        for j in 0..2 {
            let r = &scores.reward[user * n..(user + 1) * n];
            assert!((p[user * 2 + j] - sigmoid(r[j] - r[j + 1])).abs() < 1e-5, "user {user}, pair {j}");
        }
    }
    assert!((p[0] - P_0_OVER_1).abs() < 1e-5);

    // Unconditioned models take their empty profiles.
    let btl = load::<A>(tmp.path(), ModelKind::Btl);
    let empty = A::infer_profiles(&btl, &chosen, &rejected, &k, max_k, D).unwrap();
    assert_eq!(empty.len(), batch);
    assert!(values::<A>(&empty).is_empty());
    let flat = A::score_batch(&btl, &refs(&empty[..2]), &options[..2 * n * D], n, D).unwrap();
    assert_close(&flat.reward[..n], &[1.0, 0.5, 0.2]);
}

/// A batch call refuses a profile from another bundle's encoder (311), as the single calls do, and names nothing
/// else wrong: the same values as plain numbers, or inferred by this model, are accepted.
pub fn batches_refuse_a_profile_from_another_encoder_issue_14<A: Api>() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load::<A>(tmp.path(), ModelKind::NpBtl);
    let other = A::load(&foreign_bundle(tmp.path()), &Options::default()).unwrap();
    let theirs = A::infer_profile(&other, &CHOSEN, &REJECTED, 2, D).unwrap();
    let ours = A::infer_profile(&model, &CHOSEN, &REJECTED, 2, D).unwrap();
    assert_eq!(A::profile_values(&theirs), A::profile_values(&ours), "same graph arithmetic, another encoder");
    let foreign = "another encoder";
    assert_code(A::score(&model, &theirs, &OPTIONS, 3, D), 311, foreign);
    let two = [&ours, &theirs];
    let options = [OPTIONS, OPTIONS].concat();
    assert_code(A::score_batch(&model, &two, &options, 3, D), 311, "profiles[1] was inferred by another encoder");
    assert_code(A::preference_batch(&model, &two, &options[..4 * D], &options[2 * D..6 * D], 2, D), 311, foreign);
    // Batches inferred by the other model carry its encoder too.
    let batch = A::infer_profiles(&other, &CHOSEN, &REJECTED, &[2], 2, D).unwrap();
    assert_code(A::score_batch(&model, &refs(&batch), &OPTIONS, 3, D), 311, foreign);
    let padded = A::infer_profiles_padded(&other, &[0.0; 2 * D], &[1.0], 1, 1, D).unwrap();
    assert_code(A::preference_batch(&model, &refs(&padded), &OPTIONS[..D], &OPTIONS[D..2 * D], 1, D), 311, foreign);

    let stored = A::profile_from(&A::profile_values(&theirs)).unwrap();
    let accepted = A::score_batch(&model, &[&ours, &stored], &options, 3, D).unwrap();
    assert_close(&accepted.reward, &[REWARDS, REWARDS].concat());
    // A profile of another length.
    let short = A::profile_from(&[1.0]).unwrap();
    assert_code(A::score_batch(&model, &[&ours, &short], &options, 3, D), 305, "latent_dim = 2");
}

/// A bundle like [`bundle`]'s np-btl, whose encoder graph differs by an unused initializer: the same arithmetic
/// in another profile space.
pub fn foreign_bundle(root: &Path) -> PathBuf {
    let dir = root.join("foreign-np-btl");
    let encoder = fixtures::encoder_graph(D, LATENT).weight("unused", &[1], &[0.0]).into_bytes();
    let reward = fixtures::reward_graph(ModelKind::NpBtl, D, LATENT).into_bytes();
    write_bundle(&dir, ModelKind::NpBtl, NP_DIMS, &[("encoder.onnx", encoder), ("reward.onnx", reward)]);
    dir
}

pub fn model_info_and_provider_fallback<A: Api>() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = bundle(tmp.path(), ModelKind::NpBtl);
    let options = Options { intra_op_threads: Some(2), session_pool_size: Some(2), ..Options::default() };
    let model = A::load(&dir, &options).unwrap();
    assert_eq!(A::kind(&model), ModelKind::NpBtl);
    assert_eq!(A::dims(&model), NP_DIMS);
    assert_eq!(A::providers(&model), vec![ExecutionProvider::Cpu]);
    assert!(A::fallbacks(&model).is_empty());

    let cuda = ExecutionProvider::Cuda { device_id: 0 };
    let strict = Options { providers: Some(vec![cuda, ExecutionProvider::Cpu]), ..Options::default() };
    if cfg!(not(feature = "cuda")) {
        assert_code(A::load(&dir, &strict), 207, "CUDA");
        let lenient = Options { allow_cpu_fallback: true, ..strict };
        let model = A::load(&dir, &lenient).unwrap();
        assert_eq!(A::providers(&model), vec![ExecutionProvider::Cpu]);
        let fallbacks = A::fallbacks(&model);
        assert_eq!(fallbacks.len(), 1);
        assert_eq!(fallbacks[0].0, cuda);
        assert!(!fallbacks[0].1.is_empty());
        let profile = A::infer_profile(&model, &CHOSEN, &REJECTED, 2, D).unwrap();
        assert_close(&A::score(&model, &profile, &OPTIONS, 3, D).unwrap().reward, &REWARDS);
    }
    let bad = [
        Options { session_pool_size: Some(0), ..Options::default() },
        Options { providers: Some(vec![]), ..Options::default() },
        Options { providers: Some(vec![ExecutionProvider::Cpu, cuda]), ..Options::default() },
        Options { providers: Some(vec![ExecutionProvider::TensorRt { device_id: -1 }]), ..Options::default() },
    ];
    for options in bad {
        assert_code(A::load(&dir, &options), 300, "invalid load option");
    }
}

pub fn bad_values_get_stable_codes<A: Api>() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load::<A>(tmp.path(), ModelKind::NpBtl);
    let profile = A::infer_profile(&model, &CHOSEN, &REJECTED, 2, D).unwrap();

    // d is not the model's embedding size.
    assert_code(A::score(&model, &profile, &[0.0; 8], 2, 4), 301, "input `options` has shape [2, 4], expected [n, 3]");
    assert_code(A::infer_profile(&model, &[0.0; 4], &[0.0; 4], 2, 2), 301, "chosen");
    assert_code(A::preference(&model, &profile, &[0.0; 2], &[0.0; 2]), 301, "input `a`");
    // NaN and infinities, with where they are.
    let mut nan = OPTIONS;
    nan[5] = f32::NAN;
    assert_code(A::score(&model, &profile, &nan, 3, D), 302, "[1, 2]");
    let mut inf = CHOSEN;
    inf[0] = f32::INFINITY;
    assert_code(A::infer_profile(&model, &inf, &REJECTED, 2, D), 302, "chosen");
    assert_code(A::preference(&model, &profile, &[0.0, f32::NAN, 0.0], &OPTIONS[..D]), 302, "`a`");
    // Nothing to score; an empty batch.
    assert_code(A::score(&model, &profile, &[], 0, D), 303, "options");
    assert_code(A::infer_profiles(&model, &[], &[], &[], 2, D), 303, "contexts");
    assert_code(A::score_batch(&model, &[], &[], 3, D), 303, "options");
    // A mask value that is neither 0 nor 1.
    assert_code(A::infer_profiles_padded(&model, &[0.0; 12], &[1.0, 0.5], 1, 2, D), 304, "0.5");
    // A profile of the wrong length, stored or batched.
    let short = A::profile_from(&[1.0]).unwrap();
    assert_code(A::score(&model, &short, &OPTIONS, 3, D), 305, "latent_dim = 2");
    assert_code(A::preference(&model, &short, &OPTIONS[..D], &OPTIONS[D..2 * D]), 305, "latent_dim = 2");
    assert_code(A::score_batch(&model, &[&short], &OPTIONS, 3, D), 305, "latent_dim = 2");
    assert_code(A::preference_batch(&model, &[&profile], &OPTIONS, &nan, 3, D), 302, "`b`");
}

pub fn bad_bundles_get_stable_codes<A: Api>() {
    let tmp = tempfile::tempdir().unwrap();
    let options = Options::default();
    // A folder that does not exist.
    let missing = tmp.path().join("no-such-bundle");
    assert_code(A::load(&missing, &options), 100, "no-such-bundle");

    // A manifest that is not JSON, or cut short.
    let dir = bundle(tmp.path(), ModelKind::NpBtl);
    let manifest_file = dir.join(steer_runtime::manifest::MANIFEST_FILE);
    let manifest = std::fs::read_to_string(&manifest_file).unwrap();
    std::fs::write(&manifest_file, &manifest[..manifest.len() / 2]).unwrap();
    assert_code(A::load(&dir, &options), 102, "manifest.json");
    std::fs::write(&manifest_file, &manifest).unwrap();
    A::load(&dir, &options).unwrap();

    // A graph listed in the manifest is missing.
    std::fs::remove_file(dir.join("encoder.onnx")).unwrap();
    assert_code(A::load(&dir, &options), 105, "encoder.onnx");

    // A graph whose bytes changed (corrupt) or were cut short (truncated): the hash no longer matches.
    let dir = bundle(&tmp.path().join("corrupt"), ModelKind::Btl);
    let graph = std::fs::read(dir.join("reward.onnx")).unwrap();
    let mut flipped = graph.clone();
    flipped[graph.len() / 2] ^= 0xff;
    std::fs::write(dir.join("reward.onnx"), &flipped).unwrap();
    assert_code(A::load(&dir, &options), 106, "reward.onnx");
    std::fs::write(dir.join("reward.onnx"), &graph[..graph.len() / 2]).unwrap();
    assert_code(A::load(&dir, &options), 106, "corrupt");

    // A truncated graph whose manifest was rewritten to match: ONNX Runtime rejects it.
    let dir = tmp.path().join("truncated");
    write_bundle(&dir, ModelKind::Btl, FLAT_DIMS, &[("reward.onnx", graph[..graph.len() / 2].to_vec())]);
    assert_code(A::load(&dir, &options), 206, "reward.onnx");

    // Graphs built for another embedding size than the manifest says.
    let dir = tmp.path().join("wide");
    let files = [("reward.onnx", fixtures::reward_graph(ModelKind::Btl, D, 0).into_bytes())];
    write_bundle(&dir, ModelKind::Btl, Dims { embedding_dim: 4, latent_dim: 0 }, &files);
    assert_code(A::load(&dir, &options), 107, "options");
}

// ---------------------------------------------------------------------------------------------------------------
// Text bundles: the same graphs plus the fixtures' word-level tokenizer and mean-of-table embedder, so the text
// calls can be checked against the embedding calls on embeddings worked out by hand.

pub fn text_bundle(root: &Path, kind: ModelKind) -> PathBuf {
    fixtures::ensure_ort();
    let dims = if kind.is_conditioned() { NP_DIMS } else { FLAT_DIMS };
    fixtures::text_bundle(&root.join(format!("text-{kind}")), kind, dims)
}

pub fn load_text<A: Api>(root: &Path, kind: ModelKind) -> A::Model {
    A::load(&text_bundle(root, kind), &Options::default()).unwrap_or_else(|f| panic!("load text {kind}: {f:?}"))
}

/// Two choices of one user: (prompt, chosen, rejected).
pub const TEXT_PROMPTS: [&str; 2] = ["the cat ?", "a dog ?"];
pub const TEXT_CHOSEN: [&str; 2] = ["yes", "good dog"];
pub const TEXT_REJECTED: [&str; 2] = ["no", "bad dog"];
/// Their token ids, by hand: `[CLS] prompt response [SEP]` in the fixtures' vocabulary.
const CHOSEN_IDS: [&[usize]; 2] = [&[1, 4, 5, 15, 13, 2], &[1, 8, 10, 15, 11, 10, 2]];
const REJECTED_IDS: [&[usize]; 2] = [&[1, 4, 5, 15, 14, 2], &[1, 8, 10, 15, 12, 10, 2]];

/// The embeddings of token-id lists, flat `[ids.len(), D]`.
fn embeddings(ids: &[&[usize]]) -> Vec<f32> {
    ids.iter().flat_map(|ids| fixtures::mean_embedding(ids, D)).collect()
}

pub fn text_profiles_and_scores_match_the_embedding_calls<A: Api>() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load_text::<A>(tmp.path(), ModelKind::NpBtl);
    assert!(A::has_text(&model));
    let profile = A::infer_profile_text(&model, &TEXT_PROMPTS, &TEXT_CHOSEN, &TEXT_REJECTED).unwrap();
    let (chosen, rejected) = (embeddings(&CHOSEN_IDS), embeddings(&REJECTED_IDS));
    let by_embedding = A::infer_profile(&model, &chosen, &rejected, 2, D).unwrap();
    assert_close(&A::profile_values(&profile), &A::profile_values(&by_embedding));
    assert_close(&A::profile_values(&profile), &expected_z(&rows(&chosen, D), &rows(&rejected, D), D, LATENT));
    // k = 0: the prior.
    let prior = A::infer_profile_text(&model, &[], &[], &[]).unwrap();
    assert_eq!(A::profile_values(&prior), vec![0.0, 0.0]);

    // "?" with each response: [CLS] ? response [SEP].
    let responses = ["yes", "the cat sat on the mat", "no"];
    let ids: [&[usize]; 3] = [&[1, 15, 13, 2], &[1, 4, 5, 6, 7, 4, 9, 2], &[1, 15, 14, 2]];
    let scores = A::score_text(&model, &profile, "?", &responses).unwrap();
    let expected = A::score(&model, &profile, &embeddings(&ids), 3, D).unwrap();
    assert_close(&scores.reward, &expected.reward);
    assert_eq!(scores.std, vec![0.0; 3]);
    let z = A::profile_values(&profile);
    for (reward, option) in scores.reward.iter().zip(rows(&embeddings(&ids), D)) {
        assert_close(&[*reward], &[expected_reward(ModelKind::NpBtl, &option, &z).0]);
    }

    // A dpl text bundle gives its spreads too.
    let dpl = load_text::<A>(tmp.path(), ModelKind::Dpl);
    let empty = A::infer_profile_text(&dpl, &TEXT_PROMPTS, &TEXT_CHOSEN, &TEXT_REJECTED).unwrap();
    assert!(A::profile_values(&empty).is_empty());
    let scores = A::score_text(&dpl, &empty, "?", &responses).unwrap();
    assert_eq!(scores, A::score(&dpl, &empty, &embeddings(&ids), 3, D).unwrap());
    assert!(scores.std.iter().all(|s| *s > 0.0), "{scores:?}");
}

pub fn batched_text_calls_match_one_call_per_user<A: Api>() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load_text::<A>(tmp.path(), ModelKind::NpBtl);
    // Users with k = 2, 0 and 1, their choices concatenated.
    let k = [2, 0, 1];
    let prompts = [TEXT_PROMPTS[0], TEXT_PROMPTS[1], "the mat"];
    let chosen = [TEXT_CHOSEN[0], TEXT_CHOSEN[1], "sat on the mat"];
    let rejected = [TEXT_REJECTED[0], TEXT_REJECTED[1], "the cat sat on the mat"];
    let profiles = A::infer_profiles_text(&model, &prompts, &chosen, &rejected, &k).unwrap();
    let z = values::<A>(&profiles);
    assert_eq!(z.len(), 3 * LATENT);
    let mut start = 0;
    for (user, &k) in k.iter().enumerate() {
        let range = start..start + k;
        let single =
            A::infer_profile_text(&model, &prompts[range.clone()], &chosen[range.clone()], &rejected[range]).unwrap();
        assert_close(&z[user * LATENT..(user + 1) * LATENT], &A::profile_values(&single));
        start += k;
    }
    assert_eq!(&z[LATENT..2 * LATENT], &[0.0, 0.0]);
    assert!(z[..LATENT].iter().any(|z| *z != 0.0));

    let n = 2;
    let row_prompts = ["?", "a dog", "the cat ?"];
    let responses = ["yes", "no", "sat", "good dog", "the mat", "a mat"];
    let scores = A::score_text_batch(&model, &refs(&profiles), &row_prompts, &responses, n).unwrap();
    assert_eq!(scores.reward.len(), 3 * n);
    assert_eq!(scores.std, vec![0.0; 3 * n]);
    for (user, prompt) in row_prompts.iter().enumerate() {
        let single = A::score_text(&model, &profiles[user], prompt, &responses[user * n..(user + 1) * n]).unwrap();
        assert_close(&scores.reward[user * n..(user + 1) * n], &single.reward);
    }
    // Unconditioned text bundles take their empty profiles.
    let btl = load_text::<A>(tmp.path(), ModelKind::Btl);
    let empty = A::profile_from(&[]).unwrap();
    let flat = A::score_text_batch(&btl, &[&empty], &["?"], &["yes", "no"], 2).unwrap();
    let expected =
        A::score(&btl, &A::profile_from(&[]).unwrap(), &embeddings(&[&[1, 15, 13, 2], &[1, 15, 14, 2]]), 2, D);
    assert_close(&flat.reward, &expected.unwrap().reward);
    assert!(values::<A>(&A::infer_profiles_text(&btl, &prompts, &chosen, &rejected, &k).unwrap()).is_empty());
}

pub fn bad_text_calls_get_stable_codes<A: Api>() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load_text::<A>(tmp.path(), ModelKind::NpBtl);
    let profile = A::infer_profile_text(&model, &TEXT_PROMPTS, &TEXT_CHOSEN, &TEXT_REJECTED).unwrap();
    // Nothing to score, no users, no rows.
    assert_code(A::score_text(&model, &profile, "?", &[]), 303, "responses");
    assert_code(A::infer_profiles_text(&model, &[], &[], &[], &[]), 303, "users");
    assert_code(A::score_text_batch(&model, &[], &[], &[], 2), 303, "prompts");
    assert_code(A::score_text_batch(&model, &[&profile], &["?"], &[], 0), 303, "responses");
    // A profile of the wrong length, alone or in a batch; one from another encoder in a batch (issue 14).
    let short = A::profile_from(&[1.0]).unwrap();
    assert_code(A::score_text(&model, &short, "?", &["yes"]), 305, "latent_dim = 2");
    assert_code(A::score_text_batch(&model, &[&short], &["?"], &["yes"], 1), 305, "latent_dim = 2");
    let other = A::load(&foreign_bundle(tmp.path()), &Options::default()).unwrap();
    let theirs = A::infer_profile(&other, &CHOSEN, &REJECTED, 2, D).unwrap();
    assert_code(A::score_text_batch(&model, &[&profile, &theirs], &["?", "!"], &["yes", "no"], 1), 311, "another");

    // Text calls on a bundle without a text embedder.
    let plain = load::<A>(tmp.path(), ModelKind::NpBtl);
    assert!(!A::has_text(&plain));
    let no_text = "no text embedder";
    assert_code(A::infer_profile_text(&plain, &TEXT_PROMPTS, &TEXT_CHOSEN, &TEXT_REJECTED), 307, no_text);
    assert_code(A::infer_profile_text(&plain, &[], &[], &[]), 307, no_text);
    assert_code(A::infer_profiles_text(&plain, &TEXT_PROMPTS, &TEXT_CHOSEN, &TEXT_REJECTED, &[1, 1]), 307, no_text);
    let prior = A::infer_profile(&plain, &[], &[], 0, D).unwrap();
    assert_code(A::score_text(&plain, &prior, "?", &["yes"]), 307, no_text);
    assert_code(A::score_text_batch(&plain, &[&prior], &["?"], &["yes", "no"], 2), 307, no_text);
}

pub fn bad_text_bundles_get_stable_codes<A: Api>() {
    let tmp = tempfile::tempdir().unwrap();
    let options = Options::default();
    // A tokenizer with another vocabulary, with the manifest's hash updated: only the tokenizer check catches it.
    let dir = text_bundle(tmp.path(), ModelKind::NpBtl);
    A::load(&dir, &options).unwrap();
    let mut other = fixtures::TEXT_VOCAB.to_vec();
    other.push("zebra");
    fixtures::replace_file(&dir, "tokenizer.json", &fixtures::tokenizer_json(&other));
    assert_code(A::load(&dir, &options), 109, "vocabulary of 16 tokens");
    // A tokenizer file that is not one.
    fixtures::replace_file(&dir, "tokenizer.json", b"not json");
    assert_code(A::load(&dir, &options), 108, "tokenizer.json");
    // The manifest's text spec names a file the bundle does not list.
    let spec = steer_runtime::TextSpec { tokenizer: "vocab.json".into(), ..fixtures::text_spec() };
    let dir = fixtures::text_bundle_with(&tmp.path().join("unlisted"), ModelKind::NpBtl, NP_DIMS, spec);
    assert_code(A::load(&dir, &options), 104, "vocab.json");
}

// ---------------------------------------------------------------------------------------------------------------
// Generation with the runtime's hand-made policy (`fixtures::policy_graph`): with prompt "a", profile (1, 0) greedily
// replies "a c a e" and profile (0, 1) "b d b e" (worked out by hand in runtime/tests/policy.rs).

pub use fixtures::policy_graph::{self, A, B, C, DD, E, EOS, greedy};

pub fn policy_bundle(root: &Path) -> PathBuf {
    fixtures::ensure_ort();
    policy_graph::policy_bundle(&root.join("policy"))
}

pub fn load_policy<A: Api>(root: &Path) -> A::Model {
    A::load(&policy_bundle(root), &Options::default()).unwrap_or_else(|f| panic!("load policy bundle: {f:?}"))
}

/// The two users of the policy tests.
pub const Z_A: [f32; 2] = [1.0, 0.0];
pub const Z_B: [f32; 2] = [0.0, 1.0];

/// What the Rust API generates for the same requests, on its own load of the bundle.
fn rust_generate(dir: &Path, prompts: &[&str], zs: &[&[f32]], params: &GenerationParams) -> Vec<Generation> {
    let model = steer_runtime::Model::load(dir, &steer_runtime::LoadOptions::default()).unwrap();
    let profiles: Vec<steer_runtime::Profile> =
        zs.iter().map(|z| steer_runtime::Profile::from_vec(z.to_vec()).unwrap()).collect();
    let requests: Vec<steer_runtime::GenerationRequest<'_>> =
        prompts.iter().zip(&profiles).map(|(p, z)| steer_runtime::GenerationRequest::new(p, z)).collect();
    model.generate(&requests, params).unwrap()
}

pub fn generation_steers_each_row_by_its_profile<A: Api>() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = policy_bundle(tmp.path());
    let model = A::load(&dir, &Options::default()).unwrap();
    assert!(A::has_policy(&model));
    assert_eq!(A::generation_defaults(&model).unwrap(), greedy());
    let (za, zb) = (A::profile_from(&Z_A).unwrap(), A::profile_from(&Z_B).unwrap());

    // Two users, one prompt, one call: each row follows its own profile.
    let out = A::generate(&model, &["a", "a"], &[&za, &zb], Some(&greedy()), None).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].text, "a c a e");
    assert_eq!(out[0].token_ids, [A, C, A, E]);
    assert_eq!((out[0].finish, out[0].prompt_tokens), (FinishReason::Eos, 6));
    assert_eq!(out[1].text, "b d b e");
    assert_eq!(out[1].token_ids, [B, DD, B, E]);
    assert_eq!((out[1].finish, out[1].prompt_tokens), (FinishReason::Eos, 6));
    assert_ne!(out[0].text, out[1].text);
    assert_eq!(out, rust_generate(&dir, &["a", "a"], &[&Z_A, &Z_B], &greedy()), "the Rust API's replies");
    // No parameters: the bundle's defaults (greedy here).
    assert_eq!(A::generate(&model, &["a", "a"], &[&za, &zb], None, None).unwrap(), out);
    // The same profile in several rows, and rows in another order.
    let again = A::generate(&model, &["a", "a", "a"], &[&zb, &za, &zb], None, None).unwrap();
    assert_eq!(again.iter().map(|g| g.text.as_str()).collect::<Vec<_>>(), ["b d b e", "a c a e", "b d b e"]);

    // A stop string cuts the text before it; the length limit ends a row.
    let stop = GenerationParams { stop: vec!["zzz".into(), " e".into()], ..greedy() };
    let out = A::generate(&model, &["a"], &[&za], Some(&stop), None).unwrap();
    assert_eq!((out[0].text.as_str(), out[0].finish), ("a c a", FinishReason::Stop));
    assert_eq!(out[0].token_ids, [A, C, A, E]);
    let short = GenerationParams { max_new_tokens: 2, ..greedy() };
    let out = A::generate(&model, &["a", "a"], &[&za, &zb], Some(&short), None).unwrap();
    assert_eq!((out[0].text.as_str(), out[0].finish), ("a c", FinishReason::Length));
    assert_eq!((out[1].text.as_str(), out[1].finish), ("b d", FinishReason::Length));
    assert_eq!(out, rust_generate(&dir, &["a", "a"], &[&Z_A, &Z_B], &short));

    // A bundle whose defaults have stop strings: they come back (C: library-owned strings) and apply to calls
    // without parameters.
    let defaults = GenerationParams { stop: vec!["d b".into(), " e".into()], ..greedy() };
    let spec = steer_runtime::PolicySpec { defaults: defaults.clone(), ..policy_graph::policy_spec() };
    let graph = policy_graph::policy_graph(policy_graph::Broken::default());
    let dir =
        policy_graph::policy_bundle_with(&tmp.path().join("stops"), spec, graph, policy_graph::policy_tokenizer_json());
    let with_stops = A::load(&dir, &Options::default()).unwrap();
    assert_eq!(A::generation_defaults(&with_stops).unwrap(), defaults);
    assert_eq!(A::generation_defaults(&with_stops).unwrap(), defaults, "asking twice gives the same");
    let out = A::generate(&with_stops, &["a", "a"], &[&za, &zb], None, None).unwrap();
    assert_eq!((out[0].text.as_str(), out[0].finish), ("a c a", FinishReason::Stop));
    assert_eq!((out[1].text.as_str(), out[1].finish), ("b ", FinishReason::Stop));
}

pub fn streamed_deltas_concatenate_and_false_cancels<A: Api>() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load_policy::<A>(tmp.path());
    let (za, zb) = (A::profile_from(&Z_A).unwrap(), A::profile_from(&Z_B).unwrap());
    for stop in [vec![], vec!["a e".to_string()], vec!["d b e".to_string()]] {
        let params = GenerationParams { stop, ..greedy() };
        let mut streamed = vec![String::new(); 2];
        let mut tokens = vec![Vec::new(); 2];
        let mut on_token = |row: usize, token: u32, delta: &str| {
            streamed[row].push_str(delta);
            tokens[row].push(token);
            true
        };
        let out = A::generate(&model, &["a", "a"], &[&za, &zb], Some(&params), Some(&mut on_token)).unwrap();
        assert_eq!(out, A::generate(&model, &["a", "a"], &[&za, &zb], Some(&params), None).unwrap());
        for row in 0..2 {
            assert_eq!(streamed[row], out[row].text, "row {row}, stop {:?}", params.stop);
            assert!(tokens[row].starts_with(&out[row].token_ids), "row {row}: {:?}", tokens[row]);
        }
    }
    // Every token's delta, EOS included (which adds nothing).
    let mut events = Vec::new();
    let mut on_token = |row: usize, token: u32, delta: &str| {
        events.push((row, token, delta.to_string()));
        true
    };
    A::generate(&model, &["a"], &[&za], None, Some(&mut on_token)).unwrap();
    let expected: Vec<(usize, u32, String)> =
        [(A, "a"), (C, " c"), (A, " a"), (E, " e"), (EOS, "")].iter().map(|&(id, t)| (0, id, t.to_string())).collect();
    assert_eq!(events, expected);

    // Returning false after each row's second token (events alternate rows) cancels both rows with 2 tokens.
    let mut seen = Vec::new();
    let mut on_token = |row: usize, token: u32, _: &str| {
        seen.push((row, token));
        seen.len() < 4
    };
    let out = A::generate(&model, &["a", "a"], &[&za, &zb], Some(&greedy()), Some(&mut on_token)).unwrap();
    assert_eq!(seen, [(0, A), (1, B), (0, C), (1, DD)]);
    assert_eq!(out[0].token_ids, [A, C]);
    assert_eq!(out[1].token_ids, [B, DD]);
    assert_eq!((out[0].text.as_str(), out[1].text.as_str()), ("a c", "b d"));
    assert!(out.iter().all(|g| g.finish == FinishReason::Cancelled), "{out:?}");
}

pub fn best_of_n_reranks_with_the_bundle_reward<A: Api>() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load_policy::<A>(tmp.path());
    let z = A::profile_from(&[0.5, 0.5]).unwrap();
    let params = GenerationParams { temperature: 1.5, max_new_tokens: 5, seed: 3, ..greedy() };
    let best = A::generate_best_of_n(&model, "a", &z, 4, Some(&params)).unwrap();
    assert_eq!((best.candidates.len(), best.rewards.len()), (4, 4));
    for (i, candidate) in best.candidates.iter().enumerate() {
        let seeded = GenerationParams { seed: 3 + i as u64, ..params.clone() };
        let alone = A::generate(&model, &["a"], &[&z], Some(&seeded), None).unwrap();
        assert_eq!(candidate, &alone[0], "candidate {i} is seed 3 + {i}");
    }
    let texts: Vec<&str> = best.candidates.iter().map(|c| c.text.as_str()).collect();
    assert_close(&best.rewards, &A::score_text(&model, &z, "a", &texts).unwrap().reward);
    let max = best.rewards.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert_eq!(best.rewards[best.best], max);
    assert!(best.rewards[..best.best].iter().all(|&r| r < max));
    // Greedy candidates are all the same reply.
    let greedy_best = A::generate_best_of_n(&model, "a", &A::profile_from(&Z_A).unwrap(), 2, None).unwrap();
    assert!(greedy_best.candidates.iter().all(|c| c.text == "a c a e"), "{greedy_best:?}");
    assert_eq!(greedy_best.best, 0);
}

pub fn bad_generation_calls_get_stable_codes<A: Api>() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load_policy::<A>(tmp.path());
    let z = A::profile_from(&Z_A).unwrap();
    let generate = |params: GenerationParams| A::generate(&model, &["a"], &[&z], Some(&params), None);
    assert_code(generate(GenerationParams { temperature: -1.0, ..greedy() }), 308, "`temperature`");
    assert_code(generate(GenerationParams { temperature: f32::NAN, ..greedy() }), 308, "`temperature`");
    assert_code(generate(GenerationParams { top_p: 1.5, ..greedy() }), 308, "`top_p`");
    assert_code(generate(GenerationParams { top_p: 0.0, ..greedy() }), 308, "`top_p`");
    assert_code(generate(GenerationParams { repetition_penalty: 0.0, ..greedy() }), 308, "`repetition_penalty`");
    assert_code(generate(GenerationParams { max_new_tokens: 0, ..greedy() }), 308, "`max_new_tokens`");
    assert_code(generate(GenerationParams { stop: vec!["e".into(), String::new()], ..greedy() }), 308, "`stop`");
    assert_code(A::generate_best_of_n(&model, "a", &z, 0, None), 308, "`n`");
    let hot = GenerationParams { top_p: 1.5, ..greedy() };
    assert_code(A::generate_best_of_n(&model, "a", &z, 2, Some(&hot)), 308, "`top_p`");

    // 5 template tokens + 11 words + 8 new tokens = 24 fits the window; 9 new tokens do not.
    let prompt = ["a"; 11].join(" ");
    assert_eq!(A::generate(&model, &[&prompt], &[&z], None, None).unwrap()[0].prompt_tokens, 16);
    let long = GenerationParams { max_new_tokens: 9, ..greedy() };
    assert_code(A::generate(&model, &[&prompt], &[&z], Some(&long), None), 309, "16 prompt tokens");
    assert_code(A::generate_best_of_n(&model, &prompt, &z, 2, Some(&long)), 309, "context window of 24");

    // A profile of the wrong length; no rows.
    let short = A::profile_from(&[1.0]).unwrap();
    assert_code(A::generate(&model, &["a", "a"], &[&z, &short], None, None), 305, "latent_dim = 2");
    assert_code(A::generate_best_of_n(&model, "a", &short, 2, None), 305, "latent_dim = 2");
    assert_code(A::generate(&model, &[], &[], None, None), 303, "requests");

    // A bundle without a policy.
    let plain = load_text::<A>(tmp.path(), ModelKind::NpBtl);
    assert!(!A::has_policy(&plain));
    assert_code(A::generation_defaults(&plain), 310, "no policy");
    assert_code(A::generate(&plain, &["a"], &[&z], Some(&greedy()), None), 310, "no policy");
    assert_code(A::generate(&plain, &["a"], &[&z], None, None), 310, "no policy");
    assert_code(A::generate_best_of_n(&plain, "a", &z, 2, Some(&greedy())), 310, "no policy");
}

/// The demo's NP-BTL architecture (d = 1, H = 64, 8 heads) with seeded random weights, written by the same ONNX
/// writer as the trainer's export.
pub fn demo_architecture_bundle(dir: &Path) -> PathBuf {
    fixtures::ensure_ort();
    fixtures::np_btl_bundle(dir, fixtures::NpBtlShape { hidden: 64, ..fixtures::NpBtlShape::DEMO }, 3)
}

pub fn eight_threads_share_one_model<A: Api>() {
    const THREADS: usize = 8;
    const CALLS: usize = 1_000;
    let tmp = tempfile::tempdir().unwrap();
    let dir = demo_architecture_bundle(tmp.path());
    let options = Options { session_pool_size: Some(4), ..Options::default() };
    let model = A::load(&dir, &options).unwrap();
    // Each thread has its own user (k = thread + 1 choices) and scores the same candidates.
    let users: Vec<(Vec<f32>, Vec<f32>)> = (0..THREADS)
        .map(|t| {
            let k = t + 1;
            let chosen = (0..k).map(|i| 0.9 - 0.07 * (i + t) as f32 % 0.8).collect();
            let rejected = (0..k).map(|i| 0.1 + 0.05 * (i * t) as f32 % 0.9).collect();
            (chosen, rejected)
        })
        .collect();
    let candidates = [0.55f32, 0.95, 0.1, 0.3];
    let profiles: Vec<A::Profile> =
        users.iter().map(|(c, r)| A::infer_profile(&model, c, r, c.len(), 1).unwrap()).collect();
    let single: Vec<Scored> = profiles.iter().map(|p| A::score(&model, p, &candidates, 4, 1).unwrap()).collect();
    assert!(single.windows(2).any(|w| w[0] != w[1]), "users should differ");

    std::thread::scope(|scope| {
        for (t, (profile, expected)) in profiles.iter().zip(&single).enumerate() {
            let model = &model;
            scope.spawn(move || {
                for call in 0..CALLS {
                    let scores = A::score(model, profile, &candidates, 4, 1).unwrap();
                    assert_eq!(&scores, expected, "thread {t}, call {call}");
                }
            });
        }
    });
}
