//! UltraFeedback, converted into the paper's preference splits (`../shared/docs/method.md` §5).
//!
//! The public format has one JSON object per line: `instruction` (the prompt) and `completions`, each
//! with a `response` and `annotations` holding, per attribute (`helpfulness`, `honesty`, `truthfulness`,
//! `instruction_following`), a `Rating` from 1 to 5 as a string or a number, or `"N/A"`. Other fields are
//! ignored, and so are the attributes a split does not use.
//!
//! A *comparison* is one unordered pair of completions of the same prompt; all of them are formed. A user
//! of attribute type T prefers the completion with the higher T rating. The exact rules:
//!
//! - A comparison is **unrated** when some attribute of the split is `"N/A"` for either completion, and
//!   **tied** when (not unrated and) some attribute rates both completions equally. Neither kind yields
//!   pairs; [`UltraFeedbackStats`] counts them.
//! - Otherwise it is **agreeing** when every attribute prefers the same completion, and **conflicting**
//!   when not. With two attributes (HH) conflicting means strictly opposite preferences; with three (HHT)
//!   it means not unanimous, e.g. helpfulness and truthfulness prefer one completion and honesty the other.
//! - [`Split::Conflict`] keeps every conflicting comparison and mixes in a seeded random sample of agreeing
//!   ones, so that they make up `agreeing_fraction` of the kept comparisons: round(C·f/(1−f)) of them for C
//!   conflicting comparisons. Asking for more agreeing comparisons than exist is an error. Each kept
//!   comparison gives one pair per attribute, whose user type is the attribute's name (`helpfulness`, …).
//! - [`Split::Dirichlet`] draws `users` users, each with z ~ Dirichlet(α, …, α) over the attributes and
//!   reward Σ zᵢ·ratingᵢ, and gives each `pairs_per_user` distinct comparisons drawn from those where every
//!   attribute is rated and the two completions' ratings differ. The user prefers the higher reward (an
//!   exact tie is broken at random). User ids are `dirichlet-<n>` (zero-padded), and each user's z is kept
//!   in [`PreferenceDataset::user_latents`], in the split's attribute order.
//!
//! Pairs come out in file order (prompt, then first completion, then second), Dirichlet pairs user by user.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{JsonLines, PreferenceDataset, PreferencePair, Record};
use crate::error::{Error, Result};

/// One of UltraFeedback's fine-grained rating attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribute {
    /// `helpfulness`.
    Helpfulness,
    /// `honesty`.
    Honesty,
    /// `truthfulness`.
    Truthfulness,
    /// `instruction_following`.
    InstructionFollowing,
}

impl Attribute {
    /// All four attributes.
    pub const ALL: [Attribute; 4] =
        [Attribute::Helpfulness, Attribute::Honesty, Attribute::Truthfulness, Attribute::InstructionFollowing];

    /// The key under `annotations`, also used as the user type of this attribute's users.
    pub fn key(self) -> &'static str {
        match self {
            Attribute::Helpfulness => "helpfulness",
            Attribute::Honesty => "honesty",
            Attribute::Truthfulness => "truthfulness",
            Attribute::InstructionFollowing => "instruction_following",
        }
    }
}

/// Which preference split to build from UltraFeedback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Split {
    /// One user type per attribute; conflicting comparisons plus a fraction of agreeing ones.
    Conflict {
        /// The attributes, one user type each; at least 2, distinct.
        attributes: Vec<Attribute>,
        /// Share of the kept comparisons that are agreeing ones, in [0, 1).
        agreeing_fraction: f64,
    },
    /// Continuous users: z ~ Dirichlet(α, …, α), reward = Σ zᵢ·ratingᵢ.
    Dirichlet {
        /// The attributes z weighs; at least 1, distinct.
        attributes: Vec<Attribute>,
        /// The Dirichlet concentration α, > 0.
        alpha: f64,
        /// Number of users.
        users: usize,
        /// Number of distinct comparisons each user labels.
        pairs_per_user: usize,
    },
}

impl Split {
    /// The paper's HH split (helpfulness vs honesty) with `agreeing_fraction` of agreeing comparisons
    /// mixed in (0 for the pure split, 0.25–0.5 for the conflict-rate variants).
    pub fn hh(agreeing_fraction: f64) -> Split {
        Split::Conflict { attributes: vec![Attribute::Helpfulness, Attribute::Honesty], agreeing_fraction }
    }

    /// The paper's HHT split (helpfulness, honesty, truthfulness) with `agreeing_fraction` of agreeing
    /// comparisons mixed in.
    pub fn hht(agreeing_fraction: f64) -> Split {
        Split::Conflict {
            attributes: vec![Attribute::Helpfulness, Attribute::Honesty, Attribute::Truthfulness],
            agreeing_fraction,
        }
    }

    /// The paper's continuous users: Dirichlet(0.5, …) over all four attributes.
    pub fn dirichlet(users: usize, pairs_per_user: usize) -> Split {
        Split::Dirichlet { attributes: Attribute::ALL.to_vec(), alpha: 0.5, users, pairs_per_user }
    }

    /// The attributes the split reads.
    pub fn attributes(&self) -> &[Attribute] {
        match self {
            Split::Conflict { attributes, .. } | Split::Dirichlet { attributes, .. } => attributes,
        }
    }

    fn validate(&self) -> Result<()> {
        let attributes = self.attributes();
        let min = if matches!(self, Split::Conflict { .. }) { 2 } else { 1 };
        let distinct = attributes.iter().enumerate().all(|(i, a)| !attributes[..i].contains(a));
        if attributes.len() < min || !distinct {
            return Err(Error::InvalidConfig {
                field: "attributes",
                expected: format!("at least {min} distinct attributes"),
                got: format!("{attributes:?}"),
            });
        }
        match *self {
            Split::Conflict { agreeing_fraction: f, .. } if !(0.0..1.0).contains(&f) => Err(Error::InvalidConfig {
                field: "agreeing_fraction",
                expected: "in [0, 1)".into(),
                got: f.to_string(),
            }),
            Split::Dirichlet { alpha, .. } if !(alpha > 0.0 && alpha.is_finite()) => {
                Err(Error::InvalidConfig { field: "alpha", expected: "finite and > 0".into(), got: alpha.to_string() })
            }
            Split::Dirichlet { users: 0, .. } => {
                Err(Error::InvalidConfig { field: "users", expected: ">= 1".into(), got: "0".into() })
            }
            Split::Dirichlet { pairs_per_user: 0, .. } => {
                Err(Error::InvalidConfig { field: "pairs_per_user", expected: ">= 1".into(), got: "0".into() })
            }
            _ => Ok(()),
        }
    }
}

/// How to load an UltraFeedback file. Setters consume `self`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UltraFeedbackOptions {
    /// The split to build.
    pub split: Split,
    /// Seeds the sample of agreeing comparisons and the Dirichlet users.
    pub seed: u64,
    /// Skip lines that are not a JSON object instead of failing (see [`super::LoadOptions::skip_malformed`]).
    pub skip_malformed: bool,
}

impl UltraFeedbackOptions {
    /// Options for `split` with seed 0, strict about malformed lines.
    pub fn new(split: Split) -> UltraFeedbackOptions {
        UltraFeedbackOptions { split, seed: 0, skip_malformed: false }
    }

    /// Sets [`UltraFeedbackOptions::seed`].
    #[must_use]
    pub fn seed(mut self, seed: u64) -> UltraFeedbackOptions {
        self.seed = seed;
        self
    }

    /// Sets [`UltraFeedbackOptions::skip_malformed`].
    #[must_use]
    pub fn skip_malformed(mut self, skip: bool) -> UltraFeedbackOptions {
        self.skip_malformed = skip;
        self
    }
}

/// What the conversion found and kept, in comparisons (unordered pairs of completions of one prompt).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UltraFeedbackStats {
    /// Prompts (records) read.
    pub prompts: usize,
    /// Completions read.
    pub completions: usize,
    /// All comparisons formed.
    pub comparisons: usize,
    /// Comparisons with an `"N/A"` rating in an attribute of the split.
    pub unrated: usize,
    /// Rated comparisons that some attribute ties ([`Split::Dirichlet`]: that every attribute ties).
    pub tied: usize,
    /// Comparisons whose attributes do not all prefer the same completion ([`Split::Conflict`] only).
    pub conflicting: usize,
    /// Comparisons whose attributes all prefer the same completion ([`Split::Conflict`] only).
    pub agreeing: usize,
    /// Agreeing comparisons mixed into the split ([`Split::Conflict`] only).
    pub agreeing_kept: usize,
    /// Comparisons the split may use: conflicting plus agreeing, or the Dirichlet users' candidates.
    pub usable: usize,
}

/// A converted UltraFeedback file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UltraFeedbackData {
    /// The preference pairs.
    pub dataset: PreferenceDataset,
    /// What was found and kept.
    pub stats: UltraFeedbackStats,
}

/// Loads an UltraFeedback file (`.jsonl` or `.jsonl.gz`) and converts it into `options.split` (see the
/// module docs for the exact rules).
///
/// Errors: [`Error::InvalidConfig`] for a bad split or more agreeing comparisons (or Dirichlet pairs per
/// user) than the file has, [`Error::MalformedLine`] (unless `options.skip_malformed`),
/// [`Error::MissingField`] and [`Error::InvalidField`] (e.g. `completions[1].annotations.honesty.Rating`
/// is not 1–5 or `"N/A"`), [`Error::EmptyData`] and [`Error::Io`].
pub fn load(path: impl AsRef<Path>, options: &UltraFeedbackOptions) -> Result<UltraFeedbackData> {
    let path = path.as_ref();
    options.split.validate()?;
    let attributes = options.split.attributes();
    let mut lines = JsonLines::open(path, options.skip_malformed)?;
    let mut prompts = Vec::new();
    while let Some(record) = lines.next_record()? {
        prompts.push(parse(&record, attributes)?);
    }
    let skipped = lines.finish()?;
    let mut data = match &options.split {
        Split::Conflict { attributes, agreeing_fraction } => {
            conflict_split(&prompts, attributes, *agreeing_fraction, options.seed)?
        }
        Split::Dirichlet { attributes, alpha, users, pairs_per_user } => {
            dirichlet_split(&prompts, attributes, *alpha, *users, *pairs_per_user, options.seed)?
        }
    };
    data.dataset.skipped_lines = skipped;
    Ok(data)
}

/// A prompt and its completions, with the split's ratings (`None` for `"N/A"`) in attribute order.
struct Prompt {
    text: String,
    completions: Vec<(String, Vec<Option<u8>>)>,
}

fn parse(record: &Record<'_>, attributes: &[Attribute]) -> Result<Prompt> {
    let text = record.string("instruction")?;
    let value = record.field("completions")?;
    let items = value.as_array().ok_or_else(|| record.invalid("completions", "an array", value))?;
    let mut completions = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = |name: &str| format!("completions[{i}].{name}");
        if !item.is_object() {
            return Err(record.invalid(format!("completions[{i}]"), "an object", item));
        }
        let response = item.get("response").ok_or_else(|| record.missing(field("response")))?;
        let response = response.as_str().ok_or_else(|| record.invalid(field("response"), "a string", response))?;
        let annotations = item.get("annotations").ok_or_else(|| record.missing(field("annotations")))?;
        if !annotations.is_object() {
            return Err(record.invalid(field("annotations"), "an object", annotations));
        }
        let mut ratings = Vec::with_capacity(attributes.len());
        for attribute in attributes {
            let name = field(&format!("annotations.{}", attribute.key()));
            let annotation = annotations.get(attribute.key()).ok_or_else(|| record.missing(&name))?;
            // Some releases wrap the annotation in a one-element array.
            let annotation = match annotation {
                Value::Array(a) if a.len() == 1 => &a[0],
                other => other,
            };
            let rating = annotation.get("Rating").ok_or_else(|| record.missing(format!("{name}.Rating")))?;
            ratings.push(parse_rating(rating).ok_or_else(|| {
                record.invalid(format!("{name}.Rating"), "a rating 1-5 (string or integer) or \"N/A\"", rating)
            })?);
        }
        completions.push((response.to_owned(), ratings));
    }
    Ok(Prompt { text, completions })
}

/// `Some(None)` for `"N/A"`, `Some(Some(r))` for a rating r in 1..=5, `None` for anything else.
fn parse_rating(value: &Value) -> Option<Option<u8>> {
    let rating = match value {
        Value::String(s) if s.trim() == "N/A" => return Some(None),
        Value::String(s) => s.trim().parse::<u8>().ok()?,
        Value::Number(n) => u8::try_from(n.as_u64()?).ok()?,
        _ => return None,
    };
    (1..=5).contains(&rating).then_some(Some(rating))
}

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

fn conflict_split(
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

fn dirichlet_split(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tests::{pair, write_fixture};
    use serde_json::json;

    /// A completion with helpfulness, honesty and truthfulness ratings (`0` writes `"N/A"`).
    fn completion(response: &str, h: u8, o: u8, t: u8) -> Value {
        let rating = |r: u8| {
            if r == 0 { json!({"Rating": "N/A"}) } else { json!({"Rating": r.to_string(), "Rationale": "…"}) }
        };
        json!({"model": "m", "response": response, "annotations": {
            "helpfulness": rating(h), "honesty": rating(o), "truthfulness": [rating(t)],
            "instruction_following": {"Rating": "3"},
        }})
    }

    /// Four prompts: p1 has three comparisons (HH: all conflicting), p2 three (HH: two agreeing, one
    /// tied), p3 one completion, p4 one unanimous comparison.
    fn fixture() -> String {
        let rows = [
            json!({"instruction": "p1", "completions": [completion("A", 5, 1, 4), completion("B", 2, 4, 2), completion("C", 4, 3, 4)]}),
            json!({"instruction": "p2", "completions": [completion("D", 3, 3, 3), completion("E", 1, 1, 0), completion("F", 3, 2, 1)]}),
            json!({"instruction": "p3", "completions": [completion("G", 1, 1, 1)]}),
            json!({"instruction": "p4", "completions": [completion("H", 5, 5, 5), completion("I", 1, 1, 1)]}),
        ];
        rows.iter().map(|r| format!("{r}\n")).collect()
    }

    fn load_text(text: &str, options: &UltraFeedbackOptions) -> Result<UltraFeedbackData> {
        let dir = tempfile::tempdir().unwrap();
        load(write_fixture(dir.path(), "uf.jsonl.gz", text), options)
    }

    #[test]
    fn hh_keeps_strictly_opposite_comparisons() {
        let data = load_text(&fixture(), &UltraFeedbackOptions::new(Split::hh(0.0))).unwrap();
        assert_eq!(
            data.dataset.pairs,
            vec![
                pair("helpfulness", "p1", "A", "B"),
                pair("honesty", "p1", "B", "A"),
                pair("helpfulness", "p1", "A", "C"),
                pair("honesty", "p1", "C", "A"),
                pair("helpfulness", "p1", "C", "B"),
                pair("honesty", "p1", "B", "C"),
            ]
        );
        assert_eq!(data.dataset.user_types, vec!["helpfulness", "honesty"]);
        let expected = UltraFeedbackStats {
            prompts: 4,
            completions: 9,
            comparisons: 7,
            unrated: 0,
            tied: 1,
            conflicting: 3,
            agreeing: 3,
            agreeing_kept: 0,
            usable: 6,
        };
        assert_eq!(data.stats, expected);
    }

    #[test]
    fn hht_keeps_non_unanimous_comparisons_rated_without_ties() {
        let data = load_text(&fixture(), &UltraFeedbackOptions::new(Split::hht(0.0))).unwrap();
        assert_eq!(
            data.dataset.pairs,
            vec![
                pair("helpfulness", "p1", "A", "B"),
                pair("honesty", "p1", "B", "A"),
                pair("truthfulness", "p1", "A", "B"),
                pair("helpfulness", "p1", "C", "B"),
                pair("honesty", "p1", "B", "C"),
                pair("truthfulness", "p1", "C", "B"),
            ]
        );
        let s = data.stats;
        assert_eq!((s.comparisons, s.unrated, s.tied, s.conflicting, s.agreeing), (7, 2, 2, 2, 1));
    }

    #[test]
    fn conflict_rate_variants_mix_in_seeded_agreeing_comparisons() {
        // f = 0.5 with 3 conflicting needs all 3 agreeing comparisons, in file order.
        let data = load_text(&fixture(), &UltraFeedbackOptions::new(Split::hh(0.5))).unwrap();
        assert_eq!(data.stats.agreeing_kept, 3);
        let agreeing: Vec<_> =
            data.dataset.pairs[6..].iter().map(|p| (p.chosen.as_str(), p.rejected.as_str())).collect();
        assert_eq!(agreeing, vec![("D", "E"), ("D", "E"), ("F", "E"), ("F", "E"), ("H", "I"), ("H", "I")]);
        // f = 0.25 keeps round(3 · 0.25 / 0.75) = 1 of them, chosen by the seed.
        let mut picked = std::collections::BTreeSet::new();
        for seed in 0..16 {
            let options = UltraFeedbackOptions::new(Split::hh(0.25)).seed(seed);
            let data = load_text(&fixture(), &options).unwrap();
            assert_eq!((data.dataset.len(), data.stats.agreeing_kept), (8, 1));
            assert_eq!(data, load_text(&fixture(), &options).unwrap(), "same seed, same split");
            let extra: Vec<_> = data.dataset.pairs.iter().filter(|p| p.prompt != "p1").collect();
            assert_eq!(extra.len(), 2);
            assert_eq!((&extra[0].chosen, &extra[0].rejected), (&extra[1].chosen, &extra[1].rejected));
            picked.insert(extra[0].chosen.clone());
        }
        assert!(picked.len() > 1, "the seed should change which agreeing comparison is kept: {picked:?}");
        // f = 0.6 would need round(4.5) = 5 agreeing comparisons; there are 3.
        let err = load_text(&fixture(), &UltraFeedbackOptions::new(Split::hh(0.6))).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { field: "agreeing_fraction", .. }), "{err}");
        let err = load_text(&fixture(), &UltraFeedbackOptions::new(Split::hh(1.0))).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { field: "agreeing_fraction", .. }), "{err}");
    }

    #[test]
    fn dirichlet_users_prefer_the_higher_weighted_reward() {
        let split = Split::Dirichlet {
            attributes: vec![Attribute::Helpfulness, Attribute::Honesty, Attribute::Truthfulness],
            alpha: 0.5,
            users: 12,
            pairs_per_user: 3,
        };
        let options = UltraFeedbackOptions::new(split.clone()).seed(7);
        let data = load_text(&fixture(), &options).unwrap();
        // Candidates: AB, AC, BC, DF, HI (DE and EF have an N/A truthfulness).
        assert_eq!((data.stats.usable, data.stats.unrated, data.stats.tied), (5, 2, 0));
        let ds = &data.dataset;
        assert_eq!(ds.len(), 36);
        assert_eq!(ds.user_types.first().map(String::as_str), Some("dirichlet-00"));
        assert_eq!(ds.user_types.len(), 12);
        let ratings = |r: &str| -> [f64; 3] {
            match r {
                "A" => [5., 1., 4.],
                "B" => [2., 4., 2.],
                "C" => [4., 3., 4.],
                "D" => [3., 3., 3.],
                "F" => [3., 2., 1.],
                "H" => [5., 5., 5.],
                "I" => [1., 1., 1.],
                other => panic!("unexpected response {other}"),
            }
        };
        for (user, pairs) in ds.by_user_type() {
            let z = &ds.user_latents[user];
            assert!((z.iter().sum::<f64>() - 1.0).abs() < 1e-12 && z.iter().all(|&w| w >= 0.0), "{z:?}");
            assert_eq!(pairs.len(), 3);
            for p in pairs {
                let reward = |r: &str| ratings(r).iter().zip(z).map(|(x, w)| x * w).sum::<f64>();
                assert!(reward(&p.chosen) >= reward(&p.rejected), "{user} {z:?}: {p:?}");
            }
        }
        assert_eq!(data, load_text(&fixture(), &options).unwrap(), "same seed, same users");
        let other = load_text(&fixture(), &UltraFeedbackOptions::new(split).seed(8)).unwrap();
        assert_ne!(other.dataset.user_latents, ds.user_latents);
        let too_many =
            Split::Dirichlet { attributes: vec![Attribute::Helpfulness], alpha: 0.5, users: 1, pairs_per_user: 7 };
        let err = load_text(&fixture(), &UltraFeedbackOptions::new(too_many)).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { field: "pairs_per_user", .. }), "{err}");
    }

    #[test]
    fn bad_splits_are_config_errors() {
        for (split, field) in [
            (Split::Conflict { attributes: vec![Attribute::Honesty], agreeing_fraction: 0.0 }, "attributes"),
            (Split::Conflict { attributes: vec![Attribute::Honesty; 2], agreeing_fraction: 0.0 }, "attributes"),
            (Split::hh(-0.1), "agreeing_fraction"),
            (
                Split::Dirichlet { attributes: vec![Attribute::Honesty], alpha: 0.0, users: 1, pairs_per_user: 1 },
                "alpha",
            ),
            (Split::dirichlet(0, 1), "users"),
            (Split::dirichlet(1, 0), "pairs_per_user"),
        ] {
            match load_text(&fixture(), &UltraFeedbackOptions::new(split)) {
                Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected InvalidConfig for {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn bad_ratings_and_missing_fields_are_named() {
        let mut bad = completion("Y", 2, 2, 2);
        bad["annotations"]["honesty"]["Rating"] = json!("7");
        let row = json!({"instruction": "p", "completions": [completion("X", 1, 1, 1), bad]});
        match load_text(
            &format!("{}\n{row}\n", fixture().lines().next().unwrap()),
            &UltraFeedbackOptions::new(Split::hh(0.0)),
        ) {
            Err(Error::InvalidField { line, field, got, .. }) => {
                assert_eq!(
                    (line, field.as_str(), got.as_str()),
                    (2, "completions[1].annotations.honesty.Rating", "string \"7\"")
                );
            }
            other => panic!("expected InvalidField, got {other:?}"),
        }
        let mut missing = completion("Y", 2, 2, 2);
        missing["annotations"].as_object_mut().unwrap().remove("truthfulness");
        let row = json!({"instruction": "p", "completions": [missing]});
        // HH does not read truthfulness; HHT needs it.
        assert!(load_text(&format!("{row}\n"), &UltraFeedbackOptions::new(Split::hh(0.0))).is_ok());
        match load_text(&format!("{row}\n"), &UltraFeedbackOptions::new(Split::hht(0.0))) {
            Err(Error::MissingField { line: 1, field, .. }) => {
                assert_eq!(field, "completions[0].annotations.truthfulness")
            }
            other => panic!("expected MissingField, got {other:?}"),
        }
        let row = json!({"completions": []});
        assert!(matches!(
            load_text(&format!("{row}\n"), &UltraFeedbackOptions::new(Split::hh(0.0))),
            Err(Error::MissingField { field, .. }) if field == "instruction"
        ));
        let row = json!({"instruction": "p", "completions": ["just text"]});
        assert!(matches!(
            load_text(&format!("{row}\n"), &UltraFeedbackOptions::new(Split::hh(0.0))),
            Err(Error::InvalidField { field, .. }) if field == "completions[0]"
        ));
        let row = json!({"instruction": "p", "completions": [{"annotations": {}}]});
        assert!(matches!(
            load_text(&format!("{row}\n"), &UltraFeedbackOptions::new(Split::hh(0.0))),
            Err(Error::MissingField { field, .. }) if field == "completions[0].response"
        ));
    }

    #[test]
    fn malformed_lines_and_empty_files() {
        let text = format!("{}not json\n", fixture());
        let err = load_text(&text, &UltraFeedbackOptions::new(Split::hh(0.0))).unwrap_err();
        assert!(matches!(err, Error::MalformedLine { line: 5, .. }), "{err}");
        let data = load_text(&text, &UltraFeedbackOptions::new(Split::hh(0.0)).skip_malformed(true)).unwrap();
        assert_eq!((data.dataset.len(), data.dataset.skipped_lines.clone()), (6, vec![5]));
        let err = load_text("", &UltraFeedbackOptions::new(Split::hh(0.0))).unwrap_err();
        assert!(matches!(err, Error::EmptyData { .. }), "{err}");
    }

    #[test]
    fn ratings_parse_strings_numbers_and_na() {
        assert_eq!(parse_rating(&json!("4")), Some(Some(4)));
        assert_eq!(parse_rating(&json!(" 5 ")), Some(Some(5)));
        assert_eq!(parse_rating(&json!(1)), Some(Some(1)));
        assert_eq!(parse_rating(&json!("N/A")), Some(None));
        for bad in [json!("0"), json!("6"), json!(2.5), json!("four"), json!(null), json!(-1)] {
            assert_eq!(parse_rating(&bad), None, "{bad}");
        }
    }
}
