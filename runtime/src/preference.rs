//! Turning rewards into the probability that one option is preferred over another.

use std::cmp::Ordering;

use crate::manifest::ModelKind;

/// One option's reward as a model scores it: a value, plus a standard deviation for DPL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reward {
    /// The reward (for DPL, the mean of the reward distribution).
    pub mean: f32,
    /// DPL only: the standard deviation of the reward distribution; `None` counts as 0.
    pub std: Option<f32>,
}

impl Reward {
    /// A point reward (BTL, NP-BTL).
    pub fn point(mean: f32) -> Self {
        Reward { mean, std: None }
    }
}

/// The probability that option `a` is preferred over option `b`, as the given kind of model defines it.
///
/// - BTL and NP-BTL (Bradley-Terry): `p = sigmoid(r_a − r_b)`; stds are ignored.
/// - DPL: `p = sigmoid(sqrt(2π) · (μ_a − μ_b) / sqrt(σ_a² + σ_b²))`. With zero total variance this is the limit:
///   1, 0 or ½ by the sign of `μ_a − μ_b`.
///
/// Computed in f64 with a numerically stable sigmoid, so `p(a, b) + p(b, a) = 1` up to f32 rounding and large
/// reward gaps give exactly 0 or 1 rather than NaN. The trainer uses this same function, so trained metrics and the
/// runtime agree by construction.
///
/// ```
/// use steer_runtime::{ModelKind, Reward, preference_probability};
///
/// let p = preference_probability(ModelKind::Btl, Reward::point(2.0), Reward::point(1.0));
/// assert!((p - 0.731_058_6).abs() < 1e-6);
/// ```
pub fn preference_probability(kind: ModelKind, a: Reward, b: Reward) -> f32 {
    let diff = f64::from(a.mean) - f64::from(b.mean);
    let logit = match kind {
        ModelKind::Btl | ModelKind::NpBtl => diff,
        ModelKind::Dpl => {
            let var = |r: Reward| f64::from(r.std.unwrap_or(0.0)).powi(2);
            let scale = (var(a) + var(b)).sqrt();
            if scale == 0.0 {
                // Both distributions are points: the larger mean always wins.
                return match diff.partial_cmp(&0.0) {
                    Some(Ordering::Greater) => 1.0,
                    Some(Ordering::Less) => 0.0,
                    Some(Ordering::Equal) => 0.5,
                    None => f32::NAN,
                };
            }
            (2.0 * std::f64::consts::PI).sqrt() * diff / scale
        }
    };
    sigmoid(logit) as f32
}

/// `1 / (1 + e^-x)` without overflow for large |x|.
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [ModelKind; 3] = [ModelKind::NpBtl, ModelKind::Btl, ModelKind::Dpl];

    fn dist(mean: f32, std: f32) -> Reward {
        Reward { mean, std: Some(std) }
    }

    #[test]
    fn swapping_options_complements_the_probability() {
        let pairs = [
            (dist(0.3, 0.5), dist(-1.2, 2.0)),
            (dist(10.0, 0.1), dist(10.0, 0.1)),
            (dist(-4.0, 1.0), dist(3.5, 0.25)),
            (dist(80.0, 1.0), dist(-80.0, 1.0)),
            (dist(1e-3, 1e-4), dist(0.0, 1e-4)),
        ];
        for kind in KINDS {
            for (a, b) in pairs {
                let (pab, pba) = (preference_probability(kind, a, b), preference_probability(kind, b, a));
                assert!((pab + pba - 1.0).abs() < 1e-6, "{kind}: {pab} + {pba}");
                assert!((0.0..=1.0).contains(&pab), "{kind}: {pab}");
            }
        }
    }

    #[test]
    fn btl_is_the_sigmoid_of_the_reward_gap() {
        for kind in [ModelKind::Btl, ModelKind::NpBtl] {
            assert_eq!(preference_probability(kind, Reward::point(1.0), Reward::point(1.0)), 0.5);
            let p = preference_probability(kind, Reward::point(0.5), Reward::point(-0.5));
            assert!((p - 1.0 / (1.0 + (-1.0f32).exp())).abs() < 1e-7);
            // stds are ignored by Bradley-Terry models
            assert_eq!(preference_probability(kind, dist(0.5, 9.0), dist(-0.5, 0.1)), p);
        }
    }

    #[test]
    fn dpl_scales_the_gap_by_the_combined_std() {
        // sqrt(2π) · 1 / sqrt(0.6² + 0.8²) = sqrt(2π)
        let p = preference_probability(ModelKind::Dpl, dist(1.0, 0.6), dist(0.0, 0.8));
        let expected = 1.0 / (1.0 + (-(2.0 * std::f64::consts::PI).sqrt()).exp());
        assert!((f64::from(p) - expected).abs() < 1e-6, "{p} vs {expected}");
        // Wider distributions make the same gap less decisive.
        assert!(preference_probability(ModelKind::Dpl, dist(1.0, 3.0), dist(0.0, 4.0)) < p);
    }

    #[test]
    fn extremes_saturate_without_nan() {
        for kind in KINDS {
            assert_eq!(preference_probability(kind, dist(1e30, 1.0), dist(-1e30, 1.0)), 1.0);
            assert_eq!(preference_probability(kind, dist(-1e30, 1.0), dist(1e30, 1.0)), 0.0);
        }
        let point = |m| Reward::point(m);
        assert_eq!(preference_probability(ModelKind::Dpl, point(1.0), point(0.0)), 1.0);
        assert_eq!(preference_probability(ModelKind::Dpl, point(0.0), point(1.0)), 0.0);
        assert_eq!(preference_probability(ModelKind::Dpl, point(2.0), point(2.0)), 0.5);
        assert!(preference_probability(ModelKind::Btl, point(f32::NAN), point(0.0)).is_nan());
    }
}
