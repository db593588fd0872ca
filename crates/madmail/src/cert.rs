//! `madmail cert info|renew|test`: ask the running server about its ACME certificates over the
//! control socket in `runtime_dir`, or work on `store_path` directly when no server runs.

use std::path::Path;
use std::process::ExitCode;

use madmail_acme::control::{self, Request};

use crate::config;

#[derive(clap::Subcommand)]
pub enum CertCommand {
    /// Show every certificate: names, status, issuer, serial, validity, next renewal.
    Info {
        /// Print a JSON array of certificates.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        select: Select,
    },
    /// Renew what is due (or, with --force, now); a running server serves the result at once.
    Renew {
        /// Renew now, due or not.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        select: Select,
    },
    /// Check that issuance can work (CA, account, challenges, DNS, CAA); --dry-run issues
    /// against the test CA without touching what is served.
    Test {
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        select: Select,
    },
}

#[derive(clap::Args)]
pub struct Select {
    /// Only certificates of this tls.loader.acme instance.
    #[arg(long)]
    loader: Option<String>,
    /// One of a certificate's DNS names.
    name: Option<String>,
}

pub fn run(config_path: &Path, command: CertCommand) -> ExitCode {
    let cfg = match config::read(config_path) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprint!("{}", config::render(&errors));
            return ExitCode::FAILURE;
        }
    };
    let loaders = madmail_acme::loaders(&cfg.loaded);
    if loaders.is_empty() {
        eprintln!("error: the configuration has no tls.loader.acme block");
        return ExitCode::FAILURE;
    }
    let (request, json) = match command {
        CertCommand::Info { json, select } => (
            Request::Info {
                loader: select.loader,
                name: select.name,
            },
            json,
        ),
        CertCommand::Renew { force, select } => (
            Request::Renew {
                loader: select.loader,
                name: select.name,
                force,
            },
            false,
        ),
        CertCommand::Test { dry_run, select } => (
            Request::Test {
                loader: select.loader,
                name: select.name,
                dry_run,
            },
            false,
        ),
    };
    let socket = cfg.loaded.globals.runtime_dir.join(control::SOCKET_NAME);
    let Some(runtime) = crate::async_runtime() else {
        return ExitCode::FAILURE;
    };
    let response = runtime.block_on(control::run(&socket, &loaders, &request));
    let rendered = response.render(json);
    if response.success() {
        println!("{}", rendered.trim_end());
        ExitCode::SUCCESS
    } else {
        eprintln!("{}", rendered.trim_end());
        ExitCode::FAILURE
    }
}
