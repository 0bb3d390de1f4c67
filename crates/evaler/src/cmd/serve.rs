//! `evaler serve` (being written).

use anyhow::{bail, Result};
use clap::Args;

#[derive(Args, Debug)]
pub struct ServeArgs {}

pub fn main(_args: ServeArgs) -> Result<i32> {
    bail!("not implemented yet")
}
