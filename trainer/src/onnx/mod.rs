//! Our own ONNX writer: prost message types and a small graph builder that turns candle layers into
//! standard ONNX operators (opset 17).

pub mod proto;

use std::io::Write;
use std::path::Path;

use candle_core::Tensor;
use candle_nn::{Embedding, LayerNorm, Linear, RmsNorm};
use prost::Message;

use crate::error::{Error, Result};
use crate::model::layers::{MASKED_LOGIT, MaskedSelfAttention, Mlp};
use proto::*;

/// The opset every exported graph uses.
pub const OPSET: i64 = 17;
/// The IR version matching [`OPSET`].
pub const IR_VERSION: i64 = 8;

/// A tensor dimension in a graph signature.
#[derive(Debug, Clone)]
pub enum Dim {
    /// Fixed size.
    Fixed(usize),
    /// Dynamic size with a symbolic name (e.g. `batch`).
    Dynamic(&'static str),
}

/// Builds one ONNX graph node by node.
pub struct GraphBuilder {
    name: String,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    next_id: usize,
}

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    value_info_typed(name, dims, data_type::FLOAT)
}

fn value_info_typed(name: &str, dims: &[Dim], elem_type: i32) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => DimensionValue::DimValue(*n as i64),
                Dim::Dynamic(s) => DimensionValue::DimParam((*s).to_string()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto { elem_type, shape: Some(TensorShapeProto { dim }) }),
        }),
    }
}

/// An integer-list attribute.
pub fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), ints: values.to_vec(), r#type: attribute_type::INTS, ..Default::default() }
}

/// A float attribute.
pub fn attr_float(name: &str, value: f32) -> AttributeProto {
    AttributeProto { name: name.into(), f: value, r#type: attribute_type::FLOAT, ..Default::default() }
}

/// An integer attribute.
pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i: value, r#type: attribute_type::INT, ..Default::default() }
}

impl GraphBuilder {
    /// An empty graph called `name`.
    pub fn new(name: &str) -> Self {
        GraphBuilder {
            name: name.to_string(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            next_id: 0,
        }
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.next_id += 1;
        format!("{hint}_{}", self.next_id)
    }

    /// Declares a float graph input and returns its name.
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> String {
        self.inputs.push(value_info(name, dims));
        name.to_string()
    }

    /// Declares a graph input whose elements are `elem_type` (a [`data_type`] value, e.g. `data_type::INT64`) and
    /// returns its name.
    pub fn input_typed(&mut self, name: &str, dims: &[Dim], elem_type: i32) -> String {
        self.inputs.push(value_info_typed(name, dims, elem_type));
        name.to_string()
    }

    /// Declares `value` as the float graph output `name`.
    pub fn output(&mut self, value: &str, name: &str, dims: &[Dim]) {
        self.nodes.push(NodeProto {
            input: vec![value.to_string()],
            output: vec![name.to_string()],
            name: format!("output_{name}"),
            op_type: "Identity".into(),
            ..Default::default()
        });
        self.outputs.push(value_info(name, dims));
    }

    /// Adds a float constant of shape `dims` and returns its name.
    pub fn constant_f32(&mut self, hint: &str, dims: &[usize], values: &[f32]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::FLOAT,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// Adds a candle tensor as a float constant.
    pub fn tensor(&mut self, hint: &str, tensor: &Tensor) -> Result<String> {
        let values = tensor.flatten_all()?.to_vec1::<f32>()?;
        Ok(self.constant_f32(hint, tensor.dims(), &values))
    }

    /// Adds a 1-D int64 constant (shapes, axes) and returns its name.
    pub fn constant_i64(&mut self, hint: &str, values: &[i64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: data_type::INT64,
            int64_data: values.to_vec(),
            name: name.clone(),
            ..Default::default()
        });
        name
    }

    /// Adds a node with one output and returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: format!("{out}_node"),
            op_type: op.into(),
            attribute,
            ..Default::default()
        });
        out
    }

    /// `x · Wᵀ + b` for a candle `Linear` (weight `[out, in]`), on the last axis of `x`.
    pub fn linear(&mut self, x: &str, layer: &Linear) -> Result<String> {
        let weight_t = self.tensor("weight_t", &layer.weight().t()?.contiguous()?)?;
        let product = self.node("MatMul", &[x, &weight_t], vec![]);
        match layer.bias() {
            Some(bias) => {
                let bias = self.tensor("bias", bias)?;
                Ok(self.node("Add", &[&product, &bias], vec![]))
            }
            None => Ok(product),
        }
    }

    /// An [`Mlp`]: linear layers with ReLU between them.
    pub fn mlp(&mut self, x: &str, mlp: &Mlp) -> Result<String> {
        let mut value = x.to_string();
        for (i, layer) in mlp.layers().iter().enumerate() {
            if i > 0 {
                value = self.node("Relu", &[&value], vec![]);
            }
            value = self.linear(&value, layer)?;
        }
        Ok(value)
    }

    /// [`MaskedSelfAttention`] on `x` `[B, K, H]` with `mask` `[B, K]`; works for K = 0.
    pub fn masked_self_attention(&mut self, x: &str, mask: &str, attn: &MaskedSelfAttention) -> Result<String> {
        let head_dim = attn.hidden / attn.heads;
        // Reshape's 0 copies the input's size on that axis, so B and K stay dynamic (and K may be 0).
        let to_heads = self.constant_i64("heads_shape", &[0, 0, attn.heads as i64, head_dim as i64]);
        let q = self.linear(x, &attn.q)?;
        let k = self.linear(x, &attn.k)?;
        let v = self.linear(x, &attn.v)?;
        let q = self.node("Reshape", &[&q, &to_heads], vec![]);
        let q = self.node("Transpose", &[&q], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let k = self.node("Reshape", &[&k, &to_heads], vec![]);
        let k_t = self.node("Transpose", &[&k], vec![attr_ints("perm", &[0, 2, 3, 1])]);
        let v = self.node("Reshape", &[&v, &to_heads], vec![]);
        let v = self.node("Transpose", &[&v], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let scores = self.node("MatMul", &[&q, &k_t], vec![]);
        let scale = self.constant_f32("scale", &[], &[(head_dim as f32).sqrt()]);
        let scores = self.node("Div", &[&scores, &scale], vec![]);
        // Key bias: 0 for real pairs, MASKED_LOGIT for padding, as mask·(−M) + M in candle.
        let neg_m = self.constant_f32("neg_masked", &[], &[-MASKED_LOGIT as f32]);
        let m = self.constant_f32("masked", &[], &[MASKED_LOGIT as f32]);
        let bias = self.node("Mul", &[mask, &neg_m], vec![]);
        let bias = self.node("Add", &[&bias, &m], vec![]);
        let axes = self.constant_i64("axes", &[1, 2]);
        let bias = self.node("Unsqueeze", &[&bias, &axes], vec![]);
        let scores = self.node("Add", &[&scores, &bias], vec![]);
        let weights = self.node("Softmax", &[&scores], vec![attr_int("axis", -1)]);
        let out = self.node("MatMul", &[&weights, &v], vec![]);
        let out = self.node("Transpose", &[&out], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let merge = self.constant_i64("merge_shape", &[0, 0, attn.hidden as i64]);
        let out = self.node("Reshape", &[&out, &merge], vec![]);
        self.linear(&out, &attn.o)
    }

    /// Sums `x` `[B, K, H]` over K where `mask` `[B, K]` is 1.
    pub fn masked_sum(&mut self, x: &str, mask: &str) -> String {
        let last = self.constant_i64("axes", &[2]);
        let mask = self.node("Unsqueeze", &[mask, &last], vec![]);
        let kept = self.node("Mul", &[x, &mask], vec![]);
        let set_axis = self.constant_i64("axes", &[1]);
        self.node("ReduceSum", &[&kept, &set_axis], vec![attr_int("keepdims", 0)])
    }

    /// A candle [`Embedding`] lookup: `Gather` of the table's rows at the integer `ids` (any shape), giving
    /// `ids.shape + [hidden]`.
    pub fn embedding(&mut self, ids: &str, layer: &Embedding) -> Result<String> {
        let table = self.tensor("embedding_table", layer.embeddings())?;
        Ok(self.node("Gather", &[&table, ids], vec![attr_int("axis", 0)]))
    }

    /// A candle [`LayerNorm`] over the last axis, as opset 17's `LayerNormalization`. RMS norms (no mean removal)
    /// are refused, since that operator always removes the mean.
    pub fn layer_norm(&mut self, x: &str, layer: &LayerNorm) -> Result<String> {
        if !layer.remove_mean() {
            return Err(Error::Export("RMS norm cannot be written as LayerNormalization".into()));
        }
        let scale = self.tensor("ln_scale", layer.weight())?;
        let mut inputs = vec![x.to_string(), scale];
        if let Some(bias) = layer.bias() {
            inputs.push(self.tensor("ln_bias", bias)?);
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let attributes = vec![attr_int("axis", -1), attr_float("epsilon", layer.eps() as f32)];
        Ok(self.node("LayerNormalization", &inputs, attributes))
    }

    /// A candle [`RmsNorm`] over the last axis, `x / √(mean(x²) + eps) · weight`, written with standard operators
    /// (opset 17 has no `RMSNormalization`).
    pub fn rms_norm(&mut self, x: &str, layer: &RmsNorm) -> Result<String> {
        let weight = self.tensor("rms_scale", layer.weight())?;
        let eps = self.constant_f32("rms_eps", &[], &[layer.eps() as f32]);
        let squares = self.node("Mul", &[x, x], vec![]);
        // Opset 17's ReduceMean still takes its axes as an attribute.
        let mean = self.node("ReduceMean", &[&squares], vec![attr_ints("axes", &[-1]), attr_int("keepdims", 1)]);
        let mean = self.node("Add", &[&mean, &eps], vec![]);
        let rms = self.node("Sqrt", &[&mean], vec![]);
        let normed = self.node("Div", &[x, &rms], vec![]);
        Ok(self.node("Mul", &[&normed, &weight], vec![]))
    }

    /// The exact GELU, `x · ½ · (1 + erf(x / √2))`, as candle's `gelu_erf`.
    pub fn gelu_erf(&mut self, x: &str) -> String {
        let sqrt2 = self.constant_f32("sqrt2", &[], &[std::f32::consts::SQRT_2]);
        let half = self.constant_f32("half", &[], &[0.5]);
        let one = self.constant_f32("one", &[], &[1.0]);
        let scaled = self.node("Div", &[x, &sqrt2], vec![]);
        let erf = self.node("Erf", &[&scaled], vec![]);
        let erf = self.node("Add", &[&erf, &one], vec![]);
        let halved = self.node("Mul", &[x, &half], vec![]);
        self.node("Mul", &[&halved, &erf], vec![])
    }

    /// Removes the last axis (of size 1) of a rank-3 value.
    pub fn squeeze_last(&mut self, x: &str) -> String {
        let axes = self.constant_i64("axes", &[2]);
        self.node("Squeeze", &[x, &axes], vec![])
    }

    /// Finishes the graph as a model and serialises it.
    pub fn finish(self, doc: &str) -> Result<Vec<u8>> {
        Ok(self.finish_model(doc)?.encode_to_vec())
    }

    /// Finishes the graph as a model (to write with [`write_model`]).
    pub fn finish_model(self, doc: &str) -> Result<ModelProto> {
        if self.outputs.is_empty() {
            return Err(Error::Export(format!("graph {} has no output", self.name)));
        }
        let model = ModelProto {
            ir_version: IR_VERSION,
            producer_name: "steer-trainer".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.into(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: self.name,
                initializer: self.initializers,
                doc_string: String::new(),
                input: self.inputs,
                output: self.outputs,
            }),
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        };
        Ok(model)
    }
}

/// ONNX Runtime parses a model file with protobuf, which reads at most 2 GiB; a model whose encoding would be larger
/// than this keeps its weights in an external data file instead (headroom left for the graph itself).
pub const INLINE_MODEL_LIMIT: usize = 2_000_000_000;
/// Initializers smaller than this stay in the model file even when the weights go to an external data file.
const EXTERNAL_MIN_BYTES: usize = 1024;
/// Offsets in an external data file are multiples of the page size, so that ONNX Runtime can map tensors in place.
const EXTERNAL_ALIGN: usize = 4096;

/// Writes `model` to `path`, and returns the names of the files written (relative to `path`'s folder).
///
/// A model that encodes to at most `inline_limit` bytes is one file. A larger one (a decoder of more than about
/// half a billion parameters, at [`INLINE_MODEL_LIMIT`]) keeps its graph in `path` and moves every initializer of at
/// least 1 KiB to `<file name>.data` beside it, as ONNX's external data: each tensor names that file, its offset and
/// its length. ONNX Runtime reads it when it loads `path` from disk. A stale `.data` file from an earlier export is
/// removed.
pub fn write_model(mut model: ModelProto, path: &Path, inline_limit: usize) -> Result<Vec<String>> {
    let file_name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let Some(name) = file_name(path) else {
        return Err(Error::Export(format!("{} does not name a file", path.display())));
    };
    let data_name = format!("{name}.data");
    let data_path = path.with_file_name(&data_name);
    if data_path.exists() {
        std::fs::remove_file(&data_path).map_err(Error::io(&data_path))?;
    }
    let mut written = vec![name];
    if model.encoded_len() > inline_limit {
        let file = std::fs::File::create(&data_path).map_err(Error::io(&data_path))?;
        let mut data = std::io::BufWriter::new(file);
        let mut offset = 0usize;
        let initializers = model.graph.iter_mut().flat_map(|g| g.initializer.iter_mut());
        for tensor in initializers.filter(|t| t.raw_data.len() >= EXTERNAL_MIN_BYTES) {
            let padding = offset.next_multiple_of(EXTERNAL_ALIGN) - offset;
            data.write_all(&vec![0u8; padding]).map_err(Error::io(&data_path))?;
            offset += padding;
            let bytes = std::mem::take(&mut tensor.raw_data);
            data.write_all(&bytes).map_err(Error::io(&data_path))?;
            let entry = |key: &str, value: String| StringStringEntryProto { key: key.into(), value };
            tensor.external_data = vec![
                entry("location", data_name.clone()),
                entry("offset", offset.to_string()),
                entry("length", bytes.len().to_string()),
            ];
            tensor.data_location = data_location::EXTERNAL;
            offset += bytes.len();
        }
        data.flush().map_err(Error::io(&data_path))?;
        written.push(data_name);
    }
    std::fs::write(path, model.encode_to_vec()).map_err(Error::io(path))?;
    Ok(written)
}
