//! The graph builder: layers over named weights (each weight becomes an initializer under its
//! own name, so a file's tensors keep the checkpoint's names), serialised as a `ModelProto`.

use crate::proto::{
    AttributeProto, DimensionProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TensorTypeProto, TypeProto,
    ValueInfoProto, FLOAT, INT8,
};
use crate::{OnnxError, OPSET};
use std::collections::{BTreeMap, BTreeSet};

/// A tensor: its shape and its f32 data in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Weight {
    /// Shape.
    pub dims: Vec<i64>,
    /// Data, `dims.iter().product()` values.
    pub data: Vec<f32>,
}

/// A value of the graph: a graph input, an initializer or a node's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value(String);

/// An elementwise binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a · b`.
    Mul,
    /// `a / b`.
    Div,
}

/// One dimension of a graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A size chosen at run time (e.g. `batch`).
    Named(&'static str),
}

/// An inference graph under construction.
#[derive(Debug)]
pub struct Graph {
    name: String,
    weights: BTreeMap<String, Weight>,
    used: BTreeSet<String>,
    nodes: Vec<NodeProto>,
    init: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    /// Shapes known so far (the batch dimension counted as 1).
    shapes: BTreeMap<String, Vec<i64>>,
    /// Multiply-adds per item; `None` once a shape is unknown (a free image size).
    macs: Option<u64>,
    /// Store convolution and dense kernels as int8 ([`crate::int8`]).
    int8: bool,
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 2,
        i,
        ..Default::default()
    }
}

fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 7,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 1,
        f,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => DimensionProto {
                dim_value: Some(*n),
                dim_param: None,
            },
            Dim::Named(s) => DimensionProto {
                dim_value: None,
                dim_param: Some((*s).into()),
            },
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

fn tensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: FLOAT,
        name: name.into(),
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

impl Graph {
    /// An empty graph named `name` over `weights` (every one must end up used by a layer).
    pub fn new(name: &str, weights: BTreeMap<String, Weight>) -> Self {
        Graph {
            name: name.into(),
            weights,
            used: BTreeSet::new(),
            nodes: Vec::new(),
            init: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            shapes: BTreeMap::new(),
            macs: Some(0),
            int8: false,
        }
    }

    /// The same graph with its convolution and dense kernels stored as int8, one scale per
    /// output channel, restored to f32 by `DequantizeLinear` ([`crate::int8`]).
    pub fn with_int8_kernels(mut self) -> Self {
        self.int8 = true;
        self
    }

    /// Multiply-adds of the graph so far for one item of the batch (convolutions and dense
    /// layers); `None` where an input dimension other than the batch is free.
    pub fn macs(&self) -> Option<u64> {
        self.macs
    }

    /// Declares a float input.
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> Value {
        self.inputs.push(value_info(name, dims));
        let known: Option<Vec<i64>> = dims
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                Dim::Fixed(n) => Some(*n),
                Dim::Named(_) if i == 0 => Some(1),
                Dim::Named(_) => None,
            })
            .collect();
        if let Some(shape) = known {
            self.shapes.insert(name.into(), shape);
        }
        Value(name.into())
    }

    /// Declares `v` as the float output `name`.
    pub fn output(&mut self, v: &Value, name: &str, dims: &[Dim]) {
        self.nodes.push(NodeProto {
            input: vec![v.0.clone()],
            output: vec![name.into()],
            name: format!("{name}_out"),
            op_type: "Identity".into(),
            attribute: Vec::new(),
        });
        self.outputs.push(value_info(name, dims));
    }

    /// A constant that is not one of the model's weights (a normalisation, a clip bound).
    pub fn constant(&mut self, name: &str, dims: &[i64], data: &[f32]) -> Value {
        if !self.init.iter().any(|t| t.name == name) {
            self.init.push(tensor(name, dims, data));
            self.shapes.insert(name.into(), dims.to_vec());
        }
        Value(name.into())
    }

    /// The model's weight `name` as an initializer (stored once), with its shape.
    fn weight(&mut self, name: &str) -> Result<(Value, Vec<i64>), OnnxError> {
        self.weight_as(name, None)
    }

    /// A convolution or dense kernel: [`Graph::weight`], or in an int8 graph its int8 values,
    /// scales and zero points with the `DequantizeLinear` that gives the f32 kernel its name.
    fn kernel(&mut self, name: &str) -> Result<(Value, Vec<i64>), OnnxError> {
        if !self.int8 {
            return self.weight(name);
        }
        let w = self
            .weights
            .get(name)
            .ok_or_else(|| OnnxError::MissingWeight(name.into()))?;
        let dims = w.dims.clone();
        if self.used.insert(name.into()) {
            let channels = dims.first().copied().unwrap_or(1).max(1);
            let q = crate::int8::quantize(&w.data, channels as usize);
            let (values, scale, zero) = (
                format!("{name}.int8"),
                format!("{name}.scale"),
                format!("{name}.zero_point"),
            );
            let bytes = |v: &[i8]| v.iter().map(|b| b.to_le_bytes()[0]).collect::<Vec<u8>>();
            self.init.push(TensorProto {
                dims: dims.clone(),
                data_type: INT8,
                name: values.clone(),
                raw_data: bytes(&q.values),
            });
            self.init.push(tensor(&scale, &[channels], &q.scales));
            self.init.push(TensorProto {
                dims: vec![channels],
                data_type: INT8,
                name: zero.clone(),
                raw_data: vec![0; channels as usize],
            });
            self.nodes.push(NodeProto {
                input: vec![values, scale, zero],
                output: vec![name.into()],
                name: format!("{name}.dequantize"),
                op_type: "DequantizeLinear".into(),
                attribute: vec![attr_int("axis", 0)],
            });
            self.shapes.insert(name.into(), dims.clone());
        }
        Ok((Value(name.into()), dims))
    }

    /// As [`Graph::weight`], stored under the shape `dims` (same number of values) when given.
    fn weight_as(
        &mut self,
        name: &str,
        dims: Option<&[i64]>,
    ) -> Result<(Value, Vec<i64>), OnnxError> {
        let w = self
            .weights
            .get(name)
            .ok_or_else(|| OnnxError::MissingWeight(name.into()))?;
        let shape = match dims {
            Some(d) if d.iter().product::<i64>() == w.dims.iter().product::<i64>() => d.to_vec(),
            Some(d) => {
                return Err(OnnxError::BadShape {
                    name: name.into(),
                    dims: w.dims.clone(),
                    expected: format!("{} values for shape {d:?}", d.iter().product::<i64>()),
                })
            }
            None => w.dims.clone(),
        };
        if self.used.insert(name.into()) {
            let t = tensor(name, &shape, &w.data);
            self.init.push(t);
            self.shapes.insert(name.into(), shape.clone());
        }
        Ok((Value(name.into()), shape))
    }

    fn has(&self, name: &str) -> bool {
        self.weights.contains_key(name)
    }

    /// Appends a node of `op` on `inputs` with `attrs`; its one output.
    fn node(&mut self, op: &str, inputs: &[&Value], attrs: Vec<AttributeProto>) -> Value {
        let out = format!("{}_{}", op.to_lowercase(), self.nodes.len());
        let known: Option<Vec<&[i64]>> = inputs
            .iter()
            .map(|v| self.shapes.get(&v.0).map(Vec::as_slice))
            .collect();
        match known.and_then(|s| crate::shape::infer(op, &s, &attrs)) {
            Some((shape, macs)) => {
                self.shapes.insert(out.clone(), shape);
                self.macs = self.macs.map(|m| m + macs);
            }
            None => self.macs = None,
        }
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|v| v.0.clone()).collect(),
            output: vec![out.clone()],
            name: out.clone(),
            op_type: op.into(),
            attribute: attrs,
        });
        Value(out)
    }

    /// Convolution with `<prefix>.weight` `[O, I/groups, kh, kw]` and `<prefix>.bias` if the
    /// model has one.
    pub fn conv(
        &mut self,
        x: &Value,
        prefix: &str,
        stride: i64,
        pad: i64,
        groups: i64,
    ) -> Result<Value, OnnxError> {
        let wname = format!("{prefix}.weight");
        let (w, dims) = self.kernel(&wname)?;
        if dims.len() != 4 {
            return Err(OnnxError::BadShape {
                name: wname,
                dims,
                expected: "a 4-d convolution kernel".into(),
            });
        }
        let mut inputs = vec![x.clone(), w];
        let bname = format!("{prefix}.bias");
        if self.has(&bname) {
            inputs.push(self.weight(&bname)?.0);
        }
        let refs: Vec<&Value> = inputs.iter().collect();
        let attrs = vec![
            attr_ints("kernel_shape", &dims[2..]),
            attr_ints("strides", &[stride, stride]),
            attr_ints("pads", &[pad, pad, pad, pad]),
            attr_ints("dilations", &[1, 1]),
            attr_int("group", groups),
        ];
        Ok(self.node("Conv", &refs, attrs))
    }

    /// Inference-mode batch normalisation over axis 1 with `<prefix>.{weight, bias,
    /// running_mean, running_var}` and PyTorch's epsilon (1e-5).
    pub fn batch_norm(&mut self, x: &Value, prefix: &str) -> Result<Value, OnnxError> {
        let mut inputs = vec![x.clone()];
        for part in ["weight", "bias", "running_mean", "running_var"] {
            inputs.push(self.weight(&format!("{prefix}.{part}"))?.0);
        }
        let refs: Vec<&Value> = inputs.iter().collect();
        Ok(self.node(
            "BatchNormalization",
            &refs,
            vec![attr_float("epsilon", 1e-5)],
        ))
    }

    /// `x · Wᵀ + b` with `<prefix>.weight` `[O, I]` and `<prefix>.bias` `[O]`.
    pub fn linear(&mut self, x: &Value, prefix: &str) -> Result<Value, OnnxError> {
        let (w, _) = self.kernel(&format!("{prefix}.weight"))?;
        let (b, _) = self.weight(&format!("{prefix}.bias"))?;
        Ok(self.node("Gemm", &[x, &w, &b], vec![attr_int("transB", 1)]))
    }

    /// PReLU with one slope per channel (`<prefix>.weight`), on `[N, C]` or, with `spatial`,
    /// on `[N, C, H, W]`.
    pub fn prelu(&mut self, x: &Value, prefix: &str, spatial: bool) -> Result<Value, OnnxError> {
        let name = format!("{prefix}.weight");
        let n = self
            .weights
            .get(&name)
            .map(|w| w.data.len() as i64)
            .ok_or_else(|| OnnxError::MissingWeight(name.clone()))?;
        let dims: &[i64] = if spatial { &[n, 1, 1] } else { &[n] };
        let (slope, _) = self.weight_as(&name, Some(dims))?;
        Ok(self.node("PRelu", &[x, &slope], Vec::new()))
    }

    /// An elementwise binary operator with broadcasting: `Add`, `Sub`, `Mul` or `Div`.
    pub fn binary(&mut self, op: Binary, a: &Value, b: &Value) -> Value {
        let name = match op {
            Binary::Add => "Add",
            Binary::Sub => "Sub",
            Binary::Mul => "Mul",
            Binary::Div => "Div",
        };
        self.node(name, &[a, b], Vec::new())
    }

    /// The logistic function.
    pub fn sigmoid(&mut self, x: &Value) -> Value {
        self.node("Sigmoid", &[x], Vec::new())
    }

    /// ReLU.
    pub fn relu(&mut self, x: &Value) -> Value {
        self.node("Relu", &[x], Vec::new())
    }

    /// ReLU6 (`Clip` to [0, 6]).
    pub fn relu6(&mut self, x: &Value) -> Value {
        let lo = self.constant("relu6_min", &[], &[0.0]);
        let hi = self.constant("relu6_max", &[], &[6.0]);
        self.node("Clip", &[x, &lo, &hi], Vec::new())
    }

    /// Max pooling, square kernel `k`, stride `s`, padding `p`, PyTorch's `ceil_mode`.
    pub fn max_pool(&mut self, x: &Value, k: i64, s: i64, p: i64, ceil: bool) -> Value {
        let attrs = vec![
            attr_ints("kernel_shape", &[k, k]),
            attr_ints("strides", &[s, s]),
            attr_ints("pads", &[p, p, p, p]),
            attr_int("ceil_mode", i64::from(ceil)),
        ];
        self.node("MaxPool", &[x], attrs)
    }

    /// Average pooling without padding, square kernel `k`, stride `s`.
    pub fn avg_pool(&mut self, x: &Value, k: i64, s: i64) -> Value {
        let attrs = vec![
            attr_ints("kernel_shape", &[k, k]),
            attr_ints("strides", &[s, s]),
        ];
        self.node("AveragePool", &[x], attrs)
    }

    /// Global average pooling then flattening: `[N, C, H, W]` → `[N, C]`.
    pub fn pooled(&mut self, x: &Value) -> Value {
        let g = self.node("GlobalAveragePool", &[x], Vec::new());
        self.flatten(&g)
    }

    /// `[N, ...]` → `[N, rest]`.
    pub fn flatten(&mut self, x: &Value) -> Value {
        self.node("Flatten", &[x], vec![attr_int("axis", 1)])
    }

    /// Concatenation along `axis`.
    pub fn concat(&mut self, xs: &[Value], axis: i64) -> Value {
        let refs: Vec<&Value> = xs.iter().collect();
        self.node("Concat", &refs, vec![attr_int("axis", axis)])
    }

    /// Transposition by `perm`.
    pub fn transpose(&mut self, x: &Value, perm: &[i64]) -> Value {
        self.node("Transpose", &[x], vec![attr_ints("perm", perm)])
    }

    /// Softmax along `axis`.
    pub fn softmax(&mut self, x: &Value, axis: i64) -> Value {
        self.node("Softmax", &[x], vec![attr_int("axis", axis)])
    }

    /// The model file: the graph in opset [`OPSET`] with `metadata`; fails when a weight of the
    /// model was used by no layer.
    pub fn finish(
        self,
        producer: &str,
        metadata: &[(String, String)],
    ) -> Result<Vec<u8>, OnnxError> {
        use prost::Message;
        let unused: Vec<String> = self
            .weights
            .keys()
            .filter(|k| !self.used.contains(*k))
            .cloned()
            .collect();
        if !unused.is_empty() {
            return Err(OnnxError::Unused(unused));
        }
        let model = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: producer.into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: String::new(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: self.name,
                initializer: self.init,
                input: self.inputs,
                output: self.outputs,
            }),
            metadata_props: metadata
                .iter()
                .map(|(k, v)| StringStringEntryProto {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
        };
        Ok(model.encode_to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{read_metadata, OnnxError};
    use prost::Message;

    fn weights(names: &[(&str, &[i64])]) -> BTreeMap<String, Weight> {
        names
            .iter()
            .map(|(n, d)| {
                let len = d.iter().product::<i64>() as usize;
                let w = Weight {
                    dims: d.to_vec(),
                    data: (0..len).map(|i| i as f32).collect(),
                };
                ((*n).to_string(), w)
            })
            .collect()
    }

    fn linear_graph(extra: &[(&str, &[i64])]) -> Graph {
        linear_graph_of(extra, false)
    }

    fn linear_graph_of(extra: &[(&str, &[i64])], int8: bool) -> Graph {
        let mut all = vec![("fc.weight", &[2i64, 3][..]), ("fc.bias", &[2][..])];
        all.extend_from_slice(extra);
        let mut g = Graph::new("t", weights(&all));
        if int8 {
            g = g.with_int8_kernels();
        }
        let x = g.input("x", &[Dim::Named("batch"), Dim::Fixed(3)]);
        let y = g.linear(&x, "fc").unwrap();
        g.output(&y, "y", &[Dim::Named("batch"), Dim::Fixed(2)]);
        g
    }

    #[test]
    fn a_model_keeps_its_weights_names_and_metadata() {
        let meta = [("ausweep.aus".to_string(), "1,2".to_string())];
        let bytes = linear_graph(&[]).finish("ausweep", &meta).unwrap();
        assert_eq!(read_metadata(&bytes).unwrap(), meta.to_vec());
        let m = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(m.opset_import[0].version, OPSET);
        let g = m.graph.unwrap();
        let names: Vec<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["fc.weight", "fc.bias"]);
        let w = &g.initializer[0];
        assert_eq!(w.dims, [2, 3]);
        // Row-major little-endian f32: the sixth value is 5.0.
        assert_eq!(w.raw_data[20..24], 5.0f32.to_le_bytes());
        let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Gemm", "Identity"]);
        assert_eq!(g.output[0].name, "y");
    }

    #[test]
    fn an_int8_graph_stores_kernels_as_int8_and_dequantizes_them_by_name() {
        let fp32 = linear_graph(&[]).finish("ausweep", &[]).unwrap();
        let bytes = linear_graph_of(&[], true).finish("ausweep", &[]).unwrap();
        let g = ModelProto::decode(bytes.as_slice()).unwrap().graph.unwrap();
        let inits: Vec<(&str, i32)> = g
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t.data_type))
            .collect();
        assert_eq!(
            inits,
            [
                ("fc.weight.int8", INT8),
                ("fc.weight.scale", FLOAT),
                ("fc.weight.zero_point", INT8),
                ("fc.bias", FLOAT),
            ]
        );
        // fc.weight = [[0, 1, 2], [3, 4, 5]]: row scales 2/127 and 5/127.
        let q = &g.initializer[0];
        assert_eq!(q.raw_data, [0, 64, 127, 76, 102, 127]);
        let dq = &g.node[0];
        assert_eq!(dq.op_type, "DequantizeLinear");
        assert_eq!(
            dq.input,
            ["fc.weight.int8", "fc.weight.scale", "fc.weight.zero_point"]
        );
        assert_eq!(dq.output, ["fc.weight"]);
        assert_eq!(dq.attribute[0].name, "axis");
        assert_eq!(g.node[1].input, ["x", "fc.weight", "fc.bias"]);
        // The kernel takes a byte per value instead of four (plus its scales).
        let w_fp32 = ModelProto::decode(fp32.as_slice())
            .unwrap()
            .graph
            .unwrap()
            .initializer[0]
            .raw_data
            .len();
        assert_eq!((w_fp32, q.raw_data.len()), (24, 6));
    }

    #[test]
    fn a_weight_no_layer_uses_is_refused_by_name() {
        let err = linear_graph(&[("extra.weight", &[4])])
            .finish("ausweep", &[])
            .unwrap_err();
        match &err {
            OnnxError::Unused(names) => assert_eq!(names, &["extra.weight"]),
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("`extra.weight`"), "{err}");
    }

    #[test]
    fn a_missing_or_misshaped_weight_is_named() {
        let mut g = Graph::new("t", weights(&[("c.weight", &[4, 3])]));
        let x = g.input("x", &[Dim::Fixed(1)]);
        let err = g.batch_norm(&x, "bn").unwrap_err();
        assert!(
            matches!(&err, OnnxError::MissingWeight(n) if n == "bn.weight"),
            "{err}"
        );
        let err = g.conv(&x, "c", 1, 0, 1).unwrap_err();
        assert!(
            err.to_string()
                .contains("`c.weight` has shape [4, 3]: a 4-d convolution kernel"),
            "{err}"
        );
    }

    #[test]
    fn bytes_that_are_not_a_model_are_refused() {
        let err = read_metadata(b"\xff\xff\xff not onnx").unwrap_err();
        assert!(err.to_string().starts_with("not an ONNX model"), "{err}");
    }
}
