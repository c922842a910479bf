//! Checking the caller's arrays before they reach ONNX Runtime, and packing contexts into padded batches.

use ndarray::{Array2, Array3, ArrayView, ArrayView2, Axis as NdAxis, Dimension, Slice};

use crate::error::{Error, Result};
use crate::profile::Context;

/// One axis of an expected shape: a named free size or a fixed size.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Axis {
    /// Any size, shown by name (`k`, `n`, `batch`).
    Any(&'static str),
    /// Exactly this size.
    Is(usize),
}

/// Checks `view`'s shape against `expected`; the error shows both, e.g. `[n, 4]` vs `[3, 5]`.
pub(crate) fn check_shape<D: Dimension>(input: &str, view: &ArrayView<'_, f32, D>, expected: &[Axis]) -> Result<()> {
    let shape = view.shape();
    let matches = shape.len() == expected.len()
        && shape.iter().zip(expected).all(|(&size, axis)| match axis {
            Axis::Any(_) => true,
            Axis::Is(want) => size == *want,
        });
    if matches {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            input: input.into(),
            expected: format_expected(expected),
            found: format!("{shape:?}"),
        })
    }
}

fn format_expected(expected: &[Axis]) -> String {
    let axes: Vec<String> = expected
        .iter()
        .map(|axis| match axis {
            Axis::Any(name) => (*name).to_string(),
            Axis::Is(size) => size.to_string(),
        })
        .collect();
    format!("[{}]", axes.join(", "))
}

/// Fails on the first NaN or infinity (in logical, row-major order) and names its index.
pub(crate) fn check_finite<D: Dimension>(input: &str, view: &ArrayView<'_, f32, D>) -> Result<()> {
    match first_where(view, |v| !v.is_finite()) {
        None => Ok(()),
        Some((index, value)) => Err(Error::NonFinite { input: input.into(), index, value }),
    }
}

/// Fails on the first mask value that is not exactly 0.0 or 1.0.
pub(crate) fn check_mask(mask: &ArrayView2<'_, f32>) -> Result<()> {
    match first_where(mask, |v| v != 0.0 && v != 1.0) {
        None => Ok(()),
        Some((index, value)) => Err(Error::InvalidMask { index, value }),
    }
}

/// Fails when an axis that must hold at least one element is empty.
pub(crate) fn check_not_empty(input: &str, len: usize, expected: &str) -> Result<()> {
    if len == 0 { Err(Error::EmptyInput { input: input.into(), expected: expected.into() }) } else { Ok(()) }
}

/// The multi-index and value of the first element (row-major) matching `bad`.
fn first_where<D: Dimension>(view: &ArrayView<'_, f32, D>, bad: impl Fn(f32) -> bool) -> Option<(Vec<usize>, f32)> {
    let (position, &value) = view.iter().enumerate().find(|&(_, &v)| bad(v))?;
    let shape = view.shape();
    let mut index = vec![0; shape.len()];
    let mut rest = position;
    for (slot, &size) in index.iter_mut().zip(shape).rev() {
        *slot = rest % size;
        rest /= size;
    }
    Some((index, value))
}

/// Checks one user's context: `chosen` and `rejected` are both `[k, d]` with the same `k`, and finite.
pub(crate) fn check_context(name: &str, context: &Context<'_>, embedding_dim: usize) -> Result<()> {
    let chosen_name = format!("{name}chosen");
    let rejected_name = format!("{name}rejected");
    check_shape(&chosen_name, &context.chosen, &[Axis::Any("k"), Axis::Is(embedding_dim)])?;
    let k = context.chosen.nrows();
    check_shape(&rejected_name, &context.rejected, &[Axis::Is(k), Axis::Is(embedding_dim)])?;
    check_finite(&chosen_name, &context.chosen)?;
    check_finite(&rejected_name, &context.rejected)
}

/// Packs contexts (already checked) into the encoder's padded inputs: `context` `[B, K, 2d]` with rows
/// `[chosen ‖ rejected]` and `mask` `[B, K]`, where `K = max(1, max k)`. An empty context becomes one padding row
/// (mask 0); the encoder ignores padding, so this yields the population prior, as K = 0 would.
pub(crate) fn pack_contexts(contexts: &[Context<'_>], embedding_dim: usize) -> (Array3<f32>, Array2<f32>) {
    let d = embedding_dim;
    let k_max = contexts.iter().map(|c| c.chosen.nrows()).max().unwrap_or(0).max(1);
    let mut context = Array3::zeros((contexts.len(), k_max, 2 * d));
    let mut mask = Array2::zeros((contexts.len(), k_max));
    for (b, user) in contexts.iter().enumerate() {
        let k = user.chosen.nrows();
        // Axis slicing instead of `s![]`, whose expansion holds `unsafe` (the crate forbids it).
        let mut slots = context.index_axis_mut(NdAxis(0), b);
        let mut slots = slots.slice_axis_mut(NdAxis(0), Slice::from(..k));
        slots.slice_axis_mut(NdAxis(1), Slice::from(..d)).assign(&user.chosen);
        slots.slice_axis_mut(NdAxis(1), Slice::from(d..)).assign(&user.rejected);
        mask.index_axis_mut(NdAxis(0), b).slice_axis_mut(NdAxis(0), Slice::from(..k)).fill(1.0);
    }
    (context, mask)
}

#[cfg(test)]
mod tests {
    use ndarray::{Array3, array};

    use super::*;

    #[test]
    fn shape_error_shows_expected_and_found() {
        let a = Array2::<f32>::zeros((3, 5));
        let err = check_shape("options", &a.view(), &[Axis::Any("n"), Axis::Is(4)]).unwrap_err();
        assert_eq!(err.code(), 301);
        assert_eq!(err.to_string(), "input `options` has shape [3, 5], expected [n, 4]");
        let rank = check_shape("options", &a.view(), &[Axis::Any("batch"), Axis::Any("n"), Axis::Is(5)]).unwrap_err();
        assert_eq!(rank.code(), 301);
    }

    #[test]
    fn first_non_finite_index_is_reported_in_logical_order() {
        let mut a = Array3::<f32>::zeros((2, 3, 4));
        a[[1, 2, 3]] = f32::INFINITY;
        a[[1, 0, 2]] = f32::NAN;
        match check_finite("context", &a.view()).unwrap_err() {
            Error::NonFinite { input, index, value } => {
                assert_eq!(input, "context");
                assert_eq!(index, vec![1, 0, 2]);
                assert!(value.is_nan());
            }
            other => panic!("{other:?}"),
        }
        // A transposed (non-contiguous) view reports indices of the view, not of memory.
        let t = a.view().reversed_axes();
        match check_finite("t", &t).unwrap_err() {
            Error::NonFinite { index, .. } => assert_eq!(index, vec![2, 0, 1]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mask_must_be_zero_or_one() {
        let ok = array![[1.0f32, 1.0, 0.0]];
        check_mask(&ok.view()).unwrap();
        let bad = array![[1.0f32, 0.5, 0.0]];
        let err = check_mask(&bad.view()).unwrap_err();
        assert_eq!(err.code(), 304);
        assert!(matches!(err, Error::InvalidMask { ref index, value } if index == &[0, 1] && value == 0.5));
    }

    #[test]
    fn contexts_are_packed_with_padding_and_mask() {
        let chosen = array![[1.0f32, 2.0], [3.0, 4.0]];
        let rejected = array![[5.0f32, 6.0], [7.0, 8.0]];
        let empty = Array2::<f32>::zeros((0, 2));
        let users = [Context::new(chosen.view(), rejected.view()), Context::new(empty.view(), empty.view())];
        let (context, mask) = pack_contexts(&users, 2);
        assert_eq!(context.shape(), &[2, 2, 4]);
        assert_eq!(context.index_axis(NdAxis(0), 0).index_axis_move(NdAxis(0), 1), array![3.0f32, 4.0, 7.0, 8.0]);
        assert_eq!(mask, array![[1.0f32, 1.0], [0.0, 0.0]]);
        assert!(context.index_axis(NdAxis(0), 1).iter().all(|&v| v == 0.0));

        // Only empty contexts: one padding row, never a zero-sized K axis.
        let (context, mask) = pack_contexts(&users[1..], 2);
        assert_eq!(context.shape(), &[1, 1, 4]);
        assert_eq!(mask, array![[0.0f32]]);
    }

    #[test]
    fn context_rows_must_agree() {
        let chosen = Array2::<f32>::zeros((2, 3));
        let rejected = Array2::<f32>::zeros((1, 3));
        let err = check_context("", &Context::new(chosen.view(), rejected.view()), 3).unwrap_err();
        assert_eq!(err.to_string(), "input `rejected` has shape [1, 3], expected [2, 3]");
        let err = check_context("contexts[4].", &Context::new(chosen.view(), chosen.view()), 4).unwrap_err();
        assert_eq!(err.to_string(), "input `contexts[4].chosen` has shape [2, 3], expected [k, 4]");
    }
}
