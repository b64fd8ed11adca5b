//! Windows sliding over spatial dimensions: Conv with its integer and QLinear forms,
//! ConvTranspose, and pooling (windowed and global).

use super::quant::{product_elem, second_operand};
use super::{Ctx, Fact, Inferred, Inputs, Recorded, Rules, elements};
use crate::onnx::{DataType, NodeProto};

pub(super) fn rules(op: &str) -> Option<Rules> {
    Some(match op {
        "Conv" | "ConvInteger" | "QLinearConv" => Rules::multiplying(conv, conv_macs),
        "ConvTranspose" => Rules::multiplying(conv_transpose, conv_transpose_macs),
        "MaxPool" | "AveragePool" | "LpPool" => Rules::shaping(pool),
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => Rules::shaping(global_pool),
        _ => return None,
    })
}

fn conv(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let (out, _) = conv_output(cx)?;
    Ok(vec![Fact::new(out, product_elem(cx))])
}

fn conv_macs(inputs: &Recorded) -> Inferred<u64> {
    let (out, w) = conv_output(inputs)?;
    // Each output element reads C/group input channels through the whole kernel.
    Ok(elements(&out) * elements(&w[1..]))
}

/// Output shape of Conv, ConvInteger and QLinearConv, and the weights' shape: `x` [N, C,
/// spatial...], `w` [M, C/group, kernel...].
fn conv_output(inputs: &dyn Inputs) -> Inferred<(Vec<usize>, &[usize])> {
    let node = inputs.node();
    let x = inputs.shape(0)?;
    let w = inputs.shape(second_operand(node.op_type()))?;
    if x.len() < 3 || w.len() != x.len() {
        return Err(format!("Conv of {x:?} with weights {w:?}"));
    }
    let group = node.attr_i("group").unwrap_or(1).max(1) as usize;
    if x[1] != w[1] * group {
        return Err(format!(
            "Conv: {} input channels, weights {w:?} with group {group}",
            x[1]
        ));
    }
    let mut out = vec![x[0], w[0]];
    out.extend(window_out(node, &x[2..], &w[2..])?);
    Ok((out, w))
}

fn conv_transpose(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let node = cx.node;
    let (x, w) = conv_transpose_operands(cx)?;
    let n = x.len() - 2;
    let group = node.attr_i("group").unwrap_or(1).max(1) as usize;
    let mut out = vec![x[0], w[1] * group];
    if let Some(shape) = node.attr_ints("output_shape") {
        let spatial = &shape[shape.len().saturating_sub(n)..];
        out.extend(spatial.iter().map(|&d| d.max(0) as usize));
        return Ok(vec![Fact::new(out, cx.elem(0))]);
    }
    let attr = |name: &str, default: i64, len: usize| {
        node.attr_ints(name)
            .map(<[i64]>::to_vec)
            .unwrap_or_else(|| vec![default; len])
    };
    let (strides, dilations) = (attr("strides", 1, n), attr("dilations", 1, n));
    let (pads, output_padding) = (attr("pads", 0, 2 * n), attr("output_padding", 0, n));
    let auto_pad = node.attr_s("auto_pad").unwrap_or("NOTSET");
    for i in 0..n {
        let (xi, s) = (x[2 + i] as i64, strides.get(i).copied().unwrap_or(1));
        let size = if matches!(auto_pad, "SAME_UPPER" | "SAME_LOWER") {
            xi * s
        } else {
            let window = (w[2 + i] as i64 - 1) * dilations.get(i).copied().unwrap_or(1) + 1;
            s * (xi - 1) + output_padding.get(i).copied().unwrap_or(0) + window
                - pads.get(i).copied().unwrap_or(0)
                - pads.get(i + n).copied().unwrap_or(0)
        };
        out.push(usize::try_from(size).map_err(|_| format!("negative output size {size}"))?);
    }
    Ok(vec![Fact::new(out, cx.elem(0))])
}

fn conv_transpose_macs(inputs: &Recorded) -> Inferred<u64> {
    let (x, w) = conv_transpose_operands(inputs)?;
    // Each input element is spread over C_out/group channels through the kernel.
    Ok(elements(x) * elements(&w[1..]))
}

/// `x` [N, C, spatial...] and `w` [C, M/group, kernel...] of a ConvTranspose.
fn conv_transpose_operands(inputs: &dyn Inputs) -> Inferred<(&[usize], &[usize])> {
    let (x, w) = (inputs.shape(0)?, inputs.shape(1)?);
    if x.len() < 3 || w.len() != x.len() || x[1] != w[0] {
        return Err(format!("ConvTranspose of {x:?} with weights {w:?}"));
    }
    Ok((x, w))
}

fn pool(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = cx.shape(0)?;
    let kernel: Vec<usize> = cx
        .node
        .attr_ints("kernel_shape")
        .ok_or("no kernel_shape attribute")?
        .iter()
        .map(|&k| k.max(1) as usize)
        .collect();
    if x.len() != kernel.len() + 2 {
        return Err(format!("pooling window {kernel:?} over {x:?}"));
    }
    let mut out = x[..2].to_vec();
    out.extend(window_out(cx.node, &x[2..], &kernel)?);
    Ok(vec![
        Fact::new(out.clone(), cx.elem(0)),
        Fact::new(out, Some(DataType::Int64)),
    ])
}

fn global_pool(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = cx.shape(0)?;
    if x.len() < 2 {
        return Err(format!("global pooling of {x:?}"));
    }
    let out = x
        .iter()
        .enumerate()
        .map(|(i, &d)| if i < 2 { d } else { 1 })
        .collect();
    Ok(vec![Fact::new(out, cx.elem(0))])
}

/// Spatial output sizes of a convolution or pooling window sliding over `input` (spatial dims
/// only), following the ONNX rules for `pads`, `strides`, `dilations`, `auto_pad` and
/// `ceil_mode`.
fn window_out(node: &NodeProto, input: &[usize], kernel: &[usize]) -> Inferred<Vec<usize>> {
    let n = input.len();
    if kernel.len() != n {
        return Err(format!(
            "kernel {kernel:?} does not fit spatial dims {input:?}"
        ));
    }
    let strides = node
        .attr_ints("strides")
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![1; n]);
    let dilations = node
        .attr_ints("dilations")
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![1; n]);
    let pads = node
        .attr_ints("pads")
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![0; 2 * n]);
    if strides.len() != n || dilations.len() != n || pads.len() != 2 * n {
        return Err("strides, dilations or pads do not match the spatial rank".into());
    }
    let ceil_mode = node.attr_i("ceil_mode").unwrap_or(0) != 0;
    let auto_pad = node.attr_s("auto_pad").unwrap_or("NOTSET");
    (0..n)
        .map(|i| {
            let (x, s, d) = (input[i] as i64, strides[i], dilations[i]);
            if s < 1 || d < 1 {
                return Err(format!("stride {s} or dilation {d} below 1"));
            }
            let window = (kernel[i] as i64 - 1) * d + 1;
            let out = match auto_pad {
                "SAME_UPPER" | "SAME_LOWER" => (x + s - 1) / s,
                "VALID" => (x - window) / s + 1,
                _ => {
                    let span = x + pads[i] + pads[i + n] - window;
                    if span < 0 {
                        return Err(format!("window {window} is larger than padded input {x}"));
                    }
                    if ceil_mode {
                        let mut out = (span + s - 1) / s + 1;
                        // A last window starting in the right padding is dropped (PyTorch and
                        // ONNX Runtime agree).
                        if (out - 1) * s >= x + pads[i] {
                            out -= 1;
                        }
                        out
                    } else {
                        span / s + 1
                    }
                }
            };
            usize::try_from(out).map_err(|_| format!("negative output size {out}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::GraphBuilder;
    use crate::infer::infer_shapes;
    use crate::infer::tests::bound;
    use crate::onnx::AttributeProto as A;

    #[test]
    fn sizes_convolutions_and_pools() {
        let mut g = GraphBuilder::new("g");
        g.input("x", DataType::Float, &["N", "3", "H", "W"]);
        g.weight("w", &[8, 3, 3, 3], &[0.1; 216]);
        g.weight("dw", &[8, 1, 3, 3], &[0.1; 72]);
        g.node(
            "Conv",
            "c",
            &["x", "w"],
            vec![A::ints("strides", &[2, 2]), A::ints("pads", &[1, 1, 1, 1])],
        );
        g.node(
            "Conv",
            "d",
            &["c", "dw"],
            vec![
                A::int("group", 8),
                A::ints("dilations", &[2, 2]),
                A::string("auto_pad", "SAME_UPPER"),
            ],
        );
        g.node(
            "MaxPool",
            "p",
            &["d"],
            vec![
                A::ints("kernel_shape", &[3, 3]),
                A::ints("strides", &[2, 2]),
                A::int("ceil_mode", 1),
            ],
        );
        g.node(
            "AveragePool",
            "q",
            &["d"],
            vec![
                A::ints("kernel_shape", &[2, 2]),
                A::ints("strides", &[2, 2]),
                A::ints("pads", &[0, 0, 1, 1]),
            ],
        );
        g.node("GlobalAveragePool", "gap", &["p"], vec![]);
        g.node("Flatten", "f", &["gap"], vec![]);
        let model = g.into_model().unwrap();
        let inf = infer_shapes(&model, &[bound("x", &[2, 3, 224, 223])], None);
        assert!(inf.unresolved.is_empty(), "{:?}", inf.unresolved);
        assert_eq!(inf.shapes["c"], vec![2, 8, 112, 112]);
        assert_eq!(inf.shapes["d"], vec![2, 8, 112, 112]);
        // ceil((112 - 3) / 2) + 1 = 56; the last window starts at 110 < 112, so it stays.
        assert_eq!(inf.shapes["p"], vec![2, 8, 56, 56]);
        assert_eq!(inf.shapes["q"], vec![2, 8, 56, 56]);
        assert_eq!(inf.shapes["f"], vec![2, 8]);
    }

    #[test]
    fn ceil_mode_drops_a_window_that_starts_in_the_padding() {
        let node = NodeProto {
            attribute: vec![
                A::ints("strides", &[2]),
                A::ints("pads", &[1, 1]),
                A::int("ceil_mode", 1),
            ],
            ..Default::default()
        };
        // in 5, pads 1 + 1, kernel 2, stride 2: ceil((5 + 2 - 2) / 2) + 1 = 4 windows, but the
        // last would start at padded position 6, in the right padding, so it is dropped.
        assert_eq!(window_out(&node, &[5], &[2]).unwrap(), vec![3]);
        // in 6, no pads, kernel 3, stride 2: ceil(3 / 2) + 1 = 3 (floor mode gives 2).
        let node = NodeProto {
            attribute: vec![A::ints("strides", &[2]), A::int("ceil_mode", 1)],
            ..Default::default()
        };
        assert_eq!(window_out(&node, &[6], &[3]).unwrap(), vec![3]);
        let floor = NodeProto {
            attribute: vec![A::ints("strides", &[2])],
            ..Default::default()
        };
        assert_eq!(window_out(&floor, &[6], &[3]).unwrap(), vec![2]);
    }

    #[test]
    fn sizes_transposed_convolutions() {
        let mut g = GraphBuilder::new("g");
        g.input("img", DataType::Float, &["1", "4", "7", "7"]);
        g.weight("wt", &[4, 2, 3, 3], &[0.0; 72]);
        g.node(
            "ConvTranspose",
            "up",
            &["img", "wt"],
            vec![
                A::ints("strides", &[2, 2]),
                A::ints("pads", &[1, 1, 1, 1]),
                A::ints("output_padding", &[1, 1]),
            ],
        );
        let model = g.into_model().unwrap();
        let inf = infer_shapes(&model, &[], None);
        assert!(inf.unresolved.is_empty(), "{:?}", inf.unresolved);
        // 2 * (7 - 1) + 1 + 3 - 2 = 14
        assert_eq!(inf.shapes["up"], vec![1, 2, 14, 14]);
    }
}
