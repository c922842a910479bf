//! The inputs and outputs each graph of a bundle must declare, checked against ONNX Runtime's view of the graph
//! when a model loads, so a wrong bundle fails at load rather than at the first call.

use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

use crate::error::{Error, Result};
use crate::manifest::{Dims, ModelKind, io};
use crate::policy_spec::{PolicySpec, policy_io};

/// One axis of a declared tensor shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dim {
    /// A dynamic axis (batch, k, n), shown by name.
    Dynamic(&'static str),
    /// An axis of exactly this size, with the manifest field it comes from.
    Fixed(usize, &'static str),
    /// An axis of this size that a graph may also declare dynamic (policy graphs from other exporters do).
    Sized(usize, &'static str),
}

/// A tensor a graph must take or produce (float32 unless said otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
struct TensorSpec {
    name: String,
    ty: TensorElementType,
    dims: Vec<Dim>,
}

impl TensorSpec {
    fn new(name: impl Into<String>, dims: impl Into<Vec<Dim>>) -> Self {
        TensorSpec { name: name.into(), ty: TensorElementType::Float32, dims: dims.into() }
    }

    fn int64(name: &'static str, dims: impl Into<Vec<Dim>>) -> Self {
        TensorSpec { name: name.into(), ty: TensorElementType::Int64, dims: dims.into() }
    }

    fn describe(&self) -> String {
        let dims: Vec<String> = self
            .dims
            .iter()
            .map(|dim| match dim {
                Dim::Dynamic(name) => format!("{name} (dynamic)"),
                Dim::Fixed(size, from) | Dim::Sized(size, from) => format!("{size} ({from})"),
            })
            .collect();
        format!("{} [{}]", self.ty, dims.join(", "))
    }

    fn matches(&self, ty: &ValueType) -> bool {
        let ValueType::Tensor { ty, shape, .. } = ty else {
            return false;
        };
        *ty == self.ty
            && shape.len() == self.dims.len()
            && shape.iter().zip(&self.dims).all(|(&found, want)| match want {
                Dim::Dynamic(_) => found < 0,
                Dim::Fixed(size, _) => i64::try_from(*size).is_ok_and(|size| size == found),
                Dim::Sized(size, _) => found < 0 || i64::try_from(*size).is_ok_and(|size| size == found),
            })
    }
}

/// The full signature of one graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GraphSpec {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    /// Whether outputs beyond `outputs` are accepted (they are not read).
    extra_outputs: bool,
}

impl GraphSpec {
    /// `context` `[batch, k, 2d]`, `mask` `[batch, k]` → `z` `[batch, latent_dim]`.
    pub(crate) fn encoder(dims: Dims) -> Self {
        let (batch, k) = (Dim::Dynamic("batch"), Dim::Dynamic("k"));
        GraphSpec {
            inputs: vec![
                TensorSpec::new(io::CONTEXT, [batch, k, Dim::Fixed(2 * dims.embedding_dim, "2 * embedding_dim")]),
                TensorSpec::new(io::MASK, [batch, k]),
            ],
            outputs: vec![TensorSpec::new(io::Z, [batch, latent(dims)])],
            extra_outputs: false,
        }
    }

    /// `options` `[batch, n, d]` (and `z` `[batch, latent_dim]` for np-btl) → `reward` `[batch, n]` (and
    /// `reward_std` `[batch, n]` for dpl).
    pub(crate) fn reward(kind: ModelKind, dims: Dims) -> Self {
        let (batch, n) = (Dim::Dynamic("batch"), Dim::Dynamic("n"));
        let mut inputs =
            vec![TensorSpec::new(io::OPTIONS, [batch, n, Dim::Fixed(dims.embedding_dim, "embedding_dim")])];
        if kind.is_conditioned() {
            inputs.push(TensorSpec::new(io::Z, [batch, latent(dims)]));
        }
        let mut outputs = vec![TensorSpec::new(io::REWARD, [batch, n])];
        if kind == ModelKind::Dpl {
            outputs.push(TensorSpec::new(io::REWARD_STD, [batch, n]));
        }
        GraphSpec { inputs, outputs, extra_outputs: false }
    }

    /// `input_ids`, `attention_mask` (int64 `[batch, seq]`) → `embedding` `[batch, embedding_dim]`.
    pub(crate) fn embedder(embedding_dim: usize) -> Self {
        let (batch, seq) = (Dim::Dynamic("batch"), Dim::Dynamic("seq"));
        GraphSpec {
            inputs: vec![
                TensorSpec::int64(io::INPUT_IDS, [batch, seq]),
                TensorSpec::int64(io::ATTENTION_MASK, [batch, seq]),
            ],
            outputs: vec![TensorSpec::new(io::EMBEDDING, [batch, Dim::Fixed(embedding_dim, "embedding_dim")])],
            extra_outputs: false,
        }
    }

    /// `policy.onnx` ([`crate::policy_spec`]): `input_ids`, `attention_mask`, `position_ids` (int64), the past
    /// key/values of every layer and `z` → `logits` and the present key/values. Batch and sequence axes are dynamic;
    /// sized axes may be fixed at the spec's size or dynamic; extra outputs are allowed.
    pub(crate) fn policy(spec: &PolicySpec, latent_dim: usize) -> Self {
        let (batch, seq, total) = (Dim::Dynamic("batch"), Dim::Dynamic("seq"), Dim::Dynamic("total_seq"));
        let (heads, head_dim) = (Dim::Sized(spec.num_kv_heads, "num_kv_heads"), Dim::Sized(spec.head_dim, "head_dim"));
        let mut inputs = vec![
            TensorSpec::int64(policy_io::INPUT_IDS, [batch, seq]),
            TensorSpec::int64(policy_io::ATTENTION_MASK, [batch, total]),
            TensorSpec::int64(policy_io::POSITION_IDS, [batch, seq]),
            TensorSpec::new(policy_io::Z, [batch, Dim::Sized(latent_dim, "latent_dim")]),
        ];
        let mut outputs =
            vec![TensorSpec::new(policy_io::LOGITS, [batch, seq, Dim::Sized(spec.vocab_size, "vocab_size")])];
        for layer in 0..spec.num_layers {
            let past = [batch, heads, Dim::Dynamic("past_seq"), head_dim];
            let present = [batch, heads, total, head_dim];
            inputs.push(TensorSpec::new(policy_io::past_key(layer), past));
            inputs.push(TensorSpec::new(policy_io::past_value(layer), past));
            outputs.push(TensorSpec::new(policy_io::present_key(layer), present));
            outputs.push(TensorSpec::new(policy_io::present_value(layer), present));
        }
        GraphSpec { inputs, outputs, extra_outputs: true }
    }

    /// Checks the session's declared inputs and outputs: the same names, element types, the same rank, dynamic axes
    /// dynamic and fixed axes of the right size.
    pub(crate) fn check(&self, graph: &str, session: &Session) -> Result<()> {
        let declared = |outlets: &[ort::value::Outlet]| -> Vec<(String, ValueType)> {
            outlets.iter().map(|o| (o.name().to_string(), o.dtype().clone())).collect()
        };
        check_side(graph, "input", &self.inputs, &declared(session.inputs()), false)?;
        check_side(graph, "output", &self.outputs, &declared(session.outputs()), self.extra_outputs)
    }
}

fn latent(dims: Dims) -> Dim {
    Dim::Fixed(dims.latent_dim, "latent_dim")
}

/// Checks one side (inputs or outputs) of a graph against the expected tensors.
fn check_side(
    graph: &str,
    side: &str,
    expected: &[TensorSpec],
    found: &[(String, ValueType)],
    extra_allowed: bool,
) -> Result<()> {
    let mismatch = |tensor: &str, expected: String, found: String| Error::GraphSignature {
        graph: graph.to_string(),
        tensor: tensor.to_string(),
        expected,
        found,
    };
    for spec in expected {
        match found.iter().find(|(name, _)| *name == spec.name) {
            None => {
                let names: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
                return Err(mismatch(
                    &spec.name,
                    format!("an {side} `{}`: {}", spec.name, spec.describe()),
                    format!("no such {side} (the graph's {side}s are [{}])", names.join(", ")),
                ));
            }
            Some((_, ty)) if !spec.matches(ty) => {
                return Err(mismatch(&spec.name, spec.describe(), describe(ty)));
            }
            Some(_) => {}
        }
    }
    let extra = found.iter().find(|(name, _)| !expected.iter().any(|spec| spec.name == *name));
    if let Some((extra, ty)) = extra.filter(|_| !extra_allowed) {
        let names: Vec<&str> = expected.iter().map(|spec| spec.name.as_str()).collect();
        return Err(mismatch(
            extra,
            format!("only the {side}s [{}]", names.join(", ")),
            format!("an extra {side} `{extra}`: {}", describe(ty)),
        ));
    }
    Ok(())
}

/// `f32 [batch (dynamic), 4]`, in the form of [`TensorSpec::describe`].
fn describe(ty: &ValueType) -> String {
    match ty {
        ValueType::Tensor { ty, shape, dimension_symbols } => {
            let dims: Vec<String> = shape
                .iter()
                .enumerate()
                .map(|(i, &size)| match (size < 0, dimension_symbols.get(i).filter(|s| !s.is_empty())) {
                    (true, Some(symbol)) => format!("{symbol} (dynamic)"),
                    (true, None) => "dynamic".to_string(),
                    (false, _) => size.to_string(),
                })
                .collect();
            format!("{ty} [{}]", dims.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use ort::value::{Shape, SymbolicDimensions};

    use super::*;

    fn tensor(ty: TensorElementType, dims: &[i64]) -> ValueType {
        ValueType::Tensor {
            ty,
            shape: Shape::new(dims.iter().copied()),
            dimension_symbols: SymbolicDimensions::new(
                dims.iter().map(|&d| if d < 0 { "batch".into() } else { String::new() }),
            ),
        }
    }

    fn f32_tensor(dims: &[i64]) -> ValueType {
        tensor(TensorElementType::Float32, dims)
    }

    const DIMS: Dims = Dims { embedding_dim: 4, latent_dim: 3 };

    fn named(items: &[(&str, ValueType)]) -> Vec<(String, ValueType)> {
        items.iter().map(|(name, ty)| (name.to_string(), ty.clone())).collect()
    }

    #[test]
    fn a_matching_encoder_passes() {
        let spec = GraphSpec::encoder(DIMS);
        let inputs = named(&[("mask", f32_tensor(&[-1, -1])), ("context", f32_tensor(&[-1, -1, 8]))]);
        check_side("encoder.onnx", "input", &spec.inputs, &inputs, false).unwrap();
        check_side("encoder.onnx", "output", &spec.outputs, &named(&[("z", f32_tensor(&[-1, 3]))]), false).unwrap();
    }

    #[test]
    fn wrong_context_width_names_graph_tensor_expected_and_found() {
        let spec = GraphSpec::encoder(DIMS);
        let inputs = named(&[("context", f32_tensor(&[-1, -1, 6])), ("mask", f32_tensor(&[-1, -1]))]);
        let err = check_side("encoder.onnx", "input", &spec.inputs, &inputs, false).unwrap_err();
        assert_eq!(err.code(), 107);
        assert_eq!(
            err.to_string(),
            "graph encoder.onnx does not match the manifest: tensor `context`: expected \
             f32 [batch (dynamic), k (dynamic), 8 (2 * embedding_dim)], found f32 [batch (dynamic), batch (dynamic), 6]"
        );
    }

    #[test]
    fn fixed_batch_wrong_type_missing_and_extra_tensors_are_rejected() {
        let spec = GraphSpec::reward(ModelKind::Dpl, Dims { embedding_dim: 4, latent_dim: 0 });
        let fixed_batch = named(&[("options", f32_tensor(&[1, -1, 4]))]);
        let float64 = named(&[("options", tensor(TensorElementType::Float64, &[-1, -1, 4]))]);
        let extra_z = named(&[("options", f32_tensor(&[-1, -1, 4])), ("z", f32_tensor(&[-1, 2]))]);
        for (inputs, tensor) in [(fixed_batch, "options"), (float64, "options"), (extra_z, "z")] {
            match check_side("reward.onnx", "input", &spec.inputs, &inputs, false).unwrap_err() {
                Error::GraphSignature { graph, tensor: t, .. } => {
                    assert_eq!(graph, "reward.onnx");
                    assert_eq!(t, tensor);
                }
                other => panic!("{other:?}"),
            }
        }
        let no_std = named(&[("reward", f32_tensor(&[-1, -1]))]);
        match check_side("reward.onnx", "output", &spec.outputs, &no_std, false).unwrap_err() {
            Error::GraphSignature { tensor, found, .. } => {
                assert_eq!(tensor, "reward_std");
                assert!(found.contains("no such output"), "{found}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reward_specs_follow_the_kind() {
        let np = GraphSpec::reward(ModelKind::NpBtl, DIMS);
        assert_eq!(np.inputs.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["options", "z"]);
        assert_eq!(np.outputs.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["reward"]);
        let btl = GraphSpec::reward(ModelKind::Btl, Dims { embedding_dim: 4, latent_dim: 0 });
        assert_eq!(btl.inputs.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["options"]);
        let dpl = GraphSpec::reward(ModelKind::Dpl, Dims { embedding_dim: 4, latent_dim: 0 });
        assert_eq!(dpl.outputs.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["reward", "reward_std"]);
    }
}
