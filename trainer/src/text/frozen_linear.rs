//! A linear map with a frozen weight, whose backward pass computes the input's gradient only.
//!
//! candle's matrix-product backward always computes both operands' gradients. When the weight is frozen (the base
//! decoder under LoRA and FiLM), the weight's gradient is a second product as large as the forward one, computed and
//! thrown away: in an NP-DPO step that is about a third of the top blocks' work and of the 49,152-wide head's.
//! [`frozen_forward`] runs the same product as [`Linear::forward`] and, on the CPU, back-propagates `grad · W` alone.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Module, Shape, Tensor, bail};
use candle_nn::Linear;

/// `linear.forward(x)`, with a backward pass for `x` only when `x` carries a gradient. Other devices and non-f32
/// tensors take candle's own path.
pub fn frozen_forward(linear: &Linear, x: &Tensor) -> candle_core::Result<Tensor> {
    let plain = x.dtype() != DType::F32 || linear.weight().dtype() != DType::F32;
    if !x.track_op() || !x.device().is_cpu() || plain {
        return linear.forward(x);
    }
    let product = x.contiguous()?.apply_op1(FrozenLinear { weight: linear.weight().clone() })?;
    match linear.bias() {
        Some(bias) => product.broadcast_add(bias),
        None => Ok(product),
    }
}

struct FrozenLinear {
    /// `[out, in]`, as in [`Linear`].
    weight: Tensor,
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(values) = storage else { bail!("frozen_forward: the input must be f32") };
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("frozen_forward: the input must be contiguous")
        };
        let (out_dim, in_dim) = self.weight.dims2()?;
        let mut dims = layout.dims().to_vec();
        match dims.last_mut() {
            Some(last) if *last == in_dim => *last = out_dim,
            _ => bail!("frozen_forward: input {:?} does not end in the weight's {in_dim} inputs", layout.dims()),
        }
        let rows = layout.shape().elem_count() / in_dim.max(1);
        let x = Tensor::from_slice(&values[start..end], (rows, in_dim), &Device::Cpu)?;
        let y = x.matmul(&self.weight.t()?)?.flatten_all()?.to_vec1::<f32>()?;
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (out_dim, _) = self.weight.dims2()?;
        let rows = grad.elem_count() / out_dim.max(1);
        let grad_x = grad.contiguous()?.reshape((rows, out_dim))?.matmul(&self.weight)?;
        Ok(Some(grad_x.reshape(x.shape())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// Same output and same input gradient as candle's `Linear`, for a batched input, with and without a bias.
    #[test]
    fn matches_linear_in_value_and_input_gradient() -> candle_core::Result<()> {
        let device = Device::Cpu;
        let weight = Tensor::randn(0f32, 1.0, (7, 5), &device)?;
        let bias = Tensor::randn(0f32, 1.0, 7, &device)?;
        for linear in [Linear::new(weight.clone(), None), Linear::new(weight, Some(bias))] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 5), &device)?)?;
            let weights = Tensor::randn(0f32, 1.0, (2, 3, 7), &device)?;

            let fused = frozen_forward(&linear, x.as_tensor())?;
            let fused_grad = (&fused * &weights)?.sum_all()?.backward()?;
            let plain = linear.forward(x.as_tensor())?;
            let plain_grad = (&plain * &weights)?.sum_all()?.backward()?;

            assert_eq!(fused.dims(), &[2, 3, 7]);
            let value_gap = (fused - plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
            let (Some(a), Some(b)) = (fused_grad.get(&x), plain_grad.get(&x)) else { bail!("no gradient for x") };
            let grad_gap = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(value_gap < 1e-5, "values differ by {value_gap}");
            assert!(grad_gap < 1e-5, "gradients differ by {grad_gap}");
        }
        Ok(())
    }
}
