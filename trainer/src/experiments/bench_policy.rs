//! `steer bench-policy`: the generation speed of a `steer train-policy` folder, through ONNX Runtime (its bundle) and
//! candle (the same weights).

use std::path::Path;
use std::time::Instant;

use steer_runtime::{GenerationParams, LoadOptions};

use crate::error::Result;
use crate::policy::generate::generate_ids;
use crate::policy::policy_bundle_dir;
use crate::policy::run::load_policy;
use crate::text::llama::KvCache;

/// Time to first token and decoding speed, through ONNX Runtime and candle, greedy, for batches of 1 and 4 rows: the
/// JSON report `steer bench-policy` prints. `run` is the folder `steer train-policy` wrote.
pub fn bench_policy(run: &Path, new_tokens: usize, repeats: usize, load: &LoadOptions) -> Result<serde_json::Value> {
    let (base, policy) = load_policy(run)?;
    let model = steer_runtime::Model::load(policy_bundle_dir(run), &load.clone().intra_op_threads(0))?;
    let prompt = "Tell me about the history of the printing press and why it changed the world.";
    // NaN for no repeats (there is always at least one), never a panic.
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
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
        let step = |i: &candle_core::Tensor,
                    m: &candle_core::Tensor,
                    p: &candle_core::Tensor,
                    past: Option<&[KvCache]>| policy.forward_step(i, m, p, past, &z);
        let (mut ttft, mut rate, mut tokens) = (Vec::new(), Vec::new(), 0);
        for _ in 0..repeats.max(1) {
            let started = Instant::now();
            generate_ids(&step, &prompts, &GenerationParams::greedy(1), &[base.eos], base.eos, &device)?;
            let first = started.elapsed().as_secs_f64();
            let started = Instant::now();
            let out =
                generate_ids(&step, &prompts, &GenerationParams::greedy(new_tokens), &[base.eos], base.eos, &device)?;
            let total = started.elapsed().as_secs_f64();
            tokens = out.iter().map(Vec::len).max().unwrap_or(0);
            ttft.push(first);
            rate.push((batch * tokens.saturating_sub(1)) as f64 / (total - first).max(1e-9));
        }
        rows.push(serde_json::json!({"engine": "candle", "batch": batch, "prompt_tokens": prompts[0].len(), "new_tokens": tokens, "ttft_ms": 1e3 * median(ttft), "tokens_per_s": median(rate)}));
    }
    Ok(serde_json::json!({"run": run, "greedy": true, "rows": rows}))
}
