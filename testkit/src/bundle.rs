//! Writing fixture files as a bundle: the files, then a manifest listing them with their hashes.

use std::path::{Path, PathBuf};

use steer_runtime::manifest::{FORMAT_VERSION, FileEntry, Graphs, MANIFEST_FILE};
use steer_runtime::producer::{save_manifest, sha256_file};
use steer_runtime::{Dims, Manifest, ModelKind, TextSpec};

use crate::arithmetic::{encoder_graph, reward_graph};

/// Writes `files` into `dir` and a manifest listing them with their hashes.
pub fn write_bundle(dir: &Path, kind: ModelKind, dims: Dims, files: &[(&str, Vec<u8>)]) -> Manifest {
    write_bundle_with_text(dir, kind, dims, files, None)
}

/// [`write_bundle`] with a text spec in the manifest.
pub fn write_bundle_with_text(
    dir: &Path,
    kind: ModelKind,
    dims: Dims,
    files: &[(&str, Vec<u8>)],
    text: Option<TextSpec>,
) -> Manifest {
    std::fs::create_dir_all(dir).expect("cannot create the bundle folder");
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).expect("cannot write a bundle file");
    }
    let entries = files
        .iter()
        .map(|(name, _)| FileEntry {
            path: name.to_string(),
            sha256: sha256_file(&dir.join(name)).expect("cannot hash a bundle file"),
        })
        .collect();
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        model_kind: kind,
        dims,
        opset: steer_onnx::OPSET,
        graphs: Graphs {
            encoder: kind.is_conditioned().then(|| "encoder.onnx".to_string()),
            reward: "reward.onnx".to_string(),
        },
        files: entries,
        text,
        policy: None,
        producer: "steer-testkit".into(),
        training: serde_json::Value::Null,
        metrics: serde_json::Value::Null,
    };
    save_manifest(&manifest, dir).expect("cannot write the manifest");
    manifest
}

/// A bundle of `kind` with the [arithmetic](crate::arithmetic) graphs, matching `dims`.
pub fn test_bundle(dir: &Path, kind: ModelKind, dims: Dims) -> PathBuf {
    let (d, latent) = (dims.embedding_dim, dims.latent_dim);
    let mut files = vec![("reward.onnx", reward_graph(kind, d, latent).into_bytes())];
    if kind.is_conditioned() {
        files.push(("encoder.onnx", encoder_graph(d, latent).into_bytes()));
    }
    write_bundle(dir, kind, dims, &files);
    dir.to_path_buf()
}

/// Replaces `file` in the bundle and records its new hash in the manifest, so only the content differs.
pub fn replace_file(dir: &Path, file: &str, bytes: &[u8]) {
    std::fs::write(dir.join(file), bytes).expect("cannot write the file");
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).expect("cannot read the manifest");
    let mut manifest: Manifest = serde_json::from_str(&text).expect("the manifest parses");
    let entry = manifest.files.iter_mut().find(|f| f.path == file).expect("the file is in the manifest");
    entry.sha256 = sha256_file(&dir.join(file)).expect("cannot hash the file");
    save_manifest(&manifest, dir).expect("cannot write the manifest");
}
