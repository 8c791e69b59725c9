//! Placeholder: filled by the agent test of this loop.
