//! The node configuration is checked before a node does anything: each bad setting is reported
//! with what is wrong, a port in use is reported before a token or key is written or a module
//! compiled, and nothing is left behind (no data dir, no token, no key).

use crate::support::{Node, SpecDir, specs};
use gojinn::config::NodeConfig;
use gojinn::server::Server;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A spec directory with a function (which a start that got that far would compile) and, in a
/// fresh temp dir, a data dir path that does not exist yet.
struct Setup {
    specs: SpecDir,
    root: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let specs = SpecDir::new();
        specs
            .module("hello")
            .write("specs.yaml", &crate::support::specs("demo", "", &[("hello", "hello", "")]));
        Self { specs, root: tempfile::tempdir().unwrap() }
    }

    fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn config(&self) -> NodeConfig {
        Node::config(self.specs.path(), &self.data_dir())
    }

    /// Starts a node with `config` and returns its error, checking that it wrote nothing: no
    /// data dir, and nothing new in the temp dir (where the data dir, token and key would go).
    async fn refused(&self, config: NodeConfig) -> String {
        let data_dir = config.data_dir.clone();
        let existed = data_dir.exists();
        let before = walk(self.root.path());
        let error = match Server::start(config).await {
            Ok(_) => panic!("the node started"),
            Err(error) => error.to_string(),
        };
        assert!(existed || !data_dir.exists(), "{error}: the data dir was created");
        assert_eq!(walk(self.root.path()), before, "{error}: files were written");
        error
    }
}

/// Every path under `dir`, sorted.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            paths.extend(walk(&path));
        }
        paths.push(path);
    }
    paths.sort();
    paths
}

/// A change that makes a valid configuration bad.
type Change = Box<dyn Fn(&mut NodeConfig)>;

#[tokio::test]
async fn each_bad_setting_is_reported_and_nothing_is_written() {
    let setup = Setup::new();
    let root = setup.root.path().to_path_buf();
    let file = root.join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let short_key = root.join("short.key");
    std::fs::write(&short_key, "abcd").unwrap();
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "maxInstances 0",
            Box::new(|c| c.runtime.max_instances = 0),
            "runtime.maxInstances: must be 1 to 20000, not 0",
        ),
        (
            "a per-client cap over the total",
            Box::new(|c| c.http.max_connections_per_client = c.http.max_connections + 1),
            "http.maxConnectionsPerClient: must be 1 to 4096, not 4097",
        ),
        (
            "a key file with a typo",
            Box::new(|c| c.audit.key_file = Some(c.data_dir.with_file_name("audit.kye"))),
            "audit.kye does not exist (a configured file is never generated",
        ),
        (
            "a token file with a typo",
            Box::new(|c| c.admin.token_file = Some(c.data_dir.with_file_name("admin.tokn"))),
            "admin.tokenFile: ",
        ),
        (
            "a key too short",
            Box::new(move |c| c.audit.key_file = Some(short_key.clone())),
            "must hold at least 32 bytes as 64 or more hex digits",
        ),
        (
            "a missing spec directory",
            Box::new(|c| c.specs = c.data_dir.with_file_name("nope")),
            "specs: the spec directory",
        ),
        ("a data dir under a file", Box::new(move |c| c.data_dir = file.join("data")), "a-file is a file"),
        (
            "a data dir nobody can write",
            Box::new(|c| c.data_dir = "/sys/gojinn-data".into()),
            "dataDir: /sys is not writable",
        ),
    ];
    for (case, change, says) in cases {
        let mut config = setup.config();
        change(&mut config);
        let error = setup.refused(config).await;
        assert!(error.contains(says), "{case}: {error}");
    }
}

#[tokio::test]
async fn a_data_dir_that_is_a_file_is_reported_and_left_as_it_was() {
    let setup = Setup::new();
    std::fs::write(setup.data_dir(), "mine").unwrap();
    let error = setup.refused(setup.config()).await;
    assert!(error.contains("dataDir: ") && error.contains("data is a file, not a directory"), "{error}");
    assert_eq!(std::fs::read_to_string(setup.data_dir()).unwrap(), "mine");
}

#[tokio::test]
async fn a_port_in_use_is_reported_before_anything_is_written_or_compiled() {
    let setup = Setup::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let error = setup.refused(NodeConfig { listen: addr, ..setup.config() }).await;
    assert!(error.contains(&format!("cannot listen on {addr}")) && error.contains("in use"), "{error}");
}

#[test]
fn serve_names_the_listen_forms_it_takes() {
    let setup = Setup::new();
    for (listen, says) in [
        ("localhost:99999", "port 99999 of \"localhost:99999\" is out of range: a port is 0 to 65535"),
        (
            "example.com:8080",
            "use IP:PORT (127.0.0.1:8080, [::1]:8080, 0.0.0.0:8080), :PORT for every IPv4 interface, or localhost:PORT",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_gojinn"))
            .args(["serve", "--listen", listen, "--specs"])
            .arg(setup.specs.path())
            .arg("--data-dir")
            .arg(setup.data_dir())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(says), "{listen}: {stderr}");
        assert!(!setup.data_dir().exists());
    }
}

#[tokio::test]
async fn a_node_listening_on_a_bare_port_serves_on_every_interface() {
    let dir = SpecDir::new();
    dir.module("hello").write("specs.yaml", &specs("demo", "", &[("hello", "hello", "")]));
    let data = tempfile::tempdir().unwrap();
    let listen = gojinn::config::parse_listen(":0").unwrap();
    let node = Node::start_config(NodeConfig { listen, ..Node::config(dir.path(), data.path()) }, data).await;
    assert!(node.server.addr().ip().is_unspecified(), "{}", node.server.addr());
    let loopback = format!("http://127.0.0.1:{}/demo/hello", node.server.addr().port());
    assert_eq!(node.client.get(loopback).send().await.unwrap().status(), 200);
}
