//! An index of a folder's files by story id (a story folder, a QA gates folder), kept current
//! by the kernel's change notifications instead of listing the folder per lookup: a folder
//! that gains a file per story would otherwise make each story's cost grow with the epic.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent};

use super::error::ProjectError;
use super::id::StoryId;

/// How a folder's file names map to stories: the story a name belongs to, if any.
pub(crate) type NameId = fn(&str) -> Option<StoryId>;

/// The files of a folder, by story: every regular file or symlink whose (UTF-8) name belongs to
/// a story (`name_id`). `Ok(empty)` when the folder does not exist.
fn list_named(
    dir: &Path,
    name_id: NameId,
) -> Result<BTreeMap<StoryId, BTreeSet<String>>, ProjectError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(ProjectError::io("list", dir, e)),
    };
    let mut files: BTreeMap<StoryId, BTreeSet<String>> = BTreeMap::new();
    for entry in rd {
        let entry = entry.map_err(|e| ProjectError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some((id, name)) = name.to_str().and_then(|n| Some((name_id(n)?, n))) else {
            continue;
        };
        if entry
            .file_type()
            .is_ok_and(|t| t.is_file() || t.is_symlink())
        {
            files.entry(id).or_default().insert(name.to_owned());
        }
    }
    Ok(files)
}

/// Finds a story's files in one folder (its story file, its QA gate files). The folder is
/// listed once; after that the kernel's change notifications for it (inotify: files created,
/// deleted, moved in or out) keep the index current, so a lookup costs a `stat` of the folder
/// and a read of the (usually empty) notification queue however many files there are. Exact,
/// not a cache that may be stale: an agent's writes are queued by the kernel before the agent's
/// process is reaped, so the lookup after a call sees them. The folder is listed again when it
/// is replaced or moved (its inode changes), when the queue overflowed, and whenever
/// notifications cannot be had (then every lookup lists it, as before the index).
#[derive(Debug)]
pub(crate) struct FolderIndex {
    /// The story a file name belongs to.
    name_id: NameId,
    watched: Mutex<Option<Watched>>,
}

impl FolderIndex {
    /// An index of the files whose names `name_id` gives a story.
    pub(crate) fn new(name_id: NameId) -> Self {
        FolderIndex {
            name_id,
            watched: Mutex::new(None),
        }
    }
}

#[cfg(test)]
impl FolderIndex {
    /// The watch's file descriptor, if the folder is watched: the same one across lookups
    /// means the folder was not listed again.
    pub(crate) fn watch_fd(&self) -> Option<i32> {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        self.watched
            .lock()
            .ok()?
            .as_ref()
            .map(|w| w.inotify.as_fd().as_raw_fd())
    }
}

impl Clone for FolderIndex {
    /// A clone starts empty: it lists the folder on its first lookup and watches it itself.
    fn clone(&self) -> Self {
        FolderIndex::new(self.name_id)
    }
}

/// A watched folder and its files, by story.
#[derive(Debug)]
struct Watched {
    dir: PathBuf,
    /// Device and inode of the folder when it was listed.
    inode: (u64, u64),
    inotify: Inotify,
    name_id: NameId,
    files: BTreeMap<StoryId, BTreeSet<String>>,
}

/// What the watch reports: names created in or moved into the folder, names deleted from or
/// moved out of it, the folder itself going away, a lost queue.
const WATCH_MASK: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_ONLYDIR);

impl FolderIndex {
    /// The files of story `id` in the folder `dir` (absolute), sorted by name; empty when the
    /// folder does not exist.
    pub(crate) fn files(&self, dir: &Path, id: StoryId) -> Result<Vec<String>, ProjectError> {
        let mut watched = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
        let inode = match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => (meta.dev(), meta.ino()),
            Ok(_) => {
                // Not a folder: listing it reports the error as it always did.
                *watched = None;
                return Ok(of_story(list_named(dir, self.name_id)?, id));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                *watched = None;
                return Ok(Vec::new());
            }
            Err(e) => return Err(ProjectError::io("list", dir, e)),
        };
        let current = watched
            .as_mut()
            .filter(|w| w.dir == dir && w.inode == inode)
            .is_some_and(Watched::catch_up);
        if !current {
            *watched = Watched::start(dir, inode, self.name_id)?;
        }
        match watched.as_ref() {
            Some(w) => Ok(w
                .files
                .get(&id)
                .map(|names| names.iter().cloned().collect())
                .unwrap_or_default()),
            // No notifications to be had: list the folder every time.
            None => Ok(of_story(list_named(dir, self.name_id)?, id)),
        }
    }
}

fn of_story(mut files: BTreeMap<StoryId, BTreeSet<String>>, id: StoryId) -> Vec<String> {
    files
        .remove(&id)
        .map(|names| names.into_iter().collect())
        .unwrap_or_default()
}

impl Watched {
    /// Watches `dir`, then lists it (in that order, so that nothing created in between is
    /// missed), then applies what the watch saw meanwhile. `Ok(None)` when the kernel gives no
    /// watch (no inotify, or the per-user limit reached).
    fn start(
        dir: &Path,
        inode: (u64, u64),
        name_id: NameId,
    ) -> Result<Option<Watched>, ProjectError> {
        let inotify = match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .and_then(|i| i.add_watch(dir, WATCH_MASK).map(|_| i))
        {
            Ok(i) => i,
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "no inotify watch: lookups list the folder");
                return Ok(None);
            }
        };
        let mut watched = Watched {
            dir: dir.to_owned(),
            inode,
            inotify,
            name_id,
            files: list_named(dir, name_id)?,
        };
        Ok(watched.catch_up().then_some(watched))
    }

    /// Applies the queued notifications. False when the index can no longer be trusted (the
    /// folder was deleted or moved, the queue overflowed, the queue cannot be read): the
    /// caller lists the folder again.
    fn catch_up(&mut self) -> bool {
        loop {
            match self.inotify.read_events() {
                Ok(events) if events.is_empty() => return true,
                Ok(events) => {
                    for event in events {
                        if !self.apply(event) {
                            return false;
                        }
                    }
                }
                Err(Errno::EAGAIN) => return true,
                Err(Errno::EINTR) => {}
                Err(e) => {
                    tracing::debug!(dir = %self.dir.display(), error = %e, "inotify read failed: listing the folder again");
                    return false;
                }
            }
        }
    }

    fn apply(&mut self, event: InotifyEvent) -> bool {
        let gone = AddWatchFlags::IN_Q_OVERFLOW
            | AddWatchFlags::IN_IGNORED
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_UNMOUNT;
        if event.mask.intersects(gone) {
            return false;
        }
        let Some((id, name)) = event
            .name
            .as_deref()
            .and_then(OsStr::to_str)
            .and_then(|n| Some(((self.name_id)(n)?, n)))
        else {
            return true;
        };
        // Whatever the event, the name is set to what it is now: only regular files and symlinks
        // count, as in a listing. An event is never applied on its own: after a rename that
        // exchanges two names (`RENAME_EXCHANGE`, how the host writes a story file) the queue
        // says the story's name was moved away last, yet the name is there.
        let counts = std::fs::symlink_metadata(self.dir.join(name))
            .is_ok_and(|m| m.file_type().is_file() || m.file_type().is_symlink());
        if counts {
            self.files.entry(id).or_default().insert(name.to_owned());
        } else if let Some(names) = self.files.get_mut(&id) {
            names.remove(name);
            if names.is_empty() {
                self.files.remove(&id);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::gate::gate_story;
    use proptest::prelude::*;
    use std::fs;
    use std::os::fd::{AsFd as _, AsRawFd as _};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn id(s: &str) -> StoryId {
        s.parse().expect("a story id")
    }

    /// What a fresh listing of the folder says: the index must always agree.
    fn listed(dir: &Path, story: StoryId) -> Vec<String> {
        of_story(list_named(dir, gate_story).expect("list"), story)
    }

    #[test]
    fn the_index_finds_gates_written_after_it_listed_the_folder() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("gates");
        let index = FolderIndex::new(gate_story);
        assert!(index.files(&dir, id("1.2"))?.is_empty(), "no folder yet");
        fs::create_dir(&dir)?;
        fs::write(dir.join("1.2-a.yml"), "gate: PASS\n")?;
        fs::write(dir.join("1.20-b.yml"), "gate: PASS\n")?;
        fs::write(dir.join("1-2-c.yml"), "gate: PASS\n")?;
        fs::create_dir(dir.join("1.2-folder.yml"))?;
        assert_eq!(index.files(&dir, id("1.2"))?, ["1.2-a.yml"]);
        fs::write(dir.join("1.2-b.yaml"), "gate: FAIL\n")?;
        assert_eq!(index.files(&dir, id("1.2"))?, ["1.2-a.yml", "1.2-b.yaml"]);
        fs::rename(dir.join("1.2-a.yml"), dir.join("1.2-z.yml"))?;
        fs::remove_file(dir.join("1.2-b.yaml"))?;
        assert_eq!(index.files(&dir, id("1.2"))?, ["1.2-z.yml"]);
        assert_eq!(index.files(&dir, id("1.20"))?, ["1.20-b.yml"]);
        // The folder replaced by another one: listed again.
        fs::rename(&dir, tmp.path().join("old"))?;
        fs::create_dir(&dir)?;
        fs::write(dir.join("1.2-new.yml"), "gate: PASS\n")?;
        assert_eq!(index.files(&dir, id("1.2"))?, ["1.2-new.yml"]);
        fs::remove_dir_all(&dir)?;
        assert!(index.files(&dir, id("1.2"))?.is_empty());
        Ok(())
    }

    #[test]
    fn the_index_does_not_list_the_folder_again_for_each_lookup() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("gates");
        fs::create_dir(&dir)?;
        let index = FolderIndex::new(gate_story);
        assert!(index.files(&dir, id("1.1"))?.is_empty());
        let watched = |index: &FolderIndex| {
            index
                .watched
                .lock()
                .map(|w| w.as_ref().map(|w| w.inotify.as_fd().as_raw_fd()))
                .ok()
                .flatten()
        };
        let first = watched(&index);
        assert!(first.is_some(), "the folder is watched");
        for i in 1..50 {
            fs::write(dir.join(format!("1.{i}-story.yml")), "gate: PASS\n")?;
            assert_eq!(
                index.files(&dir, id(&format!("1.{i}")))?,
                [format!("1.{i}-story.yml")]
            );
        }
        assert_eq!(watched(&index), first, "the same watch all along");
        Ok(())
    }

    /// A change to the gates folder, for the property test.
    #[derive(Debug, Clone)]
    enum Change {
        Write(usize),
        Mkdir(usize),
        Symlink(usize),
        Remove(usize),
        Rename(usize, usize),
        Exchange(usize, usize),
        MoveOut(usize),
        MoveIn(usize),
        ReplaceFolder,
        RemoveFolder,
    }

    const NAMES: [&str; 7] = [
        "1.2-a.yml",
        "1.2-b.yaml",
        "1.2-c.yml",
        "1.20-d.yml",
        "1.2.yml",
        "1.2-e.txt",
        "x.yml",
    ];

    fn change() -> impl Strategy<Value = Change> {
        let n = 0..NAMES.len();
        prop_oneof![
            4 => n.clone().prop_map(Change::Write),
            1 => n.clone().prop_map(Change::Mkdir),
            1 => n.clone().prop_map(Change::Symlink),
            3 => n.clone().prop_map(Change::Remove),
            3 => (n.clone(), n.clone()).prop_map(|(a, b)| Change::Rename(a, b)),
            2 => (n.clone(), n.clone()).prop_map(|(a, b)| Change::Exchange(a, b)),
            1 => n.clone().prop_map(Change::MoveOut),
            1 => n.prop_map(Change::MoveIn),
            1 => Just(Change::ReplaceFolder),
            1 => Just(Change::RemoveFolder),
        ]
    }

    fn apply(root: &Path, dir: &Path, change: &Change, k: usize) {
        let at = |i: usize| dir.join(NAMES[i]);
        let outside = root.join(format!("outside-{k}"));
        // Changes that make no sense in the current state fail; that is fine.
        let _ = match change {
            Change::Write(i) => fs::write(at(*i), "gate: PASS\n"),
            Change::Mkdir(i) => fs::create_dir(at(*i)),
            Change::Symlink(i) => std::os::unix::fs::symlink("elsewhere.yml", at(*i)),
            Change::Remove(i) => fs::remove_file(at(*i)).or_else(|_| fs::remove_dir(at(*i))),
            Change::Rename(a, b) => fs::rename(at(*a), at(*b)),
            Change::Exchange(a, b) => nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &at(*a),
                nix::fcntl::AT_FDCWD,
                &at(*b),
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            )
            .map_err(std::io::Error::from),
            Change::MoveOut(i) => fs::rename(at(*i), &outside),
            Change::MoveIn(i) => {
                fs::write(&outside, "gate: FAIL\n").and_then(|()| fs::rename(&outside, at(*i)))
            }
            Change::ReplaceFolder => {
                fs::rename(dir, root.join(format!("old-{k}"))).and_then(|()| fs::create_dir(dir))
            }
            Change::RemoveFolder => fs::remove_dir_all(dir),
        };
        if !dir.exists() && k.is_multiple_of(2) {
            let _ = fs::create_dir(dir);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever happens to the folder, and however many changes pile up between two
        /// lookups, the index answers what a fresh listing answers.
        #[test]
        fn the_index_always_agrees_with_a_listing(
            changes in proptest::collection::vec((change(), any::<bool>()), 1..40),
        ) {
            let tmp = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let dir = tmp.path().join("gates");
            fs::create_dir(&dir).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let index = FolderIndex::new(gate_story);
            for (k, (change, look)) in changes.iter().enumerate() {
                apply(tmp.path(), &dir, change, k);
                if *look || k + 1 == changes.len() {
                    for story in [id("1.2"), id("1.20")] {
                        let found = index.files(&dir, story)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(found, listed(&dir, story), "after {:?}", &changes[..=k]);
                    }
                }
            }
        }
    }
}
