//! The modules compiled into this binary. Optional ones (behind cargo features) are declared as
//! not compiled when their feature is off, so configs naming them get a precise error.

use madmail_module::Registry;

mod dummy;

pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(dummy::SPEC);
    registry
}
