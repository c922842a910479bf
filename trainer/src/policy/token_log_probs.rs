//! `log softmax(logits)[target]` per row, fused, for the DPO step.
//!
//! The generic path (`log_softmax`, then `gather`) materialises several `[N, vocab]` tensors forward and more in
//! the backward pass. With SmolLM2's 49,152-token vocabulary and about 2,000 response positions per step, each is
//! 400 MB, and these passes cost more than the head's matrix product. Here the forward pass reads the logits once
//! per row (max and log-sum-exp) and the backward pass writes the gradient `g · (onehot − softmax)` in one pass, both
//! split over rows in parallel. Other devices take the generic path.

use candle_core::{CpuStorage, CustomOp1, D, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

use crate::error::Result;

/// `log softmax(logits[n])[targets[n]]` for `logits` `[N, V]` (f32), `[N]`, differentiable with respect to `logits`.
pub fn token_log_probs(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    if !logits.device().is_cpu() {
        let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
        let targets = Tensor::from_slice(targets, (targets.len(), 1), logits.device())?;
        return Ok(log_probs.gather(&targets, 1)?.squeeze(1)?);
    }
    Ok(logits.contiguous()?.apply_op1(TokenLogProbs { targets: targets.to_vec() })?)
}

/// The rows of a contiguous `[N, V]` f32 storage, checked against the targets.
fn rows<'a>(storage: &'a CpuStorage, layout: &Layout, targets: &[u32]) -> candle_core::Result<(&'a [f32], usize)> {
    let CpuStorage::F32(values) = storage else { bail!("token_log_probs: logits must be f32") };
    let Some((start, end)) = layout.contiguous_offsets() else { bail!("token_log_probs: logits must be contiguous") };
    let (n, vocab) = layout.shape().dims2()?;
    if n != targets.len() {
        bail!("token_log_probs: {n} rows of logits but {} targets", targets.len())
    }
    if let Some(&bad) = targets.iter().find(|&&t| t as usize >= vocab) {
        bail!("token_log_probs: target {bad} outside the vocabulary of {vocab}")
    }
    Ok((&values[start..end], vocab))
}

/// `ln` of the smallest normal f32. Below it floats are subnormal, and x86 CPUs take a slow microcode path for each
/// operation that reads or writes one. A DPO step whose logits spread widely (a policy far from the reference)
/// turned most of the softmax into subnormals and ran twice as slow, the head's backward product included.
/// Terms smaller than this are flushed to 0, a change below f32's resolution for any sum they enter.
const LN_MIN_NORMAL: f32 = -87.33655;

/// `log Σ_v exp(row[v])`, shifted by the row's maximum for stability.
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| x - max).filter(|&d| d > LN_MIN_NORMAL).map(f32::exp).sum();
    max + sum.ln()
}

struct TokenLogProbs {
    targets: Vec<u32>,
}

impl CustomOp1 for TokenLogProbs {
    fn name(&self) -> &'static str {
        "token-log-probs"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (values, vocab) = rows(storage, layout, &self.targets)?;
        let out: Vec<f32> = values
            .par_chunks(vocab)
            .zip(self.targets.par_iter())
            .map(|(row, &target)| row[target as usize] - log_sum_exp(row))
            .collect();
        let n = out.len();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    fn bwd(&self, logits: &Tensor, log_probs: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let gradient =
            TokenLogProbsGrad { targets: self.targets.clone(), log_probs: log_probs.to_vec1()?, grad: grad.to_vec1()? };
        Ok(Some(logits.detach().apply_op1_no_bwd(&gradient)?))
    }
}

/// The gradient of [`TokenLogProbs`] with respect to the logits: `grad[n] · (onehot(target[n]) − softmax(row n))`.
struct TokenLogProbsGrad {
    targets: Vec<u32>,
    log_probs: Vec<f32>,
    grad: Vec<f32>,
}

impl CustomOp1 for TokenLogProbsGrad {
    fn name(&self) -> &'static str {
        "token-log-probs-grad"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (values, vocab) = rows(storage, layout, &self.targets)?;
        let mut out = vec![0f32; values.len()];
        out.par_chunks_mut(vocab).zip(values.par_chunks(vocab)).enumerate().for_each(|(n, (out, row))| {
            let target = self.targets[n] as usize;
            // log Σ exp = row[target] − log p(target), so the forward pass's sum is not recomputed.
            let lse = row[target] - self.log_probs[n];
            let g = self.grad[n];
            // g · exp(d) is subnormal or 0 below this d (with g = 0, every term is 0).
            let cutoff = LN_MIN_NORMAL - g.abs().ln();
            for (o, &x) in out.iter_mut().zip(row) {
                let d = x - lse;
                *o = if d > cutoff { -g * d.exp() } else { 0.0 };
            }
            out[target] += g;
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The fused op and the generic path agree in value and in gradient.
    #[test]
    fn matches_log_softmax_and_gather() -> Result<()> {
        let device = Device::Cpu;
        let logits = Var::from_tensor(&(Tensor::randn(0f32, 3.0, (5, 37), &device)?))?;
        let targets = [0u32, 36, 7, 7, 20];
        let weights = Tensor::new(&[1f32, -2.0, 0.5, 3.0, 0.0], &device)?;

        let fused = token_log_probs(logits.as_tensor(), &targets)?;
        let fused_grad = (&fused * &weights)?.sum_all()?.backward()?;
        let index = Tensor::new(&targets, &device)?.unsqueeze(1)?;
        let generic = candle_nn::ops::log_softmax(logits.as_tensor(), D::Minus1)?.gather(&index, 1)?.squeeze(1)?;
        let generic_grad = (&generic * &weights)?.sum_all()?.backward()?;

        let value_gap = (fused - generic)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let (Some(a), Some(b)) = (fused_grad.get(&logits), generic_grad.get(&logits)) else {
            return Err(candle_core::Error::Msg("no gradient for the logits".into()).into());
        };
        let grad_gap = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(value_gap < 1e-5, "values differ by {value_gap}");
        assert!(grad_gap < 1e-5, "gradients differ by {grad_gap}");
        Ok(())
    }

    /// A target outside the vocabulary is an error, not a panic.
    #[test]
    fn rejects_target_outside_vocabulary() -> Result<()> {
        let logits = Tensor::zeros((2, 4), candle_core::DType::F32, &Device::Cpu)?;
        let err = token_log_probs(&logits, &[1, 4]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("target 4 outside the vocabulary of 4"), "{err}");
        Ok(())
    }
}
