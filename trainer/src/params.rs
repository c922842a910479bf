//! A seeded parameter store.
//!
//! candle's own initialisers draw from an unseeded thread RNG on the CPU, so two runs with the same
//! seed would start from different weights. [`SeededVarMap`] is a `VarBuilder` backend that creates
//! every parameter from one seeded RNG, in the order the model asks for them, and keeps them in a
//! [`VarMap`] for the optimizer and for saving.

use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::{Init, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal, Uniform};

/// A `VarMap` whose new variables are drawn from a seeded RNG.
pub struct SeededVarMap {
    varmap: VarMap,
    rng: Mutex<StdRng>,
}

impl SeededVarMap {
    /// A new, empty store seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { varmap: VarMap::new(), rng: Mutex::new(StdRng::seed_from_u64(seed)) }
    }

    /// The underlying variables (for the optimizer, saving and export).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// A `VarBuilder` that creates missing variables from this store's RNG.
    pub fn builder(self: &std::sync::Arc<Self>, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(SharedSeeded(self.clone())), DType::F32, device.clone())
    }

    fn draw(&self, shape: &Shape, init: Init) -> candle_core::Result<Vec<f32>> {
        let n = shape.elem_count();
        let mut rng = self.rng.lock().map_err(|_| candle_core::Error::Msg("parameter RNG lock poisoned".into()))?;
        let uniform = |rng: &mut StdRng, lo: f64, up: f64| -> candle_core::Result<Vec<f32>> {
            let dist = Uniform::new(lo, up).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            Ok((0..n).map(|_| dist.sample(rng) as f32).collect())
        };
        let normal = |rng: &mut StdRng, mean: f64, std: f64| -> candle_core::Result<Vec<f32>> {
            let dist = Normal::new(mean, std).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            Ok((0..n).map(|_| dist.sample(rng) as f32).collect())
        };
        match init {
            Init::Const(v) => Ok(vec![v as f32; n]),
            Init::Uniform { lo, up } => uniform(&mut rng, lo, up),
            Init::Randn { mean, stdev } => normal(&mut rng, mean, stdev),
            Init::Kaiming { dist, fan, non_linearity } => {
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        uniform(&mut rng, -bound, bound)
                    }
                    NormalOrUniform::Normal => normal(&mut rng, 0.0, std),
                }
            }
        }
    }
}

struct SharedSeeded(std::sync::Arc<SeededVarMap>);

impl SimpleBackend for SharedSeeded {
    fn get(&self, shape: Shape, name: &str, init: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let store = &self.0;
        let mut data =
            store.varmap.data().lock().map_err(|_| candle_core::Error::Msg("parameter map lock poisoned".into()))?;
        if let Some(var) = data.get(name) {
            let tensor = var.as_tensor();
            if tensor.shape() != &shape {
                candle_core::bail!("parameter {name}: shape {:?}, asked for {shape:?}", tensor.shape());
            }
            return Ok(tensor.clone());
        }
        let values = store.draw(&shape, init)?;
        let var = Var::from_tensor(&Tensor::from_vec(values, shape, dev)?.to_dtype(dtype)?)?;
        let tensor = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> candle_core::Result<Tensor> {
        let data =
            self.0.varmap.data().lock().map_err(|_| candle_core::Error::Msg("parameter map lock poisoned".into()))?;
        match data.get(name) {
            Some(var) => Ok(var.as_tensor().clone()),
            None => candle_core::bail!("parameter {name} does not exist"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.varmap.data().lock().map(|d| d.contains_key(name)).unwrap_or(false)
    }
}
