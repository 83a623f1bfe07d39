//! Spec sources: a directory, or a git repository (local path or `file://` URL) built with the
//! `git` CLI, read at a branch, tag, commit or the remote HEAD; following new commits, reverts
//! and force-pushes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use gojinn::reconcile::source::{Checkout, Source, SourceError};
use tempfile::TempDir;

/// A git repository with a `main` branch, driven with the `git` CLI.
struct Repo {
    dir: TempDir,
}

impl Repo {
    fn new() -> Self {
        let repo = Repo { dir: TempDir::new().expect("temp dir") };
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        repo
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .current_dir(self.path())
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"])
            .args(["-c", "tag.gpgsign=false", "-c", "core.autocrlf=false"])
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("run git");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn write(&self, file: &str, content: &str) {
        let path = self.path().join(file);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, content).expect("write");
    }

    /// Commits everything and returns the new commit id.
    fn commit(&self, message: &str) -> String {
        self.git(&["add", "--all"]);
        self.git(&["commit", "--quiet", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

fn checkout(url: &str, reference: Option<&str>, work: &Path) -> Result<Checkout, SourceError> {
    Source::Git { url: url.to_owned(), reference: reference.map(str::to_owned) }.checkout(work)
}

fn read(root: &Path, file: &str) -> Option<String> {
    fs::read_to_string(root.join(file)).ok()
}

/// The `tree-*` directories left next to `root`.
fn trees(root: &Path) -> Vec<PathBuf> {
    let parent = root.parent().expect("tree dir has a parent");
    let mut dirs: Vec<PathBuf> = fs::read_dir(parent)
        .expect("read git dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("tree-")))
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn branch_follows_new_commits_reverts_and_force_pushes() {
    let repo = Repo::new();
    let work = TempDir::new().expect("work dir");
    repo.write("specs/a.yaml", "v1");
    let c1 = repo.commit("one");

    // A plain local path with a branch.
    let path = repo.path().to_string_lossy().into_owned();
    let first = checkout(&path, Some("main"), work.path()).expect("checkout c1");
    assert_eq!(first.commit.as_deref(), Some(c1.as_str()));
    assert_eq!(read(&first.root, "specs/a.yaml").as_deref(), Some("v1"));
    assert!(first.root.starts_with(work.path().join("git")));
    assert!(first.root.ends_with(format!("tree-{c1}")));

    // The same commit again: same tree, nothing rewritten.
    let again = checkout(&path, Some("main"), work.path()).expect("checkout c1 again");
    assert_eq!(again.root, first.root);

    repo.write("specs/a.yaml", "v2");
    repo.write("specs/b.yaml", "new");
    let c2 = repo.commit("two");
    let second = checkout(&path, Some("main"), work.path()).expect("checkout c2");
    assert_eq!(second.commit.as_deref(), Some(c2.as_str()));
    assert_eq!(read(&second.root, "specs/a.yaml").as_deref(), Some("v2"));
    assert_eq!(read(&second.root, "specs/b.yaml").as_deref(), Some("new"));
    assert_eq!(trees(&second.root), vec![second.root.clone()], "older trees are removed");

    repo.git(&["revert", "--no-edit", "HEAD"]);
    let c3 = repo.git(&["rev-parse", "HEAD"]);
    let third = checkout(&path, Some("main"), work.path()).expect("checkout revert");
    assert_eq!(third.commit.as_deref(), Some(c3.as_str()));
    assert_eq!(read(&third.root, "specs/a.yaml").as_deref(), Some("v1"));
    assert_eq!(read(&third.root, "specs/b.yaml"), None);

    // Rewritten history: the branch moves back and on to an unrelated commit.
    repo.git(&["reset", "--quiet", "--hard", &c1]);
    repo.write("specs/c.yaml", "forced");
    let c4 = repo.commit("forced");
    let fourth = checkout(&path, Some("main"), work.path()).expect("checkout force-push");
    assert_eq!(fourth.commit.as_deref(), Some(c4.as_str()));
    assert_eq!(read(&fourth.root, "specs/c.yaml").as_deref(), Some("forced"));
    assert_eq!(read(&fourth.root, "specs/b.yaml"), None);
    assert_eq!(trees(&fourth.root), vec![fourth.root.clone()]);
}

#[test]
fn file_url_follows_the_remote_head_and_other_branches() {
    let repo = Repo::new();
    let work = TempDir::new().expect("work dir");
    repo.write("a.yaml", "main");
    let main = repo.commit("main");
    repo.git(&["checkout", "--quiet", "-b", "staging"]);
    repo.write("a.yaml", "staging");
    let staging = repo.commit("staging");
    repo.git(&["checkout", "--quiet", "main"]);

    let source = Source::parse(&repo.url(), None);
    assert!(matches!(&source, Source::Git { reference: None, .. }), "{source:?}");
    let head = source.checkout(work.path()).expect("checkout HEAD");
    assert_eq!(head.commit.as_deref(), Some(main.as_str()));
    assert_eq!(read(&head.root, "a.yaml").as_deref(), Some("main"));

    let branch = Source::parse(&repo.url(), Some("staging")).checkout(work.path()).expect("checkout staging");
    assert_eq!(branch.commit.as_deref(), Some(staging.as_str()));
    assert_eq!(read(&branch.root, "a.yaml").as_deref(), Some("staging"));

    // The remote's HEAD moves to another branch.
    repo.git(&["checkout", "--quiet", "staging"]);
    let moved = source.checkout(work.path()).expect("checkout moved HEAD");
    assert_eq!(moved.commit.as_deref(), Some(staging.as_str()));
}

#[test]
fn tags_and_commit_ids_are_references() {
    let repo = Repo::new();
    let work = TempDir::new().expect("work dir");
    repo.write("a.yaml", "one");
    let c1 = repo.commit("one");
    repo.git(&["tag", "v1"]);
    repo.write("a.yaml", "two");
    let c2 = repo.commit("two");
    repo.git(&["tag", "-a", "-m", "release two", "v2"]);
    repo.write("a.yaml", "three");
    repo.commit("three");
    let url = repo.url();

    for (reference, commit, content) in [
        ("v1", &c1, "one"),
        ("v2", &c2, "two"),
        ("refs/tags/v2", &c2, "two"),
        (c1.as_str(), &c1, "one"),
        (&c2[..10], &c2, "two"),
    ] {
        let out = checkout(&url, Some(reference), work.path()).unwrap_or_else(|e| panic!("{reference}: {e}"));
        assert_eq!(out.commit.as_deref(), Some(commit.as_str()), "{reference}");
        assert_eq!(read(&out.root, "a.yaml").as_deref(), Some(content), "{reference}");
    }
}

#[test]
fn unknown_references_and_missing_repositories_are_clear_errors() {
    let repo = Repo::new();
    let work = TempDir::new().expect("work dir");
    repo.write("a.yaml", "x");
    repo.commit("one");
    let url = repo.url();

    let err = checkout(&url, Some("nope"), work.path()).expect_err("unknown branch");
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&url) && text.contains("\"nope\" not found"), "{text}");

    let err = checkout(&url, Some("0123456789abcdef0123456789abcdef01234567"), work.path())
        .expect_err("unknown id");
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err:?}");

    let missing = work.path().join("no-such-repo");
    let err = checkout(&missing.to_string_lossy(), Some("main"), work.path()).expect_err("missing repo");
    assert!(matches!(err, SourceError::Fetch { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-repo"), "{err}");

    let empty = Repo::new();
    let err = checkout(&empty.url(), None, work.path()).expect_err("empty repo");
    assert!(matches!(err, SourceError::EmptyRemote { .. }), "{err:?}");
}

#[test]
fn credentials_never_show_in_errors() {
    let work = TempDir::new().expect("work dir");
    let url = "https://alice:hunter2-secret@127.0.0.1:1/specs.git";
    let err = checkout(url, Some("main"), work.path()).expect_err("nothing listens on port 1");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2") && !text.contains("alice"), "{text}");
    assert!(text.contains("https://127.0.0.1:1/specs.git"), "{text}");
}

#[test]
fn directories_are_read_as_they_are() {
    let dir = TempDir::new().expect("dir");
    let source = Source::parse(&dir.path().to_string_lossy(), None);
    assert_eq!(source, Source::Dir(dir.path().to_owned()));
    let out = source.checkout(Path::new("/nonexistent-work-dir")).expect("dir checkout");
    assert_eq!(out.root, dir.path());
    assert_eq!(out.commit, None);

    let missing = dir.path().join("missing");
    let err = Source::Dir(missing.clone()).checkout(dir.path()).expect_err("missing dir");
    assert!(err.to_string().contains("does not exist") && err.to_string().contains("missing"), "{err}");
}

#[test]
fn symlinks_inside_are_kept_escaping_ones_and_submodules_are_not() {
    let repo = Repo::new();
    let work = TempDir::new().expect("work dir");
    repo.write("specs/a.yaml", "a");
    repo.write("run.sh", "#!/bin/sh\n");
    fs::set_permissions(repo.path().join("run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::symlink("specs/a.yaml", repo.path().join("link.yaml")).expect("symlink");
    repo.commit("links");
    // A submodule entry (a gitlink), without the submodule repository.
    repo.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        "160000,0123456789abcdef0123456789abcdef01234567,vendor",
    ]);
    repo.git(&["commit", "--quiet", "-m", "submodule"]);
    let c = repo.git(&["rev-parse", "HEAD"]);

    let out = checkout(&repo.url(), None, work.path()).expect("checkout");
    assert_eq!(out.commit.as_deref(), Some(c.as_str()));
    assert_eq!(read(&out.root, "link.yaml").as_deref(), Some("a"));
    assert!(out.root.join("link.yaml").symlink_metadata().expect("link").file_type().is_symlink());
    assert!(!out.root.join("vendor").exists(), "submodules are skipped");
    let mode = fs::metadata(out.root.join("run.sh")).expect("run.sh").permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "executable bit kept");

    std::os::unix::fs::symlink("../../../../etc/passwd", repo.path().join("specs/evil.yaml"))
        .expect("symlink");
    let bad = repo.commit("escape");
    let err = checkout(&repo.url(), None, work.path()).expect_err("escaping symlink");
    assert!(matches!(err, SourceError::UnsafePath { .. }), "{err:?}");
    assert!(err.to_string().contains("specs/evil.yaml") && err.to_string().contains(&bad), "{err}");
    let parent = out.root.parent().expect("parent");
    assert!(!parent.join(format!("tree-{bad}")).exists(), "no partial tree is left");
    let leftovers: Vec<_> = fs::read_dir(parent)
        .expect("read")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn https_sources_are_fetched_over_tls() {
    // Nothing listens on port 1: the fetch fails connecting, which shows the HTTPS transport is
    // built in (without it, gix answers that the scheme is not compiled in).
    let work = TempDir::new().unwrap();
    let err =
        checkout("https://127.0.0.1:1/ops/specs.git", Some("main"), work.path()).unwrap_err().to_string();
    assert!(!err.contains("compiled in"), "{err}");
    assert!(err.contains("https://127.0.0.1:1/ops/specs.git"), "the error names the source: {err}");
}
