//! Text generation with the bundle's steerable policy: the sampling rule, the batched decoding loop with its
//! key/value cache, stop strings and streaming.
//!
//! # Sampling
//!
//! Each row samples its next token from the last position's logits, in this order:
//!
//! 1. repetition penalty: for every distinct token already in the row (prompt included), a positive logit is
//!    divided by [`GenerationParams::repetition_penalty`] and a negative one multiplied by it;
//! 2. temperature 0: greedy, the argmax (on a tie, the lowest id);
//! 3. otherwise the logits are divided by the temperature, only the `top_k` largest are kept (`0` keeps all),
//!    turned into probabilities (softmax), cut to the nucleus (the smallest prefix of the tokens sorted by
//!    probability whose mass reaches `top_p`, at least one token), renormalised, and one token is drawn.
//!
//! Every row has its own random generator, `ChaCha8Rng::seed_from_u64(seed + row)` (wrapping), drawn from only when
//! that row samples: the same seed, prompt and profile give the same text whatever else is in the batch, and the
//! rows of a best-of-n batch differ.
//!
//! # The loop
//!
//! Prompts (see [`crate::policy`] for how one is tokenized) are left-padded to the longest with the policy's
//! `pad_token_id` (attention mask 0, position 0; positions count real tokens from 0). The first step feeds the
//! whole padded prompts with an empty cache; each later step feeds one token per row with the previous step's
//! `present.*` outputs as `past_key_values.*`, the mask grown by a column of 1 and every position one further.
//!
//! A row ends:
//! - on a token of [`PolicySpec::eos_token_ids`](crate::PolicySpec::eos_token_ids) ([`FinishReason::Eos`]; the
//!   token is not part of the text or of [`Generation::token_ids`]);
//! - when its text contains a stop string ([`FinishReason::Stop`]; the text is cut before the first occurrence);
//! - after `max_new_tokens` tokens ([`FinishReason::Length`]);
//! - when the streaming callback returns [`ControlFlow::Break`] ([`FinishReason::Cancelled`]).
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

use std::borrow::Cow;
use std::ops::ControlFlow;

use ndarray::{Array2, Array4, Axis};
use ort::session::SessionInputValue;
use ort::value::{DynValue, Tensor, ValueType};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::policy_spec::{GenerationParams, policy_io};
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
    /// [module docs](self)).
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

impl GenerationParams {
    /// Checks every parameter's range; the first one out of range is an [`Error::InvalidGenerationParam`] (308).
    ///
    /// `temperature` ≥ 0 and finite, `top_p` in (0, 1], `repetition_penalty` > 0 and finite, `max_new_tokens` ≥ 1,
    /// and no empty stop string.
    pub fn validate(&self) -> Result<()> {
        let bad = |param: &str, expected: &str, found: String| {
            Err(Error::InvalidGenerationParam { param: param.into(), expected: expected.into(), found })
        };
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad("temperature", "a finite value >= 0 (0 is greedy)", self.temperature.to_string());
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", "a value in (0, 1]", self.top_p.to_string());
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad("repetition_penalty", "a finite value > 0 (1 is off)", self.repetition_penalty.to_string());
        }
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens", "at least 1", "0".into());
        }
        if let Some(index) = self.stop.iter().position(String::is_empty) {
            return bad("stop", "non-empty stop strings", format!("an empty string at index {index}"));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Sampling.

/// Applies the repetition penalty to the logits of `seen` (distinct ids; ids past the end are ignored).
pub(crate) fn apply_repetition_penalty(logits: &mut [f32], seen: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    for &id in seen {
        if let Some(logit) = logits.get_mut(id as usize) {
            *logit = if *logit > 0.0 { *logit / penalty } else { *logit * penalty };
        }
    }
}

/// The index of the largest value, the lowest index on a tie; NaN never wins; 0 for an empty or all-NaN slice.
pub(crate) fn argmax(values: &[f32]) -> usize {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in values.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map_or(0, |(i, _)| i)
}

/// The tokens sorted by scaled logit (highest first, lower id first on a tie), divided by `temperature`, keeping
/// only the `top_k` largest (all when 0).
pub(crate) fn top_k_candidates(logits: &[f32], temperature: f32, top_k: usize) -> Vec<(u32, f32)> {
    let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let mut candidates: Vec<(u32, f32)> =
        logits.iter().enumerate().filter(|(_, v)| !v.is_nan()).map(|(i, &v)| (i as u32, v / temperature)).collect();
    if top_k > 0 && top_k < candidates.len() {
        candidates.select_nth_unstable_by(top_k - 1, order);
        candidates.truncate(top_k);
    }
    candidates.sort_unstable_by(order);
    candidates
}

/// Softmax over sorted candidates. A `+inf` logit takes all the mass (shared among equals); when every logit is
/// `-inf` the mass is uniform.
pub(crate) fn softmax(candidates: &[(u32, f32)]) -> Vec<(u32, f64)> {
    let max = candidates.first().map_or(0.0, |&(_, v)| f64::from(v));
    let weights: Vec<(u32, f64)> = if max.is_infinite() {
        candidates.iter().map(|&(id, v)| (id, if f64::from(v) == max || max < 0.0 { 1.0 } else { 0.0 })).collect()
    } else {
        candidates.iter().map(|&(id, v)| (id, (f64::from(v) - max).exp())).collect()
    };
    normalise(weights)
}

/// The nucleus: the smallest prefix of the sorted probabilities whose mass reaches `top_p` (at least one token),
/// renormalised.
pub(crate) fn top_p_filter(mut probs: Vec<(u32, f64)>, top_p: f32) -> Vec<(u32, f64)> {
    if top_p < 1.0 {
        let mut mass = 0.0;
        let mut keep = probs.len();
        for (i, &(_, p)) in probs.iter().enumerate() {
            mass += p;
            if mass >= f64::from(top_p) {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep.max(1));
    }
    normalise(probs)
}

fn normalise(mut weights: Vec<(u32, f64)>) -> Vec<(u32, f64)> {
    let total: f64 = weights.iter().map(|&(_, w)| w).sum();
    if total > 0.0 && total.is_finite() {
        weights.iter_mut().for_each(|(_, w)| *w /= total);
    }
    weights
}

/// The token whose cumulative probability first exceeds `u` in [0, 1); the last one if rounding leaves a gap.
pub(crate) fn draw(probs: &[(u32, f64)], u: f64) -> u32 {
    let mut cumulative = 0.0;
    for &(id, p) in probs {
        cumulative += p;
        if u < cumulative {
            return id;
        }
    }
    probs.iter().rev().find(|&&(_, p)| p > 0.0).or(probs.last()).map_or(0, |&(id, _)| id)
}

/// Samples the next token from one row's logits by the rule of the [module docs](self). `seen` are the distinct
/// ids already in the row.
pub(crate) fn sample(logits: &mut [f32], seen: &[u32], params: &GenerationParams, rng: &mut ChaCha8Rng) -> u32 {
    apply_repetition_penalty(logits, seen, params.repetition_penalty);
    if params.temperature == 0.0 {
        return argmax(logits) as u32;
    }
    let candidates = top_k_candidates(logits, params.temperature, params.top_k);
    let probs = top_p_filter(softmax(&candidates), params.top_p);
    draw(&probs, rng.random::<f64>())
}

// ---------------------------------------------------------------------------------------------------------------
// Stop strings and streaming.

/// The byte index of the earliest stop string in `text`.
fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter_map(|stop| text.find(stop.as_str())).min()
}

/// How much of `text` may be streamed: all of it but a trailing run of U+FFFD and the longest tail that is a
/// proper beginning of a stop string.
pub(crate) fn releasable(text: &str, stops: &[String]) -> usize {
    let end = text.trim_end_matches('\u{FFFD}').len();
    let settled = &text[..end];
    let mut cut = end;
    for stop in stops {
        for (k, _) in stop.char_indices().skip(1) {
            if settled.ends_with(&stop[..k]) {
                cut = cut.min(end - k);
            }
        }
    }
    cut
}

/// The state of one row of the batch.
struct Row {
    prompt_tokens: usize,
    ids: Vec<u32>,
    /// Distinct ids in the row (prompt included), with a membership table.
    seen: Vec<u32>,
    in_row: Vec<bool>,
    /// The decoding of `ids`.
    text: String,
    /// The text streamed so far.
    emitted: String,
    finish: Option<(FinishReason, usize)>,
    rng: ChaCha8Rng,
}

impl Row {
    fn new(prompt: &[u32], vocab: usize, seed: u64) -> Row {
        let mut row = Row {
            prompt_tokens: prompt.len(),
            ids: Vec::new(),
            seen: Vec::new(),
            in_row: vec![false; vocab],
            text: String::new(),
            emitted: String::new(),
            finish: None,
            rng: ChaCha8Rng::seed_from_u64(seed),
        };
        prompt.iter().for_each(|&id| row.mark_seen(id));
        row
    }

    fn mark_seen(&mut self, id: u32) {
        if let Some(flag) = self.in_row.get_mut(id as usize)
            && !*flag
        {
            *flag = true;
            self.seen.push(id);
        }
    }

    fn running(&self) -> bool {
        self.finish.is_none()
    }

    /// Takes a sampled token; returns the text to stream.
    fn push(&mut self, policy: &Policy, id: u32, params: &GenerationParams) -> Result<String> {
        if policy.spec().eos_token_ids.contains(&id) {
            self.finish = Some((FinishReason::Eos, self.text.len()));
            return Ok(self.release(self.text.len()));
        }
        self.ids.push(id);
        self.mark_seen(id);
        self.text = policy.decode(&self.ids)?;
        if let Some(at) = find_stop(&self.text, &params.stop) {
            self.finish = Some((FinishReason::Stop, at));
            return Ok(self.release(at));
        }
        if self.ids.len() >= params.max_new_tokens {
            self.finish = Some((FinishReason::Length, self.text.len()));
            return Ok(self.release(self.text.len()));
        }
        Ok(self.release(releasable(&self.text, &params.stop)))
    }

    /// Streams the text up to byte `end` that was not streamed yet. Nothing when the decoding changed what was
    /// already streamed (a decoder that is not prefix-stable).
    fn release(&mut self, end: usize) -> String {
        let start = self.emitted.len();
        if end <= start || !self.text.starts_with(self.emitted.as_str()) || !self.text.is_char_boundary(end) {
            return String::new();
        }
        let delta = self.text[start..end].to_string();
        self.emitted.push_str(&delta);
        delta
    }

    fn into_generation(self) -> Generation {
        let (finish, end) = self.finish.unwrap_or((FinishReason::Cancelled, self.text.len()));
        let mut text = self.text;
        if text.is_char_boundary(end) {
            text.truncate(end);
        }
        Generation { text, token_ids: self.ids, prompt_tokens: self.prompt_tokens, finish }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The loop.

/// Position ids from an attention mask: the running count of real tokens minus one, clamped at 0.
pub(crate) fn position_ids(mask: &Array2<i64>) -> Array2<i64> {
    let mut positions = Array2::zeros(mask.raw_dim());
    for (mask_row, mut position_row) in mask.outer_iter().zip(positions.outer_iter_mut()) {
        let mut count = 0i64;
        for (&m, p) in mask_row.iter().zip(position_row.iter_mut()) {
            count += m;
            *p = (count - 1).max(0);
        }
    }
    positions
}

/// Generates for checked requests (a policy, valid parameters, at least one request, profiles of the right length).
pub(crate) fn generate(
    policy: &Policy,
    requests: &[GenerationRequest<'_>],
    params: &GenerationParams,
    on_token: &mut dyn FnMut(TokenEvent<'_>) -> ControlFlow<()>,
) -> Result<Vec<Generation>> {
    let spec = policy.spec();
    let prompts = requests.iter().map(|r| policy.encode_prompt(r.prompt)).collect::<Result<Vec<_>>>()?;
    for prompt in &prompts {
        if prompt.len().saturating_add(params.max_new_tokens) > spec.max_positions {
            return Err(Error::PromptTooLong {
                prompt_tokens: prompt.len(),
                max_new_tokens: params.max_new_tokens,
                max_positions: spec.max_positions,
            });
        }
    }
    let batch = requests.len();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let pad = i64::from(spec.pad_token_id);
    let mut input_ids = Array2::from_elem((batch, longest), pad);
    let mut mask = Array2::<i64>::zeros((batch, longest));
    for (i, prompt) in prompts.iter().enumerate() {
        let offset = longest - prompt.len();
        for (j, &id) in prompt.iter().enumerate() {
            input_ids[[i, offset + j]] = i64::from(id);
            mask[[i, offset + j]] = 1;
        }
    }
    let mut positions = position_ids(&mask);
    let latent = policy.latent_dim();
    let mut z = Array2::<f32>::zeros((batch, latent));
    for (mut row, request) in z.outer_iter_mut().zip(requests) {
        row.iter_mut().zip(request.profile.as_slice()).for_each(|(dst, &src)| *dst = src);
    }
    let mut rows: Vec<Row> = prompts
        .iter()
        .enumerate()
        .map(|(i, prompt)| Row::new(prompt, spec.vocab_size, params.seed.wrapping_add(i as u64)))
        .collect();

    let pool = policy.pool();
    let graph = pool.graph().to_string();
    let fail = |e: ort::Error| Error::Inference { graph: graph.clone(), message: e.to_string() };
    let z_tensor = Tensor::from_array(z).map_err(fail)?;
    let mut past_names = Vec::with_capacity(2 * spec.num_layers);
    let mut present_names = Vec::with_capacity(2 * spec.num_layers);
    for layer in 0..spec.num_layers {
        past_names.push(policy_io::past_key(layer));
        past_names.push(policy_io::past_value(layer));
        present_names.push(policy_io::present_key(layer));
        present_names.push(policy_io::present_value(layer));
    }
    let mut past: Vec<DynValue> = (0..2 * spec.num_layers)
        .map(|_| {
            Tensor::from_array(Array4::<f32>::zeros((batch, spec.num_kv_heads, 0, spec.head_dim)))
                .map(Tensor::into_dyn)
                .map_err(fail)
        })
        .collect::<Result<_>>()?;

    pool.with_session(|session| {
        let mut cancelled = false;
        while rows.iter().any(Row::running) {
            let seq = input_ids.ncols();
            let total = mask.ncols();
            let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
                (policy_io::INPUT_IDS.into(), Tensor::from_array(input_ids.clone()).map_err(fail)?.into()),
                (policy_io::ATTENTION_MASK.into(), Tensor::from_array(mask.clone()).map_err(fail)?.into()),
                (policy_io::POSITION_IDS.into(), Tensor::from_array(positions.clone()).map_err(fail)?.into()),
                (policy_io::Z.into(), (&z_tensor).into()),
            ];
            for (name, value) in past_names.iter().zip(past.drain(..)) {
                inputs.push((name.as_str().into(), value.into()));
            }
            let mut outputs = session.run(inputs).map_err(fail)?;

            // The last position's logits of each running row.
            let unexpected = |tensor: &str, expected: String, found: String| Error::UnexpectedOutput {
                graph: graph.clone(),
                tensor: tensor.to_string(),
                expected,
                found,
            };
            let expected_logits = format!("f32 [{batch}, {seq}, {}]", spec.vocab_size);
            let logits = outputs
                .get(policy_io::LOGITS)
                .ok_or_else(|| unexpected(policy_io::LOGITS, expected_logits.clone(), "no such output".into()))?
                .try_extract_array::<f32>()
                .map_err(|e| unexpected(policy_io::LOGITS, expected_logits.clone(), e.to_string()))?;
            if logits.shape() != [batch, seq, spec.vocab_size] {
                return Err(unexpected(policy_io::LOGITS, expected_logits, format!("f32 {:?}", logits.shape())));
            }
            let last: Vec<Option<Vec<f32>>> = rows
                .iter()
                .enumerate()
                .map(|(i, row)| {
                    row.running()
                        .then(|| logits.index_axis(Axis(0), i).index_axis(Axis(0), seq - 1).iter().copied().collect())
                })
                .collect();
            if let Some((i, Some(values))) =
                last.iter().enumerate().find(|(_, l)| l.as_ref().is_some_and(|v| v.iter().any(|x| x.is_nan())))
            {
                let at = values.iter().position(|x| x.is_nan()).unwrap_or(0);
                return Err(unexpected(
                    policy_io::LOGITS,
                    "logits that are not NaN".into(),
                    format!("NaN at row {i}, token {at}"),
                ));
            }

            // The cache for the next step.
            let expected_present = [batch, spec.num_kv_heads, total, spec.head_dim];
            for name in &present_names {
                let value = outputs
                    .remove(name.as_str())
                    .ok_or_else(|| unexpected(name, format!("f32 {expected_present:?}"), "no such output".into()))?;
                let shape_ok = match value.dtype() {
                    ValueType::Tensor { ty, shape, .. } => {
                        *ty == ort::value::TensorElementType::Float32
                            && shape.len() == 4
                            && shape.iter().zip(expected_present).all(|(&a, b)| usize::try_from(a) == Ok(b))
                    }
                    _ => false,
                };
                if !shape_ok {
                    return Err(unexpected(name, format!("f32 {expected_present:?}"), value.dtype().to_string()));
                }
                past.push(value);
            }
            drop(outputs);

            // Sample, stream, and decide who ends.
            let mut next = Array2::from_elem((batch, 1), pad);
            for (i, logits) in last.into_iter().enumerate() {
                let Some(mut logits) = logits else { continue };
                let row = &mut rows[i];
                let seen = std::mem::take(&mut row.seen);
                let id = sample(&mut logits, &seen, params, &mut row.rng);
                row.seen = seen;
                let delta = row.push(policy, id, params)?;
                if row.running() {
                    next[[i, 0]] = i64::from(id);
                }
                if on_token(TokenEvent { row: i, token_id: id, text: &delta }).is_break() {
                    cancelled = true;
                    break;
                }
            }
            if cancelled {
                break;
            }
            let step = Array2::<i64>::ones((batch, 1));
            mask = ndarray::concatenate(Axis(1), &[mask.view(), step.view()])
                .map_err(|e| unexpected(policy_io::ATTENTION_MASK, "a mask".into(), e.to_string()))?;
            let last_positions = positions.column(seq - 1).to_owned();
            positions = (last_positions + 1).insert_axis(Axis(1));
            input_ids = next;
        }
        Ok(())
    })?;
    Ok(rows.into_iter().map(Row::into_generation).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> GenerationParams {
        GenerationParams {
            max_new_tokens: 4,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
            stop: Vec::new(),
        }
    }

    fn ids(probs: &[(u32, f64)]) -> Vec<u32> {
        probs.iter().map(|&(id, _)| id).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_logits() {
        let mut logits = [2.0, -1.0, 0.5, 3.0];
        apply_repetition_penalty(&mut logits, &[0, 1, 9], 2.0);
        assert_eq!(logits, [1.0, -2.0, 0.5, 3.0]);
        // Penalised token 3 (3.0 → 1.5) loses the argmax to token 0 (2.0).
        let mut logits = [2.0, -1.0, 0.5, 3.0];
        apply_repetition_penalty(&mut logits, &[3], 2.0);
        assert_eq!(argmax(&logits), 0);
    }

    #[test]
    fn argmax_takes_the_lowest_id_on_a_tie_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -1.0, -2.0]), 1);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn top_k_keeps_the_k_largest_scaled_logits_sorted() {
        let logits = [1.0, 4.0, 3.0, 4.0, 0.0];
        let kept = top_k_candidates(&logits, 2.0, 3);
        assert_eq!(kept, vec![(1, 2.0), (3, 2.0), (2, 1.5)]);
        assert_eq!(top_k_candidates(&logits, 1.0, 0).len(), 5);
        assert_eq!(top_k_candidates(&logits, 1.0, 9).len(), 5);
    }

    #[test]
    fn softmax_and_top_p_follow_hand_computed_values() {
        // ln 4, ln 2, ln 1, ln 1 → probabilities 0.5, 0.25, 0.125, 0.125.
        let logits = [4f32.ln(), 2f32.ln(), 0.0, 0.0];
        let probs = softmax(&top_k_candidates(&logits, 1.0, 0));
        assert_eq!(ids(&probs), [0, 1, 2, 3]);
        for (p, want) in probs.iter().zip([0.5, 0.25, 0.125, 0.125]) {
            assert!((p.1 - want).abs() < 1e-6, "{probs:?}");
        }
        // top_p 0.7: 0.5 < 0.7, 0.75 >= 0.7 → tokens 0 and 1, renormalised to 2/3 and 1/3.
        let nucleus = top_p_filter(probs.clone(), 0.7);
        assert_eq!(ids(&nucleus), [0, 1]);
        assert!((nucleus[0].1 - 2.0 / 3.0).abs() < 1e-6 && (nucleus[1].1 - 1.0 / 3.0).abs() < 1e-6);
        // A tiny top_p keeps exactly the most likely token; 1 keeps all.
        assert_eq!(ids(&top_p_filter(probs.clone(), 1e-6)), [0]);
        assert_eq!(ids(&top_p_filter(probs.clone(), 0.5)), [0]);
        assert_eq!(top_p_filter(probs, 1.0).len(), 4);
    }

    #[test]
    fn draw_walks_the_cumulative_distribution() {
        let probs = [(7, 0.5), (3, 0.25), (9, 0.25)];
        assert_eq!(draw(&probs, 0.0), 7);
        assert_eq!(draw(&probs, 0.49), 7);
        assert_eq!(draw(&probs, 0.5), 3);
        assert_eq!(draw(&probs, 0.8), 9);
        assert_eq!(draw(&probs, 0.999_999_999_9), 9);
    }

    #[test]
    fn infinite_logits_do_not_give_nan_probabilities() {
        let probs = softmax(&[(2, f32::INFINITY), (0, 1.0)]);
        assert!(close(probs[0].1, 1.0) && close(probs[1].1, 0.0), "{probs:?}");
        let probs = softmax(&[(0, f32::NEG_INFINITY), (1, f32::NEG_INFINITY)]);
        assert!(close(probs[0].1, 0.5) && close(probs[1].1, 0.5), "{probs:?}");
    }

    #[test]
    fn greedy_sampling_ignores_the_generator_and_sampling_is_seeded() {
        let greedy = GenerationParams { temperature: 0.0, repetition_penalty: 2.0, ..params() };
        // Token 1 (3.0) is penalised to 1.5, so token 2 (2.0) wins.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        assert_eq!(sample(&mut [0.0, 3.0, 2.0], &[1], &greedy, &mut rng), 2);

        let logits = [0.0f32; 8];
        let draws = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..16).map(|_| sample(&mut logits.clone(), &[], &params(), &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draws(1), draws(1));
        assert_ne!(draws(1), draws(2));
        // top_k 1 is greedy whatever the generator.
        let top1 = GenerationParams { top_k: 1, ..params() };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        assert!((0..16).all(|_| sample(&mut [0.0, 0.5, 0.4], &[], &top1, &mut rng) == 1));
    }

    #[test]
    fn validate_names_the_parameter() {
        assert!(params().validate().is_ok());
        assert!(GenerationParams::default().validate().is_ok());
        let cases = [
            (GenerationParams { temperature: -1.0, ..params() }, "temperature"),
            (GenerationParams { temperature: f32::INFINITY, ..params() }, "temperature"),
            (GenerationParams { top_p: 0.0, ..params() }, "top_p"),
            (GenerationParams { top_p: 1.5, ..params() }, "top_p"),
            (GenerationParams { top_p: f32::NAN, ..params() }, "top_p"),
            (GenerationParams { repetition_penalty: 0.0, ..params() }, "repetition_penalty"),
            (GenerationParams { repetition_penalty: f32::NAN, ..params() }, "repetition_penalty"),
            (GenerationParams { max_new_tokens: 0, ..params() }, "max_new_tokens"),
            (GenerationParams { stop: vec!["x".into(), String::new()], ..params() }, "stop"),
        ];
        for (p, name) in cases {
            match p.validate().unwrap_err() {
                err @ Error::InvalidGenerationParam { .. } => {
                    assert_eq!(err.code(), 308);
                    assert!(err.to_string().contains(&format!("`{name}`")), "{err}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn positions_count_real_tokens_and_padding_is_zero() {
        let mask = ndarray::array![[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]];
        assert_eq!(position_ids(&mask), ndarray::array![[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]);
    }

    #[test]
    fn streaming_holds_back_replacement_characters_and_stop_prefixes() {
        let stops = vec!["END".to_string(), "\n\n".to_string()];
        assert_eq!(releasable("hello", &stops), 5);
        assert_eq!(releasable("hello E", &stops), 6);
        assert_eq!(releasable("hello EN", &stops), 6);
        assert_eq!(releasable("hello\n", &stops), 5);
        assert_eq!(releasable("caf\u{FFFD}", &stops), 3);
        assert_eq!(releasable("caf\u{FFFD}\u{FFFD}", &[]), 3);
        assert_eq!(find_stop("a END b\n\n", &stops), Some(2));
        assert_eq!(find_stop("a b", &stops), None);
    }
}
