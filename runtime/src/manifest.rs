//! The bundle format: a folder holding `manifest.json` and the ONNX graphs it lists.
//!
//! The runtime owns this format. The trainer writes bundles with these same types, so the format has
//! exactly one definition. A bundle is validated as a whole before anything is loaded from it.

use std::fs;
use std::io::Read;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::policy_spec::PolicySpec;
use crate::text::TextSpec;

/// The manifest file name inside a bundle folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The bundle format version this runtime reads and the trainer writes.
pub const FORMAT_VERSION: u32 = 1;
/// The lowest ONNX opset a bundle may use.
pub const MIN_OPSET: i64 = 17;

/// Input and output names of the exported graphs. Trainer and runtime both use these constants.
pub mod io {
    /// Encoder input: context pairs `[batch, k, 2 * embedding_dim]`, each row `[chosen ‖ rejected]`.
    pub const CONTEXT: &str = "context";
    /// Encoder input: `[batch, k]`, 1.0 for a real pair and 0.0 for padding.
    pub const MASK: &str = "mask";
    /// Encoder output and reward input: the user profile `[batch, latent_dim]`.
    pub const Z: &str = "z";
    /// Reward input: option embeddings `[batch, n, embedding_dim]`.
    pub const OPTIONS: &str = "options";
    /// Reward output: `[batch, n]` rewards (for DPL, the mean of the reward distribution).
    pub const REWARD: &str = "reward";
    /// DPL only: `[batch, n]` standard deviation of the reward distribution.
    pub const REWARD_STD: &str = "reward_std";
    /// Embedder input: token ids, int64 `[batch, seq]`.
    pub const INPUT_IDS: &str = "input_ids";
    /// Embedder input: int64 `[batch, seq]`, 1 for a token and 0 for padding.
    pub const ATTENTION_MASK: &str = "attention_mask";
    /// Embedder output: option embeddings `[batch, embedding_dim]`.
    pub const EMBEDDING: &str = "embedding";
}

/// Which model a bundle holds; decides the graphs it must contain and how preferences are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ModelKind {
    /// Neural-process Bradley-Terry-Luce: context encoder plus a reward conditioned on z.
    #[serde(rename = "np-btl")]
    NpBtl,
    /// Plain Bradley-Terry-Luce reward model, unconditioned (one model for everyone).
    #[serde(rename = "btl")]
    Btl,
    /// Distributional preference learning: a mean and a std per option, unconditioned.
    #[serde(rename = "dpl")]
    Dpl,
}

impl ModelKind {
    /// The name used in manifests and reports (`np-btl`, `btl`, `dpl`).
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::NpBtl => "np-btl",
            ModelKind::Btl => "btl",
            ModelKind::Dpl => "dpl",
        }
    }

    /// Whether the model reads a user's context (has an encoder graph and a `z` input).
    pub fn is_conditioned(self) -> bool {
        matches!(self, ModelKind::NpBtl)
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sizes every graph in the bundle agrees on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dims {
    /// Size of one option embedding `d` (1 for the synthetic 1-D task).
    pub embedding_dim: usize,
    /// Size of the profile vector z; 0 for unconditioned models.
    pub latent_dim: usize,
}

/// One file of the bundle with its checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the bundle folder; plain file names only.
    pub path: String,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// The graphs of a bundle, by role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graphs {
    /// Context encoder (`context`, `mask` → `z`); present only for conditioned models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<String>,
    /// Reward graph (`options`[, `z`] → `reward`[, `reward_std`]).
    pub reward: String,
}

/// The content of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Bundle format version; must equal [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Which model the bundle holds.
    pub model_kind: ModelKind,
    /// Shared sizes.
    pub dims: Dims,
    /// ONNX opset of every graph (at least [`MIN_OPSET`]).
    pub opset: i64,
    /// The graphs by role.
    pub graphs: Graphs,
    /// Every file of the bundle with its SHA-256.
    pub files: Vec<FileEntry>,
    /// For text bundles: the tokenizer, the embedder graph and the tokenization rule ([`TextSpec`]). Bundles
    /// without it take option embeddings only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextSpec>,
    /// For steerable-policy bundles: the conditioned language model ([`PolicySpec`]). It needs an np-btl text
    /// bundle: z comes from the bundle's encoder, and the reward ranks samples (best-of-n).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicySpec>,
    /// What wrote the bundle, e.g. `steer-trainer 0.1.0`.
    pub producer: String,
    /// The training configuration, saved with the model.
    #[serde(default)]
    pub training: serde_json::Value,
    /// Metrics measured at training time (validation accuracy and the like).
    #[serde(default)]
    pub metrics: serde_json::Value,
}

impl Manifest {
    /// Reads `dir/manifest.json` and checks everything about the bundle that can be checked without
    /// ONNX Runtime: format version, opset, dims, the graphs the kind needs, and every file's hash.
    pub fn load_and_verify(dir: &Path) -> Result<Manifest> {
        if !dir.is_dir() {
            return Err(Error::BundleNotFound { path: dir.to_path_buf() });
        }
        let path = dir.join(MANIFEST_FILE);
        let text = fs::read_to_string(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
        // Check the version before the full schema, so an old runtime reading a newer bundle says so.
        let probe: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::ManifestParse { path: path.clone(), message: e.to_string() })?;
        let version = probe.get("format_version").and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(FORMAT_VERSION)) {
            return Err(Error::UnsupportedFormatVersion {
                found: probe.get("format_version").map(|v| v.to_string()).unwrap_or_else(|| "none".into()),
                supported: FORMAT_VERSION,
            });
        }
        let manifest: Manifest = serde_json::from_value(probe)
            .map_err(|e| Error::ManifestParse { path: path.clone(), message: e.to_string() })?;
        manifest.check_consistency()?;
        for entry in &manifest.files {
            let file = dir.join(&entry.path);
            if !file.is_file() {
                return Err(Error::MissingFile { path: file });
            }
            let actual = sha256_file(&file)?;
            if actual != entry.sha256 {
                return Err(Error::HashMismatch { path: file, expected: entry.sha256.clone(), actual });
            }
        }
        Ok(manifest)
    }

    /// Checks the manifest's own fields against each other (no file access).
    pub fn check_consistency(&self) -> Result<()> {
        let bad = |field: &str, expected: &str, found: String| {
            Err(Error::InvalidManifest { field: field.to_string(), expected: expected.to_string(), found })
        };
        if self.opset < MIN_OPSET {
            return bad("opset", &format!(">= {MIN_OPSET}"), self.opset.to_string());
        }
        if self.dims.embedding_dim == 0 {
            return bad("dims.embedding_dim", ">= 1", "0".into());
        }
        match (self.model_kind.is_conditioned(), self.dims.latent_dim, &self.graphs.encoder) {
            (true, 0, _) => return bad("dims.latent_dim", ">= 1 for np-btl", "0".into()),
            (true, _, None) => return bad("graphs.encoder", "an encoder graph for np-btl", "none".into()),
            (false, d, _) if d != 0 => return bad("dims.latent_dim", "0 for unconditioned models", d.to_string()),
            (false, _, Some(e)) => return bad("graphs.encoder", "no encoder for unconditioned models", e.clone()),
            _ => {}
        }
        for entry in &self.files {
            let mut parts = Path::new(&entry.path).components();
            let plain = matches!((parts.next(), parts.next()), (Some(Component::Normal(_)), None));
            if !plain {
                return bad("files[].path", "a plain file name inside the bundle", entry.path.clone());
            }
        }
        if let Some(policy) = &self.policy {
            if self.model_kind != ModelKind::NpBtl || self.text.is_none() {
                return bad("policy", "a policy only in an np-btl text bundle", self.model_kind.to_string());
            }
            if !policy.chat_template.contains("{prompt}") {
                return bad("policy.chat_template", "a template containing {prompt}", policy.chat_template.clone());
            }
            if policy.num_layers == 0 || policy.num_kv_heads == 0 || policy.head_dim == 0 || policy.vocab_size == 0 {
                return bad("policy", "non-zero num_layers, num_kv_heads, head_dim and vocab_size", "0".into());
            }
        }
        let text_files = self.text.iter().flat_map(|text| [&text.embedder, &text.tokenizer]);
        let policy_files = self.policy.iter().flat_map(|policy| [&policy.graph, &policy.tokenizer]);
        let graphs = self
            .graphs
            .encoder
            .iter()
            .chain(std::iter::once(&self.graphs.reward))
            .chain(text_files)
            .chain(policy_files);
        for graph in graphs {
            if !self.files.iter().any(|f| &f.path == graph) {
                return bad("files", &format!("an entry for {graph}"), "none".into());
            }
        }
        Ok(())
    }

    /// Writes the manifest as pretty JSON to `dir/manifest.json` ([`crate::producer::save_manifest`]).
    pub(crate) fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::ManifestParse { path: path.clone(), message: e.to_string() })?;
        fs::write(&path, text).map_err(|source| Error::Io { path, source })
    }
}

/// Lower-case hex SHA-256 of a file, read in chunks ([`crate::producer::sha256_file`]).
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let io_err = |source| Error::Io { path: path.to_path_buf(), source };
    let mut file = fs::File::open(path).map_err(io_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
