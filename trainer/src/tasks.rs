//! Seeded preference tasks: a pool of option pairs per split, and hidden user types that each
//! label a pair by their own reward.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which part of the pair pool to draw from. Users of one split never see pairs of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Split {
    /// 80% of the pairs: training users.
    Train,
    /// 10%: validation users, for model selection.
    Val,
    /// 10%: held-out users, for every reported figure.
    Test,
}

/// A flat pool of option pairs `(a, b)`, each option a vector of `dim` floats.
#[derive(Debug, Clone, Default)]
pub struct PairPool {
    /// Size of one option.
    pub dim: usize,
    /// Options `a`, `len() * dim` floats.
    pub a: Vec<f32>,
    /// Options `b`, `len() * dim` floats.
    pub b: Vec<f32>,
}

impl PairPool {
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.a.len() / self.dim.max(1)
    }

    /// Whether the pool holds no pair.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Option `a` of pair `i`.
    pub fn a(&self, i: usize) -> &[f32] {
        &self.a[i * self.dim..(i + 1) * self.dim]
    }

    /// Option `b` of pair `i`.
    pub fn b(&self, i: usize) -> &[f32] {
        &self.b[i * self.dim..(i + 1) * self.dim]
    }
}

/// Which synthetic task to build, as named on the command line and in reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum TaskSpec {
    /// The paper's 1-D task: y ~ U\[0,1\]; type 0 has r = y, then 2y above 0.5; type 1 has r = y, then 1 − y.
    Synthetic1d,
    /// Identifiability: y = (h0, h1) ~ N(0, [[1, ρ], [ρ, 1]]) and user type z* has r = h_{z*}.
    GaussianRho {
        /// Correlation ρ between the two coordinates, in [−1, 1].
        rho: f64,
    },
    /// Options are embedded texts from a dataset (see the run's `run.json`); not generated here.
    Text,
}

impl TaskSpec {
    /// A short display name, e.g. `synthetic-1d` or `gaussian-rho=-0.7`.
    pub fn label(&self) -> String {
        match self {
            TaskSpec::Synthetic1d => "synthetic-1d".into(),
            TaskSpec::GaussianRho { rho } => format!("gaussian-rho={rho}"),
            TaskSpec::Text => "text".into(),
        }
    }

    /// Option size d.
    pub fn embedding_dim(&self) -> usize {
        match self {
            TaskSpec::Synthetic1d => 1,
            TaskSpec::GaussianRho { .. } => 2,
            // Set by the embedder; text runs take it from the data.
            TaskSpec::Text => 0,
        }
    }

    /// Names of the hidden user types, indexed by type id.
    pub fn user_types(&self) -> Vec<String> {
        match self {
            TaskSpec::Synthetic1d => vec!["prefers-high".into(), "prefers-middle".into()],
            TaskSpec::GaussianRho { .. } => vec!["h0".into(), "h1".into()],
            TaskSpec::Text => Vec::new(),
        }
    }

    /// The reward user type `user_type` gives `option`.
    pub fn reward(&self, option: &[f32], user_type: usize) -> f32 {
        match self {
            TaskSpec::Synthetic1d => {
                let y = option[0];
                match (y <= 0.5, user_type) {
                    (true, _) => y,
                    (false, 0) => 2.0 * y,
                    (false, _) => 1.0 - y,
                }
            }
            TaskSpec::GaussianRho { .. } => option[user_type.min(1)],
            TaskSpec::Text => 0.0,
        }
    }

    /// A probe pair `(a, b)` on which the two user types disagree decisively: type 0 prefers `a`, type 1
    /// prefers `b`, each by a wide margin. Which of the two a model prefers for a user is the type it
    /// has identified, free of the ranking noise of near-tied pairs.
    pub fn identification_probe(&self) -> (Vec<f32>, Vec<f32>) {
        match self {
            // prefers-high: r(0.95) = 1.9 > r(0.55) = 1.1; prefers-middle: r(0.55) = 0.45 > r(0.95) = 0.05.
            TaskSpec::Synthetic1d => (vec![0.95], vec![0.55]),
            // h0: 1 > −1; h1: −1 < 1.
            TaskSpec::GaussianRho { .. } => (vec![1.0, -1.0], vec![-1.0, 1.0]),
            TaskSpec::Text => (Vec::new(), Vec::new()),
        }
    }

    /// The Bayes error of identifying the user type from one context pair, where known
    /// (Gaussian-ρ: 1/4 + arcsin(ρ)/(2π)).
    pub fn bayes_identification_error(&self) -> Option<f64> {
        match self {
            TaskSpec::Synthetic1d | TaskSpec::Text => None,
            TaskSpec::GaussianRho { rho } => Some(0.25 + rho.asin() / (2.0 * std::f64::consts::PI)),
        }
    }
}

/// Where simulated users draw their pairs from: a synthetic [`Task`] or a text dataset
/// ([`crate::text_task::TextTask`]). The sampler, training and evaluation see only this.
pub trait PairSource: Sync {
    /// A short display name, e.g. `synthetic-1d` or `hh-relabeled`.
    fn label(&self) -> String;

    /// Names of the hidden user types, indexed by type id.
    fn user_types(&self) -> Vec<String>;

    /// The pairs of a split.
    fn pool(&self, split: Split) -> &PairPool;

    /// The pairs of `split` a user of `user_type` may be given (indices into [`PairSource::pool`]); `None` means
    /// all of them.
    fn pairs_for(&self, _split: Split, _user_type: usize) -> Option<&[usize]> {
        None
    }

    /// Whether a user of `user_type` prefers option `a` of pair `pair`; exact ties are broken by `rng`.
    fn prefers_a(&self, split: Split, pair: usize, user_type: usize, rng: &mut StdRng) -> bool;

    /// Whether the user types disagree on a pair, where that is known.
    fn types_disagree(&self, split: Split, pair: usize) -> Option<bool>;

    /// A pair that the two user types rank oppositely by a wide margin (see
    /// [`TaskSpec::identification_probe`]), where the source has one.
    fn identification_probe(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        None
    }
}

/// A generated task: the spec plus its pair pools.
#[derive(Debug, Clone)]
pub struct Task {
    /// What the task is.
    pub spec: TaskSpec,
    /// Training pairs (80%).
    pub train: PairPool,
    /// Validation pairs (10%).
    pub val: PairPool,
    /// Held-out test pairs (10%).
    pub test: PairPool,
}

impl Task {
    /// Generates `n_pairs` pairs with `seed` and splits them 80/10/10.
    pub fn generate(spec: TaskSpec, n_pairs: usize, seed: u64) -> Result<Task> {
        if n_pairs < 10 {
            return Err(Error::InvalidConfig { field: "n_pairs", expected: ">= 10".into(), got: n_pairs.to_string() });
        }
        if spec == TaskSpec::Text {
            return Err(Error::InvalidConfig {
                field: "task",
                expected: "a synthetic task (text tasks come from data: `steer train --format`)".into(),
                got: "text".into(),
            });
        }
        if let TaskSpec::GaussianRho { rho } = spec
            && !(-1.0..=1.0).contains(&rho)
        {
            return Err(Error::InvalidConfig { field: "rho", expected: "in [-1, 1]".into(), got: rho.to_string() });
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let dim = spec.embedding_dim();
        let draw = |rng: &mut StdRng| -> Vec<f32> {
            match spec {
                TaskSpec::Synthetic1d | TaskSpec::Text => vec![rng.random::<f32>()],
                TaskSpec::GaussianRho { rho } => {
                    let u: f64 = StandardNormal.sample(rng);
                    let v: f64 = StandardNormal.sample(rng);
                    let h1 = rho * u + (1.0 - rho * rho).max(0.0).sqrt() * v;
                    vec![u as f32, h1 as f32]
                }
            }
        };
        let n_train = n_pairs * 8 / 10;
        let n_val = n_pairs / 10;
        let mut pools = [n_train, n_val, n_pairs - n_train - n_val].map(|n| {
            let mut pool = PairPool { dim, a: Vec::with_capacity(n * dim), b: Vec::with_capacity(n * dim) };
            for _ in 0..n {
                pool.a.extend(draw(&mut rng));
                pool.b.extend(draw(&mut rng));
            }
            pool
        });
        let [train, val, test] = std::mem::take(&mut pools);
        Ok(Task { spec, train, val, test })
    }

    /// The pool of a split.
    pub fn pool(&self, split: Split) -> &PairPool {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }

    /// Whether user type `user_type` prefers `a` over `b`; exact ties are broken by `rng`.
    pub fn prefers_a(&self, a: &[f32], b: &[f32], user_type: usize, rng: &mut impl Rng) -> bool {
        let (ra, rb) = (self.spec.reward(a, user_type), self.spec.reward(b, user_type));
        if ra == rb { rng.random::<bool>() } else { ra > rb }
    }
}

impl PairSource for Task {
    fn label(&self) -> String {
        self.spec.label()
    }

    fn user_types(&self) -> Vec<String> {
        self.spec.user_types()
    }

    fn pool(&self, split: Split) -> &PairPool {
        Task::pool(self, split)
    }

    fn prefers_a(&self, split: Split, pair: usize, user_type: usize, rng: &mut StdRng) -> bool {
        let pool = Task::pool(self, split);
        Task::prefers_a(self, pool.a(pair), pool.b(pair), user_type, rng)
    }

    fn types_disagree(&self, split: Split, pair: usize) -> Option<bool> {
        let pool = Task::pool(self, split);
        let (a, b) = (pool.a(pair), pool.b(pair));
        let first = self.spec.reward(a, 0) > self.spec.reward(b, 0);
        Some((1..self.spec.user_types().len()).any(|u| (self.spec.reward(a, u) > self.spec.reward(b, u)) != first))
    }

    fn identification_probe(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        Some(self.spec.identification_probe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_d_types_agree_on_half_the_pairs_so_unconditioned_models_top_out_near_75() {
        let task = Task::generate(TaskSpec::Synthetic1d, 20_000, 7).unwrap();
        let pool = &task.train;
        let mut rng = StdRng::seed_from_u64(0);
        let agree = (0..pool.len())
            .filter(|&i| {
                task.prefers_a(pool.a(i), pool.b(i), 0, &mut rng) == task.prefers_a(pool.a(i), pool.b(i), 1, &mut rng)
            })
            .count() as f64
            / pool.len() as f64;
        // Both below 0.5: agree (1/4). Both above: disagree (1/4). Split: agree when y_low + y_high > 1
        // (1/2 of 1/2). A model that ignores the user is right on agreed pairs and guesses on the rest:
        // 0.5 + 0.5 * 0.5 = 75%.
        assert!((agree - 0.5).abs() < 0.02, "agreement {agree}");
        assert_eq!((task.train.len(), task.val.len(), task.test.len()), (16_000, 2_000, 2_000));
    }

    #[test]
    fn gaussian_bayes_error_matches_the_paper() {
        let e = |rho| TaskSpec::GaussianRho { rho }.bayes_identification_error().unwrap();
        assert!((e(-1.0) - 0.0).abs() < 1e-9);
        assert!((e(-0.7) - 0.1266).abs() < 1e-3);
        assert!((e(0.0) - 0.25).abs() < 1e-9);
        assert!((e(0.7) - 0.3734).abs() < 1e-3);
    }

    #[test]
    fn gaussian_correlation_is_rho() {
        let task = Task::generate(TaskSpec::GaussianRho { rho: 0.7 }, 20_000, 3).unwrap();
        let pool = &task.train;
        let n = pool.len() as f64;
        let corr = (0..pool.len()).map(|i| f64::from(pool.a(i)[0]) * f64::from(pool.a(i)[1])).sum::<f64>() / n;
        assert!((corr - 0.7).abs() < 0.03, "corr {corr}");
    }
}
