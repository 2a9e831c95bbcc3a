//! Free loopback ports for nodes started on this machine (tests, `tradelog bench`,
//! `tradelog cluster up`), chosen so that nothing else takes them before the node binds.
//!
//! Asking the OS for port 0 and releasing it is racy: that port lies in the kernel's
//! ephemeral range, so the next outgoing connection or `bind(0)` of any process may get
//! it before the node binds (seen in CI: `AddrInUse` on a port picked a moment before).
//! Ports here come from below the ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`), which the kernel never hands out by
//! itself, and every port handed out is claimed by a file in a shared claims directory,
//! so that two processes using this module never pick the same one. A claim expires after
//! [`PORT_CLAIM_TTL_S`]; a process that crashes leaves stale claims behind, nothing more.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

/// The lowest port handed out.
pub const PORT_LOW: u16 = 20_000;
/// Where the kernel's ephemeral range starts when `/proc` does not say.
const EPHEMERAL_LOW_DEFAULT: u16 = 32_768;
/// The fewest ports the range below the ephemeral one must hold to be used; with fewer,
/// ports come from the OS (still claimed).
const RANGE_PORTS_MIN: u16 = 1_024;
/// How long a claim holds a port for its claimant: long enough for any node to bind it.
pub const PORT_CLAIM_TTL_S: u64 = 600;
/// The most candidate blocks tried before giving up.
const ATTEMPTS_MAX: u32 = 4_096;

/// Calls in this process so far: successive calls start at different places.
static CALLS: AtomicU32 = AtomicU32::new(0);

/// A loopback port that is free now, lies outside the kernel's ephemeral range and is
/// claimed for this caller for [`PORT_CLAIM_TTL_S`].
pub fn free_loopback_port() -> io::Result<u16> {
    free_loopback_block(1)
}

/// The first of `len` consecutive loopback ports that are all free now and all claimed
/// for this caller (a node that takes its gRPC port and the next one for HTTP, say).
pub fn free_loopback_block(len: u16) -> io::Result<u16> {
    if len == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a block of 0 ports",
        ));
    }
    let claims = claims_dir()?;
    let high = ephemeral_low().unwrap_or(EPHEMERAL_LOW_DEFAULT);
    let span = high.saturating_sub(PORT_LOW).saturating_sub(len);
    let mut start = seed();
    for _ in 0..ATTEMPTS_MAX {
        let base = if span >= RANGE_PORTS_MIN {
            PORT_LOW + (start % u32::from(span)) as u16
        } else {
            os_port()?
        };
        start = start.wrapping_add(u32::from(len) + 7);
        let Some(last) = base.checked_add(len - 1) else {
            continue;
        };
        if !(base..=last).all(bindable) {
            continue;
        }
        let mut claimed = Vec::new();
        for port in base..=last {
            if claim(&claims, port)? {
                claimed.push(port);
            } else {
                break;
            }
        }
        if claimed.len() == usize::from(len) {
            return Ok(base);
        }
        for port in claimed {
            let _ = std::fs::remove_file(claims.join(port.to_string()));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        format!("no {len} free loopback port(s) found in {ATTEMPTS_MAX} attempts"),
    ))
}

/// Where claims live: one empty file per claimed port, in `/tmp/tradelog-port-claims`
/// whatever `TMPDIR` says (test runs give each run its own `TMPDIR`, and the claims must be
/// shared by every process on the machine), or under the temp directory where `/tmp` does
/// not exist.
fn claims_dir() -> io::Result<PathBuf> {
    let root = Path::new("/tmp");
    let base = if root.is_dir() {
        root.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = base.join("tradelog-port-claims");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Claims `port`: true if this call made the claim (a stale claim is taken over).
fn claim(dir: &Path, port: u16) -> io::Result<bool> {
    let path = dir.join(port.to_string());
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(_) => return Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let age = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok());
    if age.is_some_and(|a| a >= Duration::from_secs(PORT_CLAIM_TTL_S)) {
        // Stale: renew it by its modification time, then it is ours. Two processes
        // renewing at once both think so; the bind check before has made that rare.
        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
        file.set_modified(SystemTime::now())?;
        return Ok(true);
    }
    Ok(false)
}

/// Whether `port` can be bound on loopback now.
fn bindable(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A port the OS picks (the fallback when the range below the ephemeral one is tiny).
fn os_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_low() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

/// A starting point that differs between processes and between calls of one process.
fn seed() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let calls = CALLS.fetch_add(1, Ordering::Relaxed);
    std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(nanos)
        .wrapping_add(calls.wrapping_mul(97))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let high = ephemeral_low().unwrap_or(EPHEMERAL_LOW_DEFAULT);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let p = free_loopback_port().unwrap();
            if high - PORT_LOW >= RANGE_PORTS_MIN {
                assert!(
                    (PORT_LOW..high).contains(&p),
                    "{p} outside {PORT_LOW}..{high}"
                );
            }
            assert!(bindable(p));
            assert!(seen.insert(p), "port {p} handed out twice");
        }
    }

    #[test]
    fn a_block_is_consecutive_free_and_claimed() {
        let base = free_loopback_block(5).unwrap();
        let dir = claims_dir().unwrap();
        for p in base..base + 5 {
            assert!(bindable(p));
            assert!(dir.join(p.to_string()).exists(), "port {p} not claimed");
            // Claimed ports are not claimed again.
            assert!(!claim(&dir, p).unwrap());
        }
        assert_eq!(
            free_loopback_block(0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn a_stale_claim_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        assert!(claim(dir.path(), 1).unwrap());
        assert!(!claim(dir.path(), 1).unwrap());
        let old = SystemTime::now() - Duration::from_secs(PORT_CLAIM_TTL_S + 1);
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("1"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(claim(dir.path(), 1).unwrap());
        assert!(!claim(dir.path(), 1).unwrap());
    }
}
