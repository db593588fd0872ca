//! A server process a benchmark started: asked to stop with SIGTERM (then killed) when it is
//! stopped or dropped, so no error path leaves it running.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::{cleanup, probe};

const STOP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct ServerProcess {
    child: Child,
    name: &'static str,
}

impl ServerProcess {
    pub fn new(child: Child, name: &'static str) -> ServerProcess {
        ServerProcess { child, name }
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Its peak resident memory (VmHWM), in bytes.
    pub fn peak_rss(&self) -> Result<u64, String> {
        let pid = i32::try_from(self.child.id()).map_err(|e| format!("pid: {e}"))?;
        probe::peak_rss(pid)
    }

    /// SIGTERM, then SIGKILL if it has not exited in time.
    pub fn stop(&mut self) -> Result<(), String> {
        if self.exited().is_some() {
            return Ok(());
        }
        let pid = i32::try_from(self.child.id()).map_err(|e| format!("pid: {e}"))?;
        cleanup::kill(pid, Signal::TERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(format!(
            "{} did not stop within {}s of SIGTERM and was killed",
            self.name,
            STOP_TIMEOUT.as_secs()
        ))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
