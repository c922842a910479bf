//! [`Model`]: a loaded bundle and the calls that run it.

use std::borrow::Borrow;
use std::ops::ControlFlow;
use std::path::Path;

use ndarray::{Array2, Array3, ArrayView1, ArrayView2, ArrayView3, Axis as NdAxis, concatenate, stack};

use crate::error::{Error, Result};
use crate::generate::{BestOfN, Generation, GenerationRequest, TokenEvent};
use crate::graph::GraphSpec;
use crate::input::{Axis, check_context, check_finite, check_mask, check_not_empty, check_shape, pack_contexts};
use crate::manifest::{Dims, Manifest, ModelKind, io};
use crate::options::{ExecutionProvider, LoadOptions};
use crate::ort_env;
use crate::policy::{Policy, load_policy};
use crate::policy_spec::GenerationParams;
use crate::pool::{SessionPool, load_pool, output, run, tensor};
use crate::preference::{Reward, preference_probability};
use crate::profile::{Context, Profile};
use crate::providers::{self, ProviderFallback};
use crate::scores::{BatchScores, Scores};
use crate::text::{Embedder, TextOption, TextPair, load_embedder};

/// A loaded, validated bundle, ready to infer profiles and score options.
///
/// `Model` is `Send + Sync`: share it across threads (e.g. in an `Arc`). Each graph has a pool of ONNX Runtime
/// sessions ([`LoadOptions::session_pool_size`]); a call takes an idle session or waits for one, so up to
/// pool-size calls run at once.
///
/// Every call checks its inputs first (shapes, finite values, mask values, profile length) and runs its graph once.
#[derive(Debug)]
pub struct Model {
    manifest: Manifest,
    encoder: Option<SessionPool>,
    reward: SessionPool,
    text: Option<Embedder>,
    policy: Option<Policy>,
    providers: Vec<ExecutionProvider>,
    fallbacks: Vec<ProviderFallback>,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Model>();
};

impl Model {
    /// Loads the bundle in `dir`: checks the manifest and every file's hash, loads ONNX Runtime if needed, creates
    /// the sessions and checks each graph's inputs and outputs against the manifest. Any failure returns an error
    /// and keeps nothing.
    ///
    /// ```no_run
    /// use steer_runtime::{LoadOptions, Model};
    ///
    /// let model = Model::load("out/bundle", &LoadOptions::default())?;
    /// println!("{} model, d = {}", model.kind(), model.dims().embedding_dim);
    /// # Ok::<(), steer_runtime::Error>(())
    /// ```
    pub fn load(dir: impl AsRef<Path>, options: &LoadOptions) -> Result<Model> {
        let dir = dir.as_ref();
        options.validate()?;
        let manifest = Manifest::load_and_verify(dir)?;
        let env = ort_env::environment(options)?;
        let plan = providers::resolve(&env, options)?;
        let (kind, dims) = (manifest.model_kind, manifest.dims);
        let encoder = match &manifest.graphs.encoder {
            Some(file) => Some(load_pool(&env, dir, file, &GraphSpec::encoder(dims), &plan, options)?),
            None => None,
        };
        let reward = load_pool(&env, dir, &manifest.graphs.reward, &GraphSpec::reward(kind, dims), &plan, options)?;
        let text = match &manifest.text {
            Some(spec) => Some(load_embedder(&env, dir, spec, dims.embedding_dim, &plan, options)?),
            None => None,
        };
        let policy = match &manifest.policy {
            Some(spec) => Some(load_policy(&env, dir, spec, dims.latent_dim, &plan, options)?),
            None => None,
        };
        Ok(Model { manifest, encoder, reward, text, policy, providers: plan.active, fallbacks: plan.fallbacks })
    }

    /// The bundle's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Which model the bundle holds.
    pub fn kind(&self) -> ModelKind {
        self.manifest.model_kind
    }

    /// The embedding and latent sizes.
    pub fn dims(&self) -> Dims {
        self.manifest.dims
    }

    /// The providers the sessions run on, highest priority first; always ends with CPU, which runs whatever an
    /// accelerator cannot.
    pub fn execution_providers(&self) -> &[ExecutionProvider] {
        &self.providers
    }

    /// Requested providers that could not be used and were skipped (only with
    /// [`LoadOptions::allow_cpu_fallback`]); empty when everything requested is active.
    pub fn provider_fallbacks(&self) -> &[ProviderFallback] {
        &self.fallbacks
    }

    /// Infers a user's profile from `k` preference pairs: `chosen` and `rejected` are `[k, d]`. With `k = 0` the
    /// profile is the population prior the model learned. Unconditioned models return the empty profile without
    /// running anything.
    pub fn infer_profile(&self, chosen: ArrayView2<'_, f32>, rejected: ArrayView2<'_, f32>) -> Result<Profile> {
        let context = Context::new(chosen, rejected);
        check_context("", &context, self.dims().embedding_dim)?;
        let z = self.encode(&[context])?;
        Ok(Profile::from_encoder(z.into_iter().collect(), self.profile_space()))
    }

    /// Infers one profile per user, each from its own context (`k` may differ per user), all users in one encoder
    /// run. Profile `b` is user `b`'s, tagged with this model's encoder like [`Model::infer_profile`]'s.
    pub fn infer_profiles(&self, contexts: &[Context<'_>]) -> Result<Vec<Profile>> {
        check_not_empty("contexts", contexts.len(), "at least one context")?;
        for (i, context) in contexts.iter().enumerate() {
            check_context(&format!("contexts[{i}]."), context, self.dims().embedding_dim)?;
        }
        Ok(self.profiles(self.encode(contexts)?))
    }

    /// Infers profiles from already padded input: `context` `[batch, K, 2d]` with rows `[chosen ‖ rejected]`, and
    /// `mask` `[batch, K]` with 1.0 for a real pair and 0.0 for padding. Returns one profile per row of the batch.
    ///
    /// `K = 0` is allowed and gives the population prior. It is sent to the graph as one padding row (mask 0), which
    /// the encoder masks out exactly as it does for any all-padding row of a batch: ONNX Runtime's CPU provider
    /// handles a zero-sized axis, but accelerators such as TensorRT do not reliably, so the runtime never sends one.
    pub fn infer_profiles_padded(
        &self,
        context: ArrayView3<'_, f32>,
        mask: ArrayView2<'_, f32>,
    ) -> Result<Vec<Profile>> {
        let d = self.dims().embedding_dim;
        check_shape(io::CONTEXT, &context, &[Axis::Any("batch"), Axis::Any("k"), Axis::Is(2 * d)])?;
        let (batch, k, _) = context.dim();
        check_not_empty(io::CONTEXT, batch, "batch >= 1")?;
        check_shape(io::MASK, &mask, &[Axis::Is(batch), Axis::Is(k)])?;
        check_finite(io::CONTEXT, &context)?;
        check_mask(&mask)?;
        let z = match &self.encoder {
            None => Array2::zeros((batch, 0)),
            Some(pool) if k == 0 => run_encoder(
                pool,
                self.dims(),
                Array3::zeros((batch, 1, 2 * d)).view(),
                Array2::zeros((batch, 1)).view(),
            )?,
            Some(pool) => run_encoder(pool, self.dims(), context, mask)?,
        };
        Ok(self.profiles(z))
    }

    /// Scores `n` options, `[n, d]`, for a user's profile. One reward per option (plus a std for DPL).
    pub fn score(&self, profile: &Profile, options: ArrayView2<'_, f32>) -> Result<Scores> {
        let d = self.dims().embedding_dim;
        self.check_profile("profile", profile)?;
        check_shape(io::OPTIONS, &options, &[Axis::Any("n"), Axis::Is(d)])?;
        check_not_empty(io::OPTIONS, options.nrows(), "at least one option")?;
        check_finite(io::OPTIONS, &options)?;
        let z = self.profile_view(profile);
        self.run_reward(z, options.insert_axis(NdAxis(0)), |reward, std| Scores {
            reward: reward.iter().copied().collect(),
            std: std.map(|std| std.iter().copied().collect()),
        })
    }

    /// Scores a batch: user `i` (`profiles[i]`) gets the `n` options in row `i` of `options` `[batch, n, d]`.
    /// Returns `[batch, n]` rewards (and stds for DPL). Each profile is checked as in [`Model::score`], so one from
    /// another bundle's encoder is [`Error::ProfileSpace`]; unconditioned models take empty profiles. `profiles` may
    /// hold the profiles (`&[Profile]`) or borrow them (`&[&Profile]`), so users stored apart can share a batch.
    pub fn score_batch<P: Borrow<Profile>>(&self, profiles: &[P], options: ArrayView3<'_, f32>) -> Result<BatchScores> {
        let z = self.check_batch(profiles, &[(io::OPTIONS, &options)])?;
        self.run_reward(self.conditioning(z.view()), options, |reward, std| BatchScores {
            reward: reward.to_owned(),
            std: std.map(|std| std.to_owned()),
        })
    }

    /// The probability that the user with this profile prefers option `a` over option `b` (both `[d]`); see
    /// [`preference_probability`] for the formula per model kind.
    pub fn preference(&self, profile: &Profile, a: ArrayView1<'_, f32>, b: ArrayView1<'_, f32>) -> Result<f32> {
        let d = self.dims().embedding_dim;
        self.check_profile("profile", profile)?;
        for (name, option) in [("a", &a), ("b", &b)] {
            check_shape(name, option, &[Axis::Is(d)])?;
            check_finite(name, option)?;
        }
        let options = stack(NdAxis(0), &[a, b]).map_err(|e| shape_error("a, b", e))?;
        let kind = self.kind();
        let z = self.profile_view(profile);
        self.run_reward(z, options.view().insert_axis(NdAxis(0)), |reward, std| {
            preference_probability(kind, reward_at(&reward, &std, 0, 0), reward_at(&reward, &std, 0, 1))
        })
    }

    /// Preference probabilities for a batch: `profiles` (one per user) and `a`, `b` `[batch, n, d]`. Entry `[i, j]`
    /// is the probability that user `i` prefers `a[i, j]` over `b[i, j]`. Scores `a` and `b` in one run; profiles
    /// are checked as in [`Model::score_batch`].
    pub fn preference_batch<P: Borrow<Profile>>(
        &self,
        profiles: &[P],
        a: ArrayView3<'_, f32>,
        b: ArrayView3<'_, f32>,
    ) -> Result<Array2<f32>> {
        let z = self.check_batch(profiles, &[("a", &a), ("b", &b)])?;
        let (batch, n, _) = a.dim();
        let options = concatenate(NdAxis(1), &[a, b]).map_err(|e| shape_error("a, b", e))?;
        let kind = self.kind();
        self.run_reward(self.conditioning(z.view()), options.view(), |reward, std| {
            Array2::from_shape_fn((batch, n), |(i, j)| {
                preference_probability(kind, reward_at(&reward, &std, i, j), reward_at(&reward, &std, i, n + j))
            })
        })
    }

    /// The bundle's tokenizer and embedder, for text bundles ([`Manifest::text`]).
    pub fn embedder(&self) -> Option<&Embedder> {
        self.text.as_ref()
    }

    /// Embeds text options with the bundle's tokenizer and embedder: `[n, embedding_dim]`.
    pub fn embed_texts(&self, options: &[TextOption<'_>]) -> Result<Array2<f32>> {
        self.text_embedder()?.embed(options)
    }

    /// Infers a user's profile from `k` text preferences (`k = 0` gives the population prior); the text form of
    /// [`Model::infer_profile`]. Each pair is embedded as two options, `(prompt, chosen)` and `(prompt, rejected)`.
    ///
    /// ```no_run
    /// use steer_runtime::{LoadOptions, Model, TextPair};
    ///
    /// let model = Model::load("out/text/bundles/np-btl", &LoadOptions::default())?;
    /// let user = model.infer_profile_text(&[TextPair::new("How do I boil an egg?", "Boil it 8 minutes.", "Eggs!")])?;
    /// let scores = model.score_text(&user, "Any tips for pasta?", &["Salt the water.", "Pasta is food."])?;
    /// # Ok::<(), steer_runtime::Error>(())
    /// ```
    pub fn infer_profile_text(&self, pairs: &[TextPair<'_>]) -> Result<Profile> {
        let z = self.encode_text(&[pairs])?;
        Ok(Profile::from_encoder(z.into_iter().collect(), self.profile_space()))
    }

    /// Infers one profile per user from each user's text preferences (`k` may differ per user), in one embedder
    /// run and one encoder run; the text form of [`Model::infer_profiles`].
    pub fn infer_profiles_text(&self, users: &[&[TextPair<'_>]]) -> Result<Vec<Profile>> {
        Ok(self.profiles(self.encode_text(users)?))
    }

    /// Embeds every user's pairs in one run and encodes them: `[users, latent_dim]`.
    fn encode_text(&self, users: &[&[TextPair<'_>]]) -> Result<Array2<f32>> {
        check_not_empty("users", users.len(), "at least one user")?;
        let embedder = self.text_embedder()?;
        let options: Vec<TextOption<'_>> = users
            .iter()
            .flat_map(|pairs| pairs.iter())
            .flat_map(|pair| [TextOption::new(pair.prompt, pair.chosen), TextOption::new(pair.prompt, pair.rejected)])
            .collect();
        let embedded = embedder.embed(&options)?;
        let mut contexts = Vec::with_capacity(users.len());
        let mut row = 0;
        for pairs in users {
            let end = row + 2 * pairs.len();
            let chosen = embedded.slice_axis(NdAxis(0), ndarray::Slice::from(row..end).step_by(2));
            // `row + 1..end` would start past its end for a user with no pairs.
            let rejected = embedded.slice_axis(NdAxis(0), ndarray::Slice::from((row + 1).min(end)..end).step_by(2));
            contexts.push(Context::new(chosen, rejected));
            row += 2 * pairs.len();
        }
        self.encode(&contexts)
    }

    /// Scores `responses` to one `prompt` for a user's profile; the text form of [`Model::score`].
    pub fn score_text(&self, profile: &Profile, prompt: &str, responses: &[&str]) -> Result<Scores> {
        self.check_profile("profile", profile)?;
        check_not_empty("responses", responses.len(), "at least one response")?;
        let options: Vec<TextOption<'_>> = responses.iter().map(|r| TextOption::new(prompt, r)).collect();
        let embedded = self.text_embedder()?.embed(&options)?;
        self.score(profile, embedded.view())
    }

    /// Scores a batch: row `i` is user `profiles[i]` with `prompts[i]` and its `n` responses
    /// `responses[i * n .. (i + 1) * n]`. Returns `[batch, n]` rewards; the text form of [`Model::score_batch`].
    pub fn score_text_batch<P: Borrow<Profile>>(
        &self,
        profiles: &[P],
        prompts: &[&str],
        responses: &[&str],
        n: usize,
    ) -> Result<BatchScores> {
        let batch = prompts.len();
        check_not_empty("prompts", batch, "at least one prompt")?;
        check_not_empty("responses", n, "n >= 1 responses per prompt")?;
        // `checked_mul`: n comes from callers (the C ABI) and may be anything; an overflow must not wrap to a match.
        if batch.checked_mul(n) != Some(responses.len()) {
            let expected = batch.checked_mul(n).map_or_else(|| "more than fit in memory".into(), |len| len.to_string());
            return Err(Error::ShapeMismatch {
                input: "responses".into(),
                expected: format!("{batch} prompts × {n} responses = {expected} responses"),
                found: format!("{} responses", responses.len()),
            });
        }
        let embedder = self.text_embedder()?;
        // A foreign or short profile is refused before any text is embedded.
        let z = self.stack_profiles(profiles, batch)?;
        let options: Vec<TextOption<'_>> =
            responses.iter().enumerate().map(|(j, r)| TextOption::new(prompts[j / n], r)).collect();
        let embedded = embedder.embed(&options)?;
        let d = self.dims().embedding_dim;
        let options = embedded.into_shape_with_order((batch, n, d)).map_err(|e| shape_error("responses", e))?;
        self.run_reward(self.conditioning(z.view()), options.view(), |reward, std| BatchScores {
            reward: reward.to_owned(),
            std: std.map(|std| std.to_owned()),
        })
    }

    /// The bundle's steerable policy ([`Manifest::policy`]): its spec (with the generation defaults), tokenizer and
    /// prompt rule; `None` for bundles without one, where the generation calls fail with [`Error::NoPolicy`].
    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }

    /// Generates one reply per request with the bundle's policy, each steered by its request's profile, all
    /// requests in one batch. See [`crate::generate`] for the sampling rule and when a row ends; the prompt rule is
    /// in [`crate::policy`].
    ///
    /// Errors: [`Error::NoPolicy`] (310) for a bundle without a policy, [`Error::InvalidGenerationParam`] (308) for
    /// invalid `params`, [`Error::EmptyInput`] for no requests, [`Error::ProfileLength`] for a profile that is not
    /// `latent_dim` long, [`Error::PromptTooLong`] (309) when a prompt leaves no room for `max_new_tokens`.
    ///
    /// ```no_run
    /// use steer_runtime::{GenerationRequest, LoadOptions, Model, TextPair};
    ///
    /// let model = Model::load("out/bundle-policy", &LoadOptions::default())?;
    /// let user = model.infer_profile_text(&[TextPair::new("Tell me a joke", "Short pun.", "A long story.")])?;
    /// let params = model.policy().map(|policy| policy.spec().defaults.clone()).unwrap_or_default();
    /// let out = model.generate(&[GenerationRequest::new("Any tips for pasta?", &user)], &params)?;
    /// println!("{}", out[0].text);
    /// # Ok::<(), steer_runtime::Error>(())
    /// ```
    pub fn generate(&self, requests: &[GenerationRequest<'_>], params: &GenerationParams) -> Result<Vec<Generation>> {
        self.generate_stream(requests, params, &mut |_| ControlFlow::Continue(()))
    }

    /// [`Model::generate`], calling `on_token` for every sampled token with the text it adds to its row (a
    /// [`TokenEvent`]). Returning [`ControlFlow::Break`] cancels every row still running: they end with
    /// [`FinishReason::Cancelled`](crate::FinishReason::Cancelled) and what was generated so far is returned.
    pub fn generate_stream(
        &self,
        requests: &[GenerationRequest<'_>],
        params: &GenerationParams,
        on_token: &mut dyn FnMut(TokenEvent<'_>) -> ControlFlow<()>,
    ) -> Result<Vec<Generation>> {
        let policy = self.policy_ref()?;
        params.validate()?;
        check_not_empty("requests", requests.len(), "at least one request")?;
        for (i, request) in requests.iter().enumerate() {
            self.check_profile(&format!("requests[{i}].profile"), request.profile)?;
        }
        crate::generate::generate(policy, requests, params, on_token)
    }

    /// Best-of-n: samples `n` replies to `prompt` for the profile in one batch (row `i` uses seed `params.seed + i`)
    /// and scores each with the bundle's own reward for the same profile ([`Model::score_text`]). `best` is the
    /// index of the highest reward (the first on a tie). `n = 0` is [`Error::InvalidGenerationParam`].
    pub fn generate_best_of_n(
        &self,
        prompt: &str,
        profile: &Profile,
        n: usize,
        params: &GenerationParams,
    ) -> Result<BestOfN> {
        self.policy_ref()?;
        if n == 0 {
            return Err(Error::InvalidGenerationParam {
                param: "n".into(),
                expected: "at least 1 candidate".into(),
                found: "0".into(),
            });
        }
        let requests = vec![GenerationRequest::new(prompt, profile); n];
        let candidates = self.generate(&requests, params)?;
        let texts: Vec<&str> = candidates.iter().map(|c| c.text.as_str()).collect();
        let rewards = self.score_text(profile, prompt, &texts)?.reward;
        let best = crate::sampling::argmax(&rewards);
        Ok(BestOfN { best, candidates, rewards })
    }

    fn policy_ref(&self) -> Result<&Policy> {
        self.policy.as_ref().ok_or_else(|| Error::NoPolicy { kind: self.kind().to_string() })
    }

    fn text_embedder(&self) -> Result<&Embedder> {
        self.text.as_ref().ok_or_else(|| Error::NoTextEmbedder { kind: self.kind().to_string() })
    }

    /// Encodes checked contexts; unconditioned models give `[users, 0]` without running anything.
    fn encode(&self, contexts: &[Context<'_>]) -> Result<Array2<f32>> {
        match &self.encoder {
            None => Ok(Array2::zeros((contexts.len(), 0))),
            Some(pool) => {
                let (context, mask) = pack_contexts(contexts, self.dims().embedding_dim);
                run_encoder(pool, self.dims(), context.view(), mask.view())
            }
        }
    }

    /// Checks a profile's length and space; `name` says which profile in the error (`profile`, `profiles[3]`).
    fn check_profile(&self, name: &str, profile: &Profile) -> Result<()> {
        let expected = self.dims().latent_dim;
        if profile.latent_dim() != expected {
            return Err(Error::ProfileLength { profile: name.into(), expected, found: profile.latent_dim() });
        }
        match (profile.space(), self.profile_space()) {
            (Some(found), Some(expected)) if found != &*expected => Err(Error::ProfileSpace {
                profile: name.into(),
                expected: expected.to_string(),
                found: found.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// The space of this model's profiles: the SHA-256 of its encoder graph (none for unconditioned models).
    pub fn profile_space(&self) -> Option<std::sync::Arc<str>> {
        let encoder = self.manifest.graphs.encoder.as_ref()?;
        let entry = self.manifest.files.iter().find(|f| &f.path == encoder)?;
        Some(std::sync::Arc::from(entry.sha256.as_str()))
    }

    /// The profile as a `[1, latent_dim]` view, for conditioned models.
    fn profile_view<'p>(&self, profile: &'p Profile) -> Option<ArrayView2<'p, f32>> {
        self.conditioning(ArrayView1::from(profile.as_slice()).insert_axis(NdAxis(0)))
    }

    /// `z` if the reward graph takes it.
    fn conditioning<'z>(&self, z: ArrayView2<'z, f32>) -> Option<ArrayView2<'z, f32>> {
        self.kind().is_conditioned().then_some(z)
    }

    /// Tags encoder output `[users, latent_dim]` with this model's profile space, one profile per row.
    fn profiles(&self, z: Array2<f32>) -> Vec<Profile> {
        let space = self.profile_space();
        z.rows().into_iter().map(|row| Profile::from_encoder(row.to_vec(), space.clone())).collect()
    }

    /// Checks batched inputs: each option array is `[batch, n, d]` with the same batch and n, non-empty, finite;
    /// then the profiles ([`Model::stack_profiles`]). Returns them stacked as `z` `[batch, latent_dim]`.
    fn check_batch<P: Borrow<Profile>>(
        &self,
        profiles: &[P],
        options: &[(&str, &ArrayView3<'_, f32>)],
    ) -> Result<Array2<f32>> {
        let d = self.dims().embedding_dim;
        let mut expected = [Axis::Any("batch"), Axis::Any("n"), Axis::Is(d)];
        for (name, array) in options {
            check_shape(name, array, &expected)?;
            let (batch, n, _) = array.dim();
            check_not_empty(name, batch, "batch >= 1")?;
            check_not_empty(name, n, "n >= 1 options per row")?;
            expected = [Axis::Is(batch), Axis::Is(n), Axis::Is(d)];
        }
        let batch = options.first().map_or(0, |(_, array)| array.dim().0);
        options.iter().try_for_each(|(name, array)| check_finite(name, array))?;
        self.stack_profiles(profiles, batch)
    }

    /// Checks that there is one profile per row of a batch, each of this model's length and space, and stacks them
    /// as `z` `[batch, latent_dim]`.
    fn stack_profiles<P: Borrow<Profile>>(&self, profiles: &[P], batch: usize) -> Result<Array2<f32>> {
        if profiles.len() != batch {
            return Err(Error::ShapeMismatch {
                input: "profiles".into(),
                expected: format!("[{batch}] (one profile per row of the batch)"),
                found: format!("[{}]", profiles.len()),
            });
        }
        for (i, profile) in profiles.iter().enumerate() {
            self.check_profile(&format!("profiles[{i}]"), profile.borrow())?;
        }
        let mut z = Array2::zeros((batch, self.dims().latent_dim));
        for (mut row, profile) in z.rows_mut().into_iter().zip(profiles) {
            row.assign(&ArrayView1::from(profile.borrow().as_slice()));
        }
        Ok(z)
    }

    /// Runs the reward graph once on `options` `[batch, n, d]` (and `z`) and hands the `reward` and `reward_std`
    /// outputs, `[batch, n]` views of ONNX Runtime's buffers, to `read`.
    fn run_reward<R>(
        &self,
        z: Option<ArrayView2<'_, f32>>,
        options: ArrayView3<'_, f32>,
        read: impl FnOnce(ArrayView2<'_, f32>, Option<ArrayView2<'_, f32>>) -> R,
    ) -> Result<R> {
        let pool = &self.reward;
        let (batch, n, _) = options.dim();
        let options = options.as_standard_layout();
        let z = z.as_ref().map(|z| z.as_standard_layout());
        let dpl = self.kind() == ModelKind::Dpl;
        pool.with_session(|session| {
            let mut inputs = ort::inputs![io::OPTIONS => tensor(pool, &options)?];
            if let Some(z) = &z {
                inputs.push((io::Z.into(), tensor(pool, z)?.into()));
            }
            let outputs = run(pool, session, inputs)?;
            let reward = output(pool, &outputs, io::REWARD, [batch, n])?;
            let std = if dpl { Some(output(pool, &outputs, io::REWARD_STD, [batch, n])?) } else { None };
            Ok(read(reward, std))
        })
    }
}

/// Runs the encoder once and copies `z` `[batch, latent_dim]` out of ONNX Runtime's buffer.
fn run_encoder(
    pool: &SessionPool,
    dims: Dims,
    context: ArrayView3<'_, f32>,
    mask: ArrayView2<'_, f32>,
) -> Result<Array2<f32>> {
    let batch = context.dim().0;
    let context = context.as_standard_layout();
    let mask = mask.as_standard_layout();
    pool.with_session(|session| {
        let inputs = ort::inputs![io::CONTEXT => tensor(pool, &context)?, io::MASK => tensor(pool, &mask)?];
        let outputs = run(pool, session, inputs)?;
        Ok(output(pool, &outputs, io::Z, [batch, dims.latent_dim])?.to_owned())
    })
}

/// The reward (and std) at `[i, j]`; shapes were checked, so a miss reads as NaN rather than panicking.
fn reward_at(reward: &ArrayView2<'_, f32>, std: &Option<ArrayView2<'_, f32>>, i: usize, j: usize) -> Reward {
    Reward {
        mean: reward.get([i, j]).copied().unwrap_or(f32::NAN),
        std: std.as_ref().map(|std| std.get([i, j]).copied().unwrap_or(f32::NAN)),
    }
}

/// Joining already checked arrays cannot fail; if it did, say so as a shape error.
fn shape_error(input: &str, err: ndarray::ShapeError) -> Error {
    Error::ShapeMismatch {
        input: input.to_string(),
        expected: "arrays that can be joined".into(),
        found: err.to_string(),
    }
}
