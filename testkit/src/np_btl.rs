//! A bundle of the demo's real NP-BTL architecture with seeded random weights, written by the shared ONNX writer
//! exactly as the trainer exports a trained model. Heavy enough for thread and overhead checks, without the trainer.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use steer_onnx::reward::{self, ContextEncoder, NpBtl, RewardWeights};
use steer_onnx::{Attention, Dense};
use steer_runtime::{Dims, ModelKind};

use crate::bundle::write_bundle;

/// The sizes of an NP-BTL model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NpBtlShape {
    /// Option embedding size d.
    pub embedding_dim: usize,
    /// Hidden size H, also the profile size.
    pub hidden: usize,
    /// Attention heads in the context encoder (a divisor of `hidden`).
    pub heads: usize,
}

impl NpBtlShape {
    /// The synthetic demo's architecture with the trainer's default hidden size: d = 1, H = 128, 8 heads.
    pub const DEMO: NpBtlShape = NpBtlShape { embedding_dim: 1, hidden: 128, heads: 8 };
}

/// A dense layer with weights and bias uniform in ±1/√inputs, as candle's and PyTorch's default bias init.
fn dense(rng: &mut ChaCha8Rng, inputs: usize, outputs: usize) -> Dense {
    let bound = 1.0 / (inputs as f32).sqrt();
    let mut draw = |n: usize| (0..n).map(|_| rng.random_range(-bound..bound)).collect::<Vec<f32>>();
    let weight = draw(inputs * outputs);
    let bias = draw(outputs);
    Dense { weight, inputs, outputs, bias: Some(bias) }
}

/// Dense layers through `dims` (e.g. `[d, H, H]`).
fn stack(rng: &mut ChaCha8Rng, dims: &[usize]) -> Vec<Dense> {
    dims.windows(2).map(|w| dense(rng, w[0], w[1])).collect()
}

/// NP-BTL weights of `shape` drawn from `seed`, in the trainer's layer sizes.
pub fn np_btl_weights(shape: NpBtlShape, seed: u64) -> NpBtl {
    let (d, h) = (shape.embedding_dim, shape.hidden);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let encoder = ContextEncoder {
        pair: stack(&mut rng, &[2 * d, h, h]),
        attention: Attention {
            q: dense(&mut rng, h, h),
            k: dense(&mut rng, h, h),
            v: dense(&mut rng, h, h),
            o: dense(&mut rng, h, h),
            heads: shape.heads,
            hidden: h,
        },
        out: stack(&mut rng, &[h, h, h]),
    };
    NpBtl { encoder, target: stack(&mut rng, &[d, h, h]), decoder: stack(&mut rng, &[2 * h, h, 1]) }
}

/// Writes an NP-BTL bundle of `shape` with weights drawn from `seed` into `dir`.
pub fn np_btl_bundle(dir: &Path, shape: NpBtlShape, seed: u64) -> PathBuf {
    let (d, h) = (shape.embedding_dim, shape.hidden);
    let weights = np_btl_weights(shape, seed);
    let encoder = reward::encoder_graph(&weights.encoder, d, h).expect("the encoder graph writes");
    let reward = reward::reward_graph(&RewardWeights::NpBtl(Box::new(weights)), d, h).expect("the reward graph writes");
    let dims = Dims { embedding_dim: d, latent_dim: h };
    write_bundle(dir, ModelKind::NpBtl, dims, &[("reward.onnx", reward), ("encoder.onnx", encoder)]);
    dir.to_path_buf()
}
