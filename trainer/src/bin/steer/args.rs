//! The command line: clap's arguments, and how they become the library's configurations.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use steer_runtime::{ExecutionProvider, LoadOptions};
use steer_trainer::policy::PolicyShape;
use steer_trainer::policy::base::BaseModel;
use steer_trainer::policy::dpo::DpoConfig;
use steer_trainer::policy::run::{PolicyDataSource, PolicyRunConfig, TraitKind};
use steer_trainer::tasks::TaskSpec;
use steer_trainer::text_run::DataFormat;
use steer_trainer::train::TrainConfig;

#[derive(Parser)]
#[command(
    name = "steer",
    version,
    about = "Few-shot steerable reward models: train, export to ONNX, evaluate through ONNX Runtime"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    #[command(flatten)]
    pub(crate) runtime: RuntimeArgs,
}

/// How bundles are run through ONNX Runtime.
#[derive(clap::Args)]
pub(crate) struct RuntimeArgs {
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
    pub(crate) fn load_options(&self) -> LoadOptions {
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
pub(crate) enum TaskName {
    /// The paper's 1-D task with two user types.
    Synthetic1d,
    /// Gaussian-ρ identifiability task (set --rho).
    Gaussian,
}

/// Text data formats (`--format`).
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum FormatName {
    /// The built-in text task: casual and formal users (generated, no file).
    Builtin,
    /// DSP: a JSON array of queries answered for each domain (`../shared/data/dsp`), user type = domain.
    Dsp,
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
    pub(crate) fn format(self) -> DataFormat {
        match self {
            FormatName::Builtin => DataFormat::Builtin,
            FormatName::Dsp => DataFormat::Dsp,
            FormatName::HhRelabeled => DataFormat::HhRelabeled,
            FormatName::Jsonl => DataFormat::Jsonl,
            FormatName::UltrafeedbackHh => DataFormat::UltrafeedbackHh,
            FormatName::UltrafeedbackHht => DataFormat::UltrafeedbackHht,
        }
    }
}

/// Text embedders (`--embedder`).
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum EmbedderName {
    /// all-MiniLM-L6-v2: BERT, 384 values, mean pooling.
    Minilm,
    /// SmolLM2-135M-Instruct: Llama, 576 values, last token's hidden state.
    Smollm2,
}

#[derive(clap::Args)]
pub(crate) struct TrainArgs {
    /// Synthetic task to train on (ignored with --format).
    #[arg(long, value_enum, default_value = "synthetic1d")]
    pub(crate) task: TaskName,
    /// Train on text instead: the data format. Trains NP-BTL, BTL-mixed and a BTL oracle per user type.
    #[arg(long, value_enum)]
    pub(crate) format: Option<FormatName>,
    /// Training file (text formats other than builtin).
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Development file, for model selection and the run's report (text formats other than builtin).
    #[arg(long)]
    pub(crate) dev: Option<PathBuf>,
    /// Text embedder.
    #[arg(long, value_enum, default_value = "minilm")]
    pub(crate) embedder: EmbedderName,
    /// Skip data lines that are not JSON objects (their line numbers are printed) instead of failing.
    #[arg(long)]
    pub(crate) skip_malformed: bool,
    /// Correlation ρ for the Gaussian task.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub(crate) rho: f64,
    /// NP-BTL optimizer steps.
    #[arg(long)]
    pub(crate) steps: Option<usize>,
    /// BTL/DPL optimizer steps.
    #[arg(long)]
    pub(crate) baseline_steps: Option<usize>,
    /// Hidden size H.
    #[arg(long)]
    pub(crate) hidden: Option<usize>,
    /// AdamW learning rate.
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    /// AdamW weight decay.
    #[arg(long)]
    pub(crate) weight_decay: Option<f64>,
    /// Validate (and keep the best weights) every this many steps.
    #[arg(long)]
    pub(crate) eval_every: Option<usize>,
    /// Seed for data, weights and sampling.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Largest context size in training (k ~ U{0..max}); at least 10 keeps every evaluated k in range.
    #[arg(long)]
    pub(crate) max_context: Option<usize>,
    /// Held-out users per k in the evaluation.
    #[arg(long, default_value_t = 2000)]
    pub(crate) eval_tasks: usize,
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
pub(crate) struct PolicyArgs {
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
    pub(crate) fn config(&self) -> anyhow::Result<PolicyRunConfig> {
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
pub(crate) struct SamplingArgs {
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
    pub(crate) fn params(&self, defaults: &steer_runtime::GenerationParams) -> steer_runtime::GenerationParams {
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
pub(crate) enum Command {
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
    /// Count a data file: pairs per user type and distinct prompts; for hh-relabeled, also how often its labels
    /// agree with HH-RLHF's original human labels (overall, per subset, per user type).
    DataStats {
        /// The data format.
        #[arg(long, value_enum)]
        format: FormatName,
        /// The file (not needed for --format builtin, which counts its generated training split).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Skip data lines that are not JSON objects (their line numbers are printed) instead of failing.
        #[arg(long)]
        skip_malformed: bool,
        /// Print the figures as one JSON object.
        #[arg(long)]
        json: bool,
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

pub(crate) fn train_config(args: &TrainArgs) -> TrainConfig {
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
