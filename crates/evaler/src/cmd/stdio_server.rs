//! `evaler stdio-server` (being written).

use anyhow::{bail, Result};
use clap::Args;

#[derive(Args, Debug)]
pub struct StdioServerArgs {}

pub fn main(_args: StdioServerArgs) -> Result<i32> {
    bail!("not implemented yet")
}
