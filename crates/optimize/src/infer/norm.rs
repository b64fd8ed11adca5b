//! Normalizations that also output their statistics: `BatchNormalization` (running mean and
//! variance per channel) and `LayerNormalization` (mean and inverse deviation per row).

use super::{Ctx, Fact, Inferred, Inputs, Rules, axis};

pub(super) fn rules(op: &str) -> Option<Rules> {
    let shapes = match op {
        "BatchNormalization" => batch_norm,
        "LayerNormalization" => layer_norm,
        _ => return None,
    };
    Some(Rules::shaping(shapes))
}

fn batch_norm(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = cx.shape(0)?;
    let c = vec![
        *x.get(1)
            .ok_or("BatchNormalization of a tensor without channels")?,
    ];
    let elem = cx.elem(0);
    Ok(vec![
        Fact::new(x.to_vec(), elem),
        Fact::new(c.clone(), elem),
        Fact::new(c, elem),
    ])
}

fn layer_norm(cx: &Ctx) -> Inferred<Vec<Fact>> {
    let x = cx.shape(0)?;
    let a = axis(cx.node.attr_i("axis").unwrap_or(-1), x.len())?;
    let stats: Vec<usize> = x
        .iter()
        .enumerate()
        .map(|(i, &d)| if i < a { d } else { 1 })
        .collect();
    let elem = cx.elem(0);
    Ok(vec![
        Fact::new(x.to_vec(), elem),
        Fact::new(stats.clone(), elem),
        Fact::new(stats, elem),
    ])
}
