//! `evaler repl` (being written).

use anyhow::{bail, Result};
use clap::Args;

#[derive(Args, Debug)]
pub struct ReplArgs {}

pub fn main(_args: ReplArgs) -> Result<i32> {
    bail!("not implemented yet")
}
