//! [`Graph`]: a hand-written ONNX graph whose values all have chosen names, on the shared writer's [`GraphBuilder`].

use steer_onnx::proto::data_type;
use steer_onnx::{Dim, GraphBuilder, attr_int};

/// An axis of a declared shape: a symbolic (dynamic) name or a fixed size.
#[derive(Clone, Copy, Debug)]
pub enum D {
    /// A dynamic axis called by this name.
    Sym(&'static str),
    /// A fixed size.
    Fix(i64),
}

impl D {
    fn dim(self) -> Dim {
        match self {
            D::Sym(name) => Dim::Dynamic(name),
            D::Fix(size) => Dim::Fixed(usize::try_from(size).expect("a fixed axis is not negative")),
        }
    }
}

fn dims(axes: &[D]) -> Vec<Dim> {
    axes.iter().map(|d| d.dim()).collect()
}

fn sizes(axes: &[i64]) -> Vec<usize> {
    axes.iter().map(|&d| usize::try_from(d).expect("a weight axis is not negative")).collect()
}

/// A graph under construction; every call names what it adds, and calls chain.
pub struct Graph {
    g: GraphBuilder,
}

impl Default for Graph {
    fn default() -> Self {
        Graph { g: GraphBuilder::new("steer_test").producer("steer-testkit") }
    }
}

impl Graph {
    /// A float input.
    #[must_use]
    pub fn input(mut self, name: &str, axes: &[D]) -> Self {
        self.g.input(name, &dims(axes));
        self
    }

    /// An int64 input (token ids, attention masks).
    #[must_use]
    pub fn input_i64(mut self, name: &str, axes: &[D]) -> Self {
        self.g.input_typed(name, &dims(axes), data_type::INT64);
        self
    }

    /// Declares the float value `name`, written by a node, as an output.
    #[must_use]
    pub fn output(mut self, name: &str, axes: &[D]) -> Self {
        self.g.declare_output(name, &dims(axes));
        self
    }

    /// A float constant of shape `dims`.
    #[must_use]
    pub fn weight(mut self, name: &str, dims: &[i64], values: &[f32]) -> Self {
        self.g.constant_f32_named(name, &sizes(dims), values);
        self
    }

    /// A 1-D int64 constant (axes, shapes).
    #[must_use]
    pub fn axes(mut self, name: &str, axes: &[i64]) -> Self {
        self.g.constant_i64_named(name, axes);
        self
    }

    /// A node without attributes.
    #[must_use]
    pub fn op(self, op: &str, inputs: &[&str], outputs: &[&str]) -> Self {
        self.op_with(op, inputs, outputs, &[])
    }

    /// A node with integer attributes.
    #[must_use]
    pub fn op_with(mut self, op: &str, inputs: &[&str], outputs: &[&str], attributes: &[(&str, i64)]) -> Self {
        let attributes = attributes.iter().map(|&(name, value)| attr_int(name, value)).collect();
        self.g.node_named(op, inputs, outputs, attributes);
        self
    }

    /// `output = ReduceSum(input, axes)`.
    #[must_use]
    pub fn reduce_sum(self, input: &str, axes: &str, output: &str, keepdims: i64) -> Self {
        self.op_with("ReduceSum", &[input, axes], &[output], &[("keepdims", keepdims)])
    }

    /// `output = Cast(input)` to float.
    #[must_use]
    pub fn cast_to_float(self, input: &str, output: &str) -> Self {
        self.op_with("Cast", &[input], &[output], &[("to", i64::from(data_type::FLOAT))])
    }

    /// The model's bytes (ir_version 8, opset 17).
    pub fn into_bytes(self) -> Vec<u8> {
        self.g.finish("").expect("a test graph declares an output")
    }
}
