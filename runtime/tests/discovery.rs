//! Where the runtime looks for ONNX Runtime, driven by environment variables.
//!
//! Changing the environment is process-wide, so this file has a single test and never loads the library.

use std::path::Path;

use steer_runtime::ort_env::{CACHE_DIR_ENV, ORT_DYLIB_PATH_ENV, find_onnxruntime};
use steer_runtime::{Error, ExecutionProvider, LoadOptions};

fn set(name: &str, value: Option<&Path>) {
    // SAFETY: this test binary runs one test on one thread, so nothing reads the environment concurrently.
    unsafe {
        match value {
            Some(value) => std::env::set_var(name, value),
            None => std::env::remove_var(name),
        }
    }
}

fn searched(err: Error) -> Vec<String> {
    match err {
        Error::OrtNotFound { searched, .. } => searched.iter().map(ToString::to_string).collect(),
        other => panic!("expected OrtNotFound, got {other:?}"),
    }
}

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"").unwrap();
}

#[test]
fn search_order_is_options_then_ort_dylib_path_then_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cpu = LoadOptions::default();

    // ORT_DYLIB_PATH, when set, is the only place looked at.
    let env_lib = tmp.path().join("env/libonnxruntime.so");
    set(ORT_DYLIB_PATH_ENV, Some(&env_lib));
    set(CACHE_DIR_ENV, None);
    let err = find_onnxruntime(&cpu).unwrap_err();
    assert_eq!(err.code(), 200);
    assert!(err.to_string().contains("scripts/fetch-onnxruntime.sh"), "{err}");
    assert_eq!(searched(err), [format!("{} (ORT_DYLIB_PATH)", env_lib.display())]);
    touch(&env_lib);
    assert_eq!(find_onnxruntime(&cpu).unwrap(), env_lib);

    // An explicit path in LoadOptions comes first.
    let explicit = tmp.path().join("explicit/libonnxruntime.so");
    touch(&explicit);
    assert_eq!(find_onnxruntime(&cpu.clone().ort_library(&explicit)).unwrap(), explicit);

    // STEER_CACHE_DIR replaces the project cache search.
    set(ORT_DYLIB_PATH_ENV, None);
    let cache = tmp.path().join("cache");
    set(CACHE_DIR_ENV, Some(&cache));
    let cpu_lib = cache.join("onnxruntime/libonnxruntime.so");
    let gpu_lib = cache.join("onnxruntime-gpu/libonnxruntime.so");
    assert_eq!(searched(find_onnxruntime(&cpu).unwrap_err()), [format!("{} (STEER_CACHE_DIR)", cpu_lib.display())]);
    let gpu = cpu.clone().execution_providers([ExecutionProvider::Cuda { device_id: 0 }]);
    assert_eq!(
        searched(find_onnxruntime(&gpu).unwrap_err()),
        [format!("{} (STEER_CACHE_DIR)", gpu_lib.display()), format!("{} (STEER_CACHE_DIR)", cpu_lib.display())]
    );
    touch(&cpu_lib);
    assert_eq!(find_onnxruntime(&cpu).unwrap(), cpu_lib);
    assert_eq!(find_onnxruntime(&gpu).unwrap(), cpu_lib);
    touch(&gpu_lib);
    assert_eq!(find_onnxruntime(&gpu).unwrap(), gpu_lib);
    assert_eq!(find_onnxruntime(&cpu).unwrap(), cpu_lib);

    // Neither variable: the cache above the current directory (cargo runs tests in runtime/, below the workspace),
    // else the one above the executable or the workspace's.
    set(CACHE_DIR_ENV, None);
    let cwd = tmp.path().join("project/sub/dir");
    std::fs::create_dir_all(&cwd).unwrap();
    let project_lib = tmp.path().join("project/.cache/onnxruntime/libonnxruntime.so");
    touch(&project_lib);
    let previous = std::env::current_dir().unwrap();
    std::env::set_current_dir(&cwd).unwrap();
    let found = find_onnxruntime(&cpu);
    std::fs::remove_file(&project_lib).unwrap();
    let fallback = find_onnxruntime(&cpu);
    std::env::set_current_dir(previous).unwrap();
    assert_eq!(found.unwrap(), project_lib);
    match fallback {
        Ok(path) => assert!(path.ends_with(".cache/onnxruntime/libonnxruntime.so"), "{}", path.display()),
        Err(err) => {
            let places = searched(err);
            assert!(places.iter().any(|p| p.contains("project cache above the current directory")));
            assert!(places.iter().any(|p| p.contains("project cache above the executable")));
            assert!(places.last().unwrap().contains("workspace cache"));
        }
    }
}
