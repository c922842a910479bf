//! The behaviour suite through the Rust API (`steer_runtime`); `tests/c_abi.rs` runs the same suite through the C
//! ABI.

mod behaviour;

use std::path::Path;

use behaviour::{Api, Failure, OnToken, Options, Res, Scored};
use ndarray::{ArrayView1, ArrayView2, ArrayView3, s};
use std::ops::ControlFlow;

use steer_runtime::{
    BestOfN, Context, Dims, Error, ExecutionProvider, Generation, GenerationParams, GenerationRequest, LoadOptions,
    Model, ModelKind, Profile, TextPair,
};

struct RustApi;

fn failure(error: Error) -> Failure {
    Failure { code: error.code(), message: error.to_string() }
}

fn view2(data: &[f32], shape: [usize; 2]) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape(shape, data).expect("the test passes consistent shapes")
}

fn view3(data: &[f32], shape: [usize; 3]) -> ArrayView3<'_, f32> {
    ArrayView3::from_shape(shape, data).expect("the test passes consistent shapes")
}

/// A `[batch, n]` result, row by row.
fn flat(values: &ndarray::Array2<f32>) -> Vec<f32> {
    values.iter().copied().collect()
}

fn scored(reward: Vec<f32>, std: Option<Vec<f32>>) -> Scored {
    let std = std.unwrap_or_else(|| vec![0.0; reward.len()]);
    Scored { reward, std }
}

impl Api for RustApi {
    type Model = Model;
    type Profile = Profile;

    fn load(dir: &Path, options: &Options) -> Res<Model> {
        let mut load = LoadOptions::default().allow_cpu_fallback(options.allow_cpu_fallback);
        if let Some(threads) = options.intra_op_threads {
            load = load.intra_op_threads(threads);
        }
        if let Some(size) = options.session_pool_size {
            load = load.session_pool_size(size);
        }
        if let Some(providers) = &options.providers {
            load = load.execution_providers(providers.iter().copied());
        }
        if let Some(library) = &options.ort_library {
            load = load.ort_library(library);
        }
        Model::load(dir, &load).map_err(failure)
    }

    fn kind(model: &Model) -> ModelKind {
        model.kind()
    }

    fn dims(model: &Model) -> Dims {
        model.dims()
    }

    fn providers(model: &Model) -> Vec<ExecutionProvider> {
        model.execution_providers().to_vec()
    }

    fn fallbacks(model: &Model) -> Vec<(ExecutionProvider, String)> {
        model.provider_fallbacks().iter().map(|f| (f.provider, f.reason.clone())).collect()
    }

    fn infer_profile(model: &Model, chosen: &[f32], rejected: &[f32], k: usize, d: usize) -> Res<Profile> {
        model.infer_profile(view2(chosen, [k, d]), view2(rejected, [k, d])).map_err(failure)
    }

    fn profile_from(z: &[f32]) -> Res<Profile> {
        Profile::from_vec(z.to_vec()).map_err(failure)
    }

    fn profile_values(profile: &Profile) -> Vec<f32> {
        profile.as_slice().to_vec()
    }

    fn score(model: &Model, profile: &Profile, options: &[f32], n: usize, d: usize) -> Res<Scored> {
        let scores = model.score(profile, view2(options, [n, d])).map_err(failure)?;
        Ok(scored(scores.reward, scores.std))
    }

    fn preference(model: &Model, profile: &Profile, a: &[f32], b: &[f32]) -> Res<f32> {
        model.preference(profile, ArrayView1::from(a), ArrayView1::from(b)).map_err(failure)
    }

    fn infer_profiles(
        model: &Model,
        chosen: &[f32],
        rejected: &[f32],
        k: &[usize],
        max_k: usize,
        d: usize,
    ) -> Res<Vec<Profile>> {
        let chosen = view3(chosen, [k.len(), max_k, d]);
        let rejected = view3(rejected, [k.len(), max_k, d]);
        let contexts: Vec<Context<'_>> = k
            .iter()
            .enumerate()
            .map(|(b, &k)| Context::new(chosen.slice(s![b, ..k, ..]), rejected.slice(s![b, ..k, ..])))
            .collect();
        model.infer_profiles(&contexts).map_err(failure)
    }

    fn infer_profiles_padded(
        model: &Model,
        context: &[f32],
        mask: &[f32],
        batch: usize,
        k: usize,
        d: usize,
    ) -> Res<Vec<Profile>> {
        model.infer_profiles_padded(view3(context, [batch, k, 2 * d]), view2(mask, [batch, k])).map_err(failure)
    }

    fn score_batch(model: &Model, profiles: &[&Profile], options: &[f32], n: usize, d: usize) -> Res<Scored> {
        let scores = model.score_batch(profiles, view3(options, [profiles.len(), n, d])).map_err(failure)?;
        Ok(scored(flat(&scores.reward), scores.std.as_ref().map(flat)))
    }

    fn preference_batch(
        model: &Model,
        profiles: &[&Profile],
        a: &[f32],
        b: &[f32],
        n: usize,
        d: usize,
    ) -> Res<Vec<f32>> {
        let batch = profiles.len();
        let p = model.preference_batch(profiles, view3(a, [batch, n, d]), view3(b, [batch, n, d]));
        Ok(flat(&p.map_err(failure)?))
    }

    fn has_text(model: &Model) -> bool {
        model.embedder().is_some()
    }

    fn infer_profile_text(model: &Model, prompts: &[&str], chosen: &[&str], rejected: &[&str]) -> Res<Profile> {
        model.infer_profile_text(&text_pairs(prompts, chosen, rejected)).map_err(failure)
    }

    fn infer_profiles_text(
        model: &Model,
        prompts: &[&str],
        chosen: &[&str],
        rejected: &[&str],
        k: &[usize],
    ) -> Res<Vec<Profile>> {
        let pairs = text_pairs(prompts, chosen, rejected);
        let mut start = 0;
        let users: Vec<&[TextPair<'_>]> = k
            .iter()
            .map(|&k| {
                start += k;
                &pairs[start - k..start]
            })
            .collect();
        model.infer_profiles_text(&users).map_err(failure)
    }

    fn score_text(model: &Model, profile: &Profile, prompt: &str, responses: &[&str]) -> Res<Scored> {
        let scores = model.score_text(profile, prompt, responses).map_err(failure)?;
        Ok(scored(scores.reward, scores.std))
    }

    fn score_text_batch(
        model: &Model,
        profiles: &[&Profile],
        prompts: &[&str],
        responses: &[&str],
        n: usize,
    ) -> Res<Scored> {
        let scores = model.score_text_batch(profiles, prompts, responses, n).map_err(failure)?;
        Ok(scored(flat(&scores.reward), scores.std.as_ref().map(flat)))
    }

    fn has_policy(model: &Model) -> bool {
        model.policy().is_some()
    }

    fn generation_defaults(model: &Model) -> Res<GenerationParams> {
        let defaults = model.policy().map(|policy| policy.spec().defaults.clone());
        defaults.ok_or_else(|| failure(Error::NoPolicy { kind: model.kind().to_string() }))
    }

    fn generate(
        model: &Model,
        prompts: &[&str],
        profiles: &[&Profile],
        params: Option<&GenerationParams>,
        on_token: Option<OnToken<'_>>,
    ) -> Res<Vec<Generation>> {
        let params = params_or_defaults(model, params)?;
        let requests: Vec<GenerationRequest<'_>> =
            prompts.iter().zip(profiles).map(|(p, z)| GenerationRequest::new(p, z)).collect();
        match on_token {
            None => model.generate(&requests, &params),
            Some(on_token) => model.generate_stream(&requests, &params, &mut |event| {
                if on_token(event.row, event.token_id, event.text) {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            }),
        }
        .map_err(failure)
    }

    fn generate_best_of_n(
        model: &Model,
        prompt: &str,
        profile: &Profile,
        n: usize,
        params: Option<&GenerationParams>,
    ) -> Res<BestOfN> {
        let params = params_or_defaults(model, params)?;
        model.generate_best_of_n(prompt, profile, n, &params).map_err(failure)
    }
}

/// `params`, or the bundle's defaults as the C ABI takes them for NULL (no policy: 310, as generating would say).
fn params_or_defaults(model: &Model, params: Option<&GenerationParams>) -> Res<GenerationParams> {
    match params {
        Some(params) => Ok(params.clone()),
        None => RustApi::generation_defaults(model),
    }
}

fn text_pairs<'a>(prompts: &[&'a str], chosen: &[&'a str], rejected: &[&'a str]) -> Vec<TextPair<'a>> {
    assert!(prompts.len() == chosen.len() && chosen.len() == rejected.len());
    prompts.iter().zip(chosen).zip(rejected).map(|((p, c), r)| TextPair::new(p, c, r)).collect()
}

behaviour_tests!(RustApi);
