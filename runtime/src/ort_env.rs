//! Finding the ONNX Runtime shared library and loading it, once per process.
//!
//! # Search order
//!
//! The first source that is set decides; an explicit path that does not exist is an error, not a reason to keep
//! looking. A relative explicit path is taken relative to the current directory.
//!
//! 1. [`LoadOptions::ort_library`](crate::LoadOptions::ort_library).
//! 2. The environment variable `ORT_DYLIB_PATH`.
//! 3. The project cache, where `scripts/fetch-onnxruntime.sh` puts the library:
//!    - `$STEER_CACHE_DIR/onnxruntime/libonnxruntime.so` when `STEER_CACHE_DIR` is set (and only there);
//!    - otherwise `.cache/onnxruntime/libonnxruntime.so` in the current directory or any of its ancestors, then in
//!      the executable's directory or any of its ancestors, then in the workspace this crate was built from.
//!
//!    When a GPU provider is requested, each cache folder is first searched for `onnxruntime-gpu/` (written by
//!    `scripts/fetch-onnxruntime.sh --gpu`), then for `onnxruntime/`.
//!
//! When nothing is found, [`Error::OrtNotFound`] lists every place searched and how to fetch the library.
//!
//! # One library per process
//!
//! ONNX Runtime is process-global: the first successful load fixes the library for the life of the process, and all
//! models share one ONNX Runtime environment. A later load that names a different file (through `LoadOptions` or
//! `ORT_DYLIB_PATH`) fails with [`Error::OrtAlreadyLoaded`]. Steer should be the only code in the process that loads
//! ONNX Runtime through `ort`.
//!
//! The library must be ONNX Runtime 1.[`REQUIRED_MINOR`] or newer (the `ort` crate is built against that API
//! version). ONNX Runtime's own log level follows `ORT_LOG` (`error` by default).

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use ort::environment::Environment;

use crate::error::{Error, Result};
use crate::options::LoadOptions;

/// Environment variable naming the ONNX Runtime library file (the same one the `ort` crate reads).
pub const ORT_DYLIB_PATH_ENV: &str = "ORT_DYLIB_PATH";
/// Environment variable overriding the project cache folder.
pub const CACHE_DIR_ENV: &str = "STEER_CACHE_DIR";
/// The lowest ONNX Runtime minor version (`1.N`) this build can use.
pub const REQUIRED_MINOR: u32 = ort::MINOR_VERSION;

/// Sub-folders of a cache folder that hold the CPU and GPU builds.
const CPU_CACHE_SUBDIR: &str = "onnxruntime";
const GPU_CACHE_SUBDIR: &str = "onnxruntime-gpu";
/// The workspace's cache folder, as seen when this crate was compiled.
const WORKSPACE_CACHE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache");

/// Where a candidate library location came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LibrarySource {
    /// [`LoadOptions::ort_library`](crate::LoadOptions::ort_library).
    LoadOptions,
    /// The `ORT_DYLIB_PATH` environment variable.
    OrtDylibPath,
    /// The `STEER_CACHE_DIR` environment variable.
    SteerCacheDir,
    /// A `.cache` folder in the current directory or one of its ancestors.
    CurrentDir,
    /// A `.cache` folder in the executable's directory or one of its ancestors.
    ExecutableDir,
    /// The `.cache` folder of the workspace this crate was built from.
    Workspace,
}

impl fmt::Display for LibrarySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LibrarySource::LoadOptions => "LoadOptions::ort_library",
            LibrarySource::OrtDylibPath => "ORT_DYLIB_PATH",
            LibrarySource::SteerCacheDir => "STEER_CACHE_DIR",
            LibrarySource::CurrentDir => "project cache above the current directory",
            LibrarySource::ExecutableDir => "project cache above the executable",
            LibrarySource::Workspace => "workspace cache",
        })
    }
}

/// One place the library was looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchedLocation {
    /// The file that was checked.
    pub path: PathBuf,
    /// Why it was checked.
    pub source: LibrarySource,
}

impl fmt::Display for SearchedLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.path.display(), self.source)
    }
}

/// The platform's file name for the library: `libonnxruntime.so` on Linux.
pub fn library_file_name() -> String {
    format!("{}onnxruntime{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
}

/// Finds the ONNX Runtime library without loading it, following the [search order](self).
pub fn find_onnxruntime(options: &LoadOptions) -> Result<PathBuf> {
    find(options).map(|found| found.path)
}

/// Loads ONNX Runtime (once per process), creates its environment, and returns the library file in use, resolved
/// to its real path.
pub fn load_onnxruntime(options: &LoadOptions) -> Result<PathBuf> {
    let mut state = lock_state();
    state.ensure_environment(options)?;
    state.ensure_library(options)
}

/// The library ONNX Runtime was loaded from in this process, if it has been loaded.
pub fn loaded_onnxruntime() -> Option<PathBuf> {
    lock_state().library.clone()
}

/// The process-wide ONNX Runtime environment, loading the library first if needed
/// ([`crate::producer::ort_environment`] for tools that open graphs themselves).
pub(crate) fn environment(options: &LoadOptions) -> Result<Environment> {
    lock_state().ensure_environment(options)
}

/// What this process has loaded. `library` is set as soon as the library is in (that cannot be undone), `env` once
/// the environment exists.
struct OrtState {
    library: Option<PathBuf>,
    env: Option<Environment>,
}

static STATE: Mutex<OrtState> = Mutex::new(OrtState { library: None, env: None });

/// The state is only written after each step succeeds, so a poisoned lock still holds consistent data.
fn lock_state() -> std::sync::MutexGuard<'static, OrtState> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

impl OrtState {
    /// Loads the library unless one is loaded, and returns the one in use. A different explicit request is an error.
    fn ensure_library(&mut self, options: &LoadOptions) -> Result<PathBuf> {
        if let Some(loaded) = &self.library {
            if let Some(requested) = explicit_candidate(options) {
                let requested = canonical(&requested)?;
                if &requested != loaded {
                    return Err(Error::OrtAlreadyLoaded { loaded: loaded.clone(), requested });
                }
            }
            return Ok(loaded.clone());
        }
        let path = canonical(&find(options)?)?;
        load_library(&path)?;
        self.library = Some(path.clone());
        Ok(path)
    }

    fn ensure_environment(&mut self, options: &LoadOptions) -> Result<Environment> {
        self.ensure_library(options)?;
        if let Some(env) = &self.env {
            return Ok(env.clone());
        }
        let env = create_environment()?;
        self.env = Some(env.clone());
        Ok(env)
    }
}

/// The first candidate that exists.
fn find(options: &LoadOptions) -> Result<SearchedLocation> {
    let mut candidates = candidates(options);
    match candidates.iter().position(|c| c.path.is_file()) {
        Some(found) => Ok(candidates.swap_remove(found)),
        None => Err(Error::OrtNotFound { searched: candidates, required_minor: REQUIRED_MINOR }),
    }
}

/// The explicit library request (LoadOptions, then `ORT_DYLIB_PATH`), if any.
fn explicit_candidate(options: &LoadOptions) -> Option<SearchedLocation> {
    if let Some(path) = &options.ort_library {
        return Some(SearchedLocation { path: path.clone(), source: LibrarySource::LoadOptions });
    }
    non_empty_env(ORT_DYLIB_PATH_ENV)
        .map(|path| SearchedLocation { path: PathBuf::from(path), source: LibrarySource::OrtDylibPath })
}

/// Every location to try, in order.
fn candidates(options: &LoadOptions) -> Vec<SearchedLocation> {
    if let Some(explicit) = explicit_candidate(options) {
        return vec![explicit];
    }
    let file = library_file_name();
    let subdirs: &[&str] =
        if options.wants_gpu() { &[GPU_CACHE_SUBDIR, CPU_CACHE_SUBDIR] } else { &[CPU_CACHE_SUBDIR] };
    let mut found: Vec<SearchedLocation> = Vec::new();
    let mut add = |cache: &Path, source: LibrarySource| {
        for subdir in subdirs {
            let path = cache.join(subdir).join(&file);
            if !found.iter().any(|c| c.path == path) {
                found.push(SearchedLocation { path, source });
            }
        }
    };
    if let Some(dir) = non_empty_env(CACHE_DIR_ENV) {
        add(Path::new(&dir), LibrarySource::SteerCacheDir);
        return found;
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            add(&dir.join(".cache"), LibrarySource::CurrentDir);
        }
    }
    if let Some(exe_dir) = std::env::current_exe().ok().as_deref().and_then(Path::parent) {
        for dir in exe_dir.ancestors() {
            add(&dir.join(".cache"), LibrarySource::ExecutableDir);
        }
    }
    let workspace = Path::new(WORKSPACE_CACHE);
    add(&std::fs::canonicalize(workspace).unwrap_or_else(|_| workspace.to_path_buf()), LibrarySource::Workspace);
    found
}

fn non_empty_env(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|value| !value.is_empty())
}

/// The real path of a library location; a missing file is [`Error::OrtNotFound`].
fn canonical(location: &SearchedLocation) -> Result<PathBuf> {
    std::fs::canonicalize(&location.path)
        .ok()
        .filter(|path| path.is_file())
        .ok_or_else(|| Error::OrtNotFound { searched: vec![location.clone()], required_minor: REQUIRED_MINOR })
}

/// Loads the library into `ort`. `ort` checks that it exports `OrtGetApiBase` and that its version is recent
/// enough; it asserts on a null API base, so the call runs behind a panic boundary.
fn load_library(path: &Path) -> Result<()> {
    use ort::LoadDynamicError as E;
    let outcome = catch_unwind(|| ort::init_from(path).map(drop)).map_err(|panic| Error::OrtNotOnnxRuntime {
        path: path.to_path_buf(),
        message: format!("loading it panicked: {}", panic_message(panic.as_ref())),
    })?;
    outcome.map_err(|err| match err {
        E::Dlopen { error, .. } => Error::OrtLoad { path: path.to_path_buf(), message: error.to_string() },
        E::MissingApi { .. } => {
            Error::OrtNotOnnxRuntime { path: path.to_path_buf(), message: "it does not export `OrtGetApiBase`".into() }
        }
        E::InvalidVersionString => Error::OrtNotOnnxRuntime {
            path: path.to_path_buf(),
            message: "its `GetVersionString` returned a malformed string".into(),
        },
        E::BadVersion { version_str, .. } => {
            Error::OrtVersion { path: path.to_path_buf(), found: version_str, required_minor: REQUIRED_MINOR }
        }
    })
}

/// Creates the process-wide environment. Telemetry is off (these machines are offline, and it is not ours to send).
fn create_environment() -> Result<Environment> {
    let built = catch_unwind(AssertUnwindSafe(|| ort::init().with_name("steer").with_telemetry(false).build()));
    match built {
        Ok(Ok(env)) => Ok(env),
        Ok(Err(err)) => Err(Error::OrtEnvironment { message: err.to_string() }),
        Err(panic) => Err(Error::OrtEnvironment { message: format!("panicked: {}", panic_message(panic.as_ref())) }),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(message), _) => (*message).to_string(),
        (None, Some(message)) => message.clone(),
        (None, None) => "unknown panic".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_path_is_the_only_candidate() {
        let options = LoadOptions::default().ort_library("/nowhere/libonnxruntime.so");
        let found = candidates(&options);
        assert_eq!(
            found,
            [SearchedLocation { path: "/nowhere/libonnxruntime.so".into(), source: LibrarySource::LoadOptions }]
        );
    }

    #[test]
    fn missing_explicit_path_is_not_found_and_says_how_to_fetch() {
        let options = LoadOptions::default().ort_library("/nowhere/libonnxruntime.so");
        let err = find_onnxruntime(&options).unwrap_err();
        assert_eq!(err.code(), 200);
        let message = err.to_string();
        assert!(message.contains("/nowhere/libonnxruntime.so (LoadOptions::ort_library)"), "{message}");
        assert!(message.contains("scripts/fetch-onnxruntime.sh"), "{message}");
        assert!(message.contains("ORT_DYLIB_PATH"), "{message}");
    }

    #[test]
    fn cache_candidates_include_the_workspace_and_prefer_gpu_when_asked() {
        // Only meaningful when neither variable is set (the usual case for `cargo test`).
        if non_empty_env(ORT_DYLIB_PATH_ENV).is_some() || non_empty_env(CACHE_DIR_ENV).is_some() {
            return;
        }
        let cpu = candidates(&LoadOptions::default());
        assert!(cpu.iter().all(|c| c.path.ends_with("onnxruntime/libonnxruntime.so")));
        let workspace = Path::new(WORKSPACE_CACHE);
        let workspace = std::fs::canonicalize(workspace).unwrap_or_else(|_| workspace.to_path_buf());
        assert!(cpu.iter().any(|c| c.path == workspace.join("onnxruntime").join(library_file_name())));
        assert_eq!(cpu.first().map(|c| c.source), Some(LibrarySource::CurrentDir));

        let gpu = candidates(
            &LoadOptions::default()
                .execution_providers([crate::ExecutionProvider::Cuda { device_id: 0 }])
                .allow_cpu_fallback(true),
        );
        assert!(gpu[0].path.ends_with("onnxruntime-gpu/libonnxruntime.so"));
        assert!(gpu[1].path.ends_with("onnxruntime/libonnxruntime.so"));
        assert_eq!(gpu[0].path.parent().and_then(Path::parent), gpu[1].path.parent().and_then(Path::parent));
    }
}
