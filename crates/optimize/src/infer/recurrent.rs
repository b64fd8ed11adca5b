//! Recurrent layers: LSTM, GRU and RNN.

use super::{Ctx, Fact, Inferred, Inputs, Recorded, Rules, elements};

pub(super) fn rules(op: &str) -> Option<Rules> {
    match op {
        "LSTM" | "GRU" | "RNN" => Some(Rules::multiplying(recurrent, recurrent_macs)),
        _ => None,
    }
}

/// The input sequence X: [seq, batch, input] (or [batch, seq, input] with `layout` 1).
fn sequence(inputs: &dyn Inputs) -> Inferred<&[usize]> {
    let x = inputs.shape(0)?;
    if x.len() != 3 {
        return Err(format!("recurrent input of shape {x:?}, expected 3-D"));
    }
    Ok(x)
}

fn recurrent(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = sequence(cx)?;
    let hidden = cx
        .node
        .attr_i("hidden_size")
        .ok_or("no hidden_size attribute")?
        .max(0) as usize;
    let dirs = if cx.node.attr_s("direction") == Some("bidirectional") {
        2
    } else {
        1
    };
    let batch_first = cx.node.attr_i("layout").unwrap_or(0) == 1;
    let (seq, batch) = if batch_first {
        (x[1], x[0])
    } else {
        (x[0], x[1])
    };
    let elem = cx.elem(0);
    let y = if batch_first {
        vec![batch, seq, dirs, hidden]
    } else {
        vec![seq, dirs, batch, hidden]
    };
    let state = if batch_first {
        vec![batch, dirs, hidden]
    } else {
        vec![dirs, batch, hidden]
    };
    Ok(vec![
        Fact::new(y, elem),
        Fact::new(state.clone(), elem),
        Fact::new(state, elem),
    ])
}

fn recurrent_macs(inputs: &Recorded) -> Inferred<u64> {
    let x = sequence(inputs)?;
    // Per step and sequence, every gate of every direction multiplies the input by W and the
    // hidden state by R: numel(W) + numel(R) MACs.
    Ok(elements(&x[..2]) * (elements(inputs.shape(1)?) + elements(inputs.shape(2)?)))
}

#[cfg(test)]
mod tests {
    use crate::builder::GraphBuilder;
    use crate::infer::infer_shapes;
    use crate::onnx::{AttributeProto as A, DataType};

    #[test]
    fn sizes_recurrent_layers() {
        let mut g = GraphBuilder::new("g");
        g.input("seq", DataType::Float, &["5", "2", "8"]);
        g.weight("W", &[2, 16, 8], &[0.0; 256]);
        g.weight("R", &[2, 16, 4], &[0.0; 128]);
        g.node_with_outputs(
            "LSTM",
            "lstm",
            &["seq", "W", "R"],
            &["Y", "Y_h", "Y_c"],
            vec![
                A::int("hidden_size", 4),
                A::string("direction", "bidirectional"),
            ],
        );
        let model = g.into_model().unwrap();
        let inf = infer_shapes(&model, &[], None);
        assert!(inf.unresolved.is_empty(), "{:?}", inf.unresolved);
        assert_eq!(inf.shapes["Y"], vec![5, 2, 2, 4]);
        assert_eq!(inf.shapes["Y_c"], vec![2, 2, 4]);
    }
}
