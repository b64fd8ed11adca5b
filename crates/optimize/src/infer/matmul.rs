//! Matrix products: MatMul with its integer and QLinear forms, and Gemm.

use super::elementwise::broadcast;
use super::quant::{product_elem, second_operand};
use super::{Ctx, Fact, Inferred, Inputs, Recorded, Rules, elements};
use crate::onnx::NodeProto;

pub(super) fn rules(op: &str) -> Option<Rules> {
    Some(match op {
        "MatMul" | "MatMulInteger" | "QLinearMatMul" => Rules::multiplying(matmul, matmul_macs),
        "Gemm" => Rules::multiplying(gemm, gemm_macs),
        _ => return None,
    })
}

/// ONNX Runtime's `com.microsoft.MatMulNBits` (what the weight-only variants write for it):
/// `A [.., K]` times a packed `[K, N]` weight, `K` and `N` in its attributes.
pub(super) fn contrib_rules(node: &NodeProto) -> Option<Rules> {
    (node.domain() == "com.microsoft" && node.op_type() == "MatMulNBits")
        .then(|| Rules::multiplying(nbits, nbits_macs))
}

/// The output shape of MatMulNBits and its MACs.
fn nbits_dims(inputs: &dyn Inputs) -> Inferred<(Vec<usize>, u64)> {
    let attr = |name: &str| {
        let value = inputs.node().attr_i(name).filter(|&v| v > 0);
        value
            .map(|v| v as usize)
            .ok_or(format!("no positive attribute {name}"))
    };
    let (k, n) = (attr("K")?, attr("N")?);
    match inputs.shape(0)?.split_last() {
        Some((&last, lead)) if last == k => {
            let rows: usize = lead.iter().product();
            let mut out = lead.to_vec();
            out.push(n);
            Ok((out, (rows * k * n) as u64))
        }
        _ => Err(format!("the last dimension of A is not K = {k}")),
    }
}

fn nbits(cx: &Ctx) -> Inferred<Vec<Fact>> {
    Ok(vec![Fact::new(nbits_dims(cx)?.0, cx.elem(0))])
}

fn nbits_macs(inputs: &Recorded) -> Inferred<u64> {
    Ok(nbits_dims(inputs)?.1)
}

fn matmul(cx: &Ctx) -> Inferred<Vec<Fact>> {
    Ok(vec![Fact::new(operands(cx)?.out, product_elem(cx))])
}

fn matmul_macs(inputs: &Recorded) -> Inferred<u64> {
    let d = operands(inputs)?;
    Ok(d.batch * d.m * d.k * d.n)
}

fn gemm(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let (m, _, n) = gemm_dims(cx)?;
    Ok(vec![Fact::new(vec![m, n], cx.elem(0))])
}

fn gemm_macs(inputs: &Recorded) -> Inferred<u64> {
    let (m, k, n) = gemm_dims(inputs)?;
    Ok((m * k * n) as u64)
}

/// The dims of a matrix product, numpy `matmul` semantics (1-D operands promoted and their
/// unit dimension dropped, batch dimensions broadcast).
struct MatMulDims {
    out: Vec<usize>,
    batch: u64,
    m: u64,
    k: u64,
    n: u64,
}

/// The dims of MatMul, MatMulInteger or QLinearMatMul from the shapes of its operands.
fn operands(inputs: &dyn Inputs) -> Inferred<MatMulDims> {
    let b = second_operand(inputs.node().op_type());
    matmul_dims(inputs.shape(0)?, inputs.shape(b)?)
}

fn matmul_dims(a: &[usize], b: &[usize]) -> Inferred<MatMulDims> {
    if a.is_empty() || b.is_empty() {
        return Err("MatMul of a scalar".into());
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(format!(
            "MatMul of {a:?} and {b:?}: inner dimensions differ"
        ));
    }
    let batch_dims = broadcast(&[&a2[..a2.len() - 2], &b2[..b2.len() - 2]])?;
    let mut out = batch_dims.clone();
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Ok(MatMulDims {
        out,
        batch: elements(&batch_dims),
        m: m as u64,
        k: k as u64,
        n: n as u64,
    })
}

/// The `(M, K, N)` of a Gemm from the shapes of A and B and its transpose flags.
fn gemm_dims(inputs: &dyn Inputs) -> Inferred<(usize, usize, usize)> {
    let (a, b) = (inputs.shape(0)?, inputs.shape(1)?);
    if a.len() != 2 || b.len() != 2 {
        return Err(format!("Gemm wants 2-D operands, got {a:?} and {b:?}"));
    }
    let flag = |name: &str| inputs.node().attr_i(name).unwrap_or(0) != 0;
    let (m, k) = if flag("transA") {
        (a[1], a[0])
    } else {
        (a[0], a[1])
    };
    let (k2, n) = if flag("transB") {
        (b[1], b[0])
    } else {
        (b[0], b[1])
    };
    if k != k2 {
        return Err(format!("Gemm of {a:?} and {b:?}: inner dimensions differ"));
    }
    Ok((m, k, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplies_batched_and_promoted_matrices() {
        let d = matmul_dims(&[2, 1, 5, 8], &[3, 8, 7]).unwrap();
        assert_eq!(
            (d.out, d.batch, d.m, d.k, d.n),
            (vec![2, 3, 5, 7], 6, 5, 8, 7)
        );
        let d = matmul_dims(&[8], &[4, 8, 3]).unwrap();
        assert_eq!(d.out, vec![4, 3]);
        assert_eq!(matmul_dims(&[5, 8], &[8]).unwrap().out, vec![5]);
        assert!(matmul_dims(&[5, 8], &[7, 2]).is_err());
    }
}
