//! The pipelines behind the CLI: train → export → load through the runtime → evaluate → report.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};
use steer_runtime::{LoadOptions, Model, ModelKind};

use crate::error::{Error, Result};
use crate::eval::{EvalConfig, ModelEval, evaluate};
use crate::export::write_bundle;
use crate::model::RewardModel;
use crate::report::{Report, paper_figures};
use crate::tasks::Task;
use crate::train::{TrainConfig, TrainMetrics, init_model, train};

/// The models every run trains, in report order.
pub const ALL_KINDS: [ModelKind; 3] = [ModelKind::NpBtl, ModelKind::Btl, ModelKind::Dpl];

/// What a run recorded about itself, so that `steer eval` can rebuild its task and models.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// The training configuration.
    pub train: TrainConfig,
    /// The evaluation configuration.
    pub eval: EvalConfig,
    /// The models trained.
    pub kinds: Vec<ModelKind>,
}

/// Layout of a run folder.
pub struct RunDir(pub PathBuf);

impl RunDir {
    /// `DIR/bundles/<kind>`: the exported bundle.
    pub fn bundle(&self, kind: ModelKind) -> PathBuf {
        self.bundle_named(kind.as_str())
    }
    /// `DIR/bundles/<name>`: the bundle of a named model (`np-btl`, `btl-mixed`, `btl-helpful`, …).
    pub fn bundle_named(&self, name: &str) -> PathBuf {
        self.0.join("bundles").join(name)
    }
    /// `DIR/checkpoints/<kind>.safetensors`: the candle weights, for parity checks and re-export.
    pub fn checkpoint(&self, kind: ModelKind) -> PathBuf {
        self.checkpoint_named(kind.as_str())
    }
    /// `DIR/checkpoints/<name>.safetensors`.
    pub fn checkpoint_named(&self, name: &str) -> PathBuf {
        self.0.join("checkpoints").join(format!("{name}.safetensors"))
    }
    /// `DIR/run.json`.
    pub fn record(&self) -> PathBuf {
        self.0.join("run.json")
    }
    /// `DIR/report.json`.
    pub fn report(&self) -> PathBuf {
        self.0.join("report.json")
    }
    /// `DIR/accuracy.svg`.
    pub fn plot(&self) -> PathBuf {
        self.0.join("accuracy.svg")
    }
}

/// `value` as JSON; a failure names the file it was meant for.
pub(crate) fn to_json<T: Serialize>(value: &T, what: &Path) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::Json { path: what.to_path_buf(), message: e.to_string() })
}

fn assemble(
    record: &RunRecord,
    results: Vec<(ModelKind, ModelEval, Option<TrainMetrics>)>,
    bundles: BTreeMap<String, String>,
) -> Report {
    let results = results.into_iter().map(|(kind, eval, metrics)| (kind.as_str().to_string(), eval, metrics)).collect();
    assemble_named(&record.train.task.label(), record, results, bundles)
}

/// Gathers per-model evaluations, keyed by model name, into one report on task `label`.
pub(crate) fn assemble_named(
    label: &str,
    record: &RunRecord,
    results: Vec<(String, ModelEval, Option<TrainMetrics>)>,
    bundles: BTreeMap<String, String>,
) -> Report {
    let mut report = Report {
        task: label.to_string(),
        evaluated_with: "onnxruntime".into(),
        n_tasks: record.eval.n_tasks,
        accuracy: BTreeMap::new(),
        stderr: BTreeMap::new(),
        parity_max_abs_diff: 0.0,
        parity_max_normwise_diff: 0.0,
        parity_max_probability_diff: 0.0,
        parity: BTreeMap::new(),
        z_usage: BTreeMap::new(),
        conflict_error: BTreeMap::new(),
        conflict_error_stderr: BTreeMap::new(),
        identification_error: BTreeMap::new(),
        identification_error_stderr: BTreeMap::new(),
        bayes_identification_error: record.train.task.bayes_identification_error().map(|e| e * 100.0),
        paper: paper_figures(&record.train.task),
        bundles,
        training: BTreeMap::new(),
        config: record.train.clone(),
        text: None,
    };
    for (name, eval, metrics) in results {
        report.accuracy.insert(name.clone(), eval.accuracy);
        report.stderr.insert(name.clone(), eval.stderr);
        report.conflict_error.insert(name.clone(), eval.conflict_error);
        report.conflict_error_stderr.insert(name.clone(), eval.conflict_error_stderr);
        report.identification_error.insert(name.clone(), eval.identification_error);
        report.identification_error_stderr.insert(name.clone(), eval.identification_error_stderr);
        let parity = eval.parity.unwrap_or_default();
        if let Some(usage) = eval.z_usage {
            report.z_usage.insert(name.clone(), usage);
        }
        if eval.parity.is_some() {
            report.parity.insert(name.clone(), parity);
        }
        report.parity_max_abs_diff = report.parity_max_abs_diff.max(parity.max_abs_diff);
        report.parity_max_normwise_diff = report.parity_max_normwise_diff.max(parity.max_normwise_diff);
        report.parity_max_probability_diff = report.parity_max_probability_diff.max(parity.max_probability_diff);
        if let Some(m) = metrics {
            report.training.insert(name, m);
        }
    }
    report
}

/// Trains every model of `record`, exports each as a bundle under `out/bundles`, evaluates the bundles
/// through the runtime, and writes `out/report.json` and `out/accuracy.svg`.
pub fn train_export_evaluate(record: &RunRecord, load: &LoadOptions, out: &Path, progress: bool) -> Result<Report> {
    let dir = RunDir(out.to_path_buf());
    fs::create_dir_all(out).map_err(Error::io(out))?;
    let record_path = dir.record();
    let text = serde_json::to_string_pretty(record)
        .map_err(|e| Error::Json { path: record_path.clone(), message: e.to_string() })?;
    fs::write(&record_path, text).map_err(Error::io(&record_path))?;

    let task = Task::generate(record.train.task, record.train.n_pairs, record.train.seed)?;
    let mut results = Vec::new();
    let mut bundles = BTreeMap::new();
    let total = record.kinds.len();
    for (i, &kind) in record.kinds.iter().enumerate() {
        let steps = if kind.is_conditioned() { record.train.steps } else { record.train.baseline_steps };
        eprintln!("[{}/{total}] {kind}: training {steps} steps on {}", i + 1, task.spec.label());
        let trained = train(kind, &task, &record.train, progress)?;
        let bundle_dir = dir.bundle(kind);
        write_bundle(
            &trained.model,
            &trained.config,
            &bundle_dir,
            to_json(&record.train, &record_path)?,
            to_json(&trained.metrics, &record_path)?,
        )?;
        let checkpoint = dir.checkpoint(kind);
        if let Some(parent) = checkpoint.parent() {
            fs::create_dir_all(parent).map_err(Error::io(parent))?;
        }
        trained.params.varmap().save(&checkpoint)?;
        eprintln!("[{}/{total}] {kind}: exported to {}; evaluating through ONNX Runtime", i + 1, bundle_dir.display());
        let model = Model::load(&bundle_dir, load)?;
        let eval = evaluate(&model, &task, &record.eval, Some(&trained.model))?;
        bundles.insert(kind.as_str().to_string(), bundle_dir.display().to_string());
        results.push((kind, eval, Some(trained.metrics)));
    }
    let report = assemble(record, results, bundles);
    report.save(out)?;
    report.plot(&dir.plot())?;
    Ok(report)
}

/// Loads the candle model saved beside a bundle, for parity checks.
pub fn load_checkpoint(record: &RunRecord, kind: ModelKind, path: &Path) -> Result<RewardModel> {
    let (model, params) = init_model(&record.train.model_config(kind), record.train.seed, &Device::Cpu)?;
    // VarMap::load needs exclusive access; the store is only shared with the builder we dropped.
    let mut varmap = params.varmap().clone();
    varmap.load(path)?;
    Ok(model)
}

/// Re-evaluates the bundles of an earlier run folder `run` and writes the report into `out`.
pub fn evaluate_run(run: &Path, eval: Option<EvalConfig>, load: &LoadOptions, out: &Path) -> Result<Report> {
    let dir = RunDir(run.to_path_buf());
    let record_path = dir.record();
    let text = fs::read_to_string(&record_path).map_err(Error::io(&record_path))?;
    let mut record: RunRecord =
        serde_json::from_str(&text).map_err(|e| Error::Json { path: record_path.clone(), message: e.to_string() })?;
    if let Some(eval) = eval {
        record.eval = eval;
    }
    let task = Task::generate(record.train.task, record.train.n_pairs, record.train.seed)?;
    let mut results = Vec::new();
    let mut bundles = BTreeMap::new();
    for &kind in &record.kinds {
        let bundle_dir = dir.bundle(kind);
        let model = Model::load(&bundle_dir, load)?;
        let checkpoint = dir.checkpoint(kind);
        let candle = if checkpoint.is_file() { Some(load_checkpoint(&record, kind, &checkpoint)?) } else { None };
        let eval = evaluate(&model, &task, &record.eval, candle.as_ref())?;
        let metrics = serde_json::from_value(model.manifest().metrics.clone()).ok();
        bundles.insert(kind.as_str().to_string(), bundle_dir.display().to_string());
        results.push((kind, eval, metrics));
    }
    fs::create_dir_all(out).map_err(Error::io(out))?;
    let report = assemble(&record, results, bundles);
    report.save(out)?;
    report.plot(&out.join("accuracy.svg"))?;
    Ok(report)
}
