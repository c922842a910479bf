//! The arithmetic test model. Its graphs compute simple, checkable functions:
//!
//! ```text
//! encoder: z = (Σ_k mask[k] · context[k]) @ W                  with W[i, l] = W_SCALE · (i + 1) · (l + 1)
//! reward (np-btl): r[n] = options[n] · u + z · v
//! reward (btl, dpl): r[n] = options[n] · u;  dpl: std[n] = softplus(options[n] · s)
//! ```

use steer_runtime::ModelKind;

use crate::graph::{D, Graph};

/// The scale of the encoder's weights.
pub const W_SCALE: f32 = 0.1;

/// The reward's option weights `u` for embedding size `d`.
pub fn u(d: usize) -> Vec<f32> {
    (0..d).map(|i| 1.0 - 0.5 * i as f32).collect()
}

/// The reward's profile weights `v`.
pub fn v(latent: usize) -> Vec<f32> {
    (0..latent).map(|l| 0.25 * (l as f32 + 1.0)).collect()
}

/// The DPL std weights `s`.
pub fn s(d: usize) -> Vec<f32> {
    (0..d).map(|i| 0.3 + 0.2 * i as f32).collect()
}

/// The encoder's weights `W`, `[2d, latent]` row-major.
pub fn w(d: usize, latent: usize) -> Vec<f32> {
    (0..2 * d).flat_map(|i| (0..latent).map(move |l| W_SCALE * (i as f32 + 1.0) * (l as f32 + 1.0))).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The encoder's z for one user.
pub fn expected_z(chosen: &[Vec<f32>], rejected: &[Vec<f32>], d: usize, latent: usize) -> Vec<f32> {
    let mut summed = vec![0.0f32; 2 * d];
    for (c, r) in chosen.iter().zip(rejected) {
        for i in 0..d {
            summed[i] += c[i];
            summed[d + i] += r[i];
        }
    }
    let w = w(d, latent);
    (0..latent).map(|l| (0..2 * d).map(|i| summed[i] * w[i * latent + l]).sum()).collect()
}

/// The reward of one option (and its std for DPL).
pub fn expected_reward(kind: ModelKind, option: &[f32], z: &[f32]) -> (f32, Option<f32>) {
    let d = option.len();
    let base = dot(option, &u(d));
    match kind {
        ModelKind::NpBtl => (base + dot(z, &v(z.len())), None),
        ModelKind::Btl => (base, None),
        ModelKind::Dpl => (base, Some(dot(option, &s(d)).exp().ln_1p())),
        other => panic!("the fixtures have no arithmetic for {other}"),
    }
}

/// The encoder graph for embedding size `d` and profile size `latent`.
pub fn encoder_graph(d: usize, latent: usize) -> Graph {
    Graph::default()
        .input("context", &[D::Sym("batch"), D::Sym("k"), D::Fix(2 * d as i64)])
        .input("mask", &[D::Sym("batch"), D::Sym("k")])
        .output("z", &[D::Sym("batch"), D::Fix(latent as i64)])
        .axes("axis1", &[1])
        .axes("axis2", &[2])
        .weight("W", &[2 * d as i64, latent as i64], &w(d, latent))
        .op("Unsqueeze", &["mask", "axis2"], &["mask3"])
        .op("Mul", &["context", "mask3"], &["masked"])
        .reduce_sum("masked", "axis1", "summed", 0)
        .op("MatMul", &["summed", "W"], &["z"])
}

/// The reward graph of `kind`.
pub fn reward_graph(kind: ModelKind, d: usize, latent: usize) -> Graph {
    let mut g = Graph::default()
        .input("options", &[D::Sym("batch"), D::Sym("n"), D::Fix(d as i64)])
        .output("reward", &[D::Sym("batch"), D::Sym("n")])
        .axes("axis1", &[1])
        .axes("axis2", &[2])
        .weight("u", &[d as i64], &u(d))
        .op("Mul", &["options", "u"], &["ou"]);
    match kind {
        ModelKind::NpBtl => {
            g = g
                .input("z", &[D::Sym("batch"), D::Fix(latent as i64)])
                .weight("v", &[latent as i64], &v(latent))
                .reduce_sum("ou", "axis2", "ro", 0)
                .op("Mul", &["z", "v"], &["zv"])
                .reduce_sum("zv", "axis1", "rz", 1)
                .op("Add", &["ro", "rz"], &["reward"]);
        }
        ModelKind::Btl => g = g.reduce_sum("ou", "axis2", "reward", 0),
        ModelKind::Dpl => {
            g = g
                .output("reward_std", &[D::Sym("batch"), D::Sym("n")])
                .weight("s", &[d as i64], &s(d))
                .reduce_sum("ou", "axis2", "reward", 0)
                .op("Mul", &["options", "s"], &["os"])
                .reduce_sum("os", "axis2", "spre", 0)
                .op("Softplus", &["spre"], &["reward_std"]);
        }
        other => panic!("the fixtures have no graph for {other}"),
    }
    g
}
