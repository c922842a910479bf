//! Exports a trained model as a bundle: ONNX graphs plus a manifest (the runtime's format).

use std::fs;
use std::path::Path;

use steer_runtime::manifest::{Dims, FORMAT_VERSION, FileEntry, Graphs, Manifest, io, sha256_file};

use crate::error::{Error, Result};
use crate::model::{DPL_MIN_STD, ModelConfig, NpBtl, RewardModel};
use crate::onnx::{Dim, GraphBuilder, OPSET};
use crate::text::embedder_files::EmbedderFiles;

/// File name of the context encoder graph.
pub const ENCODER_FILE: &str = "encoder.onnx";
/// File name of the reward graph.
pub const REWARD_FILE: &str = "reward.onnx";

const BATCH: Dim = Dim::Dynamic("batch");
const K: Dim = Dim::Dynamic("k");
const N: Dim = Dim::Dynamic("n");

/// `encoder.onnx`: `context` `[B, K, 2d]`, `mask` `[B, K]` → `z` `[B, H]`.
pub fn encoder_graph(model: &NpBtl, cfg: &ModelConfig) -> Result<Vec<u8>> {
    let mut g = GraphBuilder::new("steer_np_encoder");
    let context = g.input(io::CONTEXT, &[BATCH, K, Dim::Fixed(2 * cfg.embedding_dim)]);
    let mask = g.input(io::MASK, &[BATCH, K]);
    let enc = &model.encoder;
    let pairs = g.mlp(&context, &enc.pair)?;
    let attended = g.masked_self_attention(&pairs, &mask, &enc.attention)?;
    let summed = g.masked_sum(&attended, &mask);
    let z = g.mlp(&summed, &enc.out)?;
    g.output(&z, io::Z, &[BATCH, Dim::Fixed(cfg.hidden)]);
    g.finish("Steer NP-BTL context encoder: a user's context pairs -> latent preference z")
}

/// `reward.onnx` for any model kind.
pub fn reward_graph(model: &RewardModel, cfg: &ModelConfig) -> Result<Vec<u8>> {
    let mut g = GraphBuilder::new("steer_reward");
    let options = g.input(io::OPTIONS, &[BATCH, N, Dim::Fixed(cfg.embedding_dim)]);
    let out_dims = [BATCH, N];
    match model {
        RewardModel::NpBtl(m) => {
            let z = g.input(io::Z, &[BATCH, Dim::Fixed(cfg.hidden)]);
            let targets = g.mlp(&options, &m.target)?;
            // decoder([t ‖ z]) computed as in candle: t·W_tᵀ + (z·W_zᵀ + b), then the remaining layers.
            let (w_target, w_z, bias) = m.decoder_first_layer()?;
            let w_target = g.tensor("decoder_w_target", &w_target.t()?.contiguous()?)?;
            let w_z = g.tensor("decoder_w_z", &w_z.t()?.contiguous()?)?;
            let from_targets = g.node("MatMul", &[&targets, &w_target], vec![]);
            let mut from_z = g.node("MatMul", &[&z, &w_z], vec![]);
            if let Some(bias) = bias {
                let bias = g.tensor("decoder_bias", &bias)?;
                from_z = g.node("Add", &[&from_z, &bias], vec![]);
            }
            let axis = g.constant_i64("axes", &[1]);
            let from_z = g.node("Unsqueeze", &[&from_z, &axis], vec![]);
            let mut hidden = g.node("Add", &[&from_targets, &from_z], vec![]);
            for layer in &m.decoder.layers()[1..] {
                hidden = g.node("Relu", &[&hidden], vec![]);
                hidden = g.linear(&hidden, layer)?;
            }
            let reward = g.squeeze_last(&hidden);
            g.output(&reward, io::REWARD, &out_dims);
        }
        RewardModel::Btl(m) => {
            let r = g.mlp(&options, &m.reward)?;
            let reward = g.squeeze_last(&r);
            g.output(&reward, io::REWARD, &out_dims);
        }
        RewardModel::Dpl(m) => {
            let trunk = g.mlp(&options, &m.trunk)?;
            let trunk = g.node("Relu", &[&trunk], vec![]);
            let mean = g.linear(&trunk, &m.mean)?;
            let mean = g.squeeze_last(&mean);
            let raw = g.linear(&trunk, &m.std)?;
            let raw = g.squeeze_last(&raw);
            let std = g.node("Softplus", &[&raw], vec![]);
            let floor = g.constant_f32("min_std", &[], &[DPL_MIN_STD as f32]);
            let std = g.node("Add", &[&std, &floor], vec![]);
            g.output(&mean, io::REWARD, &out_dims);
            g.output(&std, io::REWARD_STD, &out_dims);
        }
    }
    g.finish("Steer reward model: option embeddings (and z) -> rewards")
}

/// Writes `model` as a bundle into `dir`: the graphs, then `manifest.json` with every file's hash.
/// The manifest is written last, so a bundle interrupted half-way never validates.
pub fn write_bundle(
    model: &RewardModel,
    cfg: &ModelConfig,
    dir: &Path,
    training: serde_json::Value,
    metrics: serde_json::Value,
) -> Result<Manifest> {
    write_bundle_with_text(model, cfg, dir, training, metrics, None)
}

/// [`write_bundle`] for a text model: the bundle also carries the embedder graph and tokenizer of `text`, so it
/// takes `(prompt, response)` texts. Their files are hard-linked from `text.dir` where the file system allows
/// (several bundles share one embedder), and copied otherwise.
pub fn write_bundle_with_text(
    model: &RewardModel,
    cfg: &ModelConfig,
    dir: &Path,
    training: serde_json::Value,
    metrics: serde_json::Value,
    text: Option<&EmbedderFiles>,
) -> Result<Manifest> {
    fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let manifest_path = dir.join(steer_runtime::manifest::MANIFEST_FILE);
    if manifest_path.exists() {
        fs::remove_file(&manifest_path).map_err(Error::io(&manifest_path))?;
    }
    let mut graphs = vec![(REWARD_FILE, reward_graph(model, cfg)?)];
    if let RewardModel::NpBtl(np) = model {
        graphs.push((ENCODER_FILE, encoder_graph(np, cfg)?));
    }
    let mut files = Vec::new();
    for (name, bytes) in &graphs {
        let path = dir.join(name);
        fs::write(&path, bytes).map_err(Error::io(&path))?;
        files.push(FileEntry { path: name.to_string(), sha256: sha256_file(&path)? });
    }
    if let Some(text) = text {
        if text.dim != cfg.embedding_dim {
            return Err(Error::InvalidConfig {
                field: "embedding_dim",
                expected: format!("the embedder's size {}", text.dim),
                got: cfg.embedding_dim.to_string(),
            });
        }
        for name in [&text.spec.embedder, &text.spec.tokenizer] {
            let (from, to) = (text.dir.join(name), dir.join(name));
            if to.exists() {
                fs::remove_file(&to).map_err(Error::io(&to))?;
            }
            if fs::hard_link(&from, &to).is_err() {
                fs::copy(&from, &to).map_err(Error::io(&from))?;
            }
            files.push(FileEntry { path: name.clone(), sha256: sha256_file(&to)? });
        }
    }
    let conditioned = cfg.kind.is_conditioned();
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        model_kind: cfg.kind,
        dims: Dims { embedding_dim: cfg.embedding_dim, latent_dim: if conditioned { cfg.hidden } else { 0 } },
        opset: OPSET,
        graphs: Graphs { encoder: conditioned.then(|| ENCODER_FILE.to_string()), reward: REWARD_FILE.to_string() },
        files,
        text: text.map(|t| t.spec.clone()),
        policy: None,
        producer: format!("steer-trainer {}", env!("CARGO_PKG_VERSION")),
        training,
        metrics,
    };
    manifest.check_consistency()?;
    manifest.save(dir)?;
    Ok(manifest)
}
