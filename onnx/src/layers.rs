//! The layers Steer's models are made of, written from plain `f32` weights: dense layers and their stacks, masked
//! self-attention over a set, normalisations, an embedding lookup and the exact GELU.

use crate::builder::{GraphBuilder, attr_float, attr_int, attr_ints};
use crate::error::{Error, Result};

/// Added to the attention logits of masked keys (padded, or future in a decoder). Large enough that `exp` underflows
/// to exactly 0 in f32, small enough that a row of only padding stays finite (it becomes uniform and is masked
/// later); the trainer's candle models use this constant too.
pub const MASKED_LOGIT: f64 = -1e9;

/// A dense layer `y = x · Wᵀ + b`, with `W` stored `[outputs, inputs]` row-major as candle and PyTorch store it.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// The weight, `outputs · inputs` values.
    pub weight: Vec<f32>,
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// The bias (`outputs` values), if any.
    pub bias: Option<Vec<f32>>,
}

/// Multi-head self-attention over a padded set (the NP-BTL context encoder's), of width `hidden`.
#[derive(Debug, Clone, PartialEq)]
pub struct Attention {
    /// Query projection.
    pub q: Dense,
    /// Key projection.
    pub k: Dense,
    /// Value projection.
    pub v: Dense,
    /// Output projection.
    pub o: Dense,
    /// Number of heads.
    pub heads: usize,
    /// Model width (a multiple of `heads`).
    pub hidden: usize,
}

/// Fails unless `values` holds `expected` values.
pub(crate) fn check_len(what: &str, values: &[f32], expected: usize) -> Result<()> {
    if values.len() == expected {
        Ok(())
    } else {
        Err(Error::WeightSize { what: what.to_string(), expected, got: values.len() })
    }
}

impl Dense {
    /// `W` transposed to `[inputs, outputs]`, the right operand of `MatMul`.
    pub fn weight_t(&self) -> Result<Vec<f32>> {
        check_len("dense weight", &self.weight, self.inputs * self.outputs)?;
        Ok((0..self.inputs).flat_map(|i| (0..self.outputs).map(move |o| self.weight[o * self.inputs + i])).collect())
    }
}

impl GraphBuilder {
    /// `x · Wᵀ + b` on the last axis of `x`.
    pub fn dense(&mut self, x: &str, layer: &Dense) -> Result<String> {
        let weight_t = self.constant_f32("weight_t", &[layer.inputs, layer.outputs], &layer.weight_t()?);
        let product = self.node("MatMul", &[x, &weight_t], vec![]);
        match &layer.bias {
            Some(bias) => {
                check_len("dense bias", bias, layer.outputs)?;
                let bias = self.constant_f32("bias", &[layer.outputs], bias);
                Ok(self.node("Add", &[&product, &bias], vec![]))
            }
            None => Ok(product),
        }
    }

    /// Dense layers with ReLU between them (none after the last).
    pub fn dense_stack(&mut self, x: &str, layers: &[Dense]) -> Result<String> {
        let mut value = x.to_string();
        for (i, layer) in layers.iter().enumerate() {
            if i > 0 {
                value = self.node("Relu", &[&value], vec![]);
            }
            value = self.dense(&value, layer)?;
        }
        Ok(value)
    }

    /// [`Attention`] on `x` `[B, K, H]` with `mask` `[B, K]` (1 for real elements); works for K = 0.
    pub fn self_attention_f32(&mut self, x: &str, mask: &str, attn: &Attention) -> Result<String> {
        let head_dim = attn.hidden / attn.heads.max(1);
        // Reshape's 0 copies the input's size on that axis, so B and K stay dynamic (and K may be 0).
        let to_heads = self.constant_i64("heads_shape", &[0, 0, attn.heads as i64, head_dim as i64]);
        let q = self.dense(x, &attn.q)?;
        let k = self.dense(x, &attn.k)?;
        let v = self.dense(x, &attn.v)?;
        let q = self.node("Reshape", &[&q, &to_heads], vec![]);
        let q = self.node("Transpose", &[&q], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let k = self.node("Reshape", &[&k, &to_heads], vec![]);
        let k_t = self.node("Transpose", &[&k], vec![attr_ints("perm", &[0, 2, 3, 1])]);
        let v = self.node("Reshape", &[&v, &to_heads], vec![]);
        let v = self.node("Transpose", &[&v], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let scores = self.node("MatMul", &[&q, &k_t], vec![]);
        let scale = self.constant_f32("scale", &[], &[(head_dim as f32).sqrt()]);
        let scores = self.node("Div", &[&scores, &scale], vec![]);
        // Key bias: 0 for real pairs, MASKED_LOGIT for padding, as mask·(−M) + M in candle.
        let neg_m = self.constant_f32("neg_masked", &[], &[-MASKED_LOGIT as f32]);
        let m = self.constant_f32("masked", &[], &[MASKED_LOGIT as f32]);
        let bias = self.node("Mul", &[mask, &neg_m], vec![]);
        let bias = self.node("Add", &[&bias, &m], vec![]);
        let axes = self.constant_i64("axes", &[1, 2]);
        let bias = self.node("Unsqueeze", &[&bias, &axes], vec![]);
        let scores = self.node("Add", &[&scores, &bias], vec![]);
        let weights = self.node("Softmax", &[&scores], vec![attr_int("axis", -1)]);
        let out = self.node("MatMul", &[&weights, &v], vec![]);
        let out = self.node("Transpose", &[&out], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let merge = self.constant_i64("merge_shape", &[0, 0, attn.hidden as i64]);
        let out = self.node("Reshape", &[&out, &merge], vec![]);
        self.dense(&out, &attn.o)
    }

    /// Sums `x` `[B, K, H]` over K where `mask` `[B, K]` is 1.
    pub fn masked_sum(&mut self, x: &str, mask: &str) -> String {
        let last = self.constant_i64("axes", &[2]);
        let mask = self.node("Unsqueeze", &[mask, &last], vec![]);
        let kept = self.node("Mul", &[x, &mask], vec![]);
        let set_axis = self.constant_i64("axes", &[1]);
        self.node("ReduceSum", &[&kept, &set_axis], vec![attr_int("keepdims", 0)])
    }

    /// A lookup of the rows of `table` (`dims = [rows, width]`) at the integer `ids` (any shape), giving
    /// `ids.shape + [width]`.
    pub fn embedding_f32(&mut self, ids: &str, table: &[f32], dims: [usize; 2]) -> Result<String> {
        check_len("embedding table", table, dims[0] * dims[1])?;
        let table = self.constant_f32("embedding_table", &dims, table);
        Ok(self.node("Gather", &[&table, ids], vec![attr_int("axis", 0)]))
    }

    /// A layer norm over the last axis with `scale` (and `bias`), as opset 17's `LayerNormalization`.
    pub fn layer_norm_f32(&mut self, x: &str, scale: &[f32], bias: Option<&[f32]>, eps: f32) -> String {
        let scale = self.constant_f32("ln_scale", &[scale.len()], scale);
        let mut inputs = vec![x.to_string(), scale];
        if let Some(bias) = bias {
            inputs.push(self.constant_f32("ln_bias", &[bias.len()], bias));
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let attributes = vec![attr_int("axis", -1), attr_float("epsilon", eps)];
        self.node("LayerNormalization", &inputs, attributes)
    }

    /// An RMS norm over the last axis, `x / √(mean(x²) + eps) · weight`, written with standard operators (opset 17
    /// has no `RMSNormalization`).
    pub fn rms_norm_f32(&mut self, x: &str, weight: &[f32], eps: f32) -> String {
        let weight = self.constant_f32("rms_scale", &[weight.len()], weight);
        let eps = self.constant_f32("rms_eps", &[], &[eps]);
        let squares = self.node("Mul", &[x, x], vec![]);
        // Opset 17's ReduceMean still takes its axes as an attribute.
        let mean = self.node("ReduceMean", &[&squares], vec![attr_ints("axes", &[-1]), attr_int("keepdims", 1)]);
        let mean = self.node("Add", &[&mean, &eps], vec![]);
        let rms = self.node("Sqrt", &[&mean], vec![]);
        let normed = self.node("Div", &[x, &rms], vec![]);
        self.node("Mul", &[&normed, &weight], vec![])
    }

    /// The exact GELU, `x · ½ · (1 + erf(x / √2))`, as candle's `gelu_erf`.
    pub fn gelu_erf(&mut self, x: &str) -> String {
        let sqrt2 = self.constant_f32("sqrt2", &[], &[std::f32::consts::SQRT_2]);
        let half = self.constant_f32("half", &[], &[0.5]);
        let one = self.constant_f32("one", &[], &[1.0]);
        let scaled = self.node("Div", &[x, &sqrt2], vec![]);
        let erf = self.node("Erf", &[&scaled], vec![]);
        let erf = self.node("Add", &[&erf, &one], vec![]);
        let halved = self.node("Mul", &[x, &half], vec![]);
        self.node("Mul", &[&halved, &erf], vec![])
    }

    /// Removes the last axis (of size 1) of a rank-3 value.
    pub fn squeeze_last(&mut self, x: &str) -> String {
        let axes = self.constant_i64("axes", &[2]);
        self.node("Squeeze", &[x, &axes], vec![])
    }
}
