//! LoRA: the low-rank adapters NP-DPO trains on the query and value projections of the policy's top blocks.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::error::Result;

/// A low-rank adapter on a frozen linear map: `W x + scale · B (A x)`, with `A` `[rank, in]` drawn at random and `B`
/// `[out, rank]` zero, so that a new adapter changes nothing. `scale` is `alpha / rank`.
#[derive(Debug, Clone)]
pub struct Lora {
    a: Tensor,
    b: Tensor,
    scale: f64,
}

impl Lora {
    /// A new adapter for a `in_dim → out_dim` map, its variables `lora_a` and `lora_b` under `vb`.
    pub fn new(in_dim: usize, out_dim: usize, rank: usize, alpha: f64, vb: VarBuilder) -> Result<Self> {
        let bound = 1.0 / (in_dim as f64).sqrt();
        let a = vb.get_with_hints((rank, in_dim), "lora_a", candle_nn::Init::Uniform { lo: -bound, up: bound })?;
        let b = vb.get_with_hints((out_dim, rank), "lora_b", candle_nn::Init::Const(0.0))?;
        Ok(Lora { a, b, scale: alpha / rank.max(1) as f64 })
    }

    /// `base` (the frozen map's output for `x`) plus the adapter's term.
    pub(crate) fn add_to(&self, x: &Tensor, base: Tensor) -> Result<Tensor> {
        let low = x.broadcast_matmul(&self.a.t()?)?.broadcast_matmul(&self.b.t()?)?;
        Ok((base + (low * self.scale)?)?)
    }

    /// The merged weight `W + scale · B A` `[out, in]` (for export).
    pub fn merged(&self, weight: &Tensor) -> Result<Tensor> {
        Ok((weight + (self.b.matmul(&self.a)? * self.scale)?)?)
    }
}
