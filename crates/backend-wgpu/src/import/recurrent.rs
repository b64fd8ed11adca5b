//! Recurrent cells: tract presents ONNX LSTM and GRU as a Scan over a small body, which is
//! lowered once per time step (its weights shared), and its LSTM cell epilogue as element-wise
//! kernels.

use super::*;

impl Lowerer {
    /// A Scan (what tract makes of LSTM, GRU and RNN) unrolled: its body lowered once per
    /// iteration, reading its slice of each scanned input and the state the previous iteration
    /// left; the scanned outputs are laid end to end along their axis. The body's constants are
    /// lowered once and shared by every iteration.
    pub(super) fn scan(&mut self, node: &TypedNode, op: &Scan) -> Result<(), Refusal> {
        if op.skip != 0 || op.external_state {
            return Err("skipped iterations or state kept across runs".into());
        }
        let body = &op.body;
        let body_inputs = body.input_outlets().map_err(|e| e.to_string())?.to_vec();
        let body_outputs = body.output_outlets().map_err(|e| e.to_string())?.to_vec();
        let outer_inputs: Vec<View> = node.inputs.iter().map(|&i| self.view(i)).collect();
        let mut iterations = None;
        for (slot, mapping) in op.input_mapping.iter().enumerate() {
            if let InputMapping::Scan(info) = mapping {
                if info.chunk.unsigned_abs() != 1 {
                    return Err(format!("chunks of {}", info.chunk));
                }
                iterations.get_or_insert(outer_inputs[slot].shape[info.axis]);
            }
        }
        let iterations = iterations.ok_or("no scanned input")?;
        let mut state: Vec<View> = op
            .input_mapping
            .iter()
            .zip(&outer_inputs)
            .filter(|(m, _)| m.is_state())
            .map(|(_, v)| v.clone())
            .collect();
        // Per outer output slot: the pieces of a scanned output by position, or the last value.
        let mut pieces: BTreeMap<usize, (usize, Vec<Option<View>>)> = BTreeMap::new();
        let mut last: BTreeMap<usize, View> = BTreeMap::new();
        let mut constants: HashMap<usize, View> = HashMap::new();
        let outer_views = std::mem::take(&mut self.views);
        let outer_node = std::mem::take(&mut self.node);
        let order = body.eval_order().map_err(|e| e.to_string());
        let mut unrolled = || -> Result<(), Refusal> {
            let order = order.clone()?;
            for it in 0..iterations {
                self.views.clear();
                let mut states = state.iter();
                for (slot, mapping) in op.input_mapping.iter().enumerate() {
                    let view = match mapping {
                        InputMapping::Full => outer_inputs[slot].clone(),
                        InputMapping::State => states.next().ok_or("state")?.clone(),
                        InputMapping::Scan(info) => {
                            let at = if info.chunk > 0 {
                                it
                            } else {
                                iterations - 1 - it
                            };
                            outer_inputs[slot].slice(info.axis, at, at + 1)
                        }
                    };
                    // tract's default (zero) initial state of an LSTM is laid out [batch,
                    // directions, hidden] while its body declares [directions, batch, hidden]:
                    // the body's shape is taken, in row-major order (all zeros either way).
                    let fact = body
                        .outlet_fact(body_inputs[slot])
                        .map_err(|e| e.to_string())?;
                    let shape = Self::shape_of(fact)?;
                    let view = if view.shape == shape {
                        view
                    } else {
                        match view.reshape(&shape) {
                            Some(v) => v,
                            None => {
                                let ty = self.program.values[view.value].ty;
                                View::whole(self.copy(&view, ty), &shape)
                            }
                        }
                    };
                    self.views.insert(body_inputs[slot], view);
                }
                for &id in &order {
                    let inner = body.node(id);
                    if body_inputs.iter().any(|o| o.node == id) {
                        continue;
                    }
                    self.node = format!("{outer_node}/{}", inner.name);
                    if let Some(view) = constants.get(&id) {
                        self.views.insert(OutletId::new(id, 0), view.clone());
                        continue;
                    }
                    let is_const =
                        inner.outputs.len() == 1 && inner.outputs[0].fact.konst.is_some();
                    let outcome = if is_const {
                        self.constant(inner)
                    } else {
                        self.operator(inner)
                    };
                    outcome.map_err(|reason| {
                        let why = if reason.is_empty() {
                            String::new()
                        } else {
                            format!(", {reason}")
                        };
                        format!(
                            "{} in its body, node '{}'{why}",
                            inner.op.name(),
                            inner.name
                        )
                    })?;
                    if is_const {
                        constants.insert(id, self.views[&OutletId::new(id, 0)].clone());
                    }
                }
                let mut next_state = Vec::new();
                for (slot, mapping) in op.output_mapping.iter().enumerate() {
                    let view = self.views[&body_outputs[slot]].clone();
                    if mapping.state {
                        next_state.push(view.clone());
                    }
                    if let Some((outer, info)) = mapping.scan {
                        let at = if info.chunk > 0 {
                            it
                        } else {
                            iterations - 1 - it
                        };
                        let entry = pieces
                            .entry(outer)
                            .or_insert_with(|| (info.axis, vec![None; iterations]));
                        entry.1[at] = Some(view.clone());
                    }
                    if let Some(outer) = mapping.last_value_slot {
                        last.insert(outer, view);
                    }
                }
                state = next_state;
            }
            Ok(())
        };
        let outcome = unrolled();
        self.views = outer_views;
        self.node = outer_node;
        outcome?;
        for (outer, view) in last {
            self.views.insert(OutletId::new(node.id, outer), view);
        }
        for (outer, (axis, parts)) in pieces {
            let parts: Vec<View> = parts.into_iter().flatten().collect();
            let ty = self.program.values[parts[0].value].ty;
            let whole = self.concat_all(parts, axis, ty);
            self.views.insert(OutletId::new(node.id, outer), whole);
        }
        Ok(())
    }

    /// tract's LSTM cell epilogue, from the gate pre-activations (`[rows, 4 * hidden]`, gates
    /// in the order i, o, f, c) and the previous cell state: `Ct = σ(f)·C(t-1) + σ(i)·tanh(c)`,
    /// `Ht = σ(o)·tanh(Ct)`, two element-wise steps over views of the gates.
    pub(super) fn lstm_epilogue(&mut self, node: &TypedNode, hidden: usize) -> Result<(), Refusal> {
        let (preact, c_prev) = (self.view(node.inputs[0]), self.view(node.inputs[1]));
        let shape = c_prev.shape.clone();
        let mut rows_shape = shape.clone();
        *rows_shape.last_mut().ok_or("a scalar state")? = 4 * hidden;
        let preact = match preact.reshape(&rows_shape) {
            Some(v) => v,
            None => {
                let ty = self.program.values[preact.value].ty;
                View::whole(self.copy(&preact, ty), &rows_shape)
            }
        };
        let last = shape.len() - 1;
        let gate = |k: usize| preact.slice(last, k * hidden, (k + 1) * hidden);
        let (i, o, f, c) = (gate(0), gate(1), gate(2), gate(3));
        let unary = |op, e| Expr::Unary(op, Box::new(e));
        let ty = self.elem_type(node.outputs[1].fact.datum_type)?;
        let cell = self.program.add_value(shape.clone(), ty, Origin::Computed);
        let kept = binary(
            BinaryOp::Mul,
            unary(UnaryOp::Sigmoid, Expr::Load(0)),
            Expr::Load(1),
        );
        let new = binary(
            BinaryOp::Mul,
            unary(UnaryOp::Sigmoid, Expr::Load(2)),
            unary(UnaryOp::Tanh, Expr::Load(3)),
        );
        let step = self.step(
            Kernel::Map,
            vec![],
            vec![f, c_prev, i, c],
            binary(BinaryOp::Add, kept, new),
            cell,
        );
        self.push(step);
        let cell = View::whole(cell, &shape);
        let out = self.program.add_value(shape.clone(), ty, Origin::Computed);
        let value = binary(
            BinaryOp::Mul,
            unary(UnaryOp::Sigmoid, Expr::Load(0)),
            unary(UnaryOp::Tanh, Expr::Load(1)),
        );
        let step = self.step(Kernel::Map, vec![], vec![o, cell.clone()], value, out);
        self.push(step);
        self.views
            .insert(OutletId::new(node.id, 0), View::whole(out, &shape));
        self.views.insert(OutletId::new(node.id, 1), cell);
        Ok(())
    }

    /// Views laid end to end along `axis`, a few at a time (each concatenation binds every
    /// piece, and adapters bind few buffers per kernel).
    pub(super) fn concat_all(&mut self, mut parts: Vec<View>, axis: usize, ty: ElemType) -> View {
        const FAN_IN: usize = 6;
        while parts.len() > 1 {
            parts = parts
                .chunks(FAN_IN)
                .map(|group| {
                    if group.len() == 1 {
                        return group[0].clone();
                    }
                    let mut shape = group[0].shape.clone();
                    shape[axis] = group.iter().map(|v| v.shape[axis]).sum();
                    let out = self.program.add_value(shape.clone(), ty, Origin::Computed);
                    let step = self.step(
                        Kernel::Concat { axis },
                        group.to_vec(),
                        vec![],
                        Expr::Acc,
                        out,
                    );
                    self.push(step);
                    View::whole(out, &shape)
                })
                .collect();
        }
        parts.remove(0)
    }
}
