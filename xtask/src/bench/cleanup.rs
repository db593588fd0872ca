//! Stopping cleanly when interrupted. Servers, clients and the temporary directory are
//! undone by their owners' `Drop`, on success and on error; an interrupt (Ctrl-C, SIGTERM)
//! only raises a flag that every wait in the benchmark checks, so the main thread unwinds
//! through those same `Drop`s. Doing the clean-up in the signal's thread instead would race
//! with the main thread starting the next server. Without any of this an interrupted run
//! would leave a Postfix master running: it detaches from our process group, so the
//! terminal's SIGINT never reaches it. A second interrupt exits at once.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::process::{Pid, Signal, kill_process};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn install_interrupt_handler() -> Result<(), String> {
    static INSTALLED: Once = Once::new();
    let mut result = Ok(());
    INSTALLED.call_once(|| {
        result = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("xtask: interrupted again, exiting without cleaning up");
                std::process::exit(130);
            }
            eprintln!("xtask: interrupted, stopping the servers (interrupt again to quit now)");
        })
        .map_err(|e| format!("cannot install the interrupt handler: {e}"));
    });
    result
}

/// Fails once the run was interrupted; called by every wait.
pub fn check() -> Result<(), String> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

/// Sends `signal` to `pid`, ignoring a process that is already gone.
pub fn kill(pid: i32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = kill_process(pid, signal);
    }
}
