//! A Llama-family decoder in candle (issue #4), loaded from a GGUF file such as SmolLM2-135M-Instruct's.
//!
//! [`LlamaModel`] is the pre-norm decoder of llama.cpp's `llama` architecture: token embedding, then
//! `block_count` layers of RMSNorm → causal grouped-query self-attention with rotary position embeddings →
//! residual, RMSNorm → SwiGLU feed-forward → residual, then a final RMSNorm and the language-model head (tied to
//! the embedding when the file has no `output.weight`).
//!
//! Weights are read with [`Content::read`] and every tensor is dequantized to f32. The GGUF tensor names are
//! llama.cpp's: `token_embd.weight` `[vocab, hidden]`, `blk.N.attn_norm.weight`, `blk.N.attn_q.weight`,
//! `blk.N.attn_k.weight`, `blk.N.attn_v.weight`, `blk.N.attn_output.weight`, `blk.N.ffn_norm.weight`,
//! `blk.N.ffn_gate.weight`, `blk.N.ffn_up.weight`, `blk.N.ffn_down.weight`, `output_norm.weight` and optionally
//! `output.weight`; linear weights are `[out, in]` once candle has reversed GGUF's dimension order.
//!
//! **Rotary layout.** llama.cpp's converter permutes the rows of `attn_q`/`attn_k` so that each head's rotary pairs
//! are adjacent dimensions `(2i, 2i+1)` (GPT-J/interleaved style), where Hugging Face rotates `(i, i + d/2)`. This
//! module therefore uses the interleaved rotation ([`candle_nn::rotary_emb::rope_i`]) on the stored weights.
//!
//! **Padding.** Rows are expected to be right-padded (real tokens first, `attention_mask` 1 then 0): positions are
//! the column indices, padded keys are masked out, and the outputs at padded positions are meaningless.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Embedding, Linear, RmsNorm, VarBuilder, embedding, linear, linear_no_bias, rms_norm};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::params::SeededVarMap;
use crate::text::bert::l2_normalize;
use crate::text::frozen_linear::frozen_forward;

/// Added to the attention logits of masked keys (future or padded): `exp` of it underflows to 0 in f32.
pub const MASKED_LOGIT: f64 = -1e9;

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

/// A layer's key/value cache: `key` and `value` `[B, num_kv_heads, S, head_dim]`, before the key/value heads are
/// repeated for the query heads (the layout of `policy.onnx`'s `present.*` outputs).
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Rotated keys.
    pub key: Tensor,
    /// Values.
    pub value: Tensor,
}

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
    fn add_to(&self, x: &Tensor, base: Tensor) -> Result<Tensor> {
        let low = x.broadcast_matmul(&self.a.t()?)?.broadcast_matmul(&self.b.t()?)?;
        Ok((base + (low * self.scale)?)?)
    }

    /// The merged weight `W + scale · B A` `[out, in]` (for export).
    pub fn merged(&self, weight: &Tensor) -> Result<Tensor> {
        Ok((weight + (self.b.matmul(&self.a)? * self.scale)?)?)
    }
}

/// What every layer of one forward call shares: the rotary angles of each row's positions and the additive mask.
#[derive(Debug, Clone)]
pub struct AttentionInputs {
    /// `[B, 1, T, head_dim / 2, 1]`.
    cos: Tensor,
    /// Same layout as `cos`.
    sin: Tensor,
    /// `[B, 1, T, S]`: 0 where new token `i` may attend key `j`, [`MASKED_LOGIT`] where not.
    mask: Tensor,
}

impl AttentionInputs {
    /// For `T` new tokens after `S − T` cached ones: `attention_mask` `[B, S]` (1 = real token, 0 = padding; any
    /// numeric type) and `position_ids` `[B, T]` (u32). New token `i` (total index `S − T + i`) attends to the keys
    /// `j ≤ S − T + i` whose mask is 1, the rule `policy.onnx` implements.
    pub fn new(cfg: &LlamaConfig, attention_mask: &Tensor, position_ids: &Tensor) -> Result<Self> {
        let device = attention_mask.device();
        let (b, s) = attention_mask.dims2()?;
        let (pb, t) = position_ids.dims2()?;
        if pb != b || t > s {
            return Err(Error::InvalidInput {
                input: "position_ids",
                expected: format!("[{b}, T] with T ≤ {s}, the attention mask's length"),
                got: format!("{:?}", position_ids.shape()),
            });
        }
        let past = s - t;
        let mask_rows = attention_mask.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let mut mask = Vec::with_capacity(b * t * s);
        for row in &mask_rows {
            for i in 0..t {
                mask.extend(
                    row.iter().enumerate().map(
                        |(j, &m)| {
                            if m > 0.0 && j <= past + i { 0.0 } else { MASKED_LOGIT as f32 }
                        },
                    ),
                );
            }
        }
        let mask = Tensor::from_vec(mask, (b, 1, t, s), device)?;
        let positions = position_ids.to_dtype(DType::U32)?.flatten_all()?;
        let max_position = positions.max(0)?.to_scalar::<u32>()? as usize;
        let (cos, sin) = cfg.rope_tables(max_position + 1, device)?;
        let half = cfg.head_dim() / 2;
        let pick =
            |table: Tensor| -> Result<Tensor> { Ok(table.index_select(&positions, 0)?.reshape((b, 1, t, half, 1))?) };
        Ok(AttentionInputs { cos: pick(cos)?, sin: pick(sin)?, mask })
    }

    /// Right-padded rows with nothing cached: positions are the column indices.
    pub fn right_padded(cfg: &LlamaConfig, attention_mask: &Tensor) -> Result<Self> {
        let (b, t) = attention_mask.dims2()?;
        let positions = Tensor::arange(0u32, t as u32, attention_mask.device())?.unsqueeze(0)?.repeat((b, 1))?;
        Self::new(cfg, attention_mask, &positions)
    }
}

/// The interleaved rotary embedding of `x` `[B, n, T, head_dim]`: `(a, b) ↦ (a·cos − b·sin, a·sin + b·cos)` on each
/// pair `(2i, 2i + 1)`, written with plain tensor ops so that it has a backward pass and per-row positions.
fn rotate(x: &Tensor, inputs: &AttentionInputs) -> Result<Tensor> {
    let (b, n, t, d) = x.dims4()?;
    let pairs = x.reshape((b, n, t, d / 2, 2))?;
    let a = pairs.narrow(4, 0, 1)?;
    let c = pairs.narrow(4, 1, 1)?;
    let first = (a.broadcast_mul(&inputs.cos)? - c.broadcast_mul(&inputs.sin)?)?;
    let second = (a.broadcast_mul(&inputs.sin)? + c.broadcast_mul(&inputs.cos)?)?;
    Ok(Tensor::cat(&[first, second], 4)?.reshape((b, n, t, d))?)
}

/// Causal grouped-query self-attention with interleaved rotary embeddings (`blk.N.attn_*`), optionally with LoRA on
/// the query and value projections.
#[derive(Debug, Clone)]
pub struct LlamaAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_lora: Option<Lora>,
    v_lora: Option<Lora>,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl LlamaAttention {
    /// Builds the attention of one block from `attn_q`, `attn_k`, `attn_v` and `attn_output` under `vb` (the first
    /// three with their `bias` when `cfg.attention_bias`).
    pub fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let head_dim = cfg.head_dim();
        let kv = cfg.num_kv_heads * head_dim;
        let projection = |out: usize, name: &str| {
            let vb = vb.pp(name);
            if cfg.attention_bias { linear(cfg.hidden_size, out, vb) } else { linear_no_bias(cfg.hidden_size, out, vb) }
        };
        Ok(LlamaAttention {
            q: projection(cfg.hidden_size, "attn_q")?,
            k: projection(kv, "attn_k")?,
            v: projection(kv, "attn_v")?,
            o: linear_no_bias(cfg.hidden_size, cfg.hidden_size, vb.pp("attn_output"))?,
            q_lora: None,
            v_lora: None,
            num_heads: cfg.num_heads,
            num_kv_heads: cfg.num_kv_heads,
            head_dim,
        })
    }

    /// Adds LoRA adapters (rank `rank`, scale `alpha / rank`) to the query and value projections, their variables
    /// under `vb.pp("q")` and `vb.pp("v")`.
    pub fn add_lora(&mut self, rank: usize, alpha: f64, vb: VarBuilder) -> Result<()> {
        let (q_out, q_in) = self.q.weight().dims2()?;
        let (v_out, v_in) = self.v.weight().dims2()?;
        self.q_lora = Some(Lora::new(q_in, q_out, rank, alpha, vb.pp("q"))?);
        self.v_lora = Some(Lora::new(v_in, v_out, rank, alpha, vb.pp("v"))?);
        Ok(())
    }

    /// The query, key, value and output projections, in that order (for export).
    pub(crate) fn projections(&self) -> [&Linear; 4] {
        [&self.q, &self.k, &self.v, &self.o]
    }

    /// The query and value projections with their adapters merged into the weights (for export); the plain maps
    /// without LoRA.
    pub(crate) fn merged_q_v(&self) -> Result<(Linear, Linear)> {
        let merge = |linear: &Linear, lora: &Option<Lora>| -> Result<Linear> {
            match lora {
                Some(lora) => Ok(Linear::new(lora.merged(linear.weight())?, linear.bias().cloned())),
                None => Ok(linear.clone()),
            }
        };
        Ok((merge(&self.q, &self.q_lora)?, merge(&self.v, &self.v_lora)?))
    }

    fn project(linear: &Linear, lora: &Option<Lora>, x: &Tensor) -> Result<Tensor> {
        let base = frozen_forward(linear, x)?;
        match lora {
            Some(lora) => lora.add_to(x, base),
            None => Ok(base),
        }
    }

    /// `x` `[B, T, hidden]` are the new tokens; `past` the layer's cache of earlier tokens. Returns the attention
    /// output and the cache including the new tokens.
    pub fn forward(&self, x: &Tensor, inputs: &AttentionInputs, past: Option<&KvCache>) -> Result<(Tensor, KvCache)> {
        let (b, t, hidden) = x.dims3()?;
        let heads = |y: Tensor, n: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, n, self.head_dim))?.transpose(1, 2)?.contiguous()?)
        };
        let q = rotate(&heads(Self::project(&self.q, &self.q_lora, x)?, self.num_heads)?, inputs)?;
        let k = rotate(&heads(frozen_forward(&self.k, x)?, self.num_kv_heads)?, inputs)?;
        let v = heads(Self::project(&self.v, &self.v_lora, x)?, self.num_kv_heads)?;
        let (k, v) = match past {
            Some(past) => (Tensor::cat(&[&past.key, &k], 2)?, Tensor::cat(&[&past.value, &v], 2)?),
            None => (k, v),
        };
        let present = KvCache { key: k.clone(), value: v.clone() };
        let group = self.num_heads / self.num_kv_heads;
        let repeat = |y: Tensor| -> Result<Tensor> {
            if group == 1 {
                return Ok(y);
            }
            let (b, n, s, d) = y.dims4()?;
            Ok(y.unsqueeze(2)?.expand((b, n, group, s, d))?.reshape((b, n * group, s, d))?)
        };
        let k = repeat(k)?;
        let v = repeat(v)?.contiguous()?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&inputs.mask)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let out = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, hidden))?;
        Ok((frozen_forward(&self.o, &out)?, present))
    }
}

/// The SwiGLU feed-forward `down(silu(gate(x)) * up(x))` (`blk.N.ffn_*`).
#[derive(Debug, Clone)]
pub struct LlamaMlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl LlamaMlp {
    /// Builds the feed-forward of one block from `ffn_gate`, `ffn_up` and `ffn_down` under `vb`.
    pub fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        Ok(LlamaMlp {
            gate: linear_no_bias(cfg.hidden_size, cfg.intermediate_size, vb.pp("ffn_gate"))?,
            up: linear_no_bias(cfg.hidden_size, cfg.intermediate_size, vb.pp("ffn_up"))?,
            down: linear_no_bias(cfg.intermediate_size, cfg.hidden_size, vb.pp("ffn_down"))?,
        })
    }

    /// The gate, up and down projections, in that order (for export).
    pub(crate) fn projections(&self) -> [&Linear; 3] {
        [&self.gate, &self.up, &self.down]
    }
}

impl Module for LlamaMlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let gated = (candle_nn::ops::silu(&frozen_forward(&self.gate, x)?)? * frozen_forward(&self.up, x)?)?;
        frozen_forward(&self.down, &gated)
    }
}

/// One pre-norm decoder block (`blk.N`).
#[derive(Debug, Clone)]
pub struct LlamaBlock {
    attn_norm: RmsNorm,
    attn: LlamaAttention,
    ffn_norm: RmsNorm,
    mlp: LlamaMlp,
}

impl LlamaBlock {
    /// Builds block `blk.N` from `vb.pp("blk.N")`.
    pub fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        Ok(LlamaBlock {
            attn_norm: rms_norm(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("attn_norm"))?,
            attn: LlamaAttention::new(cfg, vb.clone())?,
            ffn_norm: rms_norm(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("ffn_norm"))?,
            mlp: LlamaMlp::new(cfg, vb)?,
        })
    }

    /// The pre-attention norm, the attention, the pre-feed-forward norm and the feed-forward (for export).
    pub(crate) fn parts(&self) -> (&RmsNorm, &LlamaAttention, &RmsNorm, &LlamaMlp) {
        (&self.attn_norm, &self.attn, &self.ffn_norm, &self.mlp)
    }

    /// Applies the block to the new tokens `x`; the arguments are those of [`LlamaAttention::forward`]. The pre-norms
    /// run in candle's differentiable form, so a block can be trained.
    pub fn forward(&self, x: &Tensor, inputs: &AttentionInputs, past: Option<&KvCache>) -> Result<(Tensor, KvCache)> {
        let (attended, present) = self.attn.forward(&self.attn_norm.forward_diff(x)?, inputs, past)?;
        let x = (x + attended)?;
        let x = (&x + self.mlp.forward(&self.ffn_norm.forward_diff(&x)?)?)?;
        Ok((x, present))
    }

    /// The block's attention, to add LoRA adapters to it.
    pub fn attention_mut(&mut self) -> &mut LlamaAttention {
        &mut self.attn
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

/// The outputs of [`LlamaModel::forward`].
#[derive(Debug, Clone)]
pub struct LlamaOutput {
    /// The final hidden states after `output_norm`, `[B, T, hidden]`.
    pub hidden: Tensor,
    /// Next-token logits, `[B, T, vocab]`.
    pub logits: Tensor,
}

/// A Llama-family decoder; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct LlamaModel {
    cfg: LlamaConfig,
    embed: Embedding,
    blocks: Vec<LlamaBlock>,
    norm: RmsNorm,
    lm_head: Linear,
    device: Device,
}

impl LlamaModel {
    /// Builds the decoder from llama.cpp-named weights under `vb` (see the [module docs](self)); the head is
    /// `output.weight` when `vb` has it, otherwise the embedding (tied).
    pub fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let embed = embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("token_embd"))?;
        let blocks =
            (0..cfg.num_layers).map(|i| LlamaBlock::new(cfg, vb.pp(format!("blk.{i}")))).collect::<Result<Vec<_>>>()?;
        let norm = rms_norm(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("output_norm"))?;
        let lm_head = if vb.contains_tensor("output.weight") {
            linear_no_bias(cfg.hidden_size, cfg.vocab_size, vb.pp("output"))?
        } else {
            Linear::new(embed.embeddings().clone(), None)
        };
        Ok(LlamaModel { cfg: cfg.clone(), embed, blocks, norm, lm_head, device: vb.device().clone() })
    }

    /// Loads a GGUF file (e.g. [`crate::text::smollm2_gguf_path`]), dequantizing every tensor to f32 on `device`.
    pub fn from_gguf(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let gguf_error = |message: String| Error::ModelFile { path: path.into(), message };
        let mut reader = BufReader::new(File::open(path).map_err(Error::io(path))?);
        let content = Content::read(&mut reader).map_err(|e| gguf_error(format!("not a readable GGUF file: {e}")))?;
        let cfg = LlamaConfig::from_gguf_metadata(path, &content.metadata)?;
        let mut tensors = HashMap::with_capacity(content.tensor_infos.len());
        for name in content.tensor_infos.keys() {
            let tensor = content
                .tensor(&mut reader, name, device)
                .and_then(|q| q.dequantize(device))
                .map_err(|e| gguf_error(format!("tensor `{name}`: {e}")))?;
            tensors.insert(name.clone(), tensor.to_dtype(DType::F32)?);
        }
        Self::new(&cfg, VarBuilder::from_tensors(tensors, DType::F32, device))
    }

    /// A randomly initialised decoder of shape `cfg` whose weights all come from one RNG seeded with `seed` (candle's
    /// own CPU initialisers are unseeded), so tests get the same model every run. The head is tied.
    pub fn from_config_seeded(cfg: &LlamaConfig, seed: u64, device: &Device) -> Result<Self> {
        let store = std::sync::Arc::new(SeededVarMap::new(seed));
        Self::new(cfg, store.builder(device))
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The token embedding `token_embd` (for export).
    pub(crate) fn token_embedding(&self) -> &Embedding {
        &self.embed
    }

    /// The decoder blocks, first to last (for export).
    pub(crate) fn blocks(&self) -> &[LlamaBlock] {
        &self.blocks
    }

    /// The language-model head and whether it is tied to the token embedding (for export).
    pub(crate) fn lm_head(&self) -> (&Linear, bool) {
        (&self.lm_head, self.lm_head.weight().id() == self.embed.embeddings().id())
    }

    /// The final norm `output_norm` (for export).
    pub(crate) fn output_norm(&self) -> &RmsNorm {
        &self.norm
    }

    /// Runs the decoder on right-padded `input_ids` `[B, T]` (u32) with `attention_mask` `[B, T]` (1 = token,
    /// 0 = padding; any numeric type) and returns the final hidden states and the logits.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<LlamaOutput> {
        let hidden = self.hidden_states(input_ids, attention_mask)?;
        let logits = self.lm_head.forward(&hidden)?;
        Ok(LlamaOutput { hidden, logits })
    }

    /// The final hidden states `[B, T, hidden]` only, skipping the (vocabulary-wide) head.
    pub fn hidden_states(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        check_batch(input_ids, attention_mask)?;
        let inputs = AttentionInputs::right_padded(&self.cfg, attention_mask)?;
        let x = self.embed.forward(input_ids)?;
        let (x, _) = self.run_blocks(x, 0..self.cfg.num_layers, &inputs, None, &[])?;
        Ok(self.norm.forward(&x)?)
    }

    /// The input of block `layer` (the output of the blocks below it) for right-padded rows, `[B, T, hidden]`: what a
    /// trainer caches when only the blocks from `layer` up are trained.
    pub fn layer_input(&self, input_ids: &Tensor, attention_mask: &Tensor, layer: usize) -> Result<Tensor> {
        check_batch(input_ids, attention_mask)?;
        let inputs = AttentionInputs::right_padded(&self.cfg, attention_mask)?;
        let x = self.embed.forward(input_ids)?;
        let (x, _) = self.run_blocks(x, 0..layer.min(self.cfg.num_layers), &inputs, None, &[])?;
        Ok(x)
    }

    /// Runs blocks `layers` on `x`, each followed by its FiLM values from `film` if it has any. `past` holds one
    /// cache per layer of the whole model (indexed by layer). Returns the output and the new caches of `layers`.
    pub fn run_blocks(
        &self,
        mut x: Tensor,
        layers: std::ops::Range<usize>,
        inputs: &AttentionInputs,
        past: Option<&[KvCache]>,
        film: &[FilmValues],
    ) -> Result<(Tensor, Vec<KvCache>)> {
        let mut presents = Vec::with_capacity(layers.len());
        for layer in layers {
            let block = self.blocks.get(layer).ok_or_else(|| Error::InvalidInput {
                input: "layers",
                expected: format!("layers below {}", self.cfg.num_layers),
                got: layer.to_string(),
            })?;
            let (y, present) = block.forward(&x, inputs, past.and_then(|p| p.get(layer)))?;
            x = y;
            for f in film.iter().filter(|f| f.layer == layer) {
                x = x.broadcast_mul(&f.gamma)?.broadcast_add(&f.beta)?;
            }
            presents.push(present);
        }
        Ok((x, presents))
    }

    /// One generation step: the new tokens `input_ids` `[B, T]` (u32) after the cached ones, `attention_mask`
    /// `[B, S]` over cached and new tokens, `position_ids` `[B, T]` (u32), `past` one cache per layer (or `None` on the
    /// first step) and the FiLM values. Returns the logits `[B, T, vocab]` and the caches including the new tokens:
    /// the computation `policy.onnx` exports.
    pub fn forward_step(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        position_ids: &Tensor,
        past: Option<&[KvCache]>,
        film: &[FilmValues],
    ) -> Result<(Tensor, Vec<KvCache>)> {
        if let Some(past) = past
            && past.len() != self.cfg.num_layers
        {
            return Err(Error::InvalidInput {
                input: "past",
                expected: format!("one cache per layer ({})", self.cfg.num_layers),
                got: past.len().to_string(),
            });
        }
        let inputs = AttentionInputs::new(&self.cfg, attention_mask, position_ids)?;
        let x = self.embed.forward(input_ids)?;
        let (x, presents) = self.run_blocks(x, 0..self.cfg.num_layers, &inputs, past, film)?;
        let logits = self.lm_head.forward(&self.norm.forward_diff(&x)?)?;
        Ok((logits, presents))
    }

    /// The final norm (differentiable) and the head on hidden states `[.., hidden]`: next-token logits.
    pub fn head(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(frozen_forward(&self.lm_head, &self.norm.forward_diff(hidden)?)?)
    }

    /// The decoder blocks, mutable, to add adapters.
    pub fn blocks_mut(&mut self) -> &mut [LlamaBlock] {
        &mut self.blocks
    }

    /// The final hidden state at each row's last real token (the last position whose mask is 1), `[B, hidden]`:
    /// the sentence embedding the paper uses. A row with no real token is an error.
    pub fn last_token_hidden(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let hidden = self.hidden_states(input_ids, attention_mask)?;
        let mask = attention_mask.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let mut rows = Vec::with_capacity(mask.len());
        for (row, m) in mask.iter().enumerate() {
            let last = m.iter().rposition(|&v| v > 0.0).ok_or_else(|| Error::InvalidInput {
                input: "attention_mask",
                expected: "at least one real token (1) per row".into(),
                got: format!("row {row} is all padding"),
            })?;
            rows.push(hidden.get(row)?.get(last)?);
        }
        Ok(Tensor::stack(&rows, 0)?)
    }

    /// The sentence embedding `[B, hidden]`: [`last_token_hidden`](Self::last_token_hidden) (after `output_norm`),
    /// scaled to unit L2 norm with [`l2_normalize`]. Rows are right-padded; a row with no real token is an error.
    /// [`crate::text::llama_export`] writes the same function as ONNX.
    pub fn embed(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        l2_normalize(&self.last_token_hidden(input_ids, attention_mask)?)
    }

    /// Each row's log-probability of its response, `[B]`: the sum of `log p(x_t | x_<t)` over the positions `t`
    /// where `response_mask` is 1. Prompt positions (mask 0) are context only and add nothing, and neither do
    /// padding positions (`attention_mask` 0), whatever `response_mask` says there. This is the sequence
    /// log-probability DPO needs; summing over prompt or padding tokens instead was a real bug of the paper's first
    /// public code. Position 0 has no prediction, so its mask value is ignored. `input_ids` are right-padded u32.
    pub fn response_log_probs(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        response_mask: &Tensor,
    ) -> Result<Tensor> {
        let (b, t) = check_batch(input_ids, attention_mask)?;
        if response_mask.dims() != [b, t] {
            return Err(Error::InvalidInput {
                input: "response_mask",
                expected: format!("the shape of input_ids, [{b}, {t}]"),
                got: format!("{:?}", response_mask.shape()),
            });
        }
        if t < 2 {
            return Ok(Tensor::zeros(b, DType::F32, &self.device)?);
        }
        let logits = self.forward(input_ids, attention_mask)?.logits.narrow(1, 0, t - 1)?;
        let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let targets = input_ids.narrow(1, 1, t - 1)?.contiguous()?.unsqueeze(2)?;
        let picked = log_probs.gather(&targets, 2)?.squeeze(2)?;
        let counted = (response_mask.narrow(1, 1, t - 1)?.to_dtype(DType::F32)?
            * attention_mask.narrow(1, 1, t - 1)?.to_dtype(DType::F32)?)?;
        Ok((picked * counted)?.sum(1)?)
    }

    /// Mean next-token cross-entropy (nats per token) of right-padded `input_ids` under the model, over the
    /// positions whose current and next tokens are both real.
    pub fn next_token_loss(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<f32> {
        let (b, t) = check_batch(input_ids, attention_mask)?;
        if t < 2 {
            return Err(Error::InvalidInput {
                input: "input_ids",
                expected: "at least 2 tokens per row".into(),
                got: format!("{t}"),
            });
        }
        let logits = self.forward(input_ids, attention_mask)?.logits.narrow(1, 0, t - 1)?;
        let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let targets = input_ids.narrow(1, 1, t - 1)?.contiguous()?.unsqueeze(2)?;
        let picked = log_probs.gather(&targets, 2)?.squeeze(2)?;
        let valid = attention_mask.narrow(1, 1, t - 1)?.to_dtype(DType::F32)?;
        let count = valid.sum_all()?.to_scalar::<f32>()?;
        if count == 0.0 {
            return Err(Error::InvalidInput {
                input: "attention_mask",
                expected: "at least one row with 2 real tokens".into(),
                got: format!("{b} rows without"),
            });
        }
        let total = (picked * valid)?.sum_all()?.to_scalar::<f32>()?;
        Ok(-total / count)
    }
}

/// Checks that `input_ids` and `attention_mask` are both `[B, T]` with the same shape and returns `(B, T)`.
fn check_batch(input_ids: &Tensor, attention_mask: &Tensor) -> Result<(usize, usize)> {
    let (b, t) = input_ids.dims2().map_err(|_| Error::InvalidInput {
        input: "input_ids",
        expected: "a [batch, tokens] tensor".into(),
        got: format!("{:?}", input_ids.shape()),
    })?;
    if attention_mask.dims() != [b, t] {
        return Err(Error::InvalidInput {
            input: "attention_mask",
            expected: format!("the shape of input_ids, [{b}, {t}]"),
            got: format!("{:?}", attention_mask.shape()),
        });
    }
    if input_ids.dtype() != DType::U32 {
        return Err(Error::InvalidInput {
            input: "input_ids",
            expected: "u32 token ids".into(),
            got: format!("{:?}", input_ids.dtype()),
        });
    }
    Ok((b, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> LlamaModel {
        LlamaModel::from_config_seeded(&LlamaConfig::tiny(), 5, &Device::Cpu).unwrap()
    }

    fn tensor(rows: &[&[u32]]) -> Tensor {
        Tensor::new(rows.iter().map(|r| r.to_vec()).collect::<Vec<_>>(), &Device::Cpu).unwrap()
    }

    #[test]
    fn response_log_probs_count_only_response_tokens_issue_5() {
        let model = tiny();
        // Row 0: prompt [3, 9, 4], response [17, 22], then 2 padding slots; row 1: prompt [5], response [8, 30, 2].
        let ids = tensor(&[&[3, 9, 4, 17, 22, 0, 0], &[5, 8, 30, 2, 0, 0, 0]]);
        let mask = tensor(&[&[1, 1, 1, 1, 1, 0, 0], &[1, 1, 1, 1, 0, 0, 0]]);
        // The response mask also (wrongly) marks padding: it must not count.
        let response = tensor(&[&[0, 0, 0, 1, 1, 1, 1], &[0, 1, 1, 1, 1, 1, 1]]);
        let got = model.response_log_probs(&ids, &mask, &response).unwrap().to_vec1::<f32>().unwrap();

        // By hand: the log-softmax of the logits at t − 1, at token x_t, summed over the response positions only.
        let logits = model.forward(&ids, &mask).unwrap().logits;
        let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap().to_vec3::<f32>().unwrap();
        let ids_v = ids.to_vec2::<u32>().unwrap();
        let by_hand = |row: usize, positions: &[usize]| -> f32 {
            positions.iter().map(|&t| log_probs[row][t - 1][ids_v[row][t] as usize]).sum()
        };
        let expected = [by_hand(0, &[3, 4]), by_hand(1, &[1, 2, 3])];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-5, "{got:?} vs {expected:?}");
        }
        // Counting the prompt too (the reference code's bug) gives a different, lower number.
        let with_prompt = by_hand(0, &[1, 2, 3, 4]);
        assert!(with_prompt < got[0] - 1e-3, "{with_prompt} vs {}", got[0]);

        // Padding ids change nothing.
        let repadded = tensor(&[&[3, 9, 4, 17, 22, 63, 41], &[5, 8, 30, 2, 7, 7, 7]]);
        let again = model.response_log_probs(&repadded, &mask, &response).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got, again);

        // A bad mask shape is an error, not a panic.
        let err = model.response_log_probs(&ids, &mask, &tensor(&[&[1, 1]])).unwrap_err();
        assert_eq!(err.code(), 1022);
    }
}
