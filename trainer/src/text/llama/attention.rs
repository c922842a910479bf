//! Causal grouped-query self-attention with rotary position embeddings, the per-call inputs every layer shares, and
//! the key/value cache of generation.

use candle_core::{D, DType, Tensor};
use candle_nn::{Linear, VarBuilder, linear, linear_no_bias};

use super::LlamaConfig;
use crate::error::{Error, Result};
use crate::model::layers::MASKED_LOGIT;
use crate::policy::lora::Lora;
use crate::text::frozen_linear::frozen_forward;

/// A layer's key/value cache: `key` and `value` `[B, num_kv_heads, S, head_dim]`, before the key/value heads are
/// repeated for the query heads (the layout of `policy.onnx`'s `present.*` outputs).
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Rotated keys.
    pub key: Tensor,
    /// Values.
    pub value: Tensor,
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
