//! How a bundle is loaded: which ONNX Runtime library, which execution providers, how many threads and sessions.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A hardware backend ONNX Runtime can run a graph on.
///
/// ONNX Runtime always keeps the CPU as its last resort for nodes an accelerator cannot run, so CPU is always part
/// of a model's active providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ExecutionProvider {
    /// The default CPU provider; always available.
    Cpu,
    /// NVIDIA CUDA; needs the `cuda` feature and the GPU build of ONNX Runtime.
    Cuda {
        /// The CUDA device ordinal.
        device_id: i32,
    },
    /// NVIDIA TensorRT; needs the `tensorrt` feature and the GPU build of ONNX Runtime.
    TensorRt {
        /// The CUDA device ordinal.
        device_id: i32,
    },
}

impl ExecutionProvider {
    /// The name ONNX Runtime uses for this provider, e.g. `CUDAExecutionProvider`.
    pub fn ort_name(self) -> &'static str {
        match self {
            ExecutionProvider::Cpu => "CPUExecutionProvider",
            ExecutionProvider::Cuda { .. } => "CUDAExecutionProvider",
            ExecutionProvider::TensorRt { .. } => "TensorrtExecutionProvider",
        }
    }

    /// Whether this build of steer-runtime can register the provider (its Cargo feature is on).
    pub fn is_compiled_in(self) -> bool {
        match self {
            ExecutionProvider::Cpu => true,
            ExecutionProvider::Cuda { .. } => cfg!(feature = "cuda"),
            ExecutionProvider::TensorRt { .. } => cfg!(feature = "tensorrt"),
        }
    }

    /// Whether this is a GPU provider (one that needs the GPU build of ONNX Runtime).
    pub fn is_gpu(self) -> bool {
        !matches!(self, ExecutionProvider::Cpu)
    }
}

impl fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecutionProvider::Cpu => f.write_str("CPU"),
            ExecutionProvider::Cuda { device_id } => write!(f, "CUDA (device {device_id})"),
            ExecutionProvider::TensorRt { device_id } => write!(f, "TensorRT (device {device_id})"),
        }
    }
}

/// Options for [`Model::load`](crate::Model::load); build with the consuming setters, check happens at load.
///
/// ```
/// use steer_runtime::{ExecutionProvider, LoadOptions};
///
/// let options = LoadOptions::default()
///     .execution_providers([ExecutionProvider::Cuda { device_id: 0 }, ExecutionProvider::Cpu])
///     .allow_cpu_fallback(true)
///     .session_pool_size(4);
/// assert!(options.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadOptions {
    pub(crate) ort_library: Option<PathBuf>,
    pub(crate) execution_providers: Vec<ExecutionProvider>,
    pub(crate) allow_cpu_fallback: bool,
    pub(crate) intra_op_threads: usize,
    pub(crate) session_pool_size: usize,
}

impl Default for LoadOptions {
    /// CPU only, no fallback, one intra-op thread, one session per graph, library found by discovery.
    fn default() -> Self {
        LoadOptions {
            ort_library: None,
            execution_providers: vec![ExecutionProvider::Cpu],
            allow_cpu_fallback: false,
            intra_op_threads: 1,
            session_pool_size: 1,
        }
    }
}

impl LoadOptions {
    /// Loads ONNX Runtime from this file instead of discovering it (see [`crate::ort_env`] for the search order).
    /// ONNX Runtime is process-global: once loaded, asking for another file is an error.
    #[must_use]
    pub fn ort_library(mut self, path: impl Into<PathBuf>) -> Self {
        self.ort_library = Some(path.into());
        self
    }

    /// The providers to use, highest priority first (default: CPU only). CPU, if listed, must come last: ONNX
    /// Runtime always keeps it as the final fallback.
    #[must_use]
    pub fn execution_providers(mut self, providers: impl IntoIterator<Item = ExecutionProvider>) -> Self {
        self.execution_providers = providers.into_iter().collect();
        self
    }

    /// When a requested accelerator cannot be used (feature off, library without it, no device), skip it instead of
    /// failing the load; the model then records the fallback (default: false).
    #[must_use]
    pub fn allow_cpu_fallback(mut self, allow: bool) -> Self {
        self.allow_cpu_fallback = allow;
        self
    }

    /// Threads each session may use inside one operator (default: 1). Steer's graphs are small, so one thread per
    /// session is usually fastest and scales by adding sessions instead; 0 means ONNX Runtime's own default (one per
    /// physical core, per session).
    #[must_use]
    pub fn intra_op_threads(mut self, threads: usize) -> Self {
        self.intra_op_threads = threads;
        self
    }

    /// Sessions kept per graph (default: 1). Each one runs one call at a time, so this is how many calls on the
    /// same model can run concurrently; each costs one copy of the graph's weights.
    #[must_use]
    pub fn session_pool_size(mut self, size: usize) -> Self {
        self.session_pool_size = size;
        self
    }

    /// Whether any requested provider needs the GPU build of ONNX Runtime.
    pub(crate) fn wants_gpu(&self) -> bool {
        self.execution_providers.iter().any(|p| p.is_gpu())
    }

    /// Checks the options against each other; called by [`Model::load`](crate::Model::load).
    pub fn validate(&self) -> Result<()> {
        let invalid = |option: &str, expected: &str, found: String| {
            Err(Error::InvalidOptions { option: option.into(), expected: expected.into(), found })
        };
        let providers = &self.execution_providers;
        if providers.is_empty() {
            return invalid("execution_providers", "at least one provider", "an empty list".into());
        }
        for (i, provider) in providers.iter().enumerate() {
            if providers[..i].contains(provider) {
                return invalid("execution_providers", "each provider once", format!("{provider} twice"));
            }
            if *provider == ExecutionProvider::Cpu && i + 1 != providers.len() {
                return invalid(
                    "execution_providers",
                    "CPU last (it is ONNX Runtime's final fallback)",
                    list(providers),
                );
            }
            if let ExecutionProvider::Cuda { device_id } | ExecutionProvider::TensorRt { device_id } = provider
                && *device_id < 0
            {
                return invalid("execution_providers", "device_id >= 0", device_id.to_string());
            }
        }
        if self.session_pool_size == 0 {
            return invalid("session_pool_size", ">= 1", "0".into());
        }
        Ok(())
    }
}

/// `[CUDA (device 0), CPU]`.
fn list(providers: &[ExecutionProvider]) -> String {
    let names: Vec<String> = providers.iter().map(ToString::to_string).collect();
    format!("[{}]", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option_of(err: Error) -> String {
        match err {
            Error::InvalidOptions { option, .. } => option,
            other => panic!("expected InvalidOptions, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_cpu_only_one_thread_one_session() {
        let options = LoadOptions::default();
        assert_eq!(options.execution_providers, [ExecutionProvider::Cpu]);
        assert!(!options.allow_cpu_fallback);
        assert_eq!(options.intra_op_threads, 1);
        assert_eq!(options.session_pool_size, 1);
        assert_eq!(options.ort_library, None);
        assert!(!options.wants_gpu());
        options.validate().unwrap();
    }

    #[test]
    fn setters_set() {
        let options = LoadOptions::default()
            .ort_library("/opt/ort/libonnxruntime.so")
            .execution_providers([ExecutionProvider::TensorRt { device_id: 1 }, ExecutionProvider::Cpu])
            .allow_cpu_fallback(true)
            .intra_op_threads(0)
            .session_pool_size(3);
        assert_eq!(options.ort_library.as_deref(), Some(std::path::Path::new("/opt/ort/libonnxruntime.so")));
        assert_eq!(options.execution_providers[0], ExecutionProvider::TensorRt { device_id: 1 });
        assert!(options.allow_cpu_fallback);
        assert_eq!(options.intra_op_threads, 0);
        assert_eq!(options.session_pool_size, 3);
        assert!(options.wants_gpu());
        options.validate().unwrap();
    }

    #[test]
    fn invalid_options_are_rejected_with_code_300() {
        let cases = [
            (LoadOptions::default().execution_providers([]), "execution_providers"),
            (
                LoadOptions::default()
                    .execution_providers([ExecutionProvider::Cpu, ExecutionProvider::Cuda { device_id: 0 }]),
                "execution_providers",
            ),
            (
                LoadOptions::default().execution_providers([
                    ExecutionProvider::Cuda { device_id: 0 },
                    ExecutionProvider::Cuda { device_id: 0 },
                ]),
                "execution_providers",
            ),
            (
                LoadOptions::default().execution_providers([ExecutionProvider::Cuda { device_id: -1 }]),
                "execution_providers",
            ),
            (LoadOptions::default().session_pool_size(0), "session_pool_size"),
        ];
        for (options, option) in cases {
            let err = options.validate().unwrap_err();
            assert_eq!(err.code(), 300, "{err}");
            assert_eq!(option_of(err), option);
        }
    }

    #[test]
    fn options_round_trip_through_json() {
        let options = LoadOptions::default().execution_providers([ExecutionProvider::Cuda { device_id: 2 }]);
        let json = serde_json::to_string(&options).unwrap();
        let back: LoadOptions = serde_json::from_str(&json).unwrap();
        assert_eq!(back, options);
        let partial: LoadOptions = serde_json::from_str(r#"{"session_pool_size": 2}"#).unwrap();
        assert_eq!(partial, LoadOptions::default().session_pool_size(2));
    }
}
