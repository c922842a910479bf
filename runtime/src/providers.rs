//! Registering the requested execution providers, and recording the ones that had to be skipped.

use ort::environment::Environment;
use ort::ep::ExecutionProviderDispatch;
use ort::session::Session;

use crate::error::{Error, Result};
use crate::options::{ExecutionProvider, LoadOptions};

/// A requested provider the model runs without, because fallback was allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderFallback {
    /// The provider that was requested.
    pub provider: ExecutionProvider,
    /// Why it could not be used.
    pub reason: String,
}

/// The providers every session of a model is created with.
#[derive(Default)]
pub(crate) struct ProviderPlan {
    /// What is active, highest priority first; always ends with CPU.
    pub(crate) active: Vec<ExecutionProvider>,
    /// The accelerators to register on each session (CPU needs no registration).
    pub(crate) dispatches: Vec<ExecutionProviderDispatch>,
    /// Requested providers that were skipped.
    pub(crate) fallbacks: Vec<ProviderFallback>,
}

/// Decides which of the requested providers can be used: each accelerator is registered on a scratch session
/// builder first, so a provider that is not compiled in, missing from the ONNX Runtime library, or without a device
/// is caught before any session is made. It is then an error ([`Error::ProviderUnavailable`]) unless fallback is
/// allowed, in which case it is skipped and recorded. CPU always ends the list: ONNX Runtime runs there whatever an
/// accelerator cannot.
pub(crate) fn resolve(env: &Environment, options: &LoadOptions) -> Result<ProviderPlan> {
    let mut plan = ProviderPlan::default();
    for &provider in options.execution_providers.iter().filter(|p| p.is_gpu()) {
        match dispatch(provider).and_then(|dispatch| probe(env, &dispatch).map(|()| dispatch)) {
            Ok(dispatch) => {
                plan.active.push(provider);
                plan.dispatches.push(dispatch);
            }
            Err(reason) if options.allow_cpu_fallback => plan.fallbacks.push(ProviderFallback { provider, reason }),
            Err(reason) => return Err(Error::ProviderUnavailable { provider, reason }),
        }
    }
    plan.active.push(ExecutionProvider::Cpu);
    Ok(plan)
}

/// `ort`'s provider for an accelerator, set to fail loudly instead of silently falling back to CPU.
fn dispatch(provider: ExecutionProvider) -> std::result::Result<ExecutionProviderDispatch, String> {
    match provider {
        ExecutionProvider::Cpu => Err("CPU needs no registration".into()),
        #[cfg(feature = "cuda")]
        ExecutionProvider::Cuda { device_id } => {
            Ok(ort::ep::CUDA::default().with_device_id(device_id).build().error_on_failure())
        }
        #[cfg(not(feature = "cuda"))]
        ExecutionProvider::Cuda { .. } => Err(not_compiled("cuda")),
        #[cfg(feature = "tensorrt")]
        ExecutionProvider::TensorRt { device_id } => {
            Ok(ort::ep::TensorRT::default().with_device_id(device_id).build().error_on_failure())
        }
        #[cfg(not(feature = "tensorrt"))]
        ExecutionProvider::TensorRt { .. } => Err(not_compiled("tensorrt")),
    }
}

#[cfg(not(all(feature = "cuda", feature = "tensorrt")))]
fn not_compiled(feature: &str) -> String {
    format!("steer-runtime was built without its `{feature}` feature")
}

/// Registers the provider on a throwaway session builder.
fn probe(env: &Environment, dispatch: &ExecutionProviderDispatch) -> std::result::Result<(), String> {
    let mut builder = Session::builder(env).map_err(|e| e.to_string())?;
    dispatch.register(&mut builder).map_err(|e| e.to_string())
}
