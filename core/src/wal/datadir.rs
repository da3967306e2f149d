//! The data dir: created with mode 0700, locked with `flock` so two supervisors never share
//! one, and described by a small manifest (format version, instance id, worker count, and
//! the event log's newest segment, rewritten at every roll so that a log whose newest
//! segments are gone is told from one that ends there).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::wal::{HeadRecorder, Newest};

/// Manifest file name.
pub const MANIFEST: &str = "MANIFEST";
/// Lock file name.
pub const LOCK: &str = "LOCK";
const FORMAT_VERSION: u32 = 2;

/// An open, locked data dir.
#[derive(Debug)]
pub struct DataDir {
    manifest: Manifest,
    path: std::path::PathBuf,
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
        let manifest = if manifest_path.exists() {
            read_manifest(&manifest_path)?
        } else {
            let manifest = Manifest {
                format_version: FORMAT_VERSION,
                instance: new_instance_id()?,
                workers,
                log_newest_segment: None,
                log_newest_capacity: None,
            };
            write_manifest(path, &manifest)?;
            manifest
        };
        if manifest.workers != workers {
            return Err(format!(
                "data dir {shown} holds {} shards; start with --workers {} or use another data dir",
                manifest.workers, manifest.workers
            ));
        }
        Ok(Self {
            manifest,
            path: path.to_owned(),
            _lock: lock,
        })
    }

    /// The number of shards the data dir holds.
    #[must_use]
    pub fn workers(&self) -> u32 {
        self.manifest.workers
    }

    /// A random id fixed at creation.
    #[must_use]
    pub fn instance(&self) -> &str {
        &self.manifest.instance
    }

    /// The event log's newest segment, as last recorded.
    #[must_use]
    pub fn newest_segment(&self) -> Option<Newest> {
        self.manifest.newest()
    }

    /// Records new newest segments of the event log in the manifest (durably, before the
    /// log writes into them).
    #[must_use]
    pub fn head_recorder(&self) -> HeadRecorder {
        let (dir, mut manifest) = (self.path.clone(), self.manifest.clone());
        Box::new(move |newest: Newest| {
            manifest.log_newest_segment = Some(newest.first_seq);
            manifest.log_newest_capacity = Some(newest.capacity);
            write_manifest(&dir, &manifest).map_err(std::io::Error::other)
        })
    }
}

fn new_instance_id() -> Result<String, String> {
    let mut bytes = [0u8; 8];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_manifest(dir: &Path, m: &Manifest) -> Result<(), String> {
    let mut text = format!(
        "# corral data dir: do not edit (the event log's newest segment is recorded here)\n\
         format_version = {}\ninstance = \"{}\"\nworkers = {}\n",
        m.format_version, m.instance, m.workers
    );
    if let (Some(seg), Some(cap)) = (m.log_newest_segment, m.log_newest_capacity) {
        text.push_str(&format!(
            "log_newest_segment = {seg}\nlog_newest_capacity = {cap}\n"
        ));
    }
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

/// The manifest of the data dir at `path` (without locking it), for the offline commands.
pub fn read(path: &Path) -> Result<Manifest, String> {
    if !path.join(MANIFEST).exists() {
        return Err(format!(
            "{} is not a corral data dir (no {MANIFEST})",
            path.display()
        ));
    }
    read_manifest(&path.join(MANIFEST))
}

/// What the manifest holds.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    format_version: u32,
    instance: String,
    /// Shards.
    pub workers: u32,
    log_newest_segment: Option<u64>,
    log_newest_capacity: Option<u64>,
}

impl Manifest {
    /// The event log's newest segment, as last recorded.
    #[must_use]
    pub fn newest(&self) -> Option<Newest> {
        Some(Newest {
            first_seq: self.log_newest_segment?,
            capacity: self.log_newest_capacity?,
        })
    }
}

fn read_manifest(path: &Path) -> Result<Manifest, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let m: Manifest = toml::from_str(&text)
        .map_err(|e| format!("damaged manifest {}: {}", path.display(), e.message()))?;
    if m.format_version != FORMAT_VERSION {
        return Err(format!(
            "{} has format version {}, this corral reads {FORMAT_VERSION} (a data dir of \
             another version must be read by that version of corral)",
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
    Ok(m)
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
