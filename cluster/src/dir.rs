//! The directory source (`--objects-from DIR`): Kubernetes YAML/JSON files, polled, into the stores.
//!
//! Every `*.yaml`, `*.yml` and `*.json` file in DIR (not hidden, symlinks followed, no
//! subdirectories) holds objects: one or more YAML documents, each an object or a `kind: List`.
//! DIR is re-read every poll interval (1 s by default); the objects that appeared, changed or
//! vanished since the last read are applied to or deleted from the stores.
//!
//! Polling rather than inotify: DIR holds a few small files (the netns harness, the demo), so
//! reading them all each second costs nothing, and comparing contents (not mtimes) sees every
//! edit however fast, through ConfigMap symlink swaps, bind mounts and editors that replace
//! files, with no extra dependency.
//!
//! Bad input never wipes state: a file that cannot be read or parsed keeps the objects it held
//! before; an object that does not decode keeps its previous version, and a file with any
//! problem deletes nothing. Each problem is logged once (file, kind, namespace/name) and kept in
//! [`DirStatus::problems`] until fixed.

mod parse;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::runtime::watcher;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::kind::{ClusterObject, Kind, ObjectKey};
use super::stores::StoreWriters;
use super::{ClusterSource, SourceError};
use parse::{AnyObject, ParsedFile};

/// An object's identity across kinds.
type ObjectId = (Kind, ObjectKey);

/// A problem with DIR's contents; the previous state of whatever it concerns is kept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DirError {
    /// DIR itself could not be listed.
    #[error("{dir}: cannot list: {reason}")]
    List { dir: PathBuf, reason: String },
    /// A file could not be read.
    #[error("{file}: cannot read: {reason}; keeping its previous objects")]
    Read { file: PathBuf, reason: String },
    /// A file is not valid YAML (or JSON).
    #[error("{file}: not valid YAML/JSON: {reason}; keeping its previous objects")]
    Syntax { file: PathBuf, reason: String },
    /// A document is not an object with `apiVersion` and `kind`.
    #[error("{file}: document {document}: {reason}")]
    Document {
        file: PathBuf,
        document: usize,
        reason: String,
    },
    /// An object of a carried kind does not decode (or has no name).
    #[error("{file}: {kind} {key}: {reason}; keeping its previous version")]
    Object {
        file: PathBuf,
        kind: Kind,
        key: ObjectKey,
        reason: String,
    },
    /// The same object is defined twice; the later definition (file name order) wins.
    #[error("{kind} {key} is defined in {first} and again in {second}; using {second}")]
    Duplicate {
        kind: Kind,
        key: ObjectKey,
        first: PathBuf,
        second: PathBuf,
    },
}

/// What the directory source last saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirStatus {
    /// How many times DIR was read (the first load counts).
    pub scans: u64,
    /// Object files found.
    pub files: usize,
    /// Objects in the stores from DIR.
    pub objects: usize,
    /// Current problems (each logged once when it appeared).
    pub problems: Vec<DirError>,
}

/// Reads Kubernetes objects from a directory and keeps the stores equal to it.
#[derive(Debug)]
pub struct DirSource {
    dir: PathBuf,
    poll_interval: Duration,
    status: watch::Sender<DirStatus>,
}

impl DirSource {
    /// A source for `dir`, which must be a readable directory now.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, SourceError> {
        let dir = dir.into();
        let bad = |reason: String| SourceError::ObjectsDir {
            dir: dir.clone(),
            reason,
        };
        std::fs::read_dir(&dir).map_err(|e| bad(e.to_string()))?;
        Ok(DirSource {
            dir,
            poll_interval: Duration::from_secs(1),
            status: watch::Sender::new(DirStatus::default()),
        })
    }

    /// How often DIR is re-read (default 1 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The status after each read of DIR.
    pub fn status(&self) -> watch::Receiver<DirStatus> {
        self.status.subscribe()
    }
}

impl ClusterSource for DirSource {
    async fn run(self, mut writers: StoreWriters) -> Result<(), SourceError> {
        let mut state = DirState::default();
        let snapshot = read_snapshot(&self.dir).await;
        // The first load is a relist of every kind, empty or not: all stores become ready.
        state.update(&self.dir, snapshot);
        state.send_initial(&mut writers);
        self.status.send_replace(state.status());
        let mut ticker = tokio::time::interval(self.poll_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate
        loop {
            ticker.tick().await;
            let snapshot = read_snapshot(&self.dir).await;
            let changes = state.update(&self.dir, snapshot);
            state.send(&mut writers, changes);
            self.status.send_replace(state.status());
        }
    }
}

/// DIR's object files and their bytes (or why a file could not be read), or why DIR could not be listed.
type Snapshot = Result<Vec<(PathBuf, Result<Vec<u8>, String>)>, String>;

async fn read_snapshot(dir: &Path) -> Snapshot {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || read_snapshot_blocking(&dir))
        .await
        .unwrap_or_else(|e| Err(format!("reader task failed: {e}")))
}

fn read_snapshot_blocking(dir: &Path) -> Snapshot {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Hidden entries include a ConfigMap volume's `..data` and timestamped directories.
        if name.starts_with('.') || !is_object_file(&name) {
            continue;
        }
        let path = entry.path();
        // metadata() follows symlinks: a ConfigMap's files are symlinks into `..data`.
        match std::fs::metadata(&path) {
            Ok(meta) if !meta.is_file() => continue,
            Ok(_) => files.push((
                path.clone(),
                std::fs::read(&path).map_err(|e| e.to_string()),
            )),
            Err(e) => files.push((path, Err(e.to_string()))),
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

fn is_object_file(name: &str) -> bool {
    [".yaml", ".yml", ".json"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// One file as last read.
#[derive(Debug, Default)]
struct FileState {
    /// The bytes last parsed (`None`: never read successfully).
    bytes: Option<Vec<u8>>,
    objects: BTreeMap<ObjectId, AnyObject>,
    problems: Vec<DirError>,
}

/// A change to send to the stores.
#[derive(Debug, PartialEq)]
enum ObjectChange {
    Apply(AnyObject),
    Delete(AnyObject),
}

/// Everything the directory source knows; `update` is pure (no I/O) so tests can drive it.
#[derive(Debug, Default)]
struct DirState {
    files: BTreeMap<PathBuf, FileState>,
    /// What the stores hold, as defined in the files (before stamping `resourceVersion`).
    applied: BTreeMap<ObjectId, AnyObject>,
    /// Problems not tied to one file's parse: listing DIR, duplicates across files.
    global_problems: Vec<DirError>,
    scans: u64,
    /// The `resourceVersion` stamped on the next object sent.
    resource_version: u64,
}

impl DirState {
    /// Takes a new read of DIR and returns the changes to send, in a deterministic order.
    fn update(&mut self, dir: &Path, snapshot: Snapshot) -> Vec<ObjectChange> {
        self.scans += 1;
        let mut global = Vec::new();
        match snapshot {
            Err(reason) => {
                global.push(DirError::List {
                    dir: dir.to_path_buf(),
                    reason,
                });
            }
            Ok(files) => {
                let present: Vec<&PathBuf> = files.iter().map(|(p, _)| p).collect();
                self.files.retain(|path, _| present.contains(&path));
                for (path, read) in files {
                    let previous = self.files.remove(&path).unwrap_or_default();
                    let next = update_file(&path, previous, read);
                    self.files.insert(path, next);
                }
            }
        }
        let mut merged: BTreeMap<ObjectId, (&PathBuf, &AnyObject)> = BTreeMap::new();
        for (path, file) in &self.files {
            for (id, obj) in &file.objects {
                if let Some((first, _)) = merged.insert(id.clone(), (path, obj)) {
                    global.push(DirError::Duplicate {
                        kind: id.0,
                        key: id.1.clone(),
                        first: first.clone(),
                        second: path.clone(),
                    });
                }
            }
        }
        for problem in &global {
            if !self.global_problems.contains(problem) {
                warn!("{problem}");
            }
        }
        self.global_problems = global;

        let mut changes = Vec::new();
        for (id, (_, obj)) in &merged {
            if self.applied.get(id) != Some(*obj) {
                changes.push(ObjectChange::Apply((*obj).clone()));
            }
        }
        for (id, obj) in &self.applied {
            if !merged.contains_key(id) {
                changes.push(ObjectChange::Delete(obj.clone()));
            }
        }
        self.applied = merged
            .into_iter()
            .map(|(id, (_, obj))| (id, obj.clone()))
            .collect();
        changes
    }

    fn status(&self) -> DirStatus {
        let mut problems = self.global_problems.clone();
        for file in self.files.values() {
            problems.extend(file.problems.iter().cloned());
        }
        DirStatus {
            scans: self.scans,
            files: self.files.len(),
            objects: self.applied.len(),
            problems,
        }
    }

    fn next_resource_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    /// Sends every kind's `Init`, `InitApply` per object, `InitDone`.
    fn send_initial(&mut self, writers: &mut StoreWriters) {
        for kind in Kind::ALL {
            init_kind(writers, kind, Relist::Init);
            let objects: Vec<AnyObject> = self
                .applied
                .iter()
                .filter(|((k, _), _)| *k == kind)
                .map(|(_, obj)| obj.clone())
                .collect();
            for obj in objects {
                let rv = self.next_resource_version();
                obj.send(writers, Op::InitApply, rv);
            }
            init_kind(writers, kind, Relist::InitDone);
        }
    }

    fn send(&mut self, writers: &mut StoreWriters, changes: Vec<ObjectChange>) {
        for change in changes {
            let rv = self.next_resource_version();
            match change {
                ObjectChange::Apply(obj) => obj.send(writers, Op::Apply, rv),
                ObjectChange::Delete(obj) => obj.send(writers, Op::Delete, rv),
            }
        }
    }
}

/// The next state of one file, given its previous state and what was read now.
fn update_file(path: &Path, previous: FileState, read: Result<Vec<u8>, String>) -> FileState {
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(reason) => {
            let problem = DirError::Read {
                file: path.to_path_buf(),
                reason,
            };
            if !previous.problems.contains(&problem) {
                warn!("{problem}");
            }
            // Forget the bytes so the next successful read is parsed again.
            return FileState {
                bytes: None,
                objects: previous.objects,
                problems: vec![problem],
            };
        }
    };
    if previous.bytes.as_ref() == Some(&bytes) {
        return previous;
    }
    debug!(file = %path.display(), "parsing");
    let ParsedFile {
        objects: parsed,
        failed,
        mut problems,
        syntax_ok,
    } = parse::parse_file(path, &bytes);
    let mut objects = BTreeMap::new();
    for obj in parsed {
        let id = obj.id();
        if objects.insert(id.clone(), obj).is_some() {
            problems.push(DirError::Duplicate {
                kind: id.0,
                key: id.1,
                first: path.to_path_buf(),
                second: path.to_path_buf(),
            });
        }
    }
    for problem in &problems {
        warn!("{problem}");
    }
    if !syntax_ok {
        return FileState {
            bytes: Some(bytes),
            objects: previous.objects,
            problems,
        };
    }
    for id in &failed {
        if let Some(old) = previous.objects.get(id) {
            objects.insert(id.clone(), old.clone());
        }
    }
    if !problems.is_empty() {
        // A document without an identity may have been any of the previous objects.
        for (id, old) in previous.objects {
            objects.entry(id).or_insert(old);
        }
    }
    FileState {
        bytes: Some(bytes),
        objects,
        problems,
    }
}

/// How an object is sent to its store.
#[derive(Clone, Copy, Debug)]
enum Op {
    InitApply,
    Apply,
    Delete,
}

fn send_object<K: ClusterObject>(
    writers: &mut StoreWriters,
    obj: &K,
    op: Op,
    resource_version: String,
) {
    let mut obj = obj.clone();
    // A fresh resourceVersion per change, as the API server would stamp, for consumers that
    // compare versions.
    obj.meta_mut().resource_version = Some(resource_version);
    let event = match op {
        Op::InitApply => watcher::Event::InitApply(obj),
        Op::Apply => watcher::Event::Apply(obj),
        Op::Delete => watcher::Event::Delete(obj),
    };
    K::writer(writers).apply(&event);
}

/// The relist markers around a kind's initial objects.
#[derive(Clone, Copy, Debug)]
enum Relist {
    Init,
    InitDone,
}

fn init_kind(writers: &mut StoreWriters, kind: Kind, marker: Relist) {
    fn event<K>(marker: Relist) -> watcher::Event<K> {
        match marker {
            Relist::Init => watcher::Event::Init,
            Relist::InitDone => watcher::Event::InitDone,
        }
    }
    match kind {
        Kind::Node => writers.nodes.apply(&event(marker)),
        Kind::Service => writers.services.apply(&event(marker)),
        Kind::EndpointSlice => writers.endpoint_slices.apply(&event(marker)),
        Kind::Pod => writers.pods.apply(&event(marker)),
        Kind::Namespace => writers.namespaces.apply(&event(marker)),
        Kind::NetworkPolicy => writers.network_policies.apply(&event(marker)),
    }
}

#[cfg(test)]
mod tests;
