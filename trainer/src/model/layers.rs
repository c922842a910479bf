//! Building blocks shared by the models: an MLP and masked multi-head self-attention over a set.

use candle_core::{D, Module, Tensor};
use candle_nn::{Linear, VarBuilder, linear};

/// Added to the attention logits of masked keys (padded, or future in a decoder), in every model of the crate; the
/// ONNX writer's own constant, so that candle and the exported graphs mask alike.
pub use steer_onnx::MASKED_LOGIT;

/// Linear layers with ReLU between them (none after the last).
#[derive(Debug, Clone)]
pub struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    /// An MLP through `dims` (e.g. `[d, H, H]` is Linear d→H, ReLU, Linear H→H); layers are named `0`, `1`, ….
    pub fn new(dims: &[usize], vb: VarBuilder) -> candle_core::Result<Self> {
        if dims.len() < 2 {
            candle_core::bail!("an MLP needs two or more dims, got {dims:?}");
        }
        let layers = dims.windows(2).enumerate().map(|(i, w)| linear(w[0], w[1], vb.pp(i.to_string())));
        Ok(Mlp { layers: layers.collect::<candle_core::Result<_>>()? })
    }

    /// The layers in order, for export.
    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }
}

impl Mlp {
    /// Continues the MLP from the output of layer `done - 1`: ReLU then layer, for layers `done..`.
    pub fn forward_from(&self, done: usize, xs: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = xs.clone();
        for layer in self.layers.iter().skip(done) {
            x = layer.forward(&x.relu()?)?;
        }
        Ok(x)
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let first = self.layers.first().ok_or_else(|| candle_core::Error::Msg("empty MLP".into()))?;
        self.forward_from(1, &first.forward(xs)?)
    }
}

/// Multi-head self-attention over a padded set, with the padding masked out of the keys.
#[derive(Debug, Clone)]
pub struct MaskedSelfAttention {
    /// Query projection.
    pub q: Linear,
    /// Key projection.
    pub k: Linear,
    /// Value projection.
    pub v: Linear,
    /// Output projection.
    pub o: Linear,
    /// Number of heads.
    pub heads: usize,
    /// Model width (a multiple of `heads`).
    pub hidden: usize,
}

impl MaskedSelfAttention {
    /// Attention of width `hidden` with `heads` heads; projections are named `q`, `k`, `v`, `o`.
    pub fn new(hidden: usize, heads: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        if heads == 0 || !hidden.is_multiple_of(heads) {
            candle_core::bail!("hidden size {hidden} must be a positive multiple of the head count {heads}");
        }
        Ok(MaskedSelfAttention {
            q: linear(hidden, hidden, vb.pp("q"))?,
            k: linear(hidden, hidden, vb.pp("k"))?,
            v: linear(hidden, hidden, vb.pp("v"))?,
            o: linear(hidden, hidden, vb.pp("o"))?,
            heads,
            hidden,
        })
    }

    /// `xs`: `[B, K, H]`; `mask`: `[B, K]` with 1 for real elements. Returns `[B, K, H]`.
    pub fn forward(&self, xs: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, k, _) = xs.dims3()?;
        let head_dim = self.hidden / self.heads;
        let split = |t: Tensor| t.reshape((b, k, self.heads, head_dim))?.transpose(1, 2)?.contiguous();
        let q = split(self.q.forward(xs)?)?;
        let key = split(self.k.forward(xs)?)?;
        let v = split(self.v.forward(xs)?)?;
        let scores = (q.matmul(&key.t()?.contiguous()?)? / (head_dim as f64).sqrt())?;
        let key_bias = mask.affine(-MASKED_LOGIT, MASKED_LOGIT)?.reshape((b, 1, 1, k))?;
        let weights = candle_nn::ops::softmax(&scores.broadcast_add(&key_bias)?, D::Minus1)?;
        let out = weights.matmul(&v)?.transpose(1, 2)?.reshape((b, k, self.hidden))?;
        self.o.forward(&out)
    }
}

/// −log σ(x), computed without overflow: relu(−x) + log(1 + exp(−|x|)).
pub fn neg_log_sigmoid(x: &Tensor) -> candle_core::Result<Tensor> {
    let soft = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    x.neg()?.relu()? + soft
}

/// log(1 + exp(x)), computed without overflow.
pub fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    neg_log_sigmoid(&x.neg()?)
}

/// Sums `xs` `[B, K, H]` over the set axis, keeping only elements whose `mask` `[B, K]` is 1.
pub fn masked_sum(xs: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    xs.broadcast_mul(&mask.unsqueeze(D::Minus1)?)?.sum(1)
}
