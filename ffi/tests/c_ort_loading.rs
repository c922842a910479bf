//! Finding and loading ONNX Runtime through the C ABI: a library that is missing, not a library, not ONNX Runtime,
//! or too old each gets its own status and a message, and the process keeps working.
//!
//! ONNX Runtime is process-global (the first successful load fixes it), so this file is its own test binary with
//! one test that walks through the failures before the successful load.

mod behaviour;

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr::null_mut;

use steer::*;
use steer_runtime::{LoadOptions, ModelKind, ort_env};

/// Loads `bundle` with ONNX Runtime taken from `library` (or discovered when None); the status and message.
fn load(bundle: &Path, library: Option<&Path>) -> (steer_status, String, *mut steer_model) {
    let dir = CString::new(bundle.to_str().unwrap()).unwrap();
    let mut options = null_mut();
    let mut model = null_mut();
    // SAFETY: valid strings, handles and out-pointers.
    unsafe {
        assert_eq!(steer_options_new(&mut options), steer_status::Ok);
        if let Some(library) = library {
            let path = CString::new(library.to_str().unwrap()).unwrap();
            assert_eq!(steer_options_set_ort_library(options, path.as_ptr()), steer_status::Ok);
        }
        let status = steer_model_load(dir.as_ptr(), options, &mut model);
        let message = CStr::from_ptr(steer_last_error_message()).to_string_lossy().into_owned();
        steer_options_free(options);
        (status, message, model)
    }
}

#[track_caller]
fn fails(bundle: &Path, library: &Path, status: steer_status, needles: &[&str]) {
    let (found, message, model) = load(bundle, Some(library));
    assert_eq!(found, status, "{message}");
    assert!(model.is_null(), "out_model is written only on success");
    assert!(message.starts_with("steer_model_load: "), "{message}");
    for needle in needles {
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
}

/// A shared library exporting `OrtGetApiBase` like ONNX Runtime, reporting `version` (None: a NULL API base).
fn fake_onnxruntime(dir: &Path, name: &str, version: Option<&str>) -> PathBuf {
    let body = match version {
        Some(version) => format!(
            "static const char *version(void) {{ return \"{version}\"; }}\n\
             static const void *api(unsigned v) {{ (void)v; return 0; }}\n\
             static const struct {{ const void *(*api)(unsigned); const char *(*version)(void); }} base = \
             {{ api, version }};\n\
             const void *OrtGetApiBase(void) {{ return &base; }}\n"
        ),
        None => "const void *OrtGetApiBase(void) { return 0; }\n".to_string(),
    };
    let source = dir.join(format!("{name}.c"));
    std::fs::write(&source, body).unwrap();
    let library = dir.join(format!("lib{name}.so"));
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("cannot run cc (install gcc)");
    assert!(status.success(), "cc failed to build {}", library.display());
    library
}

#[test]
fn each_ort_failure_has_its_own_status_then_the_real_library_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = behaviour::bundle(tmp.path(), ModelKind::Btl);
    let real = ort_env::find_onnxruntime(&LoadOptions::default()).unwrap();

    let missing = tmp.path().join("nowhere/libonnxruntime.so");
    fails(&bundle, &missing, steer_status::OrtNotFound, &["nowhere/libonnxruntime.so", "fetch-onnxruntime.sh"]);

    let garbage = tmp.path().join("libgarbage.so");
    std::fs::write(&garbage, b"not an ELF file").unwrap();
    fails(&bundle, &garbage, steer_status::OrtLoad, &["libgarbage.so", "shared library"]);

    let not_ort = real.parent().unwrap().join("libonnxruntime_providers_shared.so");
    fails(&bundle, &not_ort, steer_status::OrtNotOnnxRuntime, &["OrtGetApiBase"]);

    let old = fake_onnxruntime(tmp.path(), "old_onnxruntime", Some("1.20.0"));
    fails(&bundle, &old, steer_status::OrtVersion, &["1.20.0", "or newer"]);

    let null_base = fake_onnxruntime(tmp.path(), "null_onnxruntime", None);
    fails(&bundle, &null_base, steer_status::OrtNotOnnxRuntime, &["null_onnxruntime"]);

    // After all that, discovery finds the real library and the model works.
    let (status, message, model) = load(&bundle, None);
    assert_eq!(status, steer_status::Ok, "{message}");
    let mut dim = 0;
    // SAFETY: a live model, freed once.
    unsafe {
        assert_eq!(steer_model_embedding_dim(model, &mut dim), steer_status::Ok);
        steer_model_free(model);
    }
    assert_eq!(dim, behaviour::D);
    assert_eq!(ort_env::loaded_onnxruntime(), Some(std::fs::canonicalize(&real).unwrap()));

    // ONNX Runtime is loaded now: another library cannot be.
    fails(&bundle, &old, steer_status::OrtAlreadyLoaded, &["already loaded"]);
}
