//! Epilogue fusion: an element-wise step that reads the whole output of an earlier step, and is
//! that output's only reader, is folded into the earlier step's epilogue. Chains collapse one
//! link at a time, so a convolution followed by a batch norm's multiply and add, a residual add
//! and a ReLU becomes one kernel, and its intermediates are never written to memory.

use crate::graph::{Expr, Kernel, Origin, Program, Step, ValueId};

/// Fuses until no pair qualifies. `max_bindings` is the adapter's limit of storage buffers per
/// shader stage; a fusion that would exceed it is skipped.
pub(crate) fn fuse(program: &mut Program, max_bindings: usize) {
    while let Some((producer, consumer)) = find_pair(program, max_bindings) {
        let p = program.steps[producer].clone();
        let c = program.steps.remove(consumer);
        let fused_value = p.output;
        // Consumer operands that read the fused value disappear; the others follow the
        // producer's own operands.
        let kept: Vec<usize> = (0..c.operands.len())
            .filter(|&j| c.operands[j].value != fused_value)
            .collect();
        let base = p.operands.len();
        let epilogue = c
            .epilogue
            .map_loads(&|j| match kept.iter().position(|&k| k == j) {
                Some(rank) => Expr::Load(base + rank),
                None => p.epilogue.clone(),
            });
        let mut operands = p.operands.clone();
        operands.extend(kept.iter().map(|&j| c.operands[j].clone()));
        let mut nodes = p.nodes.clone();
        nodes.extend(c.nodes);
        let fused = Step {
            nodes,
            kernel: p.kernel,
            inputs: p.inputs,
            operands,
            epilogue,
            output: c.output,
        };
        // The fused step runs where the consumer ran: its other operands may be computed
        // between the two.
        program.steps.insert(consumer, fused);
        program.steps.remove(producer);
    }
}

fn find_pair(program: &Program, max_bindings: usize) -> Option<(usize, usize)> {
    let mut producer_of = vec![None; program.values.len()];
    let mut readers = vec![0usize; program.values.len()];
    for (i, step) in program.steps.iter().enumerate() {
        producer_of[step.output] = Some(i);
        for v in step.inputs.iter().chain(&step.operands) {
            readers[v.value] += 1;
        }
    }
    for &o in &program.outputs {
        readers[o] += 1;
    }
    for (ci, c) in program.steps.iter().enumerate() {
        if c.kernel != Kernel::Map {
            continue;
        }
        for view in &c.operands {
            let v = view.value;
            let value = &program.values[v];
            if !matches!(value.origin, Origin::Computed) || program.outputs.contains(&v) {
                continue;
            }
            let Some(pi) = producer_of[v] else { continue };
            let from_c = c.operands.iter().filter(|o| o.value == v).count();
            let all_plain = c
                .operands
                .iter()
                .filter(|o| o.value == v)
                .all(|o| o.is_plain_of(value));
            if readers[v] != from_c || !all_plain {
                continue;
            }
            if program.values[c.output].numel() != value.numel() {
                continue;
            }
            let p = &program.steps[pi];
            if bindings_after(p, c, v) > max_bindings {
                continue;
            }
            return Some((pi, ci));
        }
    }
    None
}

/// Distinct buffers the fused kernel would bind (inputs, operands and its output).
fn bindings_after(p: &Step, c: &Step, fused: ValueId) -> usize {
    let mut values: Vec<ValueId> = p
        .inputs
        .iter()
        .chain(&p.operands)
        .chain(c.operands.iter().filter(|o| o.value != fused))
        .map(|v| v.value)
        .collect();
    values.sort_unstable();
    values.dedup();
    values.len() + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{BinaryOp, ElemType, Literal, UnaryOp, View};

    fn map(program: &mut Program, operands: Vec<View>, epilogue: Expr) -> usize {
        let shape = operands[0].shape.clone();
        let out = program.add_value(shape, ElemType::F32, Origin::Computed);
        program.steps.push(Step {
            nodes: vec![format!("n{out}")],
            kernel: Kernel::Map,
            inputs: vec![],
            operands,
            epilogue,
            output: out,
        });
        out
    }

    fn program() -> (Program, usize) {
        let mut p = Program {
            values: vec![],
            steps: vec![],
            inputs: vec![],
            outputs: vec![],
            f16_widened: false,
        };
        let x = p.add_value(vec![4, 3], ElemType::F32, Origin::Input);
        p.inputs.push(x);
        (p, x)
    }

    #[test]
    fn a_chain_of_element_wise_steps_becomes_one_step() {
        let (mut p, x) = program();
        let whole = |v| View::whole(v, &[4, 3]);
        let add = Expr::Binary(
            BinaryOp::Add,
            Box::new(Expr::Load(0)),
            Box::new(Expr::Lit(Literal::F32(1.0))),
        );
        let a = map(&mut p, vec![whole(x)], add);
        let b = map(
            &mut p,
            vec![whole(x)],
            Expr::Unary(UnaryOp::Exp, Box::new(Expr::Load(0))),
        );
        let sum = Expr::Binary(
            BinaryOp::Mul,
            Box::new(Expr::Load(0)),
            Box::new(Expr::Load(1)),
        );
        let c = map(&mut p, vec![whole(a), whole(b)], sum);
        p.outputs.push(c);
        fuse(&mut p, 8);
        assert_eq!(p.steps.len(), 1, "{:#?}", p.steps);
        let step = &p.steps[0];
        assert_eq!(step.output, c);
        assert!(step.operands.iter().all(|o| o.value == x));
        assert_eq!(step.label(), "Add+Exp+Mul");
        assert_eq!(step.nodes.len(), 3);
    }

    #[test]
    fn values_read_elsewhere_or_broadcast_stay_in_memory() {
        let (mut p, x) = program();
        let whole = |v| View::whole(v, &[4, 3]);
        let a = map(
            &mut p,
            vec![whole(x)],
            Expr::Unary(UnaryOp::Exp, Box::new(Expr::Load(0))),
        );
        let b = map(
            &mut p,
            vec![whole(a)],
            Expr::Unary(UnaryOp::Neg, Box::new(Expr::Load(0))),
        );
        p.outputs.extend([a, b]);
        fuse(&mut p, 8);
        assert_eq!(p.steps.len(), 2, "a is an output, so it is stored");

        let (mut p, x) = program();
        let row = p.add_value(vec![1, 3], ElemType::F32, Origin::Computed);
        p.steps.push(Step {
            nodes: vec!["row".into()],
            kernel: Kernel::Map,
            inputs: vec![],
            operands: vec![View::whole(x, &[4, 3]).slice(0, 0, 1)],
            epilogue: Expr::Load(0),
            output: row,
        });
        let spread = View::whole(row, &[1, 3])
            .broadcast_to(&[4, 3])
            .expect("broadcast");
        let c = map(
            &mut p,
            vec![spread],
            Expr::Unary(UnaryOp::Neg, Box::new(Expr::Load(0))),
        );
        p.outputs.push(c);
        fuse(&mut p, 8);
        assert_eq!(p.steps.len(), 2, "a broadcast read is not a fusion");
    }
}
