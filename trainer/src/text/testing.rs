//! Test helper: the test kit's fetch-or-skip of the models, for the trainer's unit tests.
#![cfg(test)]

pub(crate) use steer_testkit::models_or_skip;
