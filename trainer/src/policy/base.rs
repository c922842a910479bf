//! The decoder a policy starts from: SmolLM2-135M-Instruct from the project cache, a local Hugging Face Llama
//! directory, or a tiny random decoder for tests. Each comes with its tokenizer, chat template and end-of-turn token.

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use steer_runtime::ChatEncoder;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::policy::generate::{SMOLLM2_CHAT_TEMPLATE, SMOLLM2_EOS, token_id};
use crate::text::llama::{LlamaConfig, LlamaModel};
use crate::text::{smollm2_gguf_path, smollm2_tokenizer_from_gguf};

/// ChatML with a neutral system prompt, for Hugging Face models whose tokenizer has `<|im_start|>`.
pub const CHATML_TEMPLATE: &str = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n\
     {prompt}<|im_end|>\n<|im_start|>assistant\n";
/// Llama 3's chat format, for Hugging Face models whose tokenizer has `<|eot_id|>`.
pub const LLAMA3_TEMPLATE: &str = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|>\
     <|start_header_id|>assistant<|end_header_id|>\n\n";

/// The decoder the policy starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaseModel {
    /// SmolLM2-135M-Instruct (the GGUF in the project cache, dequantized).
    Smollm2,
    /// A random 2-layer, 32-wide decoder over SmolLM2's vocabulary: for tests and smoke runs only.
    Tiny,
    /// A local Hugging Face directory with a Llama-architecture model ([`crate::text::hf_llama`]).
    HfDir(PathBuf),
}

/// The base decoder, its tokenizer, its id, its chat template and its end-of-turn token.
pub struct Base {
    /// The decoder.
    pub model: LlamaModel,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Names the weights: `smollm2-135m-instruct@<sha256>`, `tiny-random@<seed>` or `hf:<dir>@<hash>`.
    pub id: String,
    /// The chat template, with `{prompt}` for the user's text.
    pub chat_template: String,
    /// The template applied to prompts, as the runtime applies it.
    pub chat: ChatEncoder,
    /// The end-of-turn token id.
    pub eos: u32,
}

impl Base {
    /// Replaces the chat template's system prompt with `system` (see [`with_system_prompt`]).
    pub fn set_system_prompt(&mut self, system: &str) -> Result<()> {
        self.chat_template = with_system_prompt(&self.chat_template, system);
        self.chat = ChatEncoder::new(self.tokenizer.clone(), &self.chat_template)?;
        Ok(())
    }
}

/// `template` with `system` as its system prompt: replacing a ChatML template's system message, else written in front
/// of the user's prompt (templates without a system turn, such as Llama 3's).
pub fn with_system_prompt(template: &str, system: &str) -> String {
    const SYSTEM: &str = "<|im_start|>system\n";
    if let Some(start) = template.find(SYSTEM).map(|i| i + SYSTEM.len())
        && let Some(len) = template[start..].find("<|im_end|>")
    {
        return format!("{}{system}{}", &template[..start], &template[start + len..]);
    }
    template.replace("{prompt}", &format!("{system}\n\n{{prompt}}"))
}

/// Loads `base` on `device`; `seed` seeds the tiny decoder.
pub fn load_base(base: &BaseModel, seed: u64, device: &Device) -> Result<Base> {
    match base {
        BaseModel::Smollm2 | BaseModel::Tiny => {
            let gguf = smollm2_gguf_path();
            let tokenizer = smollm2_tokenizer_from_gguf(&gguf)?;
            let eos = token_id(&tokenizer, SMOLLM2_EOS)?;
            let (model, id) = if *base == BaseModel::Smollm2 {
                let hash = steer_runtime::manifest::sha256_file(&gguf)?;
                (LlamaModel::from_gguf(&gguf, device)?, format!("smollm2-135m-instruct@{hash}"))
            } else {
                let cfg = LlamaConfig { vocab_size: tokenizer.get_vocab_size(true), ..LlamaConfig::tiny() };
                (LlamaModel::from_config_seeded(&cfg, seed, device)?, format!("tiny-random@{seed}"))
            };
            let chat = ChatEncoder::new(tokenizer.clone(), SMOLLM2_CHAT_TEMPLATE)?;
            Ok(Base { model, tokenizer, id, chat_template: SMOLLM2_CHAT_TEMPLATE.into(), chat, eos })
        }
        BaseModel::HfDir(dir) => load_hf_base(dir, device),
    }
}

/// A Hugging Face directory: the decoder, `tokenizer.json`, and the chat format its special tokens imply (ChatML or
/// Llama 3); other formats are refused, naming what was looked for.
fn load_hf_base(dir: &Path, device: &Device) -> Result<Base> {
    let path = dir.join("tokenizer.json");
    let tokenizer = Tokenizer::from_file(&path)
        .map_err(|e| Error::Tokenizer { context: format!("loading {}", path.display()), message: e.to_string() })?;
    let (chat_template, eos) = if tokenizer.token_to_id("<|im_start|>").is_some() {
        (CHATML_TEMPLATE, "<|im_end|>")
    } else if tokenizer.token_to_id("<|eot_id|>").is_some() {
        (LLAMA3_TEMPLATE, "<|eot_id|>")
    } else {
        return Err(Error::Tokenizer {
            context: format!("choosing a chat template for {}", dir.display()),
            message: "the tokenizer has neither <|im_start|> (ChatML) nor <|eot_id|> (Llama 3)".into(),
        });
    };
    let eos = token_id(&tokenizer, eos)?;
    let model = LlamaModel::from_hf_dir(dir, device)?;
    // The id hashes config.json and the weight files' names and sizes: cheap, and any re-download changes it.
    let mut hasher = Sha256::new();
    let config = dir.join("config.json");
    hasher.update(std::fs::read(&config).map_err(Error::io(&config))?);
    let mut entries: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect();
    entries.sort();
    hasher.update(format!("{entries:?}"));
    let hash: String = hasher.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
    let name = dir.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
    let chat = ChatEncoder::new(tokenizer.clone(), chat_template)?;
    Ok(Base { model, tokenizer, id: format!("hf:{name}@{hash}"), chat_template: chat_template.into(), chat, eos })
}
