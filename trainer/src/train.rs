//! Meta-training: AdamW over batches of sampled tasks, with model selection on validation users.

use std::sync::Arc;

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use steer_runtime::ModelKind;

use crate::error::{Error, Result};
use crate::model::{ModelConfig, RewardModel, preference_loss};
use crate::params::SeededVarMap;
use crate::sampler::{BatchTensors, ContextSize, Sampler};
use crate::tasks::{PairSource, Split, TaskSpec};

/// Everything that defines a training run; saved in every bundle's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The synthetic task.
    pub task: TaskSpec,
    /// Pairs generated for the task (split 80/10/10).
    pub n_pairs: usize,
    /// Seed for data, initial weights and task sampling.
    pub seed: u64,
    /// Hidden size H (and size of z).
    pub hidden: usize,
    /// Attention heads in the context encoder.
    pub heads: usize,
    /// Optimizer steps for NP-BTL.
    pub steps: usize,
    /// Optimizer steps for the unconditioned baselines, which converge much sooner.
    pub baseline_steps: usize,
    /// Tasks (users) per batch.
    pub batch_tasks: usize,
    /// Target pairs per task N_T.
    pub n_targets: usize,
    /// Largest context size; k ~ U{0..max_context} during training.
    pub max_context: usize,
    /// AdamW learning rate (decayed by a cosine schedule to 10% at the last step).
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Weight of the reward-centering penalty mean((r_a + r_b)²) (see `PairRewards::centering_penalty`).
    pub reward_centering: f64,
    /// Validate every this many steps.
    pub eval_every: usize,
    /// Validation tasks used for model selection.
    pub val_tasks: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            task: TaskSpec::Synthetic1d,
            n_pairs: 20_000,
            seed: 0,
            hidden: 128,
            heads: 8,
            steps: 3_000,
            baseline_steps: 600,
            batch_tasks: 64,
            n_targets: 20,
            max_context: 10,
            lr: 1e-3,
            weight_decay: 1e-4,
            reward_centering: 1e-2,
            eval_every: 100,
            val_tasks: 512,
        }
    }
}

impl TrainConfig {
    /// The defaults for text data (`steer train --format`). Text datasets hold a few thousand pairs, so one step
    /// of 64 users × 20 targets already sees a sizeable share of them: a smaller model, a 10× smaller learning rate,
    /// stronger weight decay and frequent validation keep the best weights before the model overfits. On
    /// HH-relabeled's development split, H = 32 beat H = 64 for NP-BTL (57–59 % vs 49–51 %).
    pub fn text_default() -> TrainConfig {
        TrainConfig {
            task: TaskSpec::Text,
            hidden: 32,
            steps: 1_000,
            baseline_steps: 1_500,
            lr: 1e-4,
            weight_decay: 1e-2,
            eval_every: 10,
            ..TrainConfig::default()
        }
    }

    /// The defaults for the built-in text task (`steer train --format builtin`). Its pairs come from a small template
    /// vocabulary with a clean signal, so it trains like the synthetic tasks, at the synthetic learning rate, and
    /// converges in a few hundred steps.
    pub fn builtin_text_default() -> TrainConfig {
        TrainConfig {
            task: TaskSpec::Text,
            hidden: 64,
            steps: 800,
            baseline_steps: 300,
            eval_every: 50,
            ..TrainConfig::default()
        }
    }

    /// The model architecture this config trains for `kind` on the synthetic task.
    pub fn model_config(&self, kind: ModelKind) -> ModelConfig {
        self.model_config_for(kind, self.task.embedding_dim())
    }

    /// The model architecture this config trains for `kind` on options of size `embedding_dim`.
    pub fn model_config_for(&self, kind: ModelKind, embedding_dim: usize) -> ModelConfig {
        ModelConfig { kind, embedding_dim, hidden: self.hidden, heads: self.heads }
    }

    /// Checks every field's range; the first one out of range is an [`Error::InvalidConfig`] naming it.
    pub fn validate(&self) -> Result<()> {
        Error::check_config(
            self.hidden > 0 && self.heads > 0 && self.hidden.is_multiple_of(self.heads),
            "hidden",
            "a positive multiple of heads",
            format!("hidden {} heads {}", self.hidden, self.heads),
        )?;
        Error::check_config(self.batch_tasks > 0, "batch_tasks", ">= 1", self.batch_tasks)?;
        Error::check_config(self.eval_every > 0, "eval_every", ">= 1", self.eval_every)?;
        Error::check_config(self.val_tasks > 0, "val_tasks", ">= 1", self.val_tasks)?;
        Error::check_config(self.lr > 0.0 && self.lr.is_finite(), "lr", "a positive finite number", self.lr)?;
        let non_negative = |value: f64| value >= 0.0 && value.is_finite();
        Error::check_config(
            non_negative(self.weight_decay),
            "weight_decay",
            "a finite number >= 0",
            self.weight_decay,
        )?;
        Error::check_config(
            non_negative(self.reward_centering),
            "reward_centering",
            "a finite number >= 0",
            self.reward_centering,
        )?;
        Error::check_config(self.max_context <= self.n_targets, "max_context", "<= n_targets", self.max_context)
    }
}

/// What training measured, saved with the bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainMetrics {
    /// Steps run.
    pub steps: usize,
    /// Step whose weights were kept (lowest validation loss).
    pub best_step: usize,
    /// Validation loss at `best_step`.
    pub val_loss: f32,
    /// Validation accuracy (all targets, k ~ U{0..max}) at `best_step`, in percent.
    pub val_accuracy: f32,
    /// Wall time of the run in seconds.
    pub seconds: f64,
}

/// A trained model with its parameters.
pub struct Trained {
    /// The model (its tensors are the variables in `params`).
    pub model: RewardModel,
    /// Its architecture.
    pub config: ModelConfig,
    /// The parameters.
    pub params: Arc<SeededVarMap>,
    /// What training measured.
    pub metrics: TrainMetrics,
}

/// Builds a freshly initialised model (seeded) without training it.
pub fn init_model(config: &ModelConfig, seed: u64, device: &Device) -> Result<(RewardModel, Arc<SeededVarMap>)> {
    let params = Arc::new(SeededVarMap::new(seed));
    let model = RewardModel::new(config, params.builder(device))?;
    Ok((model, params))
}

/// Accuracy in percent of `logits` `[B, N]` against `label`, over all targets.
fn accuracy(logits: &Tensor, label: &Tensor) -> Result<f32> {
    let predicted = logits.ge(0.0)?.to_dtype(candle_core::DType::F32)?;
    let correct = predicted.eq(label)?.to_dtype(candle_core::DType::F32)?;
    Ok(correct.mean_all()?.to_scalar::<f32>()? * 100.0)
}

fn evaluate(model: &RewardModel, batch: &BatchTensors) -> Result<(f32, f32)> {
    let logits = model.logits(batch)?;
    Ok((preference_loss(&logits, &batch.label)?.to_scalar::<f32>()?, accuracy(&logits, &batch.label)?))
}

/// Trains one model of `kind` on `task`; shows a progress bar when `progress` is set.
pub fn train(kind: ModelKind, task: &dyn PairSource, cfg: &TrainConfig, progress: bool) -> Result<Trained> {
    train_named(kind, kind.as_str(), task, cfg, progress)
}

/// [`train`], with `name` on the progress bar (e.g. `btl-helpful` for a per-type oracle).
pub fn train_named(
    kind: ModelKind,
    name: &str,
    task: &dyn PairSource,
    cfg: &TrainConfig,
    progress: bool,
) -> Result<Trained> {
    cfg.validate()?;
    let device = Device::Cpu;
    let config = cfg.model_config_for(kind, task.pool(Split::Train).dim);
    let (model, params) = init_model(&config, cfg.seed, &device)?;
    let vars = params.varmap().all_vars();
    let mut opt =
        AdamW::new(vars.clone(), ParamsAdamW { lr: cfg.lr, weight_decay: cfg.weight_decay, ..Default::default() })?;
    let sampler = Sampler::new(task, cfg.n_targets)?;
    let context = ContextSize::Uniform { max: cfg.max_context };
    // Validation users are fixed for the whole run so that checkpoints are compared fairly.
    let mut val_rng = StdRng::seed_from_u64(cfg.seed ^ 0x5eed_0001);
    let val = sampler.sample(Split::Val, cfg.val_tasks, context, &mut val_rng)?.tensors(&device)?;
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x5eed_0002);

    let steps = if kind.is_conditioned() { cfg.steps } else { cfg.baseline_steps };
    let bar = if progress { ProgressBar::new(steps as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{prefix:>7} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}")
            .map_err(|e| Error::Export(e.to_string()))?
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    let start = std::time::Instant::now();
    let (mut best_loss, mut best_acc) = evaluate(&model, &val)?;
    let mut best_step = 0;
    let mut best: Vec<Tensor> = snapshot(&vars)?;
    for step in 1..=steps {
        let progress_frac = step as f64 / steps.max(1) as f64;
        opt.set_learning_rate(cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress_frac).cos())));
        let batch = sampler.sample(Split::Train, cfg.batch_tasks, context, &mut rng)?.tensors(&device)?;
        let rewards = model.pair_rewards(&batch)?;
        let loss = preference_loss(&rewards.logits()?, &batch.label)?;
        opt.backward_step(&(&loss + (rewards.centering_penalty()? * cfg.reward_centering)?)?)?;
        if step % cfg.eval_every == 0 || step == steps {
            let train_loss = loss.to_scalar::<f32>()?;
            if !train_loss.is_finite() {
                return Err(Error::Diverged { step, loss: train_loss });
            }
            let (val_loss, val_acc) = evaluate(&model, &val)?;
            if val_loss < best_loss {
                (best_loss, best_acc, best_step) = (val_loss, val_acc, step);
                best = snapshot(&vars)?;
            }
            bar.set_message(format!("loss {train_loss:.4} val {val_loss:.4} ({val_acc:.1}%) best@{best_step}"));
        }
        bar.inc(1);
    }
    bar.finish();
    if best_step == 0 && steps > 0 {
        eprintln!(
            "warning: {name}: no validation check beat the initial weights (validation loss {best_loss:.4}, \
             {best_acc:.1}%), so the model kept is the untrained one. The embeddings may carry no signal for this \
             data, or the learning rate or number of steps may not suit it."
        );
    }
    for (var, value) in vars.iter().zip(&best) {
        var.set(value)?;
    }
    let metrics = TrainMetrics {
        steps,
        best_step,
        val_loss: best_loss,
        val_accuracy: best_acc,
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok(Trained { model, config, params, metrics })
}

fn snapshot(vars: &[Var]) -> Result<Vec<Tensor>> {
    Ok(vars.iter().map(|v| v.as_tensor().copy()).collect::<candle_core::Result<_>>()?)
}
