pub mod broker;
pub mod embedded;
pub mod scram;
pub mod tls_front;
