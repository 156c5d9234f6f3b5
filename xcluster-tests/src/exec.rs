//! Running commands in namespaces, bounded waits and reachability probes (ping, TCP connect).

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};

/// The command line of `cmd` as one string, for error messages.
pub fn command_line(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `cmd` to completion, feeding `stdin` if given, and returns its stdout.
/// A non-zero exit is an error carrying the command line, stdout and stderr.
pub fn run_with_stdin(cmd: &mut Command, stdin: Option<&[u8]>) -> Result<String> {
    let line = command_line(cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| HarnessError::Spawn {
        command: line.clone(),
        source,
    })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A plugin that exits early closes its stdin; the exit status then tells what happened.
        let _ = pipe.write_all(input);
    }
    let out = child
        .wait_with_output()
        .map_err(|source| HarnessError::Spawn {
            command: line.clone(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(HarnessError::Command {
            command: line,
            status: out.status.to_string(),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(stdout)
}

/// Runs `cmd` to completion and returns its stdout; see [`run_with_stdin`].
pub fn run(cmd: &mut Command) -> Result<String> {
    run_with_stdin(cmd, None)
}

/// A `Command` that runs `program` inside network namespace `netns` (`ip netns exec`, which execs
/// the program in place, so a spawned child's PID is the program's PID).
pub fn ns_command(netns: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, program]);
    cmd
}

/// Runs `args[0]` with the remaining arguments inside `netns` and returns its stdout.
pub fn exec_in(netns: &str, args: &[&str]) -> Result<String> {
    let (program, rest) = args
        .split_first()
        .ok_or_else(|| HarnessError::Topology("exec_in: empty command".into()))?;
    run(ns_command(netns, program).args(rest))
}

/// Runs `ip` with `args` (in the root namespace unless `args` has `-n NS`) and returns its stdout.
pub fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args))
}

/// Polls `check` every `interval` until it returns true, at most `timeout` long.
/// The error names `what` was awaited.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::Timeout {
                what: what.to_owned(),
                timeout,
            });
        }
        std::thread::sleep(interval);
    }
}

/// Pings `addr` (either family) from `netns`: succeeds on the first echo reply, fails after 3 s.
pub fn ping(netns: &str, addr: IpAddr) -> Result<()> {
    let family = if addr.is_ipv6() { "-6" } else { "-4" };
    let target = addr.to_string();
    // -c 1 with -w 3: keep sending every 0.2 s until one reply arrives or 3 s pass,
    // so a first probe lost to neighbour discovery does not fail the check.
    exec_in(
        netns,
        &[
            "ping", family, "-n", "-q", "-c", "1", "-i", "0.2", "-w", "3", &target,
        ],
    )
    .map(|_| ())
}

/// Checks that a TCP connection from `netns` to `addr`:`port` is accepted (`nc -z`, 2 s timeout).
pub fn tcp_connect(netns: &str, addr: IpAddr, port: u16) -> Result<()> {
    let target = addr.to_string();
    let port = port.to_string();
    exec_in(netns, &["nc", "-z", "-w", "2", &target, &port]).map(|_| ())
}
