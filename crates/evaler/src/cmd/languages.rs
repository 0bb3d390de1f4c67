//! `evaler languages` (being written).

use anyhow::{bail, Result};
use clap::Args;

#[derive(Args, Debug)]
pub struct LanguagesArgs {}

pub fn main(_args: LanguagesArgs) -> Result<i32> {
    bail!("not implemented yet")
}
