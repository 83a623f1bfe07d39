//! Where specs come from: a directory, or a git repository (local path or URL, branch, tag or
//! commit) read with gix. A git source is fetched into a bare repository under the work dir and
//! the tree of the resolved commit is written out as plain files (`git/<url hash>/tree-<commit>`),
//! so the spec loader reads plain files and the applied commit is known. Every pass follows what
//! the remote has now (force-pushes included); credentials in URLs never reach error messages.
//! Transports: `https://` (reqwest + rustls), `ssh://` and scp-like URLs (the `ssh` program),
//! `file://` and local paths (the installed `git`'s upload-pack), `git://`.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use gix::ObjectId;
use gix::objs::tree::EntryKind;
use gix::protocol::handshake::Ref;
use gix::remote::Direction;
use percent_encoding::percent_decode_str;
use sha2::{Digest, Sha256};

/// A spec source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A plain directory, read as it is.
    Dir(PathBuf),
    /// A git repository: a URL (`https://`, `ssh://`, `file://`, `git@host:path`) or a local path,
    /// and the branch, tag or commit to follow (`None`: the remote's default branch / HEAD).
    Git { url: String, reference: Option<String> },
}

/// A source read at one point in time.
#[derive(Clone, Debug)]
pub struct Checkout {
    /// The directory holding the specs (and `policies/`).
    pub root: PathBuf,
    /// The commit read (full lowercase hex), for git sources.
    pub commit: Option<String>,
}

/// Why a source could not be read. URLs are shown without their credentials.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("spec directory {}: {reason}", path.display())]
    Dir { path: PathBuf, reason: String },
    #[error("git source {url}: cannot {action} {}: {source}", path.display())]
    Io { url: String, action: &'static str, path: PathBuf, source: io::Error },
    #[error("git source {url}: cannot open or create the local repository {}: {message}", path.display())]
    Repository { url: String, path: PathBuf, message: String },
    #[error("git source {url}: fetch failed: {message}")]
    Fetch { url: String, message: String },
    #[error("git source {url}: the remote repository has no commits")]
    EmptyRemote { url: String },
    #[error("git source {url}: the remote does not advertise a HEAD; name a branch, tag or commit")]
    NoHead { url: String },
    #[error(
        "git source {url}: {reference:?} not found (no such branch or tag on the remote, nor a known commit)"
    )]
    RefNotFound { url: String, reference: String },
    #[error("git source {url}: {reference:?} points to a {kind}, not a commit")]
    NotACommit { url: String, reference: String, kind: String },
    #[error("git source {url}: commit {commit}: cannot read {what}: {message}")]
    Object { url: String, commit: String, what: String, message: String },
    #[error("git source {url}: commit {commit}: refusing {path:?}: {reason}")]
    UnsafePath { url: String, commit: String, path: String, reason: String },
}

impl Source {
    /// Interprets a command-line argument: URL-like (`scheme://`, `user@host:path`) or any path
    /// when `reference` is given is git; otherwise a directory.
    pub fn parse(arg: &str, reference: Option<&str>) -> Source {
        let reference = reference.map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned);
        if is_url_like(arg) || reference.is_some() {
            Source::Git { url: arg.to_owned(), reference }
        } else {
            Source::Dir(PathBuf::from(arg))
        }
    }

    /// Reads the source: for git, fetches into `work_dir` and writes out the tree of the
    /// resolved commit. Blocking (file and network I/O).
    pub fn checkout(&self, work_dir: &Path) -> Result<Checkout, SourceError> {
        match self {
            Source::Dir(path) => {
                let dir_error = |reason: String| SourceError::Dir { path: path.clone(), reason };
                match fs::metadata(path) {
                    Ok(meta) if meta.is_dir() => Ok(Checkout { root: path.clone(), commit: None }),
                    Ok(_) => Err(dir_error("is not a directory".into())),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Err(dir_error("does not exist".into())),
                    Err(e) => Err(dir_error(e.to_string())),
                }
            }
            Source::Git { url, reference } => Git::new(url, reference.as_deref()).checkout(work_dir),
        }
    }
}

/// The source as logs and messages show it: a directory's path, or a git URL without its
/// credentials and the reference followed.
impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Dir(path) => write!(f, "{}", path.display()),
            Source::Git { url, reference } => {
                write!(f, "{} {}", redact(url), reference.as_deref().unwrap_or("HEAD"))
            }
        }
    }
}

/// `scheme://…` or scp-like `user@host:path`.
fn is_url_like(arg: &str) -> bool {
    if let Some((scheme, _)) = arg.split_once("://") {
        let mut chars = scheme.chars();
        return chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    }
    match arg.split_once(':') {
        Some((head, path)) => match head.split_once('@') {
            Some((user, host)) => {
                !user.is_empty() && !host.is_empty() && !head.contains('/') && !path.is_empty()
            }
            None => false,
        },
        None => false,
    }
}

/// The `user[:password]` part of a `scheme://` URL, if any.
fn userinfo(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit_once('@').map(|(info, _)| info).filter(|info| !info.is_empty())
}

/// `url` without credentials, for messages.
fn redact(url: &str) -> String {
    match (url.split_once("://"), userinfo(url)) {
        (Some((scheme, rest)), Some(info)) => format!("{scheme}://{}", &rest[info.len() + 1..]),
        _ => url.to_owned(),
    }
}

/// Every source of `error`, joined with `: ` (repeated messages once).
fn chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut next = error.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// One git source being read.
struct Git<'a> {
    url: &'a str,
    reference: Option<&'a str>,
    /// `url` without credentials.
    shown: String,
}

const REFSPECS: [&str; 3] = ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*", "HEAD"];

impl<'a> Git<'a> {
    fn new(url: &'a str, reference: Option<&'a str>) -> Self {
        Git { url, reference, shown: redact(url) }
    }

    /// `message` with the URL's credentials removed, wherever a library put them.
    fn scrub(&self, message: impl std::fmt::Display) -> String {
        let mut text = message.to_string().replace(self.url, &self.shown);
        if let Some(info) = userinfo(self.url) {
            text = text.replace(&format!("{info}@"), "");
            let (user, password) = match info.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (info, None),
            };
            // A password always is a secret; a user alone often is a token.
            let secrets = match password {
                Some(p) => vec![p],
                None if user.len() >= 6 => vec![user],
                None => vec![],
            };
            for secret in secrets.into_iter().filter(|s| !s.is_empty()) {
                for form in [secret.to_owned(), percent_decode_str(secret).decode_utf8_lossy().into_owned()] {
                    text = text.replace(&form, "***");
                }
            }
        }
        text
    }

    fn gix_error(&self, error: &gix::Error) -> String {
        self.scrub(chain(error))
    }

    fn io(&self, action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SourceError + '_ {
        let path = path.to_owned();
        move |source| SourceError::Io { url: self.shown.clone(), action, path, source }
    }

    fn checkout(&self, work_dir: &Path) -> Result<Checkout, SourceError> {
        let hash = hex::encode(&Sha256::digest(self.url.as_bytes())[..8]);
        let base = work_dir.join("git").join(hash);
        fs::create_dir_all(&base).map_err(self.io("create", &base))?;
        let repo = self.open_or_init(&base.join("repo"))?;
        let remote_refs = self.fetch(&repo)?;
        let commit = self.resolve(&repo, &remote_refs)?;
        let hex = commit.to_string();
        let tree_dir = base.join(format!("tree-{hex}"));
        if !tree_dir.is_dir() {
            self.write_tree(&repo, commit, &tree_dir)?;
        }
        prune(&base, &tree_dir);
        Ok(Checkout { root: tree_dir, commit: Some(hex) })
    }

    /// Opens the bare cache repository, creating it (atomically, via a rename) when missing or
    /// unreadable.
    fn open_or_init(&self, dir: &Path) -> Result<gix::Repository, SourceError> {
        let repo_error = |e: &gix::Error| SourceError::Repository {
            url: self.shown.clone(),
            path: dir.to_owned(),
            message: self.gix_error(e),
        };
        if dir.exists() {
            match gix::open(dir) {
                Ok(repo) => return Ok(repo),
                Err(e) => {
                    tracing::warn!(source = %self.shown, path = %dir.display(), error = %self.gix_error(&e),
                        "the cached git repository is unreadable; recreating it");
                    fs::remove_dir_all(dir).map_err(self.io("remove", dir))?;
                }
            }
        }
        let tmp = temp_sibling(dir);
        let init = gix::init_bare(&tmp).map_err(|e| repo_error(&e));
        let renamed = init.and_then(|repo| {
            drop(repo);
            fs::rename(&tmp, dir).map_err(self.io("rename into place", dir))
        });
        if let Err(e) = renamed {
            let _ = fs::remove_dir_all(&tmp);
            // Lost a race against a concurrent checkout: its repository is as good as ours.
            if !dir.is_dir() {
                return Err(e);
            }
        }
        gix::open(dir).map_err(|e| repo_error(&e))
    }

    /// Fetches all branches and tags (forced, so rewritten history is followed) and returns the
    /// refs the remote advertises now.
    fn fetch(&self, repo: &gix::Repository) -> Result<Vec<Ref>, SourceError> {
        // HTTPS goes through reqwest with rustls and no built-in crypto provider: make ring
        // (which the rest of gojinn's TLS already uses) the process default, unless one is set.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let fetch_error =
            |e: gix::Error| SourceError::Fetch { url: self.shown.clone(), message: self.gix_error(&e) };
        let remote = repo
            .remote_at(self.url)
            .and_then(|r| {
                r.with_fetch_tags(gix::remote::fetch::Tags::None).with_refspecs(REFSPECS, Direction::Fetch)
            })
            .map_err(fetch_error)?;
        let prepare = remote
            .connect(Direction::Fetch)
            .and_then(|c| c.prepare_fetch(gix::progress::Discard, Default::default()))
            .map_err(fetch_error)?;
        let refs = prepare.ref_map().remote_refs.clone();
        if refs.iter().all(|r| r.unpack().1.is_none()) {
            return Err(SourceError::EmptyRemote { url: self.shown.clone() });
        }
        let interrupt = AtomicBool::new(false);
        prepare.receive(gix::progress::Discard, &interrupt).map_err(fetch_error)?;
        Ok(refs)
    }

    /// The commit `reference` names on the remote now: its HEAD, a branch, a tag, or a commit id.
    fn resolve(&self, repo: &gix::Repository, refs: &[Ref]) -> Result<ObjectId, SourceError> {
        let advertised = |name: &str| refs.iter().find(|r| r.unpack().0 == name);
        let Some(reference) = self.reference else {
            return match advertised("HEAD") {
                Some(r) => match r.unpack().1 {
                    Some(id) => self.peel_to_commit(repo, id.to_owned(), "HEAD"),
                    None => Err(SourceError::EmptyRemote { url: self.shown.clone() }),
                },
                None => Err(SourceError::NoHead { url: self.shown.clone() }),
            };
        };
        let candidates = if reference.starts_with("refs/") || reference == "HEAD" {
            vec![reference.to_owned()]
        } else {
            vec![format!("refs/heads/{reference}"), format!("refs/tags/{reference}")]
        };
        if let Some(id) = candidates.iter().find_map(|name| advertised(name).and_then(|r| r.unpack().1)) {
            return self.peel_to_commit(repo, id.to_owned(), reference);
        }
        let not_found =
            || SourceError::RefNotFound { url: self.shown.clone(), reference: reference.to_owned() };
        let is_hex = (4..=64).contains(&reference.len()) && reference.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_hex {
            return Err(not_found());
        }
        let id = match ObjectId::from_hex(reference.as_bytes()) {
            Ok(id) => Some(id).filter(|id| repo.has_object(id)),
            Err(_) => repo.rev_parse_single(reference).ok().map(|id| id.detach()),
        };
        self.peel_to_commit(repo, id.ok_or_else(not_found)?, reference)
    }

    /// Follows annotated tags to the commit they name.
    fn peel_to_commit(
        &self,
        repo: &gix::Repository,
        mut id: ObjectId,
        reference: &str,
    ) -> Result<ObjectId, SourceError> {
        for _ in 0..32 {
            let object = repo.find_object(id).map_err(|e| self.object_error(id, "the object", &e))?;
            match object.kind {
                gix::object::Kind::Commit => return Ok(id),
                gix::object::Kind::Tag => {
                    id = object
                        .into_tag()
                        .target_id()
                        .map_err(|e| self.object_error(id, "the tag", &e))?
                        .detach();
                }
                kind => {
                    return Err(SourceError::NotACommit {
                        url: self.shown.clone(),
                        reference: reference.to_owned(),
                        kind: kind.to_string(),
                    });
                }
            }
        }
        Err(SourceError::NotACommit {
            url: self.shown.clone(),
            reference: reference.to_owned(),
            kind: "chain of more than 32 tags".into(),
        })
    }

    fn object_error(&self, commit: ObjectId, what: &str, error: &gix::Error) -> SourceError {
        SourceError::Object {
            url: self.shown.clone(),
            commit: commit.to_string(),
            what: what.to_owned(),
            message: self.gix_error(error),
        }
    }

    /// Writes the tree of `commit` to a temporary directory and renames it to `tree_dir`, so a
    /// crash never leaves a partial tree under the final name.
    fn write_tree(
        &self,
        repo: &gix::Repository,
        commit: ObjectId,
        tree_dir: &Path,
    ) -> Result<(), SourceError> {
        let tmp = temp_sibling(tree_dir);
        let _ = fs::remove_dir_all(&tmp);
        let written = fs::create_dir(&tmp).map_err(self.io("create", &tmp)).and_then(|()| {
            let tree = repo
                .find_commit(commit)
                .and_then(|c| c.tree_id())
                .map_err(|e| self.object_error(commit, "the commit", &e))?
                .detach();
            let mut writer = TreeWriter { git: self, repo, commit, root: &tmp, links: Vec::new() };
            writer.write_dir(tree, "")?;
            writer.write_links()?;
            fs::rename(&tmp, tree_dir).map_err(self.io("rename into place", tree_dir))
        });
        if let Err(e) = written {
            let _ = fs::remove_dir_all(&tmp);
            // A concurrent checkout of the same commit may have won the rename.
            if !tree_dir.is_dir() {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// A unique, not yet existing path next to `path` (`<name>.tmp-<pid>-<n>`).
fn temp_sibling(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!("{name}.tmp-{}-{n}", std::process::id()))
}

/// Removes trees of other commits and leftovers of interrupted writes (best effort).
fn prune(base: &Path, keep: &Path) {
    let Ok(entries) = fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = path != keep && (name.starts_with("tree-") || name.contains(".tmp-"));
        if stale && let Err(e) = fs::remove_dir_all(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove an old spec tree");
        }
    }
}

struct TreeWriter<'g, 'a, 'r> {
    git: &'g Git<'a>,
    repo: &'r gix::Repository,
    commit: ObjectId,
    root: &'r Path,
    /// Symbolic links (path relative to root, target), created after all files and directories
    /// so no write ever goes through one.
    links: Vec<(String, Vec<u8>)>,
}

impl TreeWriter<'_, '_, '_> {
    fn unsafe_path(&self, path: &str, reason: impl Into<String>) -> SourceError {
        SourceError::UnsafePath {
            url: self.git.shown.clone(),
            commit: self.commit.to_string(),
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    fn write_dir(&mut self, tree: ObjectId, prefix: &str) -> Result<(), SourceError> {
        let tree = self.repo.find_tree(tree).map_err(|e| self.git.object_error(self.commit, "a tree", &e))?;
        let decoded = tree.decode().map_err(|e| self.git.object_error(self.commit, "a tree", &e))?;
        for entry in &decoded.entries {
            let name = String::from_utf8_lossy(entry.filename);
            let rel = if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
            let bad_name = name.is_empty()
                || matches!(name.as_ref(), "." | ".." | ".git")
                || name.contains(['/', '\0'])
                || std::str::from_utf8(entry.filename).is_err();
            if bad_name {
                return Err(self.unsafe_path(&rel, "not a valid file name"));
            }
            let path = self.root.join(&rel);
            match entry.mode.kind() {
                EntryKind::Tree => {
                    fs::create_dir(&path).map_err(self.git.io("create", &path))?;
                    self.write_dir(entry.oid.to_owned(), &rel)?;
                }
                kind @ (EntryKind::Blob | EntryKind::BlobExecutable) => {
                    let data = self.blob(entry.oid.to_owned(), &rel)?;
                    fs::write(&path, data).map_err(self.git.io("write", &path))?;
                    #[cfg(unix)]
                    if kind == EntryKind::BlobExecutable {
                        use std::os::unix::fs::PermissionsExt;
                        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                            .map_err(self.git.io("set permissions of", &path))?;
                    }
                    #[cfg(not(unix))]
                    let _ = kind;
                }
                EntryKind::Link => {
                    let target = self.blob(entry.oid.to_owned(), &rel)?;
                    self.links.push((rel, target));
                }
                EntryKind::Commit => {
                    tracing::warn!(source = %self.git.shown, commit = %self.commit, path = %rel,
                        "skipping a git submodule: submodules are not fetched, keep specs in the repository itself");
                }
            }
        }
        Ok(())
    }

    fn blob(&self, id: ObjectId, rel: &str) -> Result<Vec<u8>, SourceError> {
        self.repo
            .find_blob(id)
            .map(|mut b| b.take_data())
            .map_err(|e| self.git.object_error(self.commit, &format!("{rel:?}"), &e))
    }

    /// Creates the collected symbolic links, refusing any that leaves the tree.
    fn write_links(&mut self) -> Result<(), SourceError> {
        let links = std::mem::take(&mut self.links);
        for (rel, target) in &links {
            let target = std::str::from_utf8(target)
                .map_err(|_| self.unsafe_path(rel, "symlink target is not UTF-8"))?;
            if !stays_inside(rel, target) {
                return Err(
                    self.unsafe_path(rel, format!("symlink to {target:?} points outside the repository"))
                );
            }
            let path = self.root.join(rel);
            #[cfg(unix)]
            std::os::unix::fs::symlink(target, &path).map_err(self.git.io("create symlink", &path))?;
            #[cfg(not(unix))]
            tracing::warn!(source = %self.git.shown, path = %rel, "skipping a symlink: not supported on this platform");
        }
        // Lexical checks miss links that go through other links: resolve each for real.
        let root = fs::canonicalize(self.root).map_err(self.git.io("resolve", self.root))?;
        for (rel, target) in &links {
            let path = self.root.join(rel);
            match fs::canonicalize(&path) {
                Ok(resolved) if resolved.starts_with(&root) => {}
                Ok(_) => {
                    let target = String::from_utf8_lossy(target);
                    return Err(self
                        .unsafe_path(rel, format!("symlink to {target:?} resolves outside the repository")));
                }
                Err(_) => {
                    // Dangling or looping: useless to the loader, and it must not start to point
                    // somewhere once that somewhere exists.
                    tracing::warn!(source = %self.git.shown, commit = %self.commit, path = %rel,
                        "skipping a symlink whose target does not exist in the repository");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        Ok(())
    }
}

/// Whether the relative symlink `target` of the link at `link` (relative to the tree root) stays
/// inside the tree, resolving `.` and `..` lexically.
fn stays_inside(link: &str, target: &str) -> bool {
    let target = Path::new(target);
    if target.is_absolute() || target.as_os_str().is_empty() {
        return false;
    }
    let mut depth: usize = Path::new(link).parent().map_or(0, |p| p.components().count());
    for component in target.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::Normal(_) => depth += 1,
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(url: &str, reference: Option<&str>) -> Source {
        Source::Git { url: url.into(), reference: reference.map(Into::into) }
    }

    #[test]
    fn urls_are_git() {
        for url in [
            "https://github.com/acme/specs.git",
            "ssh://git@host:22/acme/specs",
            "file:///srv/specs",
            "git+ssh://host/x",
            "git@github.com:acme/specs.git",
        ] {
            assert_eq!(Source::parse(url, None), git(url, None), "{url}");
            assert_eq!(Source::parse(url, Some("main")), git(url, Some("main")), "{url}");
        }
    }

    #[test]
    fn paths_are_dirs_unless_a_reference_is_given() {
        for path in ["specs", "./specs", "/srv/specs", "C:\\specs", "dir/with:colon", "a@b/c:d", "x:y"] {
            assert_eq!(Source::parse(path, None), Source::Dir(PathBuf::from(path)), "{path}");
            assert_eq!(Source::parse(path, Some("v1.2")), git(path, Some("v1.2")), "{path}");
        }
        assert_eq!(Source::parse("/srv/specs", Some("  ")), Source::Dir(PathBuf::from("/srv/specs")));
        assert_eq!(Source::parse("1ab://x", None), Source::Dir(PathBuf::from("1ab://x")));
    }

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(redact("https://user:s3cr%40t@host/x.git"), "https://host/x.git");
        assert_eq!(redact("https://ghp_token@host/x"), "https://host/x");
        assert_eq!(redact("https://host/a@b"), "https://host/a@b");
        assert_eq!(redact("git@host:x"), "git@host:x");
        let g = Git::new("https://bob:s3cr%40t@host/x.git", None);
        assert_eq!(g.scrub("fail https://bob:s3cr%40t@host/x.git"), "fail https://host/x.git");
        assert_eq!(g.scrub("auth bob:s3cr@t rejected (s3cr%40t)"), "auth bob:*** rejected (***)");
        let g = Git::new("https://ghp_abcdef@host/x", None);
        assert_eq!(g.scrub("token ghp_abcdef denied"), "token *** denied");
    }

    #[test]
    fn symlink_targets_are_checked_lexically() {
        assert!(stays_inside("a", "b"));
        assert!(stays_inside("d/a", "../b"));
        assert!(stays_inside("d/e/a", "./../../b/c"));
        assert!(!stays_inside("a", "../b"));
        assert!(!stays_inside("d/a", "../../b"));
        assert!(!stays_inside("a", "/etc/passwd"));
        assert!(!stays_inside("a", ""));
    }
}
