//! Exports a trained model as a bundle: ONNX graphs plus a manifest (the runtime's format).

use std::fs;
use std::path::Path;

use steer_onnx::reward::{self, RewardWeights};
use steer_runtime::manifest::{Dims, FORMAT_VERSION, FileEntry, Graphs, Manifest};
use steer_runtime::producer::{save_manifest, sha256_file};

use crate::error::{Error, Result};
use crate::model::{DPL_MIN_STD, ModelConfig, NpBtl, RewardModel};
use crate::onnx::{self, OPSET};
use crate::text::embedder_files::EmbedderFiles;

/// File name of the context encoder graph.
pub const ENCODER_FILE: &str = "encoder.onnx";
/// File name of the reward graph.
pub const REWARD_FILE: &str = "reward.onnx";

/// The context encoder's weights, for the writer.
fn encoder_weights(model: &NpBtl) -> Result<reward::ContextEncoder> {
    let enc = &model.encoder;
    Ok(reward::ContextEncoder {
        pair: onnx::dense_stack(&enc.pair)?,
        attention: onnx::attention(&enc.attention)?,
        out: onnx::dense_stack(&enc.out)?,
    })
}

/// `model`'s weights, for the writer.
pub fn reward_weights(model: &RewardModel) -> Result<RewardWeights> {
    Ok(match model {
        RewardModel::NpBtl(m) => RewardWeights::NpBtl(Box::new(reward::NpBtl {
            encoder: encoder_weights(m)?,
            target: onnx::dense_stack(&m.target)?,
            decoder: onnx::dense_stack(&m.decoder)?,
        })),
        RewardModel::Btl(m) => RewardWeights::Btl { reward: onnx::dense_stack(&m.reward)? },
        RewardModel::Dpl(m) => RewardWeights::Dpl {
            trunk: onnx::dense_stack(&m.trunk)?,
            mean: onnx::dense(&m.mean)?,
            std: onnx::dense(&m.std)?,
            min_std: DPL_MIN_STD,
        },
    })
}

/// `encoder.onnx`: `context` `[B, K, 2d]`, `mask` `[B, K]` → `z` `[B, H]`.
pub fn encoder_graph(model: &NpBtl, cfg: &ModelConfig) -> Result<Vec<u8>> {
    Ok(reward::encoder_graph(&encoder_weights(model)?, cfg.embedding_dim, cfg.hidden)?)
}

/// `reward.onnx` for any model kind.
pub fn reward_graph(model: &RewardModel, cfg: &ModelConfig) -> Result<Vec<u8>> {
    Ok(reward::reward_graph(&reward_weights(model)?, cfg.embedding_dim, cfg.hidden)?)
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
    save_manifest(&manifest, dir)?;
    Ok(manifest)
}
