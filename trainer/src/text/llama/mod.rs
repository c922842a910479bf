//! A Llama-family decoder in candle (issue #4), loaded from a GGUF file such as SmolLM2-135M-Instruct's.
//!
//! [`LlamaModel`] is the pre-norm decoder of llama.cpp's `llama` architecture: token embedding, then
//! `block_count` layers of RMSNorm → causal grouped-query self-attention with rotary position embeddings →
//! residual, RMSNorm → SwiGLU feed-forward → residual, then a final RMSNorm and the language-model head (tied to
//! the embedding when the file has no `output.weight`).
//!
//! Weights are read with [`Content::read`] and every tensor is dequantized to f32. The GGUF tensor names are
//! llama.cpp's: `token_embd.weight` `[vocab, hidden]`, `blk.N.attn_norm.weight`, `blk.N.attn_q.weight`,
//! `blk.N.attn_k.weight`, `blk.N.attn_v.weight`, `blk.N.attn_output.weight`, `blk.N.ffn_norm.weight`,
//! `blk.N.ffn_gate.weight`, `blk.N.ffn_up.weight`, `blk.N.ffn_down.weight`, `output_norm.weight` and optionally
//! `output.weight`; linear weights are `[out, in]` once candle has reversed GGUF's dimension order.
//!
//! **Rotary layout.** llama.cpp's converter permutes the rows of `attn_q`/`attn_k` so that each head's rotary pairs
//! are adjacent dimensions `(2i, 2i+1)` (GPT-J/interleaved style), where Hugging Face rotates `(i, i + d/2)`. This
//! module therefore uses the interleaved rotation ([`candle_nn::rotary_emb::rope_i`]) on the stored weights.
//!
//! **Padding.** Rows are expected to be right-padded (real tokens first, `attention_mask` 1 then 0): positions are
//! the column indices, padded keys are masked out, and the outputs at padded positions are meaningless.
//!
//! The files: `config` (the shape, from GGUF metadata, and the rotary tables), `attention` (attention, its per-call
//! inputs and the key/value cache) and `decoder` (blocks and the model). The adapters a policy adds (LoRA, FiLM) and
//! the training losses live in [`crate::policy`].
//!
//! [`Content::read`]: candle_core::quantized::gguf_file::Content::read

mod attention;
mod config;
mod decoder;

pub use attention::{AttentionInputs, KvCache, LlamaAttention};
pub use config::{LlamaConfig, RopeScaling};
pub(crate) use decoder::check_batch;
pub use decoder::{LlamaBlock, LlamaMlp, LlamaModel, LlamaOutput};
