//! [`GraphBuilder`]: one ONNX graph, node by node, finished as a [`ModelProto`].

use prost::Message;

use crate::error::{Error, Result};
use crate::proto::*;

/// The opset every graph uses.
pub const OPSET: i64 = 17;
/// The IR version matching [`OPSET`].
pub const IR_VERSION: i64 = 8;

/// A tensor dimension in a graph signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// Fixed size.
    Fixed(usize),
    /// Dynamic size with a symbolic name (e.g. `batch`).
    Dynamic(&'static str),
}

/// Builds one ONNX graph node by node. Values made by the builder get fresh names (`<hint>_<n>`); the `*_named`
/// calls let hand-written graphs choose every name themselves.
pub struct GraphBuilder {
    name: String,
    producer: String,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    next_id: usize,
}

fn value_info(name: &str, dims: &[Dim], elem_type: i32) -> ValueInfoProto {
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
    /// An empty graph called `name`, signed by `steer-trainer` (the producer of Steer bundles; see
    /// [`GraphBuilder::producer`]).
    pub fn new(name: &str) -> Self {
        GraphBuilder {
            name: name.to_string(),
            producer: "steer-trainer".into(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            next_id: 0,
        }
    }

    /// Signs the model with another producer name (e.g. a test fixture's).
    #[must_use]
    pub fn producer(mut self, producer: &str) -> Self {
        self.producer = producer.to_string();
        self
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.next_id += 1;
        format!("{hint}_{}", self.next_id)
    }

    /// Declares a float graph input and returns its name.
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> String {
        self.input_typed(name, dims, data_type::FLOAT)
    }

    /// Declares a graph input whose elements are `elem_type` (a [`data_type`] value, e.g. `data_type::INT64`) and
    /// returns its name.
    pub fn input_typed(&mut self, name: &str, dims: &[Dim], elem_type: i32) -> String {
        self.inputs.push(value_info(name, dims, elem_type));
        name.to_string()
    }

    /// Declares `value` as the float graph output `name` (through an `Identity` node).
    pub fn output(&mut self, value: &str, name: &str, dims: &[Dim]) {
        self.nodes.push(NodeProto {
            input: vec![value.to_string()],
            output: vec![name.to_string()],
            name: format!("output_{name}"),
            op_type: "Identity".into(),
            ..Default::default()
        });
        self.declare_output(name, dims);
    }

    /// Declares the float value `name`, which a node of the graph writes, as a graph output.
    pub fn declare_output(&mut self, name: &str, dims: &[Dim]) {
        self.outputs.push(value_info(name, dims, data_type::FLOAT));
    }

    /// Adds a float constant of shape `dims` and returns its (fresh) name.
    pub fn constant_f32(&mut self, hint: &str, dims: &[usize], values: &[f32]) -> String {
        let name = self.fresh(hint);
        self.constant_f32_named(&name, dims, values);
        name
    }

    /// Adds a float constant called `name` of shape `dims`.
    pub fn constant_f32_named(&mut self, name: &str, dims: &[usize], values: &[f32]) {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::FLOAT,
            name: name.to_string(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
    }

    /// Adds a 1-D int64 constant (shapes, axes) and returns its (fresh) name.
    pub fn constant_i64(&mut self, hint: &str, values: &[i64]) -> String {
        let name = self.fresh(hint);
        self.constant_i64_named(&name, values);
        name
    }

    /// Adds a 1-D int64 constant called `name`.
    pub fn constant_i64_named(&mut self, name: &str, values: &[i64]) {
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: data_type::INT64,
            int64_data: values.to_vec(),
            name: name.to_string(),
            ..Default::default()
        });
    }

    /// Adds a node with one output and returns the output's (fresh) name.
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

    /// Adds a node that writes the values `outputs` (at least one); it is called `<op>_<first output>`.
    pub fn node_named(&mut self, op: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) {
        let first = outputs.first().copied().unwrap_or_default();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: format!("{op}_{first}"),
            op_type: op.into(),
            attribute,
            ..Default::default()
        });
    }

    /// Finishes the graph as a model and serialises it.
    pub fn finish(self, doc: &str) -> Result<Vec<u8>> {
        Ok(self.finish_model(doc)?.encode_to_vec())
    }

    /// Finishes the graph as a model (to write with [`crate::write_model`]).
    pub fn finish_model(self, doc: &str) -> Result<ModelProto> {
        if self.outputs.is_empty() {
            return Err(Error::NoOutput { graph: self.name });
        }
        let model = ModelProto {
            ir_version: IR_VERSION,
            producer_name: self.producer,
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
