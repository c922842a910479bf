//! Text preference data as a [`PairSource`]: the pairs of a [`PreferenceDataset`] as embedding vectors, with the
//! label of every user type that judged each pair.
//!
//! A simulated user of type `u` is given only pairs that type `u` judged. When the same two responses to a prompt
//! were judged by several types (the built-in task, UltraFeedback's per-attribute users, per-user JSONL), they
//! become one pair with a label per type, and whether the types disagree on it is known. When each pair was judged
//! by one type only (HH-relabeled), that is unknown; [`TextTask::set_disagreement`] lets evaluation supply an
//! estimate.

use std::collections::BTreeMap;

use ndarray::ArrayView2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data::PreferenceDataset;
use crate::error::{Error, Result};
use crate::tasks::{PairPool, PairSource, Split};

/// One split: pairs as vectors and who judged them how.
#[derive(Debug, Clone, Default)]
struct TextSplit {
    pool: PairPool,
    /// Per pair, per user type: `Some(true)` when that type prefers option `a`.
    labels: Vec<Vec<Option<bool>>>,
    /// Per user type, the pairs it judged.
    judged: Vec<Vec<usize>>,
    /// Per pair, whether the types disagree, where known.
    disagree: Vec<Option<bool>>,
}

/// A text dataset ready for the sampler: train, validation and test splits over shared user types.
#[derive(Debug, Clone)]
pub struct TextTask {
    label: String,
    user_types: Vec<String>,
    splits: [TextSplit; 3],
}

/// The pairs of one split with their option embeddings: row `2i` of `embeddings` is pair `i`'s chosen response and
/// row `2i + 1` its rejected one.
pub struct EmbeddedPairs<'a> {
    /// The pairs.
    pub data: &'a PreferenceDataset,
    /// `[2 · pairs, d]`.
    pub embeddings: ArrayView2<'a, f32>,
}

impl TextTask {
    /// Builds the task from its three splits. The user types are those of the training split; a type in another
    /// split that training never saw is an error. Each pair's options are put in a seeded random order, so
    /// "option a" carries no information.
    pub fn new(
        label: &str,
        train: EmbeddedPairs<'_>,
        val: EmbeddedPairs<'_>,
        test: EmbeddedPairs<'_>,
        seed: u64,
    ) -> Result<Self> {
        let user_types = train.data.user_types.clone();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut build = |pairs: EmbeddedPairs<'_>, name: &str| build_split(pairs, &user_types, name, &mut rng);
        let splits = [build(train, "training")?, build(val, "validation")?, build(test, "evaluation")?];
        Ok(TextTask { label: label.to_string(), user_types, splits })
    }

    fn split(&self, split: Split) -> &TextSplit {
        &self.splits[split_index(split)]
    }

    /// Sets whether the user types disagree on each pair of `split` (e.g. estimated from per-type oracle models
    /// where the data gives each pair one judge). `disagree` has one entry per pair.
    pub fn set_disagreement(&mut self, split: Split, disagree: Vec<Option<bool>>) -> Result<()> {
        let target = &mut self.splits[split_index(split)];
        if disagree.len() != target.pool.len() {
            return Err(Error::InvalidInput {
                input: "disagree",
                expected: format!("{} entries, one per pair", target.pool.len()),
                got: disagree.len().to_string(),
            });
        }
        target.disagree = disagree;
        Ok(())
    }

    /// Whether every pair of `split` has a known disagreement flag.
    pub fn disagreement_known(&self, split: Split) -> bool {
        self.split(split).disagree.iter().all(Option::is_some)
    }

    /// Number of pairs each user type judged in `split`.
    pub fn counts(&self, split: Split) -> BTreeMap<String, usize> {
        self.user_types.iter().cloned().zip(self.split(split).judged.iter().map(Vec::len)).collect()
    }

    /// The task as seen by one user type only: every split keeps just the pairs `user_type` judged. A per-type
    /// oracle trains on this; it is evaluated on the full task.
    pub fn only_type(&self, user_type: &str) -> Result<TextTask> {
        let u = self.user_types.iter().position(|t| t == user_type).ok_or_else(|| Error::InvalidInput {
            input: "user type",
            expected: format!("one of {:?}", self.user_types),
            got: user_type.to_string(),
        })?;
        Ok(TextTask {
            label: format!("{} ({user_type} only)", self.label),
            user_types: vec![user_type.to_string()],
            splits: [0, 1, 2].map(|i| keep_types(&self.splits[i], &[u])),
        })
    }
}

/// A split restricted to some user types (in that order).
fn keep_types(split: &TextSplit, types: &[usize]) -> TextSplit {
    TextSplit {
        pool: split.pool.clone(),
        labels: split.labels.iter().map(|row| types.iter().map(|&t| row[t]).collect()).collect(),
        judged: types.iter().map(|&t| split.judged[t].clone()).collect(),
        disagree: split.disagree.clone(),
    }
}

fn split_index(split: Split) -> usize {
    match split {
        Split::Train => 0,
        Split::Val => 1,
        Split::Test => 2,
    }
}

/// Merges pairs with the same prompt and the same two responses into one pair labelled by each type that judged it.
fn build_split(pairs: EmbeddedPairs<'_>, user_types: &[String], name: &str, rng: &mut StdRng) -> Result<TextSplit> {
    let data = pairs.data;
    if pairs.embeddings.nrows() != 2 * data.len() {
        return Err(Error::InvalidInput {
            input: "embeddings",
            expected: format!("{} rows (chosen and rejected of {} {name} pairs)", 2 * data.len(), data.len()),
            got: pairs.embeddings.nrows().to_string(),
        });
    }
    let dim = pairs.embeddings.ncols();
    let mut out = TextSplit { pool: PairPool { dim, a: Vec::new(), b: Vec::new() }, ..TextSplit::default() };
    out.judged = vec![Vec::new(); user_types.len()];
    let mut index: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    // The response stored as option `a` of each pair.
    let mut a_texts: Vec<&str> = Vec::new();
    for (i, pair) in data.pairs.iter().enumerate() {
        let u = user_types.iter().position(|t| *t == pair.user_type).ok_or_else(|| Error::InvalidInput {
            input: "user type",
            expected: format!("one of the training data's user types {user_types:?}"),
            got: format!("`{}` in the {name} data", pair.user_type),
        })?;
        let (low, high) = if pair.chosen <= pair.rejected {
            (pair.chosen.as_str(), pair.rejected.as_str())
        } else {
            (pair.rejected.as_str(), pair.chosen.as_str())
        };
        let slot = match index.get(&(pair.prompt.as_str(), low, high)) {
            Some(&slot) => slot,
            None => {
                let slot = out.labels.len();
                index.insert((pair.prompt.as_str(), low, high), slot);
                // Store the pair in a random order; remember which side the chosen response went to.
                let chosen_first = rng.random::<bool>();
                let (chosen, rejected) = (pairs.embeddings.row(2 * i), pairs.embeddings.row(2 * i + 1));
                let (a, b) = if chosen_first { (chosen, rejected) } else { (rejected, chosen) };
                a_texts.push(if chosen_first { &pair.chosen } else { &pair.rejected });
                out.pool.a.extend(a.iter());
                out.pool.b.extend(b.iter());
                out.labels.push(vec![None; user_types.len()]);
                slot
            }
        };
        let pool_a_is_chosen = a_texts[slot] == pair.chosen;
        if out.labels[slot][u].is_none() {
            out.judged[u].push(slot);
        }
        out.labels[slot][u] = Some(pool_a_is_chosen);
    }
    out.disagree = out
        .labels
        .iter()
        .map(|row| {
            let known: Vec<bool> = row.iter().flatten().copied().collect();
            let differ = known.iter().any(|&l| l != known[0]);
            let all_judged = known.len() == row.len() && row.len() > 1;
            (all_judged || data.conflicts_listed).then_some(differ)
        })
        .collect();
    Ok(out)
}

impl PairSource for TextTask {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn user_types(&self) -> Vec<String> {
        self.user_types.clone()
    }

    fn pool(&self, split: Split) -> &PairPool {
        &self.split(split).pool
    }

    fn pairs_for(&self, split: Split, user_type: usize) -> Option<&[usize]> {
        Some(self.split(split).judged.get(user_type).map_or(&[], Vec::as_slice))
    }

    fn prefers_a(&self, split: Split, pair: usize, user_type: usize, rng: &mut StdRng) -> bool {
        // The sampler only gives a user pairs its type judged; anything else would be a coin flip.
        match self.split(split).labels.get(pair).and_then(|row| row.get(user_type)).copied().flatten() {
            Some(a_wins) => a_wins,
            None => rng.random::<bool>(),
        }
    }

    fn types_disagree(&self, split: Split, pair: usize) -> Option<bool> {
        self.split(split).disagree.get(pair).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;
    use crate::data::PreferencePair;

    fn pair(user_type: &str, prompt: &str, chosen: &str, rejected: &str) -> PreferencePair {
        PreferencePair {
            user_type: user_type.into(),
            prompt: prompt.into(),
            chosen: chosen.into(),
            rejected: rejected.into(),
        }
    }

    /// One distinct 1-d vector per response text, so a pair's orientation can be read off its vectors.
    fn embedded(data: &PreferenceDataset) -> Array2<f32> {
        let code = |text: &str| text.bytes().map(f32::from).sum::<f32>();
        let rows: Vec<f32> = data.pairs.iter().flat_map(|p| [code(&p.chosen), code(&p.rejected)]).collect();
        Array2::from_shape_vec((rows.len(), 1), rows).unwrap()
    }

    fn task(data: &PreferenceDataset) -> TextTask {
        let vectors = embedded(data);
        let split = || EmbeddedPairs { data, embeddings: vectors.view() };
        TextTask::new("test", split(), split(), split(), 7).unwrap()
    }

    #[test]
    fn pairs_judged_by_several_types_merge_and_their_conflicts_are_known() {
        let data = PreferenceDataset::new(vec![
            pair("x", "p1", "a", "b"),
            pair("y", "p1", "b", "a"), // the same pair, opposite choice
            pair("x", "p2", "c", "d"),
            pair("y", "p2", "c", "d"), // the same pair, same choice
            pair("x", "p3", "e", "f"), // judged by x only
        ]);
        let task = task(&data);
        assert_eq!(task.pool(Split::Train).len(), 3);
        assert_eq!(task.counts(Split::Train), BTreeMap::from([("x".into(), 3), ("y".into(), 2)]));
        let disagree: Vec<Option<bool>> = (0..3).map(|i| task.types_disagree(Split::Train, i)).collect();
        assert_eq!(disagree, [Some(true), Some(false), None]);
        assert!(!task.disagreement_known(Split::Train));
        let mut rng = StdRng::seed_from_u64(0);
        for (i, p) in data.pairs.iter().enumerate() {
            let slot = [0, 0, 1, 1, 2][i];
            let u = usize::from(p.user_type == "y");
            // Option `a` holds the chosen response exactly when the label says `a` wins.
            let a_is_chosen = task.pool(Split::Train).a(slot)[0] == embedded(&data)[[2 * i, 0]];
            assert_eq!(task.prefers_a(Split::Train, slot, u, &mut rng), a_is_chosen);
        }
    }

    #[test]
    fn an_oracle_task_keeps_one_type_and_unknown_types_are_errors() {
        let data = PreferenceDataset::new(vec![pair("x", "p", "a", "b"), pair("y", "q", "c", "d")]);
        let task = task(&data);
        let oracle = task.only_type("y").unwrap();
        assert_eq!(oracle.user_types(), ["y"]);
        assert_eq!(oracle.pairs_for(Split::Train, 0), Some(&[1usize][..]));
        assert!(task.only_type("z").is_err());
        let stranger = PreferenceDataset::new(vec![pair("z", "p", "a", "b")]);
        let (v, w) = (embedded(&data), embedded(&stranger));
        let err = TextTask::new(
            "t",
            EmbeddedPairs { data: &data, embeddings: v.view() },
            EmbeddedPairs { data: &stranger, embeddings: w.view() },
            EmbeddedPairs { data: &data, embeddings: v.view() },
            0,
        )
        .unwrap_err();
        assert!(err.to_string().contains("`z` in the validation data"), "{err}");
    }
}
