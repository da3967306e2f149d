//! The data dir: created with mode 0700, locked with `flock` so two supervisors never share
//! one, and described by a small manifest (format version, instance id, worker count).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// Manifest file name.
pub const MANIFEST: &str = "MANIFEST";
/// Lock file name.
pub const LOCK: &str = "LOCK";
const FORMAT_VERSION: u32 = 1;

/// An open, locked data dir.
#[derive(Debug)]
pub struct DataDir {
    instance: String,
    _lock: Flock<File>,
}

impl DataDir {
    /// Opens (creating if needed) and locks `path` for a supervisor with `workers` workers.
    pub fn open(path: &Path, workers: u32) -> Result<Self, String> {
        let shown = path.display();
        if !path.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|e| format!("cannot create data dir {shown}: {e}"))?;
        }
        if !path.is_dir() {
            return Err(format!("data dir {shown} exists and is not a directory"));
        }
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path.join(LOCK))
            .map_err(|e| format!("cannot write to data dir {shown}: {e}"))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            if e == nix::errno::Errno::EWOULDBLOCK {
                format!("data dir {shown} is in use by another corral supervisor")
            } else {
                format!("cannot lock data dir {shown}: {e}")
            }
        })?;
        let manifest_path = path.join(MANIFEST);
        let (instance, recorded) = if manifest_path.exists() {
            read_manifest(&manifest_path)?
        } else {
            let instance = new_instance_id()?;
            write_manifest(path, &instance, workers)?;
            (instance, workers)
        };
        if recorded != workers {
            return Err(format!(
                "data dir {shown} holds {recorded} shards; start with --workers {recorded} \
                 or use another data dir"
            ));
        }
        Ok(Self {
            instance,
            _lock: lock,
        })
    }

    /// A random id fixed at creation; shared-memory segment names carry it.
    #[must_use]
    pub fn instance(&self) -> &str {
        &self.instance
    }
}

fn new_instance_id() -> Result<String, String> {
    let mut bytes = [0u8; 8];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_manifest(dir: &Path, instance: &str, workers: u32) -> Result<(), String> {
    let text = format!(
        "format_version = {FORMAT_VERSION}\ninstance = \"{instance}\"\nworkers = {workers}\n"
    );
    let tmp = dir.join("MANIFEST.tmp");
    let result = (|| {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(MANIFEST))?;
        File::open(dir)?.sync_all()
    })();
    result.map_err(|e| format!("cannot write {}: {e}", dir.join(MANIFEST).display()))
}

/// The worker count recorded in the data dir at `path` (without locking it).
pub fn recorded_workers(path: &Path) -> Result<u32, String> {
    if !path.join(MANIFEST).exists() {
        return Err(format!(
            "{} is not a corral data dir (no {MANIFEST})",
            path.display()
        ));
    }
    read_manifest(&path.join(MANIFEST)).map(|(_, workers)| workers)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format_version: u32,
    instance: String,
    workers: u32,
}

fn read_manifest(path: &Path) -> Result<(String, u32), String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let m: Manifest = toml::from_str(&text)
        .map_err(|e| format!("damaged manifest {}: {}", path.display(), e.message()))?;
    if m.format_version != FORMAT_VERSION {
        return Err(format!(
            "{} has format version {}, this corral reads {FORMAT_VERSION}",
            path.display(),
            m.format_version
        ));
    }
    if m.instance.len() != 16 || !m.instance.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "damaged manifest {}: bad instance id",
            path.display()
        ));
    }
    Ok((m.instance, m.workers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("corral-datadir-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn creates_locks_and_remembers_the_worker_count() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("lock");
        let first = DataDir::open(&dir, 3).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let err = DataDir::open(&dir, 3).unwrap_err();
        assert!(err.contains("in use by another corral"), "{err}");
        let instance = first.instance().to_owned();
        drop(first);
        let err = DataDir::open(&dir, 4).unwrap_err();
        assert!(err.contains("holds 3 shards"), "{err}");
        let again = DataDir::open(&dir, 3).unwrap();
        assert_eq!(again.instance(), instance);
        drop(again);
        fs::write(dir.join(MANIFEST), "garbage = [").unwrap();
        assert!(DataDir::open(&dir, 3)
            .unwrap_err()
            .contains("damaged manifest"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_in_the_way_is_an_error() {
        let path = temp_dir("file");
        fs::write(&path, b"x").unwrap();
        let err = DataDir::open(&path, 1).unwrap_err();
        fs::remove_file(&path).unwrap();
        assert!(err.contains("not a directory"), "{err}");
    }
}
