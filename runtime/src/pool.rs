//! A fixed set of ONNX Runtime sessions for one graph, shared by all threads using a model: creating them, and the
//! helpers every graph call uses to pass arrays in and read outputs back.
//!
//! `ort`'s `Session::run` takes `&mut self` (ONNX Runtime's `Run` is not safe to call concurrently on one session),
//! so each session sits behind its own mutex. A call takes the first idle session; when all are busy it waits for
//! one, picked round-robin so waiting calls spread over the pool.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, TryLockError};

use ndarray::{ArrayView2, Dimension, Ix2};
use ort::environment::Environment;
use ort::session::{Session, SessionOutputs};
use ort::value::TensorRef;

use crate::error::{Error, Result};
use crate::graph::GraphSpec;
use crate::options::LoadOptions;
use crate::providers::ProviderPlan;

/// The sessions of one graph.
#[derive(Debug)]
pub(crate) struct SessionPool {
    /// The graph's file name, used in errors.
    graph: String,
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
}

impl SessionPool {
    /// Wraps sessions created for `graph` (at least one).
    pub(crate) fn new(graph: String, sessions: Vec<Session>) -> Self {
        SessionPool { graph, sessions: sessions.into_iter().map(Mutex::new).collect(), next: AtomicUsize::new(0) }
    }

    /// The graph's file name.
    pub(crate) fn graph(&self) -> &str {
        &self.graph
    }

    /// Runs `f` on an idle session, waiting for one when all are busy.
    pub(crate) fn with_session<R>(&self, f: impl FnOnce(&mut Session) -> Result<R>) -> Result<R> {
        for session in &self.sessions {
            match session.try_lock() {
                Ok(mut guard) => return f(&mut guard),
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Poisoned(_)) => return Err(self.poisoned()),
            }
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.sessions.len().max(1);
        let session = self.sessions.get(index).ok_or_else(|| self.poisoned())?;
        let mut guard = session.lock().map_err(|_| self.poisoned())?;
        f(&mut guard)
    }

    fn poisoned(&self) -> Error {
        Error::Poisoned { graph: self.graph.clone() }
    }
}

/// Creates a graph's session pool; the first session's signature is checked before the others are made.
pub(crate) fn load_pool(
    env: &Environment,
    dir: &Path,
    file: &str,
    spec: &GraphSpec,
    plan: &ProviderPlan,
    options: &LoadOptions,
) -> Result<SessionPool> {
    let path = dir.join(file);
    let mut sessions = Vec::with_capacity(options.session_pool_size);
    for _ in 0..options.session_pool_size {
        let session = create_session(env, &path, file, plan, options.intra_op_threads)?;
        if sessions.is_empty() {
            spec.check(file, &session)?;
        }
        sessions.push(session);
    }
    Ok(SessionPool::new(file.to_string(), sessions))
}

fn create_session(
    env: &Environment,
    path: &Path,
    graph: &str,
    plan: &ProviderPlan,
    intra_op_threads: usize,
) -> Result<Session> {
    let fail = |message: String| Error::Session { graph: graph.to_string(), message };
    let mut builder = Session::builder(env).map_err(|e| fail(e.to_string()))?;
    if intra_op_threads > 0 {
        builder = builder.with_intra_threads(intra_op_threads).map_err(|e| fail(e.to_string()))?;
    }
    if !plan.dispatches.is_empty() {
        builder = builder.with_execution_providers(&plan.dispatches).map_err(|e| fail(e.to_string()))?;
    }
    builder.commit_from_file(path).map_err(|e| fail(e.to_string()))
}

/// Borrows a contiguous array as an ONNX Runtime tensor (no copy).
pub(crate) fn tensor<'a, D: Dimension + 'static>(
    pool: &SessionPool,
    array: &'a ndarray::CowArray<'_, f32, D>,
) -> Result<TensorRef<'a, f32>> {
    TensorRef::from_array_view(array)
        .map_err(|e| Error::Inference { graph: pool.graph().to_string(), message: e.to_string() })
}

pub(crate) fn run<'s>(
    pool: &SessionPool,
    session: &'s mut Session,
    inputs: Vec<(std::borrow::Cow<'_, str>, ort::session::SessionInputValue<'_>)>,
) -> Result<SessionOutputs<'s>> {
    session.run(inputs).map_err(|e| Error::Inference { graph: pool.graph().to_string(), message: e.to_string() })
}

/// Views a float32 output and checks its shape.
pub(crate) fn output<'o>(
    pool: &SessionPool,
    outputs: &'o SessionOutputs<'_>,
    name: &str,
    shape: [usize; 2],
) -> Result<ArrayView2<'o, f32>> {
    let unexpected = |found: String| Error::UnexpectedOutput {
        graph: pool.graph().to_string(),
        tensor: name.to_string(),
        expected: format!("f32 {shape:?}"),
        found,
    };
    let value = outputs.get(name).ok_or_else(|| unexpected("no such output".into()))?;
    let array = value.try_extract_array::<f32>().map_err(|e| unexpected(e.to_string()))?;
    if array.shape() != shape {
        return Err(unexpected(format!("f32 {:?}", array.shape())));
    }
    array.into_dimensionality::<Ix2>().map_err(|e| unexpected(e.to_string()))
}
