//! The request and result types of generation.

use crate::profile::Profile;

/// One generation request: a prompt and the profile that steers the reply.
#[derive(Debug, Clone, Copy)]
pub struct GenerationRequest<'a> {
    /// The user's prompt (the chat template is applied to it).
    pub prompt: &'a str,
    /// The profile of the user the reply is for (`latent_dim` values).
    pub profile: &'a Profile,
}

impl<'a> GenerationRequest<'a> {
    /// A reply to `prompt` for the user with `profile`.
    pub fn new(prompt: &'a str, profile: &'a Profile) -> Self {
        GenerationRequest { prompt, profile }
    }
}

/// Why a row stopped generating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FinishReason {
    /// The policy produced an end-of-sequence token.
    Eos,
    /// The text reached a stop string (cut before it).
    Stop,
    /// `max_new_tokens` tokens were generated.
    Length,
    /// The streaming callback asked to stop.
    Cancelled,
}

/// One generated reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The reply: the decoded tokens (special tokens skipped), cut before a stop string.
    pub text: String,
    /// The generated token ids, without the EOS token; with a stop string they include the token(s) that completed
    /// it, so decoding them may give more than `text`.
    pub token_ids: Vec<u32>,
    /// The prompt's length in tokens, chat template included.
    pub prompt_tokens: usize,
    /// Why generation of this row stopped.
    pub finish: FinishReason,
}

/// One sampled token, handed to the streaming callback of
/// [`Model::generate_stream`](crate::Model::generate_stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenEvent<'a> {
    /// The request (row of the batch) the token belongs to.
    pub row: usize,
    /// The sampled token id (EOS included).
    pub token_id: u32,
    /// The text the row gained with this token (may be empty while text is held back; see the
    /// [module docs](super)).
    pub text: &'a str,
}

/// The result of [`Model::generate_best_of_n`](crate::Model::generate_best_of_n).
#[derive(Debug, Clone, PartialEq)]
pub struct BestOfN {
    /// The index of the candidate with the highest reward.
    pub best: usize,
    /// The `n` sampled replies; candidate `i` used seed `seed + i`.
    pub candidates: Vec<Generation>,
    /// The bundle's reward of each candidate for the profile.
    pub rewards: Vec<f32>,
}
