//! For programs that produce bundles or check them against another engine: the trainer's export, its parity
//! checks and benchmarks, and the test fixtures. An app that loads a bundle and runs it never needs this module.
//!
//! It writes what [`Model::load`](crate::Model::load) verifies (the manifest, each file's SHA-256), and opens the
//! bundle's graphs at a lower level than [`Model`](crate::Model): token batches straight into the embedder graph,
//! and the process's ONNX Runtime environment for sessions of one's own.

use std::path::Path;

use ndarray::Array2;
use ort::environment::Environment;

use crate::error::Result;
use crate::manifest::Manifest;
use crate::options::LoadOptions;
use crate::text::{Embedder, TextEncoder, TextOption};

/// How many options [`Embedder::embed`] sends to the embedder graph at once; a producer that embeds a dataset
/// itself batches the same way, so that its padding (and so its floats) match the runtime's.
pub const EMBED_BATCH: usize = crate::text::EMBED_BATCH;

/// Token ids and attention mask of a batch of texts, right-padded to the longest row: `[batch, seq]` int64, the
/// embedder graph's inputs. [`encode_batch`] makes them with a bundle's rule; the trainer also makes them for plain
/// sentences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Token ids; padding is the bundle's `pad_token` (or whatever id the maker pads with).
    pub input_ids: Array2<i64>,
    /// 1 for a token, 0 for padding.
    pub attention_mask: Array2<i64>,
}

/// Writes `manifest` as pretty JSON to `dir/manifest.json`.
pub fn save_manifest(manifest: &Manifest, dir: &Path) -> Result<()> {
    manifest.save(dir)
}

/// The lower-case hex SHA-256 of a file, as the manifest records it.
pub fn sha256_file(path: &Path) -> Result<String> {
    crate::manifest::sha256_file(path)
}

/// Encodes `options` with the bundle's rule and right-pads them to the longest into one batch.
pub fn encode_batch(encoder: &TextEncoder, options: &[TextOption<'_>]) -> Result<TokenBatch> {
    encoder.encode_batch(options)
}

/// Runs the embedder graph on an already tokenized batch; returns `[batch, embedding_dim]`.
pub fn run_embedder(embedder: &Embedder, batch: &TokenBatch) -> Result<Array2<f32>> {
    embedder.run(batch)
}

/// The process-wide ONNX Runtime environment, loading the library first if needed, to create `ort` sessions beside
/// Steer's (e.g. to run an exported graph bare and compare).
pub fn ort_environment(options: &LoadOptions) -> Result<Environment> {
    crate::ort_env::environment(options)
}
