//! The text side of a bundle, prepared once per run: `embedder.onnx`, `tokenizer.json` and the [`TextSpec`] that
//! says how options are tokenized. Every bundle of a text run links these same files, and the trainer embeds its
//! data through them (ONNX Runtime, with an [`EmbeddingCache`]), so training and serving see identical vectors.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::Device;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use steer_runtime::{Embedder, LoadOptions, TextOption, TextSpec};

use crate::error::{Error, Result};
use crate::text::bert::MiniLmEmbedder;
use crate::text::cache::{minilm_dir, models_dir, smollm2_gguf_path};
use crate::text::embedder_export::{EMBEDDER_FILE, write_embedder};
use crate::text::embedding_cache::EmbeddingCache;
use crate::text::llama::LlamaModel;
use crate::text::llama_export::write_llama_embedder;
use crate::text::minilm::minilm_tokenizer;
use crate::text::smollm2::{save_tokenizer_json, smollm2_tokenizer_from_gguf};

/// The tokenizer file name inside a bundle.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// The file recording the [`TextSpec`] and embedding size of a prepared embedder folder.
pub const SPEC_FILE: &str = "text_spec.json";
/// The text joined in front of every response: the HH dialogue convention, where prompts end with the human's
/// turn.
pub const RESPONSE_PREFIX: &str = "\n\nAssistant: ";
/// The most tokens one option may have: sentence-transformers' own limit for all-MiniLM-L6-v2, and enough for
/// nearly all HH-relabeled options (longer prompts lose their oldest turns).
pub const MAX_TOKENS: usize = 256;

/// SmolLM2's end-of-turn token (`<|im_end|>`, its EOS), appended to every option.
pub const SMOLLM2_END_TOKEN: &str = "<|im_end|>";

/// Which pretrained model embeds the text options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmbedderChoice {
    /// all-MiniLM-L6-v2 (BERT, 384 values, mean pooling, L2-normalised).
    Minilm,
    /// SmolLM2-135M-Instruct (Llama, 576 values, the last token's hidden state, L2-normalised): the paper's kind of
    /// embedding.
    Smollm2,
}

impl EmbedderChoice {
    /// The name used on the command line and in model ids.
    pub fn as_str(self) -> &'static str {
        match self {
            EmbedderChoice::Minilm => "all-minilm-l6-v2",
            EmbedderChoice::Smollm2 => "smollm2-135m-instruct",
        }
    }
}

/// A prepared embedder folder: the files a text bundle carries, and how to use them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedderFiles {
    /// The folder holding `embedder.onnx`, `tokenizer.json` and `text_spec.json`.
    pub dir: PathBuf,
    /// The text spec the bundles get.
    pub spec: TextSpec,
    /// The embedding size.
    pub dim: usize,
}

impl EmbedderFiles {
    /// Reads a folder written by [`EmbedderFiles::prepare`].
    pub fn open(dir: impl AsRef<Path>) -> Result<EmbedderFiles> {
        let dir = dir.as_ref();
        let path = dir.join(SPEC_FILE);
        let text = fs::read_to_string(&path).map_err(Error::io(&path))?;
        let mut files: EmbedderFiles =
            serde_json::from_str(&text).map_err(|e| Error::Json { path: path.clone(), message: e.to_string() })?;
        files.dir = dir.to_path_buf();
        Ok(files)
    }

    /// Exports `choice` into `dir` (embedder graph, tokenizer, spec) from the models `scripts/fetch-models.sh`
    /// fetched. A folder already prepared from the same weights is reused as it is.
    pub fn prepare(choice: EmbedderChoice, dir: impl AsRef<Path>) -> Result<EmbedderFiles> {
        let dir = dir.as_ref();
        let weights = match choice {
            EmbedderChoice::Minilm => minilm_dir().join("model.safetensors"),
            EmbedderChoice::Smollm2 => smollm2_gguf_path(),
        };
        if !weights.is_file() {
            return Err(Error::MissingModel { path: weights, models_dir: models_dir() });
        }
        let embedder_id = EmbeddingCache::model_id_for(choice.as_str(), &weights)?;
        if let Ok(existing) = EmbedderFiles::open(dir)
            && existing.spec.embedder_id == embedder_id
            && dir.join(EMBEDDER_FILE).is_file()
            && dir.join(TOKENIZER_FILE).is_file()
        {
            return Ok(existing);
        }
        fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let (spec, dim) = match choice {
            EmbedderChoice::Minilm => {
                let embedder = MiniLmEmbedder::load(minilm_dir(), &Device::Cpu)?;
                write_embedder(&embedder, dir.join(EMBEDDER_FILE))?;
                let source = minilm_dir().join(TOKENIZER_FILE);
                fs::copy(&source, dir.join(TOKENIZER_FILE)).map_err(Error::io(&source))?;
                let tokenizer = minilm_tokenizer(&source)?;
                let spec = TextSpec {
                    embedder: EMBEDDER_FILE.into(),
                    tokenizer: TOKENIZER_FILE.into(),
                    embedder_id,
                    pooling: "mean".into(),
                    vocab_size: tokenizer.get_vocab_size(true),
                    max_tokens: MAX_TOKENS,
                    begin_tokens: vec!["[CLS]".into()],
                    end_tokens: vec!["[SEP]".into()],
                    pad_token: "[PAD]".into(),
                    response_prefix: RESPONSE_PREFIX.into(),
                };
                (spec, embedder.dim())
            }
            EmbedderChoice::Smollm2 => {
                let model = LlamaModel::from_gguf(&weights, &Device::Cpu)?;
                write_llama_embedder(&model, dir.join(EMBEDDER_FILE))?;
                let tokenizer = smollm2_tokenizer_from_gguf(&weights)?;
                save_tokenizer_json(&tokenizer, dir.join(TOKENIZER_FILE))?;
                let spec = TextSpec {
                    embedder: EMBEDDER_FILE.into(),
                    tokenizer: TOKENIZER_FILE.into(),
                    embedder_id,
                    pooling: "last-token".into(),
                    vocab_size: tokenizer.get_vocab_size(true),
                    max_tokens: MAX_TOKENS,
                    // No BOS (the model's tokenizer adds none); the end-of-turn token closes every option, so the
                    // last token, whose state is the embedding, is the same token for every option.
                    begin_tokens: Vec::new(),
                    end_tokens: vec![SMOLLM2_END_TOKEN.into()],
                    pad_token: SMOLLM2_END_TOKEN.into(),
                    response_prefix: RESPONSE_PREFIX.into(),
                };
                (spec, model.config().hidden_size)
            }
        };
        let files = EmbedderFiles { dir: dir.to_path_buf(), spec, dim };
        let path = dir.join(SPEC_FILE);
        let text = serde_json::to_string_pretty(&files)
            .map_err(|e| Error::Json { path: path.clone(), message: e.to_string() })?;
        fs::write(&path, text).map_err(Error::io(&path))?;
        Ok(files)
    }

    /// Loads the tokenizer and embedder graph through ONNX Runtime.
    pub fn load(&self, options: &LoadOptions) -> Result<Embedder> {
        Ok(Embedder::load(&self.dir, &self.spec, self.dim, options)?)
    }

    /// The cache id of these embeddings: the weights and every part of the tokenization rule, so that a change to
    /// either never reuses stale vectors.
    pub fn cache_id(&self) -> String {
        let s = &self.spec;
        let rule =
            format!("{}|{}|{:?}|{:?}|{:?}", s.max_tokens, s.pooling, s.begin_tokens, s.end_tokens, s.response_prefix);
        let digest = crate::text::embedding_cache::text_key(&rule);
        let short: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("{}+rule-{short}", s.embedder_id)
    }

    /// Embeds `options` through ONNX Runtime, reusing and filling the cache in `cache_dir`. Options are embedded
    /// shortest first so that batches pad little; row `i` of the result is option `i`.
    pub fn embed_cached(
        &self,
        embedder: &Embedder,
        options: &[TextOption<'_>],
        cache_dir: &Path,
    ) -> Result<Array2<f32>> {
        let keys: Vec<String> = options.iter().map(|o| option_key(o.prompt, o.response)).collect();
        let by_key: HashMap<&str, TextOption<'_>> =
            keys.iter().map(String::as_str).zip(options.iter().copied()).collect();
        let mut order: Vec<&str> = by_key.keys().copied().collect();
        order.sort_by_key(|k| (k.len(), *k));
        let mut cache = EmbeddingCache::open(cache_dir, &self.cache_id(), self.dim)?;
        let (start, mut embedded) = (std::time::Instant::now(), 0usize);
        let sorted = cache.embed_all(&order, steer_runtime::producer::EMBED_BATCH, |batch| {
            let batch: Vec<TextOption<'_>> = batch.iter().filter_map(|k| by_key.get(k).copied()).collect();
            let vectors = embedder.embed(&batch)?;
            embedded += batch.len();
            Ok(vectors.rows().into_iter().map(|r| r.to_vec()).collect())
        })?;
        if embedded > 0 {
            let seconds = start.elapsed().as_secs_f64();
            eprintln!(
                "embedded {embedded} new texts in {seconds:.1} s ({:.1} texts/s); {} were cached",
                embedded as f64 / seconds.max(1e-9),
                order.len() - embedded
            );
        }
        // Rows come back in length order; put them in the caller's order.
        let row_of: HashMap<&str, usize> = order.iter().enumerate().map(|(row, key)| (*key, row)).collect();
        let mut out = Array2::zeros((keys.len(), self.dim));
        for (i, key) in keys.iter().enumerate() {
            if let Some(&row) = row_of.get(key.as_str()) {
                out.row_mut(i).assign(&sorted.row(row));
            }
        }
        Ok(out)
    }
}

/// The cache key of an option: prompt and response, separated by a character that cannot be typed.
fn option_key(prompt: &str, response: &str) -> String {
    format!("{prompt}\u{1f}{response}")
}
