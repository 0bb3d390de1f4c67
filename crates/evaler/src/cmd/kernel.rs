//! `evaler kernel` (being written).

use anyhow::{bail, Result};
use clap::Args;

#[derive(Args, Debug)]
pub struct KernelArgs {}

pub fn main(_args: KernelArgs) -> Result<i32> {
    bail!("not implemented yet")
}
