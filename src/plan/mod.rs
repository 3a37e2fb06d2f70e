//! Which stages and steps run, with the config each step sees ([`dispatch`]), and every
//! step's cache key ([`keys`]).

pub mod dispatch;
pub mod keys;
