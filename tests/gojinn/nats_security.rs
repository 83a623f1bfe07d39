//! NATS with credentials and TLS (`state.auth`, `state.tls`): a real nats-server with an
//! `authorization` block (user and password, token, NKey) or a `tls` block (a CA, a server and a
//! client certificate generated here with rcgen). A node with the right settings serves a
//! function that uses KV; wrong credentials and an untrusted certificate fail its start at once,
//! naming the server and what was refused. A plaintext URL to another machine is refused before
//! any connection, by every command that connects.

use crate::support::host::{ok, run};
use crate::support::nats::NatsServer;
use crate::support::{Node, SpecDir, specs};
use gojinn::config::{BackendKind, NodeConfig};
use gojinn::server::Server;
use gojinn::spec::Span;
use gojinn::state::{NatsAuth, NatsTls};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

const PASSWORD: &str = "planted-nats-password-5e1b";
const TOKEN: &str = "planted-nats-token-a90c";
/// The state timeout of these nodes: a refused start must come well within it.
const TIMEOUT: Duration = Duration::from_secs(3);

/// A spec dir with `acme/state` (the state guest, allowed every KV key), a data dir, and the
/// configuration of a node on `nats` with `configure` applied.
fn kv_config(
    nats: &NatsServer,
    configure: impl FnOnce(&mut NodeConfig),
) -> (SpecDir, tempfile::TempDir, NodeConfig) {
    let dir = SpecDir::new();
    dir.module("guest-state");
    let grants = r#"grants: { kv: { read: ["*"], write: ["*"] } }"#;
    dir.write("specs.yaml", &specs("acme", "", &[("state", "guest-state", grants)]));
    let data = tempfile::tempdir().expect("data dir");
    let mut config = Node::config(dir.path(), data.path());
    config.state.backend = BackendKind::Nats;
    config.state.nats_url = nats.url();
    config.state.timeout = Span(TIMEOUT);
    configure(&mut config);
    (dir, data, config)
}

/// Starts a node with `configure` and checks that its function writes and reads KV on `nats`.
async fn serves_kv(nats: &NatsServer, configure: impl FnOnce(&mut NodeConfig)) {
    let (_dir, data, config) = kv_config(nats, configure);
    let node = Node::start_config(config, data).await;
    let ops = json!([{"op": "kv_set", "key": "k", "value": "v"}, {"op": "kv_get", "key": "k"}]);
    let results = run(&node, "/acme/state", ops).await;
    assert_eq!(ok(&results[1]), "v", "{results:?}");
}

/// The error a node with `configure` fails to start with; fails the test if it starts, or if
/// it takes longer than its state timeout to fail.
async fn start_error(nats: &NatsServer, configure: impl FnOnce(&mut NodeConfig)) -> String {
    let (_dir, _data, config) = kv_config(nats, configure);
    match tokio::time::timeout(TIMEOUT, Server::start(config)).await {
        Ok(Ok(_)) => panic!("the node started"),
        Ok(Err(error)) => error.to_string(),
        Err(_) => panic!("the start neither failed nor succeeded within the state timeout"),
    }
}

/// `text` written to `name` in `dir`.
fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn password_auth(path: PathBuf) -> Option<NatsAuth> {
    Some(NatsAuth { user: Some("gojinn".into()), password_file: Some(path), ..NatsAuth::default() })
}

#[tokio::test]
async fn a_node_with_the_right_password_token_or_nkey_serves_a_function_that_uses_kv() {
    let secrets = tempfile::tempdir().unwrap();
    let nats =
        NatsServer::start_with(&format!("authorization {{ user: gojinn, password: {PASSWORD:?} }}")).await;
    let password = file(secrets.path(), "password", &format!("{PASSWORD}\n"));
    serves_kv(&nats, |config| config.state.auth = password_auth(password)).await;

    let nats = NatsServer::start_with(&format!("authorization {{ token: {TOKEN:?} }}")).await;
    let token = file(secrets.path(), "token", TOKEN);
    serves_kv(&nats, |config| {
        config.state.auth = Some(NatsAuth { token_file: Some(token), ..NatsAuth::default() })
    })
    .await;

    let user = nkeys::KeyPair::new_user();
    let nats =
        NatsServer::start_with(&format!("authorization {{ users: [{{ nkey: {} }}] }}", user.public_key()))
            .await;
    let seed = file(secrets.path(), "nkey.seed", &user.seed().unwrap());
    serves_kv(&nats, |config| {
        config.state.auth = Some(NatsAuth { nkey_seed_file: Some(seed), ..NatsAuth::default() })
    })
    .await;
}

#[tokio::test]
async fn wrong_or_missing_credentials_fail_the_start_at_once_naming_the_server_and_what_was_refused() {
    let secrets = tempfile::tempdir().unwrap();
    let nats =
        NatsServer::start_with(&format!("authorization {{ user: gojinn, password: {PASSWORD:?} }}")).await;
    let wrong = file(secrets.path(), "password", "not-the-password");
    let error = start_error(&nats, |config| config.state.auth = password_auth(wrong)).await;
    let expected = format!(
        "NATS at {} refused user \"gojinn\" with the password of state.auth.passwordFile: authorization violation",
        nats.url()
    );
    assert!(error.contains(&expected), "{error}");
    assert!(!error.contains("not-the-password"), "the error shows the password: {error}");

    let error = start_error(&nats, |_| {}).await;
    assert!(
        error.contains(&format!("NATS at {} refused no credentials (state.auth is not set)", nats.url())),
        "{error}"
    );

    let missing = secrets.path().join("absent");
    let error = start_error(&nats, |config| config.state.auth = password_auth(missing)).await;
    assert!(
        error.contains("state.auth.passwordFile: ") && error.contains("absent does not exist"),
        "validation names the setting of a missing file: {error}"
    );
}

/// A CA, and the server's and a client's certificates it signed, as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Pki {
    fn generate(dir: &Path) -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let leaf = |name: &str, subject: &str| {
            let key = KeyPair::generate().unwrap();
            let cert =
                CertificateParams::new(vec![subject.to_owned()]).unwrap().signed_by(&key, &*ca).unwrap();
            (
                file(dir, &format!("{name}.pem"), &cert.pem()),
                file(dir, &format!("{name}.key"), &key.serialize_pem()),
            )
        };
        let (server_cert, server_key) = leaf("server", "127.0.0.1");
        let (client_cert, client_key) = leaf("client", "gojinn-client");
        Self { ca: file(dir, "ca.pem", &ca.pem()), server_cert, server_key, client_cert, client_key }
    }

    /// A nats-server `tls` block that also verifies clients' certificates.
    fn server_block(&self) -> String {
        format!(
            "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify: true }}",
            self.server_cert, self.server_key, self.ca
        )
    }

    fn client(&self, ca: bool) -> Option<NatsTls> {
        Some(NatsTls {
            ca_file: ca.then(|| self.ca.clone()),
            cert_file: Some(self.client_cert.clone()),
            key_file: Some(self.client_key.clone()),
        })
    }
}

#[tokio::test]
async fn tls_with_the_ca_and_a_client_certificate_serves_and_without_the_ca_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let nats = NatsServer::start_with(&pki.server_block()).await;
    serves_kv(&nats, |config| config.state.tls = pki.client(true)).await;
    let tls_url = nats.url().replace("nats://", "tls://");
    serves_kv(&nats, |config| {
        config.state.nats_url = tls_url.clone();
        config.state.tls = pki.client(true);
    })
    .await;

    let error = start_error(&nats, |config| config.state.tls = pki.client(false)).await;
    let expected = format!(
        "the TLS handshake with NATS at {} failed: invalid peer certificate: UnknownIssuer",
        nats.url()
    );
    assert!(error.contains(&expected), "{error}");
    assert!(error.contains("state.tls.caFile names the CA that signed it"), "{error}");

    let error = start_error(&nats, |_| {}).await;
    assert!(error.contains(&format!("NATS at {}", nats.url())), "a plaintext client is refused too: {error}");
}

#[test]
fn every_command_refuses_a_plaintext_url_to_another_machine_before_connecting() {
    let dir = SpecDir::new();
    dir.module("hello");
    dir.write("specs.yaml", &specs("acme", "", &[("hello", "hello", "")]));
    let data = tempfile::tempdir().unwrap();
    // 192.0.2.0/24 is TEST-NET-1: nothing answers there, so only a refusal ends the command.
    let url = "nats://192.0.2.1:4222";
    let run = |args: &[&str]| {
        let output =
            std::process::Command::new(env!("CARGO_BIN_EXE_gojinn")).args(args).output().expect("run gojinn");
        assert!(!output.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let key = file(data.path(), "audit.key", &"7".repeat(64));
    let (specs, key) = (dir.path().to_str().unwrap(), key.to_str().unwrap());
    let data = data.path().to_str().unwrap();
    for command in [
        vec!["serve", "--specs", specs, "--data-dir", data, "--listen", "127.0.0.1:0", "--nats", url],
        vec!["plan", specs, "--data-dir", data, "--nats", url],
        vec!["apply", specs, "--data-dir", data, "--nats", url],
        vec!["audit", "verify", "--tenant", "acme", "--key-file", key, "--nats", url],
    ] {
        let said = run(&command);
        assert!(
            said.contains("state.natsUrl: nats://192.0.2.1:4222 is not on this machine and the connection would be plaintext"),
            "{command:?}: {said}"
        );
    }
}
