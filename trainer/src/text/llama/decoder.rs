//! The decoder itself: [`LlamaModel`] (embedding, blocks, final norm, head), its blocks and their feed-forward,
//! loaded from GGUF or built at random. The [module docs](super) describe the layout.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, Linear, RmsNorm, VarBuilder, embedding, linear_no_bias, rms_norm};

use super::{AttentionInputs, KvCache, LlamaAttention, LlamaConfig};
use crate::error::{Error, Result};
use crate::params::SeededVarMap;
use crate::policy::film::FilmValues;
use crate::text::bert::l2_normalize;
use crate::text::frozen_linear::frozen_forward;

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

/// The outputs of [`LlamaModel::forward`].
#[derive(Debug, Clone)]
pub struct LlamaOutput {
    /// The final hidden states after `output_norm`, `[B, T, hidden]`.
    pub hidden: Tensor,
    /// Next-token logits, `[B, T, vocab]`.
    pub logits: Tensor,
}

/// A Llama-family decoder; see the [module docs](super).
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
    /// Builds the decoder from llama.cpp-named weights under `vb` (see the [module docs](super)); the head is
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
}

/// Checks that `input_ids` and `attention_mask` are both `[B, T]` with the same shape and returns `(B, T)`.
pub(crate) fn check_batch(input_ids: &Tensor, attention_mask: &Tensor) -> Result<(usize, usize)> {
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
