//! Evaluation of exported bundles through the runtime (ONNX Runtime), on held-out users.
//!
//! Every figure here comes from the bundle as a user would load it. For each k, the same seeded test
//! users are given to every model, and only targets outside the user's context ("unseen") count.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use ndarray::{Array2, Array3, ArrayView2};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use steer_runtime::{Model, Profile};

use crate::error::Result;
use crate::model::RewardModel;
use crate::sampler::{ContextSize, Sampler, TaskBatch};
use crate::tasks::{PairSource, Split};

/// The context sizes every report uses.
pub const DEFAULT_KS: [usize; 5] = [0, 1, 3, 5, 10];
/// Key for the figure over all user types.
pub const ALL: &str = "all";

/// How to evaluate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalConfig {
    /// Context sizes.
    pub ks: Vec<usize>,
    /// Held-out users per k.
    pub n_tasks: usize,
    /// Target pairs per user.
    pub n_targets: usize,
    /// Seed of the test users (shared by every model so they face the same users).
    pub seed: u64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig { ks: DEFAULT_KS.to_vec(), n_tasks: 2_000, n_targets: 20, seed: 1234 }
    }
}

/// `{user type or "all": {k: value}}`.
pub type ByTypeAndK = BTreeMap<String, BTreeMap<String, f64>>;

/// One model's results.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModelEval {
    /// Accuracy on unseen targets, percent.
    pub accuracy: ByTypeAndK,
    /// Standard error of `accuracy` over users, percent.
    pub stderr: ByTypeAndK,
    /// Error (percent) on unseen targets where the user types disagree, i.e. how often the model
    /// backs the wrong type: the user-identification error. Keyed by k.
    pub conflict_error: BTreeMap<String, f64>,
    /// Standard error of `conflict_error` over users (a user's conflicting targets share one context,
    /// so users, not targets, are the independent samples).
    pub conflict_error_stderr: BTreeMap<String, f64>,
    /// Error (percent) in identifying the user's type, read off the model's choice on the task's
    /// identification probe pair (see `TaskSpec::identification_probe`); a coin flip counts half.
    /// Keyed by k.
    pub identification_error: BTreeMap<String, f64>,
    /// Standard error of `identification_error` over users.
    pub identification_error_stderr: BTreeMap<String, f64>,
    /// candle vs ONNX Runtime over z and rewards on the evaluation inputs, when the candle model was
    /// supplied.
    pub parity: Option<Parity>,
    /// For conditioned models: whether predictions depend on the user's context.
    pub z_usage: Option<ZUsage>,
}

impl ModelEval {
    /// Stores the accuracy per type and overall, and the conflict error, of `scored` under `key` (k).
    fn record(&mut self, types: &[String], key: &str, scored: &Scored) {
        let all: Vec<f64> = scored.per_type.iter().flatten().copied().collect();
        let rows = types.iter().cloned().zip(scored.per_type.iter()).chain(std::iter::once((ALL.to_string(), &all)));
        for (name, values) in rows {
            let (mean, se) = mean_and_stderr(values);
            self.accuracy.entry(name.clone()).or_default().insert(key.to_string(), mean);
            self.stderr.entry(name).or_default().insert(key.to_string(), se);
        }
        if !scored.conflict_error.is_empty() {
            let (mean, se) = mean_and_stderr(&scored.conflict_error);
            self.conflict_error.insert(key.to_string(), mean);
            self.conflict_error_stderr.insert(key.to_string(), se);
        }
    }
}

/// How closely ONNX Runtime reproduces candle on the same inputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Parity {
    /// Largest |candle − ONNX Runtime| over z and rewards (and DPL's std).
    pub max_abs_diff: f64,
    /// The same, divided per output by max(1, largest |value| of that output): the normwise relative
    /// error, absolute for outputs of magnitude up to 1. f32 keeps 24 bits, so two correct
    /// implementations that sum in different orders agree to about 1e-7 of an output's scale; z sums
    /// over the context and can reach magnitudes in the hundreds, where one f32 step exceeds 1e-5.
    pub max_normwise_diff: f64,
    /// Largest |candle − ONNX Runtime| of p(a ≻ b), the probability users consume.
    pub max_probability_diff: f64,
}

impl Parity {
    /// The worse of two measurements.
    pub fn max(self, other: Parity) -> Parity {
        Parity {
            max_abs_diff: self.max_abs_diff.max(other.max_abs_diff),
            max_normwise_diff: self.max_normwise_diff.max(other.max_normwise_diff),
            max_probability_diff: self.max_probability_diff.max(other.max_probability_diff),
        }
    }
}

/// The held-out users for context size `k`, identical for every model.
pub fn test_users(task: &dyn PairSource, cfg: &EvalConfig, k: usize) -> Result<TaskBatch> {
    let sampler = Sampler::new(task, cfg.n_targets)?;
    let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(k as u64 * 7919));
    sampler.sample(Split::Test, cfg.n_tasks, ContextSize::Fixed(k), &mut rng)
}

/// The batch's inputs as ndarray views for the runtime. A k = 0 batch is passed with a context axis
/// of length 0.
struct RuntimeInputs {
    context: Array3<f32>,
    mask: Array2<f32>,
    option_a: Array3<f32>,
    option_b: Array3<f32>,
}

fn runtime_inputs(batch: &TaskBatch) -> Result<RuntimeInputs> {
    let (b, n, d) = (batch.batch, batch.n_targets, batch.dim);
    let k = if batch.k.iter().all(|&k| k == 0) { 0 } else { batch.k_max };
    let shape_err = |e: ndarray::ShapeError| crate::error::Error::Export(format!("batch layout: {e}"));
    let (context, mask) = if k == 0 {
        (Array3::zeros((b, 0, 2 * d)), Array2::zeros((b, 0)))
    } else {
        (
            Array3::from_shape_vec((b, k, 2 * d), batch.context.clone()).map_err(shape_err)?,
            Array2::from_shape_vec((b, k), batch.mask.clone()).map_err(shape_err)?,
        )
    };
    Ok(RuntimeInputs {
        context,
        mask,
        option_a: Array3::from_shape_vec((b, n, d), batch.option_a.clone()).map_err(shape_err)?,
        option_b: Array3::from_shape_vec((b, n, d), batch.option_b.clone()).map_err(shape_err)?,
    })
}

/// Through the runtime: each user's profile and p(a ≻ b) for every target, `[B, N]`.
pub fn runtime_preferences(model: &Model, batch: &TaskBatch) -> Result<(Vec<Profile>, Array2<f32>)> {
    let inputs = runtime_inputs(batch)?;
    let profiles = model.infer_profiles_padded(inputs.context.view(), inputs.mask.view())?;
    let p = model.preference_batch(&profiles, inputs.option_a.view(), inputs.option_b.view())?;
    Ok((profiles, p))
}

/// Per user, 100 when the model's choice on the probe pair backs the wrong type, 0 when the right
/// one, 50 for an exact tie.
fn identification(
    model: &Model,
    profiles: &[Profile],
    batch: &TaskBatch,
    probe: (Vec<f32>, Vec<f32>),
) -> Result<Vec<f64>> {
    let (a, b) = probe;
    let users = profiles.len();
    let tile = |o: &[f32]| Array3::from_shape_fn((users, 1, o.len()), |(_, _, i)| o[i]);
    let p = model.preference_batch(profiles, tile(&a).view(), tile(&b).view())?;
    Ok((0..users)
        .map(|t| {
            let p_a = p[[t, 0]];
            let picks_type_0 = p_a > 0.5;
            if p_a == 0.5 {
                50.0
            } else if picks_type_0 == (batch.user_type[t] == 0) {
                0.0
            } else {
                100.0
            }
        })
        .collect())
}

/// Compares one output of candle with the runtime's.
fn compare(candle: &Tensor, ort: ArrayView2<f32>) -> Result<Parity> {
    let candle = candle.flatten_all()?.to_vec1::<f32>()?;
    let scale = candle.iter().fold(1.0f64, |m, v| m.max(f64::from(v.abs())));
    let max_abs_diff = candle.iter().zip(ort.iter()).map(|(a, b)| f64::from((a - b).abs())).fold(0.0, f64::max);
    Ok(Parity { max_abs_diff, max_normwise_diff: max_abs_diff / scale, max_probability_diff: 0.0 })
}

/// candle vs runtime on `batch`: z, the rewards of both options of every target, and p(a ≻ b).
pub fn parity(candle_model: &RewardModel, model: &Model, batch: &TaskBatch) -> Result<Parity> {
    let inputs = runtime_inputs(batch)?;
    let t = batch.tensors(&Device::Cpu)?;
    let profiles = model.infer_profiles_padded(inputs.context.view(), inputs.mask.view())?;
    let mut worst = Parity::default();
    let candle_z = match candle_model {
        RewardModel::NpBtl(m) => {
            let candle_z = m.encoder.forward(&t.context, &t.mask)?;
            worst = worst.max(compare(&candle_z, stack(&profiles).view())?);
            Some(candle_z)
        }
        _ => None,
    };
    for (candle_options, ort_options) in [(&t.option_a, inputs.option_a.view()), (&t.option_b, inputs.option_b.view())]
    {
        let scores = model.score_batch(&profiles, ort_options)?;
        let (reward, std) = match (candle_model, &candle_z) {
            (RewardModel::NpBtl(m), Some(candle_z)) => (m.reward(candle_options, candle_z)?, None),
            (RewardModel::Btl(m), _) => (candle_core::Module::forward(&m.reward, candle_options)?.squeeze(2)?, None),
            (RewardModel::Dpl(m), _) => {
                let (mean, std) = m.distribution(candle_options)?;
                (mean, Some(std))
            }
            (RewardModel::NpBtl(_), None) => continue,
        };
        worst = worst.max(compare(&reward, scores.reward.view())?);
        if let (Some(std), Some(ort_std)) = (std, &scores.std) {
            worst = worst.max(compare(&std, ort_std.view())?);
        }
    }
    let candle_p = candle_nn::ops::sigmoid(&candle_model.logits(&t)?)?;
    let ort_p = model.preference_batch(&profiles, inputs.option_a.view(), inputs.option_b.view())?;
    worst.max_probability_diff = compare(&candle_p, ort_p.view())?.max_abs_diff;
    Ok(worst)
}

/// The mean of `values` and its standard error (NaN for no values, 0 error for one).
pub fn mean_and_stderr(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, (var / n).sqrt())
}

/// Accuracy of `p` (p(a ≻ b) per target) on the unseen targets of `batch`.
struct Scored {
    /// Per user type, each user's accuracy in percent.
    per_type: Vec<Vec<f64>>,
    /// Per user with at least one unseen target on which the user types disagree: the percentage of
    /// those targets predicted wrongly (a coin flip counts half).
    conflict_error: Vec<f64>,
}

fn score(p: &Array2<f32>, batch: &TaskBatch, n_types: usize) -> Scored {
    let mut out = Scored { per_type: vec![Vec::new(); n_types], conflict_error: Vec::new() };
    let n = batch.n_targets;
    for t in 0..batch.batch {
        let (mut correct, mut unseen) = (0.0, 0usize);
        let (mut conflicts, mut conflict_wrong) = (0usize, 0.0);
        for j in 0..n {
            let i = t * n + j;
            if batch.unseen[i] == 0.0 {
                continue;
            }
            let p_a = p[[t, j]];
            // A coin flip at exactly 0.5 is right half the time.
            let hit = if p_a == 0.5 {
                0.5
            } else if (p_a > 0.5) == (batch.label[i] == 1.0) {
                1.0
            } else {
                0.0
            };
            correct += hit;
            unseen += 1;
            if batch.types_disagree[i] == Some(true) {
                conflicts += 1;
                conflict_wrong += 1.0 - hit;
            }
        }
        if unseen > 0 {
            out.per_type[batch.user_type[t]].push(100.0 * correct / unseen as f64);
        }
        if conflicts > 0 {
            out.conflict_error.push(100.0 * conflict_wrong / conflicts as f64);
        }
    }
    out
}

/// Whether NP-BTL uses the user's context at all (method.md §7: a collapsed latent ignores z).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ZUsage {
    /// The context size tested (the largest evaluated).
    pub k: usize,
    /// Accuracy (percent) with each user's own context.
    pub accuracy_own_context: f64,
    /// Accuracy (percent) on the same targets when each user gets the next user's context instead.
    pub accuracy_swapped_context: f64,
    /// Mean over the dimensions of z of its standard deviation across users.
    pub z_spread: f64,
}

impl ZUsage {
    /// Own context must beat a stranger's by at least this many points for z to count as used.
    pub const MIN_GAIN: f64 = 2.0;

    /// Whether the model's predictions depend on the user's context.
    pub fn is_used(&self) -> bool {
        self.accuracy_own_context - self.accuracy_swapped_context >= Self::MIN_GAIN && self.z_spread > 1e-6
    }
}

fn mean_accuracy(scored: &Scored) -> f64 {
    mean_and_stderr(&scored.per_type.iter().flatten().copied().collect::<Vec<_>>()).0
}

/// Gives every user of `batch` the context of the next user, keeping their own targets and labels.
fn swap_contexts(batch: &TaskBatch) -> TaskBatch {
    let mut swapped = batch.clone();
    let row = batch.k_max * 2 * batch.dim;
    swapped.context.rotate_left(row);
    swapped.mask.rotate_left(batch.k_max);
    swapped
}

/// Profiles as rows of `[users, latent_dim]`.
fn stack(profiles: &[Profile]) -> Array2<f32> {
    let latent = profiles.first().map_or(0, Profile::latent_dim);
    Array2::from_shape_fn((profiles.len(), latent), |(user, l)| profiles[user].as_slice()[l])
}

fn z_usage(model: &Model, profiles: &[Profile], batch: &TaskBatch, n_types: usize, own: &Scored) -> Result<ZUsage> {
    let own = mean_accuracy(own);
    let k = batch.k_max;
    let swapped = mean_accuracy(&score(&runtime_preferences(model, &swap_contexts(batch))?.1, batch, n_types));
    let z_spread = stack(profiles).std_axis(ndarray::Axis(0), 0.0).mean().map_or(0.0, f64::from);
    Ok(ZUsage { k, accuracy_own_context: own, accuracy_swapped_context: swapped, z_spread })
}

/// Evaluates one bundle on `task`'s held-out users. When `candle_model` is given, also measures parity
/// between it and the bundle on the same inputs.
pub fn evaluate(
    model: &Model,
    task: &dyn PairSource,
    cfg: &EvalConfig,
    candle_model: Option<&RewardModel>,
) -> Result<ModelEval> {
    let types = task.user_types();
    let mut out = ModelEval::default();
    let k_largest = cfg.ks.iter().copied().max().unwrap_or(0);
    for &k in &cfg.ks {
        let batch = test_users(task, cfg, k)?;
        let (profiles, p) = runtime_preferences(model, &batch)?;
        let scored = score(&p, &batch, types.len());
        let key = k.to_string();
        out.record(&types, &key, &scored);
        if let (2, Some(probe)) = (types.len(), task.identification_probe()) {
            let (mean, se) = mean_and_stderr(&identification(model, &profiles, &batch, probe)?);
            out.identification_error.insert(key.clone(), mean);
            out.identification_error_stderr.insert(key, se);
        }
        if model.kind().is_conditioned() && k == k_largest && k > 0 && batch.batch > 1 {
            out.z_usage = Some(z_usage(model, &profiles, &batch, types.len(), &scored)?);
        }
        if let Some(candle_model) = candle_model {
            let measured = parity(candle_model, model, &batch)?;
            out.parity = Some(out.parity.unwrap_or_default().max(measured));
        }
    }
    Ok(out)
}

/// The per-type oracles combined by Bayes' rule, `oracles[t]` being the unconditioned bundle trained on type `t`'s
/// choices alone. Each user's posterior over types starts uniform and multiplies in every context pair's likelihood
/// `p_t(chosen ≻ rejected)`; a target's p(a ≻ b) is the posterior-weighted mean of the oracles' p. This is what a
/// model that reads the user from the context can reach when the oracles' rewards are all it knows of the types, so
/// it bounds the share of the mixed-to-oracle gap that NP-BTL can be expected to close on the same embeddings.
pub fn evaluate_oracle_posterior(oracles: &[&Model], task: &dyn PairSource, cfg: &EvalConfig) -> Result<ModelEval> {
    let types = task.user_types();
    if oracles.len() != types.len() || oracles.is_empty() {
        return Err(crate::error::Error::InvalidInput {
            input: "oracles",
            expected: format!("one oracle per user type ({})", types.len()),
            got: oracles.len().to_string(),
        });
    }
    let mut out = ModelEval::default();
    for &k in &cfg.ks {
        let batch = test_users(task, cfg, k)?;
        let inputs = runtime_inputs(&batch)?;
        let (b, d) = (batch.batch, batch.dim);
        let no_profile = vec![Profile::empty(); b];
        let mut log_likelihood = Array2::<f64>::zeros((b, oracles.len()));
        let mut target_p = Vec::with_capacity(oracles.len());
        // The context pairs' two halves, split once for every oracle.
        let context = (inputs.context.shape()[1] > 0).then(|| {
            let chosen = inputs.context.slice_axis(ndarray::Axis(2), ndarray::Slice::from(..d)).to_owned();
            let rejected = inputs.context.slice_axis(ndarray::Axis(2), ndarray::Slice::from(d..)).to_owned();
            (chosen, rejected)
        });
        for (t, oracle) in oracles.iter().enumerate() {
            target_p.push(oracle.preference_batch(&no_profile, inputs.option_a.view(), inputs.option_b.view())?);
            if let Some((chosen, rejected)) = &context {
                let p = oracle.preference_batch(&no_profile, chosen.view(), rejected.view())?;
                for ((user, pair), &p) in p.indexed_iter() {
                    if inputs.mask[[user, pair]] > 0.0 {
                        log_likelihood[[user, t]] += f64::from(p.max(1e-12)).ln();
                    }
                }
            }
        }
        let mut p = Array2::<f32>::zeros(target_p[0].dim());
        for user in 0..b {
            let row = log_likelihood.row(user);
            let best = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let weights: Vec<f64> = row.iter().map(|&v| (v - best).exp()).collect();
            let total: f64 = weights.iter().sum();
            let mut p_row = p.row_mut(user);
            for (t, w) in weights.iter().enumerate() {
                p_row.scaled_add((w / total) as f32, &target_p[t].row(user));
            }
        }
        out.record(&types, &k.to_string(), &score(&p, &batch, types.len()));
    }
    Ok(out)
}
