//! The Steer runtime: loads an exported Steer bundle and runs it on ONNX Runtime.
//!
//! A Steer model turns a few of a user's preferences into a **profile**, then scores options for that user; a bundle
//! with a policy also writes text steered by that profile. This crate is the lean inference side: it depends on
//! `ort`, `ndarray`, `tokenizers`, `serde` and `thiserror`, not on the trainer or candle.
//!
//! # The bundle
//!
//! A bundle is a folder written by the trainer's export. Every bundle holds:
//!
//! - `manifest.json` ([`Manifest`]): format version, model kind, dims (`embedding_dim` d, `latent_dim`), opset, the
//!   graphs by role, every file with its SHA-256, the training config and metrics, and the optional `text` and
//!   `policy` entries below;
//! - `encoder.onnx` (np-btl only): `context` `[batch, k, 2d]` (rows `[chosen ‖ rejected]`) and `mask` `[batch, k]`
//!   → `z` `[batch, latent_dim]`;
//! - `reward.onnx`: `options` `[batch, n, d]` (and `z` for np-btl) → `reward` `[batch, n]` (and `reward_std` for
//!   dpl).
//!
//! A **text** bundle adds, described by the manifest's `text` entry ([`TextSpec`]; see [`text`]):
//!
//! - `tokenizer.json`: the Hugging Face tokenizer, applied by the tokenization rule the entry records;
//! - `embedder.onnx`: int64 `input_ids` and `attention_mask` `[batch, seq]` → `embedding` `[batch, d]`.
//!
//! A **policy** bundle is an np-btl text bundle that adds, described by the manifest's `policy` entry
//! ([`PolicySpec`]: the chat template, the end-of-turn tokens, the cache shape and the generation defaults; see
//! [`policy_spec`]):
//!
//! - `policy.onnx`: the steerable language model with a key/value cache, conditioned on z;
//! - `policy.onnx.data` (only for a graph too large for one protobuf): the graph's weights as ONNX external data;
//! - `policy_tokenizer.json`: the language model's tokenizer, which the chat template is applied with.
//!
//! [`Model::load`] checks all of it before anything runs: the manifest, every hash, each tokenizer against its entry,
//! and each graph's declared inputs and outputs against the dims. A bundle that fails any check is not loaded at all.
//!
//! # Finding ONNX Runtime
//!
//! The ONNX Runtime library is loaded at run time, from the first of: [`LoadOptions::ort_library`], the
//! `ORT_DYLIB_PATH` variable, the project cache (`$STEER_CACHE_DIR/onnxruntime/`, else `.cache/onnxruntime/` above
//! the current directory, above the executable, or in this workspace). `scripts/fetch-onnxruntime.sh` fills the
//! cache from PyPI. See [`ort_env`] for the details. It is loaded once per process; models share it.
//!
//! # Threads
//!
//! [`Model`] is `Send + Sync`. ONNX Runtime sessions run one call at a time, so each graph keeps a pool of
//! [`LoadOptions::session_pool_size`] sessions; a call uses an idle one or waits. For throughput, prefer batched calls
//! ([`Model::infer_profiles`], [`Model::score_batch`], [`Model::preference_batch`]) and one session per concurrent
//! caller; each session uses [`LoadOptions::intra_op_threads`] threads (1 by default).
//!
//! # Errors
//!
//! Every fallible call returns [`Error`], whose variants say what was wrong and what was expected, and whose
//! [`Error::code`] is stable (the C ABI's status values). Bad input (a wrong shape, NaN, a mask value other than 0 or
//! 1, a profile of the wrong length) is an error, never a panic.
//!
//! # Example
//!
//! ```no_run
//! use ndarray::array;
//! use steer_runtime::{LoadOptions, Model};
//!
//! let model = Model::load("out/bundle-np-btl", &LoadOptions::default())?;
//! // Two preferences of one user, in a 2-d embedding space: chosen[i] was preferred over rejected[i].
//! let chosen = array![[0.9f32, 0.1], [0.8, 0.3]];
//! let rejected = array![[0.1f32, 0.9], [0.2, 0.7]];
//! let profile = model.infer_profile(chosen.view(), rejected.view())?;
//!
//! let options = array![[1.0f32, 0.0], [0.0, 1.0], [0.5, 0.5]];
//! let scores = model.score(&profile, options.view())?;
//! println!("rewards: {:?}", scores.reward);
//!
//! let p = model.preference(&profile, options.row(0), options.row(1))?;
//! println!("P(option 0 over option 1) = {p:.3}");
//! # Ok::<(), steer_runtime::Error>(())
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod error;
pub mod generate;
mod graph;
mod input;
pub mod manifest;
mod model;
mod options;
pub mod ort_env;
pub mod policy;
pub mod policy_spec;
mod pool;
mod preference;
pub mod producer;
mod profile;
mod providers;
pub mod sampling;
mod scores;
pub mod status;
pub mod text;

pub use error::{Error, Result};
pub use generate::{BestOfN, FinishReason, Generation, GenerationRequest, TokenEvent};
pub use manifest::{Dims, Manifest, ModelKind};
pub use model::Model;
pub use options::{ExecutionProvider, LoadOptions};
pub use policy::{ChatEncoder, Policy};
pub use policy_spec::{GenerationParams, PolicySpec};
pub use preference::{Reward, preference_probability};
pub use profile::{Context, Profile};
pub use providers::ProviderFallback;
pub use scores::{BatchScores, Scores};
pub use status::Status;
pub use text::{Embedder, TextEncoder, TextOption, TextPair, TextSpec};
