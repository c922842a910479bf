//! The trainer's side of the ONNX writer: [`steer_onnx`] (the one writer, shared with the test kit) re-exported, and
//! [`CandleLayers`], which hands candle layers to its plain-weight builders.

use candle_core::Tensor;
use candle_nn::{Embedding, LayerNorm, Linear, RmsNorm};
pub use steer_onnx::{
    Dim, GraphBuilder, INLINE_MODEL_LIMIT, IR_VERSION, OPSET, attr_float, attr_int, attr_ints, proto, write_model,
};

use crate::error::{Error, Result};
use crate::model::layers::{MaskedSelfAttention, Mlp};

impl From<steer_onnx::Error> for Error {
    fn from(error: steer_onnx::Error) -> Self {
        match error {
            steer_onnx::Error::Io { path, source } => Error::Io { path, source },
            other => Error::Export(other.to_string()),
        }
    }
}

/// A candle tensor's values, flattened row-major.
fn values(tensor: &Tensor) -> Result<Vec<f32>> {
    Ok(tensor.flatten_all()?.to_vec1::<f32>()?)
}

/// A candle [`Linear`] as the writer's [`steer_onnx::Dense`].
pub fn dense(layer: &Linear) -> Result<steer_onnx::Dense> {
    let (outputs, inputs) = layer.weight().dims2()?;
    let bias = layer.bias().map(values).transpose()?;
    Ok(steer_onnx::Dense { weight: values(layer.weight())?, inputs, outputs, bias })
}

/// An [`Mlp`]'s layers as the writer's dense stack.
pub fn dense_stack(mlp: &Mlp) -> Result<Vec<steer_onnx::Dense>> {
    mlp.layers().iter().map(dense).collect()
}

/// A [`MaskedSelfAttention`] as the writer's [`steer_onnx::Attention`].
pub fn attention(attn: &MaskedSelfAttention) -> Result<steer_onnx::Attention> {
    Ok(steer_onnx::Attention {
        q: dense(&attn.q)?,
        k: dense(&attn.k)?,
        v: dense(&attn.v)?,
        o: dense(&attn.o)?,
        heads: attn.heads,
        hidden: attn.hidden,
    })
}

/// Graph-building calls that take candle layers and tensors, on top of [`GraphBuilder`]'s plain-weight ones.
pub trait CandleLayers {
    /// Adds a candle tensor as a float constant.
    fn tensor(&mut self, hint: &str, tensor: &Tensor) -> Result<String>;
    /// `x · Wᵀ + b` for a candle `Linear` (weight `[out, in]`), on the last axis of `x`.
    fn linear(&mut self, x: &str, layer: &Linear) -> Result<String>;
    /// An [`Mlp`]: linear layers with ReLU between them.
    fn mlp(&mut self, x: &str, mlp: &Mlp) -> Result<String>;
    /// [`MaskedSelfAttention`] on `x` `[B, K, H]` with `mask` `[B, K]`; works for K = 0.
    fn masked_self_attention(&mut self, x: &str, mask: &str, attn: &MaskedSelfAttention) -> Result<String>;
    /// A candle [`Embedding`] lookup: `Gather` of the table's rows at the integer `ids` (any shape), giving
    /// `ids.shape + [hidden]`.
    fn embedding(&mut self, ids: &str, layer: &Embedding) -> Result<String>;
    /// A candle [`LayerNorm`] over the last axis, as opset 17's `LayerNormalization`. RMS norms (no mean removal)
    /// are refused, since that operator always removes the mean.
    fn layer_norm(&mut self, x: &str, layer: &LayerNorm) -> Result<String>;
    /// A candle [`RmsNorm`] over the last axis, `x / √(mean(x²) + eps) · weight`.
    fn rms_norm(&mut self, x: &str, layer: &RmsNorm) -> Result<String>;
}

impl CandleLayers for GraphBuilder {
    fn tensor(&mut self, hint: &str, tensor: &Tensor) -> Result<String> {
        Ok(self.constant_f32(hint, tensor.dims(), &values(tensor)?))
    }

    fn linear(&mut self, x: &str, layer: &Linear) -> Result<String> {
        Ok(self.dense(x, &dense(layer)?)?)
    }

    fn mlp(&mut self, x: &str, mlp: &Mlp) -> Result<String> {
        Ok(self.dense_stack(x, &dense_stack(mlp)?)?)
    }

    fn masked_self_attention(&mut self, x: &str, mask: &str, attn: &MaskedSelfAttention) -> Result<String> {
        Ok(self.self_attention_f32(x, mask, &attention(attn)?)?)
    }

    fn embedding(&mut self, ids: &str, layer: &Embedding) -> Result<String> {
        let table = layer.embeddings();
        let (rows, width) = table.dims2()?;
        Ok(self.embedding_f32(ids, &values(table)?, [rows, width])?)
    }

    fn layer_norm(&mut self, x: &str, layer: &LayerNorm) -> Result<String> {
        if !layer.remove_mean() {
            return Err(Error::Export("RMS norm cannot be written as LayerNormalization".into()));
        }
        let bias = layer.bias().map(values).transpose()?;
        Ok(self.layer_norm_f32(x, &values(layer.weight())?, bias.as_deref(), layer.eps() as f32))
    }

    fn rms_norm(&mut self, x: &str, layer: &RmsNorm) -> Result<String> {
        Ok(self.rms_norm_f32(x, &values(layer.weight())?, layer.eps() as f32))
    }
}
