//! The evaluation of a policy run ([`evaluate`]): implicit-reward accuracy, the trait of sampled generations by
//! user type and k, the win rate against the base model and the z continuum; and the check that greedy generation
//! through the exported bundle equals candle's ([`greedy_parity`]). Generations are sampled with the runtime's
//! sampler ([`steer_runtime::sampling`]), as a shipped bundle samples them.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use steer_runtime::{GenerationParams, GenerationRequest, LoadOptions, Model, Profile, TextOption};

use crate::error::Result;
use crate::eval::mean_and_stderr;
use crate::policy::dpo::{DpoMetrics, EVAL_KS, implicit_reward_accuracy, profiles};
use crate::policy::generate::{generate_ids, nucleus};
use crate::policy::run::{PolicyContext, TraitKind};
use crate::text::llama::KvCache;

/// `report.json` of a policy run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyReport {
    /// `{user type: {k: %}}` on the evaluation pairs.
    pub implicit_reward_accuracy: BTreeMap<String, BTreeMap<usize, f64>>,
    /// `{user type: {k: mean trait of sampled generations}}`.
    pub r#trait: BTreeMap<String, BTreeMap<usize, f64>>,
    /// The standard error of each `trait` mean over its prompts.
    #[serde(default)]
    pub trait_stderr: BTreeMap<String, BTreeMap<usize, f64>>,
    /// The mean trait of the base model's sampled answers to the same prompts (the unsteered baseline).
    #[serde(default)]
    pub base_trait: Option<f64>,
    /// What the trait is.
    pub trait_kind: TraitKind,
    /// `{user type: %}`: how often the steered answer (k = 10) beats the base model's answer, judged by NP-BTL
    /// conditioned on the same user (ties count half).
    pub win_rate_vs_base: BTreeMap<String, f64>,
    /// The trait of generations along `z = (1 − t)·z_first + t·z_second` between two users of the first two types,
    /// for t = 0, 0.25, 0.5, 0.75, 1.
    pub continuum: Vec<f64>,
    /// The standard error of each `continuum` mean over its prompts.
    #[serde(default)]
    pub continuum_stderr: Vec<f64>,
    /// Whether `continuum` moves monotonically from the first type's end to the second's.
    pub continuum_monotonic: bool,
    /// Whether greedy generation through ONNX Runtime equals candle token for token (absent until checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greedy_parity: Option<bool>,
    /// Training measurements.
    pub training: Option<DpoMetrics>,
    /// NP-BTL's accuracy at k = 10 on the evaluation pairs (percent, all users), which bounds how well z identifies a
    /// user.
    pub np_btl_accuracy_k10: Option<f64>,
    /// Wall times of the run's stages, in seconds.
    pub seconds: BTreeMap<String, f64>,
}

/// Whether greedy generation through the exported bundle (ONNX Runtime) equals candle token for token, on the
/// evaluation prompts with one user of each type (k = 10) in one batch.
pub fn greedy_parity(ctx: &PolicyContext, bundle: &Path, load: &LoadOptions) -> Result<bool> {
    let model = Model::load(bundle, load)?;
    let [train, _, eval] = &ctx.splits;
    let device = ctx.policy.model().device().clone();
    let prompts = eval.prompts(ctx.config.trait_prompts.max(2));
    let mut rng = StdRng::seed_from_u64(5);
    let contexts: Vec<(&str, Vec<usize>)> = prompts
        .iter()
        .enumerate()
        .map(|(row, _)| {
            let user_type = train.user_types[row % train.user_types.len()].as_str();
            let mut pool = train.judged_by(user_type);
            pool.shuffle(&mut rng);
            pool.truncate(10);
            (user_type, pool)
        })
        .collect();
    let z = profiles(&ctx.np_btl.encoder, train, &contexts, &device)?;
    let max_new_tokens = ctx.config.trait_max_new_tokens;
    let prompt_ids = prompts.iter().map(|p| ctx.base.chat.encode(p)).collect::<steer_runtime::Result<Vec<_>>>()?;
    let step =
        |i: &Tensor, m: &Tensor, p: &Tensor, past: Option<&[KvCache]>| ctx.policy.forward_step(i, m, p, past, &z);
    let params = GenerationParams::greedy(max_new_tokens);
    let candle = generate_ids(&step, &prompt_ids, &params, &[ctx.base.eos], ctx.base.eos, &device)?;
    let z_rows = z.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
    let profiles = z_rows.into_iter().map(Profile::from_vec).collect::<steer_runtime::Result<Vec<_>>>()?;
    let requests: Vec<GenerationRequest<'_>> =
        prompts.iter().zip(&profiles).map(|(p, z)| GenerationRequest::new(p, z)).collect();
    let onnx = model.generate(&requests, &params)?;
    let same = candle.iter().zip(&onnx).all(|(c, o)| c == &o.token_ids);
    if !same {
        for (row, (c, o)) in candle.iter().zip(&onnx).enumerate() {
            if c != &o.token_ids {
                eprintln!("greedy parity: row {row} differs: candle {c:?} vs ONNX Runtime {:?}", o.token_ids);
            }
        }
    }
    Ok(same)
}

/// The evaluation of the issue: implicit-reward accuracy by type and k, the trait of generations by type and k, the
/// win rate against the base model, and the z continuum.
pub fn evaluate(ctx: &PolicyContext, progress: bool) -> Result<PolicyReport> {
    let cfg = &ctx.config;
    let [train, _, eval] = &ctx.splits;
    let encoder = &ctx.np_btl.encoder;
    let accuracy = implicit_reward_accuracy(
        &ctx.policy,
        encoder,
        train,
        eval,
        &EVAL_KS,
        cfg.eval_draws,
        cfg.dpo.seed,
        cfg.dpo.beta,
    )?;
    if progress {
        eprintln!("implicit-reward accuracy: {accuracy:?}");
    }
    let device = ctx.policy.model().device().clone();
    let prompts = eval.prompts(cfg.trait_prompts.max(1));
    let prompt_ids = prompts.iter().map(|p| ctx.base.chat.encode(p)).collect::<steer_runtime::Result<Vec<_>>>()?;
    let params = nucleus(cfg.trait_max_new_tokens, 0.7, 0.95, 7);
    let generate_with = |z: Option<&Tensor>| -> Result<Vec<String>> {
        let ids = match z {
            Some(z) => {
                let step = |i: &Tensor, m: &Tensor, p: &Tensor, past: Option<&[KvCache]>| {
                    ctx.policy.forward_step(i, m, p, past, z)
                };
                generate_ids(&step, &prompt_ids, &params, &[ctx.base.eos], ctx.base.eos, &device)?
            }
            None => {
                let step = |i: &Tensor, m: &Tensor, p: &Tensor, past: Option<&[KvCache]>| {
                    ctx.base.model.forward_step(i, m, p, past, &[])
                };
                generate_ids(&step, &prompt_ids, &params, &[ctx.base.eos], ctx.base.eos, &device)?
            }
        };
        ids.iter().map(|ids| Ok(ctx.base.chat.decode(ids)?.trim().to_string())).collect()
    };
    // The mean trait of some answers and its standard error over them.
    let trait_of =
        |texts: &[String]| mean_and_stderr(&texts.iter().map(|t| cfg.trait_kind.measure(t)).collect::<Vec<_>>());
    // One context per prompt row, each drawn from the type's training choices.
    let mut rng = StdRng::seed_from_u64(cfg.dpo.seed.wrapping_add(99));
    let mut z_for = |user_type: &str, k: usize| -> Result<Tensor> {
        let pool = train.judged_by(user_type);
        let contexts: Vec<(&str, Vec<usize>)> = (0..prompt_ids.len())
            .map(|_| {
                let mut c = pool.clone();
                c.shuffle(&mut rng);
                c.truncate(k);
                (user_type, c)
            })
            .collect();
        profiles(encoder, train, &contexts, &device)
    };
    let mut traits = BTreeMap::new();
    let mut trait_stderr = BTreeMap::new();
    let mut win_rate = BTreeMap::new();
    let base_texts = generate_with(None)?;
    let mut z_at_10 = Vec::new();
    for user_type in &eval.user_types {
        let (mut by_k, mut se_by_k) = (BTreeMap::new(), BTreeMap::new());
        for &k in &EVAL_KS {
            let z = z_for(user_type, k)?;
            let texts = generate_with(Some(&z))?;
            let (mean, se) = trait_of(&texts);
            by_k.insert(k, mean);
            se_by_k.insert(k, se);
            if k == 10 {
                win_rate.insert(user_type.clone(), win_rate_of(ctx, &prompts, &texts, &base_texts, &z)?);
                z_at_10.push(z);
            }
        }
        if progress {
            eprintln!("trait of {user_type}: {by_k:?} (base {:.1})", trait_of(&base_texts).0);
        }
        traits.insert(user_type.clone(), by_k);
        trait_stderr.insert(user_type.clone(), se_by_k);
    }
    let (mut continuum, mut continuum_stderr) = (Vec::new(), Vec::new());
    if let [first, second, ..] = z_at_10.as_slice() {
        for t in [0.0, 0.25, 0.5, 0.75, 1.0] {
            let z = ((first * (1.0 - t))? + (second * t)?)?;
            let (mean, se) = trait_of(&generate_with(Some(&z))?);
            continuum.push(mean);
            continuum_stderr.push(se);
        }
    }
    let rising = continuum.windows(2).all(|w| w[1] >= w[0]);
    let falling = continuum.windows(2).all(|w| w[1] <= w[0]);
    let expected_rising = continuum.last() >= continuum.first();
    Ok(PolicyReport {
        implicit_reward_accuracy: accuracy,
        r#trait: traits,
        trait_stderr,
        base_trait: Some(trait_of(&base_texts).0),
        trait_kind: cfg.trait_kind,
        win_rate_vs_base: win_rate,
        continuum_monotonic: !continuum.is_empty() && if expected_rising { rising } else { falling },
        continuum,
        continuum_stderr,
        greedy_parity: None,
        training: None,
        np_btl_accuracy_k10: None,
        seconds: BTreeMap::new(),
    })
}

/// How often (percent, ties half) NP-BTL conditioned on row `i`'s z prefers `steered[i]` to `base[i]`.
fn win_rate_of(ctx: &PolicyContext, prompts: &[&str], steered: &[String], base: &[String], z: &Tensor) -> Result<f64> {
    let options: Vec<TextOption<'_>> = prompts
        .iter()
        .zip(steered.iter().zip(base))
        .flat_map(|(p, (s, b))| [TextOption::new(p, s), TextOption::new(p, b)])
        .collect();
    let embeddings = ctx.embedder.embed(&options)?;
    let d = embeddings.ncols();
    let values: Vec<f32> = embeddings.iter().copied().collect();
    let options = Tensor::from_vec(values, (prompts.len(), 2, d), &Device::Cpu)?;
    let rewards = ctx.np_btl.reward(&options, &z.to_device(&Device::Cpu)?.to_dtype(DType::F32)?)?.to_vec2::<f32>()?;
    let wins: f64 = rewards
        .iter()
        .map(|r| {
            if r[0] > r[1] {
                1.0
            } else if r[0] == r[1] {
                0.5
            } else {
                0.0
            }
        })
        .sum();
    Ok(100.0 * wins / prompts.len().max(1) as f64)
}
