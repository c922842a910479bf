//! The text pipelines behind `steer train --format …` and `steer eval --bundle … --data …`.
//!
//! Training embeds the data once through the exported embedder (ONNX Runtime, cached), trains NP-BTL, BTL-mixed
//! (everyone's choices pooled) and one BTL oracle per user type (that type's choices only), exports each as a text
//! bundle, and evaluates the bundles on the development data. Evaluation loads every bundle of a run folder and
//! scores any file of a supported format with the bundles' own tokenizer and embedder.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use ndarray::{Array2, Array3};
use serde::{Deserialize, Serialize};
use steer_runtime::{LoadOptions, Model, ModelKind, Profile, TextOption};

use crate::data::{LoadOptions as DataOptions, PreferenceDataset, builtin, dsp, hh_relabeled, jsonl, ultrafeedback};
use crate::error::{Error, Result};
use crate::eval::{ALL, ByTypeAndK, EvalConfig, ModelEval, evaluate, evaluate_oracle_posterior};
use crate::export::write_bundle_with_text;
use crate::model::RewardModel;
use crate::report::{Report, TextFigures};
use crate::run::{RunDir, RunRecord, assemble_named, to_json};
use crate::tasks::{PairSource, Split, TaskSpec};
use crate::text::cache::models_dir;
use crate::text::embedder_files::{EmbedderChoice, EmbedderFiles};
use crate::text_task::{EmbeddedPairs, TextTask};
use crate::train::{TrainConfig, Trained, train_named};

/// The NP-BTL model's name in text runs.
pub const NP_BTL: &str = "np-btl";
/// The pooled BTL baseline's name.
pub const BTL_MIXED: &str = "btl-mixed";
/// The report's name for the per-type oracles mixed by each user's posterior over types (no bundle of its own).
pub const ORACLE_POSTERIOR: &str = "oracle-posterior";
/// Pairs of the built-in task per split: train, development, evaluation.
pub const BUILTIN_PAIRS: [usize; 3] = [3_000, 400, 400];

/// The file formats text commands read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    /// The project's own generated task (no file).
    Builtin,
    /// DSP's JSON array of queries answered once per domain (`../shared/data/dsp`); user type = domain.
    Dsp,
    /// `../shared/data/hh_relabeled` (user type = `objective`).
    HhRelabeled,
    /// Generic `{"user", "prompt", "chosen", "rejected"}` lines.
    Jsonl,
    /// UltraFeedback, converted to the paper's HH conflict split (helpfulness vs honesty users).
    UltrafeedbackHh,
    /// UltraFeedback, converted to the HHT split (adds truthfulness users).
    UltrafeedbackHht,
}

impl DataFormat {
    /// The name on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            DataFormat::Builtin => "builtin",
            DataFormat::Dsp => "dsp",
            DataFormat::HhRelabeled => "hh-relabeled",
            DataFormat::Jsonl => "jsonl",
            DataFormat::UltrafeedbackHh => "ultrafeedback-hh",
            DataFormat::UltrafeedbackHht => "ultrafeedback-hht",
        }
    }

    /// Loads `path` in this format; the built-in format generates split `builtin_split` (0 train, 1 dev, 2 eval)
    /// instead. `user_types`, when given, are the only types accepted. With `skip_malformed`, lines that are not
    /// JSON objects are skipped (and counted on stderr) instead of failing.
    pub fn load(
        self,
        path: Option<&Path>,
        builtin_split: usize,
        seed: u64,
        user_types: Option<&[String]>,
        skip_malformed: bool,
    ) -> Result<PreferenceDataset> {
        let mut options = DataOptions::default().skip_malformed(skip_malformed);
        if let Some(types) = user_types {
            options = options.allowed_user_types(types);
        }
        let need_path = || {
            path.ok_or_else(|| Error::InvalidConfig {
                field: "data",
                expected: format!("a file for --format {}", self.as_str()),
                got: "none".into(),
            })
        };
        let data = match self {
            DataFormat::Builtin => {
                let pairs = BUILTIN_PAIRS.get(builtin_split).copied().unwrap_or(BUILTIN_PAIRS[2]);
                builtin::generate(pairs, seed.wrapping_mul(31).wrapping_add(builtin_split as u64 + 1))?
            }
            DataFormat::HhRelabeled => {
                let options =
                    if user_types.is_none() { options.allowed_user_types(hh_relabeled::USER_TYPES) } else { options };
                hh_relabeled::load(need_path()?, &options)?
            }
            DataFormat::Dsp => dsp::load(need_path()?, &options)?,
            DataFormat::Jsonl => jsonl::load(need_path()?, &options)?,
            DataFormat::UltrafeedbackHh | DataFormat::UltrafeedbackHht => {
                let split = if self == DataFormat::UltrafeedbackHh {
                    ultrafeedback::Split::hh(0.0)
                } else {
                    ultrafeedback::Split::hht(0.0)
                };
                let options = ultrafeedback::UltraFeedbackOptions::new(split).seed(seed).skip_malformed(skip_malformed);
                ultrafeedback::load(need_path()?, &options)?.dataset
            }
        };
        if !data.skipped_lines.is_empty() {
            eprintln!(
                "skipped {} malformed lines of {} (lines {:?})",
                data.skipped_lines.len(),
                path.map_or_else(|| "the data".into(), |p| p.display().to_string()),
                data.skipped_lines
            );
        }
        if let Some(types) = user_types
            && let Some(unknown) = data.user_types.iter().find(|t| !types.contains(t))
        {
            return Err(Error::InvalidConfig {
                field: "user types",
                expected: format!("only the user types the models were trained on, {types:?}"),
                got: format!("`{unknown}`"),
            });
        }
        Ok(data)
    }
}

/// What a text run records about itself in `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextRunRecord {
    /// The data format.
    pub format: DataFormat,
    /// The training file (none for the built-in task).
    pub train_data: Option<PathBuf>,
    /// The development file, for model selection and the run's own report.
    pub dev_data: Option<PathBuf>,
    /// The embedder.
    pub embedder: EmbedderChoice,
    /// The training configuration (its `task` is `text`).
    pub train: TrainConfig,
    /// The evaluation configuration.
    pub eval: EvalConfig,
    /// The user types of the training data.
    pub user_types: Vec<String>,
    /// Whether malformed lines of the data files were skipped rather than fatal.
    #[serde(default)]
    pub skip_malformed: bool,
    /// The models trained, in report order.
    pub models: Vec<String>,
}

impl TextRunRecord {
    /// The run record in the synthetic pipeline's shape, for the report.
    fn as_run_record(&self) -> RunRecord {
        RunRecord { train: self.train.clone(), eval: self.eval.clone(), kinds: Vec::new() }
    }
}

/// Where embeddings are cached between runs: `models/../embeddings` in the project cache.
pub fn embedding_cache_dir() -> PathBuf {
    models_dir().parent().map_or_else(|| PathBuf::from(".cache/embeddings"), |cache| cache.join("embeddings"))
}

/// The options of a dataset, chosen then rejected for each pair (the row layout [`EmbeddedPairs`] expects).
fn pair_options(data: &PreferenceDataset) -> Vec<TextOption<'_>> {
    data.pairs
        .iter()
        .flat_map(|p| [TextOption::new(&p.prompt, &p.chosen), TextOption::new(&p.prompt, &p.rejected)])
        .collect()
}

fn embed(files: &EmbedderFiles, embedder: &steer_runtime::Embedder, data: &PreferenceDataset) -> Result<Array2<f32>> {
    files.embed_cached(embedder, &pair_options(data), &embedding_cache_dir())
}

fn model_names(user_types: &[String]) -> Vec<String> {
    let mut names = vec![NP_BTL.to_string(), BTL_MIXED.to_string()];
    names.extend(user_types.iter().map(|t| format!("btl-{t}")));
    names
}

/// Trains every model of a text run, exports them as text bundles under `out/bundles`, evaluates them on the
/// development data through ONNX Runtime, and writes `out/report.json` and `out/accuracy.svg`.
pub fn train_text(record: &mut TextRunRecord, load: &LoadOptions, out: &Path, progress: bool) -> Result<Report> {
    let dir = RunDir(out.to_path_buf());
    fs::create_dir_all(out).map_err(Error::io(out))?;
    let seed = record.train.seed;
    let train_data = record.format.load(record.train_data.as_deref(), 0, seed, None, record.skip_malformed)?;
    let user_types = train_data.user_types.clone();
    let dev_data = record.format.load(record.dev_data.as_deref(), 1, seed, Some(&user_types), record.skip_malformed)?;
    record.user_types = user_types.clone();
    record.models = model_names(&user_types);
    record.train.task = TaskSpec::Text;
    let record_path = dir.record();
    let text = serde_json::to_string_pretty(&*record)
        .map_err(|e| Error::Json { path: record_path.clone(), message: e.to_string() })?;
    fs::write(&record_path, text).map_err(Error::io(&record_path))?;

    eprintln!("preparing the {} embedder", record.embedder.as_str());
    let files = EmbedderFiles::prepare(record.embedder, out.join("embedder"))?;
    // Embedding the data is the long step of a text run; let ONNX Runtime use every core for it.
    let embedder = files.load(&load.clone().intra_op_threads(0))?;
    eprintln!("embedding {} training and {} development pairs", train_data.len(), dev_data.len());
    let (train_vectors, dev_vectors) = (embed(&files, &embedder, &train_data)?, embed(&files, &embedder, &dev_data)?);
    let mut task = TextTask::new(
        record.format.as_str(),
        EmbeddedPairs { data: &train_data, embeddings: train_vectors.view() },
        EmbeddedPairs { data: &dev_data, embeddings: dev_vectors.view() },
        EmbeddedPairs { data: &dev_data, embeddings: dev_vectors.view() },
        seed,
    )?;

    let total = record.models.len();
    let mut candle = BTreeMap::new();
    let mut metrics = BTreeMap::new();
    for (i, name) in record.models.iter().enumerate() {
        let (kind, source) = match name.as_str() {
            NP_BTL => (ModelKind::NpBtl, None),
            BTL_MIXED => (ModelKind::Btl, None),
            oracle => (ModelKind::Btl, Some(task.only_type(oracle.trim_start_matches("btl-"))?)),
        };
        let steps = if kind.is_conditioned() { record.train.steps } else { record.train.baseline_steps };
        eprintln!("[{}/{total}] {name}: training {steps} steps", i + 1);
        let source: &dyn PairSource = source.as_ref().map_or(&task as &dyn PairSource, |s| s as &dyn PairSource);
        let trained: Trained = train_named(kind, name, source, &record.train, progress)?;
        let (training, trained_metrics) = (to_json(&*record, &record_path)?, to_json(&trained.metrics, &record_path)?);
        let bundle = dir.bundle_named(name);
        write_bundle_with_text(&trained.model, &trained.config, &bundle, training, trained_metrics, Some(&files))?;
        let checkpoint = dir.checkpoint_named(name);
        if let Some(parent) = checkpoint.parent() {
            fs::create_dir_all(parent).map_err(Error::io(parent))?;
        }
        trained.params.varmap().save(&checkpoint)?;
        metrics.insert(name.clone(), trained.metrics.clone());
        candle.insert(name.clone(), trained.model);
    }
    let data_label =
        record.dev_data.as_ref().map_or("built-in (development split)".into(), |p| p.display().to_string());
    let models = load_models(record, &dir, load)?;
    let report = evaluate_text_models(record, &dir, &models, &mut task, &data_label, &candle, metrics)?;
    report.save(out)?;
    report.plot(&dir.plot())?;
    Ok(report)
}

/// Loads every bundle of a text run, in the record's model order.
fn load_models(record: &TextRunRecord, dir: &RunDir, load: &LoadOptions) -> Result<Vec<(String, Model)>> {
    record.models.iter().map(|name| Ok((name.clone(), Model::load(dir.bundle_named(name), load)?))).collect()
}

/// Evaluates every bundle of the text run in `run` on `data` (in `format`; the built-in format needs no file) and
/// writes `out/report.json` and `out/accuracy.svg`.
pub fn eval_text(
    run: &Path,
    format: DataFormat,
    data: Option<&Path>,
    skip_malformed: bool,
    eval: Option<EvalConfig>,
    load: &LoadOptions,
    out: &Path,
) -> Result<Report> {
    let dir = RunDir(run.to_path_buf());
    let record_path = dir.record();
    let text = fs::read_to_string(&record_path).map_err(Error::io(&record_path))?;
    let mut record: TextRunRecord = serde_json::from_str(&text).map_err(|e| Error::InvalidRun {
        path: run.to_path_buf(),
        message: format!("run.json is not a text run written by `steer train --format`: {e}"),
    })?;
    if let Some(eval) = eval {
        record.eval = eval;
    }
    let dataset = format.load(data, 2, record.train.seed, Some(&record.user_types), skip_malformed)?;
    let models = load_models(&record, &dir, load)?;
    let np = dir.bundle_named(NP_BTL);
    let model = models.iter().find(|(name, _)| name == NP_BTL).map(|(_, model)| model);
    let Some((model, spec, embedder)) = model.and_then(|m| Some((m, m.manifest().text.clone()?, m.embedder()?))) else {
        return Err(Error::InvalidRun { path: np, message: "the np-btl bundle has no text embedder".into() });
    };
    let files = EmbedderFiles { dir: np.clone(), spec, dim: model.dims().embedding_dim };
    eprintln!("embedding {} pairs with the bundle's embedder", dataset.len());
    let vectors = embed(&files, embedder, &dataset)?;
    let pairs = || EmbeddedPairs { data: &dataset, embeddings: vectors.view() };
    // Every split is the evaluated data; only the test split is sampled.
    let mut task = TextTask::new(format.as_str(), pairs(), pairs(), pairs(), record.train.seed)?;
    let label = data.map_or("built-in (evaluation split)".into(), |p| p.display().to_string());
    let report = evaluate_text_models(&record, &dir, &models, &mut task, &label, &BTreeMap::new(), BTreeMap::new())?;
    fs::create_dir_all(out).map_err(Error::io(out))?;
    report.save(out)?;
    report.plot(&out.join("accuracy.svg"))?;
    Ok(report)
}

/// The rewards of option `a` and `b` of every pair of `task`'s test split under an unconditioned bundle.
fn oracle_prefers_a(model: &Model, task: &TextTask) -> Result<Vec<bool>> {
    let pool = task.pool(Split::Test);
    let (n, d) = (pool.len(), pool.dim);
    let shape_err = |e: ndarray::ShapeError| Error::Export(format!("pair layout: {e}"));
    let a = Array3::from_shape_vec((1, n, d), pool.a.clone()).map_err(shape_err)?;
    let b = Array3::from_shape_vec((1, n, d), pool.b.clone()).map_err(shape_err)?;
    let p = model.preference_batch(&[Profile::empty()], a.view(), b.view())?;
    Ok(p.row(0).iter().map(|&p| p > 0.5).collect())
}

fn evaluate_text_models(
    record: &TextRunRecord,
    dir: &RunDir,
    models: &[(String, Model)],
    task: &mut TextTask,
    data_label: &str,
    candle: &BTreeMap<String, RewardModel>,
    mut metrics: BTreeMap<String, crate::train::TrainMetrics>,
) -> Result<Report> {
    // Where each pair has one judge, estimate conflicts from the per-type oracles.
    let conflicts_from = if task.disagreement_known(Split::Test) {
        "labels".to_string()
    } else {
        let oracles: Vec<Vec<bool>> = models
            .iter()
            .filter(|(name, _)| name.starts_with("btl-") && name != BTL_MIXED)
            .map(|(_, model)| oracle_prefers_a(model, task))
            .collect::<Result<_>>()?;
        let n = task.pool(Split::Test).len();
        let disagree = (0..n).map(|i| Some(oracles.iter().any(|o| o[i] != oracles[0][i]))).collect();
        task.set_disagreement(Split::Test, disagree)?;
        "oracles".to_string()
    };
    let mut results = Vec::new();
    let mut bundles = BTreeMap::new();
    for (name, model) in models {
        eprintln!("evaluating {name} through ONNX Runtime");
        let result: ModelEval = evaluate(model, task, &record.eval, candle.get(name))?;
        if !metrics.contains_key(name)
            && let Ok(m) = serde_json::from_value(model.manifest().metrics.clone())
        {
            metrics.insert(name.clone(), m);
        }
        bundles.insert(name.clone(), dir.bundle_named(name).display().to_string());
        results.push((name.clone(), result, metrics.remove(name)));
    }
    let oracles: Vec<&Model> = record
        .user_types
        .iter()
        .filter_map(|t| models.iter().find(|(name, _)| *name == format!("btl-{t}")).map(|(_, model)| model))
        .collect();
    if oracles.len() == record.user_types.len() && oracles.len() > 1 {
        eprintln!("evaluating {ORACLE_POSTERIOR} (the oracles mixed by each user's posterior over types)");
        results.push((ORACLE_POSTERIOR.to_string(), evaluate_oracle_posterior(&oracles, task, &record.eval)?, None));
    }
    let mut report =
        assemble_named(&format!("text ({})", record.format.as_str()), &record.as_run_record(), results, bundles);
    report.text = Some(text_figures(&report, record, task, data_label, conflicts_from, models));
    Ok(report)
}

fn text_figures(
    report: &Report,
    record: &TextRunRecord,
    task: &TextTask,
    data_label: &str,
    conflicts_from: String,
    models: &[(String, Model)],
) -> TextFigures {
    let k_largest = record.eval.ks.iter().copied().max().unwrap_or(0);
    // A model's figure for a user type at the largest k, from `report.accuracy` or `report.stderr`.
    let at_largest_k = |table: &BTreeMap<String, ByTypeAndK>, model: &str, user_type: &str| {
        table.get(model).and_then(|m| m.get(user_type)).and_then(|r| r.get(&k_largest.to_string())).copied()
    };
    let at = |model: &str, user_type: &str| at_largest_k(&report.accuracy, model, user_type);
    let mut figures = TextFigures {
        format: record.format.as_str().into(),
        data: data_label.into(),
        embedder: models
            .first()
            .and_then(|(_, m)| m.manifest().text.as_ref())
            .map(|t| t.embedder_id.clone())
            .unwrap_or_default(),
        pairs_per_type: task.counts(Split::Test),
        conflicts_from,
        gap_closed_k: k_largest,
        ..TextFigures::default()
    };
    for (model, by_type) in &report.accuracy {
        let mut worst = BTreeMap::new();
        for k in &record.eval.ks {
            let key = k.to_string();
            let lowest = by_type
                .iter()
                .filter(|(t, _)| t.as_str() != ALL)
                .filter_map(|(_, row)| row.get(&key).copied())
                .fold(f64::INFINITY, f64::min);
            worst.insert(key, lowest);
        }
        figures.worst_type.insert(model.clone(), worst);
        if let Some(errors) = report.conflict_error.get(model) {
            figures
                .conflict_accuracy
                .insert(model.clone(), errors.iter().map(|(k, e)| (k.clone(), 100.0 - e)).collect());
        }
    }
    for user_type in &record.user_types {
        let oracle = format!("btl-{user_type}");
        if let (Some(np), Some(mixed), Some(best)) =
            (at(NP_BTL, user_type), at(BTL_MIXED, user_type), at(&oracle, user_type))
        {
            let stderr = |model: &str| at_largest_k(&report.stderr, model, user_type).unwrap_or(0.0);
            let gap_stderr = stderr(&oracle).hypot(stderr(BTL_MIXED));
            figures.oracle_gap.insert(user_type.clone(), best - mixed);
            figures.oracle_gap_stderr.insert(user_type.clone(), gap_stderr);
            if let Some(share) = gap_share(np, mixed, best, gap_stderr) {
                figures.gap_closed.insert(user_type.clone(), share);
            }
            if let Some(share) = at(ORACLE_POSTERIOR, user_type).and_then(|p| gap_share(p, mixed, best, gap_stderr)) {
                figures.oracle_posterior_gap_closed.insert(user_type.clone(), share);
            }
        }
    }
    figures
}

/// The share (percent) of the gap between BTL-mixed and an oracle that a model's accuracy closes, or `None` when the
/// gap is not above twice its standard error `gap_stderr` (a share of a gap indistinguishable from zero is noise, and
/// infinite at zero).
fn gap_share(model: f64, mixed: f64, oracle: f64, gap_stderr: f64) -> Option<f64> {
    let gap = oracle - mixed;
    (gap > 2.0 * gap_stderr).then(|| 100.0 * (model - mixed) / gap)
}

#[cfg(test)]
mod tests {
    use super::gap_share;

    #[test]
    fn the_gap_share_is_defined_only_for_a_gap_above_twice_its_standard_error() {
        // NP-BTL at 56 between BTL-mixed at 50 and the oracle at 60 closes 60% of the gap.
        let share = gap_share(56.0, 50.0, 60.0, 1.0).map(|s| (s * 1e9).round() / 1e9);
        assert_eq!(share, Some(60.0));
        assert_eq!(gap_share(58.0, 50.0, 50.0, 0.0), None, "a zero gap");
        assert_eq!(gap_share(58.0, 50.0, 49.0, 0.5), None, "an oracle worse than BTL-mixed");
        assert_eq!(gap_share(58.0, 50.0, 51.0, 0.5), None, "a gap of exactly twice its standard error");
        assert!(gap_share(58.0, 50.0, 51.0, 0.4).is_some());
    }
}
