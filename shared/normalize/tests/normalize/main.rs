//! One test binary for the normalizers: published (and, where none exists, documented-shape) fixtures in,
//! canonical records out, with the key fields asserted by hand.

mod classify;
mod errors;
mod orders;
mod otto;
mod records;
mod robustness;
mod support;
