//! Steer trainer: seeded synthetic preference tasks, the NP-BTL, BTL and DPL reward models in candle,
//! meta-training, our own ONNX export into bundles, and evaluation of those bundles through the
//! runtime (ONNX Runtime).
//!
//! Data flows `tasks` → `sampler` → `model` + `train` → `export` (bundle) → `eval` (via
//! `steer_runtime`) → `report`. The `run` module chains them for the `steer` CLI.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod data;
pub mod error;
pub mod eval;
pub mod experiments;
pub mod export;
pub mod model;
pub mod onnx;
pub mod params;
pub mod policy;
pub mod report;
pub mod run;
pub mod sampler;
pub mod tasks;
pub mod text;
pub mod text_run;
pub mod text_task;
pub mod train;

pub use error::{Error, Result};
