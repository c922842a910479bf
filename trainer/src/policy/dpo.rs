//! NP-DPO training and its implicit-reward evaluation (method §4).
//!
//! A task is one user type with `k` context pairs (k ~ U{0..max_context}) and a few target pairs; a task with no
//! context stands for any user, so its targets count once per type that judged them. z comes from the
//! frozen NP-BTL context encoder reading the context pairs' embeddings; the loss is DPO's
//! `−log σ(β[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))])` over the target pairs, with sequence
//! log-probabilities over the response tokens only. The reference log-probabilities are computed once (the policy at
//! step 0 is the base model) and the activations below the first trainable block are cached
//! ([`PolicyData::build`]), so a step runs only the top blocks and the head.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::data::PreferenceDataset;
use crate::error::{Error, Result};
use crate::model::ContextEncoder;
use crate::policy::SteerPolicy;
use crate::policy::base::Base;

/// The context sizes every evaluation reports.
pub const EVAL_KS: [usize; 5] = [0, 1, 3, 5, 10];

/// How the policy is trained; saved with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpoConfig {
    /// DPO's β.
    pub beta: f64,
    /// Optimizer steps.
    pub steps: usize,
    /// AdamW learning rate (constant).
    pub lr: f64,
    /// Tasks (users) per step.
    pub batch_tasks: usize,
    /// Target pairs per task.
    pub targets_per_task: usize,
    /// Largest context size.
    pub max_context: usize,
    /// Validate (implicit-reward accuracy at k = max_context on dev) every this many steps; the best step is kept.
    pub eval_every: usize,
    /// Seed of task sampling.
    pub seed: u64,
}

impl Default for DpoConfig {
    fn default() -> Self {
        DpoConfig {
            beta: 0.05,
            steps: 150,
            lr: 1e-3,
            batch_tasks: 4,
            targets_per_task: 3,
            max_context: 10,
            eval_every: 25,
            seed: 0,
        }
    }
}

impl DpoConfig {
    /// Checks every field's range; the first one out of range is an [`Error::InvalidConfig`] naming it.
    pub fn validate(&self) -> Result<()> {
        Error::check_config(self.beta > 0.0 && self.beta.is_finite(), "beta", "a positive finite number", self.beta)?;
        Error::check_config(self.lr > 0.0 && self.lr.is_finite(), "lr", "a positive finite number", self.lr)?;
        Error::check_config(self.steps > 0, "steps", ">= 1", self.steps)?;
        Error::check_config(self.batch_tasks > 0, "batch_tasks", ">= 1", self.batch_tasks)?;
        Error::check_config(self.targets_per_task > 0, "targets_per_task", ">= 1", self.targets_per_task)?;
        Error::check_config(self.eval_every > 0, "eval_every", ">= 1", self.eval_every)
    }
}

/// A pair of answers to one prompt and which one each user type prefers.
#[derive(Debug, Clone)]
pub struct PolicyPair {
    /// Sequence index of answer a.
    pub a: usize,
    /// Sequence index of answer b.
    pub b: usize,
    /// For each user type that judged the pair: whether it prefers a.
    pub prefers_a: BTreeMap<String, bool>,
}

impl PolicyPair {
    /// `(chosen, rejected)` sequence indices for `user_type`, if that type judged the pair.
    pub fn ordered(&self, user_type: &str) -> Option<(usize, usize)> {
        self.prefers_a.get(user_type).map(|&a| if a { (self.a, self.b) } else { (self.b, self.a) })
    }
}

/// One split of the policy task, tokenized, with everything that does not change during training precomputed.
pub struct PolicyData {
    /// The user types, sorted.
    pub user_types: Vec<String>,
    /// The pairs.
    pub pairs: Vec<PolicyPair>,
    /// Each answer's `(prompt, response)` text.
    pub texts: Vec<(String, String)>,
    /// Each sequence's token ids: the templated prompt, the response, the end-of-turn token.
    pub ids: Vec<Vec<u32>>,
    /// Where each sequence's response starts.
    pub response_start: Vec<usize>,
    /// The input of the first trainable block, `[T_i, hidden]` per sequence.
    pub layer_inputs: Vec<Tensor>,
    /// log π_ref of each sequence's response.
    pub ref_log_probs: Vec<f32>,
    /// The NP embedder's embedding of each answer, `[sequences, d]`.
    pub embeddings: Array2<f32>,
}

impl PolicyData {
    /// The distinct answers of `data`, in first-seen order, as `(prompt, response)` texts, and the merged pairs.
    pub fn merge(data: &PreferenceDataset) -> (Vec<(String, String)>, Vec<PolicyPair>) {
        let mut texts: Vec<(String, String)> = Vec::new();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        let mut pairs: Vec<PolicyPair> = Vec::new();
        let mut pair_index: HashMap<(usize, usize), usize> = HashMap::new();
        for pair in &data.pairs {
            let mut seq = |response: &str| {
                let key = (pair.prompt.clone(), response.to_string());
                *index.entry(key.clone()).or_insert_with(|| {
                    texts.push(key);
                    texts.len() - 1
                })
            };
            let (chosen, rejected) = (seq(&pair.chosen), seq(&pair.rejected));
            let key = (chosen.min(rejected), chosen.max(rejected));
            let slot = *pair_index.entry(key).or_insert_with(|| {
                pairs.push(PolicyPair { a: chosen, b: rejected, prefers_a: BTreeMap::new() });
                pairs.len() - 1
            });
            let merged = &mut pairs[slot];
            merged.prefers_a.insert(pair.user_type.clone(), merged.a == chosen);
        }
        (texts, pairs)
    }

    /// Tokenizes `data` with the base's chat template, caches the first trainable block's inputs and the reference log-probs under
    /// `policy` (untrained, so equal to the base model), and takes the answers' embeddings from `embeddings` (rows in
    /// the order of [`merge`](Self::merge)'s texts).
    pub fn build(
        data: &PreferenceDataset,
        policy: &SteerPolicy,
        base: &Base,
        embeddings: Array2<f32>,
        progress: bool,
    ) -> Result<PolicyData> {
        let (texts, pairs) = Self::merge(data);
        if embeddings.nrows() != texts.len() {
            return Err(Error::InvalidInput {
                input: "embeddings",
                expected: format!("one row per distinct answer ({})", texts.len()),
                got: embeddings.nrows().to_string(),
            });
        }
        let mut plain = base.tokenizer.clone();
        plain.set_encode_special_tokens(true);
        let mut ids = Vec::with_capacity(texts.len());
        let mut response_start = Vec::with_capacity(texts.len());
        for (prompt, response) in &texts {
            let mut seq = base.chat.encode(prompt)?;
            response_start.push(seq.len());
            let answer = plain
                .encode(response.as_str(), false)
                .map_err(|e| Error::Tokenizer { context: "encoding an answer".into(), message: e.to_string() })?;
            seq.extend(answer.get_ids());
            seq.push(base.eos);
            ids.push(seq);
        }
        let mut out = PolicyData {
            user_types: data.user_types.clone(),
            pairs,
            texts,
            ids,
            response_start,
            layer_inputs: Vec::new(),
            ref_log_probs: Vec::new(),
            embeddings,
        };
        let bar = if progress { ProgressBar::new(out.ids.len() as u64) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template("caching frozen layers {bar:30} {pos}/{len} sequences [{elapsed}<{eta}]")
                .map_err(|e| Error::InvalidConfig {
                    field: "progress",
                    expected: "a template".into(),
                    got: e.to_string(),
                })?,
        );
        let device = policy.model().device().clone();
        let first = policy.first_trainable();
        let z = Tensor::zeros((1, policy.shape().latent_dim), DType::F32, &device)?;
        for chunk in (0..out.ids.len()).collect::<Vec<_>>().chunks(8) {
            let (ids, mask) = out.padded_ids(chunk, &device)?;
            let inputs = policy.model().layer_input(&ids, &mask, first)?;
            for (row, &seq) in chunk.iter().enumerate() {
                out.layer_inputs.push(inputs.get(row)?.narrow(0, 0, out.ids[seq].len())?.contiguous()?);
            }
            let z = z.repeat((chunk.len(), 1))?;
            out.ref_log_probs.extend(out.log_probs(policy, chunk, &z)?.to_vec1::<f32>()?);
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        Ok(out)
    }

    /// The distinct prompts, in first-seen order, at most `limit` of them.
    pub fn prompts(&self, limit: usize) -> Vec<&str> {
        let mut prompts: Vec<&str> = Vec::new();
        for (prompt, _) in &self.texts {
            if prompts.len() < limit && !prompts.contains(&prompt.as_str()) {
                prompts.push(prompt);
            }
        }
        prompts
    }

    /// Right-padded token ids and attention mask `[N, T]` of sequences `seqs`.
    fn padded_ids(&self, seqs: &[usize], device: &Device) -> Result<(Tensor, Tensor)> {
        let longest = seqs.iter().map(|&s| self.ids[s].len()).max().unwrap_or(1);
        let mut ids = Vec::with_capacity(seqs.len() * longest);
        let mut mask = Vec::with_capacity(seqs.len() * longest);
        for &s in seqs {
            let seq = &self.ids[s];
            ids.extend(seq.iter().copied().chain(std::iter::repeat_n(0, longest - seq.len())));
            mask.extend((0..longest).map(|t| u32::from(t < seq.len())));
        }
        Ok((
            Tensor::from_vec(ids, (seqs.len(), longest), device)?,
            Tensor::from_vec(mask, (seqs.len(), longest), device)?,
        ))
    }

    /// log π(response | prompt, z) of sequences `seqs` under `policy`, `[N]`, with `z` `[N, latent]` (differentiable).
    pub fn log_probs(&self, policy: &SteerPolicy, seqs: &[usize], z: &Tensor) -> Result<Tensor> {
        let device = z.device();
        let (ids, mask) = self.padded_ids(seqs, device)?;
        let longest = ids.dim(1)?;
        let hidden = policy.model().config().hidden_size;
        let layer_input = if self.layer_inputs.len() == self.ids.len() {
            let rows = seqs
                .iter()
                .map(|&s| {
                    let x = &self.layer_inputs[s];
                    let pad = longest - x.dim(0)?;
                    Ok(if pad == 0 {
                        x.clone()
                    } else {
                        Tensor::cat(&[x, &Tensor::zeros((pad, hidden), DType::F32, device)?], 0)?
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Tensor::stack(&rows, 0)?
        } else {
            policy.model().layer_input(&ids, &mask, policy.first_trainable())?
        };
        let response: Vec<Vec<bool>> = seqs
            .iter()
            .map(|&s| (0..longest).map(|t| t >= self.response_start[s] && t < self.ids[s].len()).collect())
            .collect();
        policy.log_probs_from(&layer_input, &mask, &ids, &response, z)
    }

    /// Pair indices that `user_type` judged.
    pub fn judged_by(&self, user_type: &str) -> Vec<usize> {
        (0..self.pairs.len()).filter(|&p| self.pairs[p].prefers_a.contains_key(user_type)).collect()
    }
}

/// z for each `(user_type, context pair indices into pool)`, `[B, latent]`, from the frozen encoder (detached).
pub fn profiles(
    encoder: &ContextEncoder,
    pool: &PolicyData,
    contexts: &[(&str, Vec<usize>)],
    device: &Device,
) -> Result<Tensor> {
    let d = pool.embeddings.ncols();
    let width = contexts.iter().map(|(_, c)| c.len()).max().unwrap_or(0).max(1);
    let mut context = vec![0f32; contexts.len() * width * 2 * d];
    let mut mask = vec![0f32; contexts.len() * width];
    for (b, (user_type, pairs)) in contexts.iter().enumerate() {
        for (k, &p) in pairs.iter().enumerate() {
            let (chosen, rejected) = pool.pairs[p].ordered(user_type).ok_or_else(|| Error::InvalidInput {
                input: "context",
                expected: format!("pairs judged by `{user_type}`"),
                got: format!("pair {p}"),
            })?;
            let row = (b * width + k) * 2 * d;
            for j in 0..d {
                context[row + j] = pool.embeddings[[chosen, j]];
                context[row + d + j] = pool.embeddings[[rejected, j]];
            }
            mask[b * width + k] = 1.0;
        }
    }
    // The encoder lives on the CPU (it is small); z moves to the policy's device.
    let context = Tensor::from_vec(context, (contexts.len(), width, 2 * d), &Device::Cpu)?;
    let mask = Tensor::from_vec(mask, (contexts.len(), width), &Device::Cpu)?;
    Ok(encoder.forward(&context, &mask)?.detach().to_device(device)?)
}

/// What training measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DpoMetrics {
    /// The step whose weights were kept (best dev accuracy).
    pub best_step: usize,
    /// Mean implicit-reward accuracy over user types at k = max_context on dev, at the best step.
    pub best_dev_accuracy: f64,
    /// `(step, mean DPO loss since the last check, dev accuracy)` at every check.
    pub history: Vec<(usize, f64, f64)>,
    /// Mean wall time of one optimizer step, in seconds.
    pub seconds_per_step: f64,
    /// Wall time of the whole training loop, in seconds.
    pub train_seconds: f64,
}

/// Trains the FiLM and LoRA variables in `varmap` by DPO on `train`, selecting on `dev`, and leaves the best step's
/// weights in `varmap`.
pub fn train_dpo(
    policy: &SteerPolicy,
    varmap: &VarMap,
    encoder: &ContextEncoder,
    train: &PolicyData,
    dev: &PolicyData,
    cfg: &DpoConfig,
    progress: bool,
) -> Result<DpoMetrics> {
    cfg.validate()?;
    let device = policy.model().device().clone();
    let vars = varmap.all_vars();
    let mut optimizer = AdamW::new(vars.clone(), ParamsAdamW { lr: cfg.lr, weight_decay: 0.0, ..Default::default() })?;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let judged: Vec<(String, Vec<usize>)> = train.user_types.iter().map(|t| (t.clone(), train.judged_by(t))).collect();
    let snapshot =
        |vars: &[candle_core::Var]| -> Result<Vec<Tensor>> { vars.iter().map(|v| Ok(v.as_tensor().copy()?)).collect() };
    let validate = |rng_seed: u64| -> Result<f64> {
        let accuracy =
            implicit_reward_accuracy(policy, encoder, train, dev, &[cfg.max_context], 1, rng_seed, cfg.beta)?;
        Ok(accuracy.values().map(|by_k| by_k.values().sum::<f64>()).sum::<f64>() / accuracy.len().max(1) as f64)
    };
    let mut best = (0, validate(cfg.seed)?, snapshot(&vars)?);
    let mut history = vec![(0, f64::NAN, best.1)];
    let bar = if progress { ProgressBar::new(cfg.steps as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("NP-DPO {bar:30} {pos}/{len} steps [{elapsed}<{eta}] {msg}").map_err(|e| {
            Error::InvalidConfig { field: "progress", expected: "a template".into(), got: e.to_string() }
        })?,
    );
    let started = Instant::now();
    let mut loss_sum = (0.0, 0usize);
    for step in 1..=cfg.steps {
        let mut contexts = Vec::with_capacity(cfg.batch_tasks);
        let mut chosen = Vec::new();
        let mut rejected = Vec::new();
        let mut owner = Vec::new();
        for task in 0..cfg.batch_tasks {
            let (user_type, pairs) = &judged[rng.random_range(0..judged.len())];
            let mut shuffled = pairs.clone();
            shuffled.shuffle(&mut rng);
            let k = rng.random_range(0..=cfg.max_context.min(shuffled.len().saturating_sub(cfg.targets_per_task)));
            let (context, rest) = shuffled.split_at(k);
            for &p in rest.iter().take(cfg.targets_per_task) {
                // With no context the user is anyone: a target counts once for every type that judged it, so on a
                // pair the types judge oppositely the policy learns to stay neutral (the margin's optimum is 0)
                // instead of taking one type's side.
                let judges: Vec<&String> =
                    if k == 0 { train.pairs[p].prefers_a.keys().collect() } else { vec![user_type] };
                for judge in judges {
                    if let Some((w, l)) = train.pairs[p].ordered(judge) {
                        chosen.push(w);
                        rejected.push(l);
                        owner.push(task as u32);
                    }
                }
            }
            contexts.push((user_type.as_str(), context.to_vec()));
        }
        let z = profiles(encoder, train, &contexts, &device)?;
        let owner = Tensor::from_vec(owner, chosen.len(), &device)?;
        let z_rows = z.index_select(&owner, 0)?;
        let seqs: Vec<usize> = chosen.iter().chain(rejected.iter()).copied().collect();
        let log_probs = train.log_probs(policy, &seqs, &Tensor::cat(&[&z_rows, &z_rows], 0)?)?;
        let refs: Vec<f32> = seqs.iter().map(|&s| train.ref_log_probs[s]).collect();
        let refs = Tensor::from_vec(refs, seqs.len(), &device)?;
        let ratio = (log_probs - refs)?;
        let n = chosen.len();
        let margin = ((ratio.narrow(0, 0, n)? - ratio.narrow(0, n, n)?)? * cfg.beta)?;
        // −log σ(m) = softplus(−m), written stably.
        let loss = crate::model::layers::softplus(&margin.neg()?)?.mean_all()?;
        optimizer.backward_step(&loss)?;
        let value = f64::from(loss.to_scalar::<f32>()?);
        if !value.is_finite() {
            return Err(Error::Diverged { step, loss: value as f32 });
        }
        loss_sum = (loss_sum.0 + value, loss_sum.1 + 1);
        bar.inc(1);
        if step % cfg.eval_every.max(1) == 0 || step == cfg.steps {
            let accuracy = validate(cfg.seed)?;
            history.push((step, loss_sum.0 / loss_sum.1.max(1) as f64, accuracy));
            let line = format!("loss {:.4} dev {accuracy:.1}%", loss_sum.0 / loss_sum.1.max(1) as f64);
            bar.set_message(line.clone());
            if bar.is_hidden() {
                eprintln!("NP-DPO step {step}/{}: {line} ({:.1} s)", cfg.steps, started.elapsed().as_secs_f64());
            }
            loss_sum = (0.0, 0);
            if accuracy > best.1 {
                best = (step, accuracy, snapshot(&vars)?);
            }
        }
    }
    bar.finish_and_clear();
    let train_seconds = started.elapsed().as_secs_f64();
    for (var, value) in vars.iter().zip(&best.2) {
        var.set(value)?;
    }
    Ok(DpoMetrics {
        best_step: best.0,
        best_dev_accuracy: best.1,
        history,
        seconds_per_step: train_seconds / cfg.steps.max(1) as f64,
        train_seconds,
    })
}

/// Implicit-reward accuracy in percent, `{user type: {k: %}}`: for each user type and `k`, `draws` contexts of `k`
/// pairs from `pool` (that type's choices) give z, and a target pair of `targets` counts as right when
/// `β[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))] > 0` (a tie counts half).
#[allow(clippy::too_many_arguments)]
pub fn implicit_reward_accuracy(
    policy: &SteerPolicy,
    encoder: &ContextEncoder,
    pool: &PolicyData,
    targets: &PolicyData,
    ks: &[usize],
    draws: usize,
    seed: u64,
    beta: f64,
) -> Result<BTreeMap<String, BTreeMap<usize, f64>>> {
    let device = policy.model().device().clone();
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(0x5eed));
    let mut out = BTreeMap::new();
    for user_type in &targets.user_types {
        let pool_pairs = pool.judged_by(user_type);
        let target_pairs = targets.judged_by(user_type);
        let seqs: Vec<usize> = target_pairs.iter().flat_map(|&p| [targets.pairs[p].a, targets.pairs[p].b]).collect();
        let mut by_k = BTreeMap::new();
        for &k in ks {
            let draws = if k == 0 { 1 } else { draws.max(1) };
            let mut correct = 0.0;
            for _ in 0..draws {
                let mut context = pool_pairs.clone();
                context.shuffle(&mut rng);
                context.truncate(k);
                let z = profiles(encoder, pool, &[(user_type.as_str(), context)], &device)?;
                let mut ratio = vec![0.0; targets.ids.len()];
                for chunk in seqs.chunks(16) {
                    let log_probs = targets.log_probs(policy, chunk, &z.repeat((chunk.len(), 1))?)?.to_vec1::<f32>()?;
                    for (&s, lp) in chunk.iter().zip(log_probs) {
                        ratio[s] = f64::from(lp - targets.ref_log_probs[s]);
                    }
                }
                for &p in &target_pairs {
                    if let Some((w, l)) = targets.pairs[p].ordered(user_type) {
                        let margin = beta * (ratio[w] - ratio[l]);
                        correct += if margin > 0.0 {
                            1.0
                        } else if margin == 0.0 {
                            0.5
                        } else {
                            0.0
                        };
                    }
                }
            }
            by_k.insert(k, 100.0 * correct / (draws * target_pairs.len().max(1)) as f64);
        }
        out.insert(user_type.clone(), by_k);
    }
    Ok(out)
}
