//! `evaler judge` (being written).

use anyhow::{bail, Result};
use clap::Args;

#[derive(Args, Debug)]
pub struct JudgeArgs {}

pub fn main(_args: JudgeArgs) -> Result<i32> {
    bail!("not implemented yet")
}
