//! The decoder's shape: [`LlamaConfig`] from GGUF metadata (Hugging Face's `config.json` is read in
//! [`crate::text::hf_llama`]), and the rotary tables with their optional [`RopeScaling`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The shape of a Llama-family decoder, as its GGUF `llama.*` metadata gives it. `Default` is SmolLM2-135M's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Vocabulary size (49152), the rows of `token_embd.weight`.
    pub vocab_size: usize,
    /// Model width, `llama.embedding_length` (576).
    pub hidden_size: usize,
    /// Decoder layers, `llama.block_count` (30).
    pub num_layers: usize,
    /// Query heads, `llama.attention.head_count` (9).
    pub num_heads: usize,
    /// Key/value heads, `llama.attention.head_count_kv` (3); divides `num_heads`.
    pub num_kv_heads: usize,
    /// SwiGLU width, `llama.feed_forward_length` (1536).
    pub intermediate_size: usize,
    /// Rotary base, `llama.rope.freq_base` (100000).
    pub rope_theta: f64,
    /// RMSNorm epsilon, `llama.attention.layer_norm_rms_epsilon` (1e-5).
    pub rms_norm_eps: f64,
    /// The longest sequence the model was trained for, `llama.context_length` (8192).
    #[serde(default = "default_context_length")]
    pub context_length: usize,
    /// Whether the query, key and value projections add a bias (`attn_q.bias` …): Qwen2 does, Llama does not.
    #[serde(default)]
    pub attention_bias: bool,
    /// How the rotary frequencies are rescaled for a longer context (Llama 3.1 and later); `None` leaves them as
    /// `rope_theta` gives them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
}

/// SmolLM2-135M's context length, assumed for configurations saved without one.
fn default_context_length() -> usize {
    8192
}

/// A rescaling of the rotary frequencies, as Hugging Face's `rope_scaling` describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rope_type", rename_all = "snake_case")]
pub enum RopeScaling {
    /// Every frequency divided by `factor` (positions interpolated).
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Llama 3's rule: wavelengths shorter than `original_max_position_embeddings / high_freq_factor` are kept,
    /// those longer than `original_max_position_embeddings / low_freq_factor` are divided by `factor`, and the band
    /// between blends the two linearly in `original_max_position_embeddings / wavelength`.
    Llama3 {
        /// The divisor of the low frequencies.
        factor: f64,
        /// Sets the wavelength above which frequencies are divided.
        low_freq_factor: f64,
        /// Sets the wavelength below which frequencies are kept.
        high_freq_factor: f64,
        /// The context length the model was first trained at.
        original_max_position_embeddings: f64,
    },
}

impl RopeScaling {
    /// `inv_freq` (radians per position) after the rescaling.
    fn apply(&self, inv_freq: f64) -> f64 {
        match *self {
            RopeScaling::Linear { factor } => inv_freq / factor,
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                let wavelength = 2.0 * std::f64::consts::PI / inv_freq;
                if wavelength < original_max_position_embeddings / high_freq_factor {
                    inv_freq
                } else if wavelength > original_max_position_embeddings / low_freq_factor {
                    inv_freq / factor
                } else {
                    let smooth = (original_max_position_embeddings / wavelength - low_freq_factor)
                        / (high_freq_factor - low_freq_factor);
                    (1.0 - smooth) * inv_freq / factor + smooth * inv_freq
                }
            }
        }
    }

    /// Checks the factors: positive, and for Llama 3 `high_freq_factor > low_freq_factor`.
    fn validate(&self) -> Result<()> {
        let (factor, ok) = match *self {
            RopeScaling::Linear { factor } => (factor, factor > 0.0),
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => (
                factor,
                factor > 0.0
                    && low_freq_factor > 0.0
                    && high_freq_factor > low_freq_factor
                    && original_max_position_embeddings > 0.0,
            ),
        };
        if ok && factor.is_finite() {
            return Ok(());
        }
        Err(Error::InvalidConfig {
            field: "rope_scaling",
            expected: "positive factors, with high_freq_factor > low_freq_factor for llama3".into(),
            got: format!("{self:?}"),
        })
    }
}

impl Default for LlamaConfig {
    fn default() -> Self {
        LlamaConfig {
            vocab_size: 49152,
            hidden_size: 576,
            num_layers: 30,
            num_heads: 9,
            num_kv_heads: 3,
            intermediate_size: 1536,
            rope_theta: 100_000.0,
            rms_norm_eps: 1e-5,
            context_length: default_context_length(),
            attention_bias: false,
            rope_scaling: None,
        }
    }
}

impl LlamaConfig {
    /// A 2-layer, 32-wide configuration (4 query and 2 key/value heads, vocabulary 64) for tests of code that runs
    /// or exports a decoder: small enough to build in milliseconds, with GQA still in play.
    pub fn tiny() -> LlamaConfig {
        LlamaConfig {
            vocab_size: 64,
            hidden_size: 32,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            intermediate_size: 48,
            rope_theta: 10_000.0,
            rms_norm_eps: 1e-5,
            context_length: default_context_length(),
            attention_bias: false,
            rope_scaling: None,
        }
    }

    /// Reads the configuration from GGUF metadata (`general.architecture` must be `llama`); `vocab_size` is taken
    /// from `tokenizer.ggml.tokens`. `path` is only used in error messages.
    pub fn from_gguf_metadata(path: &Path, metadata: &HashMap<String, Value>) -> Result<Self> {
        let fail = |key: &str, message: String| Error::ModelFile {
            path: PathBuf::from(path),
            message: format!("metadata `{key}`: {message}"),
        };
        let get = |key: &str| metadata.get(key).ok_or_else(|| fail(key, "missing".into()));
        let count = |key: &str| -> Result<usize> {
            get(key)?.to_u32().map(|v| v as usize).map_err(|e| fail(key, e.to_string()))
        };
        let float =
            |key: &str| -> Result<f64> { get(key)?.to_f32().map(f64::from).map_err(|e| fail(key, e.to_string())) };
        let arch = get("general.architecture")?.to_string().map_err(|e| fail("general.architecture", e.to_string()))?;
        if arch != "llama" {
            return Err(fail("general.architecture", format!("is {arch:?}; only \"llama\" is supported")));
        }
        let vocab_size =
            get("tokenizer.ggml.tokens")?.to_vec().map_err(|e| fail("tokenizer.ggml.tokens", e.to_string()))?.len();
        let cfg = LlamaConfig {
            vocab_size,
            hidden_size: count("llama.embedding_length")?,
            num_layers: count("llama.block_count")?,
            num_heads: count("llama.attention.head_count")?,
            num_kv_heads: count("llama.attention.head_count_kv")?,
            intermediate_size: count("llama.feed_forward_length")?,
            rope_theta: float("llama.rope.freq_base")?,
            rms_norm_eps: float("llama.attention.layer_norm_rms_epsilon")?,
            context_length: match metadata.get("llama.context_length") {
                Some(_) => count("llama.context_length")?,
                None => default_context_length(),
            },
            attention_bias: false,
            rope_scaling: None,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that a decoder can be built from this configuration.
    pub fn validate(&self) -> Result<()> {
        if self.num_heads == 0 || !self.hidden_size.is_multiple_of(self.num_heads) || !self.head_dim().is_multiple_of(2)
        {
            return Err(Error::InvalidConfig {
                field: "num_heads",
                expected: format!("a positive divisor of hidden_size {} giving an even head width", self.hidden_size),
                got: self.num_heads.to_string(),
            });
        }
        if self.num_kv_heads == 0 || !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(Error::InvalidConfig {
                field: "num_kv_heads",
                expected: format!("a positive divisor of num_heads {}", self.num_heads),
                got: self.num_kv_heads.to_string(),
            });
        }
        if let Some(scaling) = &self.rope_scaling {
            scaling.validate()?;
        }
        Ok(())
    }

    /// The width of one attention head (64 for SmolLM2-135M).
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads.max(1)
    }

    /// The rotary tables for positions `0..tokens`: `(cos, sin)`, each `[tokens, head_dim / 2]` f32, where entry
    /// `(p, i)` is the angle `p · rope_theta^(−2i / head_dim)`, rescaled by `rope_scaling` when set. The decoder and
    /// its ONNX export share these values.
    pub fn rope_tables(&self, tokens: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.head_dim() / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| {
                let inv_freq = 1.0 / self.rope_theta.powf(2.0 * i as f64 / self.head_dim() as f64);
                self.rope_scaling.as_ref().map_or(inv_freq, |s| s.apply(inv_freq)) as f32
            })
            .collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let positions = Tensor::arange(0u32, tokens as u32, device)?.to_dtype(DType::F32)?.reshape((tokens, 1))?;
        let angles = positions.broadcast_mul(&inv_freq)?;
        Ok((angles.cos()?, angles.sin()?))
    }
}
