//! A user's profile (the latent vector z) and the context it is inferred from.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A user's profile: the vector `z` the encoder infers from their context, which conditions the reward.
///
/// It has `latent_dim` values for a conditioned (np-btl) model and none for an unconditioned one (btl, dpl), where
/// everyone shares the same reward. Profiles are small and owned, so they can be stored per user and sent across
/// threads; in JSON a profile is a plain array of numbers.
///
/// A profile inferred by a model remembers which encoder made it (its *space*: the SHA-256 of the bundle's encoder
/// graph, which also fixes the embedder it reads). Using it with a model whose encoder differs, for example a profile
/// built from a context through another embedder, is [`Error::ProfileSpace`]. A profile made with
/// [`Profile::from_vec`] (or read from JSON) has no space and is only checked for its length.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(try_from = "Vec<f32>", into = "Vec<f32>")]
pub struct Profile {
    z: Vec<f32>,
    space: Option<std::sync::Arc<str>>,
}

/// Profiles are equal when their values are; where they came from does not matter.
impl PartialEq for Profile {
    fn eq(&self, other: &Profile) -> bool {
        self.z == other.z
    }
}

impl Profile {
    /// Wraps a stored profile vector; fails with [`Error::NonFinite`] if any value is NaN or infinite. Its length is
    /// checked against the model when it is used.
    pub fn from_vec(z: Vec<f32>) -> Result<Profile> {
        if let Some(index) = z.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite { input: "profile".into(), index: vec![index], value: z[index] });
        }
        Ok(Profile { z, space: None })
    }

    /// The empty profile of unconditioned models.
    pub fn empty() -> Profile {
        Profile::default()
    }

    /// The profile's values.
    pub fn as_slice(&self) -> &[f32] {
        &self.z
    }

    /// The number of values (the model's `latent_dim`; 0 for unconditioned models).
    pub fn latent_dim(&self) -> usize {
        self.z.len()
    }

    /// Gives back the values.
    pub fn into_vec(self) -> Vec<f32> {
        self.z
    }

    /// The encoder that made this profile (see the type's docs), if a model inferred it.
    pub fn space(&self) -> Option<&str> {
        self.space.as_deref()
    }

    /// Wraps values the encoder produced (already known to have the right length), tagged with its space.
    pub(crate) fn from_encoder(z: Vec<f32>, space: Option<std::sync::Arc<str>>) -> Profile {
        Profile { z, space }
    }
}

impl TryFrom<Vec<f32>> for Profile {
    type Error = Error;

    fn try_from(z: Vec<f32>) -> Result<Profile> {
        Profile::from_vec(z)
    }
}

impl From<Profile> for Vec<f32> {
    fn from(profile: Profile) -> Vec<f32> {
        profile.z
    }
}

/// One user's context: `k` preference pairs, each an embedding of the chosen option and of the rejected one.
///
/// Both arrays are `[k, embedding_dim]`; row `i` of `chosen` was preferred over row `i` of `rejected`. `k` may be 0.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Embeddings of the preferred options, `[k, d]`.
    pub chosen: ArrayView2<'a, f32>,
    /// Embeddings of the rejected options, `[k, d]`.
    pub rejected: ArrayView2<'a, f32>,
}

impl<'a> Context<'a> {
    /// Pairs up chosen and rejected embeddings (checked when used).
    pub fn new(chosen: ArrayView2<'a, f32>, rejected: ArrayView2<'a, f32>) -> Self {
        Context { chosen, rejected }
    }

    /// The number of pairs `k`.
    pub fn len(&self) -> usize {
        self.chosen.nrows()
    }

    /// Whether the context has no pairs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_vec_rejects_non_finite_values() {
        let profile = Profile::from_vec(vec![0.5, -1.0]).unwrap();
        assert_eq!(profile.as_slice(), &[0.5, -1.0]);
        assert_eq!(profile.latent_dim(), 2);
        let err = Profile::from_vec(vec![0.0, f32::NAN]).unwrap_err();
        assert_eq!(err.code(), 302);
        assert!(matches!(err, Error::NonFinite { ref input, ref index, .. } if input == "profile" && index == &[1]));
        assert_eq!(Profile::empty().latent_dim(), 0);
    }

    #[test]
    fn profiles_are_json_arrays() {
        let profile = Profile::from_vec(vec![1.5, 2.0]).unwrap();
        assert_eq!(serde_json::to_string(&profile).unwrap(), "[1.5,2.0]");
        let back: Profile = serde_json::from_str("[1.5,2.0]").unwrap();
        assert_eq!(back, profile);
    }
}
