//! `madmail run`: start every instance, report readiness, and react to signals until told to
//! stop. SIGTERM/SIGINT stop gracefully, SIGUSR1 reopens log files, SIGUSR2 reloads the
//! configuration (a new configuration that fails keeps the old one running).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use madmail_module::Running;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::config::{self, Config};
use crate::logging::Logging;

pub fn run(path: &Path) -> ExitCode {
    let cfg = match config::read(path) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprint!("{}", config::render(&errors));
            return ExitCode::FAILURE;
        }
    };
    let globals = &cfg.loaded.globals;
    let logging = match Logging::init(globals.debug, &globals.log) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(runtime) = crate::async_runtime() else {
        return ExitCode::FAILURE;
    };
    // The working directory becomes state_dir: keep reloading the file the operator named.
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    if let Err(e) = prepare_directories(&cfg.loaded.globals) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    runtime.block_on(serve(path, cfg, logging))
}

/// Creates `state_dir` and `runtime_dir` (mode 0700) and makes `state_dir` the working
/// directory, as maddy does, so relative paths in module blocks land there.
fn prepare_directories(globals: &madmail_module::Globals) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    for dir in [&globals.state_dir, &globals.runtime_dir] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::env::set_current_dir(&globals.state_dir).map_err(|e| {
        format!(
            "cannot enter state_dir {}: {e}",
            globals.state_dir.display()
        )
    })
}

async fn start(cfg: &Config) -> Result<Running, String> {
    Running::start(&cfg.loaded.instances).await
}

fn notify(state: sd_notify::NotifyState<'_>) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(&[state])
    {
        warn!(error = %e, "cannot notify the service manager");
    }
}

async fn serve(path: PathBuf, mut cfg: Config, logging: Logging) -> ExitCode {
    let (Ok(mut term), Ok(mut int), Ok(mut usr1), Ok(mut usr2)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        error!("cannot install signal handlers");
        return ExitCode::FAILURE;
    };

    let mut running = match start(&cfg).await {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    info!(config = %path.display(), endpoints = cfg.loaded.endpoints.len(), instances = cfg.loaded.instances.len(), "server started");
    if cfg.loaded.endpoints.is_empty() {
        warn!("no endpoints are configured: this server accepts no connections");
    }
    notify(sd_notify::NotifyState::Ready);

    loop {
        tokio::select! {
            _ = term.recv() => { info!(signal = "SIGTERM", "stopping"); break; }
            _ = int.recv() => { info!(signal = "SIGINT", "stopping"); break; }
            _ = usr1.recv() => match logging.reopen() {
                Ok(()) => info!("log files reopened"),
                Err(e) => error!(error = %e, "cannot reopen log files"),
            },
            _ = usr2.recv() => {
                notify(sd_notify::NotifyState::Reloading);
                match reload(&path, &cfg, &mut running, &logging).await {
                    Ok(new_cfg) => cfg = new_cfg,
                    Err(ReloadError::Fatal) => return ExitCode::FAILURE,
                    Err(ReloadError::KeptOld) => {}
                }
                notify(sd_notify::NotifyState::Ready);
            }
        }
    }

    notify(sd_notify::NotifyState::Stopping);
    running.stop().await;
    info!("server stopped");
    ExitCode::SUCCESS
}

enum ReloadError {
    /// The new configuration was rejected; the old one still runs.
    KeptOld,
    /// Neither the new nor the old configuration could be started.
    Fatal,
}

async fn reload(
    path: &Path,
    old: &Config,
    running: &mut Running,
    logging: &Logging,
) -> Result<Config, ReloadError> {
    info!(config = %path.display(), "reloading configuration");
    let read_path = path.to_owned();
    let new = match tokio::task::spawn_blocking(move || config::read(&read_path)).await {
        Ok(Ok(new)) => new,
        Ok(Err(errors)) => {
            for e in &errors {
                error!(error = %e, "new configuration rejected; keeping the running one");
            }
            return Err(ReloadError::KeptOld);
        }
        Err(e) => {
            error!(error = %e, "configuration reload failed; keeping the running one");
            return Err(ReloadError::KeptOld);
        }
    };

    // Listeners must be released before the new instances bind the same addresses.
    running.stop().await;
    match start(&new).await {
        Ok(r) => {
            *running = r;
            if let Err(e) = logging.configure(new.loaded.globals.debug, &new.loaded.globals.log) {
                error!(error = %e, "cannot apply the new log settings; keeping the old ones");
            }
            info!(
                endpoints = new.loaded.endpoints.len(),
                "configuration reloaded"
            );
            Ok(new)
        }
        Err(e) => {
            error!(error = %e, "new configuration failed to start; restarting the previous one");
            // Instances start once: rebuild the previous configuration from its tree.
            let registry = crate::modules::registry();
            let previous = madmail_module::load(&registry, &old.nodes).map(|loaded| Config {
                nodes: old.nodes.clone(),
                loaded,
            });
            match previous {
                Ok(previous) => match start(&previous).await {
                    Ok(r) => {
                        *running = r;
                        Err(ReloadError::KeptOld)
                    }
                    Err(e) => {
                        error!(error = %e, "the previous configuration failed to start again");
                        Err(ReloadError::Fatal)
                    }
                },
                Err(e) => {
                    error!(error = %e, "the previous configuration no longer builds");
                    Err(ReloadError::Fatal)
                }
            }
        }
    }
}
