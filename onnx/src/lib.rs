//! Steer's one ONNX writer: the protobuf messages ([`proto`]), a graph builder ([`GraphBuilder`]) with the layers the
//! models are made of, on plain `f32` weights, the graphs of the reward models ([`reward`]), and writing a model file
//! ([`write_model`]).
//!
//! The trainer exports its candle models through it, and the test kit builds its fixture bundles with it, so both
//! write the same bytes for the same weights and neither needs the other.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod builder;
mod error;
mod file;
mod layers;
pub mod proto;
pub mod reward;

pub use builder::{Dim, GraphBuilder, IR_VERSION, OPSET, attr_float, attr_int, attr_ints};
pub use error::{Error, Result};
pub use file::{INLINE_MODEL_LIMIT, write_model};
pub use layers::{Attention, Dense, MASKED_LOGIT};
