//! ONNX files without libtorch: [`Graph`] builds an inference graph over named weights and
//! writes it with its metadata (optionally with int8 kernels, [`int8`]); [`read_metadata`] reads
//! a file's metadata back.

mod graph;
pub mod int8;
mod proto;
mod shape;

pub use graph::{Binary, Dim, Graph, Value, Weight};

/// The operator set ausweep writes (ONNX 1.12 and later; onnxruntime ≥ 1.13; tract).
pub const OPSET: i64 = 17;

/// Why a graph could not be built, written or read.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// A layer asked for a weight the model does not have.
    #[error("the model has no tensor `{0}`")]
    MissingWeight(String),
    /// A weight has a shape the layer cannot use.
    #[error("tensor `{name}` has shape {dims:?}: {expected}")]
    BadShape {
        /// The weight.
        name: String,
        /// Its shape.
        dims: Vec<i64>,
        /// What the layer needs.
        expected: String,
    },
    /// Weights no layer used: the graph would not be the model.
    #[error("{} tensor(s) of the model are used by no layer of the graph, e.g. `{}`", .0.len(), .0.first().map(String::as_str).unwrap_or(""))]
    Unused(Vec<String>),
    /// The bytes are not an ONNX model.
    #[error("not an ONNX model: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// The `metadata_props` of an ONNX model file's bytes, in file order.
pub fn read_metadata(bytes: &[u8]) -> Result<Vec<(String, String)>, OnnxError> {
    use prost::Message;
    let m = proto::ModelProto::decode(bytes)?;
    Ok(m.metadata_props
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect())
}
