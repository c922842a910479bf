//! Samples batches of tasks. A task is one simulated user: a hidden user type, `n_targets` labelled
//! target pairs, and a context of `k` pairs taken from those targets. The true context indices are
//! kept, so that evaluation scores only the targets the model has not seen.

use candle_core::{Device, Tensor};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::index::sample;

use crate::error::{Error, Result};
use crate::tasks::{PairSource, Split};

/// How many context pairs each task gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextSize {
    /// k ~ U{0..=max}, drawn per task (training).
    Uniform {
        /// Largest k.
        max: usize,
    },
    /// The same k for every task (evaluation at a given k).
    Fixed(usize),
}

/// A padded batch of tasks, in flat row-major buffers ready for candle or ONNX Runtime.
#[derive(Debug, Clone)]
pub struct TaskBatch {
    /// Number of tasks B.
    pub batch: usize,
    /// Targets per task N.
    pub n_targets: usize,
    /// Padded context length K (at least 1, so that a batch of k = 0 tasks still has a valid shape
    /// for candle; the padding is masked out).
    pub k_max: usize,
    /// Option size d.
    pub dim: usize,
    /// `[B, K, 2d]`: each row is `[chosen ‖ rejected]`; padding rows are zero.
    pub context: Vec<f32>,
    /// `[B, K]`: 1 for a real context pair, 0 for padding.
    pub mask: Vec<f32>,
    /// `[B, N, d]`: first option of each target pair.
    pub option_a: Vec<f32>,
    /// `[B, N, d]`: second option of each target pair.
    pub option_b: Vec<f32>,
    /// `[B, N]`: 1 when the task's user prefers `a`, else 0.
    pub label: Vec<f32>,
    /// `[B, N]`: 1 for targets that are not in the context.
    pub unseen: Vec<f32>,
    /// Hidden user type of each task.
    pub user_type: Vec<usize>,
    /// Context size k of each task.
    pub k: Vec<usize>,
    /// For each task, the indices of its targets that form the context.
    pub context_index: Vec<Vec<usize>>,
    /// `[B, N]`: whether the user types disagree on the target pair, where the source knows.
    pub types_disagree: Vec<Option<bool>>,
}

/// The batch as candle tensors.
pub struct BatchTensors {
    /// `[B, K, 2d]`.
    pub context: Tensor,
    /// `[B, K]`.
    pub mask: Tensor,
    /// `[B, N, d]`.
    pub option_a: Tensor,
    /// `[B, N, d]`.
    pub option_b: Tensor,
    /// `[B, N]`.
    pub label: Tensor,
}

impl TaskBatch {
    /// Converts the buffers into tensors on `device`.
    pub fn tensors(&self, device: &Device) -> Result<BatchTensors> {
        let (b, n, k, d) = (self.batch, self.n_targets, self.k_max, self.dim);
        Ok(BatchTensors {
            context: Tensor::from_slice(&self.context, (b, k, 2 * d), device)?,
            mask: Tensor::from_slice(&self.mask, (b, k), device)?,
            option_a: Tensor::from_slice(&self.option_a, (b, n, d), device)?,
            option_b: Tensor::from_slice(&self.option_b, (b, n, d), device)?,
            label: Tensor::from_slice(&self.label, (b, n), device)?,
        })
    }
}

/// Draws batches of tasks from one split of a [`PairSource`].
pub struct Sampler<'a> {
    task: &'a dyn PairSource,
    n_targets: usize,
}

impl<'a> Sampler<'a> {
    /// A sampler giving each task `n_targets` target pairs.
    pub fn new(task: &'a dyn PairSource, n_targets: usize) -> Result<Self> {
        let smallest = [Split::Train, Split::Val, Split::Test].iter().map(|&s| task.pool(s).len()).min().unwrap_or(0);
        if n_targets == 0 || n_targets > smallest {
            return Err(Error::InvalidConfig {
                field: "n_targets",
                expected: format!("in 1..={smallest} (the smallest split)"),
                got: n_targets.to_string(),
            });
        }
        Ok(Sampler { task, n_targets })
    }

    /// Samples `batch` tasks from `split`.
    pub fn sample(&self, split: Split, batch: usize, context: ContextSize, rng: &mut StdRng) -> Result<TaskBatch> {
        let n = self.n_targets;
        let max_k = match context {
            ContextSize::Uniform { max } => max,
            ContextSize::Fixed(k) => k,
        };
        if max_k > n {
            return Err(Error::InvalidConfig {
                field: "context size",
                expected: format!("<= n_targets ({n}), since the context is taken from the targets"),
                got: max_k.to_string(),
            });
        }
        let ks: Vec<usize> = (0..batch)
            .map(|_| match context {
                ContextSize::Uniform { max } => rng.random_range(0..=max),
                ContextSize::Fixed(k) => k,
            })
            .collect();
        let k_max = ks.iter().copied().max().unwrap_or(0).max(1);
        let pool = self.task.pool(split);
        let d = pool.dim;
        let types = self.task.user_types();
        // Each user type must have enough pairs of its own in this split for one user's targets.
        for (user, name) in types.iter().enumerate() {
            let available = self.task.pairs_for(split, user).map_or(pool.len(), <[usize]>::len);
            if available < n {
                return Err(Error::InvalidConfig {
                    field: "n_targets",
                    expected: format!("<= the {available} {split:?} pairs of user type `{name}`"),
                    got: n.to_string(),
                });
            }
        }
        let mut out = TaskBatch {
            batch,
            n_targets: n,
            k_max,
            dim: d,
            context: vec![0.0; batch * k_max * 2 * d],
            mask: vec![0.0; batch * k_max],
            option_a: Vec::with_capacity(batch * n * d),
            option_b: Vec::with_capacity(batch * n * d),
            label: Vec::with_capacity(batch * n),
            unseen: vec![1.0; batch * n],
            user_type: Vec::with_capacity(batch),
            k: ks.clone(),
            context_index: Vec::with_capacity(batch),
            types_disagree: Vec::with_capacity(batch * n),
        };
        for (t, &k) in ks.iter().enumerate() {
            let user = rng.random_range(0..types.len());
            let eligible = self.task.pairs_for(split, user);
            let picked = sample(rng, eligible.map_or(pool.len(), <[usize]>::len), n).into_vec();
            let pairs: Vec<usize> = match eligible {
                Some(eligible) => picked.iter().map(|&i| eligible[i]).collect(),
                None => picked,
            };
            let first_target = out.label.len();
            for &p in &pairs {
                out.option_a.extend_from_slice(pool.a(p));
                out.option_b.extend_from_slice(pool.b(p));
                let a_wins = self.task.prefers_a(split, p, user, rng);
                out.label.push(if a_wins { 1.0 } else { 0.0 });
                out.types_disagree.push(self.task.types_disagree(split, p));
            }
            let mut chosen = sample(rng, n, k).into_vec();
            chosen.sort_unstable();
            for (slot, &j) in chosen.iter().enumerate() {
                let (a, b) = (pool.a(pairs[j]), pool.b(pairs[j]));
                let (win, lose) = if out.label[first_target + j] == 1.0 { (a, b) } else { (b, a) };
                let row = (t * k_max + slot) * 2 * d;
                out.context[row..row + d].copy_from_slice(win);
                out.context[row + d..row + 2 * d].copy_from_slice(lose);
                out.mask[t * k_max + slot] = 1.0;
                out.unseen[t * n + j] = 0.0;
            }
            out.user_type.push(user);
            out.context_index.push(chosen);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::{Task, TaskSpec};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn context_comes_from_the_targets_and_is_masked_out_of_unseen() {
        let task = Task::generate(TaskSpec::Synthetic1d, 2_000, 1).unwrap();
        let sampler = Sampler::new(&task, 20).unwrap();
        let mut rng = StdRng::seed_from_u64(2);
        let batch = sampler.sample(Split::Train, 64, ContextSize::Uniform { max: 10 }, &mut rng).unwrap();
        assert_eq!(batch.k_max, *batch.k.iter().max().unwrap());
        for t in 0..batch.batch {
            let k = batch.k[t];
            assert!(k <= 10);
            let mask = &batch.mask[t * batch.k_max..(t + 1) * batch.k_max];
            assert_eq!(mask.iter().sum::<f32>() as usize, k);
            assert!(mask[..k].iter().all(|&m| m == 1.0) && mask[k..].iter().all(|&m| m == 0.0));
            let unseen = &batch.unseen[t * 20..(t + 1) * 20];
            assert_eq!(unseen.iter().filter(|&&u| u == 0.0).count(), k);
            for (slot, &j) in batch.context_index[t].iter().enumerate() {
                assert_eq!(unseen[j], 0.0);
                // The context row is the target pair, oriented chosen-first by this user's label.
                let row = (t * batch.k_max + slot) * 2;
                let (a, b) = (batch.option_a[t * 20 + j], batch.option_b[t * 20 + j]);
                let expected = if batch.label[t * 20 + j] == 1.0 { [a, b] } else { [b, a] };
                assert_eq!(&batch.context[row..row + 2], &expected);
            }
            // Padding rows are zero.
            let pad = &batch.context[(t * batch.k_max + k) * 2..(t + 1) * batch.k_max * 2];
            assert!(pad.iter().all(|&x| x == 0.0));
        }
    }

    #[test]
    fn k_zero_batches_keep_one_masked_slot() {
        let task = Task::generate(TaskSpec::Synthetic1d, 2_000, 1).unwrap();
        let sampler = Sampler::new(&task, 20).unwrap();
        let batch = sampler.sample(Split::Test, 4, ContextSize::Fixed(0), &mut StdRng::seed_from_u64(0)).unwrap();
        assert_eq!(batch.k_max, 1);
        assert!(batch.mask.iter().all(|&m| m == 0.0));
        assert!(batch.unseen.iter().all(|&u| u == 1.0));
    }

    #[test]
    fn labels_follow_the_user_type() {
        let task = Task::generate(TaskSpec::Synthetic1d, 2_000, 1).unwrap();
        let sampler = Sampler::new(&task, 20).unwrap();
        let batch = sampler.sample(Split::Val, 32, ContextSize::Fixed(3), &mut StdRng::seed_from_u64(5)).unwrap();
        for i in 0..batch.batch * 20 {
            let user = batch.user_type[i / 20];
            let (ra, rb) = (task.spec.reward(&[batch.option_a[i]], user), task.spec.reward(&[batch.option_b[i]], user));
            if ra != rb {
                assert_eq!(batch.label[i] == 1.0, ra > rb);
            }
        }
    }

    #[test]
    fn too_large_a_context_is_an_error() {
        let task = Task::generate(TaskSpec::Synthetic1d, 2_000, 1).unwrap();
        let sampler = Sampler::new(&task, 5).unwrap();
        let err = sampler.sample(Split::Train, 2, ContextSize::Fixed(6), &mut StdRng::seed_from_u64(0)).unwrap_err();
        assert!(err.to_string().contains("context size"), "{err}");
        assert!(Sampler::new(&task, 0).is_err());
    }
}
