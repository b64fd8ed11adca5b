//! How the gate writes its numbers in reasons and tables: percentages, signed changes, p-values.

/// "2.4 % slower" for a host speed ratio of 1.024.
pub(super) fn host_change(host: f64) -> String {
    format!(
        "{} {}",
        signed_pct(host).trim_start_matches(['+', '-']),
        if host > 1.0 { "slower" } else { "faster" }
    )
}

pub(super) fn pct(fraction: f64) -> String {
    let v = fraction * 100.0;
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A ratio as a signed percentage change: 1.052 -> "+5.2 %".
pub fn signed_pct(ratio: f64) -> String {
    format!("{:+.1} %", (ratio - 1.0) * 100.0)
}

pub(super) fn fmt_p(p: f64) -> String {
    if p.is_nan() {
        "-".into()
    } else if p < 1e-15 {
        "<1e-15".into()
    } else if p < 1e-4 {
        format!("{p:.0e}")
    } else {
        format!("{p:.4}")
    }
}
