//! Resize and Upsample: nearest in every rounding mode, linear and cubic, over tract's own
//! resampling plan, one kernel per resized axis; an integer pixel-replicating upsample is a copy
//! through a repeating view.

use super::*;

impl Lowerer {
    /// Integer nearest upsampling (`out[.., i, ..] = in[.., i / s, ..]`) is a copy through a
    /// view that repeats each element `s` times (stride 0 on a new inner axis).
    pub(super) fn nearest_upsample(
        &mut self,
        node: &TypedNode,
        scales: &[usize],
    ) -> Result<(), Refusal> {
        let input = self.view(node.inputs[0]);
        let out_shape = Self::shape_of(&node.outputs[0].fact)?;
        let (mut shape, mut strides) = (Vec::new(), Vec::new());
        for (d, &s) in scales.iter().enumerate() {
            shape.push(input.shape[d]);
            strides.push(input.strides[d]);
            if s > 1 {
                shape.push(s);
                strides.push(0);
            }
        }
        let repeated = View {
            value: input.value,
            offset: input.offset,
            shape,
            strides,
        };
        let ty = self.elem_type(node.outputs[0].fact.datum_type)?;
        let copied = self.copy(&repeated, ty);
        self.views
            .insert(OutletId::new(node.id, 0), View::whole(copied, &out_shape));
        Ok(())
    }

    /// tract-core's Resize: its own plan per axis, with the scales its evaluation uses (the
    /// constant scales input, else output over input length).
    pub(super) fn core_resize_plans(
        &self,
        node: &TypedNode,
        op: &CoreResize,
    ) -> Result<Vec<(usize, AxisPlan)>, Refusal> {
        let input = self.view(node.inputs[0]);
        let out_shape = Self::shape_of(&node.outputs[0].fact)?;
        let rank = input.shape.len();
        let scales: Vec<f32> = match op
            .optional_scales_input
            .and_then(|ix| self.constant_input(node, ix))
            .filter(|t| t.len() == rank)
        {
            Some(t) => tensor_values::<f32>(&t)?,
            None => ratios(&input.shape, &out_shape),
        };
        Ok((0..rank)
            .filter(|&a| !(input.shape[a] == out_shape[a] && scales[a] == 1.0))
            .map(|a| (a, op.plan_axis(scales[a], input.shape[a], out_shape[a])))
            .collect())
    }

    /// The ONNX Resize tract keeps outside its core (round_prefer_floor and ceil nearest
    /// modes, antialiasing, exclude_outside, cubic coefficients, aspect-ratio policies): the plan
    /// as its evaluation builds it, from tract's own plan and weight functions.
    pub(super) fn onnx_resize_plans(
        &self,
        node: &TypedNode,
        op: &OnnxResize,
    ) -> Result<Vec<(usize, AxisPlan)>, Refusal> {
        let CoordTransform::Plain(transformer) = &op.coord_transformer else {
            return Err("tf_crop_and_resize".into());
        };
        let input = self.view(node.inputs[0]);
        let out_shape = Self::shape_of(&node.outputs[0].fact)?;
        let rank = input.shape.len();
        let axes = op.resized_axes(rank).map_err(|e| e.to_string())?;
        let mut scales = vec![1.0f32; rank];
        let given = op
            .optional_scales_input
            .and_then(|ix| self.constant_input(node, ix))
            .filter(|t| t.len() == axes.len());
        if let Some(t) = given {
            for (&a, s) in axes.iter().zip(tensor_values::<f32>(&t)?) {
                scales[a] = s;
            }
        } else if op.keep_aspect_ratio_policy != AspectRatio::Stretch {
            let sizes = op
                .optional_sizes_input
                .and_then(|ix| self.constant_input(node, ix))
                .ok_or("sizes computed at run time")?;
            let sizes = tensor_values::<i64>(&sizes)?;
            let each = axes
                .iter()
                .zip(&sizes)
                .map(|(&a, &size)| size as f32 / input.shape[a] as f32);
            let scale = if op.keep_aspect_ratio_policy == AspectRatio::NotLarger {
                each.fold(f32::INFINITY, f32::min)
            } else {
                each.fold(f32::NEG_INFINITY, f32::max)
            };
            for &a in &axes {
                scales[a] = scale;
            }
        } else {
            let all = ratios(&input.shape, &out_shape);
            for &a in &axes {
                scales[a] = all[a];
            }
        }
        let mut plans = Vec::new();
        for a in 0..rank {
            let (len_in, len_out, scale) = (input.shape[a], out_shape[a], scales[a]);
            if len_in == len_out && scale == 1.0 {
                continue;
            }
            let window = window_size(&op.interpolator, op.antialias, scale);
            let t: &CoordTransformer = transformer;
            let coord = |x| Some(t.transform(x, scale, len_in, len_out));
            let (exclude, antialias, coeff) =
                (op.exclude_outside, op.antialias, op.cubic_coeff_a());
            let plan = match op.interpolator {
                Interpolator::Linear => {
                    plan_axis(len_in, len_out, window, exclude, coord, |r, w| {
                        linear_weights(r, scale, antialias, w)
                    })
                }
                Interpolator::Cubic => {
                    plan_axis(len_in, len_out, window, exclude, coord, |r, w| {
                        cubic_weights(r, scale, coeff, antialias, w)
                    })
                }
                Interpolator::Nearest => {
                    plan_axis(len_in, len_out, window, exclude, coord, |r, w| {
                        let right = r == 1.0
                            || match op.nearest {
                                OnnxNearest::Floor => false,
                                OnnxNearest::Ceil => true,
                                OnnxNearest::RoundPreferFloor => r > 0.5,
                                OnnxNearest::RoundPreferCeil => r >= 0.5,
                            };
                        w[0] = !right as u8 as f32;
                        w[1] = right as u8 as f32;
                    })
                }
            };
            plans.push((a, plan));
        }
        Ok(plans)
    }

    /// One [`Kernel::Resample`] step per resized axis, in axis order as tract evaluates them;
    /// intermediates in f32, the last step in the node's own type.
    pub(super) fn resample(
        &mut self,
        node: &TypedNode,
        plans: Vec<(usize, AxisPlan)>,
    ) -> Result<(), Refusal> {
        let mut current = self.view(node.inputs[0]);
        if !self.program.values[current.value].ty.is_float() {
            return Err("integer data".into());
        }
        let out_ty = self.elem_type(node.outputs[0].fact.datum_type)?;
        let count = plans.len();
        for (i, (axis, plan)) in plans.into_iter().enumerate() {
            if plan.extrapolated.contains(&true) {
                return Err("extrapolation".into());
            }
            let mut shape = current.shape.clone();
            shape[axis] = plan.extrapolated.len();
            let ty = if i + 1 == count {
                out_ty
            } else {
                ElemType::F32
            };
            let out = self.program.add_value(shape.clone(), ty, Origin::Computed);
            let taps: Vec<i32> = plan.indices.iter().map(|&t| t as i32).collect();
            let table = |t: Tensor, l: &mut Self, ty| {
                let len = t.len();
                let id = l
                    .program
                    .add_value(vec![len], ty, Origin::Const(Arc::new(t)));
                View::whole(id, &[len])
            };
            let taps = table(tensor1(&taps), self, ElemType::I32);
            let weights = table(tensor1(&plan.weights), self, ElemType::F32);
            let step = self.step(
                Kernel::Resample {
                    axis,
                    window: plan.window,
                },
                vec![current, taps, weights],
                vec![],
                Expr::Acc,
                out,
            );
            self.push(step);
            current = View::whole(out, &shape);
        }
        if count == 0 {
            let ty = self.program.values[current.value].ty;
            let copied = self.copy(&current, ty);
            current = View::whole(copied, &current.shape);
        }
        self.views.insert(OutletId::new(node.id, 0), current);
        Ok(())
    }
}

/// Output over input length, per axis: the scale of a Resize given by its output sizes.
fn ratios(input: &[usize], output: &[usize]) -> Vec<f32> {
    output
        .iter()
        .zip(input)
        .map(|(&o, &i)| o as f32 / i as f32)
        .collect()
}
