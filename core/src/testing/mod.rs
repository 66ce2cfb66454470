//! Support for tests, fuzzing and benchmarks, behind the `testing`
//! feature: not part of the library's interface.

pub mod benchgen;
pub mod fuzzing;
