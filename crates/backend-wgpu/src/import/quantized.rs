//! Quantized operators: QuantizeLinear/DequantizeLinear, tract's 8-bit lookup tables,
//! DynamicQuantizeLinear, and the integer matrix products and convolutions of int8-dynamic and
//! QLinear models, computed as tract's reference computes them (operands dequantized to f32, the
//! f32 kernels, then rounded and clamped).

use super::*;

impl Lowerer {
    /// tract's QuantizeLinear: `clamp(round_half_even(x * scale) + zero_point, lo, hi)`, where
    /// `scale` is already the reciprocal of the ONNX scale; integers held as i32.
    pub(super) fn quantize(
        &mut self,
        node: &TypedNode,
        scale: f32,
        zero_point: f32,
        (lo, hi): (f32, f32),
    ) -> Result<(), Refusal> {
        self.map(node, |operands, l| {
            let shape = Self::shape_of(&node.outputs[0].fact)?;
            let x = l.operand(&l.view(node.inputs[0]), &shape, operands)?;
            let x = Expr::Cast(Scalar::F32, Box::new(x));
            let scaled = binary(BinaryOp::Mul, x, Expr::Lit(Literal::F32(scale)));
            let rounded = Expr::Unary(UnaryOp::RoundHalfToEven, Box::new(scaled));
            let shifted = binary(BinaryOp::Add, rounded, Expr::Lit(Literal::F32(zero_point)));
            let low = binary(BinaryOp::Max, shifted, Expr::Lit(Literal::F32(lo)));
            let clamped = binary(BinaryOp::Min, low, Expr::Lit(Literal::F32(hi)));
            Ok(Expr::Cast(Scalar::I32, Box::new(clamped)))
        })
    }

    /// ONNX DynamicQuantizeLinear as tract computes it: the range of the whole tensor widened to
    /// include 0, `scale = (max - min) / 255`, `zero_point = clamp(round_half_even(-min /
    /// scale), 0, 255)`, then `clamp(round_half_even(x / scale) + zero_point, 0, 255)`. Outputs:
    /// the quantized tensor, the scale and the zero point.
    pub(super) fn dynamic_quantize(&mut self, node: &TypedNode) -> Result<(), Refusal> {
        if node.outputs.len() != 3 {
            return Err(format!("{} outputs", node.outputs.len()));
        }
        let x = self.view(node.inputs[0]);
        if !self.program.values[x.value].ty.is_float() {
            return Err("integer input".into());
        }
        let rank = x.shape.len();
        let zero = || Expr::Lit(Literal::F32(0.0));
        let scalar = |l: &mut Self, ty| l.program.add_value(vec![], ty, Origin::Computed);
        let extreme = |l: &mut Self, reducer, widen| {
            let out = scalar(l, ElemType::F32);
            let rows = Rows {
                op: RowOp::Reduce(reducer),
                kept_rank: 0,
                out_strides: vec![0; rank],
            };
            let widened = binary(widen, Expr::Acc, zero());
            let step = l.step(Kernel::Rows(rows), vec![x.clone()], vec![], widened, out);
            l.push(step);
            View::whole(out, &[])
        };
        let min = extreme(self, Reducer::Min, BinaryOp::Min);
        let max = extreme(self, Reducer::Max, BinaryOp::Max);
        let clamp_u8 = |e: Expr| {
            let low = binary(BinaryOp::Max, e, zero());
            let clamped = binary(BinaryOp::Min, low, Expr::Lit(Literal::F32(255.0)));
            Expr::Cast(Scalar::I32, Box::new(clamped))
        };
        let scale = scalar(self, ElemType::F32);
        let range = binary(BinaryOp::Sub, Expr::Load(0), Expr::Load(1));
        let value = binary(BinaryOp::Div, range, Expr::Lit(Literal::F32(255.0)));
        let step = self.step(Kernel::Map, vec![], vec![max, min.clone()], value, scale);
        self.push(step);
        let scale = View::whole(scale, &[]);
        let zero_point = scalar(self, ElemType::I32);
        let neg_min = Expr::Unary(UnaryOp::Neg, Box::new(Expr::Load(0)));
        let ratio = binary(BinaryOp::Div, neg_min, Expr::Load(1));
        let value = clamp_u8(Expr::Unary(UnaryOp::RoundHalfToEven, Box::new(ratio)));
        let step = self.step(
            Kernel::Map,
            vec![],
            vec![min, scale.clone()],
            value,
            zero_point,
        );
        self.push(step);
        let zero_point = View::whole(zero_point, &[]);
        let quantized = self.output_value(node, 0)?;
        let operands = vec![
            x.clone(),
            scale.broadcast_to(&x.shape).ok_or("scalar broadcast")?,
            zero_point
                .broadcast_to(&x.shape)
                .ok_or("scalar broadcast")?,
        ];
        let ratio = binary(BinaryOp::Div, Expr::Load(0), Expr::Load(1));
        let rounded = Expr::Unary(UnaryOp::RoundHalfToEven, Box::new(ratio));
        let zp = Expr::Cast(Scalar::F32, Box::new(Expr::Load(2)));
        let value = clamp_u8(binary(BinaryOp::Add, rounded, zp));
        let step = self.step(Kernel::Map, vec![], operands, value, quantized);
        self.push(step);
        self.bind(node, quantized);
        self.views.insert(OutletId::new(node.id, 1), scale);
        self.views.insert(OutletId::new(node.id, 2), zero_point);
        Ok(())
    }

    /// tract's 8-bit lookup table (a dequantize, element-wise operators and a quantize folded
    /// into 256 entries): a gather from the table by the input's byte.
    pub(super) fn lookup(&mut self, node: &TypedNode, table: &[u8]) -> Result<(), Refusal> {
        let table = match node.outputs[0].fact.datum_type {
            DatumType::U8 => tensor1(table),
            DatumType::I8 => tensor1(&table.iter().map(|&b| b as i8).collect::<Vec<_>>()),
            other => return Err(format!("{other:?} table")),
        };
        let entries =
            self.program
                .add_value(vec![256], ElemType::I32, Origin::Const(Arc::new(table)));
        let out = self.output_value(node, 0)?;
        // Negative i8 inputs wrap to their byte (-1 reads entry 255), as the gather's index does.
        let inputs = vec![View::whole(entries, &[256]), self.view(node.inputs[0])];
        let step = self.step(Kernel::Gather { axis: 0 }, inputs, vec![], Expr::Acc, out);
        self.push(step);
        self.bind(node, out);
        Ok(())
    }

    /// tract's quantized product (MatMulInteger, QLinearMatMul, the integer matmuls of
    /// int8-dynamic), computed as tract's reference evaluation does: each operand dequantized to
    /// f32 (`scale * (x - zero_point)`), an f32 product, then `round((c + bias * a_scale *
    /// b_scale) / c_scale + c0)`, clamped to the output type. Integer products summed in f32 are
    /// exact while the sums stay below 2^24 in magnitude.
    pub(super) fn quantized_einsum(
        &mut self,
        node: &TypedNode,
        op: &EinSum,
    ) -> Result<(), Refusal> {
        let [a, b, bias, a0, a_scale, b0, b_scale, c0, c_scale] = node.inputs[..] else {
            return Err(format!("{} inputs", node.inputs.len()));
        };
        let out_shape = Self::shape_of(&node.outputs[0].fact)?;
        let dequantized =
            |l: &mut Self, slot: usize, data: OutletId, zero: OutletId, scale: OutletId| {
                let x = l.view(data);
                let zero = l.quant_param(op, zero, slot + 3, InOut::In(slot), &x.shape)?;
                let scale = l.quant_param(op, scale, slot + 4, InOut::In(slot), &x.shape)?;
                let mut operands = vec![x.clone()];
                let centred = binary(
                    BinaryOp::Sub,
                    Expr::Cast(Scalar::F32, Box::new(Expr::Load(0))),
                    l.param_expr(zero, &mut operands),
                );
                let value = binary(BinaryOp::Mul, l.param_expr(scale, &mut operands), centred);
                let out = l
                    .program
                    .add_value(x.shape.clone(), ElemType::F32, Origin::Computed);
                let step = l.step(Kernel::Map, vec![], operands, value, out);
                l.push(step);
                Ok::<View, Refusal>(View::whole(out, &x.shape))
            };
        let a_f = dequantized(self, 0, a, a0, a_scale)?;
        let b_f = dequantized(self, 1, b, b0, b_scale)?;
        let product = self.matmul(op, &a_f, &b_f, &out_shape, ElemType::F32)?;
        let mut operands = vec![View::whole(product, &out_shape)];
        let mut param = |l: &mut Self, outlet, slot| {
            let v = l.quant_param(op, outlet, slot, InOut::Out(0), &out_shape)?;
            Ok::<Expr, Refusal>(l.param_expr(v, &mut operands))
        };
        let bias = param(self, bias, 2)?;
        let (a_s, b_s) = (param(self, a_scale, 4)?, param(self, b_scale, 6)?);
        let (c0, c_s) = (param(self, c0, 7)?, param(self, c_scale, 8)?);
        self.requantize_product(node, operands, [bias, a_s, b_s, c0, c_s], op.q_params)
    }

    /// A quantization parameter of a quantized product as a view shaped like `shape` (the data
    /// it applies to at interface `data`): a scalar broadcast, or a vector along the axis the
    /// product's axes mapping links it to.
    pub(super) fn quant_param(
        &self,
        op: &EinSum,
        outlet: OutletId,
        slot: usize,
        data: InOut,
        shape: &[usize],
    ) -> Result<View, Refusal> {
        let v = self.view(outlet);
        if v.numel() == 1 {
            return Ok(View {
                value: v.value,
                offset: v.offset,
                shape: shape.to_vec(),
                strides: vec![0; shape.len()],
            });
        }
        let axis = op
            .axes
            .axis((InOut::In(slot), 0))
            .map_err(|e| e.to_string())?;
        let pos = *axis
            .interface(data)
            .first()
            .ok_or("a per-axis parameter on an axis the operand lacks")?;
        if shape[pos] != v.numel() {
            return Err(format!(
                "parameter of {} values on an axis of {}",
                v.numel(),
                shape[pos]
            ));
        }
        let mut strides = vec![0; shape.len()];
        strides[pos] = *v.strides.last().unwrap_or(&1);
        Ok(View {
            value: v.value,
            offset: v.offset,
            shape: shape.to_vec(),
            strides,
        })
    }

    /// A quantization parameter in an expression, as f32: a literal where it is a uniform
    /// constant, else a new operand.
    pub(super) fn param_expr(&self, view: View, operands: &mut Vec<View>) -> Expr {
        let ty = self.program.values[view.value].ty.compute();
        if let Some(lit) = self.literal(&view, ty) {
            return Expr::Cast(Scalar::F32, Box::new(Expr::Lit(lit)));
        }
        operands.push(view);
        Expr::Cast(Scalar::F32, Box::new(Expr::Load(operands.len() - 1)))
    }

    /// tract's quantized convolution (ConvInteger, QLinearConv, the integer convolutions of
    /// int8-dynamic), computed like [`Self::quantized_einsum`]: input and kernel dequantized to
    /// f32 (the input per tensor, the kernel per tensor or per output channel), an f32
    /// convolution, then `round((c + bias * x_scale * k_scale) / y_scale + y0)`, clamped to the
    /// output type.
    pub(super) fn quantized_conv(
        &mut self,
        node: &TypedNode,
        op: &TractConv,
    ) -> Result<(), Refusal> {
        let [x, k, bias, x0, x_scale, k0, k_scale, y0, y_scale] = node.inputs[..] else {
            return Err(format!("{} inputs", node.inputs.len()));
        };
        let out_shape = Self::shape_of(&node.outputs[0].fact)?;
        let kernel = self.view(k);
        let o_axis = match op.kernel_fmt {
            KernelFormat::OIHW | KernelFormat::OHWI => 0,
            KernelFormat::HWIO => kernel.shape.len() - 1,
        };
        let c_axis = channel_axis(op.pool_spec.data_format, out_shape.len());
        // A parameter as a view over `shape`: one value broadcast, or one per output channel
        // along `axis`.
        let param = |l: &Self, outlet: OutletId, shape: &[usize], axis: usize| {
            let v = l.view(outlet);
            let mut strides = vec![0; shape.len()];
            if v.numel() != 1 {
                if v.numel() != shape[axis] {
                    return Err(format!("a parameter of {} values", v.numel()));
                }
                strides[axis] = *v.strides.last().unwrap_or(&1);
            }
            Ok::<View, Refusal>(View {
                value: v.value,
                offset: v.offset,
                shape: shape.to_vec(),
                strides,
            })
        };
        let dequantized = |l: &mut Self, data: View, zero: View, scale: View| {
            let mut operands = vec![data.clone()];
            let centred = binary(
                BinaryOp::Sub,
                Expr::Cast(Scalar::F32, Box::new(Expr::Load(0))),
                l.param_expr(zero, &mut operands),
            );
            let value = binary(BinaryOp::Mul, l.param_expr(scale, &mut operands), centred);
            let out = l
                .program
                .add_value(data.shape.clone(), ElemType::F32, Origin::Computed);
            let step = l.step(Kernel::Map, vec![], operands, value, out);
            l.push(step);
            View::whole(out, &data.shape)
        };
        let input = self.view(x);
        if self.view(x0).numel() != 1 || self.view(x_scale).numel() != 1 {
            return Err("input quantized per channel".into());
        }
        let (x0_v, xs_v) = (
            param(self, x0, &input.shape, 0)?,
            param(self, x_scale, &input.shape, 0)?,
        );
        let x_f = dequantized(self, input, x0_v, xs_v);
        let (k0_v, ks_v) = (
            param(self, k0, &kernel.shape, o_axis)?,
            param(self, k_scale, &kernel.shape, o_axis)?,
        );
        let k_f = dequantized(self, kernel, k0_v, ks_v);
        let product = self.conv_into(op, &x_f, &k_f, None, &out_shape, ElemType::F32)?;
        let mut operands = vec![View::whole(product, &out_shape)];
        let mut term = |l: &mut Self, outlet| {
            let v = param(l, outlet, &out_shape, c_axis)?;
            Ok::<Expr, Refusal>(l.param_expr(v, &mut operands))
        };
        let bias = term(self, bias)?;
        let (x_s, k_s) = (term(self, x_scale)?, term(self, k_scale)?);
        let (y0, y_s) = (term(self, y0)?, term(self, y_scale)?);
        self.requantize_product(node, operands, [bias, x_s, k_s, y0, y_s], op.q_params)
    }

    /// The epilogue of a quantized product or convolution over its f32 result (operand 0, the
    /// integer sum of the dequantized operands): `round((sum + bias * a_scale * b_scale) /
    /// out_scale + out_zero)`, requantized into the node's output, as one element-wise kernel.
    fn requantize_product(
        &mut self,
        node: &TypedNode,
        operands: Vec<View>,
        [bias, a_scale, b_scale, out_zero, out_scale]: [Expr; 5],
        q_params: Option<DatumType>,
    ) -> Result<(), Refusal> {
        let scaled_bias = binary(BinaryOp::Mul, binary(BinaryOp::Mul, bias, a_scale), b_scale);
        let c = binary(BinaryOp::Add, Expr::Load(0), scaled_bias);
        let c = binary(BinaryOp::Add, binary(BinaryOp::Div, c, out_scale), out_zero);
        let value = self.requantized(node, Expr::Unary(UnaryOp::Round, Box::new(c)), q_params)?;
        let out = self.output_value(node, 0)?;
        let step = self.step(Kernel::Map, vec![], operands, value, out);
        self.push(step);
        self.bind(node, out);
        Ok(())
    }

    /// A rounded f32 result clamped to the range of the quantized output type and cast to the
    /// node's output type.
    pub(super) fn requantized(
        &mut self,
        node: &TypedNode,
        rounded: Expr,
        q_params: Option<DatumType>,
    ) -> Result<Expr, Refusal> {
        let mut c = rounded;
        let range = match q_params.map(|dt| dt.unquantized()) {
            Some(DatumType::U8) => Some((0.0, 255.0)),
            Some(DatumType::I8) => Some((-128.0, 127.0)),
            _ => None,
        };
        if let Some((lo, hi)) = range {
            c = binary(BinaryOp::Max, c, Expr::Lit(Literal::F32(lo)));
            c = binary(BinaryOp::Min, c, Expr::Lit(Literal::F32(hi)));
        }
        let out_ty = self.elem_type(node.outputs[0].fact.datum_type)?;
        Ok(Expr::Cast(out_ty.compute(), Box::new(c)))
    }
}
