//! The graphs of a reward bundle, `encoder.onnx` and `reward.onnx`, in the signatures of
//! [`steer_runtime::manifest::io`], written from plain weights. The trainer fills these weights from its candle
//! models; the test kit fills them with seeded random values.

use steer_runtime::manifest::io;

use crate::builder::{Dim, GraphBuilder};
use crate::error::Result;
use crate::layers::{Attention, Dense, check_len};

const BATCH: Dim = Dim::Dynamic("batch");
const K: Dim = Dim::Dynamic("k");
const N: Dim = Dim::Dynamic("n");

/// The NP context encoder: pair layers, masked self-attention, masked sum, output layers → z.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextEncoder {
    /// `[chosen ‖ rejected]` (2d) → H → H, ReLU between.
    pub pair: Vec<Dense>,
    /// Self-attention over the set of pairs.
    pub attention: Attention,
    /// H → H → H, applied to the masked sum.
    pub out: Vec<Dense>,
}

/// NP-BTL: r(y | context) = decoder([target(e) ‖ z]).
#[derive(Debug, Clone, PartialEq)]
pub struct NpBtl {
    /// The context encoder.
    pub encoder: ContextEncoder,
    /// d → H → H.
    pub target: Vec<Dense>,
    /// 2H → H → 1; the first layer reads `[t ‖ z]`.
    pub decoder: Vec<Dense>,
}

/// The weights of one of the three reward models.
#[derive(Debug, Clone, PartialEq)]
pub enum RewardWeights {
    /// Conditioned on the user's context.
    NpBtl(Box<NpBtl>),
    /// Bradley-Terry-Luce: one reward stack d → … → 1.
    Btl {
        /// The reward layers.
        reward: Vec<Dense>,
    },
    /// Distributional preference learning: a trunk, then a mean head and a std head (softplus + `min_std`).
    Dpl {
        /// d → H → H, followed by ReLU.
        trunk: Vec<Dense>,
        /// H → 1: reward mean.
        mean: Dense,
        /// H → 1: pre-softplus reward std.
        std: Dense,
        /// Added to the softplus, the smallest std.
        min_std: f64,
    },
}

/// `encoder.onnx`: `context` `[B, K, 2d]`, `mask` `[B, K]` → `z` `[B, latent_dim]`.
pub fn encoder_graph(encoder: &ContextEncoder, embedding_dim: usize, latent_dim: usize) -> Result<Vec<u8>> {
    let mut g = GraphBuilder::new("steer_np_encoder");
    let context = g.input(io::CONTEXT, &[BATCH, K, Dim::Fixed(2 * embedding_dim)]);
    let mask = g.input(io::MASK, &[BATCH, K]);
    let pairs = g.dense_stack(&context, &encoder.pair)?;
    let attended = g.self_attention_f32(&pairs, &mask, &encoder.attention)?;
    let summed = g.masked_sum(&attended, &mask);
    let z = g.dense_stack(&summed, &encoder.out)?;
    g.output(&z, io::Z, &[BATCH, Dim::Fixed(latent_dim)]);
    g.finish("Steer NP-BTL context encoder: a user's context pairs -> latent preference z")
}

/// `reward.onnx` for any model kind: `options` `[B, N, d]` (and `z` `[B, H]`) → `reward` (and `reward_std`) `[B, N]`.
pub fn reward_graph(model: &RewardWeights, embedding_dim: usize, hidden: usize) -> Result<Vec<u8>> {
    let mut g = GraphBuilder::new("steer_reward");
    let options = g.input(io::OPTIONS, &[BATCH, N, Dim::Fixed(embedding_dim)]);
    let out_dims = [BATCH, N];
    match model {
        RewardWeights::NpBtl(m) => {
            let z = g.input(io::Z, &[BATCH, Dim::Fixed(hidden)]);
            let targets = g.dense_stack(&options, &m.target)?;
            // decoder([t ‖ z]) computed as in candle: t·W_tᵀ + (z·W_zᵀ + b), then the remaining layers.
            let Some((first, rest)) = m.decoder.split_first() else {
                return Err(crate::Error::WeightSize { what: "decoder layers".into(), expected: 2, got: 0 });
            };
            check_len("decoder weight", &first.weight, first.inputs * first.outputs)?;
            let (h, out) = (first.inputs / 2, first.outputs);
            let columns = |from: usize| -> Vec<f32> {
                (0..h).flat_map(|i| (0..out).map(move |o| first.weight[o * first.inputs + from + i])).collect()
            };
            let w_target = g.constant_f32("decoder_w_target", &[h, out], &columns(0));
            let w_z = g.constant_f32("decoder_w_z", &[h, out], &columns(h));
            let from_targets = g.node("MatMul", &[&targets, &w_target], vec![]);
            let mut from_z = g.node("MatMul", &[&z, &w_z], vec![]);
            if let Some(bias) = &first.bias {
                check_len("decoder bias", bias, out)?;
                let bias = g.constant_f32("decoder_bias", &[out], bias);
                from_z = g.node("Add", &[&from_z, &bias], vec![]);
            }
            let axis = g.constant_i64("axes", &[1]);
            let from_z = g.node("Unsqueeze", &[&from_z, &axis], vec![]);
            let mut hidden = g.node("Add", &[&from_targets, &from_z], vec![]);
            for layer in rest {
                hidden = g.node("Relu", &[&hidden], vec![]);
                hidden = g.dense(&hidden, layer)?;
            }
            let reward = g.squeeze_last(&hidden);
            g.output(&reward, io::REWARD, &out_dims);
        }
        RewardWeights::Btl { reward } => {
            let r = g.dense_stack(&options, reward)?;
            let reward = g.squeeze_last(&r);
            g.output(&reward, io::REWARD, &out_dims);
        }
        RewardWeights::Dpl { trunk, mean, std, min_std } => {
            let trunk = g.dense_stack(&options, trunk)?;
            let trunk = g.node("Relu", &[&trunk], vec![]);
            let mean = g.dense(&trunk, mean)?;
            let mean = g.squeeze_last(&mean);
            let raw = g.dense(&trunk, std)?;
            let raw = g.squeeze_last(&raw);
            let std = g.node("Softplus", &[&raw], vec![]);
            let floor = g.constant_f32("min_std", &[], &[*min_std as f32]);
            let std = g.node("Add", &[&std, &floor], vec![]);
            g.output(&mean, io::REWARD, &out_dims);
            g.output(&std, io::REWARD_STD, &out_dims);
        }
    }
    g.finish("Steer reward model: option embeddings (and z) -> rewards")
}
