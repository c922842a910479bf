//! An on-disk cache of sentence embeddings, so that retraining does not re-embed the same texts (issue #4).
//!
//! **Key.** An entry is keyed by the embedder's identity and the SHA-256 of the text (its UTF-8 bytes). The identity
//! is a model id string chosen by the caller; [`EmbeddingCache::model_id_for`] builds one from a model name and the
//! SHA-256 of its weights file (`all-MiniLM-L6-v2@sha256:<hex>`), so changed weights never reuse old vectors.
//!
//! **File.** One safetensors file per model id in the cache folder, named
//! `embeddings-<first 16 hex digits of SHA-256(model id)>.safetensors`, holding:
//! - `keys`: a `U8` tensor `[n, 32]`, the SHA-256 of each text;
//! - `embeddings`: an `F32` tensor `[n, dim]`, row `i` being the vector of `keys[i]`;
//! - metadata `format` (`steer-embedding-cache/1`), `model_id` and `dim`.
//!
//! Opening a file written for another model id or another dimension is an
//! [`Error::EmbeddingCacheMismatch`]; a file that cannot be parsed is an [`Error::EmbeddingCache`] naming it.
//! [`EmbeddingCache::save`] writes a temporary file in the same folder and renames it over the old one, so a crash
//! leaves either the old cache or the new one, never a truncated file.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The value of the `format` metadata entry this version writes and reads.
pub const EMBEDDING_CACHE_FORMAT: &str = "steer-embedding-cache/1";

/// SHA-256 of a text's UTF-8 bytes: the cache key of that text.
pub type TextKey = [u8; 32];

/// Embeddings of one model, kept in memory and persisted as one safetensors file. See the [module docs](self).
#[derive(Debug)]
pub struct EmbeddingCache {
    path: PathBuf,
    model_id: String,
    dim: usize,
    index: HashMap<TextKey, usize>,
    keys: Vec<TextKey>,
    vectors: Vec<f32>,
    dirty: bool,
}

/// The SHA-256 of a text, used as its key.
pub fn text_key(text: &str) -> TextKey {
    Sha256::digest(text.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl EmbeddingCache {
    /// Opens (or starts) the cache of `model_id`, whose vectors have `dim` values, in folder `dir` (created if
    /// missing). Fails when the existing file is unreadable or corrupt, or was written for another model or dimension.
    pub fn open(dir: impl AsRef<Path>, model_id: &str, dim: usize) -> Result<Self> {
        let dir = dir.as_ref();
        if dim == 0 {
            return Err(Error::InvalidConfig { field: "dim", expected: "at least 1".into(), got: "0".into() });
        }
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let path = dir.join(Self::file_name(model_id));
        let mut cache = EmbeddingCache {
            path,
            model_id: model_id.to_owned(),
            dim,
            index: HashMap::new(),
            keys: Vec::new(),
            vectors: Vec::new(),
            dirty: false,
        };
        match std::fs::read(&cache.path) {
            Ok(bytes) => cache.load(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&cache.path)(e)),
        }
        Ok(cache)
    }

    /// The file name used for `model_id`: `embeddings-<16 hex digits of its SHA-256>.safetensors`.
    pub fn file_name(model_id: &str) -> String {
        let digest = Sha256::digest(model_id.as_bytes());
        format!("embeddings-{}.safetensors", hex(&digest[..8]))
    }

    /// A model id that changes with the weights: `<name>@sha256:<hex of the weights file's SHA-256>`.
    pub fn model_id_for(name: &str, weights: impl AsRef<Path>) -> Result<String> {
        let weights = weights.as_ref();
        let mut file = std::fs::File::open(weights).map_err(Error::io(weights))?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher).map_err(Error::io(weights))?;
        Ok(format!("{name}@sha256:{}", hex(&hasher.finalize())))
    }

    fn corrupt(&self, message: impl Into<String>) -> Error {
        Error::EmbeddingCache { path: self.path.clone(), message: message.into() }
    }

    fn load(&mut self, bytes: &[u8]) -> Result<()> {
        let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| self.corrupt(e.to_string()))?;
        let info = metadata.metadata().clone().unwrap_or_default();
        let entry = |key: &str| info.get(key).cloned().unwrap_or_default();
        if entry("format") != EMBEDDING_CACHE_FORMAT {
            return Err(self
                .corrupt(format!("metadata `format` is {:?}, expected {EMBEDDING_CACHE_FORMAT:?}", entry("format"))));
        }
        if entry("model_id") != self.model_id {
            return Err(Error::EmbeddingCacheMismatch {
                path: self.path.clone(),
                what: "model_id",
                expected: self.model_id.clone(),
                got: entry("model_id"),
            });
        }
        if entry("dim") != self.dim.to_string() {
            return Err(Error::EmbeddingCacheMismatch {
                path: self.path.clone(),
                what: "dim",
                expected: self.dim.to_string(),
                got: entry("dim"),
            });
        }
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| self.corrupt(e.to_string()))?;
        let keys = tensors.tensor("keys").map_err(|e| self.corrupt(format!("tensor `keys`: {e}")))?;
        let vectors = tensors.tensor("embeddings").map_err(|e| self.corrupt(format!("tensor `embeddings`: {e}")))?;
        let n = match keys.shape() {
            [n, 32] if keys.dtype() == Dtype::U8 => *n,
            shape => {
                return Err(self.corrupt(format!("tensor `keys` is {:?} {shape:?}, expected U8 [n, 32]", keys.dtype())));
            }
        };
        if vectors.dtype() != Dtype::F32 || vectors.shape() != [n, self.dim] {
            return Err(self.corrupt(format!(
                "tensor `embeddings` is {:?} {:?}, expected F32 [{n}, {}]",
                vectors.dtype(),
                vectors.shape(),
                self.dim
            )));
        }
        self.keys = keys
            .data()
            .chunks_exact(32)
            .map(|c| {
                let mut key = [0u8; 32];
                key.copy_from_slice(c);
                key
            })
            .collect();
        self.vectors = vectors.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        self.index = self.keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
        Ok(())
    }

    /// The cache file (it may not exist yet).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model id this cache belongs to.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// The number of values per vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// How many texts have a cached vector.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no vector is cached.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The cached vector of `text`, if any.
    pub fn get(&self, text: &str) -> Option<Vec<f32>> {
        let row = *self.index.get(&text_key(text))?;
        Some(self.vectors[row * self.dim..(row + 1) * self.dim].to_vec())
    }

    /// The cached vector of each text, `None` for the misses, in the order given.
    pub fn get_many(&self, texts: &[&str]) -> Vec<Option<Vec<f32>>> {
        texts.iter().map(|t| self.get(t)).collect()
    }

    /// Stores the vector of `text` in memory (replacing any earlier one); [`save`](Self::save) persists it. Fails
    /// when the vector does not have [`dim`](Self::dim) values.
    pub fn insert(&mut self, text: &str, vector: &[f32]) -> Result<()> {
        if vector.len() != self.dim {
            return Err(Error::InvalidInput {
                input: "embedding",
                expected: format!("{} values", self.dim),
                got: format!("{} values", vector.len()),
            });
        }
        let key = text_key(text);
        match self.index.get(&key) {
            Some(&row) => self.vectors[row * self.dim..(row + 1) * self.dim].copy_from_slice(vector),
            None => {
                self.index.insert(key, self.keys.len());
                self.keys.push(key);
                self.vectors.extend_from_slice(vector);
            }
        }
        self.dirty = true;
        Ok(())
    }

    /// Returns the vectors of `texts` as a `[texts.len(), dim]` array, calling `embed` only on the texts that are
    /// not cached (each distinct text once), `batch_size` texts at a time, then [`save`](Self::save)s when anything
    /// was added. A progress bar (texts/s) is drawn on stderr when it is a terminal. `embed` must return one vector
    /// of `dim` values per text of its batch.
    pub fn embed_all<F>(&mut self, texts: &[&str], batch_size: usize, mut embed: F) -> Result<Array2<f32>>
    where
        F: FnMut(&[&str]) -> Result<Vec<Vec<f32>>>,
    {
        if batch_size == 0 {
            return Err(Error::InvalidConfig { field: "batch_size", expected: "at least 1".into(), got: "0".into() });
        }
        let mut seen = std::collections::HashSet::new();
        let missing: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| {
                let key = text_key(t);
                !self.index.contains_key(&key) && seen.insert(key)
            })
            .collect();
        if !missing.is_empty() {
            let bar = if std::io::stderr().is_terminal() {
                ProgressBar::new(missing.len() as u64)
            } else {
                ProgressBar::hidden()
            };
            bar.set_style(
                ProgressStyle::with_template("embedding [{bar:30}] {pos}/{len} texts {per_sec} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            for batch in missing.chunks(batch_size) {
                let vectors = embed(batch)?;
                if vectors.len() != batch.len() {
                    bar.abandon();
                    return Err(Error::InvalidInput {
                        input: "embeddings",
                        expected: format!("{} vectors (one per text of the batch)", batch.len()),
                        got: format!("{} vectors", vectors.len()),
                    });
                }
                for (text, vector) in batch.iter().zip(&vectors) {
                    self.insert(text, vector)?;
                }
                bar.inc(batch.len() as u64);
            }
            bar.finish_and_clear();
            self.save()?;
        }
        let mut flat = Vec::with_capacity(texts.len() * self.dim);
        for text in texts {
            let row = *self.index.get(&text_key(text)).ok_or_else(|| Error::InvalidInput {
                input: "texts",
                expected: "every text embedded".into(),
                got: format!("no vector for {text:?}"),
            })?;
            flat.extend_from_slice(&self.vectors[row * self.dim..(row + 1) * self.dim]);
        }
        Array2::from_shape_vec((texts.len(), self.dim), flat).map_err(|e| Error::InvalidInput {
            input: "embeddings",
            expected: format!("[{}, {}]", texts.len(), self.dim),
            got: e.to_string(),
        })
    }

    /// Writes the cache to [`path`](Self::path) atomically: a temporary file in the same folder, flushed to disk,
    /// then renamed over the old file. Does nothing when nothing changed since the last load or save.
    pub fn save(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let n = self.keys.len();
        let key_bytes: Vec<u8> = self.keys.iter().flatten().copied().collect();
        let vector_bytes: Vec<u8> = self.vectors.iter().flat_map(|x| x.to_le_bytes()).collect();
        let keys = TensorView::new(Dtype::U8, vec![n, 32], &key_bytes).map_err(|e| self.corrupt(e.to_string()))?;
        let vectors =
            TensorView::new(Dtype::F32, vec![n, self.dim], &vector_bytes).map_err(|e| self.corrupt(e.to_string()))?;
        let metadata = HashMap::from([
            ("format".to_owned(), EMBEDDING_CACHE_FORMAT.to_owned()),
            ("model_id".to_owned(), self.model_id.clone()),
            ("dim".to_owned(), self.dim.to_string()),
        ]);
        let bytes = safetensors::serialize([("embeddings", vectors), ("keys", keys)], Some(metadata))
            .map_err(|e| self.corrupt(e.to_string()))?;
        let file_name = self.path.file_name().and_then(|n| n.to_str()).unwrap_or("embeddings");
        let tmp = self.path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(&tmp)(e));
        }
        if let Err(e) = std::fs::rename(&tmp, &self.path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(&self.path)(e));
        }
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const MODEL: &str = "fake-model@sha256:00";

    /// A deterministic fake embedder: vector `[len, first byte, 1, …]`, counting the texts it embeds.
    fn fake(dim: usize, calls: &Cell<usize>) -> impl FnMut(&[&str]) -> Result<Vec<Vec<f32>>> + '_ {
        move |batch: &[&str]| {
            calls.set(calls.get() + batch.len());
            Ok(batch
                .iter()
                .map(|t| {
                    let mut v = vec![1.0; dim];
                    v[0] = t.len() as f32;
                    v[1] = f32::from(t.bytes().next().unwrap_or(0));
                    v
                })
                .collect())
        }
    }

    #[test]
    fn hits_and_misses() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = EmbeddingCache::open(dir.path(), MODEL, 4).unwrap();
        cache.insert("hello", &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let got = cache.get_many(&["hello", "world"]);
        assert_eq!(got, vec![Some(vec![1.0, 2.0, 3.0, 4.0]), None]);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn second_run_embeds_nothing_and_duplicates_are_embedded_once() {
        let dir = tempfile::tempdir().unwrap();
        let calls = Cell::new(0);
        let texts = ["a", "bb", "a", "ccc", "bb", "dddd", "a"];
        let mut cache = EmbeddingCache::open(dir.path(), MODEL, 3).unwrap();
        let first = cache.embed_all(&texts, 2, fake(3, &calls)).unwrap();
        assert_eq!(calls.get(), 4, "four distinct texts");
        assert_eq!(first.shape(), &[7, 3]);
        assert_eq!(first.row(2).to_vec(), vec![1.0, 97.0, 1.0]);
        assert_eq!(first.row(5).to_vec(), vec![4.0, 100.0, 1.0]);
        let second = cache.embed_all(&texts, 2, fake(3, &calls)).unwrap();
        assert_eq!(calls.get(), 4, "nothing re-embedded");
        assert_eq!(first, second);
        // A new text next to cached ones: only it is embedded.
        cache.embed_all(&["a", "eeeee"], 8, fake(3, &calls)).unwrap();
        assert_eq!(calls.get(), 5);
    }

    #[test]
    fn persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let calls = Cell::new(0);
        let texts = ["one", "two", "three"];
        let first = EmbeddingCache::open(dir.path(), MODEL, 5).unwrap().embed_all(&texts, 2, fake(5, &calls)).unwrap();
        let mut reopened = EmbeddingCache::open(dir.path(), MODEL, 5).unwrap();
        assert_eq!(reopened.len(), 3);
        let again = reopened.embed_all(&texts, 2, fake(5, &calls)).unwrap();
        assert_eq!(calls.get(), 3, "the reopened cache embeds nothing");
        assert_eq!(first, again);
        // Another model id uses another file and starts empty.
        let other = EmbeddingCache::open(dir.path(), "other-model", 5).unwrap();
        assert!(other.is_empty());
        assert_ne!(other.path(), reopened.path());
    }

    #[test]
    fn dim_mismatch_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let calls = Cell::new(0);
        let mut cache = EmbeddingCache::open(dir.path(), MODEL, 4).unwrap();
        cache.embed_all(&["x"], 1, fake(4, &calls)).unwrap();
        let err = EmbeddingCache::open(dir.path(), MODEL, 8).unwrap_err();
        assert!(matches!(err, Error::EmbeddingCacheMismatch { what: "dim", .. }), "{err}");
        assert_eq!(err.code(), 1024);
        // An embedder returning vectors of the wrong size is refused, not mixed in.
        let err = cache.embed_all(&["y"], 1, fake(3, &calls)).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
        assert!(cache.get("y").is_none());
    }

    #[test]
    fn file_of_another_model_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let calls = Cell::new(0);
        let mut cache = EmbeddingCache::open(dir.path(), "model-a", 2).unwrap();
        cache.embed_all(&["x"], 1, fake(2, &calls)).unwrap();
        // Pretend model-b's file is model-a's (a copied or renamed file).
        std::fs::copy(cache.path(), dir.path().join(EmbeddingCache::file_name("model-b"))).unwrap();
        let err = EmbeddingCache::open(dir.path(), "model-b", 2).unwrap_err();
        assert!(matches!(err, Error::EmbeddingCacheMismatch { what: "model_id", .. }), "{err}");
        assert!(err.to_string().contains("model-a"), "{err}");
    }

    #[test]
    fn corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EmbeddingCache::file_name(MODEL));
        std::fs::write(&path, b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!").unwrap();
        let err = EmbeddingCache::open(dir.path(), MODEL, 4).unwrap_err();
        assert!(matches!(err, Error::EmbeddingCache { .. }), "{err}");
        assert_eq!(err.code(), 1023);
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        std::fs::write(&path, b"").unwrap();
        let err = EmbeddingCache::open(dir.path(), MODEL, 4).unwrap_err();
        assert!(matches!(err, Error::EmbeddingCache { .. }), "{err}");
    }

    #[test]
    fn atomic_save_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let calls = Cell::new(0);
        let mut cache = EmbeddingCache::open(dir.path(), MODEL, 2).unwrap();
        cache.embed_all(&["a", "b"], 1, fake(2, &calls)).unwrap();
        cache.embed_all(&["c"], 1, fake(2, &calls)).unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![EmbeddingCache::file_name(MODEL)]);
    }

    #[test]
    fn model_id_follows_the_weights() {
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join("w.bin");
        std::fs::write(&weights, b"abc").unwrap();
        let id = EmbeddingCache::model_id_for("m", &weights).unwrap();
        assert_eq!(id, "m@sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        std::fs::write(&weights, b"abd").unwrap();
        assert_ne!(EmbeddingCache::model_id_for("m", &weights).unwrap(), id);
    }

    #[test]
    fn minilm_vectors_round_trip_through_the_cache() {
        use crate::text::{MiniLmEmbedder, encode_sentences, minilm_dir, minilm_tokenizer, token_tensors};
        use candle_core::Device;
        if !crate::text::testing::models_or_skip("minilm_vectors_round_trip_through_the_cache") {
            return;
        }
        let embedder = MiniLmEmbedder::load(minilm_dir(), &Device::Cpu).unwrap();
        let tokenizer = minilm_tokenizer(minilm_dir().join("tokenizer.json")).unwrap();
        let model_id =
            EmbeddingCache::model_id_for("all-MiniLM-L6-v2", minilm_dir().join("model.safetensors")).unwrap();
        let calls = Cell::new(0);
        let embed = |batch: &[&str]| -> Result<Vec<Vec<f32>>> {
            calls.set(calls.get() + batch.len());
            let (ids, mask) = token_tensors(&encode_sentences(&tokenizer, batch)?, &Device::Cpu)?;
            Ok(embedder.embed(&ids, &mask)?.to_vec2::<f32>()?)
        };
        let texts = ["The cat sat on the mat.", "A dog ran in the park.", "The cat sat on the mat."];
        let dir = tempfile::tempdir().unwrap();
        let first =
            EmbeddingCache::open(dir.path(), &model_id, embedder.dim()).unwrap().embed_all(&texts, 2, embed).unwrap();
        assert_eq!(calls.get(), 2);
        let mut reopened = EmbeddingCache::open(dir.path(), &model_id, embedder.dim()).unwrap();
        let again = reopened.embed_all(&texts, 2, embed).unwrap();
        assert_eq!(calls.get(), 2, "nothing re-embedded after reopening");
        assert_eq!(first, again, "vectors come back bit for bit");
        let norm: f32 = first.row(1).iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
    }
}
