//! madmail's delivery targets: where the message pipeline puts accepted mail.
//!
//! - `storage.maildir`: durable delivery into one Maildir per recipient, readable by Dovecot
//!   and mutt as is.
//! - `target.smtp` and `target.lmtp`: hand messages on to another server over SMTP or LMTP
//!   (maddy's transparent forwarding).
//!
//! Every target implements [`madmail_module::delivery::DeliveryTarget`]; nothing else in the
//! server knows their concrete types. This crate must not route messages (the pipeline does),
//! accept connections (endpoints do) or queue and retry: a failure is reported to the caller
//! as an SMTP reply, and the sender retries.

mod maildir;
mod smtp;

pub use maildir::Maildir;

/// Registers `storage.maildir`, `target.smtp` and `target.lmtp`.
pub fn register(registry: &mut madmail_module::Registry) {
    registry.register(maildir::SPEC);
    registry.register(smtp::SMTP_SPEC);
    registry.register(smtp::LMTP_SPEC);
}
