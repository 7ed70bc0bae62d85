//! The `popgate` binary. Being written.
fn main() {}
