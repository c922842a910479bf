//! What scoring returns.

use ndarray::Array2;

/// Rewards for the options of one call, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// The reward of each option (for DPL, the mean of its reward distribution).
    pub reward: Vec<f32>,
    /// DPL only: the standard deviation of each option's reward distribution (positive).
    pub std: Option<Vec<f32>>,
}

/// Rewards for a batch: row `b` holds the scores of user `b`'s options.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchScores {
    /// `[batch, n]` rewards (for DPL, means).
    pub reward: Array2<f32>,
    /// DPL only: `[batch, n]` standard deviations.
    pub std: Option<Array2<f32>>,
}
