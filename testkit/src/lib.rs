//! Test fixtures shared by Steer's crates, so that no test tree includes another's files and the C ABI's tests
//! build without the trainer (and so without candle).
//!
//! - [`arithmetic`]: tiny encoder and reward graphs whose outputs are simple arithmetic, with those expected values;
//! - [`text`]: a word-level tokenizer JSON and a table-lookup embedder, for text bundles;
//! - [`policy_graph`]: a one-layer policy with a cache whose every logit can be computed by hand;
//! - [`np_btl`]: a bundle of the demo's real NP-BTL architecture with seeded weights, written by the same ONNX writer
//!   ([`steer_onnx`]) as the trainer's export;
//! - [`bundle`]: writing those files as a bundle with its manifest;
//! - [`models`]: fetching ONNX Runtime and the pretrained models, and the honest skip when they cannot be fetched.
//!
//! Fixtures panic with a message when they cannot be written: they serve tests.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod arithmetic;
pub mod bundle;
pub mod graph;
pub mod models;
pub mod np_btl;
pub mod policy_graph;
pub mod text;

pub use arithmetic::{W_SCALE, encoder_graph, expected_reward, expected_z, reward_graph, s, u, v, w};
pub use bundle::{replace_file, test_bundle, write_bundle, write_bundle_with_text};
pub use graph::{D, Graph};
pub use models::{REQUIRE_MODELS, ensure_ort, models_or_skip, models_required, shared_data};
pub use np_btl::{NpBtlShape, np_btl_bundle};
pub use text::{
    TEXT_MAX_TOKENS, TEXT_VOCAB, embedder_graph, mean_embedding, table, text_bundle, text_bundle_with, text_spec,
    tokenizer_json,
};
