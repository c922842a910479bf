//! The two conversions of parsed prompts into preference pairs: [`Split::Conflict`] and [`Split::Dirichlet`] (the
//! [module docs](super) give the rules).
//!
//! [`Split::Conflict`]: super::Split::Conflict
//! [`Split::Dirichlet`]: super::Split::Dirichlet

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma};

use super::{Attribute, Prompt, UltraFeedbackData, UltraFeedbackStats};
use crate::data::{PreferenceDataset, PreferencePair};
use crate::error::{Error, Result};

/// One comparison: prompt index, and two completion indices `a < b`.
type Comparison = (usize, usize, usize);

/// Every comparison in file order, with both completions' ratings.
fn comparisons(prompts: &[Prompt]) -> impl Iterator<Item = (Comparison, &[Option<u8>], &[Option<u8>])> {
    prompts.iter().enumerate().flat_map(|(p, prompt)| {
        let n = prompt.completions.len();
        (0..n).flat_map(move |a| {
            (a + 1..n).map(move |b| ((p, a, b), prompt.completions[a].1.as_slice(), prompt.completions[b].1.as_slice()))
        })
    })
}

fn base_stats(prompts: &[Prompt]) -> UltraFeedbackStats {
    UltraFeedbackStats {
        prompts: prompts.len(),
        completions: prompts.iter().map(|p| p.completions.len()).sum(),
        ..UltraFeedbackStats::default()
    }
}

/// The pair in which `(p, a, b)`'s completion `a` is preferred when `a_wins`, else `b`.
fn make_pair(prompts: &[Prompt], (p, a, b): Comparison, a_wins: bool, user_type: String) -> PreferencePair {
    let prompt = &prompts[p];
    let (chosen, rejected) = if a_wins { (a, b) } else { (b, a) };
    PreferencePair {
        user_type,
        prompt: prompt.text.clone(),
        chosen: prompt.completions[chosen].0.clone(),
        rejected: prompt.completions[rejected].0.clone(),
    }
}

pub(super) fn conflict_split(
    prompts: &[Prompt],
    attributes: &[Attribute],
    agreeing_fraction: f64,
    seed: u64,
) -> Result<UltraFeedbackData> {
    let mut stats = base_stats(prompts);
    let (mut conflicting, mut agreeing) = (Vec::new(), Vec::new());
    for (comparison, ra, rb) in comparisons(prompts) {
        stats.comparisons += 1;
        if ra.iter().chain(rb).any(Option::is_none) {
            stats.unrated += 1;
        } else if ra.iter().zip(rb).any(|(x, y)| x == y) {
            stats.tied += 1;
        } else if ra.iter().zip(rb).all(|(x, y)| x > y) || ra.iter().zip(rb).all(|(x, y)| x < y) {
            agreeing.push(comparison);
        } else {
            conflicting.push(comparison);
        }
    }
    stats.conflicting = conflicting.len();
    stats.agreeing = agreeing.len();
    stats.usable = stats.conflicting + stats.agreeing;
    let wanted = (conflicting.len() as f64 * agreeing_fraction / (1.0 - agreeing_fraction)).round() as usize;
    if wanted > agreeing.len() {
        return Err(Error::InvalidConfig {
            field: "agreeing_fraction",
            expected: format!(
                "at most {} agreeing comparisons beside {} conflicting ones; this fraction needs {wanted}",
                agreeing.len(),
                conflicting.len()
            ),
            got: agreeing_fraction.to_string(),
        });
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kept = conflicting;
    kept.extend(rand::seq::index::sample(&mut rng, agreeing.len(), wanted).into_iter().map(|i| agreeing[i]));
    kept.sort_unstable();
    stats.agreeing_kept = wanted;
    let mut pairs = Vec::with_capacity(kept.len() * attributes.len());
    for &(p, a, b) in &kept {
        let (ra, rb) = (&prompts[p].completions[a].1, &prompts[p].completions[b].1);
        for (k, attribute) in attributes.iter().enumerate() {
            pairs.push(make_pair(prompts, (p, a, b), ra[k] > rb[k], attribute.key().to_owned()));
        }
    }
    Ok(UltraFeedbackData { dataset: PreferenceDataset::new(pairs), stats })
}

pub(super) fn dirichlet_split(
    prompts: &[Prompt],
    attributes: &[Attribute],
    alpha: f64,
    users: usize,
    pairs_per_user: usize,
    seed: u64,
) -> Result<UltraFeedbackData> {
    let mut stats = base_stats(prompts);
    let mut candidates = Vec::new();
    for (comparison, ra, rb) in comparisons(prompts) {
        stats.comparisons += 1;
        if ra.iter().chain(rb).any(Option::is_none) {
            stats.unrated += 1;
        } else if ra == rb {
            stats.tied += 1;
        } else {
            candidates.push(comparison);
        }
    }
    stats.usable = candidates.len();
    if pairs_per_user > candidates.len() {
        return Err(Error::InvalidConfig {
            field: "pairs_per_user",
            expected: format!("at most the {} comparisons rated on every attribute and not tied", candidates.len()),
            got: pairs_per_user.to_string(),
        });
    }
    let gamma = Gamma::new(alpha, 1.0).map_err(|e| Error::InvalidConfig {
        field: "alpha",
        expected: "a valid Gamma shape".into(),
        got: e.to_string(),
    })?;
    let mut rng = StdRng::seed_from_u64(seed);
    let width = (users - 1).to_string().len();
    let mut dataset = PreferenceDataset::default();
    for user in 0..users {
        let draws: Vec<f64> = attributes.iter().map(|_| gamma.sample(&mut rng)).collect();
        let total: f64 = draws.iter().sum();
        if !(total > 0.0 && total.is_finite()) {
            return Err(Error::InvalidConfig {
                field: "alpha",
                expected: "large enough that Gamma(alpha) draws do not all underflow to 0".into(),
                got: alpha.to_string(),
            });
        }
        let z: Vec<f64> = draws.iter().map(|g| g / total).collect();
        let id = format!("dirichlet-{user:0width$}");
        let mut chosen = rand::seq::index::sample(&mut rng, candidates.len(), pairs_per_user).into_vec();
        chosen.sort_unstable();
        for i in chosen {
            let (p, a, b) = candidates[i];
            let reward = |c: usize| -> f64 {
                prompts[p].completions[c].1.iter().zip(&z).map(|(r, w)| w * f64::from(r.unwrap_or(0))).sum()
            };
            let (ra, rb) = (reward(a), reward(b));
            let a_wins = if ra == rb { rng.random::<bool>() } else { ra > rb };
            dataset.pairs.push(make_pair(prompts, (p, a, b), a_wins, id.clone()));
        }
        dataset.user_types.push(id.clone());
        dataset.user_latents.insert(id, z);
    }
    Ok(UltraFeedbackData { dataset, stats })
}
