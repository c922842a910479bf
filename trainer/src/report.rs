//! `report.json` and the accuracy-vs-k plot.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::eval::{ALL, ByTypeAndK, Parity, ZUsage};
use crate::tasks::TaskSpec;
use crate::train::{TrainConfig, TrainMetrics};

/// The report every command writes to `OUT/report.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The task, e.g. `synthetic-1d`.
    pub task: String,
    /// Always `onnxruntime`: figures come from the exported bundles run through the runtime.
    pub evaluated_with: String,
    /// Held-out users per k.
    pub n_tasks: usize,
    /// `{model: {user type or "all": {k: percent}}}`, accuracy on unseen targets.
    pub accuracy: BTreeMap<String, ByTypeAndK>,
    /// Standard errors, same shape.
    pub stderr: BTreeMap<String, ByTypeAndK>,
    /// Largest |candle − ONNX Runtime| over every model's z and rewards on the evaluation inputs.
    pub parity_max_abs_diff: f64,
    /// The same, relative to each output's largest magnitude (see [`crate::eval::Parity`]).
    pub parity_max_normwise_diff: f64,
    /// Largest |candle − ONNX Runtime| of p(a ≻ b).
    pub parity_max_probability_diff: f64,
    /// Parity of each model, on every evaluation input.
    pub parity: BTreeMap<String, Parity>,
    /// For NP-BTL: own-context vs swapped-context accuracy and the spread of z (latent-collapse check).
    pub z_usage: BTreeMap<String, ZUsage>,
    /// `{model: {k: percent}}`: error on unseen targets where the user types disagree.
    pub conflict_error: BTreeMap<String, BTreeMap<String, f64>>,
    /// Standard errors of `conflict_error` over users, same shape.
    pub conflict_error_stderr: BTreeMap<String, BTreeMap<String, f64>>,
    /// `{model: {k: percent}}`: error in identifying the user type from the model's choice on the
    /// task's probe pair (see `TaskSpec::identification_probe`).
    pub identification_error: BTreeMap<String, BTreeMap<String, f64>>,
    /// Standard errors of `identification_error` over users, same shape.
    pub identification_error_stderr: BTreeMap<String, BTreeMap<String, f64>>,
    /// The Bayes error of identifying the user type from one pair, where the task defines it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bayes_identification_error: Option<f64>,
    /// The paper's published figures for this task, for comparison.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub paper: BTreeMap<String, BTreeMap<String, f64>>,
    /// Where each model's bundle is.
    pub bundles: BTreeMap<String, String>,
    /// What training measured, per model.
    pub training: BTreeMap<String, TrainMetrics>,
    /// The training configuration.
    pub config: TrainConfig,
    /// Text runs only: the data, the embedder, and the figures the text targets are stated in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextFigures>,
}

/// What a text run's report adds: where the data came from, and the per-type comparisons with the baselines.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TextFigures {
    /// The data format (`hh-relabeled`, `builtin`, …).
    pub format: String,
    /// The evaluated file (or `built-in`).
    pub data: String,
    /// The embedder id of the bundles.
    pub embedder: String,
    /// Evaluated pairs per user type.
    pub pairs_per_type: BTreeMap<String, usize>,
    /// `{model: {k: percent}}`: the lowest accuracy over user types.
    pub worst_type: BTreeMap<String, BTreeMap<String, f64>>,
    /// `{model: {k: percent}}`: accuracy on the unseen pairs on which the user types disagree.
    pub conflict_accuracy: BTreeMap<String, BTreeMap<String, f64>>,
    /// How conflicting pairs were determined: `labels` (each pair judged by every type) or `oracles` (the
    /// per-type oracles rank the pair in opposite orders; for data where each pair has one judge).
    pub conflicts_from: String,
    /// `{user type: points}` at the largest k: that type's oracle − BTL-mixed, on that type's users.
    #[serde(default)]
    pub oracle_gap: BTreeMap<String, f64>,
    /// The standard error of `oracle_gap`, from the two accuracies' standard errors.
    #[serde(default)]
    pub oracle_gap_stderr: BTreeMap<String, f64>,
    /// `{user type: percent}` at the largest k: (NP-BTL − BTL-mixed) / (that type's oracle − BTL-mixed), on that
    /// type's users. A type is left out when its oracle gap is not above twice its standard error over the evaluated
    /// users: the share of a gap indistinguishable from zero is noise (and infinite when the gap is exactly zero).
    pub gap_closed: BTreeMap<String, f64>,
    /// The same share for `oracle-posterior` (the oracles mixed by each user's posterior over types; see
    /// [`crate::eval::evaluate_oracle_posterior`]): what reading the user can gain on these embeddings.
    #[serde(default)]
    pub oracle_posterior_gap_closed: BTreeMap<String, f64>,
    /// The k of `gap_closed`.
    pub gap_closed_k: usize,
}

/// The paper's figures (method.md §6) for a task: NP-BTL as published and the authors' own run.
pub fn paper_figures(task: &TaskSpec) -> BTreeMap<String, BTreeMap<String, f64>> {
    let row = |values: [f64; 5]| -> BTreeMap<String, f64> {
        ["0", "1", "3", "5", "10"].iter().map(|k| k.to_string()).zip(values).collect()
    };
    match task {
        TaskSpec::Synthetic1d => BTreeMap::from([
            ("np-btl (paper)".to_string(), row([75.2, 80.0, 88.2, 93.6, 97.2])),
            ("np-btl (authors' run)".to_string(), row([76.4, 86.6, 94.7, 97.4, 98.9])),
        ]),
        TaskSpec::GaussianRho { .. } | TaskSpec::Text => BTreeMap::new(),
    }
}

impl Report {
    /// Writes `dir/report.json`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join("report.json");
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Json { path: path.clone(), message: e.to_string() })?;
        fs::write(&path, text).map_err(Error::io(&path))
    }

    /// The overall accuracy table as aligned text, with the paper's rows beneath.
    pub fn table(&self) -> String {
        let ks: Vec<String> = self
            .accuracy
            .values()
            .next()
            .and_then(|m| m.get(ALL))
            .map(|row| {
                let mut ks: Vec<usize> = row.keys().filter_map(|k| k.parse().ok()).collect();
                ks.sort_unstable();
                ks.iter().map(|k| k.to_string()).collect()
            })
            .unwrap_or_default();
        let mut out = format!("{:<24}", "accuracy % (unseen), k =");
        for k in &ks {
            out += &format!("{k:>14}");
        }
        out.push('\n');
        for (model, by_type) in &self.accuracy {
            out += &format!("{model:<24}");
            for k in &ks {
                let acc = by_type.get(ALL).and_then(|r| r.get(k)).copied().unwrap_or(f64::NAN);
                let se =
                    self.stderr.get(model).and_then(|m| m.get(ALL)).and_then(|r| r.get(k)).copied().unwrap_or(f64::NAN);
                out += &format!("{:>14}", format!("{acc:.1} ± {se:.1}"));
            }
            out.push('\n');
        }
        for (name, row) in &self.paper {
            out += &format!("{name:<24}");
            for k in &ks {
                out += &format!("{:>14}", row.get(k).map(|v| format!("{v:.1}")).unwrap_or_default());
            }
            out.push('\n');
        }
        out
    }

    /// Draws accuracy (all users) vs k per model, with the paper's rows dashed, as an SVG.
    pub fn plot(&self, path: &Path) -> Result<()> {
        let plot_err = |e: String| Error::Plot { path: path.to_path_buf(), message: e };
        let root = SVGBackend::new(path, (720, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{}: accuracy on unseen pairs vs context size", self.task), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..10.5, 40f64..100f64)
            .map_err(|e| plot_err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_labels(11)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .x_desc("k (user's context pairs)")
            .y_desc("accuracy %")
            .draw()
            .map_err(|e| plot_err(e.to_string()))?;
        let series = |row: &BTreeMap<String, f64>| -> Vec<(f64, f64)> {
            let mut points: Vec<(f64, f64)> =
                row.iter().filter_map(|(k, v)| k.parse::<f64>().ok().map(|k| (k, *v))).collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            points
        };
        for (i, (model, by_type)) in self.accuracy.iter().enumerate() {
            let Some(row) = by_type.get(ALL) else { continue };
            let color = match model.as_str() {
                "np-btl" => RGBColor(31, 119, 180),
                "btl" => RGBColor(214, 39, 40),
                "dpl" => RGBColor(44, 160, 44),
                _ => {
                    let (r, g, b) = Palette99::pick(i).rgb();
                    RGBColor(r, g, b)
                }
            };
            let points = series(row);
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| plot_err(e.to_string()))?
                .label(model.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| plot_err(e.to_string()))?;
        }
        for (i, (name, row)) in self.paper.iter().enumerate() {
            let color = RGBColor(120, 120, 120).mix(if i == 0 { 1.0 } else { 0.6 });
            chart
                .draw_series(DashedLineSeries::new(series(row), 6, 4, color.stroke_width(1)))
                .map_err(|e| plot_err(e.to_string()))?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(1)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(e.to_string()))?;
        root.present().map_err(|e| plot_err(e.to_string()))
    }
}
