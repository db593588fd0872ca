//! The `madmail` command: runs the server and its tools.
//!
//! This crate wires things together (CLI, configuration loading, logging, signals, the list of
//! compiled-in modules); it holds no protocol or certificate logic of its own.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use madmail_config::{Environment, dump, parse_file};

mod cert;
mod config;
mod creds;
mod logging;
mod modules;
mod server;

#[derive(Parser)]
#[command(
    name = "madmail",
    version,
    about = "A modular mail server with self-managing TLS certificates"
)]
struct Cli {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        env = "MADMAIL_CONFIG",
        default_value = "/etc/madmail/madmail.conf"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Run,
    /// Check or print the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// ACME certificates: status, renewal, preflight checks.
    Cert {
        #[command(subcommand)]
        command: cert::CertCommand,
    },
    /// Manage user credentials (auth.pass_table).
    Creds {
        #[command(subcommand)]
        command: creds::CredsCommand,
    },
    /// Print the version and the modules compiled into this build.
    Version,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the whole configuration; list every error.
    Check,
    /// Print the configuration tree after imports, snippets, macros and {env:...}.
    Dump {
        /// Print a JSON array of {name, args, children, line} nodes.
        #[arg(long)]
        json: bool,
        /// The file to dump (default: --config).
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    madmail_tls::install_crypto_provider();
    match cli.command {
        Command::Run => server::run(&cli.config),
        Command::Config {
            command: ConfigCommand::Check,
        } => match config::read(&cli.config) {
            Ok(_) => {
                println!("{}: configuration is valid", cli.config.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprint!("{}", config::render(&errors));
                ExitCode::FAILURE
            }
        },
        Command::Config {
            command: ConfigCommand::Dump { json, file },
        } => {
            let path = file.unwrap_or(cli.config);
            let nodes = match parse_file(&path, &Environment::Process) {
                Ok(nodes) => nodes,
                Err(e) => {
                    eprint!("{}", config::render(&[e]));
                    return ExitCode::FAILURE;
                }
            };
            let text = if json {
                serde_json::to_string_pretty(&dump::to_json(&nodes)).map_err(|e| e.to_string())
            } else {
                dump::to_text(&nodes).map_err(|e| e.render())
            };
            match text {
                Ok(text) => {
                    println!("{}", text.trim_end());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Creds { command } => creds::run(&cli.config, command),
        Command::Cert { command } => cert::run(&cli.config, command),
        Command::Version => {
            print!("{}", version_text());
            ExitCode::SUCCESS
        }
    }
}

/// The multi-threaded runtime `run` and `cert` use; `None` (reported) if it can't start.
fn async_runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            None
        }
    }
}

fn version_text() -> String {
    let registry = modules::registry();
    let mut out = format!("madmail {}\n\nmodules:\n", env!("CARGO_PKG_VERSION"));
    for m in registry.modules() {
        out.push_str(&format!("  {:<28} {}\n", m.name, m.summary));
    }
    let providers: Vec<&str> = registry
        .modules()
        .filter_map(|m| m.name.strip_prefix("libdns."))
        .collect();
    out.push_str("\nDNS providers: ");
    out.push_str(if providers.is_empty() { "none" } else { "" });
    out.push_str(&providers.join(", "));
    out.push('\n');
    out
}
