//! The boundary to the TLS layer: the `tls` directive becomes a rustls server configuration
//! (`None` for `tls off`). `madmail-tls` owns its grammar, loaders and certificate reloading.

use std::sync::Arc;

use madmail_config::Node;
use madmail_module::{Ctx, Errors};

pub(crate) fn server_config(
    node: &Node,
    ctx: &mut Ctx<'_>,
) -> Result<Option<Arc<rustls::ServerConfig>>, Errors> {
    madmail_tls::server_tls(node, ctx)
}
