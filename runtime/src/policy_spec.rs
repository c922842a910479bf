//! The steerable policy's part of the bundle format: the [`PolicySpec`] stored in `manifest.json` under `policy`,
//! the names of the policy graph's inputs and outputs, and the generation parameters (their defaults and ranges).
//!
//! # The policy graph (`policy.onnx`)
//!
//! A decoder-only language model conditioned on a user's profile z (NP-DPO: FiLM layers driven by z, LoRA merged
//! into the weights). Its signature follows onnxruntime-genai's naming, plus `z`:
//!
//! - `input_ids`: int64 `[batch, seq]`, the new tokens of this step;
//! - `attention_mask`: int64 `[batch, past_seq + seq]`, 1 for real tokens and 0 for padding, over the cached and the
//!   new tokens;
//! - `position_ids`: int64 `[batch, seq]`, each new token's position among its row's real tokens (left-padded rows
//!   start at 0 at their first real token);
//! - `past_key_values.{i}.key` and `past_key_values.{i}.value` for each layer `i`: float
//!   `[batch, num_kv_heads, past_seq, head_dim]` (`past_seq` is 0 on the first step);
//! - `z`: float `[batch, latent_dim]`, one profile per row;
//! - outputs `logits`: float `[batch, seq, vocab_size]`, and `present.{i}.key` / `present.{i}.value`: float
//!   `[batch, num_kv_heads, past_seq + seq, head_dim]`, the next step's past.
//!
//! A new token at total index `p` (cached tokens first) attends to the keys at indices `≤ p` whose mask is 1.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Input and output names of `policy.onnx` (onnxruntime-genai's, plus `z`).
pub mod policy_io {
    /// int64 `[batch, seq]`: the new tokens.
    pub const INPUT_IDS: &str = "input_ids";
    /// int64 `[batch, past_seq + seq]`: 1 for real tokens, 0 for padding.
    pub const ATTENTION_MASK: &str = "attention_mask";
    /// int64 `[batch, seq]`: positions of the new tokens.
    pub const POSITION_IDS: &str = "position_ids";
    /// float `[batch, latent_dim]`: the user profile of each row.
    pub const Z: &str = "z";
    /// float `[batch, seq, vocab_size]`: next-token logits.
    pub const LOGITS: &str = "logits";

    /// `past_key_values.{layer}.key`.
    pub fn past_key(layer: usize) -> String {
        format!("past_key_values.{layer}.key")
    }
    /// `past_key_values.{layer}.value`.
    pub fn past_value(layer: usize) -> String {
        format!("past_key_values.{layer}.value")
    }
    /// `present.{layer}.key`.
    pub fn present_key(layer: usize) -> String {
        format!("present.{layer}.key")
    }
    /// `present.{layer}.value`.
    pub fn present_value(layer: usize) -> String {
        format!("present.{layer}.value")
    }
}

/// How text is generated unless the caller says otherwise. Stored in the bundle as the policy's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationParams {
    /// The most tokens generated per row (EOS and stop strings end a row earlier).
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 means greedy (argmax). Must be ≥ 0 and finite.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens before sampling; 0 keeps all.
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p`; in (0, 1].
    pub top_p: f32,
    /// Divides positive logits (multiplies negative ones) of tokens already in the row, prompt included; 1 is off.
    /// Must be > 0.
    pub repetition_penalty: f32,
    /// Seed of the sampler: the same seed, prompt and profile give the same text.
    pub seed: u64,
    /// Generation of a row stops when its text ends with one of these; the stop string is not returned.
    pub stop: Vec<String>,
}

impl Default for GenerationParams {
    fn default() -> Self {
        GenerationParams {
            max_new_tokens: 64,
            temperature: 0.7,
            top_k: 50,
            top_p: 0.9,
            repetition_penalty: 1.1,
            seed: 0,
            stop: Vec::new(),
        }
    }
}

impl GenerationParams {
    /// Greedy decoding of up to `max_new_tokens`: temperature 0, no top-k or top-p cut, no repetition penalty and no
    /// stop strings (the other fields as in [`Default`], which samples).
    pub fn greedy(max_new_tokens: usize) -> GenerationParams {
        GenerationParams {
            max_new_tokens,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            ..Default::default()
        }
    }

    /// Checks every parameter's range; the first one out of range is an [`Error::InvalidGenerationParam`] (308).
    ///
    /// `temperature` ≥ 0 and finite, `top_p` in (0, 1], `repetition_penalty` > 0 and finite, `max_new_tokens` ≥ 1,
    /// and no empty stop string.
    pub fn validate(&self) -> Result<()> {
        let bad = |param: &str, expected: &str, found: String| {
            Err(Error::InvalidGenerationParam { param: param.into(), expected: expected.into(), found })
        };
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad("temperature", "a finite value >= 0 (0 is greedy)", self.temperature.to_string());
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", "a value in (0, 1]", self.top_p.to_string());
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad("repetition_penalty", "a finite value > 0 (1 is off)", self.repetition_penalty.to_string());
        }
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens", "at least 1", "0".into());
        }
        if let Some(index) = self.stop.iter().position(String::is_empty) {
            return bad("stop", "non-empty stop strings", format!("an empty string at index {index}"));
        }
        Ok(())
    }
}

/// The policy's entry in the manifest: its files, its shape, the chat template and the generation defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicySpec {
    /// The policy graph file (`policy.onnx`).
    pub graph: String,
    /// The policy's tokenizer file (`policy_tokenizer.json`, Hugging Face format).
    pub tokenizer: String,
    /// The base model the policy was trained from, e.g. `smollm2-135m-instruct@<sha256 of the weights>`.
    pub base_model: String,
    /// Decoder layers: one `past_key_values`/`present` pair per layer.
    pub num_layers: usize,
    /// Key/value heads of every layer's cache.
    pub num_kv_heads: usize,
    /// The width of one head.
    pub head_dim: usize,
    /// Rows of `logits`' last axis.
    pub vocab_size: usize,
    /// The context window: prompt plus generated tokens may not exceed it.
    pub max_positions: usize,
    /// The chat template applied to a prompt, with `{prompt}` where the user's text goes.
    pub chat_template: String,
    /// Token ids that end a row (e.g. `<|im_end|>`).
    pub eos_token_ids: Vec<u32>,
    /// The id fed for padded positions (their mask is 0, so the value does not matter to the model).
    pub pad_token_id: u32,
    /// The decoder layers followed by a FiLM layer (documentation; the graph does it).
    pub film_layers: Vec<usize>,
    /// Generation defaults.
    pub defaults: GenerationParams,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> GenerationParams {
        GenerationParams { temperature: 1.0, ..GenerationParams::greedy(4) }
    }

    #[test]
    fn validate_names_the_parameter() {
        assert!(params().validate().is_ok());
        assert!(GenerationParams::default().validate().is_ok());
        let cases = [
            (GenerationParams { temperature: -1.0, ..params() }, "temperature"),
            (GenerationParams { temperature: f32::INFINITY, ..params() }, "temperature"),
            (GenerationParams { top_p: 0.0, ..params() }, "top_p"),
            (GenerationParams { top_p: 1.5, ..params() }, "top_p"),
            (GenerationParams { top_p: f32::NAN, ..params() }, "top_p"),
            (GenerationParams { repetition_penalty: 0.0, ..params() }, "repetition_penalty"),
            (GenerationParams { repetition_penalty: f32::NAN, ..params() }, "repetition_penalty"),
            (GenerationParams { max_new_tokens: 0, ..params() }, "max_new_tokens"),
            (GenerationParams { stop: vec!["x".into(), String::new()], ..params() }, "stop"),
        ];
        for (p, name) in cases {
            match p.validate().unwrap_err() {
                err @ Error::InvalidGenerationParam { .. } => {
                    assert_eq!(err.code(), 308);
                    assert!(err.to_string().contains(&format!("`{name}`")), "{err}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
