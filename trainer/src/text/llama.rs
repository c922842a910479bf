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
use candle_nn::{Embedding, Linear, RmsNorm, VarBuilder, embedding, linear_no_bias, rms_norm};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::params::SeededVarMap;
use crate::text::bert::l2_normalize;

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
        }
    }

    /// Reads the configuration from GGUF metadata (`general.architecture` must be `llama`); `vocab_size` is taken
    /// from `tokenizer.ggml.tokens`. `path` is only used in error messages.
    pub fn from_gguf_metadata(path: &Path, metadata: &HashMap<String, Value>) -> Result<Self> {
        let fail = |key: &str, message: String| Error::Gguf {
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
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that a decoder can be built from this configuration.
    pub fn validate(&self) -> Result<()> {
        if self.num_heads == 0 || self.hidden_size % self.num_heads != 0 || self.head_dim() % 2 != 0 {
            return Err(Error::InvalidConfig {
                field: "num_heads",
                expected: format!("a positive divisor of hidden_size {} giving an even head width", self.hidden_size),
                got: self.num_heads.to_string(),
            });
        }
        if self.num_kv_heads == 0 || self.num_heads % self.num_kv_heads != 0 {
            return Err(Error::InvalidConfig {
                field: "num_kv_heads",
                expected: format!("a positive divisor of num_heads {}", self.num_heads),
                got: self.num_kv_heads.to_string(),
            });
        }
        Ok(())
    }

    /// The width of one attention head (64 for SmolLM2-135M).
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads.max(1)
    }

    /// The rotary tables for positions `0..tokens`: `(cos, sin)`, each `[tokens, head_dim / 2]` f32, where entry
    /// `(p, i)` is the angle `p · rope_theta^(−2i / head_dim)`. The decoder and its ONNX export share these values.
    pub fn rope_tables(&self, tokens: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.head_dim() / 2;
        let inv_freq: Vec<f32> =
            (0..half).map(|i| (1.0 / self.rope_theta.powf(2.0 * i as f64 / self.head_dim() as f64)) as f32).collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let positions = Tensor::arange(0u32, tokens as u32, device)?.to_dtype(DType::F32)?.reshape((tokens, 1))?;
        let angles = positions.broadcast_mul(&inv_freq)?;
        Ok((angles.cos()?, angles.sin()?))
    }
}

/// Causal grouped-query self-attention with interleaved rotary embeddings (`blk.N.attn_*`).
#[derive(Debug, Clone)]
pub struct LlamaAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl LlamaAttention {
    /// Builds the attention of one block from `attn_q`, `attn_k`, `attn_v` and `attn_output` under `vb`.
    pub fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let head_dim = cfg.head_dim();
        let kv = cfg.num_kv_heads * head_dim;
        Ok(LlamaAttention {
            q: linear_no_bias(cfg.hidden_size, cfg.hidden_size, vb.pp("attn_q"))?,
            k: linear_no_bias(cfg.hidden_size, kv, vb.pp("attn_k"))?,
            v: linear_no_bias(cfg.hidden_size, kv, vb.pp("attn_v"))?,
            o: linear_no_bias(cfg.hidden_size, cfg.hidden_size, vb.pp("attn_output"))?,
            num_heads: cfg.num_heads,
            num_kv_heads: cfg.num_kv_heads,
            head_dim,
        })
    }

    /// The query, key, value and output projections, in that order (for export).
    pub(crate) fn projections(&self) -> [&Linear; 4] {
        [&self.q, &self.k, &self.v, &self.o]
    }

    /// `x` `[B, T, hidden]`; `cos`/`sin` `[T, head_dim / 2]`; `mask` additive, broadcastable to `[B, H, T, T]`.
    pub fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t, hidden) = x.dims3()?;
        let heads = |y: Tensor, n: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, n, self.head_dim))?.transpose(1, 2)?.contiguous()?)
        };
        let q = heads(self.q.forward(x)?, self.num_heads)?;
        let k = heads(self.k.forward(x)?, self.num_kv_heads)?;
        let v = heads(self.v.forward(x)?, self.num_kv_heads)?;
        let q = candle_nn::rotary_emb::rope_i(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope_i(&k, cos, sin)?;
        let group = self.num_heads / self.num_kv_heads;
        let repeat = |y: Tensor| -> Result<Tensor> {
            if group == 1 {
                return Ok(y);
            }
            let (b, n, t, d) = y.dims4()?;
            Ok(y.unsqueeze(2)?.expand((b, n, group, t, d))?.reshape((b, n * group, t, d))?)
        };
        let k = repeat(k)?;
        let v = repeat(v)?.contiguous()?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, hidden))?;
        Ok(self.o.forward(&out)?)
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
        let gated = (candle_nn::ops::silu(&self.gate.forward(x)?)? * self.up.forward(x)?)?;
        self.down.forward(&gated)
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

    /// Applies the block; the arguments are those of [`LlamaAttention::forward`].
    pub fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.attn_norm.forward(x)?, cos, sin, mask)?)?;
        Ok((&x + self.mlp.forward(&self.ffn_norm.forward(&x)?)?)?)
    }
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
        let gguf_error = |message: String| Error::Gguf { path: path.into(), message };
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
        let (b, t) = check_batch(input_ids, attention_mask)?;
        let (cos, sin) = self.cfg.rope_tables(t, &self.device)?;
        let causal: Vec<f32> =
            (0..t).flat_map(|i| (0..t).map(move |j| if j > i { MASKED_LOGIT as f32 } else { 0.0 })).collect();
        let causal = Tensor::from_vec(causal, (1, 1, t, t), &self.device)?;
        let padding = ((attention_mask.to_dtype(DType::F32)?.ones_like()? - attention_mask.to_dtype(DType::F32)?)?
            * MASKED_LOGIT)?
            .reshape((b, 1, 1, t))?;
        let mask = causal.broadcast_add(&padding)?;
        let mut x = self.embed.forward(input_ids)?;
        for block in &self.blocks {
            x = block.forward(&x, &cos, &sin, &mask)?;
        }
        Ok(self.norm.forward(&x)?)
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
