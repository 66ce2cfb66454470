//! Cutting data into chunks: FastCDC content-defined chunking with a
//! seeded gear table ([`chunker`]), and resemblance sketches of chunks for
//! delta compression ([`sketch`]).

pub mod chunker;
pub mod sketch;
#[cfg(test)]
pub(crate) mod test_data;
