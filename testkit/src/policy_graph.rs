//! A tiny steerable policy whose every logit can be computed by hand, and a text bundle that carries it.
//!
//! One layer, one key/value head of width 1, a word-level vocabulary of [`POLICY_VOCAB`]. The cache holds the token
//! ids themselves: `present.0.key = past ‖ ids` and `present.0.value = past ‖ 2 · ids` (as floats, on axis 2). For
//! the new tokens of a step the logits are
//!
//! ```text
//! logits[b, s, v] = BIGRAM[input_ids[b, s]][v]                       the last token
//!                 + (z[b] · W)[v]                                    the profile
//!                 + S[b] · C[v]        S = Σ present.0.key[b]        every token so far (prompt included; pads are 0)
//!                 + 0.05 · position_ids[b, s] · [v = EOS]
//!                 + 0.05 · Σ attention_mask[b] · [v = EOS]
//!                 + 10 · [position_ids[b, s] >= 11 and v = x]
//!                 + 10 · (Σ attention_mask[b] − position_ids[b, s] − 1)² · [v = x]
//! ```
//!
//! The last term is 0 at the last position when mask and positions agree (a mask of 1 exactly for the real
//! tokens), and makes `x` win otherwise.
//!
//! so the reply depends on the profile, on the cache being carried from step to step (S), and on positions and
//! mask counting only real tokens.

use std::path::{Path, PathBuf};

use steer_runtime::manifest::MANIFEST_FILE;
use steer_runtime::{Dims, GenerationParams, Manifest, ModelKind, PolicySpec};

use crate::bundle::write_bundle_with_text;
use crate::graph::{D, Graph};
use crate::text::{text_files, text_spec, word_level_tokenizer_json};

/// The policy's vocabulary; a token's id is its index.
pub const POLICY_VOCAB: [&str; 12] =
    ["<pad>", "<|im_start|>", "<|im_end|>", "user", "assistant", "a", "b", "c", "d", "e", "x", "[UNK]"];
/// `<pad>`.
pub const PAD: u32 = 0;
/// `<|im_start|>`.
pub const IM_START: u32 = 1;
/// `<|im_end|>`, the end token.
pub const EOS: u32 = 2;
/// `user`.
pub const USER: u32 = 3;
/// `assistant`.
pub const ASSISTANT: u32 = 4;
/// `a`.
pub const A: u32 = 5;
/// `b`.
pub const B: u32 = 6;
/// `c`.
pub const C: u32 = 7;
/// `d`.
pub const DD: u32 = 8;
/// `e`.
pub const E: u32 = 9;
/// `x`.
pub const X: u32 = 10;
/// From this position on, `x` gets +10: replies in the tests end earlier, unless positions are miscounted.
pub const X_FROM: usize = 11;
/// `[UNK]`.
pub const UNK: u32 = 11;
const V: usize = POLICY_VOCAB.len();
/// The profile size of the policy bundle.
pub const LATENT: usize = 2;
/// The bundle's dims.
pub const POLICY_DIMS: Dims = Dims { embedding_dim: 4, latent_dim: LATENT };
/// The context window.
pub const MAX_POSITIONS: usize = 24;
/// The chat template: the prompt between the user and assistant markers.
pub const CHAT_TEMPLATE: &str = "<|im_start|> user {prompt} <|im_end|> <|im_start|> assistant";

/// `BIGRAM[prev][next]`: a → c → a, b → d → b, e → EOS.
pub fn bigram(prev: u32, next: u32) -> f32 {
    match (prev, next) {
        (A, C) | (C, A) | (B, DD) | (DD, B) => 3.0,
        (E, EOS) => 5.0,
        _ => 0.0,
    }
}

/// `W[l][v]`: latent 0 favours `a`, latent 1 favours `b`.
pub fn w(l: usize, v: u32) -> f32 {
    match (l, v) {
        (0, A) | (1, B) => 2.0,
        _ => 0.0,
    }
}

/// `C[v]`: the cache term favours `e` as the reply grows.
pub fn c(v: u32) -> f32 {
    if v == E { 0.1 } else { 0.0 }
}

/// `POS[position][v]`: 10 for `x` from position [`X_FROM`] on.
pub fn position_bonus(position: usize, v: u32) -> f32 {
    if position >= X_FROM && v == X { 10.0 } else { 0.0 }
}

/// The logits the graph gives for the next token after `tokens` (every real token so far), with `cached_sum` the
/// sum the cache term sees (the sum of `tokens` when the cache works).
pub fn next_logits(tokens: &[u32], z: &[f32], cached_sum: f32) -> Vec<f32> {
    let last = *tokens.last().expect("at least one token");
    let position = (tokens.len() - 1) as f32;
    (0..V as u32)
        .map(|v| {
            let eos = if v == EOS { 0.05 * position + 0.05 * tokens.len() as f32 } else { 0.0 };
            position_bonus(tokens.len() - 1, v)
                + bigram(last, v)
                + (0..LATENT).map(|l| z[l] * w(l, v)).sum::<f32>()
                + cached_sum * c(v)
                + eos
        })
        .collect()
}

/// Greedy decoding by [`next_logits`] in plain Rust. With `working_cache` false, the cache term only sees the
/// token fed in the current step (what a runtime that drops the cache would get).
pub fn reference_greedy(prompt: &[u32], z: &[f32], max_new_tokens: usize, working_cache: bool) -> Vec<u32> {
    let mut tokens = prompt.to_vec();
    let mut out = Vec::new();
    for step in 0..max_new_tokens {
        let sum = if working_cache || step == 0 {
            tokens.iter().map(|&t| t as f32).sum()
        } else {
            *tokens.last().expect("the prompt is not empty") as f32
        };
        let logits = next_logits(&tokens, z, sum);
        let mut best = 0;
        for (i, &l) in logits.iter().enumerate() {
            if l > logits[best] {
                best = i;
            }
        }
        if best as u32 == EOS {
            break;
        }
        tokens.push(best as u32);
        out.push(best as u32);
    }
    out
}

/// The ids of a prompt of words of [`POLICY_VOCAB`] under [`CHAT_TEMPLATE`].
pub fn templated(words: &[u32]) -> Vec<u32> {
    let mut ids = vec![IM_START, USER];
    ids.extend_from_slice(words);
    ids.extend_from_slice(&[EOS, IM_START, ASSISTANT]);
    ids
}

/// Which parts of the graph to leave out, for signature tests.
#[derive(Clone, Copy, Default)]
pub struct Broken {
    /// Drop the `z` input.
    pub no_z: bool,
}

/// The policy graph described in the module docs.
pub fn policy_graph(broken: Broken) -> Graph {
    let bigram_table: Vec<f32> = (0..V as u32).flat_map(|p| (0..V as u32).map(move |n| bigram(p, n))).collect();
    let w_table: Vec<f32> = (0..LATENT).flat_map(|l| (0..V as u32).map(move |v| w(l, v))).collect();
    let c_vec: Vec<f32> = (0..V as u32).map(c).collect();
    let pos_table: Vec<f32> =
        (0..MAX_POSITIONS).flat_map(|p| (0..V as u32).map(move |v| position_bonus(p, v))).collect();
    let x_vec: Vec<f32> = (0..V as u32).map(|v| if v == X { 10.0 } else { 0.0 }).collect();
    let eos_vec: Vec<f32> = (0..V as u32).map(|v| if v == EOS { 0.05 } else { 0.0 }).collect();
    let (batch, seq) = (D::Sym("batch"), D::Sym("seq"));
    let mut g = Graph::default()
        .input_i64("input_ids", &[batch, seq])
        .input_i64("attention_mask", &[batch, D::Sym("total_seq")])
        .input_i64("position_ids", &[batch, seq])
        .input("past_key_values.0.key", &[batch, D::Fix(1), D::Sym("past_seq"), D::Fix(1)])
        .input("past_key_values.0.value", &[batch, D::Fix(1), D::Sym("past_seq"), D::Fix(1)]);
    if !broken.no_z {
        g = g.input("z", &[batch, D::Fix(LATENT as i64)]);
    }
    g = g
        .output("logits", &[batch, seq, D::Fix(V as i64)])
        .output("present.0.key", &[batch, D::Fix(1), D::Sym("total_seq"), D::Fix(1)])
        .output("present.0.value", &[batch, D::Fix(1), D::Sym("total_seq"), D::Fix(1)])
        .weight("bigram", &[V as i64, V as i64], &bigram_table)
        .weight("W", &[LATENT as i64, V as i64], &w_table)
        .weight("C", &[V as i64], &c_vec)
        .weight("eos", &[V as i64], &eos_vec)
        .weight("two", &[1], &[2.0])
        .weight("one", &[1], &[1.0])
        .weight("xv", &[V as i64], &x_vec)
        .weight("pos_table", &[MAX_POSITIONS as i64, V as i64], &pos_table)
        .axes("ax1", &[1])
        .axes("ax2", &[2])
        .axes("ax12", &[1, 2])
        .axes("ax13", &[1, 3])
        .axes("ax123", &[1, 2, 3])
        // The cache.
        .cast_to_float("input_ids", "idsf")
        .op("Unsqueeze", &["idsf", "ax13"], &["ids4"])
        .op_with("Concat", &["past_key_values.0.key", "ids4"], &["present.0.key"], &[("axis", 2)])
        .op("Mul", &["ids4", "two"], &["ids4x2"])
        .op_with("Concat", &["past_key_values.0.value", "ids4x2"], &["present.0.value"], &[("axis", 2)])
        // The terms.
        .op("Gather", &["bigram", "input_ids"], &["big"])
        .reduce_sum("present.0.key", "ax123", "sum", 0)
        .op("Unsqueeze", &["sum", "ax12"], &["sum3"])
        .op("Mul", &["sum3", "C"], &["cterm"])
        .cast_to_float("position_ids", "posf")
        .op("Unsqueeze", &["posf", "ax2"], &["pos3"])
        .op("Mul", &["pos3", "eos"], &["pterm"])
        .cast_to_float("attention_mask", "maskf")
        .reduce_sum("maskf", "ax1", "count", 1)
        .op("Unsqueeze", &["count", "ax2"], &["count3"])
        .op("Mul", &["count3", "eos"], &["mterm"])
        .op("Add", &["big", "pterm"], &["l1"])
        .op("Add", &["l1", "cterm"], &["l2"])
        .op("Gather", &["pos_table", "position_ids"], &["ppos"])
        .op("Add", &["l2", "mterm"], &["l2b"])
        .op("Sub", &["count3", "pos3"], &["gap"])
        .op("Sub", &["gap", "one"], &["gap1"])
        .op("Mul", &["gap1", "gap1"], &["gap2"])
        .op("Mul", &["gap2", "xv"], &["xterm"])
        .op("Add", &["l2b", "ppos"], &["l2c"])
        .op("Add", &["l2c", "xterm"], &["l3"]);
    if broken.no_z {
        g.op("Identity", &["l3"], &["logits"])
    } else {
        g.op("MatMul", &["z", "W"], &["zw"]).op("Unsqueeze", &["zw", "ax1"], &["zw3"]).op(
            "Add",
            &["l3", "zw3"],
            &["logits"],
        )
    }
}

/// The policy's `tokenizer.json`: word-level over [`POLICY_VOCAB`], split on whitespace and punctuation, with
/// `<pad>`, `<|im_start|>` and `<|im_end|>` as special tokens.
pub fn policy_tokenizer_json() -> Vec<u8> {
    word_level_tokenizer_json(&POLICY_VOCAB, &["<pad>", "<|im_start|>", "<|im_end|>"])
}

/// Greedy defaults without a repetition penalty, 8 new tokens.
pub fn greedy() -> GenerationParams {
    GenerationParams::greedy(8)
}

/// The policy's spec, with [`greedy`] defaults.
pub fn policy_spec() -> PolicySpec {
    PolicySpec {
        graph: "policy.onnx".into(),
        tokenizer: "policy_tokenizer.json".into(),
        base_model: "steer-tests-bigram".into(),
        num_layers: 1,
        num_kv_heads: 1,
        head_dim: 1,
        vocab_size: V,
        max_positions: MAX_POSITIONS,
        chat_template: CHAT_TEMPLATE.into(),
        eos_token_ids: vec![EOS],
        pad_token_id: PAD,
        film_layers: vec![],
        defaults: greedy(),
    }
}

/// An np-btl text bundle (the graphs of `text_bundle`) with the policy; `spec`, the graph and the tokenizer file
/// may be changed for failure tests.
pub fn policy_bundle_with(dir: &Path, spec: PolicySpec, graph: Graph, tokenizer: Vec<u8>) -> PathBuf {
    let kind = ModelKind::NpBtl;
    let mut files = text_files(kind, POLICY_DIMS);
    files.push(("policy.onnx", graph.into_bytes()));
    files.push(("policy_tokenizer.json", tokenizer));
    let mut manifest: Manifest = write_bundle_with_text(dir, kind, POLICY_DIMS, &files, Some(text_spec()));
    manifest.policy = Some(spec);
    steer_runtime::producer::save_manifest(&manifest, dir).expect("cannot write the manifest");
    assert!(dir.join(MANIFEST_FILE).exists());
    dir.to_path_buf()
}

/// The policy bundle.
pub fn policy_bundle(dir: &Path) -> PathBuf {
    policy_bundle_with(dir, policy_spec(), policy_graph(Broken::default()), policy_tokenizer_json())
}
