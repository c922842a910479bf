//! The token sampler: how each row of a generation picks its next token from the last position's logits. The
//! runtime's decoding loop and the trainer's candle loop both sample with [`RowSampler`], so the same seed, settings
//! and logits give the same tokens in either.
//!
//! # The rule
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
//! # The random generator
//!
//! Every row has its own random generator, `ChaCha8Rng::seed_from_u64(seed + row)` (wrapping), drawn from only when
//! that row samples: the same seed, prompt and profile give the same text whatever else is in the batch, and the
//! rows of a best-of-n batch differ.
//!
//! # Example
//!
//! ```
//! use steer_runtime::GenerationParams;
//! use steer_runtime::sampling::RowSampler;
//!
//! let params = GenerationParams { temperature: 0.0, repetition_penalty: 2.0, ..GenerationParams::default() };
//! // Row 0 of a batch whose prompt holds token 1: its logit 3.0 is penalised to 1.5, so token 2 wins.
//! let mut sampler = RowSampler::new(params.seed, 0, &[1]);
//! assert_eq!(sampler.sample(&[0.0, 3.0, 2.0], &params), 2);
//! ```

use std::borrow::Cow;
use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::policy_spec::GenerationParams;

/// The sampler of one row of a batch: its random generator and the distinct tokens the row holds (for the
/// repetition penalty).
#[derive(Debug, Clone)]
pub struct RowSampler {
    rng: ChaCha8Rng,
    seen: HashSet<u32>,
}

impl RowSampler {
    /// The sampler of row `row` of a batch generated with `seed`, whose prompt is the token ids `prompt`.
    pub fn new(seed: u64, row: usize, prompt: &[u32]) -> RowSampler {
        RowSampler {
            rng: ChaCha8Rng::seed_from_u64(seed.wrapping_add(row as u64)),
            seen: prompt.iter().copied().collect(),
        }
    }

    /// Samples the next token from the row's `logits` by the rule of the [module docs](self), and counts it as part
    /// of the row. `params` are taken as valid ([`GenerationParams::validate`]); NaN logits are never picked.
    pub fn sample(&mut self, logits: &[f32], params: &GenerationParams) -> u32 {
        let mut logits = Cow::Borrowed(logits);
        if params.repetition_penalty != 1.0 {
            apply_repetition_penalty(logits.to_mut(), &self.seen, params.repetition_penalty);
        }
        let id = if params.temperature == 0.0 {
            argmax(&logits) as u32
        } else {
            let candidates = top_k_candidates(&logits, params.temperature, params.top_k);
            let probs = top_p_filter(softmax(&candidates), params.top_p);
            draw(&probs, self.rng.random::<f64>())
        };
        self.seen.insert(id);
        id
    }
}

/// Applies the repetition penalty to the logits of `seen` (distinct ids; ids past the end are ignored).
fn apply_repetition_penalty(logits: &mut [f32], seen: &HashSet<u32>, penalty: f32) {
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
fn top_k_candidates(logits: &[f32], temperature: f32, top_k: usize) -> Vec<(u32, f32)> {
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
fn softmax(candidates: &[(u32, f32)]) -> Vec<(u32, f64)> {
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
fn top_p_filter(mut probs: Vec<(u32, f64)>, top_p: f32) -> Vec<(u32, f64)> {
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
fn draw(probs: &[(u32, f64)], u: f64) -> u32 {
    let mut cumulative = 0.0;
    for &(id, p) in probs {
        cumulative += p;
        if u < cumulative {
            return id;
        }
    }
    probs.iter().rev().find(|&&(_, p)| p > 0.0).or(probs.last()).map_or(0, |&(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> GenerationParams {
        GenerationParams { temperature: 1.0, ..GenerationParams::greedy(4) }
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
        apply_repetition_penalty(&mut logits, &HashSet::from([0, 1, 9]), 2.0);
        assert_eq!(logits, [1.0, -2.0, 0.5, 3.0]);
        // Penalised token 3 (3.0 → 1.5) loses the argmax to token 0 (2.0).
        let mut logits = [2.0, -1.0, 0.5, 3.0];
        apply_repetition_penalty(&mut logits, &HashSet::from([3]), 2.0);
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
        let mut sampler = RowSampler::new(5, 0, &[1]);
        assert_eq!(sampler.sample(&[0.0, 3.0, 2.0], &greedy), 2);
        // Now token 2 is in the row too: 2.0 → 1.0, and token 1 (1.5) wins.
        assert_eq!(sampler.sample(&[0.0, 3.0, 2.0], &greedy), 1);

        let logits = [0.0f32; 8];
        let draws = |seed, row| {
            let mut sampler = RowSampler::new(seed, row, &[]);
            (0..16).map(|_| sampler.sample(&logits, &params())).collect::<Vec<_>>()
        };
        assert_eq!(draws(1, 0), draws(1, 0));
        assert_ne!(draws(1, 0), draws(2, 0));
        // Row r of seed s draws what row 0 of seed s + r draws.
        assert_eq!(draws(1, 3), draws(4, 0));
        assert_eq!(draws(u64::MAX, 1), draws(0, 0));
        // top_k 1 is greedy whatever the generator.
        let top1 = GenerationParams { top_k: 1, ..params() };
        let mut sampler = RowSampler::new(3, 0, &[]);
        assert!((0..16).all(|_| sampler.sample(&[0.0, 0.5, 0.4], &top1) == 1));
    }
}
