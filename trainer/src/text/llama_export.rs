//! Exports a [`LlamaModel`] (e.g. SmolLM2-135M) as a sentence embedder in ONNX, with our [`GraphBuilder`] (opset 17,
//! standard operators only). The graph computes [`LlamaModel::embed`]: the final hidden state (after
//! `output_norm`) at each row's last real token, L2-normalised. The language-model head is not in the graph.
//!
//! Signature, the same as the MiniLM embedder's ([`crate::text::embedder_export`]):
//! - `input_ids`: int64 `[batch, seq]`, right-padded token ids (the padding id does not matter);
//! - `attention_mask`: int64 `[batch, seq]`, 1 for tokens then 0 for padding;
//! - `embedding`: float `[batch, hidden]`, unit length.
//!
//! `batch` and `seq` are dynamic; `seq` may not exceed [`LLAMA_MAX_TOKENS`], the length of the rotary tables stored
//! in the graph (computed by [`LlamaConfig::rope_tables`], the values candle uses). Rows must be right-padded: the
//! last real token is taken at index `sum(mask) − 1`, and a row with no real token gives an unspecified vector
//! (candle refuses it).
//!
//! Each block is written as candle runs it: RMSNorm from `Mul`/`ReduceMean`/`Add`/`Sqrt`/`Div`/`Mul`; the
//! interleaved rotation of the pairs `(2i, 2i + 1)` of each head (the stored `attn_q`/`attn_k` layout, see
//! [`crate::text::llama`]); key/value heads repeated to the query heads by `Expand`; causal plus padding additive
//! mask of [`MASKED_LOGIT`]; SwiGLU as `x · Sigmoid(x)`.

use std::path::Path;

use candle_core::Device;

use crate::error::{Error, Result};
use crate::onnx::proto::data_type;
use crate::onnx::{CandleLayers, Dim, GraphBuilder, attr_int, attr_ints};
use crate::text::bert::MIN_NORM;
use crate::text::embedder_export::{ATTENTION_MASK, EMBEDDING, INPUT_IDS};
use candle_nn::{Linear, RmsNorm};

use crate::model::layers::MASKED_LOGIT;
use crate::text::llama::{LlamaBlock, LlamaConfig, LlamaMlp, LlamaModel};

/// The longest input the exported graph accepts: SmolLM2's context length (`llama.context_length`, 8192).
pub const LLAMA_MAX_TOKENS: usize = 8192;

pub(crate) const BATCH: Dim = Dim::Dynamic("batch");
const SEQ: Dim = Dim::Dynamic("seq");

/// Values every block reads: the additive attention mask and the rotary tables at the tokens' positions.
pub(crate) struct Shared {
    /// `[B, 1, T, S]`: 0 where a query may attend, [`MASKED_LOGIT`] (or twice it) where not.
    pub(crate) mask: String,
    /// Broadcasting against `[B, T, heads, head_dim / 2, 1]`: `[T, 1, head_dim / 2, 1]` here, `[B, T, 1, head_dim / 2,
    /// 1]` in the policy graph (per-row positions).
    pub(crate) cos: String,
    /// Same layout as `cos`.
    pub(crate) sin: String,
}

/// Serialises `model` as the embedder described in the [module docs](self).
pub fn llama_embedder_graph(model: &LlamaModel) -> Result<Vec<u8>> {
    let cfg = model.config();
    cfg.validate()?;
    let half = cfg.head_dim() / 2;
    let mut g = GraphBuilder::new("steer_llama_embedder");
    let ids = g.input_typed(INPUT_IDS, &[BATCH, SEQ], data_type::INT64);
    let mask = g.input_typed(ATTENTION_MASK, &[BATCH, SEQ], data_type::INT64);

    // Positions 0..seq: Slices of tables stored up to LLAMA_MAX_TOKENS.
    let seq_len = g.node("Shape", &[&ids], vec![attr_int("start", 1), attr_int("end", 2)]);
    let zero = g.constant_i64("starts", &[0]);
    let axis0 = g.constant_i64("axes", &[0]);
    let slice_positions = |g: &mut GraphBuilder, table: &str| {
        g.node("Slice", &[table, zero.as_str(), seq_len.as_str(), axis0.as_str()], vec![])
    };
    let (cos, sin) = cfg.rope_tables(LLAMA_MAX_TOKENS, &Device::Cpu)?;
    let cos = g.tensor("rope_cos", &cos.reshape((LLAMA_MAX_TOKENS, 1, half, 1))?)?;
    let sin = g.tensor("rope_sin", &sin.reshape((LLAMA_MAX_TOKENS, 1, half, 1))?)?;
    let cos = slice_positions(&mut g, &cos);
    let sin = slice_positions(&mut g, &sin);
    let positions: Vec<f32> = (0..LLAMA_MAX_TOKENS).map(|p| p as f32).collect();
    let positions = g.constant_f32("positions", &[LLAMA_MAX_TOKENS], &positions);
    let positions = slice_positions(&mut g, &positions);

    // Causal [T, T] (key j after query i) plus padding [B, 1, 1, T] (1 − mask)·M, added in candle's order.
    let axis1 = g.constant_i64("axes", &[1]);
    let query_positions = g.node("Unsqueeze", &[&positions, &axis1], vec![]);
    let future = g.node("Greater", &[&positions, &query_positions], vec![]);
    let future = g.node("Cast", &[&future], vec![attr_int("to", i64::from(data_type::FLOAT))]);
    let masked = g.constant_f32("masked_logit", &[], &[MASKED_LOGIT as f32]);
    let causal = g.node("Mul", &[&future, &masked], vec![]);
    let mask_f = g.node("Cast", &[&mask], vec![attr_int("to", i64::from(data_type::FLOAT))]);
    let one = g.constant_f32("one", &[], &[1.0]);
    let padding = g.node("Sub", &[&one, &mask_f], vec![]);
    let padding = g.node("Mul", &[&padding, &masked], vec![]);
    let axes12 = g.constant_i64("axes", &[1, 2]);
    let padding = g.node("Unsqueeze", &[&padding, &axes12], vec![]);
    let attention_mask = g.node("Add", &[&causal, &padding], vec![]);
    let shared = Shared { mask: attention_mask, cos, sin };

    let mut x = g.embedding(&ids, model.token_embedding())?;
    for block in model.blocks() {
        x = decoder_block(&mut g, &x, &shared, block, cfg)?;
    }
    let x = g.rms_norm(&x, model.output_norm())?;

    // The last real token of each right-padded row, at index sum(mask) − 1, gathered as [B, 1, hidden].
    let count = g.node("ReduceSum", &[&mask, &axis1], vec![attr_int("keepdims", 1)]);
    let one_i64 = g.constant_i64("one", &[1]);
    let last = g.node("Sub", &[&count, &one_i64], vec![]);
    let axis2 = g.constant_i64("axes", &[2]);
    let last = g.node("Unsqueeze", &[&last, &axis2], vec![]);
    let row_shape = g.constant_i64("row_shape", &[1, 1, cfg.hidden_size as i64]);
    let last = g.node("Expand", &[&last, &row_shape], vec![]);
    let picked = g.node("GatherElements", &[&x, &last], vec![attr_int("axis", 1)]);
    let picked = g.node("Squeeze", &[&picked, &axis1], vec![]);

    // L2 normalisation with the norm floored at MIN_NORM, as `l2_normalize`.
    let squares = g.node("Mul", &[&picked, &picked], vec![]);
    let norm = g.node("ReduceSum", &[&squares, &axis1], vec![attr_int("keepdims", 1)]);
    let norm = g.node("Sqrt", &[&norm], vec![]);
    let min_norm = g.constant_f32("min_norm", &[], &[MIN_NORM as f32]);
    let norm = g.node("Max", &[&norm, &min_norm], vec![]);
    let embedding = g.node("Div", &[&picked, &norm], vec![]);
    g.output(&embedding, EMBEDDING, &[BATCH, Dim::Fixed(cfg.hidden_size)]);
    Ok(g.finish("Steer text embedder: Llama-family decoder (last real token after output_norm, L2 normalisation)")?)
}

/// One pre-norm decoder block on `x` `[B, T, hidden]`.
fn decoder_block(
    g: &mut GraphBuilder,
    x: &str,
    shared: &Shared,
    block: &LlamaBlock,
    cfg: &LlamaConfig,
) -> Result<String> {
    let (attn_norm, attn, ffn_norm, mlp) = block.parts();
    let normed = g.rms_norm(x, attn_norm)?;
    let [q, k, v, o] = attn.projections();
    let heads = cfg.num_heads as i64;
    let kv_heads = cfg.num_kv_heads as i64;
    let head_dim = cfg.head_dim() as i64;
    let group = (cfg.num_heads / cfg.num_kv_heads) as i64;

    // Rotary pairs are adjacent: view each head as [head_dim / 2, 2] and rotate the pairs.
    let q = g.linear(&normed, q)?;
    let q = rotate(g, &q, heads, head_dim, shared);
    let q = g.node("Transpose", &[&q], vec![attr_ints("perm", &[0, 2, 1, 3])]);
    let k = g.linear(&normed, k)?;
    let k = rotate(g, &k, kv_heads, head_dim, shared);
    let k = repeat_kv(g, &k, heads, head_dim, group);
    let k_t = g.node("Transpose", &[&k], vec![attr_ints("perm", &[0, 2, 3, 1])]);
    let v = g.linear(&normed, v)?;
    let kv_shape = g.constant_i64("kv_heads_shape", &[0, 0, kv_heads, head_dim]);
    let v = g.node("Reshape", &[&v, &kv_shape], vec![]);
    let v = repeat_kv(g, &v, heads, head_dim, group);
    let v = g.node("Transpose", &[&v], vec![attr_ints("perm", &[0, 2, 1, 3])]);

    let x = attend(g, x, &q, &k_t, &v, shared, o, cfg)?;

    feed_forward(g, &x, ffn_norm, mlp)
}

/// The block's second half, `x + down(silu(gate(n)) · up(n))` with `n = RMSNorm(x)`.
pub(crate) fn feed_forward(g: &mut GraphBuilder, x: &str, ffn_norm: &RmsNorm, mlp: &LlamaMlp) -> Result<String> {
    let normed = g.rms_norm(x, ffn_norm)?;
    let [gate, up, down] = mlp.projections();
    let gate = g.linear(&normed, gate)?;
    let sigmoid = g.node("Sigmoid", &[&gate], vec![]);
    let silu = g.node("Mul", &[&gate, &sigmoid], vec![]);
    let up = g.linear(&normed, up)?;
    let gated = g.node("Mul", &[&silu, &up], vec![]);
    let out = g.linear(&gated, down)?;
    Ok(g.node("Add", &[x, &out], vec![]))
}

/// `x` plus the attention output: softmax(q·kᵀ/√d + mask)·v with q `[B, H, T, d]`, `keys_t` `[B, H, d, S]` and
/// `values` `[B, H, S, d]`, heads merged and projected by `o`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend(
    g: &mut GraphBuilder,
    x: &str,
    q: &str,
    keys_t: &str,
    values: &str,
    shared: &Shared,
    o: &Linear,
    cfg: &LlamaConfig,
) -> Result<String> {
    // Multiplied by 1/√d (not divided by √d) as candle does, so the rounding matches.
    let scores = g.node("MatMul", &[q, keys_t], vec![]);
    let scale = g.constant_f32("scale", &[], &[(1.0 / (cfg.head_dim() as f64).sqrt()) as f32]);
    let scores = g.node("Mul", &[&scores, &scale], vec![]);
    let scores = g.node("Add", &[&scores, &shared.mask], vec![]);
    let weights = g.node("Softmax", &[&scores], vec![attr_int("axis", -1)]);
    let context = g.node("MatMul", &[&weights, values], vec![]);
    let context = g.node("Transpose", &[&context], vec![attr_ints("perm", &[0, 2, 1, 3])]);
    let merge = g.constant_i64("merge_shape", &[0, 0, cfg.hidden_size as i64]);
    let context = g.node("Reshape", &[&context, &merge], vec![]);
    let attended = g.linear(&context, o)?;
    Ok(g.node("Add", &[x, &attended], vec![]))
}

/// Splits `x` `[B, T, n · head_dim]` into `n` heads and applies the interleaved rotary embedding, as candle's
/// `rope_i`: `(a, b) ↦ (a·cos − b·sin, a·sin + b·cos)` for each pair `(2i, 2i + 1)`. Returns `[B, T, n, head_dim]`.
pub(crate) fn rotate(g: &mut GraphBuilder, x: &str, n: i64, head_dim: i64, shared: &Shared) -> String {
    let pairs_shape = g.constant_i64("pairs_shape", &[0, 0, n, head_dim / 2, 2]);
    let pairs = g.node("Reshape", &[x, &pairs_shape], vec![]);
    let first = g.constant_i64("first", &[0]);
    let second = g.constant_i64("second", &[1]);
    let a = g.node("Gather", &[&pairs, &first], vec![attr_int("axis", -1)]);
    let b = g.node("Gather", &[&pairs, &second], vec![attr_int("axis", -1)]);
    let a_cos = g.node("Mul", &[&a, &shared.cos], vec![]);
    let b_sin = g.node("Mul", &[&b, &shared.sin], vec![]);
    let rotated_a = g.node("Sub", &[&a_cos, &b_sin], vec![]);
    let a_sin = g.node("Mul", &[&a, &shared.sin], vec![]);
    let b_cos = g.node("Mul", &[&b, &shared.cos], vec![]);
    let rotated_b = g.node("Add", &[&a_sin, &b_cos], vec![]);
    let rotated = g.node("Concat", &[&rotated_a, &rotated_b], vec![attr_int("axis", -1)]);
    let heads_shape = g.constant_i64("heads_shape", &[0, 0, n, head_dim]);
    g.node("Reshape", &[&rotated, &heads_shape], vec![])
}

/// Repeats each key/value head of `x` `[B, T, kv, head_dim]` `group` times in place (head `h` reads kv head
/// `h / group`, as candle's `repeat`), giving `[B, T, heads, head_dim]`.
fn repeat_kv(g: &mut GraphBuilder, x: &str, heads: i64, head_dim: i64, group: i64) -> String {
    if group == 1 {
        return x.to_string();
    }
    let axis3 = g.constant_i64("axes", &[3]);
    let x = g.node("Unsqueeze", &[x, &axis3], vec![]);
    let copies = g.constant_i64("group_shape", &[1, 1, 1, group, 1]);
    let x = g.node("Expand", &[&x, &copies], vec![]);
    let heads_shape = g.constant_i64("heads_shape", &[0, 0, heads, head_dim]);
    g.node("Reshape", &[&x, &heads_shape], vec![])
}

/// Writes [`llama_embedder_graph`] to `path`.
pub fn write_llama_embedder(model: &LlamaModel, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let bytes = llama_embedder_graph(model)?;
    std::fs::write(path, bytes).map_err(Error::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::ModelProto;
    use prost::Message;

    #[test]
    fn llama_graph_uses_only_standard_opset_17_operators() {
        let model = LlamaModel::from_config_seeded(&LlamaConfig::tiny(), 7, &Device::Cpu).unwrap();
        let bytes = llama_embedder_graph(&model).unwrap();
        let proto = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(proto.opset_import[0].version, 17);
        assert!(proto.opset_import.iter().all(|o| o.domain.is_empty()));
        let graph = proto.graph.unwrap();
        let inputs: Vec<_> = graph.input.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(inputs, [INPUT_IDS, ATTENTION_MASK]);
        assert_eq!(graph.output[0].name, EMBEDDING);
        // No vocabulary-wide head: the only [vocab, hidden] tensor is the embedding table.
        let vocab_sized = graph.initializer.iter().filter(|t| t.dims.first() == Some(&64)).count();
        assert_eq!(vocab_sized, 1);
        assert!(graph.node.iter().all(|n| n.domain.is_empty()));
    }

    #[test]
    fn llama_seeded_models_are_reproducible() {
        let a = LlamaModel::from_config_seeded(&LlamaConfig::tiny(), 3, &Device::Cpu).unwrap();
        let b = LlamaModel::from_config_seeded(&LlamaConfig::tiny(), 3, &Device::Cpu).unwrap();
        let c = LlamaModel::from_config_seeded(&LlamaConfig::tiny(), 4, &Device::Cpu).unwrap();
        let ids = candle_core::Tensor::new(&[[1u32, 5, 9]], &Device::Cpu).unwrap();
        let mask = ids.ones_like().unwrap();
        let embed = |m: &LlamaModel| m.embed(&ids, &mask).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(embed(&a), embed(&b));
        assert_ne!(embed(&a), embed(&c));
        let norm: f32 = embed(&a).iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
}
