//! placeholder

pub mod judge;
pub mod languages;
pub mod session;
