//! Local persistence: the Raft log ([`log::LogStore`]) and the state machine
//! with its snapshots ([`sm::StateMachineStore`]).

pub mod log;
pub mod sm;

#[cfg(test)]
mod tests;
