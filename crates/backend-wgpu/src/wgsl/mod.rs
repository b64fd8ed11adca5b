//! WGSL generation. Every shape, stride and offset is a literal in the source, so the compiler
//! folds index arithmetic (divisions by constants become multiplies) and unrolls fixed loops;
//! identical layers share one pipeline because their sources are equal. Each kernel computes an
//! output's flat index `o` and its value, and hands both to `emit`, which applies the step's
//! epilogue (fused bias, activation, residual...) and stores.

mod gemm;
mod kernels;

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::graph::{
    BinaryOp, ElemType, Expr, Kernel, Literal, Program, Scalar, Step, UnaryOp, ValueId, View,
};

pub(crate) use gemm::naive_gemm_shader;

/// Largest workgroup count per dispatch dimension that every WebGPU device accepts.
pub(crate) const MAX_GROUPS: u32 = 65535;

/// A kernel ready to compile: its source, its bindings in order (the output last) and its grid.
#[derive(Clone, Debug)]
pub(crate) struct Shader {
    pub source: String,
    /// Values bound at binding 0, 1, ...: read-only ones, then the output.
    pub bindings: Vec<ValueId>,
    pub workgroups: [u32; 3],
}

/// Generates the shader of one step.
pub(crate) fn shader(program: &Program, step: &Step) -> Result<Shader, String> {
    let mut b = Builder::new(program);
    let (body, workgroups) = match &step.kernel {
        Kernel::Map => kernels::map(&mut b, step),
        Kernel::Gemm(g) => gemm::gemm(&mut b, step, g),
        Kernel::Conv(c) => gemm::conv(&mut b, step, c),
        Kernel::Deconv(c) => kernels::deconv(&mut b, step, c),
        Kernel::Pool(p) => kernels::pool(&mut b, step, p),
        Kernel::Rows(r) => kernels::rows(&mut b, step, r),
        Kernel::Gather { axis } => kernels::gather(&mut b, step, *axis),
        Kernel::Concat { axis } => kernels::concat(&mut b, step, *axis),
        Kernel::Pad { pads, mode } => kernels::pad(&mut b, step, pads, mode),
        Kernel::Resample { axis, window } => kernels::resample(&mut b, step, *axis, *window),
        Kernel::GatherElements { axis } => kernels::gather_elements(&mut b, step, *axis),
        Kernel::CumSum {
            axis,
            exclusive,
            reverse,
        } => kernels::cumsum(&mut b, step, *axis, *exclusive, *reverse),
        Kernel::TopK {
            axis,
            largest,
            indices,
        } => kernels::top_k(&mut b, step, *axis, *largest, *indices),
        Kernel::ScatterNd => kernels::scatter_nd(&mut b, step),
    }?;
    assemble(b, step, body, workgroups)
}

/// Header, helpers, the `emit` function and the kernel body in one source.
fn assemble(
    mut b: Builder,
    step: &Step,
    body: String,
    workgroups: [u32; 3],
) -> Result<Shader, String> {
    let out_ty = b.program.values[step.output].ty;
    let acc_ty = acc_scalar(b.program, step);
    let emit = b.emit_function(step, acc_ty, out_ty);
    let mut source = b.header(out_ty);
    source.push_str(PRELUDE);
    source.push_str(&emit);
    source.push_str(&body);
    let mut bindings: Vec<ValueId> = b.bindings.iter().map(|(v, _)| *v).collect();
    bindings.push(step.output);
    Ok(Shader {
        source,
        bindings,
        workgroups,
    })
}

/// The type of the kernel's own result (`Acc` in the epilogue).
pub(crate) fn acc_scalar(program: &Program, step: &Step) -> Scalar {
    use crate::graph::{Reducer, RowOp};
    match &step.kernel {
        Kernel::Map => Scalar::F32, // no Acc in a map epilogue
        Kernel::Gemm(_)
        | Kernel::Conv(_)
        | Kernel::Deconv(_)
        | Kernel::Pool(_)
        | Kernel::Resample { .. } => Scalar::F32,
        Kernel::TopK { indices: true, .. } => Scalar::I32,
        Kernel::TopK { .. } => program.values[step.inputs[0].value].ty.compute(),
        Kernel::Rows(r) => match r.op {
            RowOp::Reduce(Reducer::ArgMax { .. } | Reducer::ArgMin { .. }) => Scalar::I32,
            _ => Scalar::F32,
        },
        Kernel::Gather { .. }
        | Kernel::Concat { .. }
        | Kernel::Pad { .. }
        | Kernel::GatherElements { .. }
        | Kernel::CumSum { .. }
        | Kernel::ScatterNd => program.values[step.inputs[0].value].ty.compute(),
    }
}

/// Splits `groups` workgroups over x and y so neither exceeds the per-dimension limit; the
/// kernel recovers the linear id as `wg.y * x + wg.x`.
pub(crate) fn grid(groups: usize) -> [u32; 3] {
    let groups = groups.max(1) as u32;
    let x = groups.min(MAX_GROUPS);
    [x, groups.div_ceil(x), 1]
}

pub(crate) struct Builder<'p> {
    pub program: &'p Program,
    /// Read-only bindings: value and its WGSL name.
    bindings: Vec<(ValueId, String)>,
}

impl<'p> Builder<'p> {
    fn new(program: &'p Program) -> Self {
        Builder {
            program,
            bindings: Vec::new(),
        }
    }

    /// The WGSL name of a read-only buffer, bound on first use.
    pub fn buffer(&mut self, value: ValueId) -> String {
        if let Some((_, name)) = self.bindings.iter().find(|(v, _)| *v == value) {
            return name.clone();
        }
        let name = format!("in{}", self.bindings.len());
        self.bindings.push((value, name.clone()));
        name
    }

    pub fn ty(&self, value: ValueId) -> ElemType {
        self.program.values[value].ty
    }

    /// An element of `view` at element index `index` (a WGSL `u32` expression), converted to
    /// its compute type.
    pub fn load(&mut self, view: &View, index: &str) -> String {
        let name = self.buffer(view.value);
        load_as_compute(self.ty(view.value), &format!("{name}[{index}]"))
    }

    fn header(&self, out_ty: ElemType) -> String {
        let mut s = String::new();
        let f16 = out_ty == ElemType::F16
            || self
                .bindings
                .iter()
                .any(|(v, _)| self.ty(*v) == ElemType::F16);
        if f16 {
            s.push_str("enable f16;\n");
        }
        for (i, (v, name)) in self.bindings.iter().enumerate() {
            let _ = writeln!(
                s,
                "@group(0) @binding({i}) var<storage, read> {name}: array<{}>;",
                storage_type(self.ty(*v))
            );
        }
        let _ = writeln!(
            s,
            "@group(0) @binding({}) var<storage, read_write> out: array<{}>;",
            self.bindings.len(),
            storage_type(out_ty)
        );
        s
    }

    /// `fn emit(o: u32, acc: T)`: evaluates the epilogue for output element `o` and stores it.
    fn emit_function(&mut self, step: &Step, acc_ty: Scalar, out_ty: ElemType) -> String {
        let mut lines = String::new();
        let mut names = BTreeMap::new();
        let mut used = Vec::new();
        step.epilogue.loads(&mut used);
        used.sort_unstable();
        used.dedup();
        for j in used {
            let view = &step.operands[j];
            let index = flat_index(view, "o");
            let load = self.load(view, &index);
            let _ = writeln!(lines, "  let e{j} = {load};");
            names.insert(j, format!("e{j}"));
        }
        let operand_types: Vec<Scalar> = step
            .operands
            .iter()
            .map(|v| self.ty(v.value).compute())
            .collect();
        let value = expr(&step.epilogue, acc_ty, &operand_types, &names);
        let result_ty = step.epilogue.scalar(acc_ty, &operand_types);
        let stored = store_from_compute(out_ty, &convert(&value, result_ty, out_ty.compute()));
        format!(
            "fn emit(o: u32, acc: {}) {{\n{lines}  out[o] = {stored};\n}}\n",
            compute_type(acc_ty)
        )
    }
}

pub(crate) fn storage_type(ty: ElemType) -> &'static str {
    match ty {
        ElemType::F32 => "f32",
        ElemType::F16 => "f16",
        ElemType::I32 | ElemType::Bool => "i32",
    }
}

pub(crate) fn compute_type(ty: Scalar) -> &'static str {
    match ty {
        Scalar::F32 => "f32",
        Scalar::I32 => "i32",
        Scalar::Bool => "bool",
    }
}

fn load_as_compute(ty: ElemType, raw: &str) -> String {
    match ty {
        ElemType::F32 | ElemType::I32 => raw.to_string(),
        ElemType::F16 => format!("f32({raw})"),
        ElemType::Bool => format!("({raw} != 0)"),
    }
}

fn store_from_compute(ty: ElemType, value: &str) -> String {
    match ty {
        ElemType::F32 | ElemType::I32 => value.to_string(),
        ElemType::F16 => format!("f16({value})"),
        ElemType::Bool => format!("select(0, 1, {value})"),
    }
}

/// The zero of a compute type, for padding and masked loads.
pub(crate) fn zero(ty: Scalar) -> &'static str {
    match ty {
        Scalar::F32 => "0.0",
        Scalar::I32 => "0",
        Scalar::Bool => "false",
    }
}

fn convert(value: &str, from: Scalar, to: Scalar) -> String {
    match (from, to) {
        (a, b) if a == b => value.to_string(),
        (Scalar::Bool, Scalar::F32) => format!("select(0.0, 1.0, {value})"),
        (Scalar::Bool, Scalar::I32) => format!("select(0, 1, {value})"),
        (Scalar::F32, Scalar::Bool) => format!("({value} != 0.0)"),
        (Scalar::I32, Scalar::Bool) => format!("({value} != 0)"),
        (_, to) => format!("{}({value})", compute_type(to)),
    }
}

pub(crate) fn literal(l: Literal) -> String {
    match l {
        Literal::F32(v) => format!("bitcast<f32>({:#010x}u)", v.to_bits()),
        Literal::I32(v) => format!("bitcast<i32>({:#010x}u)", v as u32),
        Literal::Bool(v) => v.to_string(),
    }
}

fn f32_literal(v: f32) -> String {
    literal(Literal::F32(v))
}

/// The WGSL text of an epilogue expression.
fn expr(e: &Expr, acc_ty: Scalar, operands: &[Scalar], names: &BTreeMap<usize, String>) -> String {
    let sub = |e: &Expr| expr(e, acc_ty, operands, names);
    match e {
        Expr::Acc => "acc".into(),
        Expr::Load(j) => names[j].clone(),
        Expr::Lit(l) => literal(*l),
        Expr::Unary(op, x) => unary(*op, &sub(x), x.scalar(acc_ty, operands)),
        Expr::Binary(op, a, b) => binary(*op, &sub(a), &sub(b), a.scalar(acc_ty, operands)),
        Expr::Select(c, a, b) => format!("select({}, {}, {})", sub(b), sub(a), sub(c)),
        Expr::Cast(to, x) => convert(&sub(x), x.scalar(acc_ty, operands), *to),
    }
}

fn unary(op: UnaryOp, x: &str, ty: Scalar) -> String {
    match (ty, op) {
        (Scalar::I32, UnaryOp::Neg) => return format!("(-({x}))"),
        (Scalar::I32, UnaryOp::Abs) => return format!("abs({x})"),
        (Scalar::I32, UnaryOp::Sign) => return format!("sign({x})"),
        (Scalar::I32, UnaryOp::Square) => return format!("sq_i({x})"),
        (Scalar::Bool, UnaryOp::Not) => return format!("(!({x}))"),
        // Anything else on integers or booleans goes through f32, like a cast-op-cast chain.
        (Scalar::I32, _) => {
            return format!("i32({})", unary(op, &format!("f32({x})"), Scalar::F32));
        }
        (Scalar::Bool, _) => {
            return format!(
                "({} != 0.0)",
                unary(op, &format!("select(0.0, 1.0, {x})"), Scalar::F32)
            );
        }
        (Scalar::F32, _) => {}
    }
    match op {
        UnaryOp::Neg => format!("(-({x}))"),
        UnaryOp::Abs => format!("abs({x})"),
        UnaryOp::Exp => format!("exp({x})"),
        UnaryOp::Ln => format!("log({x})"),
        UnaryOp::Sqrt => format!("sqrt({x})"),
        UnaryOp::Rsqrt => format!("inverseSqrt({x})"),
        UnaryOp::Recip => format!("(1.0 / ({x}))"),
        UnaryOp::Square => format!("sq({x})"),
        UnaryOp::Floor => format!("floor({x})"),
        UnaryOp::Ceil => format!("ceil({x})"),
        UnaryOp::Round => format!("round_away({x})"),
        UnaryOp::RoundHalfToEven => format!("round({x})"),
        UnaryOp::Sign => format!("sign({x})"),
        UnaryOp::Sin => format!("sin({x})"),
        UnaryOp::Cos => format!("cos({x})"),
        UnaryOp::Tan => format!("tan({x})"),
        UnaryOp::Asin => format!("asin({x})"),
        UnaryOp::Acos => format!("acos({x})"),
        UnaryOp::Atan => format!("atan({x})"),
        UnaryOp::Sinh => format!("sinh_({x})"),
        UnaryOp::Cosh => format!("cosh_({x})"),
        UnaryOp::Tanh => format!("tanh_({x})"),
        UnaryOp::Erf => format!("erf_({x})"),
        UnaryOp::Sigmoid => format!("sigmoid({x})"),
        UnaryOp::Silu => format!("silu({x})"),
        UnaryOp::GeluExact => format!("gelu({x})"),
        UnaryOp::GeluApprox { fast: false } => format!("gelu_tanh({x}, 3.0)"),
        UnaryOp::GeluApprox { fast: true } => format!("gelu_tanh({x}, 2.0)"),
        UnaryOp::HardSwish => format!("hard_swish({x})"),
        UnaryOp::LeakyRelu(alpha) => format!("leaky_relu({x}, {})", f32_literal(alpha)),
        UnaryOp::PowConst(e) => format!("pow_f({x}, {})", f32_literal(e)),
        UnaryOp::Not => format!("select(0.0, 1.0, {x} == 0.0)"),
    }
}

fn binary(op: BinaryOp, a: &str, b: &str, ty: Scalar) -> String {
    match op {
        BinaryOp::Add => format!("({a} + {b})"),
        BinaryOp::Sub => format!("({a} - {b})"),
        BinaryOp::Mul => format!("({a} * {b})"),
        BinaryOp::Div => format!("({a} / {b})"),
        BinaryOp::Rem => format!("({a} % {b})"),
        BinaryOp::Min => format!("min({a}, {b})"),
        BinaryOp::Max => format!("max({a}, {b})"),
        BinaryOp::Pow if ty == Scalar::I32 => format!("i32(pow_f(f32({a}), f32({b})))"),
        BinaryOp::Pow => format!("pow_f({a}, {b})"),
        BinaryOp::Eq => format!("({a} == {b})"),
        BinaryOp::Ne => format!("({a} != {b})"),
        BinaryOp::Lt => format!("({a} < {b})"),
        BinaryOp::Gt => format!("({a} > {b})"),
        BinaryOp::Le => format!("({a} <= {b})"),
        BinaryOp::Ge => format!("({a} >= {b})"),
        BinaryOp::And => format!("({a} && {b})"),
        BinaryOp::Or => format!("({a} || {b})"),
        BinaryOp::Xor => format!("({a} != {b})"),
    }
}

/// Element index of `view` for output element `o`, where the view is shaped like the output:
/// `offset + sum_d ((o / inner_d) % dim_d) * stride_d`, with the axes merged first.
pub(crate) fn flat_index(view: &View, o: &str) -> String {
    let (shape, strides) = view.simplified();
    let terms = coordinate_terms(&shape, &strides, o);
    sum_terms(view.offset, terms)
}

/// `(coordinate expression, stride)` for every axis with a non-zero stride, the coordinates of
/// flat index `o` in a row-major array of `shape`.
pub(crate) fn coordinate_terms(shape: &[usize], strides: &[usize], o: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut inner = 1usize;
    for d in (0..shape.len()).rev() {
        if strides[d] != 0 && shape[d] > 1 {
            let mut c = if inner == 1 {
                o.to_string()
            } else {
                format!("({o} / {inner}u)")
            };
            if d > 0 {
                c = format!("({c} % {}u)", shape[d]);
            }
            terms.push(if strides[d] == 1 {
                c
            } else {
                format!("{c} * {}u", strides[d])
            });
        }
        inner *= shape[d];
    }
    terms
}

pub(crate) fn sum_terms(offset: usize, terms: Vec<String>) -> String {
    let mut parts = terms;
    if offset != 0 || parts.is_empty() {
        parts.push(format!("{offset}u"));
    }
    parts.join(" + ")
}

/// The coordinates of flat index `o` in `shape`, one WGSL expression per axis.
pub(crate) fn coordinates(shape: &[usize], o: &str) -> Vec<String> {
    let mut coords = vec![String::new(); shape.len()];
    let mut inner = 1usize;
    for d in (0..shape.len()).rev() {
        let mut c = if inner == 1 {
            o.to_string()
        } else {
            format!("({o} / {inner}u)")
        };
        if d > 0 {
            c = format!("({c} % {}u)", shape[d]);
        }
        coords[d] = if shape[d] == 1 { "0u".into() } else { c };
        inner *= shape[d];
    }
    coords
}

/// Helpers every shader may call. Transcendentals are written to stay finite where the naive
/// formula overflows (tanh, sinh, cosh of large arguments) and erf, absent from WGSL, follows
/// Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7).
const PRELUDE: &str = r#"
fn sq(x: f32) -> f32 { return x * x; }
fn sq_i(x: i32) -> i32 { return x * x; }
fn round_away(x: f32) -> f32 { return sign(x) * floor(abs(x) + 0.5); }
fn tanh_(x: f32) -> f32 { return tanh(clamp(x, -15.0, 15.0)); }
fn sinh_(x: f32) -> f32 { let e = exp(clamp(x, -88.0, 88.0)); return 0.5 * (e - 1.0 / e); }
fn cosh_(x: f32) -> f32 { let e = exp(clamp(x, -88.0, 88.0)); return 0.5 * (e + 1.0 / e); }
fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
fn silu(x: f32) -> f32 { return x * sigmoid(x); }
fn erf_(x: f32) -> f32 {
  let a = abs(x);
  let t = 1.0 / (1.0 + 0.3275911 * a);
  let p = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  return sign(x) * (1.0 - p * exp(-a * a));
}
fn gelu(x: f32) -> f32 { return 0.5 * x * (1.0 + erf_(x * 0.70710678118654752)); }
fn gelu_tanh(x: f32, power: f32) -> f32 {
  return 0.5 * x * (1.0 + tanh_(0.79788456080286536 * (x + 0.044715 * pow(abs(x), power) * select(1.0, sign(x), power == 3.0))));
}
fn hard_swish(x: f32) -> f32 { return x * clamp(x / 6.0 + 0.5, 0.0, 1.0); }
fn leaky_relu(x: f32, alpha: f32) -> f32 { return select(alpha * x, x, x >= 0.0); }
fn pow_f(x: f32, y: f32) -> f32 {
  if (y == 0.0) { return 1.0; }
  let m = pow(abs(x), y);
  if (x < 0.0 && y == floor(y)) { return select(m, -m, (abs(y) % 2.0) == 1.0); }
  return select(m, pow(x, y), x < 0.0);
}
"#;
