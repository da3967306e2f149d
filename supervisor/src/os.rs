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
    // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: prctl, getppid and _exit are; it allocates nothing and takes no
    // locks. It captures only a `u32`.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then no signal will come.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        })
    };
    command.spawn()
}
