//! Hugging Face model directories (issue #5, `steer train-policy --base-dir`): the tiny Qwen2 and Llama 3 decoders in
//! `tests/fixtures/hf/`, written by transformers (`scripts/hf_reference.py`), loaded by `LlamaModel::from_hf_dir`
//! must give transformers' own logits, and so must their export through ONNX Runtime.
//!
//! `cargo test --release -p steer-trainer --test hf -- --nocapture`

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Deserialize;
use steer_trainer::text::llama::LlamaModel;

/// `reference.json`: the batch and transformers' logits at each row's real tokens.
#[derive(Deserialize)]
struct Reference {
    input_ids: Vec<Vec<u32>>,
    attention_mask: Vec<Vec<u32>>,
    logits: Vec<Vec<Vec<f32>>>,
    transformers: String,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf").join(name)
}

fn reference(dir: &Path) -> Reference {
    serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap()
}

/// The fixture `name` loaded after `edit` has changed its `config.json` (in a temporary copy).
fn load_with_config(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> LlamaModel {
    let dir = fixture(name);
    let copy = tempfile::tempdir().unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(copy.path().join("config.json"), config.to_string()).unwrap();
    std::fs::copy(dir.join("model.safetensors"), copy.path().join("model.safetensors")).unwrap();
    LlamaModel::from_hf_dir(copy.path(), &Device::Cpu).unwrap()
}

/// The largest |candle − transformers| over every real token's logits.
fn max_gap(model: &LlamaModel, reference: &Reference) -> f32 {
    let ids = Tensor::new(reference.input_ids.clone(), &Device::Cpu).unwrap();
    let mask = Tensor::new(reference.attention_mask.clone(), &Device::Cpu).unwrap();
    let logits = model.forward(&ids, &mask).unwrap().logits.to_vec3::<f32>().unwrap();
    let mut gap = 0.0f32;
    for (row, expected) in logits.iter().zip(&reference.logits) {
        for (got, want) in row.iter().zip(expected) {
            gap = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(gap, f32::max);
        }
    }
    gap
}

#[test]
fn qwen2_and_llama3_directories_give_the_logits_of_transformers_issue_5() {
    // The context length (max_position_embeddings) bounds the policy bundle's prompts; transformers' defaults.
    for (name, context_length) in [("qwen2", 32768), ("llama3", 2048)] {
        let dir = fixture(name);
        let reference = reference(&dir);
        let model = LlamaModel::from_hf_dir(&dir, &Device::Cpu).unwrap();
        assert_eq!(model.config().context_length, context_length);
        let gap = max_gap(&model, &reference);
        println!("{name}: max |candle - transformers {}| logits = {gap:.2e}", reference.transformers);
        assert!(gap <= 1e-4, "{name}: {gap}");
    }
    // The checks have teeth: without Llama 3's rotary scaling the same weights give other logits.
    let plain = load_with_config("llama3", |config| {
        config["rope_parameters"] = serde_json::json!({"rope_type": "default", "rope_theta": 10000.0});
    });
    let unscaled = max_gap(&plain, &reference(&fixture("llama3")));
    println!("llama3 without its rope scaling: max gap {unscaled:.2e}");
    assert!(unscaled > 1e-2, "{unscaled}");
}

/// Models on the Hub still carry transformers 4.x's layout: `rope_theta` and `rope_scaling` at the top level, the
/// older `type` key. The fixtures rewritten that way load to the same logits.
#[test]
fn transformers_4_configs_load_the_same_issue_5() {
    for name in ["qwen2", "llama3"] {
        let model = load_with_config(name, |config| {
            let object = config.as_object_mut().unwrap();
            let mut rope = object.remove("rope_parameters").unwrap();
            object.insert("rope_theta".into(), rope.as_object_mut().unwrap().remove("rope_theta").unwrap());
            if rope["rope_type"] != "default" {
                let kind = rope.as_object_mut().unwrap().remove("rope_type").unwrap();
                rope["type"] = kind;
                object.insert("rope_scaling".into(), rope);
            }
            object.remove("layer_types");
        });
        let gap = max_gap(&model, &reference(&fixture(name)));
        assert!(gap <= 1e-4, "{name} (4.x config): {gap}");
    }
}
