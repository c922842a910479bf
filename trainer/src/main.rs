//! `steer`: train, export and evaluate steerable reward models.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use steer_runtime::{ExecutionProvider, LoadOptions};
use steer_trainer::eval::{EvalConfig, ZUsage};
use steer_trainer::policy::PolicyShape;
use steer_trainer::policy::base::BaseModel;
use steer_trainer::policy::dpo::DpoConfig;
use steer_trainer::policy::run::{
    PolicyDataSource, PolicyReport, PolicyRunConfig, TraitKind, evaluate, load_run, train_policy,
};
use steer_trainer::report::Report;
use steer_trainer::run::{ALL_KINDS, RunDir, RunRecord, evaluate_run, train_export_evaluate};
use steer_trainer::tasks::TaskSpec;
use steer_trainer::text::EmbedderChoice;
use steer_trainer::text_run::{DataFormat, TextRunRecord, eval_text, train_text};
use steer_trainer::train::TrainConfig;

#[derive(Parser)]
#[command(
    name = "steer",
    version,
    about = "Few-shot steerable reward models: train, export to ONNX, evaluate through ONNX Runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// How bundles are run through ONNX Runtime.
#[derive(clap::Args)]
struct RuntimeArgs {
    /// ONNX Runtime library to load (default: ORT_DYLIB_PATH, then the project cache .cache/onnxruntime).
    #[arg(long, global = true)]
    ort_library: Option<PathBuf>,
    /// Execution providers in priority order.
    #[arg(long = "provider", value_enum, global = true, default_value = "cpu")]
    providers: Vec<Provider>,
    /// Fall back to the CPU when a requested provider is unavailable (otherwise that is an error).
    #[arg(long, global = true)]
    allow_cpu_fallback: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Provider {
    Cpu,
    Cuda,
    Tensorrt,
}

impl RuntimeArgs {
    fn load_options(&self) -> LoadOptions {
        let providers = self.providers.iter().map(|p| match p {
            Provider::Cpu => ExecutionProvider::Cpu,
            Provider::Cuda => ExecutionProvider::Cuda { device_id: 0 },
            Provider::Tensorrt => ExecutionProvider::TensorRt { device_id: 0 },
        });
        let options = LoadOptions::default().execution_providers(providers).allow_cpu_fallback(self.allow_cpu_fallback);
        match &self.ort_library {
            Some(path) => options.ort_library(path),
            None => options,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum TaskName {
    /// The paper's 1-D task with two user types.
    Synthetic1d,
    /// Gaussian-ρ identifiability task (set --rho).
    Gaussian,
}

/// Text data formats (`--format`).
#[derive(Clone, Copy, ValueEnum)]
enum FormatName {
    /// The built-in text task: casual and formal users (generated, no file).
    Builtin,
    /// HH-relabeled JSONL (`../shared/data/hh_relabeled`), user type = `objective`.
    HhRelabeled,
    /// Generic JSONL: {"user", "prompt", "chosen", "rejected"} per line.
    Jsonl,
    /// UltraFeedback, converted to the paper's HH split (helpfulness vs honesty users).
    UltrafeedbackHh,
    /// UltraFeedback, converted to the HHT split (adds truthfulness users).
    UltrafeedbackHht,
}

impl FormatName {
    fn format(self) -> DataFormat {
        match self {
            FormatName::Builtin => DataFormat::Builtin,
            FormatName::HhRelabeled => DataFormat::HhRelabeled,
            FormatName::Jsonl => DataFormat::Jsonl,
            FormatName::UltrafeedbackHh => DataFormat::UltrafeedbackHh,
            FormatName::UltrafeedbackHht => DataFormat::UltrafeedbackHht,
        }
    }
}

/// Text embedders (`--embedder`).
#[derive(Clone, Copy, ValueEnum)]
enum EmbedderName {
    /// all-MiniLM-L6-v2: BERT, 384 values, mean pooling.
    Minilm,
    /// SmolLM2-135M-Instruct: Llama, 576 values, last token's hidden state.
    Smollm2,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Synthetic task to train on (ignored with --format).
    #[arg(long, value_enum, default_value = "synthetic1d")]
    task: TaskName,
    /// Train on text instead: the data format. Trains NP-BTL, BTL-mixed and a BTL oracle per user type.
    #[arg(long, value_enum)]
    format: Option<FormatName>,
    /// Training file (text formats other than builtin).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Development file, for model selection and the run's report (text formats other than builtin).
    #[arg(long)]
    dev: Option<PathBuf>,
    /// Text embedder.
    #[arg(long, value_enum, default_value = "minilm")]
    embedder: EmbedderName,
    /// Skip data lines that are not JSON objects (their line numbers are printed) instead of failing.
    #[arg(long)]
    skip_malformed: bool,
    /// Correlation ρ for the Gaussian task.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    rho: f64,
    /// NP-BTL optimizer steps.
    #[arg(long)]
    steps: Option<usize>,
    /// BTL/DPL optimizer steps.
    #[arg(long)]
    baseline_steps: Option<usize>,
    /// Hidden size H.
    #[arg(long)]
    hidden: Option<usize>,
    /// AdamW learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// AdamW weight decay.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Validate (and keep the best weights) every this many steps.
    #[arg(long)]
    eval_every: Option<usize>,
    /// Seed for data, weights and sampling.
    #[arg(long)]
    seed: Option<u64>,
    /// Largest context size in training (k ~ U{0..max}); at least 10 keeps every evaluated k in range.
    #[arg(long)]
    max_context: Option<usize>,
    /// Held-out users per k in the evaluation.
    #[arg(long, default_value_t = 2000)]
    eval_tasks: usize,
}

/// Policy bases (`--base`).
#[derive(Clone, Copy, ValueEnum)]
enum BaseName {
    /// SmolLM2-135M-Instruct from the project cache.
    Smollm2,
    /// A random 2-layer decoder over SmolLM2's vocabulary, for smoke runs (learns the data, writes no sense).
    Tiny,
}

/// Policy data (`--data`).
#[derive(Clone, Copy, ValueEnum)]
enum PolicyDataName {
    /// Concise vs detailed users over answers the base model writes itself.
    Steering,
    /// The built-in text task: casual vs formal users over template answers.
    BuiltinText,
    /// Files (--train, --dev, --eval) in the format given by --format.
    Files,
}

#[derive(clap::Args)]
struct PolicyArgs {
    /// The base decoder.
    #[arg(long, value_enum, default_value = "smollm2")]
    base: BaseName,
    /// A local Hugging Face model directory (Llama or Qwen2 architecture: config.json, *.safetensors,
    /// tokenizer.json) to start from instead of --base.
    #[arg(long, conflicts_with = "base")]
    base_dir: Option<PathBuf>,
    /// The preference data.
    #[arg(long, value_enum, default_value = "steering")]
    data: PolicyDataName,
    /// With --data files: the files' format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: FormatName,
    /// With --data files: training pairs.
    #[arg(long)]
    train: Option<PathBuf>,
    /// With --data files: development pairs.
    #[arg(long)]
    dev: Option<PathBuf>,
    /// With --data files: evaluation pairs.
    #[arg(long)]
    eval: Option<PathBuf>,
    /// DPO optimizer steps.
    #[arg(long)]
    steps: Option<usize>,
    /// DPO learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// FiLM and LoRA go into this many top blocks.
    #[arg(long)]
    film_layers: Option<usize>,
    /// LoRA rank.
    #[arg(long)]
    lora_rank: Option<usize>,
    /// Feed FiLM raw z instead of z at unit RMS (an ablation: raw z grows with the number of choices).
    #[arg(long)]
    raw_z: bool,
    /// Built-in steering data: prompts per split (train, dev, eval), e.g. 160,40,40.
    #[arg(long, value_delimiter = ',')]
    prompts: Option<Vec<usize>>,
    /// NP-BTL optimizer steps.
    #[arg(long)]
    reward_steps: Option<usize>,
    /// Evaluation prompts per user type and k.
    #[arg(long)]
    trait_prompts: Option<usize>,
    /// The system prompt the policy is trained and served with [default: "Answer in two sentences."]; "" keeps the
    /// base model's own.
    #[arg(long)]
    system_prompt: Option<String>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
}

impl PolicyArgs {
    fn config(&self) -> anyhow::Result<PolicyRunConfig> {
        let d = PolicyRunConfig::default();
        let data = match self.data {
            PolicyDataName::Steering => PolicyDataSource::Steering,
            PolicyDataName::BuiltinText => PolicyDataSource::BuiltinText,
            PolicyDataName::Files => match (&self.train, &self.dev, &self.eval) {
                (Some(train), Some(dev), Some(eval)) => PolicyDataSource::Files {
                    format: self.format.format(),
                    train: train.clone(),
                    dev: dev.clone(),
                    eval: eval.clone(),
                },
                _ => anyhow::bail!("--data files needs --train, --dev and --eval files (and --format)"),
            },
        };
        let mut steering = d.steering.clone();
        if let Some(prompts) = self.prompts.as_deref() {
            let Ok(counts) = <[usize; 3]>::try_from(prompts) else {
                anyhow::bail!("--prompts takes three counts, train,dev,eval (e.g. 160,40,40); got {prompts:?}")
            };
            steering.prompts = counts;
        }
        let seed = self.seed.unwrap_or(d.dpo.seed);
        steering.seed = seed;
        Ok(PolicyRunConfig {
            base: match (&self.base_dir, self.base) {
                (Some(dir), _) => BaseModel::HfDir(dir.clone()),
                (None, BaseName::Smollm2) => BaseModel::Smollm2,
                (None, BaseName::Tiny) => BaseModel::Tiny,
            },
            trait_kind: if matches!(self.data, PolicyDataName::BuiltinText) {
                TraitKind::Formality
            } else {
                d.trait_kind
            },
            data,
            steering,
            shape: PolicyShape {
                film_layers: self.film_layers.unwrap_or(d.shape.film_layers),
                lora_rank: self.lora_rank.unwrap_or(d.shape.lora_rank),
                normalize_z: !self.raw_z && d.shape.normalize_z,
                ..d.shape
            },
            dpo: DpoConfig { steps: self.steps.unwrap_or(d.dpo.steps), lr: self.lr.unwrap_or(d.dpo.lr), seed, ..d.dpo },
            reward: TrainConfig { steps: self.reward_steps.unwrap_or(d.reward.steps), seed, ..d.reward.clone() },
            trait_prompts: self.trait_prompts.unwrap_or(d.trait_prompts),
            system_prompt: match self.system_prompt.as_deref() {
                None => d.system_prompt.clone(),
                Some("") => None,
                Some(text) => Some(text.to_string()),
            },
            ..d
        })
    }
}

/// Sampling settings of `steer generate`; unset ones come from the bundle's defaults.
#[derive(clap::Args)]
struct SamplingArgs {
    /// Most new tokens.
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Temperature (0 = greedy).
    #[arg(long, allow_negative_numbers = true)]
    temperature: Option<f32>,
    /// Nucleus mass in (0, 1].
    #[arg(long, allow_negative_numbers = true)]
    top_p: Option<f32>,
    /// Keep the k most likely tokens (0 = all).
    #[arg(long)]
    top_k: Option<usize>,
    /// Repetition penalty (1 = off).
    #[arg(long, allow_negative_numbers = true)]
    repetition_penalty: Option<f32>,
    /// Seed (the same seed gives the same text).
    #[arg(long)]
    seed: Option<u64>,
    /// Stop strings (repeatable).
    #[arg(long)]
    stop: Vec<String>,
}

impl SamplingArgs {
    fn params(&self, defaults: &steer_runtime::GenerationParams) -> steer_runtime::GenerationParams {
        let d = defaults.clone();
        steer_runtime::GenerationParams {
            max_new_tokens: self.max_new_tokens.unwrap_or(d.max_new_tokens),
            temperature: self.temperature.unwrap_or(d.temperature),
            top_p: self.top_p.unwrap_or(d.top_p),
            top_k: self.top_k.unwrap_or(d.top_k),
            repetition_penalty: self.repetition_penalty.unwrap_or(d.repetition_penalty),
            seed: self.seed.unwrap_or(d.seed),
            stop: if self.stop.is_empty() { d.stop } else { self.stop.clone() },
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// NP-DPO: train a steerable policy (FiLM + LoRA on the base decoder, z from an NP-BTL encoder trained on the
    /// same choices), evaluate it, and write OUT/report.json.
    TrainPolicy {
        #[command(flatten)]
        args: PolicyArgs,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Generate an answer steered to one user: their choices (JSONL lines with "prompt", "chosen", "rejected")
    /// give the profile, then the bundle's policy answers PROMPT, streaming tokens to stdout.
    Generate {
        /// The policy bundle, or the `steer train-policy` folder holding it under `bundle/`.
        #[arg(long)]
        bundle: PathBuf,
        /// The user's choices (JSONL); without it the policy answers for an unknown user (k = 0).
        #[arg(long)]
        context: Option<PathBuf>,
        /// The prompt.
        #[arg(long)]
        prompt: String,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Sample N answers and keep the one the bundle's reward, conditioned on the same user, ranks first.
        #[arg(long)]
        best_of: Option<usize>,
    },
    /// Time generation of a `steer train-policy` folder: time to first token and tokens/s through ONNX Runtime (the
    /// bundle) and candle (the same weights), greedy, for batches of 1 and 4 rows.
    BenchPolicy {
        /// The folder `steer train-policy` wrote.
        #[arg(long, visible_alias = "run")]
        bundle: PathBuf,
        /// New tokens per row.
        #[arg(long, default_value_t = 32)]
        new_tokens: usize,
        /// Repetitions per measurement (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
    /// Re-evaluate a `steer train-policy` folder and write OUT/report.json.
    EvalPolicy {
        /// The folder `steer train-policy` wrote.
        #[arg(long, visible_alias = "run")]
        bundle: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Train NP-BTL, BTL and DPL, export each as a bundle, evaluate the bundles through ONNX Runtime,
    /// and write OUT/report.json and OUT/accuracy.svg.
    Train {
        #[command(flatten)]
        args: TrainArgs,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Re-evaluate the bundles of an earlier `steer train` folder through ONNX Runtime; for a text run, on any
    /// file of a supported format (--format, --data).
    Eval {
        /// The folder `steer train` wrote (its bundles are under DIR/bundles).
        #[arg(long, visible_alias = "run")]
        bundle: PathBuf,
        /// Text runs: the format of --data.
        #[arg(long, value_enum)]
        format: Option<FormatName>,
        /// Text runs: the file to evaluate on (not needed for --format builtin).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Skip data lines that are not JSON objects (their line numbers are printed) instead of failing.
        #[arg(long)]
        skip_malformed: bool,
        /// Held-out users per k.
        #[arg(long)]
        eval_tasks: Option<usize>,
        /// Output folder for report.json and the plot.
        #[arg(long)]
        out: PathBuf,
    },
    /// Gaussian-ρ identifiability: train NP-BTL for each ρ and compare its error in identifying the
    /// user type from one context pair with the Bayes error 1/4 + arcsin(ρ)/(2π).
    Identifiability {
        /// Values of ρ.
        #[arg(long, value_delimiter = ',', allow_negative_numbers = true, default_values_t = [-1.0, -0.7, 0.0, 0.7])]
        rhos: Vec<f64>,
        /// NP-BTL optimizer steps per ρ.
        #[arg(long)]
        steps: Option<usize>,
        /// Largest context size in training (k ~ U{0..max}).
        #[arg(long)]
        max_context: Option<usize>,
        /// Held-out users per k. Each user's conflicting targets share one context pair, so the
        /// standard error falls with users, not targets; 20,000 gives about ±0.35 points.
        #[arg(long, default_value_t = 20_000)]
        eval_tasks: usize,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
}

fn train_config(args: &TrainArgs) -> TrainConfig {
    let defaults = match args.format {
        Some(FormatName::Builtin) => TrainConfig::builtin_text_default(),
        Some(_) => TrainConfig::text_default(),
        None => TrainConfig::default(),
    };
    let task = match args.task {
        TaskName::Synthetic1d => TaskSpec::Synthetic1d,
        TaskName::Gaussian => TaskSpec::GaussianRho { rho: args.rho },
    };
    TrainConfig {
        task: if args.format.is_some() { TaskSpec::Text } else { task },
        steps: args.steps.unwrap_or(defaults.steps),
        baseline_steps: args.baseline_steps.unwrap_or(defaults.baseline_steps),
        hidden: args.hidden.unwrap_or(defaults.hidden),
        lr: args.lr.unwrap_or(defaults.lr),
        weight_decay: args.weight_decay.unwrap_or(defaults.weight_decay),
        eval_every: args.eval_every.unwrap_or(defaults.eval_every),
        seed: args.seed.unwrap_or(defaults.seed),
        max_context: args.max_context.unwrap_or(defaults.max_context),
        ..defaults
    }
}

fn print_outputs(report: &Report, out: &Path) {
    println!("\n{}", report.table());
    println!(
        "candle vs ONNX Runtime: z and rewards max |diff| {:.2e} (normwise {:.2e}); p(a>b) max |diff| {:.2e}",
        report.parity_max_abs_diff, report.parity_max_normwise_diff, report.parity_max_probability_diff
    );
    for (model, usage) in &report.z_usage {
        println!(
            "{model} uses the user's context: {:.1}% with their own {} pairs vs {:.1}% with another user's (z spread {:.3})",
            usage.accuracy_own_context, usage.k, usage.accuracy_swapped_context, usage.z_spread
        );
        if !usage.is_used() {
            eprintln!(
                "WARNING: {model} ignores the user's context (latent collapse): own context is not {} points better \
                 than a stranger's. Train longer or check the data.",
                ZUsage::MIN_GAIN
            );
        }
    }
    if let Some(text) = &report.text {
        print_text_figures(report, text);
    }
    println!("report: {}", out.join("report.json").display());
    println!("plot:   {}", out.join("accuracy.svg").display());
    for (model, path) in &report.bundles {
        println!("bundle: {model:<7} {path}");
    }
}

/// Per-type accuracy, worst type, conflicting pairs and the share of the oracle gap NP-BTL closes.
fn print_text_figures(report: &Report, text: &steer_trainer::report::TextFigures) {
    println!(
        "data: {} ({}), embedder {}, pairs per type {:?}",
        text.data, text.format, text.embedder, text.pairs_per_type
    );
    // Rows are keyed by k as text; list them in numeric order.
    let cells = |row: &std::collections::BTreeMap<String, f64>| {
        let mut cells: Vec<(usize, f64)> = row.iter().filter_map(|(k, v)| Some((k.parse().ok()?, *v))).collect();
        cells.sort_by_key(|&(k, _)| k);
        cells.iter().map(|(k, v)| format!("k={k}: {v:5.1}")).collect::<Vec<_>>().join("  ")
    };
    println!("accuracy % on unseen pairs by user type:");
    for (model, by_type) in &report.accuracy {
        for (user_type, row) in by_type {
            println!("  {model:<16} {user_type:<18} {}", cells(row));
        }
    }
    for (model, row) in &text.worst_type {
        println!("  {model:<16} {:<18} {}", "worst type", cells(row));
    }
    for (model, row) in &text.conflict_accuracy {
        println!("  {model:<16} {:<18} {}", format!("conflicting ({})", text.conflicts_from), cells(row));
    }
    for (user_type, gap) in &text.oracle_gap {
        let Some(closed) = text.gap_closed.get(user_type) else {
            let se = text.oracle_gap_stderr.get(user_type).copied().unwrap_or(0.0);
            println!(
                "the share of the gap NP-BTL closes is undefined for {user_type} users: btl-{user_type} beats \
                 btl-mixed by {gap:.1} ± {se:.1} points at k={}, not more than twice its standard error",
                text.gap_closed_k
            );
            continue;
        };
        let posterior = text.oracle_posterior_gap_closed.get(user_type).map_or(String::new(), |p| {
            format!(" (the oracles mixed by the posterior over types close {p:.0}%: what reading the user can gain)")
        });
        println!(
            "NP-BTL at k={} closes {closed:.0}% of the gap between btl-mixed and btl-{user_type} for {user_type} \
             users{posterior}",
            text.gap_closed_k
        );
    }
}

/// Reads a user's choices: JSONL lines with string fields `prompt`, `chosen` and `rejected`.
fn read_choices(path: &Path) -> anyhow::Result<Vec<(String, String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut choices = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}:{}: not a JSON object", path.display(), i + 1))?;
        let field = |name: &str| -> anyhow::Result<String> {
            value.get(name).and_then(|v| v.as_str()).map(str::to_owned).with_context(|| {
                format!("{}:{}: expected a string field \"{name}\" (prompt, chosen, rejected)", path.display(), i + 1)
            })
        };
        choices.push((field("prompt")?, field("chosen")?, field("rejected")?));
    }
    Ok(choices)
}

/// A bundle folder, or a `steer train-policy` folder holding one under `bundle/`.
fn policy_bundle_dir(path: &Path) -> PathBuf {
    let inner = path.join("bundle");
    if inner.join("manifest.json").is_file() { inner } else { path.to_path_buf() }
}

fn generate(
    bundle: &Path,
    context: Option<&Path>,
    prompt: &str,
    sampling: &SamplingArgs,
    best_of: Option<usize>,
    load: &LoadOptions,
) -> anyhow::Result<()> {
    use std::io::Write;
    // Check the values given on the command line before the bundle loads; the bundle's defaults fill in the rest.
    sampling.params(&steer_runtime::GenerationParams::default()).validate()?;
    let model = steer_runtime::Model::load(policy_bundle_dir(bundle), load).context("loading the bundle")?;
    let defaults = model.generation_defaults().cloned().context("this bundle has no policy (error 310)")?;
    let params = sampling.params(&defaults);
    let choices = match context {
        Some(path) => read_choices(path)?,
        None => Vec::new(),
    };
    let pairs: Vec<steer_runtime::TextPair<'_>> =
        choices.iter().map(|(p, c, r)| steer_runtime::TextPair::new(p, c, r)).collect();
    let profile = model.infer_profile_text(&pairs).context("inferring the profile")?;
    eprintln!("profile from {} choices", pairs.len());
    if let Some(n) = best_of {
        let best = model.generate_best_of_n(prompt, &profile, n, &params)?;
        for (i, (candidate, reward)) in best.candidates.iter().zip(&best.rewards).enumerate() {
            eprintln!("candidate {i}: reward {reward:.3}: {}", candidate.text);
        }
        println!("{}", best.candidates[best.best].text);
        return Ok(());
    }
    let request = steer_runtime::GenerationRequest::new(prompt, &profile);
    let mut stdout = std::io::stdout();
    let out = model.generate_stream(&[request], &params, &mut |event| {
        let _ = write!(stdout, "{}", event.text);
        let _ = stdout.flush();
        std::ops::ControlFlow::Continue(())
    })?;
    println!();
    eprintln!("({} tokens, {:?})", out[0].token_ids.len(), out[0].finish);
    Ok(())
}

/// Time to first token and decoding speed, through ONNX Runtime and candle.
fn bench_policy(
    run: &Path,
    new_tokens: usize,
    repeats: usize,
    load: &LoadOptions,
) -> anyhow::Result<serde_json::Value> {
    use std::time::Instant;
    use steer_trainer::policy::generate::{generate_ids, greedy};
    let (base, policy) = steer_trainer::policy::run::load_policy(run)?;
    let model = steer_runtime::Model::load(policy_bundle_dir(run), &load.clone().intra_op_threads(0))?;
    let prompt = "Tell me about the history of the printing press and why it changed the world.";
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut rows = Vec::new();
    for batch in [1usize, 4] {
        let latent = policy.shape().latent_dim;
        let profile = steer_runtime::Profile::from_vec(vec![0.0; latent])?;
        let requests: Vec<_> = (0..batch).map(|_| steer_runtime::GenerationRequest::new(prompt, &profile)).collect();
        let params = steer_runtime::GenerationParams {
            max_new_tokens: new_tokens,
            temperature: 0.0,
            repetition_penalty: 1.0,
            ..Default::default()
        };
        let (mut ttft, mut rate, mut tokens) = (Vec::new(), Vec::new(), 0);
        for _ in 0..repeats.max(1) {
            let started = Instant::now();
            let mut first = None;
            let out = model.generate_stream(&requests, &params, &mut |_| {
                first.get_or_insert_with(|| started.elapsed().as_secs_f64());
                std::ops::ControlFlow::Continue(())
            })?;
            let total = started.elapsed().as_secs_f64();
            let first = first.unwrap_or(total);
            tokens = out.iter().map(|g| g.token_ids.len()).max().unwrap_or(0);
            ttft.push(first);
            rate.push((batch * tokens.saturating_sub(1)) as f64 / (total - first).max(1e-9));
        }
        rows.push(serde_json::json!({"engine": "onnxruntime", "batch": batch, "prompt_tokens": model.policy().map(|p| p.encode_prompt(prompt).map(|ids| ids.len()).unwrap_or(0)), "new_tokens": tokens, "ttft_ms": 1e3 * median(ttft), "tokens_per_s": median(rate)}));

        let device = policy.model().device().clone();
        let ids = base.chat.encode(prompt)?;
        let prompts = vec![ids; batch];
        let z = candle_core::Tensor::zeros((batch, latent), candle_core::DType::F32, &device)?;
        let step =
            |i: &candle_core::Tensor,
             m: &candle_core::Tensor,
             p: &candle_core::Tensor,
             past: Option<&[steer_trainer::text::llama::KvCache]>| policy.forward_step(i, m, p, past, &z);
        let (mut ttft, mut rate, mut tokens) = (Vec::new(), Vec::new(), 0);
        for _ in 0..repeats.max(1) {
            let started = Instant::now();
            generate_ids(&step, &prompts, &greedy(1), &[base.eos], base.eos, &device)?;
            let first = started.elapsed().as_secs_f64();
            let started = Instant::now();
            let out = generate_ids(&step, &prompts, &greedy(new_tokens), &[base.eos], base.eos, &device)?;
            let total = started.elapsed().as_secs_f64();
            tokens = out.iter().map(Vec::len).max().unwrap_or(0);
            ttft.push(first);
            rate.push((batch * tokens.saturating_sub(1)) as f64 / (total - first).max(1e-9));
        }
        rows.push(serde_json::json!({"engine": "candle", "batch": batch, "prompt_tokens": prompts[0].len(), "new_tokens": tokens, "ttft_ms": 1e3 * median(ttft), "tokens_per_s": median(rate)}));
    }
    Ok(serde_json::json!({"run": run, "greedy": true, "rows": rows}))
}

/// ` ± se` to one decimal, or nothing when there is no standard error (reports written before it was).
fn stderr_suffix(stderr: Option<&f64>) -> String {
    stderr.map_or(String::new(), |se| format!(" ± {se:.1}"))
}

fn print_policy_report(report: &PolicyReport, out: &Path) {
    println!("implicit-reward accuracy % on unseen pairs:");
    for (user_type, by_k) in &report.implicit_reward_accuracy {
        let cells: Vec<String> = by_k.iter().map(|(k, v)| format!("k={k}: {v:5.1}")).collect();
        println!("  {user_type:<12} {}", cells.join("  "));
    }
    println!("mean {:?} of sampled generations:", report.trait_kind);
    for (user_type, by_k) in &report.r#trait {
        let se = report.trait_stderr.get(user_type);
        let cells: Vec<String> =
            by_k.iter().map(|(k, v)| format!("k={k}: {v:5.1}{}", stderr_suffix(se.and_then(|se| se.get(k))))).collect();
        println!("  {user_type:<12} {}", cells.join("  "));
    }
    if let Some(base) = report.base_trait {
        println!("  {:<12} {base:5.1}", "base model");
    }
    println!("win rate vs the base model (NP-BTL judge, same user): {:?}", report.win_rate_vs_base);
    let continuum: Vec<String> = report
        .continuum
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{v:.1}{}", stderr_suffix(report.continuum_stderr.get(i))))
        .collect();
    println!("continuum between two users: {} (monotonic: {})", continuum.join(" / "), report.continuum_monotonic);
    if let Some(training) = &report.training {
        println!(
            "training: best step {} (dev {:.1}%), {:.2} s/step, {:.0} s in all",
            training.best_step, training.best_dev_accuracy, training.seconds_per_step, training.train_seconds
        );
    }
    println!("report: {}", out.join("report.json").display());
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let load = cli.runtime.load_options();
    match cli.command {
        Command::Train { args, out } if args.format.is_some() => {
            let format = args.format.map_or(DataFormat::Builtin, FormatName::format);
            let embedder = match args.embedder {
                EmbedderName::Minilm => EmbedderChoice::Minilm,
                EmbedderName::Smollm2 => EmbedderChoice::Smollm2,
            };
            let mut record = TextRunRecord {
                format,
                train_data: args.data.clone(),
                dev_data: args.dev.clone(),
                embedder,
                train: train_config(&args),
                eval: EvalConfig { n_tasks: args.eval_tasks, ..EvalConfig::default() },
                user_types: Vec::new(),
                skip_malformed: args.skip_malformed,
                models: Vec::new(),
            };
            let report = train_text(&mut record, &load, &out, true).context("steer train failed")?;
            print_outputs(&report, &out);
        }
        Command::Train { args, out } => {
            let record = RunRecord {
                train: train_config(&args),
                eval: EvalConfig { n_tasks: args.eval_tasks, ..EvalConfig::default() },
                kinds: ALL_KINDS.to_vec(),
            };
            let report = train_export_evaluate(&record, &load, &out, true).context("steer train failed")?;
            print_outputs(&report, &out);
        }
        Command::Eval { bundle, format, data, skip_malformed, eval_tasks, out } => {
            let eval = eval_tasks.map(|n| EvalConfig { n_tasks: n, ..EvalConfig::default() });
            let report = match format {
                Some(format) => eval_text(&bundle, format.format(), data.as_deref(), skip_malformed, eval, &load, &out),
                None => evaluate_run(&bundle, eval, &load, &out),
            }
            .context("steer eval failed")?;
            print_outputs(&report, &out);
        }
        Command::TrainPolicy { args, out } => {
            let report = train_policy(&args.config()?, &load, &out, true).context("steer train-policy failed")?;
            print_policy_report(&report, &out);
        }
        Command::Generate { bundle, context, prompt, sampling, best_of } => {
            generate(&bundle, context.as_deref(), &prompt, &sampling, best_of, &load)?;
        }
        Command::BenchPolicy { bundle, new_tokens, repeats } => {
            let report = bench_policy(&bundle, new_tokens, repeats, &load).context("steer bench-policy failed")?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::EvalPolicy { bundle, out } => {
            let ctx = load_run(&bundle, &load, true).context("loading the policy run")?;
            let report = evaluate(&ctx, true).context("steer eval-policy failed")?;
            std::fs::create_dir_all(&out)?;
            std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
            print_policy_report(&report, &out);
        }
        Command::Identifiability { rhos, steps, max_context, eval_tasks, out } => {
            identifiability(&rhos, steps, max_context, eval_tasks, &load, &out)?;
        }
    }
    Ok(())
}

fn identifiability(
    rhos: &[f64],
    steps: Option<usize>,
    max_context: Option<usize>,
    eval_tasks: usize,
    load: &LoadOptions,
    out: &Path,
) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    println!(
        "{:>6} {:>22} {:>8} {:>6} {:>26}",
        "rho", "identification % ± se", "Bayes %", "gap", "conflicting targets % ± se"
    );
    let at_k1 = |map: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, f64>>| {
        map.get("np-btl").and_then(|m| m.get("1")).copied().unwrap_or(f64::NAN)
    };
    for &rho in rhos {
        let defaults = TrainConfig::default();
        let record = RunRecord {
            train: TrainConfig {
                task: TaskSpec::GaussianRho { rho },
                steps: steps.unwrap_or(defaults.steps),
                max_context: max_context.unwrap_or(defaults.max_context),
                ..defaults
            },
            eval: EvalConfig { n_tasks: eval_tasks, ks: vec![0, 1], ..EvalConfig::default() },
            kinds: vec![steer_runtime::ModelKind::NpBtl],
        };
        let dir = out.join(format!("rho={rho}"));
        let report = train_export_evaluate(&record, load, &dir, true).with_context(|| format!("rho = {rho}"))?;
        let (error, se) = (at_k1(&report.identification_error), at_k1(&report.identification_error_stderr));
        let (conflict, conflict_se) = (at_k1(&report.conflict_error), at_k1(&report.conflict_error_stderr));
        let bayes = report.bayes_identification_error.unwrap_or(f64::NAN);
        println!(
            "{rho:>6} {:>22} {bayes:>8.1} {:>6.1} {:>26}",
            format!("{error:.1} ± {se:.1}"),
            error - bayes,
            format!("{conflict:.1} ± {conflict_se:.1}")
        );
        rows.push(serde_json::json!({
            "rho": rho, "identification_error": error, "identification_error_stderr": se,
            "bayes_error": bayes, "gap": error - bayes,
            "conflicting_targets_error": conflict, "conflicting_targets_error_stderr": conflict_se,
            "parity_max_abs_diff": report.parity_max_abs_diff,
            "parity_max_normwise_diff": report.parity_max_normwise_diff,
            "parity_max_probability_diff": report.parity_max_probability_diff, "report": RunDir(dir).report(),
        }));
    }
    let summary = serde_json::json!({
        "task": "gaussian-rho",
        "evaluated_with": "onnxruntime",
        "n_tasks": eval_tasks,
        "metric": "with one context pair: error (%) in identifying the user type from the model's choice on the probe pair a=(1,-1), b=(-1,1) (type h0 prefers a, h1 prefers b); also the error on unseen target pairs where the types disagree, which adds ranking errors on near-tied pairs",
        "rows": rows,
    });
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&summary)?)?;
    println!("report: {}", out.join("report.json").display());
    Ok(())
}

/// The error and its causes joined by ": ", leaving out a cause whose message is already in the text: the library
/// errors name their cause (an OS or runtime error) in their own message, and `{:#}` would print it again.
fn error_chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let message = cause.to_string();
        if text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
