//! What the benchmark reads off the machine: peak memory from /proc, mailbox contents, free
//! ports, waiting for a port to greet.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// Peak resident set size (`VmHWM`) of a process, in bytes.
pub fn peak_rss(pid: i32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("{path}: no VmHWM line"))
}

/// The processes whose parent is `parent`.
pub fn children(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| parent_of(pid) == Some(parent))
        .collect()
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `PID (COMM) STATE PPID ...`; COMM may contain spaces and parentheses.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

/// The 1-minute load average: how busy the machine was (the benchmark shares its CPUs).
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn is_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Regular files directly in `dir` (0 when it does not exist yet).
pub fn count_files(dir: &Path) -> Result<usize, String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .count()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

/// Regular files anywhere under `dir` (Postfix hashes some queues into subdirectories).
pub fn count_files_recursive(dir: &Path) -> Result<usize, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut count = 0;
    for entry in entries.filter_map(Result::ok) {
        match entry.file_type() {
            Ok(t) if t.is_dir() => count += count_files_recursive(&entry.path())?,
            Ok(t) if t.is_file() => count += 1,
            _ => {}
        }
    }
    Ok(count)
}

/// When each message in a mailbox's `new/` was delivered, sorted, and the size of the
/// smallest file (to check that the bodies were stored whole).
///
/// The time comes from the file name: Maildir names start with the delivery's start in
/// seconds, and both madmail (Dovecot's convention) and Postfix put its microseconds in an
/// `M<usec>` field of the second part. File modification times would do, but the kernel
/// keeps them in clock ticks (several milliseconds), too coarse for 100 messages.
pub fn mailbox_times(new_dir: &Path) -> Result<(Vec<SystemTime>, u64), String> {
    let error = |e: std::io::Error| format!("{}: {e}", new_dir.display());
    let mut times = Vec::new();
    let mut smallest = u64::MAX;
    for entry in std::fs::read_dir(new_dir).map_err(error)? {
        let entry = entry.map_err(error)?;
        let meta = entry.metadata().map_err(error)?;
        if !meta.is_file() {
            continue;
        }
        let time = match entry.file_name().to_str().and_then(name_time) {
            Some(time) => time,
            None => meta.modified().map_err(error)?,
        };
        times.push(time);
        smallest = smallest.min(meta.len());
    }
    times.sort_unstable();
    let smallest = if times.is_empty() { 0 } else { smallest };
    Ok((times, smallest))
}

/// `SECS.…M<usec>….host…` → the time it names.
fn name_time(name: &str) -> Option<SystemTime> {
    let mut parts = name.split('.');
    let secs: u64 = parts.next()?.parse().ok()?;
    let unique = parts.next()?;
    let after_m = &unique[unique.find('M')? + 1..];
    let digits = after_m
        .find(|c: char| !c.is_ascii_digit())
        .map_or(after_m, |end| &after_m[..end]);
    let micros: u64 = digits.parse().ok().filter(|&us| us < 1_000_000)?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// Waits until a server on `addr` answers a connection with a `220` greeting.
pub fn wait_for_greeting(addr: SocketAddr, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let mut last_error = String::from("nothing tried");
    while Instant::now() < deadline {
        super::cleanup::check()?;
        match greeting(addr) {
            Ok(line) if line.starts_with("220") => return Ok(()),
            Ok(line) => last_error = format!("greeting {line:?}"),
            Err(e) => last_error = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "no SMTP greeting on {addr} within {}s ({last_error})",
        within.as_secs()
    ))
}

fn greeting(addr: SocketAddr) -> std::io::Result<String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Polite to Postfix, whose smtpd logs a lost connection otherwise.
    let _ = std::io::Write::write_all(&mut &stream, b"QUIT\r\n");
    Ok(line.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::name_time;

    #[test]
    fn maildir_name_times() {
        let at = |secs, micros| {
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
        };
        // madmail (Dovecot's form)
        assert_eq!(
            name_time("1763885000.M12345P42Q7R00ff00ff00ff00ff.host,S=10,W=12"),
            at(1_763_885_000, 12_345)
        );
        // Postfix virtual(8): device and inode in hex, then microseconds
        assert_eq!(
            name_time("1763885000.V801I3a2bM987654.postfix.bench.test"),
            at(1_763_885_000, 987_654)
        );
        assert_eq!(name_time("1763885000.P42.host"), None);
        assert_eq!(name_time("junk"), None);
        assert_eq!(name_time("1.M1000000.host"), None);
    }
}
