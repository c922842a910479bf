//! Loads a Llama-architecture decoder from a local Hugging Face model directory (`config.json`, `*.safetensors`,
//! `tokenizer.json`), for users who bring a bigger model than SmolLM2-135M. Nothing is downloaded.
//!
//! Hugging Face stores the weights under `model.layers.N.self_attn.q_proj.weight` and friends and rotates the pairs
//! `(i, i + d/2)` of each head; [`LlamaModel`] uses llama.cpp's names and the interleaved pairs `(2i, 2i + 1)`. So
//! the query and key rows of every head are reordered on load (row `2i` ← `i`, row `2i + 1` ← `i + d/2`), which
//! leaves every attention score unchanged, and the names are mapped to llama.cpp's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::text::llama::{LlamaConfig, LlamaModel};

/// The fields of a Hugging Face `config.json` a Llama decoder needs.
#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    intermediate_size: usize,
    #[serde(default = "default_rope_theta")]
    rope_theta: f64,
    #[serde(default = "default_rms_norm_eps")]
    rms_norm_eps: f64,
}

fn default_rope_theta() -> f64 {
    10_000.0
}

fn default_rms_norm_eps() -> f64 {
    1e-6
}

fn hf_error(path: &Path, message: String) -> Error {
    Error::Gguf { path: path.to_path_buf(), message }
}

/// Reads `dir/config.json` as a [`LlamaConfig`]; only `model_type` `llama` is accepted.
pub fn hf_llama_config(dir: &Path) -> Result<LlamaConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    let hf: HfConfig = serde_json::from_str(&text).map_err(|e| hf_error(&path, format!("config.json: {e}")))?;
    if hf.model_type != "llama" {
        return Err(hf_error(&path, format!("model_type is {:?}; only \"llama\" is supported", hf.model_type)));
    }
    let cfg = LlamaConfig {
        vocab_size: hf.vocab_size,
        hidden_size: hf.hidden_size,
        num_layers: hf.num_hidden_layers,
        num_heads: hf.num_attention_heads,
        num_kv_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
        intermediate_size: hf.intermediate_size,
        rope_theta: hf.rope_theta,
        rms_norm_eps: hf.rms_norm_eps,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// The llama.cpp name of a Hugging Face tensor name, or `None` for tensors the decoder does not use.
fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let part = match part {
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        _ => return None,
    };
    Some(format!("blk.{layer}.{part}"))
}

/// Reorders the rows of a `[heads · d, in]` query or key weight from Hugging Face's half rotation to interleaved
/// pairs (`to_interleaved`), or back.
pub fn permute_rotary_rows(weight: &Tensor, heads: usize, to_interleaved: bool) -> Result<Tensor> {
    let (rows, cols) = weight.dims2()?;
    let d = rows / heads.max(1);
    // Interleaved [heads, d/2, 2] ↔ halves [heads, 2, d/2].
    let out = if to_interleaved {
        weight.reshape((heads, 2, d / 2, cols))?.transpose(1, 2)?
    } else {
        weight.reshape((heads, d / 2, 2, cols))?.transpose(1, 2)?
    };
    Ok(out.contiguous()?.reshape((rows, cols))?)
}

/// The safetensors files of `dir`: `model.safetensors`, or every `*.safetensors` shard, sorted.
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(hf_error(dir, "no *.safetensors file in the model directory".into()));
    }
    Ok(files)
}

impl LlamaModel {
    /// Loads a Llama decoder from a Hugging Face directory (see the [module docs](self)), as f32 on `device`. The
    /// head is `lm_head.weight` when the files have it, otherwise tied to the embedding.
    pub fn from_hf_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let cfg = hf_llama_config(dir)?;
        let mut tensors = HashMap::new();
        for file in safetensors_files(dir)? {
            let loaded = candle_core::safetensors::load(&file, device)
                .map_err(|e| hf_error(&file, format!("not a readable safetensors file: {e}")))?;
            for (name, tensor) in loaded {
                let Some(gguf) = gguf_name(&name) else { continue };
                let tensor = tensor.to_dtype(DType::F32)?;
                let tensor = if gguf.ends_with("attn_q.weight") {
                    permute_rotary_rows(&tensor, cfg.num_heads, true)?
                } else if gguf.ends_with("attn_k.weight") {
                    permute_rotary_rows(&tensor, cfg.num_kv_heads, true)?
                } else {
                    tensor
                };
                tensors.insert(gguf, tensor);
            }
        }
        Self::new(&cfg, VarBuilder::from_tensors(tensors, DType::F32, device))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::params::SeededVarMap;

    /// The inverse of [`gguf_name`] for a decoder of `layers` layers.
    fn hf_names(layers: usize) -> Vec<String> {
        let mut names = vec!["model.embed_tokens.weight".to_string(), "model.norm.weight".to_string()];
        for layer in 0..layers {
            for part in [
                "self_attn.q_proj.weight",
                "self_attn.k_proj.weight",
                "self_attn.v_proj.weight",
                "self_attn.o_proj.weight",
                "mlp.gate_proj.weight",
                "mlp.up_proj.weight",
                "mlp.down_proj.weight",
                "input_layernorm.weight",
                "post_attention_layernorm.weight",
            ] {
                names.push(format!("model.layers.{layer}.{part}"));
            }
        }
        names
    }

    #[test]
    fn a_hugging_face_directory_loads_the_same_decoder_issue_5() {
        let cfg = LlamaConfig::tiny();
        let store = Arc::new(SeededVarMap::new(31));
        let model = LlamaModel::new(&cfg, store.builder(&Device::Cpu)).unwrap();
        // Write the model as Hugging Face would: its names, half-rotation rows, a config.json.
        let vars = store.varmap().data().lock().unwrap();
        let mut hf = HashMap::new();
        for name in hf_names(cfg.num_layers) {
            let gguf = gguf_name(&name).unwrap();
            let tensor = vars[&gguf].as_tensor().clone();
            let tensor = if gguf.ends_with("attn_q.weight") {
                permute_rotary_rows(&tensor, cfg.num_heads, false).unwrap()
            } else if gguf.ends_with("attn_k.weight") {
                permute_rotary_rows(&tensor, cfg.num_kv_heads, false).unwrap()
            } else {
                tensor
            };
            hf.insert(name, tensor);
        }
        drop(vars);
        let dir = tempfile::tempdir().unwrap();
        candle_core::safetensors::save(&hf, dir.path().join("model.safetensors")).unwrap();
        let config = serde_json::json!({
            "model_type": "llama", "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
            "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
            "num_key_value_heads": cfg.num_kv_heads, "intermediate_size": cfg.intermediate_size,
            "rope_theta": cfg.rope_theta, "rms_norm_eps": cfg.rms_norm_eps, "tie_word_embeddings": true,
        });
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();

        let loaded = LlamaModel::from_hf_dir(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(loaded.config(), &cfg);
        let ids = Tensor::new(&[[3u32, 17, 9, 41, 5]], &Device::Cpu).unwrap();
        let mask = ids.ones_like().unwrap();
        let logits =
            |m: &LlamaModel| m.forward(&ids, &mask).unwrap().logits.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(logits(&model), logits(&loaded));
        // Without the reordering the rotation pairs would be wrong and the logits would differ.
        let unpermuted = permute_rotary_rows(
            &permute_rotary_rows(&hf["model.layers.0.self_attn.q_proj.weight"], cfg.num_heads, true).unwrap(),
            cfg.num_heads,
            false,
        )
        .unwrap();
        assert_eq!(
            unpermuted.to_vec2::<f32>().unwrap(),
            hf["model.layers.0.self_attn.q_proj.weight"].to_vec2::<f32>().unwrap()
        );

        // A model_type other than llama is refused, naming it.
        let qwen = serde_json::json!({"model_type": "qwen2", "vocab_size": 1, "hidden_size": 4, "num_hidden_layers": 1,
            "num_attention_heads": 1, "intermediate_size": 4});
        std::fs::write(dir.path().join("config.json"), qwen.to_string()).unwrap();
        let err = LlamaModel::from_hf_dir(dir.path(), &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("qwen2"), "{err}");
    }
}
