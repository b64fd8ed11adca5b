//! The backend's own program: values (inputs, weights, intermediates), strided views of them, and
//! the kernel steps that compute them, each followed by an epilogue expression that fused
//! element-wise operators ride on.

use std::sync::Arc;

use tract_onnx::prelude::Tensor as TractTensor;

pub(crate) type ValueId = usize;

/// Element type of a tensor as the kernels see it. Integers of every width live in `i32` on the
/// device (WGSL has no 64-bit integers), booleans too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ElemType {
    F32,
    F16,
    I32,
    Bool,
}

/// The type an expression is computed in: floats in f32 whatever their storage, so f16 tensors
/// lose precision only where they are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Scalar {
    F32,
    I32,
    Bool,
}

impl ElemType {
    pub fn compute(self) -> Scalar {
        match self {
            ElemType::F32 | ElemType::F16 => Scalar::F32,
            ElemType::I32 => Scalar::I32,
            ElemType::Bool => Scalar::Bool,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, ElemType::F32 | ElemType::F16)
    }
}

pub(crate) enum Origin {
    /// A model input (its position is in [`Program::inputs`]).
    Input,
    /// A constant from the model (weights, folded shapes), uploaded once at load.
    Const(Arc<TractTensor>),
    /// Written by a step.
    Computed,
}

pub(crate) struct Value {
    pub shape: Vec<usize>,
    pub ty: ElemType,
    pub origin: Origin,
}

impl Value {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A strided window on a value's buffer, in elements. Reshapes, transposes, slices, strided
/// sub-sampling and broadcasts are views: no kernel runs for them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct View {
    pub value: ValueId,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
}

pub(crate) fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

impl View {
    pub fn whole(value: ValueId, shape: &[usize]) -> View {
        View {
            value,
            offset: 0,
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_contiguous(&self) -> bool {
        self.shape
            .iter()
            .zip(&self.strides)
            .zip(contiguous_strides(&self.shape))
            .all(|((&d, &s), c)| d == 1 || s == c)
    }

    /// The whole of `value` in its natural order (any shape of the same size).
    pub fn is_plain_of(&self, value: &Value) -> bool {
        self.offset == 0 && self.numel() == value.numel() && self.is_contiguous()
    }

    pub fn permute(&self, order: &[usize]) -> View {
        View {
            value: self.value,
            offset: self.offset,
            shape: order.iter().map(|&a| self.shape[a]).collect(),
            strides: order.iter().map(|&a| self.strides[a]).collect(),
        }
    }

    /// tract's `Move(from, to)`: take axis `from` out and put it back at position `to`.
    pub fn move_axis(&self, from: usize, to: usize) -> View {
        let mut order: Vec<usize> = (0..self.shape.len()).collect();
        let axis = order.remove(from);
        order.insert(to, axis);
        self.permute(&order)
    }

    pub fn insert_axis(&self, at: usize) -> View {
        let mut v = self.clone();
        v.shape.insert(at, 1);
        v.strides.insert(at, 0);
        v
    }

    pub fn remove_axis(&self, at: usize) -> View {
        let mut v = self.clone();
        v.shape.remove(at);
        v.strides.remove(at);
        v
    }

    pub fn slice(&self, axis: usize, start: usize, end: usize) -> View {
        let mut v = self.clone();
        v.offset += start * self.strides[axis];
        v.shape[axis] = end.saturating_sub(start);
        v
    }

    /// Every `stride`-th element of `axis`, starting at `modulo`.
    pub fn downsample(&self, axis: usize, stride: usize, modulo: usize) -> View {
        let mut v = self.clone();
        let len = self.shape[axis];
        v.shape[axis] = if modulo >= len {
            0
        } else {
            (len - modulo).div_ceil(stride)
        };
        v.offset += modulo.min(len) * self.strides[axis];
        v.strides[axis] *= stride;
        v
    }

    /// Numpy broadcasting to `shape` (right-aligned; size-1 axes repeat with stride 0).
    pub fn broadcast_to(&self, shape: &[usize]) -> Option<View> {
        if shape.len() < self.shape.len() {
            return None;
        }
        let lead = shape.len() - self.shape.len();
        let mut strides = vec![0; shape.len()];
        for (d, &size) in shape.iter().enumerate() {
            if d < lead {
                continue;
            }
            let (own, stride) = (self.shape[d - lead], self.strides[d - lead]);
            strides[d] = if own == size {
                if size == 1 { 0 } else { stride }
            } else if own == 1 {
                0
            } else {
                return None;
            };
        }
        Some(View {
            value: self.value,
            offset: self.offset,
            shape: shape.to_vec(),
            strides,
        })
    }

    /// The same elements in row-major order under a new shape, without a copy when the strides
    /// allow it (numpy's rule: each group of old axes that maps onto new axes is contiguous).
    pub fn reshape(&self, shape: &[usize]) -> Option<View> {
        if shape.iter().product::<usize>() != self.numel() {
            return None;
        }
        if self.numel() == 0 || self.is_contiguous() {
            return Some(View {
                value: self.value,
                offset: self.offset,
                shape: shape.to_vec(),
                strides: contiguous_strides(shape),
            });
        }
        let old: Vec<(usize, usize)> = self
            .shape
            .iter()
            .copied()
            .zip(self.strides.iter().copied())
            .filter(|(d, _)| *d != 1)
            .collect();
        let mut strides = vec![0; shape.len()];
        let (mut oi, mut ni) = (0, 0);
        while ni < shape.len() {
            if shape[ni] == 1 {
                ni += 1;
                continue;
            }
            // Gather one group: old axes oi..oj and new axes ni..nj with equal products.
            let (mut op, mut np) = (old[oi].0, shape[ni]);
            let (mut oj, mut nj) = (oi + 1, ni + 1);
            while op != np {
                if op < np {
                    op *= old[oj].0;
                    oj += 1;
                } else {
                    while nj < shape.len() && shape[nj] == 1 {
                        nj += 1;
                    }
                    np *= shape[nj];
                    nj += 1;
                }
            }
            for k in oi..oj - 1 {
                if old[k].1 != old[k + 1].1 * old[k + 1].0 {
                    return None;
                }
            }
            let mut stride = old[oj - 1].1;
            for k in (ni..nj).rev() {
                strides[k] = stride;
                stride *= shape[k];
            }
            oi = oj;
            ni = nj;
        }
        Some(View {
            value: self.value,
            offset: self.offset,
            shape: shape.to_vec(),
            strides,
        })
    }

    /// Axes merged where the strides allow and size-1 axes dropped: the cheapest index
    /// arithmetic for the same elements in the same order.
    pub fn simplified(&self) -> (Vec<usize>, Vec<usize>) {
        let mut shape: Vec<usize> = Vec::new();
        let mut strides: Vec<usize> = Vec::new();
        for (&d, &s) in self.shape.iter().zip(&self.strides) {
            if d == 1 {
                continue;
            }
            if let (Some(last_d), Some(last_s)) = (shape.last_mut(), strides.last_mut())
                && *last_s == s * d
            {
                *last_d *= d;
                *last_s = s;
                continue;
            }
            shape.push(d);
            strides.push(s);
        }
        (shape, strides)
    }
}

/// A literal in an expression.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Literal {
    F32(f32),
    I32(i32),
    Bool(bool),
}

impl Literal {
    pub fn scalar(self) -> Scalar {
        match self {
            Literal::F32(_) => Scalar::F32,
            Literal::I32(_) => Scalar::I32,
            Literal::Bool(_) => Scalar::Bool,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum UnaryOp {
    Neg,
    Abs,
    Exp,
    Ln,
    Sqrt,
    Rsqrt,
    Recip,
    Square,
    Floor,
    Ceil,
    /// Halves away from zero (tract's `Round`).
    Round,
    RoundHalfToEven,
    Sign,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Erf,
    Sigmoid,
    Silu,
    GeluExact,
    /// tanh approximation; `fast` uses x² instead of x³ as tract's fast variant does.
    GeluApprox {
        fast: bool,
    },
    HardSwish,
    LeakyRelu(f32),
    PowConst(f32),
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Min,
    Max,
    Pow,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    And,
    Or,
    Xor,
}

impl BinaryOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Gt | BinaryOp::Le | BinaryOp::Ge
        )
    }
}

/// What a kernel does with each value it produces before storing it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    /// The kernel's own result for this output element.
    Acc,
    /// Operand `n` of the step, read at the output element's position.
    Load(usize),
    Lit(Literal),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `if cond { a } else { b }`.
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
    Cast(Scalar, Box<Expr>),
}

impl Expr {
    /// The type the expression computes in, given the kernel's and the operands' types.
    pub fn scalar(&self, acc: Scalar, operands: &[Scalar]) -> Scalar {
        match self {
            Expr::Acc => acc,
            Expr::Load(i) => operands[*i],
            Expr::Lit(l) => l.scalar(),
            Expr::Unary(_, e) => e.scalar(acc, operands),
            Expr::Binary(op, a, _) => {
                if op.is_comparison() {
                    Scalar::Bool
                } else {
                    a.scalar(acc, operands)
                }
            }
            Expr::Select(_, a, _) => a.scalar(acc, operands),
            Expr::Cast(to, _) => *to,
        }
    }

    /// The expression with every `Load(j)` replaced by `f(j)`.
    pub fn map_loads(&self, f: &dyn Fn(usize) -> Expr) -> Expr {
        match self {
            Expr::Load(j) => f(*j),
            Expr::Acc | Expr::Lit(_) => self.clone(),
            Expr::Unary(op, e) => Expr::Unary(*op, Box::new(e.map_loads(f))),
            Expr::Binary(op, a, b) => {
                Expr::Binary(*op, Box::new(a.map_loads(f)), Box::new(b.map_loads(f)))
            }
            Expr::Select(c, a, b) => Expr::Select(
                Box::new(c.map_loads(f)),
                Box::new(a.map_loads(f)),
                Box::new(b.map_loads(f)),
            ),
            Expr::Cast(to, e) => Expr::Cast(*to, Box::new(e.map_loads(f))),
        }
    }

    pub fn loads(&self, out: &mut Vec<usize>) {
        match self {
            Expr::Load(i) => out.push(*i),
            Expr::Acc | Expr::Lit(_) => {}
            Expr::Unary(_, e) | Expr::Cast(_, e) => e.loads(out),
            Expr::Binary(_, a, b) => {
                a.loads(out);
                b.loads(out);
            }
            Expr::Select(c, a, b) => {
                c.loads(out);
                a.loads(out);
                b.loads(out);
            }
        }
    }

    /// Short names of the operators in the expression, for the step's label.
    pub fn op_names(&self, out: &mut Vec<String>) {
        match self {
            Expr::Acc | Expr::Load(_) | Expr::Lit(_) => {}
            Expr::Unary(op, e) => {
                e.op_names(out);
                out.push(format!("{op:?}"));
            }
            Expr::Cast(to, e) => {
                e.op_names(out);
                out.push(format!("Cast({to:?})"));
            }
            Expr::Binary(op, a, b) => {
                a.op_names(out);
                b.op_names(out);
                out.push(format!("{op:?}"));
            }
            Expr::Select(c, a, b) => {
                c.op_names(out);
                a.op_names(out);
                b.op_names(out);
                out.push("Select".into());
            }
        }
    }
}

/// `C[b, m, n] = sum_k A[b, m, k] * B[b, k, n]`; the inputs are 3-d views `[batch, m, k]` and
/// `[batch, k, n]`, the output is written through `c_strides` (batch, m, n) into a contiguous
/// buffer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Gemm {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub c_strides: [usize; 3],
}

/// A 2-d convolution (1-d ones get a unit height). The input view is `[N, C, H, W]` and the
/// kernel view `[O, I/group, KH, KW]`, whatever their memory layout; the output is written
/// through `out_strides` (n, c, h, w).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Conv {
    pub batch: usize,
    pub groups: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub input_hw: [usize; 2],
    pub output_hw: [usize; 2],
    pub kernel_hw: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub pad_before: [usize; 2],
    pub out_strides: [usize; 4],
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum PoolKind {
    Max,
    /// Sum over the window, divided by the window size (counting padding or not) when `normalize`.
    Sum {
        normalize: bool,
        count_include_pad: bool,
    },
}

/// Max or average pooling over `[N, C, H, W]` views, with the same geometry fields as [`Conv`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Pool {
    pub kind: PoolKind,
    pub batch: usize,
    pub channels: usize,
    pub input_hw: [usize; 2],
    pub output_hw: [usize; 2],
    pub kernel_hw: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub pad_before: [usize; 2],
    pub out_strides: [usize; 4],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reducer {
    Sum,
    Prod,
    Max,
    Min,
    MeanOfSquares,
    ArgMax { last: bool },
    ArgMin { last: bool },
}

/// Row-wise operations. The input view holds the kept axes first, then the reduced (or
/// normalised) ones: a row is one position of the kept axes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum RowOp {
    /// One output element per row.
    Reduce(Reducer),
    /// `x / sqrt(mean(x²) + eps)`, one output per input element.
    RmsNorm {
        eps: f32,
    },
    Softmax {
        log: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Rows {
    pub op: RowOp,
    /// How many leading axes of the input view are kept.
    pub kept_rank: usize,
    /// Output strides per axis of the input view (0 on the reduced axes of a reduction).
    pub out_strides: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PadMode {
    Constant(Literal),
    Reflect,
    Edge,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kernel {
    /// Output element `i` is the epilogue alone (element-wise operators, copies, casts).
    Map,
    Gemm(Gemm),
    Conv(Conv),
    /// A transposed convolution (ConvTranspose) with the same geometry fields as [`Conv`]
    /// (`input_hw` the input's, `pad_before` the padding cut from the full output); the kernel
    /// view is `[O, I/group, KH, KW]` as for a convolution.
    Deconv(Conv),
    Pool(Pool),
    Rows(Rows),
    /// `inputs[0]` indexed along `axis` by the values of `inputs[1]`.
    Gather {
        axis: usize,
    },
    /// The inputs laid end to end along `axis`.
    Concat {
        axis: usize,
    },
    Pad {
        pads: Vec<(usize, usize)>,
        mode: PadMode,
    },
    /// Resize along one axis: output position `x` of `axis` is the sum over `window` taps `k` of
    /// `inputs[2][x * window + k] * inputs[0][.., inputs[1][x * window + k], ..]` (tap indices
    /// as i32, weights as f32, both precomputed from tract's resampling plan).
    Resample {
        axis: usize,
        window: usize,
    },
    /// ONNX GatherElements: the output (shaped like `inputs[1]`, the indices) reads
    /// `inputs[0]` at its own position with the coordinate along `axis` replaced by the index.
    GatherElements {
        axis: usize,
    },
    /// Running sums of `inputs[0]` along `axis`, from the far end when `reverse`, leaving each
    /// element itself out when `exclusive`.
    CumSum {
        axis: usize,
        exclusive: bool,
        reverse: bool,
    },
    /// The `k` (the output's length along `axis`) largest or smallest elements of `inputs[0]`
    /// along `axis`, best first, ties in index order: their values, or their indices when
    /// `indices`.
    TopK {
        axis: usize,
        largest: bool,
        indices: bool,
    },
    /// ONNX ScatterND without reduction: `inputs[0]` with the slices that the index tuples of
    /// `inputs[1]` (its last axis) point at replaced by those of `inputs[2]`; where tuples repeat,
    /// the last one wins.
    ScatterNd,
}

/// One kernel launch.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    /// The model nodes it computes, for errors and the profile.
    pub nodes: Vec<String>,
    pub kernel: Kernel,
    /// The kernel's main inputs, in the shape its definition above says.
    pub inputs: Vec<View>,
    /// Epilogue operands, each shaped like the output (broadcast views where needed).
    pub operands: Vec<View>,
    pub epilogue: Expr,
    pub output: ValueId,
}

impl Step {
    /// The operator names, fused ones included ("Conv+Add+Max").
    pub fn label(&self) -> String {
        let head = match &self.kernel {
            Kernel::Map => None,
            Kernel::Gemm(_) => Some("MatMul".to_string()),
            Kernel::Conv(c) if c.groups > 1 && c.groups == c.in_channels => {
                Some("DepthwiseConv".into())
            }
            Kernel::Conv(_) => Some("Conv".into()),
            Kernel::Deconv(_) => Some("ConvTranspose".into()),
            Kernel::Pool(p) => Some(match p.kind {
                PoolKind::Max => "MaxPool".into(),
                PoolKind::Sum { .. } => "AveragePool".into(),
            }),
            Kernel::Rows(r) => Some(match &r.op {
                RowOp::Reduce(reducer) => format!("Reduce{reducer:?}"),
                RowOp::RmsNorm { .. } => "RmsNorm".into(),
                RowOp::Softmax { log: false } => "Softmax".into(),
                RowOp::Softmax { log: true } => "LogSoftmax".into(),
            }),
            Kernel::Gather { .. } => Some("Gather".into()),
            Kernel::Concat { .. } => Some("Concat".into()),
            Kernel::Pad { .. } => Some("Pad".into()),
            Kernel::Resample { .. } => Some("Resize".into()),
            Kernel::GatherElements { .. } => Some("GatherElements".into()),
            Kernel::CumSum { .. } => Some("CumSum".into()),
            Kernel::TopK { .. } => Some("TopK".into()),
            Kernel::ScatterNd => Some("ScatterND".into()),
        };
        let mut names: Vec<String> = head.into_iter().collect();
        self.epilogue.op_names(&mut names);
        if names.is_empty() {
            names.push("Copy".into());
        }
        names.join("+")
    }
}

/// A whole model, ready to be placed on a device.
pub(crate) struct Program {
    pub values: Vec<Value>,
    pub steps: Vec<Step>,
    /// Values bound to the model inputs, in order.
    pub inputs: Vec<ValueId>,
    /// Values read back as the model outputs, in order; each is a computed value stored whole.
    pub outputs: Vec<ValueId>,
    /// Whether f16 tensors of the model are held as f32 (the adapter lacks SHADER_F16).
    pub f16_widened: bool,
}

impl Program {
    pub fn add_value(&mut self, shape: Vec<usize>, ty: ElemType, origin: Origin) -> ValueId {
        self.values.push(Value { shape, ty, origin });
        self.values.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_of_a_transposed_view_splits_only_contiguous_groups() {
        let v = View::whole(0, &[2, 3, 4]).permute(&[0, 2, 1]); // [2, 4, 3], strides [12, 1, 4]
        assert_eq!(v.reshape(&[2, 12]), None);
        let split = v.reshape(&[2, 2, 2, 3]).unwrap();
        assert_eq!(split.strides, vec![12, 2, 1, 4]);
        let t = View::whole(0, &[6, 4]).slice(1, 0, 2); // [6, 2], strides [4, 1]
        assert_eq!(t.reshape(&[2, 3, 2]).unwrap().strides, vec![12, 4, 1]);
        assert_eq!(t.reshape(&[12]), None);
    }

    #[test]
    fn broadcast_and_downsample_views() {
        let b = View::whole(0, &[3, 1]).broadcast_to(&[2, 3, 4]).unwrap();
        assert_eq!(b.strides, vec![0, 1, 0]);
        assert!(View::whole(0, &[3]).broadcast_to(&[4]).is_none());
        let d = View::whole(0, &[1, 7]).downsample(1, 2, 1);
        assert_eq!((d.shape[1], d.offset, d.strides[1]), (3, 1, 2));
    }

    #[test]
    fn simplified_merges_contiguous_axes() {
        let v = View::whole(0, &[2, 1, 3, 4]);
        assert_eq!(v.simplified(), (vec![24], vec![1]));
        let p = View::whole(0, &[2, 3, 4]).permute(&[1, 0, 2]);
        assert_eq!(p.simplified(), (vec![3, 2, 4], vec![4, 12, 1]));
    }
}
