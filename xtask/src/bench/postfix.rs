//! A private Postfix instance for one benchmark scenario, entirely under a temporary
//! directory: its own configuration, queue and data directories and log file, smtpd on a
//! loopback port with a self-signed certificate for STARTTLS, and virtual(8) delivering every
//! message for `bench.test` into one Maildir. The system's own instance (/etc/postfix) is
//! neither read for configuration nor touched; only the shipped `postfix-files` and
//! `dynamicmaps.cf` are copied, because `postfix start` checks the installation with them.

use std::net::SocketAddr;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::cleanup;
use super::probe;
use super::{DOMAIN, sbin};

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Queues that hold a message until it is delivered.
const QUEUES: &[&str] = &["maildrop", "incoming", "active", "deferred", "hold"];

pub struct Postfix {
    dir: PathBuf,
    addr: SocketAddr,
    stopped: bool,
}

/// The certificate smtpd offers (made once with openssl for all Postfix scenarios).
pub struct Certificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certificate {
    /// A self-signed ECDSA P-256 certificate, as madmail's `self_signed` makes.
    pub fn generate(dir: &Path) -> Result<Certificate, String> {
        let cert = dir.join("postfix-cert.pem");
        let key = dir.join("postfix-key.pem");
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .arg("ec_paramgen_curve:P-256")
            .args(["-nodes", "-days", "2", "-subj"])
            .arg(format!("/CN=postfix.{DOMAIN}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run openssl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "openssl req failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(Certificate { cert, key })
    }
}

impl Postfix {
    /// Lays out the instance in `dir` and starts it; returns once smtpd greets.
    pub fn start(dir: &Path, tls: &Certificate) -> Result<Postfix, String> {
        let (uid, gid) = nobody()?;
        let conf = dir.join("conf");
        let maildir = dir.join("maildir");
        // post-install (run by `postfix start`) creates what is inside the queue directory
        // and the data directory, with the owners they need, but not the queue directory.
        let queue = dir.join("queue");
        for d in [&conf, &maildir, &queue] {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        // Directories Postfix's unprivileged processes pass through must be searchable.
        set_mode(dir, 0o755)?;
        // virtual(8) writes as the mailbox owner.
        chown(&maildir, Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", maildir.display()))?;
        set_mode(&maildir, 0o700)?;
        for file in ["postfix-files", "dynamicmaps.cf"] {
            let from = Path::new("/etc/postfix").join(file);
            std::fs::copy(&from, conf.join(file))
                .map_err(|e| format!("{}: {e} (is postfix installed?)", from.display()))?;
        }
        for d in ["postfix-files.d", "dynamicmaps.cf.d"] {
            let path = conf.join(d);
            std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let port = probe::free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        write(&conf.join("main.cf"), &main_cf(dir, uid, gid, tls))?;
        write(&conf.join("master.cf"), &master_cf(port))?;

        let postfix = Postfix {
            dir: dir.to_owned(),
            addr,
            stopped: false,
        };
        let out = Command::new(sbin("postfix"))
            .arg("-c")
            .arg(&conf)
            .arg("start")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run postfix: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "postfix -c {} start failed ({}): {}{}\n{}",
                conf.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                postfix.log_tail(20)
            ));
        }
        probe::wait_for_greeting(addr, START_TIMEOUT)
            .map_err(|e| format!("Postfix: {e}\n{}", postfix.log_tail(20)))?;
        Ok(postfix)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn mailbox_new(&self) -> PathBuf {
        self.dir.join("maildir/inbox/new")
    }

    /// Waits until the queue is empty and `expected` messages are in the mailbox; returns
    /// the moment that was seen. Call it once the client has its 250s: every message is
    /// then in a queue or delivered. The queues are small and cheap to list; the mailbox is
    /// counted only once they are empty, so polling takes little CPU from Postfix.
    pub fn wait_delivered(&self, expected: usize, within: Duration) -> Result<Instant, String> {
        let deadline = Instant::now() + within;
        let queue = self.dir.join("queue");
        loop {
            cleanup::check()?;
            let mut queued = 0;
            for name in QUEUES {
                let count = probe::count_files_recursive(&queue.join(name))?;
                if *name == "deferred" && count > 0 {
                    return Err(format!(
                        "Postfix deferred {count} message(s) instead of delivering them:\n{}",
                        self.log_tail(10)
                    ));
                }
                queued += count;
            }
            if queued == 0 {
                let done = Instant::now();
                let delivered = probe::count_files(&self.mailbox_new())?;
                if delivered == expected {
                    return Ok(done);
                }
                return Err(format!(
                    "Postfix's queue is empty but its mailbox holds {delivered} messages, not {expected}:\n{}",
                    self.log_tail(10)
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "Postfix's queue did not drain within {}s ({queued} messages left):\n{}",
                    within.as_secs(),
                    self.log_tail(10)
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn master_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("queue/pid/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The sum of `VmHWM` over the master and its children alive now, and how many they
    /// are. An upper bound of what the instance used at once: each process peaked on its
    /// own, and shared pages (libraries) are counted in every process.
    pub fn peak_rss_sum(&self) -> Result<(u64, usize), String> {
        let master = self
            .master_pid()
            .ok_or("Postfix: no master.pid (is the instance running?)")?;
        let mut pids = probe::children(master);
        pids.push(master);
        let mut sum = 0;
        let mut counted = 0;
        for pid in pids {
            // A child may exit between listing and reading: skip it.
            if let Ok(rss) = probe::peak_rss(pid) {
                sum += rss;
                counted += 1;
            }
        }
        Ok((sum, counted))
    }

    /// The last `lines` lines of the instance's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `postfix stop`, and waits for the master to exit (killing it if it does not).
    pub fn stop(mut self) -> Result<(), String> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), String> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let master = self.master_pid();
        let out = Command::new(sbin("postfix"))
            .arg("-c")
            .arg(self.dir.join("conf"))
            .arg("stop")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run postfix stop: {e}"))?;
        let Some(master) = master else {
            return Ok(());
        };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if !probe::is_alive(master) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in probe::children(master) {
            cleanup::kill(pid, Signal::KILL);
        }
        cleanup::kill(master, Signal::KILL);
        Err(format!(
            "Postfix did not stop within {}s and was killed ({}{})",
            STOP_TIMEOUT.as_secs(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// uid and gid of `nobody`, the owner of the delivered mail.
fn nobody() -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["nobody", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .ok_or_else(|| "no user `nobody` in /etc/passwd".to_owned())
}

/// Stock settings except what makes it a private instance delivering to a Maildir.
fn main_cf(dir: &Path, uid: u32, gid: u32, tls: &Certificate) -> String {
    let d = dir.display();
    let cert = tls.cert.display();
    let key = tls.key.display();
    format!(
        "# Written by `cargo xtask bench smtp`.\n\
         compatibility_level = 3.6\n\
         meta_directory = {d}/conf\n\
         queue_directory = {d}/queue\n\
         data_directory = {d}/data\n\
         syslog_name = postfix-bench\n\
         maillog_file = {d}/maillog\n\
         maillog_file_prefixes = {d}\n\
         myhostname = postfix.{DOMAIN}\n\
         mydestination =\n\
         inet_interfaces = loopback-only\n\
         inet_protocols = ipv4\n\
         mynetworks = 127.0.0.0/8\n\
         alias_maps =\n\
         alias_database =\n\
         smtpd_tls_security_level = may\n\
         smtpd_tls_cert_file = {cert}\n\
         smtpd_tls_key_file = {key}\n\
         virtual_mailbox_domains = {DOMAIN}\n\
         virtual_mailbox_base = {d}/maildir\n\
         virtual_mailbox_maps = static:inbox/\n\
         virtual_uid_maps = static:{uid}\n\
         virtual_gid_maps = static:{gid}\n"
    )
}

/// Debian's master.cf services, with smtpd on our port and no chroot (the chroot would need
/// copies of system files inside the temporary directory).
fn master_cf(port: u16) -> String {
    format!(
        "# Written by `cargo xtask bench smtp`.\n\
         127.0.0.1:{port} inet n - n - - smtpd\n\
         pickup     unix  n - n 60    1 pickup\n\
         cleanup    unix  n - n -     0 cleanup\n\
         qmgr       unix  n - n 300   1 qmgr\n\
         tlsmgr     unix  - - n 1000? 1 tlsmgr\n\
         rewrite    unix  - - n -     - trivial-rewrite\n\
         bounce     unix  - - n -     0 bounce\n\
         defer      unix  - - n -     0 bounce\n\
         trace      unix  - - n -     0 bounce\n\
         verify     unix  - - n -     1 verify\n\
         flush      unix  n - n 1000? 0 flush\n\
         proxymap   unix  - - n -     - proxymap\n\
         proxywrite unix  - - n -     1 proxymap\n\
         smtp       unix  - - n -     - smtp\n\
         relay      unix  - - n -     - smtp\n\
         showq      unix  n - n -     - showq\n\
         error      unix  - - n -     - error\n\
         retry      unix  - - n -     - error\n\
         discard    unix  - - n -     - discard\n\
         local      unix  - n n -     - local\n\
         virtual    unix  - n n -     - virtual\n\
         lmtp       unix  - - n -     - lmtp\n\
         anvil      unix  - - n -     1 anvil\n\
         scache     unix  - - n -     1 scache\n\
         postlog    unix-dgram n - n - 1 postlogd\n"
    )
}
