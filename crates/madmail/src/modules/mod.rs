//! The modules compiled into this binary. Optional ones (behind cargo features) are declared as
//! not compiled when their feature is off, so configs naming them get a precise error.

use madmail_module::Registry;

mod dummy;

pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(dummy::SPEC);
    madmail_tls::register(&mut registry);
    madmail_table::register(&mut registry);
    madmail_auth::register(&mut registry);
    madmail_pipeline::register(&mut registry);
    madmail_target::register(&mut registry);
    madmail_smtp::register(&mut registry);
    registry
}
