//! The backends behind the three ports, and the one crate that talks to a
//! database, a broker or an object store.
//!
//! - embedded: SQLite ([`SqliteStateStore`]), a local directory
//!   ([`ObjectArtifactStore::local`]) and an in-process queue ([`MemoryQueue`]);
//! - distributed: PostgreSQL ([`PostgresStateStore`]), RabbitMQ
//!   ([`AmqpQueue`]) and S3 ([`ObjectArtifactStore::s3`]);
//! - tests: everything in memory.
//!
//! Artifacts are sealed at rest in every deployment ([`encryption`]).
//!
//! [`platform`] wires them into a `Platform` per deployment. Every backend
//! runs the conformance suite of its port ([`testing`]), so the scheduler,
//! workers and api can rely on one behaviour whichever backend is behind.

#[cfg(feature = "amqp")]
mod alerts;
pub mod amqp;
pub mod cache;
#[cfg(test)]
mod conformance;
pub mod encryption;
mod error;
pub mod memory_queue;
pub mod memory_state;
pub mod object_artifacts;
pub mod platform;
#[cfg(feature = "postgres")]
pub mod postgres;
mod predictions;
mod registry;
pub mod security;
pub mod sqlite;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

#[cfg(feature = "amqp")]
pub use amqp::{AmqpOptions, AmqpQueue};
pub use memory_queue::MemoryQueue;
pub use memory_state::MemoryStateStore;
pub use object_artifacts::ObjectArtifactStore;
#[cfg(feature = "postgres")]
pub use postgres::{PgOptions, PostgresStateStore};
pub use security::MemorySecurityStore;
pub use sqlite::SqliteStateStore;
