//! FiLM: the policy's conditioning on a profile. After each of its top blocks, `h ← γ(z) ⊙ h + β(z)`.

use candle_core::Tensor;
use candle_nn::{Linear, VarBuilder};

use crate::error::Result;

/// FiLM for one block: `γ(z) = W_γ z + b_γ`, `β(z) = W_β z + b_β`, identity at initialisation.
#[derive(Debug, Clone)]
pub struct Film {
    pub(super) gamma: Linear,
    pub(super) beta: Linear,
}

impl Film {
    /// A new identity FiLM map from `latent_dim` to `hidden`, its variables under `vb`.
    pub fn new(latent_dim: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        let zero = candle_nn::Init::Const(0.0);
        let gamma = Linear::new(
            vb.get_with_hints((hidden, latent_dim), "gamma.weight", zero)?,
            Some(vb.get_with_hints(hidden, "gamma.bias", candle_nn::Init::Const(1.0))?),
        );
        let beta = Linear::new(
            vb.get_with_hints((hidden, latent_dim), "beta.weight", zero)?,
            Some(vb.get_with_hints(hidden, "beta.bias", zero)?),
        );
        Ok(Film { gamma, beta })
    }

    /// The γ and β maps (for export).
    pub(crate) fn maps(&self) -> (&Linear, &Linear) {
        (&self.gamma, &self.beta)
    }
}

/// FiLM values for one layer: the block's output `h` becomes `gamma ⊙ h + beta`; both `[B, 1, hidden]`.
#[derive(Debug, Clone)]
pub struct FilmValues {
    /// The layer the modulation follows.
    pub layer: usize,
    /// Scale, `[B, 1, hidden]`.
    pub gamma: Tensor,
    /// Shift, `[B, 1, hidden]`.
    pub beta: Tensor,
}
