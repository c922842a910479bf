//! Loading the ONNX Runtime library: every failure has its own error, and a process holds one library.
//!
//! ONNX Runtime is process-global, so this file has a single test that walks through the failures before the one
//! successful load (a test binary is one process).

use steer_testkit as common;

use std::path::{Path, PathBuf};
use std::process::Command;

use steer_runtime::ort_env::{self, REQUIRED_MINOR};
use steer_runtime::{Error, LoadOptions};

fn load(path: &Path) -> Result<PathBuf, Error> {
    ort_env::load_onnxruntime(&LoadOptions::default().ort_library(path))
}

/// Builds a shared library that exports `OrtGetApiBase` like ONNX Runtime does, reporting `version` (or returning
/// a null API base). Returns None when no C compiler is installed.
fn fake_onnxruntime(dir: &Path, name: &str, version: Option<&str>) -> Option<PathBuf> {
    let source = dir.join(format!("{name}.c"));
    let body = match version {
        Some(version) => format!(
            "static const char *version(void) {{ return \"{version}\"; }}\n\
             static const void *get_api(unsigned v) {{ (void)v; return 0; }}\n\
             static const struct {{ const void *(*get_api)(unsigned); const char *(*version)(void); }} base = \
             {{ get_api, version }};\n\
             const void *OrtGetApiBase(void) {{ return &base; }}\n"
        ),
        None => "const void *OrtGetApiBase(void) { return 0; }\n".to_string(),
    };
    std::fs::write(&source, body).unwrap();
    let library = dir.join(format!("{name}.so"));
    let compiled = Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&library).arg(&source).status();
    match compiled {
        Ok(status) if status.success() => Some(library),
        _ => {
            eprintln!("no working C compiler; skipping the fake-library checks");
            None
        }
    }
}

#[test]
fn each_load_failure_has_its_own_error_and_one_library_wins() {
    common::ensure_ort();
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(ort_env::loaded_onnxruntime(), None);

    // A path that does not exist.
    let missing = tmp.path().join("nowhere/libonnxruntime.so");
    let err = load(&missing).unwrap_err();
    assert_eq!(err.code(), 200, "{err}");
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");

    // A file that is not a shared library.
    let garbage = tmp.path().join("garbage.so");
    std::fs::write(&garbage, b"this is not an ELF file").unwrap();
    let err = load(&garbage).unwrap_err();
    assert_eq!(err.code(), 201, "{err}");
    assert!(matches!(&err, Error::OrtLoad { path, .. } if path.ends_with("garbage.so")), "{err}");

    // A real shared library that is not ONNX Runtime (it ships next to it).
    let real = ort_env::find_onnxruntime(&LoadOptions::default()).unwrap();
    let providers_shared = real.parent().unwrap().join("libonnxruntime_providers_shared.so");
    let err = load(&providers_shared).unwrap_err();
    assert_eq!(err.code(), 202, "{err}");
    assert!(err.to_string().contains("OrtGetApiBase"), "{err}");

    if let Some(old) = fake_onnxruntime(tmp.path(), "old", Some("1.30.0")) {
        let err = load(&old).unwrap_err();
        assert_eq!(err.code(), 203, "{err}");
        assert!(
            matches!(&err, Error::OrtVersion { found, required_minor, .. } if found == "1.30.0" && *required_minor == REQUIRED_MINOR),
            "{err}"
        );
    }
    if let Some(null_base) = fake_onnxruntime(tmp.path(), "null_base", None) {
        // `ort` asserts on a null API base; the runtime turns that panic into an error.
        let err = load(&null_base).unwrap_err();
        assert_eq!(err.code(), 202, "{err}");
    }
    assert_eq!(ort_env::loaded_onnxruntime(), None, "failed loads must not count as loaded");

    // The real library, found by discovery; loading again is a no-op.
    let loaded = ort_env::load_onnxruntime(&LoadOptions::default()).unwrap();
    assert_eq!(loaded, std::fs::canonicalize(&real).unwrap());
    assert_eq!(ort_env::loaded_onnxruntime(), Some(loaded.clone()));
    assert_eq!(ort_env::load_onnxruntime(&LoadOptions::default()).unwrap(), loaded);
    // Asking for the same file by another name (the symlink) is fine.
    assert_eq!(load(&real).unwrap(), loaded);

    // Asking for a different file now names both.
    let err = load(&garbage).unwrap_err();
    assert_eq!(err.code(), 204, "{err}");
    match err {
        Error::OrtAlreadyLoaded { loaded: in_use, requested } => {
            assert_eq!(in_use, loaded);
            assert!(requested.ends_with("garbage.so"));
        }
        other => panic!("{other:?}"),
    }
}
