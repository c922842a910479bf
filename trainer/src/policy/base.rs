//! The decoder a policy starts from: SmolLM2-135M-Instruct from the project cache, a local Hugging Face Llama or
//! Qwen2 directory, or a tiny random decoder for tests. Each comes with its tokenizer, chat template and end-of-turn
//! token.

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use steer_runtime::ChatEncoder;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::policy::generate::{SMOLLM2_CHAT_TEMPLATE, token_id};
use crate::text::embedder_files::SMOLLM2_END_TOKEN;
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
    /// A local Hugging Face directory with a Llama- or Qwen2-architecture model ([`crate::text::hf_llama`]).
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
            let eos = token_id(&tokenizer, SMOLLM2_END_TOKEN)?;
            let (model, id) = if *base == BaseModel::Smollm2 {
                let hash = steer_runtime::producer::sha256_file(&gguf)?;
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
    // Token ids index the embedding table; a table may be padded past the tokenizer (Qwen2's is), never short of it.
    let tokens = tokenizer.get_vocab_size(true);
    if tokens > model.config().vocab_size {
        return Err(Error::ModelFile {
            path: dir.join("config.json"),
            message: format!(
                "vocab_size is {} but tokenizer.json has {tokens} tokens; the two come from different models",
                model.config().vocab_size
            ),
        });
    }
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    use tokenizers::{AddedToken, Tokenizer};

    use super::*;

    /// The Qwen2 decoder of `tests/fixtures/hf` (written by transformers) in a temporary directory, with a word-level
    /// tokenizer of `words` (ids in order) in place of a real one.
    fn qwen2_dir(words: &[&str]) -> tempfile::TempDir {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf/qwen2");
        let dir = tempfile::tempdir().unwrap();
        for file in ["config.json", "model.safetensors"] {
            std::fs::copy(fixture.join(file), dir.path().join(file)).unwrap();
        }
        let vocab: HashMap<String, u32> = words.iter().enumerate().map(|(i, w)| (w.to_string(), i as u32)).collect();
        let model = WordLevel::builder().vocab(vocab.into_iter().collect()).unk_token("<unk>".into()).build().unwrap();
        let mut tokenizer = Tokenizer::new(model);
        tokenizer.with_pre_tokenizer(Some(Whitespace {}));
        let special: Vec<_> =
            words.iter().filter(|w| w.starts_with("<|")).map(|w| AddedToken::from(w.to_string(), true)).collect();
        tokenizer.add_special_tokens(special).unwrap();
        tokenizer.save(dir.path().join("tokenizer.json"), false).unwrap();
        dir
    }

    #[test]
    fn a_qwen2_directory_loads_with_chatml_and_its_end_of_turn_token_issue_5() {
        let words = ["<unk>", "<|im_start|>", "<|im_end|>", "system", "user", "assistant", "hello"];
        let dir = qwen2_dir(&words);
        let base = load_base(&BaseModel::HfDir(dir.path().into()), 0, &Device::Cpu).unwrap();
        assert_eq!(base.chat_template, CHATML_TEMPLATE);
        assert_eq!(base.eos, 2);
        assert!(base.model.config().attention_bias);
        assert!(base.id.starts_with("hf:"), "{}", base.id);
        let ids = base.chat.encode("hello").unwrap();
        assert_eq!(ids.first(), Some(&1), "the template starts with <|im_start|>: {ids:?}");
        assert!(ids.contains(&6), "{ids:?}");

        // A tokenizer with more tokens than the embedding table has rows belongs to another model.
        let many: Vec<String> = (0..70).map(|i| format!("w{i}")).collect();
        let mut words: Vec<&str> = vec!["<unk>", "<|im_start|>", "<|im_end|>"];
        words.extend(many.iter().map(String::as_str));
        let dir = qwen2_dir(&words);
        let err = load_base(&BaseModel::HfDir(dir.path().into()), 0, &Device::Cpu).err().unwrap();
        assert_eq!(err.code(), 1020, "{err}");
        assert!(err.to_string().contains("73 tokens"), "{err}");

        // No chat format can be told from a tokenizer without ChatML's or Llama 3's turn tokens.
        let dir = qwen2_dir(&["<unk>", "hello"]);
        let err = load_base(&BaseModel::HfDir(dir.path().into()), 0, &Device::Cpu).err().unwrap();
        assert!(err.to_string().contains("<|im_start|>"), "{err}");
    }
}
