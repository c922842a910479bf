//! Exports a [`SteerPolicy`] as `policy.onnx` (opset 17, standard operators) with a key/value cache, in the signature
//! of [`steer_runtime::policy_spec`] (onnxruntime-genai's names plus `z`), and writes the policy bundle.
//!
//! The graph computes [`SteerPolicy::forward_step`]: LoRA is merged into the query and value weights
//! (`W + (α/r)·B·A`), and FiLM is computed inside the graph from `z` after its blocks. The rotary angles are gathered
//! per token from tables stored up to [`LLAMA_MAX_TOKENS`] positions, by `position_ids`. The mask is the candle rule:
//! new token `i` (total index `past + i`) attends to key `j` when `j ≤ past + i` and `attention_mask[j] = 1`. The
//! head, tied to the embedding in SmolLM2, reuses the embedding table through `Gemm` with `transB`, so the 28 M-value
//! table is stored once.

use std::fs;
use std::path::Path;

use candle_core::Device;
use steer_runtime::manifest::{FileEntry, Manifest};
use steer_runtime::policy_spec::policy_io;
use steer_runtime::producer::{save_manifest, sha256_file};
use steer_runtime::{GenerationParams, PolicySpec};

use crate::error::{Error, Result};
use crate::model::layers::MASKED_LOGIT;
use crate::onnx::proto::{ModelProto, data_type};
use crate::onnx::{CandleLayers, Dim, GraphBuilder, attr_int, attr_ints, write_model};
use crate::policy::SteerPolicy;
use crate::policy::base::Base;
use crate::text::llama::{LlamaBlock, LlamaConfig};
use crate::text::llama_export::{BATCH, LLAMA_MAX_TOKENS, Shared, attend, feed_forward, rotate};
use crate::text::save_tokenizer_json;

/// The policy graph's file name in a bundle.
pub const POLICY_FILE: &str = "policy.onnx";
/// The policy tokenizer's file name in a bundle.
pub const POLICY_TOKENIZER_FILE: &str = "policy_tokenizer.json";

const SEQ: Dim = Dim::Dynamic("seq");
const TOTAL: Dim = Dim::Dynamic("total_seq");
const PAST: Dim = Dim::Dynamic("past_seq");

/// `policy` as the ONNX model described in the [module docs](self), to write with [`write_model`].
pub fn policy_model(policy: &SteerPolicy) -> Result<ModelProto> {
    let model = policy.model();
    let cfg = model.config();
    cfg.validate()?;
    let (kv, d, half) = (cfg.num_kv_heads, cfg.head_dim(), cfg.head_dim() / 2);
    let mut g = GraphBuilder::new("steer_policy");
    let ids = g.input_typed(policy_io::INPUT_IDS, &[BATCH, SEQ], data_type::INT64);
    let mask = g.input_typed(policy_io::ATTENTION_MASK, &[BATCH, TOTAL], data_type::INT64);
    let positions = g.input_typed(policy_io::POSITION_IDS, &[BATCH, SEQ], data_type::INT64);
    let cache_dims = [BATCH, Dim::Fixed(kv), PAST, Dim::Fixed(d)];
    let past: Vec<(String, String)> = (0..cfg.num_layers)
        .map(|i| (g.input(&policy_io::past_key(i), &cache_dims), g.input(&policy_io::past_value(i), &cache_dims)))
        .collect();
    let z = g.input(policy_io::Z, &[BATCH, Dim::Fixed(policy.shape().latent_dim)]);
    let z = match policy.z_norm() {
        Some(norm) => g.rms_norm(&z, norm)?,
        None => z,
    };

    // The mask: blocked where the key is in the future of the query (key index > past + i) or is padding.
    let shape_of = |g: &mut GraphBuilder, x: &str| {
        let shape = g.node("Shape", &[x], vec![attr_int("start", 1), attr_int("end", 2)]);
        g.node("Squeeze", &[&shape], vec![])
    };
    let total = shape_of(&mut g, &mask);
    let seq = shape_of(&mut g, &ids);
    let past_len = g.node("Sub", &[&total, &seq], vec![]);
    let zero = g.constant_i64("zero", &[0]);
    let zero = g.node("Squeeze", &[&zero], vec![]);
    let one = g.constant_i64("one", &[1]);
    let one = g.node("Squeeze", &[&one], vec![]);
    let keys = g.node("Range", &[&zero, &total, &one], vec![]);
    let queries = g.node("Range", &[&past_len, &total, &one], vec![]);
    let axis0 = g.constant_i64("axes", &[0]);
    let axis1 = g.constant_i64("axes", &[1]);
    let keys = g.node("Unsqueeze", &[&keys, &axis0], vec![]);
    let queries = g.node("Unsqueeze", &[&queries, &axis1], vec![]);
    let future = g.node("Greater", &[&keys, &queries], vec![]);
    let zero_mask = g.constant_i64("zero", &[0]);
    let padding = g.node("Equal", &[&mask, &zero_mask], vec![]);
    let axes12 = g.constant_i64("axes", &[1, 2]);
    let padding = g.node("Unsqueeze", &[&padding, &axes12], vec![]);
    let blocked = g.node("Or", &[&future, &padding], vec![]);
    let masked = g.constant_f32("masked_logit", &[], &[MASKED_LOGIT as f32]);
    let open = g.constant_f32("zero", &[], &[0.0]);
    let attention_mask = g.node("Where", &[&blocked, &masked, &open], vec![]);

    // Rotary angles of each token's own position: [B, T, 1, half, 1].
    let (cos, sin) = cfg.rope_tables(LLAMA_MAX_TOKENS, &Device::Cpu)?;
    let axes24 = g.constant_i64("axes", &[2, 4]);
    let angles = |g: &mut GraphBuilder, name: &str, table: &candle_core::Tensor| -> Result<String> {
        let table = g.tensor(name, &table.reshape((LLAMA_MAX_TOKENS, half))?)?;
        let picked = g.node("Gather", &[&table, &positions], vec![attr_int("axis", 0)]);
        Ok(g.node("Unsqueeze", &[&picked, &axes24], vec![]))
    };
    let cos = angles(&mut g, "rope_cos", &cos)?;
    let sin = angles(&mut g, "rope_sin", &sin)?;
    let shared = Shared { mask: attention_mask, cos, sin };

    let table = g.tensor("embedding_table", model.token_embedding().embeddings())?;
    let mut x = g.node("Gather", &[&table, &ids], vec![attr_int("axis", 0)]);
    let films = policy.films();
    for (layer, block) in model.blocks().iter().enumerate() {
        let (past_key, past_value) = &past[layer];
        let (y, present_key, present_value) = policy_block(&mut g, &x, &shared, block, cfg, past_key, past_value)?;
        g.output(&present_key, &policy_io::present_key(layer), &[BATCH, Dim::Fixed(kv), TOTAL, Dim::Fixed(d)]);
        g.output(&present_value, &policy_io::present_value(layer), &[BATCH, Dim::Fixed(kv), TOTAL, Dim::Fixed(d)]);
        x = y;
        for (_, film) in films.iter().filter(|(l, _)| *l == layer) {
            let (gamma, beta) = film.maps();
            let gamma = g.linear(&z, gamma)?;
            let gamma = g.node("Unsqueeze", &[&gamma, &axis1], vec![]);
            let beta = g.linear(&z, beta)?;
            let beta = g.node("Unsqueeze", &[&beta, &axis1], vec![]);
            let scaled = g.node("Mul", &[&x, &gamma], vec![]);
            x = g.node("Add", &[&scaled, &beta], vec![]);
        }
    }
    let x = g.rms_norm(&x, model.output_norm())?;
    let (head, tied) = model.lm_head();
    let logits = if tied {
        // [B·T, hidden] × tableᵀ, then back to [B, T, vocab].
        let flat_shape = g.constant_i64("flat_shape", &[-1, cfg.hidden_size as i64]);
        let flat = g.node("Reshape", &[&x, &flat_shape], vec![]);
        let flat = g.node("Gemm", &[&flat, &table], vec![attr_int("transB", 1)]);
        let ids_shape = g.node("Shape", &[&ids], vec![]);
        let vocab = g.constant_i64("vocab", &[cfg.vocab_size as i64]);
        let shape = g.node("Concat", &[&ids_shape, &vocab], vec![attr_int("axis", 0)]);
        g.node("Reshape", &[&flat, &shape], vec![])
    } else {
        g.linear(&x, head)?
    };
    g.output(&logits, policy_io::LOGITS, &[BATCH, SEQ, Dim::Fixed(cfg.vocab_size)]);
    Ok(g.finish_model(
        "Steer NP-DPO policy: Llama-family decoder with FiLM(z) and merged LoRA, with a key/value cache",
    )?)
}

/// One decoder block with its cache; returns the block output and the present key and value `[B, kv, S, d]`.
fn policy_block(
    g: &mut GraphBuilder,
    x: &str,
    shared: &Shared,
    block: &LlamaBlock,
    cfg: &LlamaConfig,
    past_key: &str,
    past_value: &str,
) -> Result<(String, String, String)> {
    let (attn_norm, attn, ffn_norm, mlp) = block.parts();
    let normed = g.rms_norm(x, attn_norm)?;
    let [_, k, _, o] = attn.projections();
    let (q, v) = attn.merged_q_v()?;
    let (heads, kv_heads, head_dim) = (cfg.num_heads as i64, cfg.num_kv_heads as i64, cfg.head_dim() as i64);
    let group = heads / kv_heads;
    let to_heads_first = attr_ints("perm", &[0, 2, 1, 3]);

    let q = g.linear(&normed, &q)?;
    let q = rotate(g, &q, heads, head_dim, shared);
    let q = g.node("Transpose", &[&q], vec![to_heads_first.clone()]);
    let k = g.linear(&normed, k)?;
    let k = rotate(g, &k, kv_heads, head_dim, shared);
    let k = g.node("Transpose", &[&k], vec![to_heads_first.clone()]);
    let present_key = g.node("Concat", &[past_key, &k], vec![attr_int("axis", 2)]);
    let v = g.linear(&normed, &v)?;
    let kv_shape = g.constant_i64("kv_heads_shape", &[0, 0, kv_heads, head_dim]);
    let v = g.node("Reshape", &[&v, &kv_shape], vec![]);
    let v = g.node("Transpose", &[&v], vec![to_heads_first.clone()]);
    let present_value = g.node("Concat", &[past_value, &v], vec![attr_int("axis", 2)]);

    // Each key/value head serves `group` query heads (head h reads kv head h / group), as candle repeats them.
    let repeat = |g: &mut GraphBuilder, y: &str| -> String {
        if group == 1 {
            return y.to_string();
        }
        let axis2 = g.constant_i64("axes", &[2]);
        let y = g.node("Unsqueeze", &[y, &axis2], vec![]);
        let copies = g.constant_i64("group_shape", &[1, 1, group, 1, 1]);
        let y = g.node("Expand", &[&y, &copies], vec![]);
        let shape = g.constant_i64("heads_shape", &[0, heads, -1, head_dim]);
        g.node("Reshape", &[&y, &shape], vec![])
    };
    let keys = repeat(g, &present_key);
    let values = repeat(g, &present_value);
    let keys_t = g.node("Transpose", &[&keys], vec![attr_ints("perm", &[0, 1, 3, 2])]);
    let x = attend(g, x, &q, &keys_t, &values, shared, o, cfg)?;
    Ok((feed_forward(g, &x, ffn_norm, mlp)?, present_key, present_value))
}

/// Writes the policy bundle in `dir`: the files of the NP-BTL text bundle in `reward_bundle` (hard-linked when
/// possible), `policy.onnx` (with its weights in `policy.onnx.data` when the model encodes to more than
/// `inline_limit` bytes, normally [`INLINE_MODEL_LIMIT`](crate::onnx::INLINE_MODEL_LIMIT); see [`write_model`]),
/// the policy's tokenizer, and the manifest with its `policy` entry.
pub fn write_policy_bundle(
    policy: &SteerPolicy,
    base: &Base,
    defaults: GenerationParams,
    reward_bundle: &Path,
    dir: &Path,
    inline_limit: usize,
) -> Result<Manifest> {
    let mut manifest = Manifest::load_and_verify(reward_bundle)?;
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(Error::io(dir))?;
    }
    fs::create_dir_all(dir).map_err(Error::io(dir))?;
    for entry in &manifest.files {
        let (from, to) = (reward_bundle.join(&entry.path), dir.join(&entry.path));
        if fs::hard_link(&from, &to).is_err() {
            fs::copy(&from, &to).map_err(Error::io(&from))?;
        }
    }
    let mut files = write_model(policy_model(policy)?, &dir.join(POLICY_FILE), inline_limit)?;
    save_tokenizer_json(&base.tokenizer, dir.join(POLICY_TOKENIZER_FILE))?;
    files.push(POLICY_TOKENIZER_FILE.into());
    for file in files {
        let sha256 = sha256_file(&dir.join(&file))?;
        manifest.files.push(FileEntry { path: file, sha256 });
    }
    let cfg = policy.model().config();
    manifest.policy = Some(PolicySpec {
        graph: POLICY_FILE.into(),
        tokenizer: POLICY_TOKENIZER_FILE.into(),
        base_model: base.id.clone(),
        num_layers: cfg.num_layers,
        num_kv_heads: cfg.num_kv_heads,
        head_dim: cfg.head_dim(),
        vocab_size: cfg.vocab_size,
        // The graph's rotary tables stop at LLAMA_MAX_TOKENS; the model itself may have been trained shorter.
        max_positions: cfg.context_length.min(LLAMA_MAX_TOKENS),
        chat_template: base.chat_template.clone(),
        eos_token_ids: vec![base.eos],
        pad_token_id: base.eos,
        film_layers: policy.films().iter().map(|(layer, _)| *layer).collect(),
        defaults,
    });
    manifest.check_consistency()?;
    save_manifest(&manifest, dir)?;
    Ok(manifest)
}
