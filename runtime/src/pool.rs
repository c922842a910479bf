//! A fixed set of ONNX Runtime sessions for one graph, shared by all threads using a model.
//!
//! `ort`'s `Session::run` takes `&mut self` (ONNX Runtime's `Run` is not safe to call concurrently on one session),
//! so each session sits behind its own mutex. A call takes the first idle session; when all are busy it waits for
//! one, picked round-robin so waiting calls spread over the pool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, TryLockError};

use ort::session::Session;

use crate::error::{Error, Result};

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
