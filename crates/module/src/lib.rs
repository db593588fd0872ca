//! madmail's module framework: the spine every loader, endpoint, target and DNS provider plugs
//! into, in the manner of maddy's.
//!
//! - [`Registry`]: modules by name; optional ones left out of a build are known as such.
//! - [`load`]: turns a parsed configuration into instances. Top-level blocks are
//!   `module [instance [aliases...]] { ... }` (built when first referenced as `&name`) or
//!   endpoints `module ADDR... { ... }` (built in file order). Inline definitions
//!   (`dns cloudflare { ... }`) resolve in a namespace (`libdns.cloudflare`).
//! - [`Block`]: decodes a module's directives (types, defaults, inheritance from globals,
//!   duplicates, unknown directives with hints), collecting every error.
//! - [`Capabilities`]: what an instance can be used as; modules find each other only through
//!   these interfaces, never through concrete types.
//! - [`Running`]: start in initialisation order, stop in reverse.
//! - [`metrics`]: collectors modules register (`ctx.globals().metrics`), rendered in the
//!   Prometheus text format.
//!
//! It must not contain modules, parse configuration text (that is `madmail-config`) or do I/O
//! at build time: constructors read configuration; `Lifecycle::start` acts.

pub mod auth;
mod caps;
mod ctx;
pub mod decode;
pub mod delivery;
mod errors;
pub mod globals;
mod lifecycle;
pub mod maddy;
pub mod metrics;
pub mod modify;
mod registry;
mod suggest;
pub mod table;
pub mod testing;
pub mod values;

pub use caps::{Capabilities, Capability};
pub use ctx::{Built, Ctx, Instance, Loaded, load};
pub use decode::{Block, Field};
pub use errors::Errors;
pub use globals::Globals;
pub use lifecycle::{Lifecycle, Running};
pub use registry::{BuildFn, Definition, Kind, Missing, ModuleSpec, Registry};
pub use suggest::closest as did_you_mean;
