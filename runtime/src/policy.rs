//! [`Policy`]: the bundle's steerable language model (`policy.onnx`), its tokenizer and its [`PolicySpec`].
//!
//! # Prompts
//!
//! A prompt becomes the policy's input by the rule
//!
//! ```text
//! encode(template before {prompt}) ‖ encode_as_text(prompt) ‖ encode(template after {prompt})
//! ```
//!
//! The chat template ([`PolicySpec::chat_template`]) is split at its first `{prompt}`; its two parts are tokenized
//! with special tokens recognised (`<|im_start|>` becomes its one special id), the user's prompt with any
//! special-token text in it treated as plain text (a user cannot open a turn of their own). Neither adds the
//! tokenizer's own special tokens (a BOS belongs in the template). The three parts are tokenized separately and
//! their ids concatenated.
//!
//! A prompt is never truncated: when its ids (template included) plus `max_new_tokens` exceed
//! [`PolicySpec::max_positions`], generation fails with [`Error::PromptTooLong`].

use std::path::Path;

use ort::environment::Environment;
use tokenizers::Tokenizer;

use crate::error::{Error, Result, preview};
use crate::graph::GraphSpec;
use crate::options::LoadOptions;
use crate::policy_spec::PolicySpec;
use crate::pool::{SessionPool, load_pool};
use crate::providers::ProviderPlan;

/// A loaded policy: the session pool of `policy.onnx`, its tokenizer and its spec.
#[derive(Debug)]
pub struct Policy {
    pool: SessionPool,
    spec: PolicySpec,
    latent_dim: usize,
    chat: ChatEncoder,
}

/// Applies a chat template to prompts: the template's text around `{prompt}` is tokenized once with special tokens
/// recognised, and each prompt with special-token text kept as plain text, so a user cannot inject control tokens.
/// The trainer tokenizes its training prompts with this same type.
#[derive(Debug, Clone)]
pub struct ChatEncoder {
    /// Recognises special-token text (for the template; also decodes).
    template_tokenizer: Tokenizer,
    /// Treats special-token text as plain text (for the user's prompt).
    text_tokenizer: Tokenizer,
    prefix: Vec<u32>,
    suffix: Vec<u32>,
}

impl ChatEncoder {
    /// A chat encoder for `template` (which must contain `{prompt}`), with `tokenizer`'s padding and truncation
    /// turned off.
    pub fn new(mut tokenizer: Tokenizer, template: &str) -> Result<ChatEncoder> {
        let Some((before, after)) = template.split_once("{prompt}") else {
            return Err(Error::InvalidManifest {
                field: "policy.chat_template".into(),
                expected: "a template containing {prompt}".into(),
                found: template.into(),
            });
        };
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::TokenizerMismatch { expected: "a tokenizer".into(), found: e.to_string() })?;
        tokenizer.set_encode_special_tokens(false);
        let mut text_tokenizer = tokenizer.clone();
        text_tokenizer.set_encode_special_tokens(true);
        let encode_template = |part: &str| -> Result<Vec<u32>> {
            let encoding = tokenizer
                .encode(part, false)
                .map_err(|e| Error::Tokenization { text: preview(part), message: e.to_string() })?;
            Ok(encoding.get_ids().to_vec())
        };
        let (prefix, suffix) = (encode_template(before)?, encode_template(after)?);
        Ok(ChatEncoder { template_tokenizer: tokenizer, text_tokenizer, prefix, suffix })
    }

    /// The token ids of `prompt` inside the template.
    pub fn encode(&self, prompt: &str) -> Result<Vec<u32>> {
        let encoding = self
            .text_tokenizer
            .encode(prompt, false)
            .map_err(|e| Error::Tokenization { text: preview(prompt), message: e.to_string() })?;
        let ids = encoding.get_ids();
        let mut out = Vec::with_capacity(self.prefix.len() + ids.len() + self.suffix.len());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(ids);
        out.extend_from_slice(&self.suffix);
        Ok(out)
    }

    /// The text of token ids, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.template_tokenizer
            .decode(ids, true)
            .map_err(|e| Error::Tokenization { text: format!("<{} token ids>", ids.len()), message: e.to_string() })
    }
}

impl Policy {
    /// The policy's entry in the manifest.
    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    /// The size of the profiles the policy is conditioned on (the bundle's `latent_dim`).
    pub fn latent_dim(&self) -> usize {
        self.latent_dim
    }

    /// The token ids the policy reads for `prompt`: the chat template applied by the rule of the
    /// [module docs](self). Not checked against the context window (generation does that).
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        self.chat.encode(prompt)
    }

    /// The text of generated ids, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.chat.decode(ids)
    }

    pub(crate) fn pool(&self) -> &SessionPool {
        &self.pool
    }
}

/// Loads the policy named by `spec` from `dir`: its tokenizer (checked against the spec) and a session pool of its
/// graph, whose signature must be the spec's with `latent_dim`.
pub(crate) fn load_policy(
    env: &Environment,
    dir: &Path,
    spec: &PolicySpec,
    latent_dim: usize,
    plan: &ProviderPlan,
    options: &LoadOptions,
) -> Result<Policy> {
    let bad = |field: &str, expected: String, found: String| Error::InvalidManifest {
        field: field.to_string(),
        expected,
        found,
    };
    if let Some(&id) = spec.eos_token_ids.iter().find(|&&id| id as usize >= spec.vocab_size) {
        return Err(bad("policy.eos_token_ids", format!("ids below vocab_size {}", spec.vocab_size), id.to_string()));
    }
    if spec.pad_token_id as usize >= spec.vocab_size {
        return Err(bad(
            "policy.pad_token_id",
            format!("an id below vocab_size {}", spec.vocab_size),
            spec.pad_token_id.to_string(),
        ));
    }
    let path = dir.join(&spec.tokenizer);
    let tokenizer =
        Tokenizer::from_file(&path).map_err(|e| Error::Tokenizer { path: path.clone(), message: e.to_string() })?;
    let found = tokenizer.get_vocab_size(true);
    if found > spec.vocab_size {
        return Err(Error::TokenizerMismatch {
            expected: format!("at most {} tokens (policy.vocab_size, the width of the logits)", spec.vocab_size),
            found: format!("{found} tokens in {}", spec.tokenizer),
        });
    }
    let chat = ChatEncoder::new(tokenizer, &spec.chat_template)?;

    let pool = load_pool(env, dir, &spec.graph, &GraphSpec::policy(spec, latent_dim), plan, options)?;
    Ok(Policy { pool, spec: spec.clone(), latent_dim, chat })
}
