//! `madmail creds`: manage the users of an `auth.pass_table` block (or a writable table) from
//! the command line, as `maddy creds` does.

use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use madmail_auth::creds;

use crate::config;

#[derive(clap::Subcommand)]
pub enum CredsCommand {
    /// Add a user.
    Create(UserArgs),
    /// List users.
    List(BlockArg),
    /// Remove a user.
    Remove(UserArgs),
    /// Change a user's password.
    Password(UserArgs),
}

#[derive(clap::Args)]
pub struct BlockArg {
    /// The configuration block holding the credentials.
    #[arg(long = "cfg-block", default_value = creds::DEFAULT_BLOCK)]
    cfg_block: String,
}

#[derive(clap::Args)]
pub struct UserArgs {
    #[command(flatten)]
    block: BlockArg,
    /// The password (without it: asked on the terminal, or read as one line from stdin).
    #[arg(long)]
    password: Option<String>,
    /// The user name (usually an email address).
    user: String,
}

pub fn run(config_path: &Path, command: CredsCommand) -> ExitCode {
    match run_inner(config_path, command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(config_path: &Path, command: CredsCommand) -> Result<(), String> {
    let cfg = config::read(config_path)
        .map_err(|errors| config::render(&errors).trim_end().to_owned())?;
    // Relative database paths are relative to state_dir, as for the running server.
    let state_dir = &cfg.loaded.globals.state_dir;
    std::fs::create_dir_all(state_dir)
        .map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
    std::env::set_current_dir(state_dir)
        .map_err(|e| format!("cannot enter {}: {e}", state_dir.display()))?;

    let block = match &command {
        CredsCommand::List(b) => &b.cfg_block,
        CredsCommand::Create(u) | CredsCommand::Remove(u) | CredsCommand::Password(u) => {
            &u.block.cfg_block
        }
    };
    let instance = cfg
        .loaded
        .instances
        .iter()
        .find(|i| i.label == *block || i.aliases.iter().any(|a| a == block))
        .ok_or_else(|| format!("no configuration block named {block} (use --cfg-block)"))?;
    let table = creds::table_of(instance).map_err(|e| format!("{block}: {e}"))?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        match command {
            CredsCommand::List(_) => {
                for user in creds::list(table.as_ref())
                    .await
                    .map_err(|e| e.to_string())?
                {
                    println!("{user}");
                }
            }
            CredsCommand::Create(u) => {
                let password = password(u.password, true)?;
                let stored = creds::create(table.as_ref(), &u.user, &password)
                    .await
                    .map_err(|e| e.to_string())?;
                eprintln!("created {stored}");
            }
            CredsCommand::Password(u) => {
                let password = password(u.password, true)?;
                creds::set_password(table.as_ref(), &u.user, &password)
                    .await
                    .map_err(|e| e.to_string())?;
                eprintln!("password of {} changed", u.user);
            }
            CredsCommand::Remove(u) => {
                creds::remove(table.as_ref(), &u.user)
                    .await
                    .map_err(|e| e.to_string())?;
                eprintln!("removed {}", u.user);
            }
        }
        Ok(())
    })
}

/// The password from `--password`, the terminal (asked twice), or one line of stdin.
fn password(given: Option<String>, confirm: bool) -> Result<String, String> {
    let pw = match given {
        Some(pw) => pw,
        None if std::io::stdin().is_terminal() => {
            let pw = rpassword::prompt_password("Password: ")
                .map_err(|e| format!("cannot read the password: {e}"))?;
            if confirm {
                let again = rpassword::prompt_password("Password again: ")
                    .map_err(|e| format!("cannot read the password: {e}"))?;
                if again != pw {
                    return Err("the passwords do not match".into());
                }
            }
            pw
        }
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    if pw.is_empty() {
        return Err("the password must not be empty".into());
    }
    Ok(pw)
}
