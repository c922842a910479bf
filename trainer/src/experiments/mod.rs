//! The measurements of the `steer` CLI that are neither training nor evaluation: the identifiability experiment
//! (`steer identifiability`) and the generation benchmark (`steer bench-policy`).

pub mod bench_policy;
pub mod identifiability;
