//! Text generation with the bundle's steerable policy: the request and result types, the batched decoding loop with
//! its key/value cache, stop strings and streaming. The sampling rule and each row's random generator are in
//! [`crate::sampling`].
//!
//! # The loop
//!
//! Prompts (see [`crate::policy`] for how one is tokenized) are left-padded to the longest with the policy's
//! `pad_token_id` (attention mask 0, position 0; positions count real tokens from 0). The first step feeds the
//! whole padded prompts with an empty cache; each later step feeds one token per row with the previous step's
//! `present.*` outputs as `past_key_values.*`, the mask grown by a column of 1 and every position one further.
//! Each running row samples its next token with its own [`RowSampler`](crate::sampling::RowSampler).
//!
//! A row ends:
//! - on a token of [`PolicySpec::eos_token_ids`](crate::PolicySpec::eos_token_ids) ([`FinishReason::Eos`]; the
//!   token is not part of the text or of [`Generation::token_ids`]);
//! - when its text contains a stop string ([`FinishReason::Stop`]; the text is cut before the first occurrence);
//! - after `max_new_tokens` tokens ([`FinishReason::Length`]);
//! - when the streaming callback returns [`ControlFlow::Break`](std::ops::ControlFlow::Break)
//!   ([`FinishReason::Cancelled`]).
//!
//! Ended rows are fed `pad_token_id` until every row has ended.
//!
//! # Streaming
//!
//! A row's text is always the decoding of its generated ids with special tokens skipped. Every sampled token gives
//! one [`TokenEvent`] whose `text` is what the row's text gained since the previous event. Text is held back while
//! it ends in U+FFFD (the start of a character whose remaining bytes are in the next token) or in something that
//! may be the beginning of a stop string; it is released when the next tokens settle it or the row ends. So for
//! rows that end by EOS, stop string or length, the deltas concatenate to [`Generation::text`] (the EOS token's
//! event carries whatever was still held back). A cancelled row's held-back text is only in its [`Generation`].

mod decode;
mod stream;
mod types;

pub(crate) use decode::generate;
pub use types::{BestOfN, FinishReason, Generation, GenerationRequest, TokenEvent};
