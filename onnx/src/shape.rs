//! Output shapes and multiply-adds of the operators the builder writes, from their input shapes
//! and attributes: what a model costs per face, counted the way papers count it (a convolution
//! or a dense layer's multiply-accumulates; normalisation, activations and pooling are free).

use crate::proto::AttributeProto;

fn ints<'a>(attrs: &'a [AttributeProto], name: &str) -> Option<&'a [i64]> {
    attrs
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.ints.as_slice())
}

fn int(attrs: &[AttributeProto], name: &str) -> Option<i64> {
    attrs.iter().find(|a| a.name == name).map(|a| a.i)
}

/// Output side of a pooling or convolution window, PyTorch's rule for `ceil_mode` (the last
/// window must start inside the input or its left padding).
fn side(input: i64, k: i64, s: i64, p: i64, ceil: bool) -> i64 {
    let span = input + 2 * p - k;
    let mut out = if ceil {
        (span + s - 1) / s + 1
    } else {
        span / s + 1
    };
    if ceil && (out - 1) * s >= input + p {
        out -= 1;
    }
    out
}

/// NumPy broadcasting of two shapes.
fn broadcast(a: &[i64], b: &[i64]) -> Vec<i64> {
    let n = a.len().max(b.len());
    let at = |v: &[i64], i: usize| {
        let off = n - v.len();
        if i < off {
            1
        } else {
            v[i - off]
        }
    };
    (0..n).map(|i| at(a, i).max(at(b, i))).collect()
}

/// `(output shape, multiply-adds)` of `op` on inputs of `shapes`; `None` for an operator this
/// does not know or a shape that does not fit it.
pub(crate) fn infer(
    op: &str,
    shapes: &[&[i64]],
    attrs: &[AttributeProto],
) -> Option<(Vec<i64>, u64)> {
    let x = *shapes.first()?;
    let window = |k: &[i64]| -> Option<(i64, i64)> {
        let s = ints(attrs, "strides").map_or(1, |s| s[0]);
        let p = ints(attrs, "pads").map_or(0, |p| p[0]);
        let ceil = int(attrs, "ceil_mode") == Some(1);
        Some((side(x[2], k[0], s, p, ceil), side(x[3], k[1], s, p, ceil)))
    };
    match op {
        "Conv" => {
            let w = *shapes.get(1)?;
            if x.len() != 4 || w.len() != 4 {
                return None;
            }
            let (h, wd) = window(&w[2..])?;
            let macs = x[0] * w[0] * h * wd * w[1] * w[2] * w[3];
            Some((vec![x[0], w[0], h, wd], macs as u64))
        }
        "Gemm" => {
            let w = *shapes.get(1)?;
            (x.len() == 2 && w.len() == 2 && x[1] == w[1])
                .then(|| (vec![x[0], w[0]], (x[0] * w[0] * w[1]) as u64))
        }
        "MaxPool" | "AveragePool" => {
            let k = ints(attrs, "kernel_shape")?;
            let (h, w) = window(k)?;
            Some((vec![x[0], x[1], h, w], 0))
        }
        "GlobalAveragePool" => Some((vec![x[0], x[1], 1, 1], 0)),
        "Flatten" => Some((vec![x[0], x[1..].iter().product()], 0)),
        "Concat" => {
            let axis = usize::try_from(int(attrs, "axis")?).ok()?;
            let mut out = x.to_vec();
            out[axis] = shapes
                .iter()
                .map(|s| s.get(axis).copied().unwrap_or(0))
                .sum();
            Some((out, 0))
        }
        "Transpose" => {
            let perm = ints(attrs, "perm")?;
            let out = perm
                .iter()
                .map(|&p| x.get(p as usize).copied())
                .collect::<Option<Vec<i64>>>()?;
            Some((out, 0))
        }
        "Add" | "Sub" | "Mul" | "Div" => Some((broadcast(x, shapes.get(1)?), 0)),
        "Relu" | "Clip" | "Sigmoid" | "BatchNormalization" | "PRelu" | "Softmax" | "Identity" => {
            Some((x.to_vec(), 0))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::side;
    use crate::{Dim, Graph, Weight};
    use std::collections::BTreeMap;

    fn w(dims: &[i64]) -> Weight {
        Weight {
            dims: dims.to_vec(),
            data: vec![0.0; dims.iter().product::<i64>() as usize],
        }
    }

    #[test]
    fn a_small_net_costs_its_convolution_and_dense_multiply_adds() {
        let weights: BTreeMap<String, Weight> = [
            ("c.weight".to_string(), w(&[4, 3, 3, 3])),
            ("fc.weight".to_string(), w(&[2, 4])),
            ("fc.bias".to_string(), w(&[2])),
        ]
        .into();
        let mut g = Graph::new("t", weights.clone());
        let x = g.input(
            "x",
            &[
                Dim::Named("batch"),
                Dim::Fixed(3),
                Dim::Fixed(8),
                Dim::Fixed(8),
            ],
        );
        let y = g.conv(&x, "c", 1, 1, 1).unwrap();
        let y = g.relu6(&y);
        let y = g.max_pool(&y, 2, 2, 0, false);
        let y = g.pooled(&y);
        let y = g.linear(&y, "fc").unwrap();
        g.output(&y, "y", &[Dim::Named("batch"), Dim::Fixed(2)]);
        // Conv: 4 outputs × 8 × 8 positions × 3 × 3 × 3 weights; dense: 4 × 2.
        assert_eq!(g.macs(), Some(4 * 8 * 8 * 27 + 8));
        // A free image size leaves the cost unknown rather than wrong.
        let mut g = Graph::new("t", weights);
        let x = g.input(
            "x",
            &[
                Dim::Named("batch"),
                Dim::Fixed(3),
                Dim::Named("h"),
                Dim::Fixed(8),
            ],
        );
        g.conv(&x, "c", 1, 1, 1).unwrap();
        assert_eq!(g.macs(), None);
    }

    #[test]
    fn ceil_mode_follows_pytorch() {
        // MTCNN's P-net pools 10 → 5 (2/2), R-net 22 → 11 (3/2), ceil mode.
        assert_eq!(side(10, 2, 2, 0, true), 5);
        assert_eq!(side(22, 3, 2, 0, true), 11);
        assert_eq!(side(22, 3, 2, 0, false), 10);
        // DenseNet's stem pool: 112 → 56 (3/2, padding 1).
        assert_eq!(side(112, 3, 2, 1, false), 56);
    }
}
