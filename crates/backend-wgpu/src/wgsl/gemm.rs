//! Matrix products and convolutions. Both run one tiled kernel: a workgroup computes a
//! `TM x TN` block of the output, staging `TM x TK` of A and `TK x TN` of B in workgroup memory
//! per step along K, and each invocation keeps an `RM x RN` block of accumulators in registers
//! (its rows and columns interleaved by the workgroup size, so neighbouring invocations read
//! neighbouring words). A convolution is the same kernel reading A as an implicit im2col matrix.
//! Convolutions with a tiny reduction (depthwise) use a direct kernel instead.

use std::fmt::Write;

use super::{Builder, Shader, grid};
use crate::graph::{Conv, Gemm, Program, Step, View};

/// Workgroup and register blocking of the tiled kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tiles {
    pub wx: usize,
    pub wy: usize,
    pub rm: usize,
    pub rn: usize,
    pub tk: usize,
}

impl Tiles {
    fn tm(&self) -> usize {
        self.wy * self.rm
    }
    fn tn(&self) -> usize {
        self.wx * self.rn
    }
    fn threads(&self) -> usize {
        self.wx * self.wy
    }

    /// 8x8 invocations with 8x8 accumulators each and 16-deep K steps for large products
    /// (measured fastest on lavapipe among 16x16/4x4, 8x8/4x8 and 8x8/8x8 blocks and K steps of
    /// 8, 16 and 32; a common shape on discrete GPUs; 10 KiB of workgroup memory, within
    /// WebGPU's 16 KiB default); narrower blocks where M or N is small so that fewer lanes idle.
    pub fn choose(m: usize, n: usize) -> Tiles {
        let regs = |extent: usize, lanes: usize, max: usize| {
            extent.div_ceil(lanes).next_power_of_two().clamp(1, max)
        };
        if m <= 4 {
            // Matrix-vector products: one row of 64 invocations, one column each.
            return Tiles {
                wx: 64,
                wy: 1,
                rm: m.max(1),
                rn: if n > 4096 { 2 } else { 1 },
                tk: 16,
            };
        }
        Tiles {
            wx: 8,
            wy: 8,
            rm: regs(m, 8, 8),
            rn: regs(n, 8, 8),
            tk: 16,
        }
    }
}

/// The three index functions a tiled product needs.
struct Operands {
    /// `fn load_a(z: u32, m: u32, k: u32) -> f32`, zero outside the matrix.
    load_a: String,
    /// `fn load_b(z: u32, k: u32, n: u32) -> f32`.
    load_b: String,
    /// `fn out_index(z: u32, m: u32, n: u32) -> u32`.
    out_index: String,
    /// Whether consecutive invocations should load consecutive k (else consecutive m / n).
    a_k_fastest: bool,
    b_k_fastest: bool,
}

/// Unchecked element reads of a plain product, for the naive kernel.
struct Direct {
    a: String,
    b: String,
}

pub(super) fn gemm(b: &mut Builder, step: &Step, g: &Gemm) -> Result<(String, [u32; 3]), String> {
    let (ops, _) = gemm_operands(b, step, g);
    tiled(ops, g.batch, g.m, g.n, g.k, Tiles::choose(g.m, g.n))
}

fn gemm_operands(b: &mut Builder, step: &Step, g: &Gemm) -> (Operands, Direct) {
    let (a, bm) = (&step.inputs[0], &step.inputs[1]);
    let a_load = b.load(a, &strided(a, ["z", "m", "k"]));
    let b_load = b.load(bm, &strided(bm, ["z", "k", "n"]));
    let direct = Direct {
        a: a_load.clone(),
        b: b_load.clone(),
    };
    let [cb, cm, cn] = g.c_strides;
    let ops = Operands {
        load_a: format!(
            "fn load_a(z: u32, m: u32, k: u32) -> f32 {{\n  if (m >= {}u || k >= {}u) {{ return 0.0; }}\n  return {a_load};\n}}\n",
            g.m, g.k
        ),
        load_b: format!(
            "fn load_b(z: u32, k: u32, n: u32) -> f32 {{\n  if (k >= {}u || n >= {}u) {{ return 0.0; }}\n  return {b_load};\n}}\n",
            g.k, g.n
        ),
        out_index: format!(
            "fn out_index(z: u32, m: u32, n: u32) -> u32 {{ return z * {cb}u + m * {cm}u + n * {cn}u; }}\n"
        ),
        a_k_fastest: a.strides[2] <= a.strides[1],
        b_k_fastest: bm.strides[1] < bm.strides[2],
    };
    (ops, direct)
}

/// `offset + i*s0 + j*s1 + k*s2` of a 3-d view, zero strides left out.
fn strided(view: &View, names: [&str; 3]) -> String {
    let mut terms: Vec<String> = names
        .iter()
        .zip(&view.strides)
        .zip(&view.shape)
        .filter(|((_, s), d)| **s != 0 && **d > 1)
        .map(|((n, s), _)| {
            if *s == 1 {
                n.to_string()
            } else {
                format!("{n} * {s}u")
            }
        })
        .collect();
    if view.offset != 0 || terms.is_empty() {
        terms.push(format!("{}u", view.offset));
    }
    terms.join(" + ")
}

/// A convolution: implicit GEMM, or the direct kernel when each output sums few products.
pub(super) fn conv(b: &mut Builder, step: &Step, c: &Conv) -> Result<(String, [u32; 3]), String> {
    let cin_g = c.in_channels / c.groups;
    let cout_g = c.out_channels / c.groups;
    let reduction = cin_g * c.kernel_hw[0] * c.kernel_hw[1];
    if cin_g == 1 || reduction <= 16 {
        return direct_conv(b, step, c);
    }
    let (x, w) = (&step.inputs[0], &step.inputs[1]);
    let [kh, kw] = c.kernel_hw;
    let [oh_n, ow_n] = c.output_hw;
    let (m, n, k) = (oh_n * ow_n, cout_g, reduction);
    let groups = c.groups;
    let x_index = conv_input_index(x, c, "n_img", "g", "ci", "ih", "iw");
    let x_load = b.load(x, &x_index);
    let w_index = format!(
        "{}u + (g * {cout_g}u + n) * {}u + ci * {}u + ky * {}u + kx * {}u",
        w.offset, w.strides[0], w.strides[1], w.strides[2], w.strides[3]
    );
    let w_load = b.load(w, &w_index);
    let [os0, os1, os2, os3] = c.out_strides;
    let decompose_k = format!(
        "  let ci = k / {khw}u; let r = k % {khw}u; let ky = r / {kw}u; let kx = r % {kw}u;\n",
        khw = kh * kw
    );
    let load_a = format!(
        "fn load_a(z: u32, m: u32, k: u32) -> f32 {{\n  if (m >= {m}u || k >= {k}u) {{ return 0.0; }}\n  \
         let n_img = z / {groups}u; let g = z % {groups}u;\n  let oh = m / {ow_n}u; let ow = m % {ow_n}u;\n{decompose_k}\
         {window}\n  return {x_load};\n}}\n",
        window = window_check(c, "oh", "ow", "return 0.0;"),
    );
    let load_b = format!(
        "fn load_b(z: u32, k: u32, n: u32) -> f32 {{\n  if (k >= {k}u || n >= {n}u) {{ return 0.0; }}\n  \
         let g = z % {groups}u;\n{decompose_k}  return {w_load};\n}}\n"
    );
    let out_index = format!(
        "fn out_index(z: u32, m: u32, n: u32) -> u32 {{\n  let n_img = z / {groups}u; let g = z % {groups}u;\n  \
         let oh = m / {ow_n}u; let ow = m % {ow_n}u;\n  \
         return n_img * {os0}u + (g * {cout_g}u + n) * {os1}u + oh * {os2}u + ow * {os3}u;\n}}\n"
    );
    let ops = Operands {
        load_a,
        load_b,
        out_index,
        a_k_fastest: false,
        b_k_fastest: w.strides[1] < w.strides[0],
    };
    tiled(ops, c.batch * groups, m, n, k, Tiles::choose(m, n))
}

/// Index of input element (image, channel of group `g`, row `ih`, column `iw`).
fn conv_input_index(x: &View, c: &Conv, n: &str, g: &str, ci: &str, ih: &str, iw: &str) -> String {
    let cin_g = c.in_channels / c.groups;
    format!(
        "{}u + {n} * {}u + ({g} * {cin_g}u + {ci}) * {}u + u32({ih}) * {}u + u32({iw}) * {}u",
        x.offset, x.strides[0], x.strides[1], x.strides[2], x.strides[3]
    )
}

/// Declares `ih`, `iw` for output (`oh`, `ow`) and kernel tap (`ky`, `kx`), running `outside`
/// when the tap falls in the padding.
fn window_check(c: &Conv, oh: &str, ow: &str, outside: &str) -> String {
    let [sh, sw] = c.strides;
    let [dh, dw] = c.dilations;
    let [ph, pw] = c.pad_before;
    let [h, w] = c.input_hw;
    format!(
        "  let ih = i32({oh} * {sh}u + ky * {dh}u) - {ph}; let iw = i32({ow} * {sw}u + kx * {dw}u) - {pw};\n  \
         if (ih < 0 || ih >= {h} || iw < 0 || iw >= {w}) {{ {outside} }}"
    )
}

/// One invocation per output element, looping over its group's input channels and the window.
fn direct_conv(b: &mut Builder, step: &Step, c: &Conv) -> Result<(String, [u32; 3]), String> {
    let (x, w) = (&step.inputs[0], &step.inputs[1]);
    let cin_g = c.in_channels / c.groups;
    let cout_g = c.out_channels / c.groups;
    let [kh, kw] = c.kernel_hw;
    let [oh_n, ow_n] = c.output_hw;
    let total = c.batch * c.out_channels * oh_n * ow_n;
    let x_load = b.load(x, &conv_input_index(x, c, "n_img", "g", "ci", "ih", "iw"));
    let w_load = b.load(
        w,
        &format!(
            "{}u + co * {}u + ci * {}u + ky * {}u + kx * {}u",
            w.offset, w.strides[0], w.strides[1], w.strides[2], w.strides[3]
        ),
    );
    let [os0, os1, os2, os3] = c.out_strides;
    let groups = (total.div_ceil(64)).max(1);
    let workgroups = grid(groups);
    let body = format!(
        "@compute @workgroup_size(64)\n\
         fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {{\n  \
         let i = (wg.y * {gx}u + wg.x) * 64u + li;\n  if (i >= {total}u) {{ return; }}\n  \
         let ow = i % {ow_n}u; let oh = (i / {ow_n}u) % {oh_n}u;\n  \
         let co = (i / {ohw}u) % {cout}u; let n_img = i / {ohwc}u; let g = co / {cout_g}u;\n  \
         var acc = 0.0;\n  \
         for (var ci = 0u; ci < {cin_g}u; ci++) {{\n    for (var ky = 0u; ky < {kh}u; ky++) {{\n      \
         for (var kx = 0u; kx < {kw}u; kx++) {{\n      {window}\n        \
         acc = fma({x_load}, {w_load}, acc);\n      }}\n    }}\n  }}\n  \
         emit(n_img * {os0}u + co * {os1}u + oh * {os2}u + ow * {os3}u, acc);\n}}\n",
        gx = workgroups[0],
        ohw = oh_n * ow_n,
        cout = c.out_channels,
        ohwc = oh_n * ow_n * c.out_channels,
        window = window_check(c, "oh", "ow", "continue;"),
    );
    Ok((body, workgroups))
}

/// The tiled kernel around the operand functions. Tile loads and the epilogue are loops with a
/// single call site each (lavapipe's JIT time grows with every inlined copy); only the inner
/// product over one K step is unrolled.
fn tiled(
    ops: Operands,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    t: Tiles,
) -> Result<(String, [u32; 3]), String> {
    let (tm, tn, tk, threads) = (t.tm(), t.tn(), t.tk, t.threads());
    let (wx, wy) = (t.wx, t.wy);
    let workgroups = [n.div_ceil(tn), m.div_ceil(tm), batch];
    if workgroups.iter().any(|&g| g > super::MAX_GROUPS as usize) {
        return Err(format!(
            "a {batch}x{m}x{n} product needs more than {} workgroups in one dimension",
            super::MAX_GROUPS
        ));
    }
    let mut s = String::new();
    s.push_str(&ops.load_a);
    s.push_str(&ops.load_b);
    s.push_str(&ops.out_index);
    let split = |k_fastest: bool, rows: usize| {
        if k_fastest {
            (format!("e / {tk}u"), format!("e % {tk}u"))
        } else {
            (format!("e % {rows}u"), format!("e / {rows}u"))
        }
    };
    let (a_row, a_k) = split(ops.a_k_fastest, tm);
    let (b_col, b_k) = split(ops.b_k_fastest, tn);
    let _ = write!(
        s,
        "var<workgroup> sa: array<f32, {sa}>;\nvar<workgroup> sb: array<f32, {sb}>;\nvar<workgroup> sc: array<f32, {sc}>;\n\
         @compute @workgroup_size({wx}, {wy})\n\
         fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>, \
         @builtin(local_invocation_index) li: u32) {{\n  let z = wg.z; let m0 = wg.y * {tm}u; let n0 = wg.x * {tn}u;\n",
        sa = tm * tk,
        sb = tn * tk,
        sc = wy * tn,
    );
    for i in 0..t.rm {
        for j in 0..t.rn {
            let _ = writeln!(s, "  var c{i}_{j} = 0.0;");
        }
    }
    let _ = write!(
        s,
        "  for (var k0 = 0u; k0 < {k}u; k0 += {tk}u) {{\n    \
         for (var e = li; e < {ta}u; e += {threads}u) {{ let row = {a_row}; let kk = {a_k}; sa[kk * {tm}u + row] = load_a(z, m0 + row, k0 + kk); }}\n    \
         for (var e = li; e < {tb}u; e += {threads}u) {{ let col = {b_col}; let kk = {b_k}; sb[kk * {tn}u + col] = load_b(z, k0 + kk, n0 + col); }}\n    \
         workgroupBarrier();\n    for (var kk = 0u; kk < {tk}u; kk++) {{\n",
        ta = tm * tk,
        tb = tn * tk,
    );
    for i in 0..t.rm {
        let _ = writeln!(s, "      let a{i} = sa[kk * {tm}u + l.y + {}u];", i * wy);
    }
    for j in 0..t.rn {
        let _ = writeln!(s, "      let b{j} = sb[kk * {tn}u + l.x + {}u];", j * wx);
    }
    for i in 0..t.rm {
        for j in 0..t.rn {
            let _ = writeln!(s, "      c{i}_{j} += a{i} * b{j};");
        }
    }
    let _ = writeln!(s, "    }}\n    workgroupBarrier();\n  }}");
    // Epilogue one register row at a time through workgroup memory, so that consecutive
    // invocations store consecutive columns.
    for i in 0..t.rm {
        for j in 0..t.rn {
            let _ = writeln!(s, "  sc[l.y * {tn}u + l.x + {}u] = c{i}_{j};", j * wx);
        }
        let _ = writeln!(
            s,
            "  workgroupBarrier();\n  for (var e = li; e < {sc}u; e += {threads}u) {{\n    \
             let gm = m0 + e / {tn}u + {row}u; let gn = n0 + e % {tn}u;\n    \
             if (gm < {m}u && gn < {n}u) {{ emit(out_index(z, gm, gn), sc[e]); }}\n  }}\n  workgroupBarrier();",
            sc = wy * tn,
            row = i * wy,
        );
    }
    s.push_str("}\n");
    Ok((s, workgroups.map(|g| g as u32)))
}

/// The textbook kernel, one output per invocation reading A and B straight from memory: the
/// baseline the tiled kernel is measured against.
pub(crate) fn naive_gemm_shader(program: &Program, step: &Step) -> Result<Shader, String> {
    let crate::graph::Kernel::Gemm(g) = &step.kernel else {
        return Err("not a matrix product".into());
    };
    let mut b = Builder::new(program);
    let (ops, direct) = gemm_operands(&mut b, step, g);
    let groups = [g.n.div_ceil(8), g.m.div_ceil(8), g.batch];
    let body = format!(
        "{}@compute @workgroup_size(8, 8)\n\
         fn main(@builtin(global_invocation_id) id: vec3<u32>) {{\n  \
         let n = id.x; let m = id.y; let z = id.z;\n  if (m >= {}u || n >= {}u) {{ return; }}\n  \
         var acc = 0.0;\n  for (var k = 0u; k < {}u; k++) {{ acc += {} * {}; }}\n  \
         emit(out_index(z, m, n), acc);\n}}\n",
        ops.out_index, g.m, g.n, g.k, direct.a, direct.b
    );
    super::assemble(b, step, body, groups.map(|g| g as u32))
}
