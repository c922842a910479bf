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

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{JsonLines, PreferenceDataset, Record};
use crate::error::{Error, Result};
use splits::{conflict_split, dirichlet_split};

mod splits;
#[cfg(test)]
mod tests;

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
