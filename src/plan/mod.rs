//! Which stages and steps run, their cache keys, and what the packaging stage needs.

pub mod dispatch;
