//! The text fixture: a word-level tokenizer over [`TEXT_VOCAB`] and an embedder that looks every token up in a
//! fixed table and takes the masked mean over the sequence:
//!
//! ```text
//! embedding = Σ_s mask[s] · TABLE[input_ids[s]] / Σ_s mask[s]          with TABLE[id][j] = table(id, j)
//! ```
//!
//! Options are `[CLS] ‖ tail(prompt) ‖ head(response) ‖ [SEP]`, at most [`TEXT_MAX_TOKENS`] tokens.

use std::path::{Path, PathBuf};

use steer_runtime::{Dims, ModelKind, TextSpec};

use crate::arithmetic::{encoder_graph, reward_graph};
use crate::bundle::write_bundle_with_text;
use crate::graph::{D, Graph};

/// The text fixture's vocabulary; a token's id is its index. `[PAD]` is 3, so padding that leaked into the mean
/// would show.
pub const TEXT_VOCAB: [&str; 16] =
    ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "the", "cat", "sat", "on", "a", "mat", "dog", "good", "bad", "yes", "no", "?"];
/// At most 8 tokens per option: 6 of text between `[CLS]` and `[SEP]`.
pub const TEXT_MAX_TOKENS: usize = 8;

/// The embedding table entry `TABLE[id][j]`: small distinct values, exact in f32.
pub fn table(id: usize, j: usize) -> f32 {
    ((id * (j + 2) + j) % 7) as f32 * 0.25 - 0.75
}

/// The embedder's output for one option's token ids (no padding): the mean of their table rows.
pub fn mean_embedding(ids: &[usize], d: usize) -> Vec<f32> {
    (0..d).map(|j| ids.iter().map(|&id| table(id, j)).sum::<f32>() / ids.len() as f32).collect()
}

/// The embedder graph for embedding size `d`.
pub fn embedder_graph(d: usize) -> Graph {
    let values: Vec<f32> = (0..TEXT_VOCAB.len()).flat_map(|id| (0..d).map(move |j| table(id, j))).collect();
    Graph::default()
        .input_i64("input_ids", &[D::Sym("batch"), D::Sym("seq")])
        .input_i64("attention_mask", &[D::Sym("batch"), D::Sym("seq")])
        .output("embedding", &[D::Sym("batch"), D::Fix(d as i64)])
        .weight("table", &[TEXT_VOCAB.len() as i64, d as i64], &values)
        .axes("axis1", &[1])
        .axes("axis2", &[2])
        .op("Gather", &["table", "input_ids"], &["tokens"])
        .cast_to_float("attention_mask", "maskf")
        .op("Unsqueeze", &["maskf", "axis2"], &["mask3"])
        .op("Mul", &["tokens", "mask3"], &["masked"])
        .reduce_sum("masked", "axis1", "summed", 0)
        .reduce_sum("maskf", "axis1", "count", 1)
        .op("Div", &["summed", "count"], &["embedding"])
}

/// A Hugging Face `tokenizer.json`: word-level over `vocab` (ids are indices), split on whitespace and punctuation,
/// with `specials` (which must be in `vocab`) as special tokens.
pub fn word_level_tokenizer_json(vocab: &[&str], specials: &[&str]) -> Vec<u8> {
    let ids: serde_json::Map<String, serde_json::Value> =
        vocab.iter().enumerate().map(|(id, token)| (token.to_string(), id.into())).collect();
    let added: Vec<serde_json::Value> = specials
        .iter()
        .map(|token| {
            serde_json::json!({
                "id": vocab.iter().position(|t| t == token).expect("special tokens are in the vocabulary"),
                "content": token, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": true,
            })
        })
        .collect();
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": { "type": "Whitespace" },
        "post_processor": null,
        "decoder": null,
        "model": { "type": "WordLevel", "vocab": ids, "unk_token": "[UNK]" },
    });
    serde_json::to_vec_pretty(&json).expect("JSON values serialise")
}

/// The text fixture's `tokenizer.json` over `vocab`, with `[CLS]`, `[SEP]` and `[PAD]` as special tokens.
pub fn tokenizer_json(vocab: &[&str]) -> Vec<u8> {
    word_level_tokenizer_json(vocab, &["[CLS]", "[SEP]", "[PAD]"])
}

/// The text spec of the fixture.
pub fn text_spec() -> TextSpec {
    TextSpec {
        embedder: "embedder.onnx".into(),
        tokenizer: "tokenizer.json".into(),
        embedder_id: "steer-tests-table".into(),
        pooling: "mean".into(),
        vocab_size: TEXT_VOCAB.len(),
        max_tokens: TEXT_MAX_TOKENS,
        begin_tokens: vec!["[CLS]".into()],
        end_tokens: vec!["[SEP]".into()],
        pad_token: "[PAD]".into(),
        response_prefix: String::new(),
    }
}

/// The files of a text bundle of `kind`: the arithmetic graphs plus the embedder and tokenizer.
pub(crate) fn text_files(kind: ModelKind, dims: Dims) -> Vec<(&'static str, Vec<u8>)> {
    let (d, latent) = (dims.embedding_dim, dims.latent_dim);
    let mut files = vec![
        ("reward.onnx", reward_graph(kind, d, latent).into_bytes()),
        ("embedder.onnx", embedder_graph(d).into_bytes()),
        ("tokenizer.json", tokenizer_json(&TEXT_VOCAB)),
    ];
    if kind.is_conditioned() {
        files.push(("encoder.onnx", encoder_graph(d, latent).into_bytes()));
    }
    files
}

/// A text bundle of `kind`: the graphs of [`crate::test_bundle`] plus the embedder and tokenizer, with `spec` in
/// the manifest.
pub fn text_bundle_with(dir: &Path, kind: ModelKind, dims: Dims, spec: TextSpec) -> PathBuf {
    write_bundle_with_text(dir, kind, dims, &text_files(kind, dims), Some(spec));
    dir.to_path_buf()
}

/// A text bundle of `kind` with [`text_spec`].
pub fn text_bundle(dir: &Path, kind: ModelKind, dims: Dims) -> PathBuf {
    text_bundle_with(dir, kind, dims, text_spec())
}
