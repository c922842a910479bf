//! The reward models: NP-BTL (conditioned on a user's context) and the unconditioned baselines BTL
//! and DPL. All use ReLU (as the reference code does; the paper's text says GELU) and no BatchNorm.

pub mod layers;

use candle_core::{D, Module, Tensor};
use candle_nn::{Linear, VarBuilder, linear};
use serde::{Deserialize, Serialize};
use steer_runtime::ModelKind;

use crate::sampler::BatchTensors;
use layers::{MaskedSelfAttention, Mlp, masked_sum, neg_log_sigmoid, softplus};

/// Smallest DPL standard deviation. With deterministic choices DPL drives σ to this floor; at 1e-3
/// p(a≻b) = σ(√(2π)·Δμ/√(σ_a²+σ_b²)) becomes a step function of Δμ, where a change of 1e-6 in a mean
/// moves the probability by 1e-4. At 0.05 the probability stays a smooth function of the means, and
/// accuracy is unchanged (the ranking does not depend on σ).
pub const DPL_MIN_STD: f64 = 0.05;

/// Architecture of a model; saved with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Which model.
    pub kind: ModelKind,
    /// Option embedding size d.
    pub embedding_dim: usize,
    /// Hidden size H (also the size of z for NP-BTL).
    pub hidden: usize,
    /// Attention heads in the context encoder.
    pub heads: usize,
}

/// The NP context encoder: pair MLP, masked self-attention, masked sum, MLP → z.
#[derive(Debug, Clone)]
pub struct ContextEncoder {
    /// `[chosen ‖ rejected]` (2d) → H → H.
    pub pair: Mlp,
    /// Self-attention over the set of pairs.
    pub attention: MaskedSelfAttention,
    /// H → H → H, applied to the masked sum.
    pub out: Mlp,
}

impl ContextEncoder {
    /// Builds the encoder under `vb`.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let (d, h) = (cfg.embedding_dim, cfg.hidden);
        Ok(ContextEncoder {
            pair: Mlp::new(&[2 * d, h, h], vb.pp("pair"))?,
            attention: MaskedSelfAttention::new(h, cfg.heads, vb.pp("attention"))?,
            out: Mlp::new(&[h, h, h], vb.pp("out"))?,
        })
    }

    /// `context` `[B, K, 2d]`, `mask` `[B, K]` → z `[B, H]`. With no real pair the sum is zero and z
    /// is the learned population prior `out(0)`.
    pub fn forward(&self, context: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let pairs = self.pair.forward(context)?;
        let attended = self.attention.forward(&pairs, mask)?;
        self.out.forward(&masked_sum(&attended, mask)?)
    }
}

/// NP-BTL: r(y | D_C) = decoder([target(e) ‖ z]).
#[derive(Debug, Clone)]
pub struct NpBtl {
    /// Context encoder.
    pub encoder: ContextEncoder,
    /// d → H → H.
    pub target: Mlp,
    /// 2H → H → 1.
    pub decoder: Mlp,
}

impl NpBtl {
    /// Builds NP-BTL under `vb`.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let (d, h) = (cfg.embedding_dim, cfg.hidden);
        Ok(NpBtl {
            encoder: ContextEncoder::new(cfg, vb.pp("encoder"))?,
            target: Mlp::new(&[d, h, h], vb.pp("target"))?,
            decoder: Mlp::new(&[2 * h, h, 1], vb.pp("decoder"))?,
        })
    }

    /// `options` `[B, N, d]`, `z` `[B, H]` → rewards `[B, N]`.
    ///
    /// The decoder's first layer on `[t ‖ z]` is computed as `t·W_tᵀ + (z·W_zᵀ + b)`: the same sum,
    /// but z is projected once per user instead of once per option.
    pub fn reward(&self, options: &Tensor, z: &Tensor) -> candle_core::Result<Tensor> {
        let targets = self.target.forward(options)?;
        let (w_target, w_z, bias) = self.decoder_first_layer()?;
        let from_targets = targets.broadcast_matmul(&w_target.t()?)?;
        let mut from_z = z.matmul(&w_z.t()?)?;
        if let Some(bias) = bias {
            from_z = from_z.broadcast_add(&bias)?;
        }
        let hidden = from_targets.broadcast_add(&from_z.unsqueeze(1)?)?;
        self.decoder.forward_from(1, &hidden)?.squeeze(D::Minus1)
    }

    /// The decoder's first layer split into the part that reads `t`, the part that reads `z`, and the bias.
    pub fn decoder_first_layer(&self) -> candle_core::Result<(Tensor, Tensor, Option<Tensor>)> {
        let first = self.decoder.layers().first().ok_or_else(|| candle_core::Error::Msg("empty decoder".into()))?;
        let w = first.weight();
        let h = w.dim(1)? / 2;
        Ok((w.narrow(1, 0, h)?, w.narrow(1, h, h)?, first.bias().cloned()))
    }
}

/// BTL: one reward MLP for everyone, d → H → H → 1.
#[derive(Debug, Clone)]
pub struct Btl {
    /// The reward MLP.
    pub reward: Mlp,
}

/// DPL: a trunk d → H → H, then a mean head and a std head (softplus + [`DPL_MIN_STD`]).
#[derive(Debug, Clone)]
pub struct Dpl {
    /// d → H → H, followed by ReLU.
    pub trunk: Mlp,
    /// H → 1: reward mean.
    pub mean: Linear,
    /// H → 1: pre-softplus reward std.
    pub std: Linear,
}

impl Dpl {
    /// `options` `[B, N, d]` → (mean, std), each `[B, N]`.
    pub fn distribution(&self, options: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let h = self.trunk.forward(options)?.relu()?;
        let mean = self.mean.forward(&h)?.squeeze(D::Minus1)?;
        let std = (softplus(&self.std.forward(&h)?.squeeze(D::Minus1)?)? + DPL_MIN_STD)?;
        Ok((mean, std))
    }
}

/// One of the three reward models.
#[derive(Debug, Clone)]
pub enum RewardModel {
    /// Conditioned on the user's context.
    NpBtl(NpBtl),
    /// Unconditioned Bradley-Terry-Luce.
    Btl(Btl),
    /// Unconditioned distributional preference learning.
    Dpl(Dpl),
}

impl RewardModel {
    /// Builds the model `cfg.kind` under `vb`.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let (d, h) = (cfg.embedding_dim, cfg.hidden);
        Ok(match cfg.kind {
            ModelKind::NpBtl => RewardModel::NpBtl(NpBtl::new(cfg, vb)?),
            ModelKind::Btl => RewardModel::Btl(Btl { reward: Mlp::new(&[d, h, h, 1], vb.pp("reward"))? }),
            ModelKind::Dpl => RewardModel::Dpl(Dpl {
                trunk: Mlp::new(&[d, h, h], vb.pp("trunk"))?,
                mean: linear(h, 1, vb.pp("mean"))?,
                std: linear(h, 1, vb.pp("std"))?,
            }),
            other => return Err(candle_core::Error::Msg(format!("the trainer cannot build a {other} model"))),
        })
    }

    /// Rewards of both options of every target pair, each `[B, N]`; for DPL the reward means, with the
    /// standard deviations alongside.
    pub fn pair_rewards(&self, batch: &BatchTensors) -> candle_core::Result<PairRewards> {
        let n = batch.option_a.dim(1)?;
        // Score a and b in one pass.
        let options = Tensor::cat(&[&batch.option_a, &batch.option_b], 1)?;
        let (reward, std) = match self {
            RewardModel::NpBtl(m) => {
                let z = m.encoder.forward(&batch.context, &batch.mask)?;
                (m.reward(&options, &z)?, None)
            }
            RewardModel::Btl(m) => (m.reward.forward(&options)?.squeeze(D::Minus1)?, None),
            RewardModel::Dpl(m) => {
                let (mean, std) = m.distribution(&options)?;
                (mean, Some(std))
            }
        };
        let halves =
            |t: &Tensor| -> candle_core::Result<(Tensor, Tensor)> { Ok((t.narrow(1, 0, n)?, t.narrow(1, n, n)?)) };
        let (a, b) = halves(&reward)?;
        Ok(PairRewards { a, b, std: std.as_ref().map(halves).transpose()? })
    }

    /// The logit of p(a ≻ b) for every target pair, `[B, N]`. It is antisymmetric: swapping a and b
    /// negates it.
    pub fn logits(&self, batch: &BatchTensors) -> candle_core::Result<Tensor> {
        self.pair_rewards(batch)?.logits()
    }
}

/// Rewards of the two options of every target pair.
pub struct PairRewards {
    /// Rewards (DPL: means) of option a, `[B, N]`.
    pub a: Tensor,
    /// Rewards (DPL: means) of option b, `[B, N]`.
    pub b: Tensor,
    /// DPL only: standard deviations of a and b.
    pub std: Option<(Tensor, Tensor)>,
}

impl PairRewards {
    /// The logit of p(a ≻ b): r_a − r_b, or for DPL √(2π)·(μ_a − μ_b)/√(σ_a² + σ_b²), matching the
    /// runtime's `preference_probability`.
    pub fn logits(&self) -> candle_core::Result<Tensor> {
        let diff = (&self.a - &self.b)?;
        match &self.std {
            None => Ok(diff),
            Some((sa, sb)) => (diff / (sa.sqr()? + sb.sqr()?)?.sqrt()?)? * (2.0 * std::f64::consts::PI).sqrt(),
        }
    }

    /// mean((r_a + r_b)²): pulls each user's rewards toward zero. The Bradley-Terry loss ignores a
    /// common offset, so without this the offset drifts, rewards grow large, and f32 loses the
    /// difference that decides the preference.
    pub fn centering_penalty(&self) -> candle_core::Result<Tensor> {
        (&self.a + &self.b)?.sqr()?.mean_all()
    }
}

/// The Bradley-Terry loss −mean log σ(±logit), with the sign given by `label` (1 when a wins).
pub fn preference_loss(logits: &Tensor, label: &Tensor) -> candle_core::Result<Tensor> {
    let sign = label.affine(2.0, -1.0)?;
    neg_log_sigmoid(&(logits * sign)?)?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::{ContextSize, Sampler};
    use crate::tasks::{Split, Task, TaskSpec};
    use crate::train::init_model;
    use candle_core::{Device, Tensor};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn config(kind: ModelKind) -> ModelConfig {
        ModelConfig { kind, embedding_dim: 2, hidden: 32, heads: 4 }
    }

    fn np(seed: u64) -> NpBtl {
        match init_model(&config(ModelKind::NpBtl), seed, &Device::Cpu).unwrap().0 {
            RewardModel::NpBtl(m) => m,
            _ => unreachable!(),
        }
    }

    /// Largest |a − b| relative to max(1, largest |a|): summing a set in another order changes f32 results
    /// by rounding, which grows with the magnitude of the values.
    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        let diff = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        let scale = a.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap().max(1.0);
        diff / scale
    }

    /// Seeded normal values (candle's own `randn` on the CPU cannot be seeded).
    fn seeded(shape: (usize, usize, usize), std: f32, seed: u64) -> Tensor {
        use rand_distr::{Distribution, Normal};
        let mut rng = StdRng::seed_from_u64(seed);
        let normal = Normal::new(0f32, std).unwrap();
        let n = shape.0 * shape.1 * shape.2;
        Tensor::from_vec((0..n).map(|_| normal.sample(&mut rng)).collect::<Vec<f32>>(), shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn encoder_is_permutation_invariant() {
        let m = np(1);
        let dev = Device::Cpu;
        let ctx = seeded((1, 5, 4), 1.0, 21);
        let mask = Tensor::ones((1, 5), candle_core::DType::F32, &dev).unwrap();
        let perm = Tensor::new(&[3u32, 0, 4, 1, 2], &dev).unwrap();
        let shuffled = ctx.index_select(&perm, 1).unwrap();
        let z = m.encoder.forward(&ctx, &mask).unwrap();
        let z_perm = m.encoder.forward(&shuffled, &mask).unwrap();
        assert!(max_diff(&z, &z_perm) < 1e-5);
    }

    #[test]
    fn padding_is_ignored_and_k_zero_gives_the_prior() {
        let m = np(2);
        let dev = Device::Cpu;
        let ctx = seeded((1, 3, 4), 1.0, 22);
        let ones = Tensor::ones((1, 3), candle_core::DType::F32, &dev).unwrap();
        // The same 3 pairs padded with 2 rows of garbage that the mask marks as padding.
        let garbage = seeded((1, 2, 4), 10.0, 23);
        let padded = Tensor::cat(&[&ctx, &garbage], 1).unwrap();
        let mask = Tensor::new(&[[1f32, 1., 1., 0., 0.]], &dev).unwrap();
        let z = m.encoder.forward(&ctx, &ones).unwrap();
        let z_padded = m.encoder.forward(&padded, &mask).unwrap();
        assert!(max_diff(&z, &z_padded) < 1e-5);
        // All padding: z equals out(0), the population prior.
        let none = Tensor::zeros((1, 2), candle_core::DType::F32, &dev).unwrap();
        let z0 = m.encoder.forward(&garbage, &none).unwrap();
        let prior = m.encoder.out.forward(&Tensor::zeros((1, 32), candle_core::DType::F32, &dev).unwrap()).unwrap();
        assert!(max_diff(&z0, &prior) < 1e-6);
    }

    #[test]
    fn loss_is_symmetric_under_swapping_options_and_labels() {
        let task = Task::generate(TaskSpec::GaussianRho { rho: 0.0 }, 2_000, 3).unwrap();
        let sampler = Sampler::new(&task, 20).unwrap();
        let batch =
            sampler.sample(Split::Train, 8, ContextSize::Uniform { max: 10 }, &mut StdRng::seed_from_u64(1)).unwrap();
        let mut swapped = batch.clone();
        std::mem::swap(&mut swapped.option_a, &mut swapped.option_b);
        swapped.label.iter_mut().for_each(|l| *l = 1.0 - *l);
        for kind in [ModelKind::NpBtl, ModelKind::Btl, ModelKind::Dpl] {
            let (model, _) = init_model(&config(kind), 4, &Device::Cpu).unwrap();
            let (t, s) = (batch.tensors(&Device::Cpu).unwrap(), swapped.tensors(&Device::Cpu).unwrap());
            let (lt, ls) = (model.logits(&t).unwrap(), model.logits(&s).unwrap());
            // Swapping a and b negates the logit, so p(a≻b) + p(b≻a) = 1 …
            let sum = (candle_nn::ops::sigmoid(&lt).unwrap() + candle_nn::ops::sigmoid(&ls).unwrap()).unwrap();
            let ones = sum.ones_like().unwrap();
            assert!(max_diff(&sum, &ones) < 1e-6, "{kind}");
            // … and the loss is unchanged when the labels are flipped too.
            let l1 = preference_loss(&lt, &t.label).unwrap().to_scalar::<f32>().unwrap();
            let l2 = preference_loss(&ls, &s.label).unwrap().to_scalar::<f32>().unwrap();
            assert!((l1 - l2).abs() < 1e-6, "{kind}: {l1} vs {l2}");
        }
    }

    #[test]
    fn neg_log_sigmoid_is_stable_for_large_logits() {
        let x = Tensor::new(&[-100f32, 0.0, 100.0], &Device::Cpu).unwrap();
        let y = layers::neg_log_sigmoid(&x).unwrap().to_vec1::<f32>().unwrap();
        assert!((y[0] - 100.0).abs() < 1e-4 && (y[1] - std::f32::consts::LN_2).abs() < 1e-6 && y[2] < 1e-30 + 1e-6);
    }
}
