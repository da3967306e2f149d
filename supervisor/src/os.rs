//! The supervisor's one piece of unsafe code: the `pre_exec` hook that ties a worker's life
//! to the supervisor's.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// Spawns `command` (fork + exec) in its own process group, with `PR_SET_PDEATHSIG` =
/// SIGKILL so the worker dies with the thread that spawned it. Callers spawn from the
/// long-lived lifecycle thread, since the signal fires when the *spawning thread* exits.
pub fn spawn_tied_to_parent(command: &mut Command) -> io::Result<Child> {
    let parent = std::process::id();
    command.process_group(0);
    let hook = move || {
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
        // The parent may have died between fork and prctl: then no signal will come.
        if nix::unistd::getppid().as_raw() as u32 != parent {
            // SAFETY: `_exit` is async-signal-safe and ends the forked child at once,
            // without running the parent's atexit handlers or destructors.
            unsafe { libc::_exit(1) };
        }
        Ok(())
    };
    // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: prctl, getppid and _exit are; it allocates nothing (the error path
    // builds an io::Error from an errno, without allocating) and takes no locks.
    unsafe { command.pre_exec(hook) };
    command.spawn()
}
