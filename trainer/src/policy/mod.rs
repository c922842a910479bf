//! NP-DPO (issue #5): a language model steered by a user's profile z.
//!
//! [`SteerPolicy`] is a frozen Llama-family decoder (SmolLM2-135M-Instruct by default) with two trainable additions
//! in its top `film_layers` blocks (method §4):
//! - **FiLM** after each of those blocks, `h ← γ(z) ⊙ h + β(z)`, with γ and β single linear maps of z initialised to
//!   the identity (weights 0, γ bias 1, β bias 0);
//! - **LoRA** on the query and value projections of the same blocks, `B` initialised to 0.
//!
//! The FiLM maps read z scaled to unit RMS (`PolicyShape::normalize_z`). The NP encoder sums over the context pairs,
//! so |z| grows about linearly with the number of choices k (0.9 at k = 0, 43 at k = 10 on the built-in task); with
//! FiLM linear in raw z, a user with many choices pushed the policy far from the reference whatever their taste.
//! Normalised, z steers by its direction alone, and k = 10 moves the policy as far as k = 1 does.
//!
//! At step 0 the policy therefore equals the base model exactly, which is also the DPO reference. Only the blocks
//! from `first_trainable()` up see a gradient, so the trainer caches the activations entering that block once
//! ([`LlamaModel::layer_input`]) and runs only the top blocks and the head per step ([`SteerPolicy::log_probs_from`]),
//! with logits computed only at the response positions.
//!
//! z comes from the context encoder of an NP-BTL model trained on the same users' choices (the encoder is shared:
//! one profile drives both the reward and the policy, and best-of-n reranks with that reward).

pub mod base;
pub mod dpo;
pub mod evaluate;
pub mod export;
pub mod film;
pub mod generate;
pub mod lora;
pub mod losses;
pub mod run;
pub mod steering;
pub mod token_log_probs;

use std::path::{Path, PathBuf};

use candle_core::{Device, IndexOp, Module, Tensor};
use candle_nn::{RmsNorm, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::text::llama::{AttentionInputs, KvCache, LlamaModel};
use film::{Film, FilmValues};

/// The shape of the trainable part of a policy; saved with it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PolicyShape {
    /// FiLM and LoRA go into this many top blocks.
    pub film_layers: usize,
    /// LoRA rank.
    pub lora_rank: usize,
    /// LoRA alpha (the adapter's scale is `alpha / rank`).
    pub lora_alpha: f64,
    /// Size of z (the NP-BTL encoder's hidden size).
    pub latent_dim: usize,
    /// Whether FiLM reads z scaled to unit RMS (see the [module docs](self)). Policies saved before this field
    /// existed read raw z, hence the serde default.
    #[serde(default)]
    pub normalize_z: bool,
}

impl Default for PolicyShape {
    fn default() -> Self {
        PolicyShape { film_layers: 2, lora_rank: 8, lora_alpha: 16.0, latent_dim: 64, normalize_z: true }
    }
}

/// A base decoder with FiLM and LoRA in its top blocks; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct SteerPolicy {
    model: LlamaModel,
    films: Vec<(usize, Film)>,
    /// `z / √(mean(z²) + ε)` when `shape.normalize_z` (a unit-weight RMS norm, which the export writes as such).
    z_norm: Option<RmsNorm>,
    shape: PolicyShape,
}

/// ε of the z normalisation.
const Z_NORM_EPS: f64 = 1e-6;

impl SteerPolicy {
    /// Adds FiLM and LoRA to the top `shape.film_layers` blocks of `base`; the new variables are created under `vb`
    /// (`film.{layer}.*`, `lora.{layer}.{q,v}.*`), which is where training and checkpoints find them.
    pub fn new(mut base: LlamaModel, shape: PolicyShape, vb: VarBuilder) -> Result<Self> {
        let cfg = base.config().clone();
        if shape.film_layers == 0 || shape.film_layers > cfg.num_layers || shape.lora_rank == 0 {
            return Err(Error::InvalidConfig {
                field: "film_layers",
                expected: format!("1..={} FiLM layers and a LoRA rank ≥ 1", cfg.num_layers),
                got: format!("{} layers, rank {}", shape.film_layers, shape.lora_rank),
            });
        }
        let first = cfg.num_layers - shape.film_layers;
        let mut films = Vec::with_capacity(shape.film_layers);
        for layer in first..cfg.num_layers {
            let attention = base.blocks_mut()[layer].attention_mut();
            attention.add_lora(shape.lora_rank, shape.lora_alpha, vb.pp(format!("lora.{layer}")))?;
            films.push((layer, Film::new(shape.latent_dim, cfg.hidden_size, vb.pp(format!("film.{layer}")))?));
        }
        let z_norm = if shape.normalize_z {
            let ones = Tensor::ones(shape.latent_dim, candle_core::DType::F32, base.device())?;
            Some(RmsNorm::new(ones, Z_NORM_EPS))
        } else {
            None
        };
        Ok(SteerPolicy { model: base, films, z_norm, shape })
    }

    /// The decoder with its adapters.
    pub fn model(&self) -> &LlamaModel {
        &self.model
    }

    /// The trainable shape.
    pub fn shape(&self) -> PolicyShape {
        self.shape
    }

    /// The first block with FiLM and LoRA: activations entering it do not depend on anything trained.
    pub fn first_trainable(&self) -> usize {
        self.model.config().num_layers - self.shape.film_layers
    }

    /// The FiLM maps by layer (for export).
    pub(crate) fn films(&self) -> &[(usize, Film)] {
        &self.films
    }

    /// The normalisation FiLM applies to z first, if any (for export).
    pub(crate) fn z_norm(&self) -> Option<&RmsNorm> {
        self.z_norm.as_ref()
    }

    /// The FiLM values of every FiLM layer for profiles `z` `[B, latent_dim]`.
    pub fn film_values(&self, z: &Tensor) -> Result<Vec<FilmValues>> {
        let (_, latent) = z.dims2()?;
        if latent != self.shape.latent_dim {
            return Err(Error::InvalidInput {
                input: "z",
                expected: format!("{} values per profile", self.shape.latent_dim),
                got: latent.to_string(),
            });
        }
        let z = match &self.z_norm {
            Some(norm) => norm.forward_diff(z)?,
            None => z.clone(),
        };
        self.films
            .iter()
            .map(|(layer, film)| {
                Ok(FilmValues {
                    layer: *layer,
                    gamma: film.gamma.forward(&z)?.unsqueeze(1)?,
                    beta: film.beta.forward(&z)?.unsqueeze(1)?,
                })
            })
            .collect()
    }

    /// One generation step of the conditioned model (see [`LlamaModel::forward_step`]), row `b` steered by `z[b]`.
    pub fn forward_step(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        position_ids: &Tensor,
        past: Option<&[KvCache]>,
        z: &Tensor,
    ) -> Result<(Tensor, Vec<KvCache>)> {
        let film = self.film_values(z)?;
        self.model.forward_step(input_ids, attention_mask, position_ids, past, &film)
    }

    /// Each row's log-probability of its response tokens, `[B]`, from the cached input of block
    /// [`first_trainable`](Self::first_trainable). `layer_input` is `[B, T, hidden]` for right-padded rows;
    /// `input_ids` `[B, T]` (u32) are the same rows' tokens; `response_mask` `[B, T]` is 1 on the response tokens
    /// (which must be real tokens, after position 0). Logits are computed only at the positions predicting a response
    /// token.
    pub fn log_probs_from(
        &self,
        layer_input: &Tensor,
        attention_mask: &Tensor,
        input_ids: &Tensor,
        response_mask: &[Vec<bool>],
        z: &Tensor,
    ) -> Result<Tensor> {
        let (b, t, hidden) = layer_input.dims3()?;
        let inputs = AttentionInputs::right_padded(self.model.config(), attention_mask)?;
        let film = self.film_values(z)?;
        let layers = self.first_trainable()..self.model.config().num_layers;
        let (x, _) = self.model.run_blocks(layer_input.clone(), layers, &inputs, None, &film)?;

        // Gather the hidden state before each response token, and which row it belongs to.
        let ids = input_ids.to_vec2::<u32>()?;
        let (mut before, mut targets, mut owner) = (Vec::new(), Vec::new(), vec![0f32; 0]);
        let mut count = 0usize;
        for (row, mask) in response_mask.iter().enumerate().take(b) {
            for (pos, &is_response) in mask.iter().enumerate().take(t).skip(1) {
                if is_response {
                    before.push((row * t + pos - 1) as u32);
                    targets.push(ids[row][pos]);
                    count += 1;
                }
            }
        }
        let device = layer_input.device();
        if count == 0 {
            return Ok(Tensor::zeros(b, candle_core::DType::F32, device)?);
        }
        for &index in &before {
            let row = index as usize / t;
            owner.extend((0..b).map(|r| if r == row { 1.0 } else { 0.0 }));
        }
        let before = Tensor::from_vec(before, count, device)?;
        let picked = x.reshape((b * t, hidden))?.index_select(&before, 0)?;
        let token_log_probs = token_log_probs::token_log_probs(&self.model.head(&picked)?, &targets)?.unsqueeze(1)?;
        let owner = Tensor::from_vec(owner, (count, b), device)?;
        Ok(owner.t()?.matmul(&token_log_probs)?.i((.., 0))?)
    }
}

/// A bundle folder, or a `steer train-policy` folder holding one under `bundle/`.
pub fn policy_bundle_dir(path: &Path) -> PathBuf {
    let inner = path.join("bundle");
    if inner.join(steer_runtime::manifest::MANIFEST_FILE).is_file() { inner } else { path.to_path_buf() }
}

/// The device policies train and generate on: the first CUDA device with the `cuda` feature, else the CPU.
pub fn device() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(device) = Device::new_cuda(0) {
        return device;
    }
    Device::Cpu
}
