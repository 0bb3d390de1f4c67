//! placeholder

pub mod languages;
