//! The built-in steering task: two user types who disagree on how long an answer should be.
//!
//! - `concise` users prefer the shorter of two answers, `detailed` users the longer one.
//! - The trait is measured from the text: the answer's word count ([`word_count`]).
//! - The answers are written by the base model itself. For each prompt it answers twice, once asked (in the system
//!   prompt) for one short sentence and once for a detailed answer; the two answers make a pair, which each user type
//!   labels by the measured trait. The policy is trained and evaluated with the model's own default system prompt,
//!   so only z can tell it which length to produce.
//! - Prompts are questions about topics; the train, dev and eval splits use disjoint topics.
//!
//! Answers cut off at the length cap keep only their complete sentences ([`complete_sentences`]), so every answer
//! ends where its text ends.
//!
//! Generated pairs are cached in the project cache (keyed by the base model's hash, every setting and the sampler), so
//! reruns and tests do not generate them again.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::{PreferenceDataset, PreferencePair};
use crate::error::{Error, Result};
use crate::policy::base::{Base, with_system_prompt};
use crate::policy::generate::{generate_ids, nucleus, word_count};
use crate::text::llama::KvCache;
use steer_runtime::ChatEncoder;

/// The user types of the built-in steering task.
pub const USER_TYPES: [&str; 2] = ["concise", "detailed"];
/// The system prompt that asks the base model for each type's kind of answer when the data is generated.
const STYLE_PROMPTS: [&str; 2] =
    ["Answer in one short sentence.", "Answer in detail, with several sentences and examples."];
/// Names the sampler the answers were drawn with, in the cache key: data drawn by the trainer's former sampler
/// (another random generator, no top-k) is not reused.
const SAMPLER: &str = "steer_runtime::sampling";
/// Question templates; `{}` is the topic.
const QUESTIONS: [&str; 4] = ["What is {}?", "Why does {} matter?", "How does {} work?", "Tell me about {}."];
/// Topics; the first 40 are for training, the next 10 for development and the last 10 for evaluation.
const TOPICS: [&str; 60] = [
    "photosynthesis",
    "the moon",
    "a volcano",
    "coffee",
    "the internet",
    "gravity",
    "a rainbow",
    "bread",
    "the heart",
    "electricity",
    "a bicycle",
    "the ocean",
    "recycling",
    "a vaccine",
    "the sun",
    "a library",
    "exercise",
    "sleep",
    "a camera",
    "music",
    "chess",
    "a battery",
    "the weather",
    "a forest",
    "democracy",
    "money",
    "a bridge",
    "honey",
    "a telescope",
    "the brain",
    "wind power",
    "a compass",
    "tea",
    "an earthquake",
    "a calendar",
    "glass",
    "a river",
    "memory",
    "a map",
    "soap",
    "a computer",
    "the stock market",
    "a glacier",
    "yeast",
    "an airplane",
    "the immune \
     system",
    "a lighthouse",
    "paper",
    "solar panels",
    "friendship",
    "a clock",
    "rain",
    "a satellite",
    "cheese",
    "the printing press",
    "a thermometer",
    "a desert",
    "vitamins",
    "a piano",
    "tides",
];
/// Topics per split: train, dev, eval.
const SPLIT_TOPICS: [std::ops::Range<usize>; 3] = [0..40, 40..50, 50..60];

/// The prompts of split `split` (0 train, 1 dev, 2 eval), at most `limit` of them.
pub fn prompts(split: usize, limit: usize) -> Vec<String> {
    let range = SPLIT_TOPICS.get(split).cloned().unwrap_or(50..60);
    let mut out = Vec::new();
    for question in QUESTIONS {
        for topic in &TOPICS[range.clone()] {
            out.push(question.replace("{}", topic));
        }
    }
    out.truncate(limit);
    out
}

/// How the steering data is generated; every field is part of the cache key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteeringConfig {
    /// Prompts per split (train, dev, eval), each at most 160/40/40.
    pub prompts: [usize; 3],
    /// The longest answer generated, in tokens.
    pub max_new_tokens: usize,
    /// Sampling temperature of the answers.
    pub temperature: f32,
    /// A pair is kept only when its answers' word counts differ by at least this much.
    pub min_word_gap: usize,
    /// Sampling seed.
    pub seed: u64,
    /// Prompts generated per batch (two rows each).
    pub batch_prompts: usize,
}

impl Default for SteeringConfig {
    fn default() -> Self {
        SteeringConfig {
            prompts: [160, 40, 40],
            max_new_tokens: 128,
            temperature: 0.7,
            min_word_gap: 6,
            seed: 0,
            batch_prompts: 8,
        }
    }
}

/// Generates split `split`'s pairs with `model` (the base decoder) and labels them for both user types.
pub fn generate_split(base: &Base, cfg: &SteeringConfig, split: usize, progress: bool) -> Result<PreferenceDataset> {
    let prompts = prompts(split, cfg.prompts.get(split).copied().unwrap_or(0));
    let templates = STYLE_PROMPTS
        .iter()
        .map(|s| ChatEncoder::new(base.tokenizer.clone(), &with_system_prompt(&base.chat_template, s)))
        .collect::<steer_runtime::Result<Vec<_>>>()?;
    let (model, eos) = (&base.model, base.eos);
    let bar = if progress { ProgressBar::new(prompts.len() as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("generating answers {bar:30} {pos}/{len} prompts [{elapsed}<{eta}]").map_err(
            |e| Error::InvalidConfig { field: "progress", expected: "a template".into(), got: e.to_string() },
        )?,
    );
    let device = crate::policy::device();
    let step = |i: &Tensor, m: &Tensor, p: &Tensor, past: Option<&[KvCache]>| model.forward_step(i, m, p, past, &[]);
    let mut pairs = Vec::new();
    for (chunk_index, chunk) in prompts.chunks(cfg.batch_prompts.max(1)).enumerate() {
        let mut rows = Vec::with_capacity(chunk.len() * 2);
        for prompt in chunk {
            for template in &templates {
                rows.push(template.encode(prompt)?);
            }
        }
        let seed = cfg.seed.wrapping_mul(1_000_003).wrapping_add((split * 10_000 + chunk_index * 100) as u64);
        let params = nucleus(cfg.max_new_tokens, cfg.temperature, 0.95, seed);
        let answers = generate_ids(&step, &rows, &params, &[eos], eos, &device)?;
        for (i, prompt) in chunk.iter().enumerate() {
            // The trainer ends every answer with the end-of-turn token, so an answer cut off at `max_new_tokens`
            // keeps only its complete sentences: training on the cut text would teach stopping at the cap.
            let decode = |ids: &[u32]| -> Result<String> {
                let text = base.chat.decode(ids)?;
                let finished = ids.len() < cfg.max_new_tokens;
                Ok(if finished { text.trim() } else { complete_sentences(&text) }.to_string())
            };
            let (a, b) = (decode(&answers[2 * i])?, decode(&answers[2 * i + 1])?);
            let (short, long) = if word_count(&a) <= word_count(&b) { (a, b) } else { (b, a) };
            if word_count(&short) == 0 || word_count(&long) < word_count(&short) + cfg.min_word_gap {
                continue;
            }
            pairs.push(PreferencePair {
                user_type: USER_TYPES[0].into(),
                prompt: prompt.clone(),
                chosen: short.clone(),
                rejected: long.clone(),
            });
            pairs.push(PreferencePair {
                user_type: USER_TYPES[1].into(),
                prompt: prompt.clone(),
                chosen: long,
                rejected: short,
            });
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if pairs.is_empty() {
        return Err(Error::EmptyData { path: PathBuf::from(format!("steering split {split}")), skipped_malformed: 0 });
    }
    Ok(PreferenceDataset::new(pairs))
}

/// The text up to its last complete sentence (ending in `.`, `!` or `?` after a non-digit, then a space or the
/// end), trimmed; empty when it has none.
pub fn complete_sentences(text: &str) -> &str {
    let text = text.trim();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let end = chars.windows(2).rev().find_map(|w| {
        let (before, (i, c)) = (w[0].1, w[1]);
        let next = text[i + c.len_utf8()..].chars().next();
        let ends = matches!(c, '.' | '!' | '?') && !before.is_ascii_digit() && next.is_none_or(char::is_whitespace);
        ends.then_some(i + c.len_utf8())
    });
    end.map_or("", |end| &text[..end])
}

/// Writes `data` as the generic JSONL format (`{"user", "prompt", "chosen", "rejected"}` per line).
pub fn write_jsonl(data: &PreferenceDataset, path: &Path) -> Result<()> {
    let mut text = String::new();
    for pair in &data.pairs {
        let line = serde_json::json!({
            "user": pair.user_type, "prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected,
        });
        let _ = writeln!(text, "{line}");
    }
    fs::write(path, text).map_err(Error::io(path))
}

/// The three splits of the steering task for `base`, from the cache under
/// `cache_dir` when they were generated before, else generated and cached. Returns the folder holding
/// `train.jsonl`, `dev.jsonl` and `eval.jsonl`.
pub fn prepare(base: &Base, cfg: &SteeringConfig, cache_dir: &Path, progress: bool) -> Result<PathBuf> {
    let key = (&base.id, &base.chat_template, cfg, &QUESTIONS[..], &TOPICS[..], &STYLE_PROMPTS[..], SAMPLER);
    let key =
        serde_json::to_string(&key).map_err(|e| Error::Json { path: cache_dir.into(), message: e.to_string() })?;
    let key: String = Sha256::digest(key.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
    let dir = cache_dir.join(format!("steering-{key}"));
    let files = ["train.jsonl", "dev.jsonl", "eval.jsonl"].map(|f| dir.join(f));
    if files.iter().all(|f| f.is_file()) {
        eprintln!("steering data from the cache: {}", dir.display());
        return Ok(dir);
    }
    let partial = dir.with_extension("partial");
    fs::create_dir_all(&partial).map_err(Error::io(&partial))?;
    for (split, file) in files.iter().enumerate() {
        let started = std::time::Instant::now();
        let data = generate_split(base, cfg, split, progress)?;
        eprintln!(
            "steering split {split}: {} pairs from {} prompts in {:.0} s",
            data.len() / 2,
            cfg.prompts[split],
            started.elapsed().as_secs_f64()
        );
        let name = file.file_name().map(PathBuf::from).unwrap_or_default();
        write_jsonl(&data, &partial.join(name))?;
    }
    // Renamed only when complete, so an interrupted run never leaves a half cache behind.
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(Error::io(&dir))?;
    }
    fs::rename(&partial, &dir).map_err(Error::io(&dir))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::complete_sentences;

    #[test]
    fn a_cut_answer_keeps_its_complete_sentences() {
        assert_eq!(complete_sentences("It rains. Water falls from clou"), "It rains.");
        assert_eq!(complete_sentences("Is it? Yes! Then 1. the"), "Is it? Yes!");
        assert_eq!(complete_sentences("Costs 3.50 dollars or e.g. less"), "Costs 3.50 dollars or e.g.");
        assert_eq!(complete_sentences("  Done.  "), "Done.");
        assert_eq!(complete_sentences("no sentence end here"), "");
        assert_eq!(complete_sentences(""), "");
    }
}
