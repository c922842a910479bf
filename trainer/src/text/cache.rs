//! Where `scripts/fetch-models.sh` puts the pretrained text models.

use std::path::{Path, PathBuf};

/// The environment variable that moves the project cache (the same one the runtime reads for ONNX Runtime).
pub const CACHE_DIR_ENV: &str = "STEER_CACHE_DIR";
/// The folder under `models/` holding all-MiniLM-L6-v2's `model.safetensors`, `tokenizer.json` and `config.json`.
pub const MINILM_DIR: &str = "all-minilm-l6-v2";
/// The folder under `models/` holding the SmolLM2 GGUF file.
pub const SMOLLM2_DIR: &str = "smollm2-135m-instruct";
/// The SmolLM2-135M-Instruct GGUF file name (4-bit Q4_1 weights plus the tokenizer in its metadata).
pub const SMOLLM2_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The workspace this crate was built from; its `.cache` is the last place searched.
const WORKSPACE_CACHE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache");

/// The folder holding the fetched models: `$STEER_CACHE_DIR/models` when that variable is set, otherwise the first
/// `.cache/models` found in the current directory or its ancestors, otherwise the workspace's `.cache/models`.
///
/// The folder may not exist yet; run `scripts/fetch-models.sh` (or `make models`) to fill it.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_DIR_ENV).filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir).join("models");
    }
    if let Ok(cwd) = std::env::current_dir()
        && let Some(found) = cwd.ancestors().map(|dir| dir.join(".cache/models")).find(|dir| dir.is_dir())
    {
        return found;
    }
    Path::new(WORKSPACE_CACHE).join("models")
}

/// The SmolLM2-135M-Instruct GGUF file inside [`models_dir`].
pub fn smollm2_gguf_path() -> PathBuf {
    models_dir().join(SMOLLM2_DIR).join(SMOLLM2_GGUF)
}

/// The all-MiniLM-L6-v2 folder inside [`models_dir`].
pub fn minilm_dir() -> PathBuf {
    models_dir().join(MINILM_DIR)
}
