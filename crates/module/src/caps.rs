//! What an instance can be used as.
//!
//! A module instance offers capabilities, each an `Arc<dyn Trait>` (a delivery target, a TLS
//! certificate source, a table...). A module that receives `&name` asks for the capability it
//! needs and gets a clear error when the instance offers no such thing. This keeps modules
//! ignorant of each other's concrete types, as maddy's interfaces do.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Default)]
pub struct Capabilities {
    by_type: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl Capabilities {
    pub fn new() -> Capabilities {
        Capabilities::default()
    }

    /// Offers `value` as a `T` (usually `T = dyn SomeTrait`).
    pub fn with<T: ?Sized + Send + Sync + 'static>(mut self, value: Arc<T>) -> Capabilities {
        self.by_type.insert(TypeId::of::<T>(), Box::new(value));
        self
    }

    pub fn get<T: ?Sized + Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.by_type
            .get(&TypeId::of::<T>())?
            .downcast_ref::<Arc<T>>()
            .cloned()
    }
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Capabilities({} offered)", self.by_type.len())
    }
}

/// A human name for a capability, used in "X is not a Y" errors.
pub trait Capability: Send + Sync + 'static {
    const DESCRIPTION: &'static str;
}
