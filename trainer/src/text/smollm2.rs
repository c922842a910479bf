//! SmolLM2's tokenizer, rebuilt as a Hugging Face [`Tokenizer`] from the vocabulary in its GGUF file.
//!
//! The GGUF metadata (`tokenizer.ggml.*`) carries a GPT-2 style byte-level BPE: the tokens (written in GPT-2's
//! byte-to-unicode alphabet, so `Ġ` is a space), the merges in rank order, the token types (3 = control, i.e.
//! special), the bos/eos/unk/pad ids and the chat template. [`GgufVocab::to_tokenizer`] assembles:
//!
//! - the model: BPE over those tokens and merges, with no unknown token (every byte has a token) and no dropout;
//! - the added tokens: every control token (`<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, `<repo_name>`, ...) as
//!   a special token, so the chat markers encode to one id each and `skip_special_tokens` drops them;
//! - the pre-tokenizer, chosen from `tokenizer.ggml.pre`, see [`pre_tokenizer_for`];
//! - the byte-level post-processor (offsets only) and decoder.
//!
//! It adds no BOS/EOS when encoding: SmolLM2's `tokenizer.ggml.add_bos_token` is false and its chat template writes
//! the markers itself.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};

/// The GGUF token type of control (special) tokens, as in llama.cpp's `LLAMA_TOKEN_TYPE_CONTROL`.
const TOKEN_TYPE_CONTROL: i32 = 3;
/// The GGUF token type of user-defined added tokens, as in llama.cpp's `LLAMA_TOKEN_TYPE_USER_DEFINED`.
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// The ids of the special tokens that the GGUF metadata names, each `None` when its key is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpecialTokens {
    /// `tokenizer.ggml.bos_token_id` (SmolLM2: 1, `<|im_start|>`).
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id` (SmolLM2: 2, `<|im_end|>`).
    pub eos: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id` (SmolLM2: 0, `<|endoftext|>`; never produced by a byte-level BPE).
    pub unk: Option<u32>,
    /// `tokenizer.ggml.padding_token_id` (SmolLM2: 2, `<|im_end|>`).
    pub pad: Option<u32>,
}

/// The tokenizer part of a GGUF file's metadata.
#[derive(Debug, Clone)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`, e.g. `gpt2` for byte-level BPE.
    pub model: String,
    /// `tokenizer.ggml.pre`, the pre-tokenizer's name in llama.cpp (SmolLM2: `smollm`).
    pub pre: String,
    /// `tokenizer.ggml.tokens`; a token's index is its id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`, one per token (1 normal, 3 control, 4 user-defined, ...); empty when absent.
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges` as pairs, highest priority first.
    pub merges: Vec<(String, String)>,
    /// The bos/eos/unk/pad ids.
    pub special: SpecialTokens,
    /// `tokenizer.chat_template`, a Jinja template (SmolLM2: ChatML with `<|im_start|>`/`<|im_end|>`).
    pub chat_template: Option<String>,
    /// `tokenizer.ggml.add_bos_token` (SmolLM2: false); [`to_tokenizer`](Self::to_tokenizer) refuses `true`.
    pub add_bos_token: Option<bool>,
}

impl GgufVocab {
    /// Reads the tokenizer metadata of a GGUF file (only its header; the tensors are not loaded).
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(Error::io(path))?;
        let content = Content::read(&mut BufReader::new(file))
            .map_err(|e| Error::ModelFile { path: path.into(), message: format!("not a readable GGUF file: {e}") })?;
        Self::from_metadata(path, &content.metadata)
    }

    /// Extracts the tokenizer from already-read GGUF metadata; `path` is only used in error messages.
    pub fn from_metadata(path: &Path, metadata: &HashMap<String, Value>) -> Result<Self> {
        let meta = Metadata { path, metadata };
        let tokens = meta
            .array("tokenizer.ggml.tokens")?
            .iter()
            .map(|v| meta.string_of("tokenizer.ggml.tokens", v).cloned())
            .collect::<Result<Vec<_>>>()?;
        let token_types = match metadata.get("tokenizer.ggml.token_type") {
            None => Vec::new(),
            Some(_) => meta
                .array("tokenizer.ggml.token_type")?
                .iter()
                .map(|v| v.to_i32().map_err(|e| meta.error("tokenizer.ggml.token_type", e)))
                .collect::<Result<Vec<_>>>()?,
        };
        if !token_types.is_empty() && token_types.len() != tokens.len() {
            return Err(meta.error(
                "tokenizer.ggml.token_type",
                format!("has {} entries, expected one per token ({})", token_types.len(), tokens.len()),
            ));
        }
        let merges = meta
            .array("tokenizer.ggml.merges")?
            .iter()
            .map(|v| {
                let merge = meta.string_of("tokenizer.ggml.merges", v)?;
                merge.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())).ok_or_else(|| {
                    meta.error(
                        "tokenizer.ggml.merges",
                        format!("entry {merge:?} is not two tokens separated by a space"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let vocab = Self {
            model: meta.string("tokenizer.ggml.model")?.clone(),
            pre: meta.string("tokenizer.ggml.pre")?.clone(),
            tokens,
            token_types,
            merges,
            special: SpecialTokens {
                bos: meta.optional_id("tokenizer.ggml.bos_token_id")?,
                eos: meta.optional_id("tokenizer.ggml.eos_token_id")?,
                unk: meta.optional_id("tokenizer.ggml.unknown_token_id")?,
                pad: meta.optional_id("tokenizer.ggml.padding_token_id")?,
            },
            chat_template: match metadata.get("tokenizer.chat_template") {
                None => None,
                Some(_) => Some(meta.string("tokenizer.chat_template")?.clone()),
            },
            add_bos_token: match metadata.get("tokenizer.ggml.add_bos_token") {
                None => None,
                Some(value) => Some(value.to_bool().map_err(|e| meta.error("tokenizer.ggml.add_bos_token", e))?),
            },
        };
        for (key, id) in [
            ("tokenizer.ggml.bos_token_id", vocab.special.bos),
            ("tokenizer.ggml.eos_token_id", vocab.special.eos),
            ("tokenizer.ggml.unknown_token_id", vocab.special.unk),
            ("tokenizer.ggml.padding_token_id", vocab.special.pad),
        ] {
            if let Some(id) = id.filter(|&id| id as usize >= vocab.tokens.len()) {
                return Err(meta.error(key, format!("id {id} is outside the vocabulary of {}", vocab.tokens.len())));
            }
        }
        Ok(vocab)
    }

    /// The chat template (`tokenizer.chat_template`), when the file has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The tokens to register as added tokens: `(content, special)` for every control token (special) and every
    /// user-defined token (not special), in id order.
    pub fn added_tokens(&self) -> Vec<(&str, bool)> {
        self.tokens
            .iter()
            .zip(&self.token_types)
            .filter_map(|(token, &kind)| match kind {
                TOKEN_TYPE_CONTROL => Some((token.as_str(), true)),
                TOKEN_TYPE_USER_DEFINED => Some((token.as_str(), false)),
                _ => None,
            })
            .collect()
    }

    /// Builds the Hugging Face tokenizer described in the [module docs](self).
    pub fn to_tokenizer(&self) -> Result<Tokenizer> {
        let fail =
            |message: String| Error::Tokenizer { context: "building the BPE from GGUF metadata".into(), message };
        if self.model != "gpt2" {
            return Err(fail(format!(
                "tokenizer.ggml.model is {:?}; only byte-level BPE (\"gpt2\") is supported",
                self.model
            )));
        }
        if self.add_bos_token == Some(true) {
            return Err(fail("tokenizer.ggml.add_bos_token is true; prepending BOS is not supported yet".into()));
        }
        let pre_tokenizer = pre_tokenizer_for(&self.pre)?;
        let mut vocab = Vocab::default();
        for (id, token) in self.tokens.iter().enumerate() {
            let id = u32::try_from(id).map_err(|_| fail(format!("{} tokens do not fit u32 ids", self.tokens.len())))?;
            if vocab.insert(token.clone(), id).is_some() {
                return Err(fail(format!("token {token:?} appears twice in tokenizer.ggml.tokens")));
            }
        }
        let bpe =
            BPE::builder().vocab_and_merges(vocab, self.merges.clone()).build().map_err(|e| fail(e.to_string()))?;
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer
            .with_pre_tokenizer(Some(pre_tokenizer))
            .with_post_processor(Some(ByteLevel::default().add_prefix_space(false)))
            .with_decoder(Some(ByteLevelDecoder::default()));
        let (special, normal): (Vec<_>, Vec<_>) = self.added_tokens().into_iter().partition(|&(_, special)| special);
        tokenizer
            .add_special_tokens(special.iter().map(|&(t, _)| AddedToken::from(t, true)))
            .map_err(|e| fail(e.to_string()))?;
        tokenizer
            .add_tokens(normal.iter().map(|&(t, _)| AddedToken::from(t, false)))
            .map_err(|e| fail(e.to_string()))?;
        Ok(tokenizer)
    }
}

/// The pre-tokenizer for a llama.cpp pre-tokenizer name (`tokenizer.ggml.pre`).
///
/// - `smollm`, `starcoder`, `refact`, `codeshell`: llama.cpp splits with `\p{N}` first (every digit alone), then
///   with GPT-2's pattern `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`. That is
///   `Digits(individual_digits)` followed by `ByteLevel(use_regex)` here, which is also how SmolLM2's own
///   `tokenizer.json` on the Hub is written (StarCoder lineage).
/// - `gpt2` and `default`: GPT-2's pattern alone.
///
/// Any other name is an error rather than a silent guess, since a wrong split changes the ids.
pub fn pre_tokenizer_for(pre: &str) -> Result<PreTokenizerWrapper> {
    let byte_level = ByteLevel::default().add_prefix_space(false).use_regex(true);
    match pre {
        "smollm" | "starcoder" | "refact" | "codeshell" => {
            Ok(Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into())
        }
        "gpt2" | "default" => Ok(byte_level.into()),
        other => Err(Error::Tokenizer {
            context: "choosing the pre-tokenizer".into(),
            message: format!(
                "tokenizer.ggml.pre is {other:?}; supported: smollm, starcoder, refact, codeshell, gpt2, default"
            ),
        }),
    }
}

/// Builds SmolLM2's tokenizer from its GGUF file, e.g. `.cache/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf`.
///
/// Use [`GgufVocab::read`] instead when the chat template or special-token ids are needed too.
///
/// ```no_run
/// use steer_trainer::text::{save_tokenizer_json, smollm2_gguf_path, smollm2_tokenizer_from_gguf};
///
/// // After `scripts/fetch-models.sh` (or `make models`):
/// let tokenizer = smollm2_tokenizer_from_gguf(smollm2_gguf_path())?;
/// let encoding = tokenizer.encode("Hello world", false)?;
/// assert_eq!(encoding.get_ids(), [19556, 905]);
/// assert_eq!(tokenizer.decode(encoding.get_ids(), false)?, "Hello world");
/// save_tokenizer_json(&tokenizer, "tokenizer.json")?;
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
pub fn smollm2_tokenizer_from_gguf(path: impl AsRef<Path>) -> Result<Tokenizer> {
    GgufVocab::read(path)?.to_tokenizer()
}

/// Writes a tokenizer as a pretty-printed `tokenizer.json`, loadable with `Tokenizer::from_file`.
pub fn save_tokenizer_json(tokenizer: &Tokenizer, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    tokenizer
        .save(path, true)
        .map_err(|e| Error::Tokenizer { context: format!("saving {}", path.display()), message: e.to_string() })
}

/// Typed access to GGUF metadata with errors that name the file and key.
struct Metadata<'a> {
    path: &'a Path,
    metadata: &'a HashMap<String, Value>,
}

impl Metadata<'_> {
    fn error(&self, key: &str, message: impl std::fmt::Display) -> Error {
        Error::ModelFile { path: PathBuf::from(self.path), message: format!("metadata `{key}`: {message}") }
    }

    fn get(&self, key: &str) -> Result<&Value> {
        self.metadata.get(key).ok_or_else(|| self.error(key, "missing"))
    }

    fn string(&self, key: &str) -> Result<&String> {
        self.string_of(key, self.get(key)?)
    }

    fn string_of<'v>(&self, key: &str, value: &'v Value) -> Result<&'v String> {
        value.to_string().map_err(|e| self.error(key, e))
    }

    fn array(&self, key: &str) -> Result<&Vec<Value>> {
        self.get(key)?.to_vec().map_err(|e| self.error(key, e))
    }

    fn optional_id(&self, key: &str) -> Result<Option<u32>> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(value) => value.to_u32().map(Some).map_err(|e| self.error(key, e)),
        }
    }
}

#[cfg(test)]
mod tests;
