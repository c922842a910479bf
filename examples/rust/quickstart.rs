//! Steer from Rust: load a bundle, turn two new users' five choices into profiles, and ask which of
//! two candidates each would prefer. Run `make demo` first, then `make example-rust`, or:
//!
//!     cargo run --release -p steer-runtime --example quickstart -- out/demo/bundles/np-btl
//!
//! The demo bundle is the synthetic 1-D task: an option is one number y in [0, 1]. Users of one hidden
//! type prefer larger y; users of the other like y near 0.5 and dislike large y.

use ndarray::{Array2, array};
use steer_runtime::{LoadOptions, Model};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bundle = std::env::args().nth(1).unwrap_or_else(|| "out/demo/bundles/np-btl".into());
    let model = Model::load(&bundle, &LoadOptions::default())?;
    println!("loaded {} bundle from {bundle} (execution providers: {:?})", model.kind(), model.execution_providers());

    // Five choices per user: row i of `chosen` was preferred over row i of `rejected`.
    let users: [(&str, Array2<f32>, Array2<f32>); 2] = [
        ("user A", array![[0.92], [0.81], [0.66], [0.95], [0.40]], array![[0.58], [0.30], [0.12], [0.74], [0.05]]),
        ("user B", array![[0.48], [0.35], [0.52], [0.20], [0.44]], array![[0.91], [0.77], [0.63], [0.85], [0.10]]),
    ];
    let candidates = array![[0.55f32], [0.95]];
    for (name, chosen, rejected) in &users {
        let profile = model.infer_profile(chosen.view(), rejected.view())?;
        let p = model.preference(&profile, candidates.row(0), candidates.row(1))?;
        println!(
            "{name}: P(prefers y = {:.2}) = {:.3}, P(prefers y = {:.2}) = {:.3}",
            candidates[[0, 0]],
            p,
            candidates[[1, 0]],
            1.0 - p
        );
    }
    Ok(())
}
