pub mod broker;
pub mod embedded;
