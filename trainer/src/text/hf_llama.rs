//! Loads a Llama- or Qwen2-architecture decoder from a local Hugging Face model directory (`config.json`,
//! `*.safetensors`, `tokenizer.json`), for users who bring a bigger model than SmolLM2-135M. Nothing is downloaded.
//!
//! Hugging Face stores the weights under `model.layers.N.self_attn.q_proj.weight` and friends and rotates the pairs
//! `(i, i + d/2)` of each head; [`LlamaModel`] uses llama.cpp's names and the interleaved pairs `(2i, 2i + 1)`. So
//! the query and key rows of every head (and their biases) are reordered on load (row `2i` ← `i`, row `2i + 1` ←
//! `i + d/2`), which leaves every attention score unchanged, and the names are mapped to llama.cpp's.
//!
//! Qwen2 is Llama with biases on the query, key and value projections. Llama 3.1's `rope_scaling` (`llama3`) and
//! linear scaling are supported; a config that asks for anything else this decoder does not compute (another
//! activation, sliding-window attention, MLP biases, another rotary scaling) is refused, naming the field.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::text::llama::{LlamaConfig, LlamaModel, RopeScaling};

/// The fields of a Hugging Face `config.json` a Llama or Qwen2 decoder needs, and those it must check.
#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    intermediate_size: usize,
    rope_theta: Option<f64>,
    #[serde(default = "default_rms_norm_eps")]
    rms_norm_eps: f64,
    max_position_embeddings: Option<usize>,
    head_dim: Option<usize>,
    hidden_act: Option<String>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    use_sliding_window: Option<bool>,
    tie_word_embeddings: Option<bool>,
    /// transformers 4.x: `rope_theta` beside `rope_scaling`; 5.x writes both into `rope_parameters`.
    rope_scaling: Option<serde_json::Value>,
    rope_parameters: Option<serde_json::Value>,
    layer_types: Option<Vec<String>>,
}

fn default_rms_norm_eps() -> f64 {
    1e-6
}

fn hf_error(path: &Path, message: String) -> Error {
    Error::ModelFile { path: path.to_path_buf(), message }
}

/// A Hugging Face directory's decoder shape, and whether its head is tied to the embedding (`None`: the config does
/// not say, so the head is `lm_head.weight` when the files have it).
struct HfShape {
    cfg: LlamaConfig,
    tied: Option<bool>,
}

/// Reads `dir/config.json`; `model_type` must be `llama` or `qwen2`.
fn read_hf_shape(dir: &Path) -> Result<HfShape> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    let hf: HfConfig = serde_json::from_str(&text).map_err(|e| hf_error(&path, format!("config.json: {e}")))?;
    let refuse = |field: &str, message: String| Err(hf_error(&path, format!("`{field}` {message}")));
    let attention_bias = match hf.model_type.as_str() {
        "llama" => hf.attention_bias.unwrap_or(false),
        "qwen2" => true,
        other => return refuse("model_type", format!("is {other:?}; \"llama\" and \"qwen2\" are supported")),
    };
    if let Some(act) = hf.hidden_act.as_deref().filter(|a| *a != "silu") {
        return refuse("hidden_act", format!("is {act:?}; only \"silu\" (SwiGLU) is supported"));
    }
    if hf.mlp_bias == Some(true) {
        return refuse("mlp_bias", "is true; feed-forward biases are not supported".into());
    }
    let sliding = hf.layer_types.iter().flatten().any(|t| t != "full_attention");
    if hf.use_sliding_window == Some(true) || sliding {
        return refuse(
            "use_sliding_window",
            "or `layer_types` asks for sliding windows; only full attention is supported".into(),
        );
    }
    if let Some(head_dim) = hf.head_dim.filter(|d| hf.num_attention_heads * d != hf.hidden_size) {
        let expected = hf.hidden_size / hf.num_attention_heads.max(1);
        return refuse(
            "head_dim",
            format!("is {head_dim}; only hidden_size / num_attention_heads = {expected} is supported"),
        );
    }
    let (rope_field, rope) = match (&hf.rope_parameters, &hf.rope_scaling) {
        (Some(parameters), _) => ("rope_parameters", Some(parameters)),
        (None, scaling) => ("rope_scaling", scaling.as_ref().filter(|v| !v.is_null())),
    };
    let rope_scaling =
        rope.map(rope_scaling).transpose().map_err(|m| hf_error(&path, format!("`{rope_field}` {m}")))?.flatten();
    let rope_theta =
        rope.and_then(|r| r.get("rope_theta")).and_then(|t| t.as_f64()).or(hf.rope_theta).unwrap_or(10_000.0);
    let cfg = LlamaConfig {
        vocab_size: hf.vocab_size,
        hidden_size: hf.hidden_size,
        num_layers: hf.num_hidden_layers,
        num_heads: hf.num_attention_heads,
        num_kv_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
        intermediate_size: hf.intermediate_size,
        rope_theta,
        rms_norm_eps: hf.rms_norm_eps,
        context_length: hf.max_position_embeddings.unwrap_or(LlamaConfig::default().context_length),
        attention_bias,
        rope_scaling,
    };
    cfg.validate()?;
    Ok(HfShape { cfg, tied: hf.tie_word_embeddings })
}

/// Parses a `rope_scaling` (or `rope_parameters`) object: `rope_type` (or the older `type`) `default` (no scaling),
/// `linear` or `llama3`, with its factors.
fn rope_scaling(value: &serde_json::Value) -> std::result::Result<Option<RopeScaling>, String> {
    let kind = value.get("rope_type").or_else(|| value.get("type")).and_then(|t| t.as_str()).unwrap_or("default");
    let number = |key: &str| {
        value.get(key).and_then(|v| v.as_f64()).ok_or_else(|| format!("has no number `{key}` for rope_type {kind:?}"))
    };
    match kind {
        "default" => Ok(None),
        "linear" => Ok(Some(RopeScaling::Linear { factor: number("factor")? })),
        "llama3" => Ok(Some(RopeScaling::Llama3 {
            factor: number("factor")?,
            low_freq_factor: number("low_freq_factor")?,
            high_freq_factor: number("high_freq_factor")?,
            original_max_position_embeddings: number("original_max_position_embeddings")?,
        })),
        other => Err(format!("has rope_type {other:?}; \"default\", \"linear\" and \"llama3\" are supported")),
    }
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
        "self_attn.q_proj.bias" => "attn_q.bias",
        "self_attn.k_proj.bias" => "attn_k.bias",
        "self_attn.v_proj.bias" => "attn_v.bias",
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

/// Reorders the rows of a `[heads · d, in]` query or key weight, or a `[heads · d]` bias, from Hugging Face's half
/// rotation to interleaved pairs (`to_interleaved`), or back.
pub fn permute_rotary_rows(weight: &Tensor, heads: usize, to_interleaved: bool) -> Result<Tensor> {
    let shape = weight.shape().clone();
    let rows = shape.dims().first().copied().unwrap_or(0);
    let cols = weight.elem_count() / rows.max(1);
    let d = rows / heads.max(1);
    // Interleaved [heads, d/2, 2] ↔ halves [heads, 2, d/2].
    let out = if to_interleaved {
        weight.reshape((heads, 2, d / 2, cols))?.transpose(1, 2)?
    } else {
        weight.reshape((heads, d / 2, 2, cols))?.transpose(1, 2)?
    };
    Ok(out.contiguous()?.reshape(shape)?)
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
    /// Loads a Llama or Qwen2 decoder from a Hugging Face directory (see the [module docs](self)), as f32 on
    /// `device`. The head is tied to the embedding when `tie_word_embeddings` says so, else `lm_head.weight` when
    /// the files have it, else tied.
    pub fn from_hf_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let HfShape { cfg, tied } = read_hf_shape(dir)?;
        let mut tensors = HashMap::new();
        for file in safetensors_files(dir)? {
            let loaded = candle_core::safetensors::load(&file, device)
                .map_err(|e| hf_error(&file, format!("not a readable safetensors file: {e}")))?;
            for (name, tensor) in loaded {
                let Some(gguf) = gguf_name(&name) else { continue };
                let tensor = tensor.to_dtype(DType::F32)?;
                let tensor = if gguf.contains("attn_q.") {
                    permute_rotary_rows(&tensor, cfg.num_heads, true)?
                } else if gguf.contains("attn_k.") {
                    permute_rotary_rows(&tensor, cfg.num_kv_heads, true)?
                } else {
                    tensor
                };
                tensors.insert(gguf, tensor);
            }
        }
        match tied {
            Some(true) => {
                tensors.remove("output.weight");
            }
            Some(false) if !tensors.contains_key("output.weight") => {
                let message = "tie_word_embeddings is false but no safetensors file has lm_head.weight".into();
                return Err(hf_error(&dir.join("config.json"), message));
            }
            _ => {}
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

        // What this decoder does not compute is refused, naming the config field.
        let base = config.as_object().unwrap().clone();
        for (field, value, named) in [
            ("model_type", serde_json::json!("gpt2"), "model_type"),
            ("hidden_act", serde_json::json!("gelu"), "hidden_act"),
            ("use_sliding_window", serde_json::json!(true), "use_sliding_window"),
            ("layer_types", serde_json::json!(["full_attention", "sliding_attention"]), "use_sliding_window"),
            ("mlp_bias", serde_json::json!(true), "mlp_bias"),
            ("head_dim", serde_json::json!(16), "head_dim"),
            ("rope_scaling", serde_json::json!({"rope_type": "yarn", "factor": 4.0}), "rope_scaling"),
            ("rope_parameters", serde_json::json!({"rope_type": "llama3", "factor": 8.0}), "rope_parameters"),
            ("tie_word_embeddings", serde_json::json!(false), "lm_head.weight"),
        ] {
            let mut bad = base.clone();
            bad.insert(field.into(), value);
            std::fs::write(dir.path().join("config.json"), serde_json::Value::Object(bad).to_string()).unwrap();
            let err = LlamaModel::from_hf_dir(dir.path(), &Device::Cpu).unwrap_err();
            assert_eq!(err.code(), 1020, "{field}: {err}");
            assert!(err.to_string().contains(named), "{field}: {err}");
        }
    }
}
