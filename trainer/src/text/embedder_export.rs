//! Exports a [`MiniLmEmbedder`] as `embedder.onnx` with our [`GraphBuilder`] (opset 17, standard operators only).
//!
//! Signature:
//! - `input_ids`: int64 `[batch, seq]`, word-piece ids as the MiniLM tokenizer writes them (`[CLS] … [SEP]`, then
//!   padding id 0);
//! - `attention_mask`: int64 `[batch, seq]`, 1 for tokens and 0 for padding, exactly the tokenizer's mask (int64
//!   like the ids, so callers feed both straight from `tokenizers`; the graph casts it to float itself);
//! - `embedding`: float `[batch, 384]`, the mean-pooled, L2-normalised sentence embedding.
//!
//! `batch` and `seq` are dynamic; `seq` may not exceed 512 (the position table). The positions `0..seq` are a
//! `Slice` of the position-embedding table up to `Shape(input_ids)[1]`, and every token gets token type 0.

use std::path::Path;

use crate::error::{Error, Result};
use crate::model::layers::MASKED_LOGIT;
use crate::onnx::proto::data_type;
use crate::onnx::{CandleLayers, Dim, GraphBuilder, attr_int, attr_ints};
use crate::text::bert::{BertLayer, MIN_NORM, MIN_TOKEN_COUNT, MiniLmEmbedder};

/// File name of the exported embedder.
pub const EMBEDDER_FILE: &str = "embedder.onnx";
/// Graph input: token ids, int64 `[batch, seq]`.
pub const INPUT_IDS: &str = "input_ids";
/// Graph input: attention mask, int64 `[batch, seq]`.
pub const ATTENTION_MASK: &str = "attention_mask";
/// Graph output: unit-length embeddings, float `[batch, hidden]`.
pub const EMBEDDING: &str = "embedding";

const BATCH: Dim = Dim::Dynamic("batch");
const SEQ: Dim = Dim::Dynamic("seq");

/// Serialises `embedder` as the ONNX model described in the [module docs](self).
pub fn embedder_graph(embedder: &MiniLmEmbedder) -> Result<Vec<u8>> {
    let bert = &embedder.bert;
    let cfg = &bert.config;
    let mut g = GraphBuilder::new("steer_minilm_embedder");
    let ids = g.input_typed(INPUT_IDS, &[BATCH, SEQ], data_type::INT64);
    let mask = g.input_typed(ATTENTION_MASK, &[BATCH, SEQ], data_type::INT64);

    // Embeddings: word + token type 0 + positions 0..seq, then LayerNorm (the order candle adds them in).
    let emb = &bert.embeddings;
    let words = g.embedding(&ids, &emb.word)?;
    let token_type = g.tensor("token_type_0", &emb.token_type.embeddings().get(0)?)?;
    let x = g.node("Add", &[&words, &token_type], vec![]);
    let seq_len = g.node("Shape", &[&ids], vec![attr_int("start", 1), attr_int("end", 2)]);
    let zero = g.constant_i64("starts", &[0]);
    let axis0 = g.constant_i64("axes", &[0]);
    let table = g.tensor("position_table", emb.position.embeddings())?;
    let positions = g.node("Slice", &[&table, &zero, &seq_len, &axis0], vec![]);
    let x = g.node("Add", &[&x, &positions], vec![]);
    let mut x = g.layer_norm(&x, &emb.layer_norm)?;

    // Key bias [B, 1, 1, T]: mask·(−P) + P, i.e. 0 for tokens and MASKED_LOGIT for padding.
    let mask_f = g.node("Cast", &[&mask], vec![attr_int("to", i64::from(data_type::FLOAT))]);
    let neg_p = g.constant_f32("neg_padding_logit", &[], &[-MASKED_LOGIT as f32]);
    let p = g.constant_f32("padding_logit", &[], &[MASKED_LOGIT as f32]);
    let bias = g.node("Mul", &[&mask_f, &neg_p], vec![]);
    let bias = g.node("Add", &[&bias, &p], vec![]);
    let axes = g.constant_i64("axes", &[1, 2]);
    let key_bias = g.node("Unsqueeze", &[&bias, &axes], vec![]);

    for layer in &bert.layers {
        x = encoder_layer(&mut g, &x, &key_bias, layer, cfg.hidden_size)?;
    }

    // Mean pooling over the real tokens, then L2 normalisation.
    let last = g.constant_i64("axes", &[2]);
    let mask3 = g.node("Unsqueeze", &[&mask_f, &last], vec![]);
    let kept = g.node("Mul", &[&x, &mask3], vec![]);
    let tokens_axis = g.constant_i64("axes", &[1]);
    let summed = g.node("ReduceSum", &[&kept, &tokens_axis], vec![attr_int("keepdims", 0)]);
    let count = g.node("ReduceSum", &[&mask3, &tokens_axis], vec![attr_int("keepdims", 0)]);
    let min_count = g.constant_f32("min_token_count", &[], &[MIN_TOKEN_COUNT as f32]);
    let count = g.node("Max", &[&count, &min_count], vec![]);
    let pooled = g.node("Div", &[&summed, &count], vec![]);
    let squares = g.node("Mul", &[&pooled, &pooled], vec![]);
    let norm = g.node("ReduceSum", &[&squares, &tokens_axis], vec![attr_int("keepdims", 1)]);
    let norm = g.node("Sqrt", &[&norm], vec![]);
    let min_norm = g.constant_f32("min_norm", &[], &[MIN_NORM as f32]);
    let norm = g.node("Max", &[&norm, &min_norm], vec![]);
    let embedding = g.node("Div", &[&pooled, &norm], vec![]);
    g.output(&embedding, EMBEDDING, &[BATCH, Dim::Fixed(cfg.hidden_size)]);
    Ok(g.finish("Steer text embedder: all-MiniLM-L6-v2 (BERT, mean pooling, L2 normalisation)")?)
}

/// One post-norm BERT layer on `x` `[B, T, H]` with `key_bias` `[B, 1, 1, T]`.
fn encoder_layer(g: &mut GraphBuilder, x: &str, key_bias: &str, layer: &BertLayer, hidden: usize) -> Result<String> {
    let heads = layer.heads;
    let head_dim = hidden / heads;
    let to_heads = g.constant_i64("heads_shape", &[0, 0, heads as i64, head_dim as i64]);
    let q = g.linear(x, &layer.query)?;
    let k = g.linear(x, &layer.key)?;
    let v = g.linear(x, &layer.value)?;
    let q = g.node("Reshape", &[&q, &to_heads], vec![]);
    let q = g.node("Transpose", &[&q], vec![attr_ints("perm", &[0, 2, 1, 3])]);
    let k = g.node("Reshape", &[&k, &to_heads], vec![]);
    let k_t = g.node("Transpose", &[&k], vec![attr_ints("perm", &[0, 2, 3, 1])]);
    let v = g.node("Reshape", &[&v, &to_heads], vec![]);
    let v = g.node("Transpose", &[&v], vec![attr_ints("perm", &[0, 2, 1, 3])]);
    let scores = g.node("MatMul", &[&q, &k_t], vec![]);
    let scale = g.constant_f32("scale", &[], &[(head_dim as f32).sqrt()]);
    let scores = g.node("Div", &[&scores, &scale], vec![]);
    let scores = g.node("Add", &[&scores, key_bias], vec![]);
    let weights = g.node("Softmax", &[&scores], vec![attr_int("axis", -1)]);
    let context = g.node("MatMul", &[&weights, &v], vec![]);
    let context = g.node("Transpose", &[&context], vec![attr_ints("perm", &[0, 2, 1, 3])]);
    let merge = g.constant_i64("merge_shape", &[0, 0, hidden as i64]);
    let context = g.node("Reshape", &[&context, &merge], vec![]);
    let attended = g.linear(&context, &layer.attention_output)?;
    let attended = g.node("Add", &[&attended, x], vec![]);
    let attended = g.layer_norm(&attended, &layer.attention_norm)?;
    let inner = g.linear(&attended, &layer.intermediate)?;
    let inner = g.gelu_erf(&inner);
    let out = g.linear(&inner, &layer.output)?;
    let out = g.node("Add", &[&out, &attended], vec![]);
    g.layer_norm(&out, &layer.output_norm)
}

/// Writes [`embedder_graph`] to `path` (conventionally named [`EMBEDDER_FILE`]).
pub fn write_embedder(embedder: &MiniLmEmbedder, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let bytes = embedder_graph(embedder)?;
    std::fs::write(path, bytes).map_err(Error::io(path))
}
