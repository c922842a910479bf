//! Text: how a `(prompt, response)` option becomes the token ids the bundle's embedder reads, and the embedder
//! itself.
//!
//! A text bundle carries its tokenizer (`tokenizer.json`) and its embedder graph (`embedder.onnx`: int64
//! `input_ids` and `attention_mask` `[batch, seq]` → float `embedding` `[batch, embedding_dim]`), described by a
//! [`TextSpec`] in the manifest. The trainer tokenizes with this same module, so the ids it trained on and the ids
//! the runtime feeds are identical by construction.
//!
//! # The tokenization rule
//!
//! One option is encoded as
//!
//! ```text
//! begin_tokens ‖ tail(prompt) ‖ head(response_prefix + response) ‖ end_tokens
//! ```
//!
//! with the prompt and the response tokenized separately, without the tokenizer's own special tokens and with any
//! special-token text inside them (`[SEP]`, `<|im_end|>`) treated as plain text. When the whole does not fit in
//! [`TextSpec::max_tokens`], the response is kept and the prompt is truncated **from the left**: a dialogue's most
//! recent turns are the ones that matter for the reply. Only a response that alone does not fit is cut, at its end,
//! and the prompt is then dropped entirely.

use std::path::Path;

use ndarray::{Array2, ArrayView2, Ix2};
use ort::environment::Environment;
use ort::value::TensorRef;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::error::{Error, Result, preview};
use crate::manifest::io;
use crate::pool::SessionPool;
use crate::producer::TokenBatch;

/// How the bundle's text side is built: the files, the embedding space, and the tokenization rule of the
/// [module docs](self). Stored in `manifest.json` under `text`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextSpec {
    /// The embedder graph file (`embedder.onnx`).
    pub embedder: String,
    /// The tokenizer file (`tokenizer.json`, Hugging Face format).
    pub tokenizer: String,
    /// Names the embedding space, e.g. `all-minilm-l6-v2@<sha256 of the weights>`: embeddings from two bundles
    /// can be mixed only when their ids are equal.
    pub embedder_id: String,
    /// How the embedder pools token states: `mean` or `last-token` (documentation; the graph does it).
    pub pooling: String,
    /// The tokenizer's vocabulary size including added tokens; a tokenizer of another size does not match.
    pub vocab_size: usize,
    /// The most tokens one option may have, special tokens included.
    pub max_tokens: usize,
    /// Tokens put before every option (e.g. `[CLS]`), by their text in the vocabulary.
    pub begin_tokens: Vec<String>,
    /// Tokens put after every option (e.g. `[SEP]`, or an end-of-sequence token).
    pub end_tokens: Vec<String>,
    /// The padding token.
    pub pad_token: String,
    /// Text joined in front of every response, e.g. `"\n\nAssistant: "` for HH-style dialogues.
    pub response_prefix: String,
}

/// One text option: a response to a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextOption<'a> {
    /// The prompt or dialogue so far (may be empty).
    pub prompt: &'a str,
    /// The response.
    pub response: &'a str,
}

impl<'a> TextOption<'a> {
    /// A response to a prompt.
    pub fn new(prompt: &'a str, response: &'a str) -> Self {
        TextOption { prompt, response }
    }
}

/// One preference between two responses to a prompt: `chosen` was preferred over `rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextPair<'a> {
    /// The prompt both responses answer.
    pub prompt: &'a str,
    /// The preferred response.
    pub chosen: &'a str,
    /// The other response.
    pub rejected: &'a str,
}

impl<'a> TextPair<'a> {
    /// `chosen` was preferred over `rejected` as a reply to `prompt`.
    pub fn new(prompt: &'a str, chosen: &'a str, rejected: &'a str) -> Self {
        TextPair { prompt, chosen, rejected }
    }
}

/// The tokenizer of a text bundle with the tokenization rule of the [module docs](self).
#[derive(Debug, Clone)]
pub struct TextEncoder {
    tokenizer: Tokenizer,
    spec: TextSpec,
    begin: Vec<u32>,
    end: Vec<u32>,
    pad: u32,
}

impl TextEncoder {
    /// Loads `path` (a `tokenizer.json`) and checks it against `spec`; see [`TextEncoder::new`].
    pub fn from_file(path: &Path, spec: &TextSpec) -> Result<TextEncoder> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer { path: path.to_path_buf(), message: e.to_string() })?;
        TextEncoder::new(tokenizer, spec)
    }

    /// Wraps `tokenizer` for `spec`. The tokenizer must match the spec: the same vocabulary size, and every begin,
    /// end and padding token present. Its own padding and truncation settings are switched off (the rule here
    /// replaces them).
    pub fn new(mut tokenizer: Tokenizer, spec: &TextSpec) -> Result<TextEncoder> {
        let found = tokenizer.get_vocab_size(true);
        if found != spec.vocab_size {
            return Err(Error::TokenizerMismatch {
                expected: format!("a vocabulary of {} tokens (text.vocab_size)", spec.vocab_size),
                found: format!("{found} tokens"),
            });
        }
        let id_of = |token: &String| {
            tokenizer.token_to_id(token).ok_or_else(|| Error::TokenizerMismatch {
                expected: format!("the token {token:?} named in the manifest's text spec"),
                found: "no such token in the tokenizer's vocabulary".into(),
            })
        };
        let begin = spec.begin_tokens.iter().map(id_of).collect::<Result<Vec<_>>>()?;
        let end = spec.end_tokens.iter().map(id_of).collect::<Result<Vec<_>>>()?;
        let pad = id_of(&spec.pad_token)?;
        if begin.len() + end.len() >= spec.max_tokens {
            return Err(Error::InvalidManifest {
                field: "text.max_tokens".into(),
                expected: format!("more than the {} begin and end tokens", begin.len() + end.len()),
                found: spec.max_tokens.to_string(),
            });
        }
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::TokenizerMismatch { expected: "a tokenizer".into(), found: e.to_string() })?;
        // User text is data: a literal "[SEP]" inside a response must not become the separator token.
        tokenizer.set_encode_special_tokens(true);
        Ok(TextEncoder { tokenizer, spec: spec.clone(), begin, end, pad })
    }

    /// The spec this encoder follows.
    pub fn spec(&self) -> &TextSpec {
        &self.spec
    }

    /// The token ids of one option under the rule of the [module docs](self); at most
    /// [`TextSpec::max_tokens`] ids.
    pub fn encode(&self, option: TextOption<'_>) -> Result<Vec<u32>> {
        let response = self.tokenize(&format!("{}{}", self.spec.response_prefix, option.response))?;
        let room = self.spec.max_tokens - self.begin.len() - self.end.len();
        let response = &response[..response.len().min(room)];
        let prompt = if room > response.len() { self.tokenize(option.prompt)? } else { Vec::new() };
        let kept_prompt = &prompt[prompt.len().saturating_sub(room - response.len())..];
        let mut ids = Vec::with_capacity(self.begin.len() + kept_prompt.len() + response.len() + self.end.len());
        ids.extend_from_slice(&self.begin);
        ids.extend_from_slice(kept_prompt);
        ids.extend_from_slice(response);
        ids.extend_from_slice(&self.end);
        Ok(ids)
    }

    /// Encodes `options` and right-pads them to the longest into one batch ([`crate::producer::encode_batch`]).
    pub(crate) fn encode_batch(&self, options: &[TextOption<'_>]) -> Result<TokenBatch> {
        let rows = options.iter().map(|&option| self.encode(option)).collect::<Result<Vec<_>>>()?;
        let seq = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut input_ids = Array2::from_elem((rows.len(), seq), i64::from(self.pad));
        let mut attention_mask = Array2::zeros((rows.len(), seq));
        for (i, row) in rows.iter().enumerate() {
            for (j, &id) in row.iter().enumerate() {
                input_ids[[i, j]] = i64::from(id);
                attention_mask[[i, j]] = 1;
            }
        }
        Ok(TokenBatch { input_ids, attention_mask })
    }

    fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::Tokenization { text: preview(text), message: e.to_string() })?;
        Ok(encoding.get_ids().to_vec())
    }
}

/// How many options the embedder runs at once: large enough to use the cores, small enough that one long option
/// does not pad many short ones. Public as [`crate::producer::EMBED_BATCH`].
pub(crate) const EMBED_BATCH: usize = 16;

/// A text bundle's tokenizer and embedder graph: `(prompt, response)` options in, `[n, embedding_dim]` out.
#[derive(Debug)]
pub struct Embedder {
    encoder: TextEncoder,
    pool: SessionPool,
    dim: usize,
}

impl Embedder {
    /// Wraps a tokenizer and a pool of sessions of the embedder graph (checked by the caller).
    pub(crate) fn new(encoder: TextEncoder, pool: SessionPool, dim: usize) -> Embedder {
        Embedder { encoder, pool, dim }
    }

    /// Loads the tokenizer and embedder graph named by `spec` from `dir` on its own, without a reward model: for
    /// tools that embed a dataset once (the trainer does). [`Model::load`](crate::Model::load) loads the same
    /// files as part of a bundle.
    pub fn load(
        dir: impl AsRef<Path>,
        spec: &TextSpec,
        embedding_dim: usize,
        options: &crate::LoadOptions,
    ) -> Result<Embedder> {
        let dir = dir.as_ref();
        options.validate()?;
        let env = crate::ort_env::environment(options)?;
        let plan = crate::providers::resolve(&env, options)?;
        load_embedder(&env, dir, spec, embedding_dim, &plan, options)
    }

    /// The tokenizer with the bundle's rule.
    pub fn encoder(&self) -> &TextEncoder {
        &self.encoder
    }

    /// The embedding size.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Embeds `options`, [`EMBED_BATCH`](crate::producer::EMBED_BATCH) at a time: row `i` is option `i`'s embedding.
    pub fn embed(&self, options: &[TextOption<'_>]) -> Result<Array2<f32>> {
        let mut out = Array2::zeros((options.len(), self.dim));
        for (chunk_index, chunk) in options.chunks(EMBED_BATCH).enumerate() {
            let batch = self.encoder.encode_batch(chunk)?;
            let embedded = self.run(&batch)?;
            let start = chunk_index * EMBED_BATCH;
            out.slice_axis_mut(ndarray::Axis(0), ndarray::Slice::from(start..start + chunk.len())).assign(&embedded);
        }
        Ok(out)
    }

    /// Runs the embedder graph on an already tokenized batch; returns `[batch, embedding_dim]`
    /// ([`crate::producer::run_embedder`]).
    pub(crate) fn run(&self, batch: &TokenBatch) -> Result<Array2<f32>> {
        let rows = batch.input_ids.nrows();
        if batch.attention_mask.dim() != batch.input_ids.dim() {
            return Err(Error::ShapeMismatch {
                input: io::ATTENTION_MASK.into(),
                expected: format!("{:?}, the shape of input_ids", batch.input_ids.dim()),
                found: format!("{:?}", batch.attention_mask.dim()),
            });
        }
        let pool = &self.pool;
        let fail = |e: ort::Error| Error::Inference { graph: pool.graph().to_string(), message: e.to_string() };
        let ids = batch.input_ids.as_standard_layout();
        let mask = batch.attention_mask.as_standard_layout();
        pool.with_session(|session| {
            let inputs = ort::inputs![
                io::INPUT_IDS => TensorRef::from_array_view(&ids).map_err(fail)?,
                io::ATTENTION_MASK => TensorRef::from_array_view(&mask).map_err(fail)?,
            ];
            let outputs = session.run(inputs).map_err(fail)?;
            let unexpected = |found: String| Error::UnexpectedOutput {
                graph: pool.graph().to_string(),
                tensor: io::EMBEDDING.into(),
                expected: format!("f32 [{rows}, {}]", self.dim),
                found,
            };
            let value = outputs.get(io::EMBEDDING).ok_or_else(|| unexpected("no such output".into()))?;
            let array = value.try_extract_array::<f32>().map_err(|e| unexpected(e.to_string()))?;
            if array.shape() != [rows, self.dim] {
                return Err(unexpected(format!("f32 {:?}", array.shape())));
            }
            let view: ArrayView2<'_, f32> =
                array.into_dimensionality::<Ix2>().map_err(|e| unexpected(e.to_string()))?;
            Ok(view.to_owned())
        })
    }
}

/// Loads the tokenizer and a session pool of the embedder graph, and checks the graph's signature.
pub(crate) fn load_embedder(
    env: &Environment,
    dir: &Path,
    spec: &TextSpec,
    embedding_dim: usize,
    plan: &crate::providers::ProviderPlan,
    options: &crate::LoadOptions,
) -> Result<Embedder> {
    let encoder = TextEncoder::from_file(&dir.join(&spec.tokenizer), spec)?;
    let graph_spec = crate::graph::GraphSpec::embedder(embedding_dim);
    let pool = crate::pool::load_pool(env, dir, &spec.embedder, &graph_spec, plan, options)?;
    Ok(Embedder::new(encoder, pool, embedding_dim))
}

#[cfg(test)]
mod tests {
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    use tokenizers::{AddedToken, Tokenizer};

    use super::*;

    /// The vocabulary of the test tokenizer; a token's id is its index. `[PAD]` is not 0, so padding is visible.
    const VOCAB: [&str; 18] = [
        "[UNK]", "[CLS]", "[SEP]", "[PAD]", "the", "cat", "sat", "on", "a", "mat", "dog", "hello", "world", "[", "]",
        "SEP", "Answer", ":",
    ];
    const CLS: u32 = 1;
    const SEP: u32 = 2;
    const PAD: i64 = 3;

    /// A WordLevel tokenizer over [`VOCAB`] that splits on whitespace and punctuation, with the three special tokens.
    fn tokenizer() -> Tokenizer {
        let vocab = VOCAB.iter().enumerate().map(|(id, token)| (token.to_string(), id as u32)).collect();
        let model = WordLevel::builder().vocab(vocab).unk_token("[UNK]".into()).build().unwrap();
        let mut tokenizer = Tokenizer::new(model);
        tokenizer.with_pre_tokenizer(Some(Whitespace {}));
        let specials = ["[CLS]", "[SEP]", "[PAD]"].map(|t| AddedToken::from(t, true));
        tokenizer.add_special_tokens(specials).unwrap();
        tokenizer
    }

    fn spec(max_tokens: usize) -> TextSpec {
        TextSpec {
            embedder: "embedder.onnx".into(),
            tokenizer: "tokenizer.json".into(),
            embedder_id: "test".into(),
            pooling: "mean".into(),
            vocab_size: VOCAB.len(),
            max_tokens,
            begin_tokens: vec!["[CLS]".into()],
            end_tokens: vec!["[SEP]".into()],
            pad_token: "[PAD]".into(),
            response_prefix: String::new(),
        }
    }

    fn encoder(spec: &TextSpec) -> TextEncoder {
        TextEncoder::new(tokenizer(), spec).unwrap()
    }

    fn ids(prompt: &str, response: &str, spec: &TextSpec) -> Vec<u32> {
        encoder(spec).encode(TextOption::new(prompt, response)).unwrap()
    }

    #[test]
    fn a_short_option_is_begin_prompt_response_end() {
        let spec = spec(16);
        assert_eq!(ids("the cat", "sat on a mat", &spec), [CLS, 4, 5, 6, 7, 8, 9, SEP]);
        // An empty prompt adds nothing; whitespace is not a token.
        assert_eq!(ids("", "  hello   world ", &spec), [CLS, 11, 12, SEP]);
        // The response prefix is joined to the response, not to the prompt.
        let prefixed = TextSpec { response_prefix: "Answer: ".into(), ..spec.clone() };
        assert_eq!(ids("the cat", "sat", &prefixed), [CLS, 4, 5, 16, 17, 6, SEP]);
        // Unknown words are the unknown token, not dropped.
        assert_eq!(ids("the zebra", "sat", &spec), [CLS, 4, 0, 6, SEP]);
        assert_eq!(encoder(&spec).spec(), &spec);
    }

    #[test]
    fn a_long_prompt_loses_its_first_tokens_and_the_response_is_kept() {
        // 6 tokens: [CLS] and [SEP] leave room for 4.
        let spec = spec(6);
        assert_eq!(ids("the cat sat on", "a dog", &spec), [CLS, 6, 7, 8, 10, SEP]);
        assert_eq!(ids("the cat sat on", "a", &spec), [CLS, 5, 6, 7, 8, SEP]);
        // Exactly full: nothing cut.
        assert_eq!(ids("the cat", "a dog", &spec), [CLS, 4, 5, 8, 10, SEP]);
        // With a prefix, the prefix counts as response.
        let prefixed = TextSpec { response_prefix: "Answer:".into(), ..spec };
        assert_eq!(ids("the cat sat", "dog", &prefixed), [CLS, 6, 16, 17, 10, SEP]);
    }

    #[test]
    fn a_response_longer_than_the_window_is_cut_at_its_end_and_the_prompt_dropped() {
        let spec = spec(6);
        assert_eq!(ids("hello world", "the cat sat on a mat", &spec), [CLS, 4, 5, 6, 7, SEP]);
        // A response that exactly fills the room also leaves no prompt.
        assert_eq!(ids("hello world", "the cat sat on", &spec), [CLS, 4, 5, 6, 7, SEP]);
        for (prompt, response) in [("the cat sat on a mat", "the cat sat on a mat"), ("", "a a a a a a a a a")] {
            assert_eq!(ids(prompt, response, &spec).len(), 6, "{prompt:?} / {response:?}");
        }
    }

    #[test]
    fn special_token_text_in_user_text_stays_text() {
        let spec = spec(32);
        // "[SEP]" typed by a user is the three tokens "[", "SEP", "]", never the separator.
        assert_eq!(
            ids("hello [SEP] world", "[CLS] a [PAD]", &spec),
            [CLS, 11, 13, 15, 14, 12, 13, 0, 14, 8, 13, 0, 14, SEP]
        );
        let encoded = ids("[SEP][SEP]", "[SEP]", &spec);
        assert_eq!(encoded.iter().filter(|&&id| id == SEP).count(), 1, "{encoded:?}");
        assert_eq!(encoded.last(), Some(&SEP));
    }

    #[test]
    fn a_batch_is_right_padded_with_the_pad_id_and_mask_zero() {
        let encoder = encoder(&spec(16));
        let options = [TextOption::new("the cat", "sat"), TextOption::new("", "a"), TextOption::new("on", "a mat")];
        let batch = encoder.encode_batch(&options).unwrap();
        let c = i64::from(CLS);
        let s = i64::from(SEP);
        assert_eq!(batch.input_ids, ndarray::array![[c, 4, 5, 6, s], [c, 8, s, PAD, PAD], [c, 7, 8, 9, s]]);
        assert_eq!(batch.attention_mask, ndarray::array![[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]);
        // Each row is the single encoding.
        for (row, &option) in options.iter().enumerate() {
            let single: Vec<i64> = encoder.encode(option).unwrap().into_iter().map(i64::from).collect();
            assert_eq!(batch.input_ids.row(row).iter().take(single.len()).copied().collect::<Vec<_>>(), single);
        }
        let empty = encoder.encode_batch(&[]).unwrap();
        assert_eq!((empty.input_ids.dim(), empty.attention_mask.dim()), ((0, 0), (0, 0)));
    }

    #[test]
    fn a_tokenizer_that_does_not_match_the_spec_is_rejected() {
        let wrong_size = TextSpec { vocab_size: VOCAB.len() + 1, ..spec(16) };
        let err = TextEncoder::new(tokenizer(), &wrong_size).unwrap_err();
        assert_eq!(err.code(), 109);
        assert!(matches!(err, Error::TokenizerMismatch { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the tokenizer does not match the bundle: expected a vocabulary of 19 tokens (text.vocab_size), found 18 \
             tokens"
        );

        let no_pad = TextSpec { pad_token: "<pad>".into(), ..spec(16) };
        let err = TextEncoder::new(tokenizer(), &no_pad).unwrap_err();
        assert_eq!(err.code(), 109);
        assert!(err.to_string().contains("\"<pad>\""), "{err}");
        let no_begin = TextSpec { begin_tokens: vec!["<s>".into()], ..spec(16) };
        let err = TextEncoder::new(tokenizer(), &no_begin).unwrap_err();
        assert_eq!(err.code(), 109);
        assert!(err.to_string().contains("\"<s>\""), "{err}");
        let no_end = TextSpec { end_tokens: vec!["[SEP]".into(), "</s>".into()], ..spec(16) };
        assert_eq!(TextEncoder::new(tokenizer(), &no_end).unwrap_err().code(), 109);

        // No room for any text between the begin and end tokens: the manifest is wrong, not the tokenizer.
        let err = TextEncoder::new(tokenizer(), &spec(2)).unwrap_err();
        assert_eq!(err.code(), 104);
        assert!(err.to_string().contains("text.max_tokens"), "{err}");
    }

    #[test]
    fn loading_a_tokenizer_file_that_is_not_one_is_a_tokenizer_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, "{\"not\": \"a tokenizer\"}").unwrap();
        let err = TextEncoder::from_file(&path, &spec(16)).unwrap_err();
        assert_eq!(err.code(), 108);
        assert!(err.to_string().contains("tokenizer.json"), "{err}");
        // The same tokenizer saved and read back matches.
        tokenizer().save(&path, false).unwrap();
        let encoder = TextEncoder::from_file(&path, &spec(16)).unwrap();
        assert_eq!(encoder.encode(TextOption::new("the", "cat")).unwrap(), [CLS, 4, 5, SEP]);
    }
}
