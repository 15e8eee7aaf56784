//! The command line a newcomer and an operator use first: `--check`, `CONFIG_PATH`,
//! `healthcheck` and `RUST_LOG`, on the real binary.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_service-sessions");
const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/config.yml");

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The binary with no configuration-related variables of the test's own environment.
fn bin() -> Command {
    let mut c = Command::new(BIN);
    for var in ["CONFIG_PATH", "RUST_LOG", "HTTP_PORT", "LOG_LEVEL", "FILE_ENABLED", "FILE_PATH", "MONGO_ENABLED"] {
        c.env_remove(var);
    }
    c.stdin(Stdio::null());
    c
}

fn run(c: &mut Command) -> Output {
    c.output().unwrap()
}

/// A listener nobody should connect to; `connected()` tells whether anyone did.
struct Watched(std::net::TcpListener);

impl Watched {
    fn new() -> Self {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Self(l)
    }
    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }
    fn connected(&self) -> bool {
        self.0.accept().is_ok()
    }
}

/// `--check` builds every component of a valid configuration but opens none: the HTTP port
/// (held by the test) is not bound, the file store's folder is not created, MongoDB is not
/// dialled; exit 0.
#[test]
fn check_accepts_a_valid_configuration_without_opening_anything() {
    let port_in_use = Watched::new();
    let mongo = Watched::new();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    for backend in [
        format!(
            "- descriptor: \"service-sessions:persistence:file:default:1.0\"\n  path: \"{}\"\n",
            store.display()
        ),
        format!(
            "- descriptor: \"service-sessions:persistence:mongodb:default:1.0\"\n  connection: {{ uri: \"mongodb://127.0.0.1:{}/app\" }}\n",
            mongo.port()
        ),
    ] {
        let cfg = config_file(&format!(
            "{backend}- descriptor: \"service-sessions:controller:default:default:1.0\"\n\
             - descriptor: \"pip-services:endpoint:http:default:1.0\"\n  connection: {{ host: 127.0.0.1, port: {} }}\n\
             - descriptor: \"service-sessions:service:commandable-http:default:1.0\"\n\
             - descriptor: \"pip-services:heartbeat-service:http:default:1.0\"\n",
            port_in_use.port()
        ));
        let out = run(bin().args(["--check", "-c", cfg.path().to_str().unwrap()]));
        assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
        assert!(text(&out.stdout).contains("is valid (5 components)"), "{}", text(&out.stdout));
    }
    assert!(!store.exists(), "--check created the store folder");
    assert!(!port_in_use.connected() && !mongo.connected(), "--check connected somewhere");
    // The shipped configuration, under each of its backend switches, run in an empty folder: the
    // file backend's default `./data/sessions.json` is not created either.
    let cwd = tempfile::tempdir().unwrap();
    for switch in
        ["MEMORY_ENABLED=true", "FILE_ENABLED=true", "MONGO_ENABLED=true", "REDIS_ENABLED=true;REST_ENABLED=true"]
    {
        let out = run(bin().args(["--check", "-c", SHIPPED, "-p", switch]).current_dir(cwd.path()));
        assert_eq!(out.status.code(), Some(0), "{switch}: {}", text(&out.stderr));
    }
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0, "--check wrote into its folder");
}

/// Every problem at once: a malformed descriptor, an unknown one, a bad setting and an
/// unsatisfied reference are all listed, and the exit code is 1.
#[test]
fn check_lists_every_problem_and_exits_one() {
    let cfg = config_file(
        "- descriptor: \"service-sessions:persistence\"\n\
         - descriptor: \"service-sessions:persistence:nosuch:default:1.0\"\n\
         - descriptor: \"service-sessions:controller:default:default:1.0\"\n  options: { expire_timeout: \"soon\" }\n\
         - descriptor: \"pip-services:endpoint:http:default:1.0\"\n  connection: { port: \"x\" }\n",
    );
    let out = run(bin().args(["-c", cfg.path().to_str().unwrap(), "--check"]));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("is not valid: Configuration has 4 problem(s)"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("  - ")).collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(lines[0].contains("Component #1"), "{err}");
    assert!(lines[1].contains("nosuch"), "{err}");
    assert!(lines[2].contains("\"soon\""), "{err}");
    assert!(lines[3].contains("Component #4"), "{err}");
    // A template error and an unreadable file are reported too.
    let cfg = config_file("{{#if A}}\n- descriptor: \"service-sessions:controller:default:default:1.0\"\n");
    let out = run(bin().args(["--check", "-c", cfg.path().to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let out = run(bin().args(["--check", "-c", "/nonexistent/config.yml"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read the configuration file /nonexistent/config.yml"));
}

/// Without `-c` the configuration comes from `CONFIG_PATH`, as in Pip; `-c` wins over it.
#[test]
fn config_path_comes_from_the_environment_unless_given() {
    let good = config_file("- descriptor: \"service-sessions:persistence:memory:default:1.0\"\n");
    let out = run(bin().arg("--check").env("CONFIG_PATH", good.path()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(good.path().to_str().unwrap()), "{}", text(&out.stdout));
    let out = run(bin().args(["--check", "-c", "/nonexistent/config.yml"]).env("CONFIG_PATH", good.path()));
    assert_eq!(out.status.code(), Some(1));
    let out = run(bin().arg("--help"));
    assert!(text(&out.stdout).contains("CONFIG_PATH"), "{}", text(&out.stdout));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn healthcheck(port: u16) -> Output {
    run(bin().args(["-c", SHIPPED, "-p", &format!("HTTP_PORT={port}"), "healthcheck", "--timeout", "2000"]))
}

/// Starts the shipped configuration on `port` with `env`, stderr piped.
fn start(port: u16, env: &[(&str, &str)]) -> std::process::Child {
    let mut c = bin();
    c.args(["-c", SHIPPED, "-p", &format!("HTTP_PORT={port}")]).stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "service did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Stops a child with SIGTERM and returns its stderr.
fn stop(mut child: std::process::Child) -> String {
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    err
}

/// `healthcheck` asks the configured port's `/heartbeat`: 0 while the service runs, 1 when
/// nothing answers.
#[test]
fn healthcheck_exits_zero_when_the_service_answers_and_one_otherwise() {
    let port = free_port();
    let out = healthcheck(port);
    assert_eq!(out.status.code(), Some(1), "nothing listens yet: {}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains(&format!("unhealthy: http://127.0.0.1:{port}/heartbeat")),
        "{}",
        text(&out.stderr)
    );
    let service = start(port, &[("LOG_LEVEL", "warn")]);
    let out = healthcheck(port);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("answered 200"), "{}", text(&out.stdout));
    stop(service);
    let out = healthcheck(port);
    assert_eq!(out.status.code(), Some(1));
    // A configuration without an HTTP endpoint cannot be checked.
    let cfg = config_file("- descriptor: \"service-sessions:persistence:memory:default:1.0\"\n");
    let out = run(bin().args(["-c", cfg.path().to_str().unwrap(), "healthcheck"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no HTTP endpoint"), "{}", text(&out.stderr));
}

/// `RUST_LOG` refines the configured level per target: at `LOG_LEVEL=warn` the container's
/// info line appears only when `RUST_LOG` lets the service's own targets through at info.
#[test]
fn rust_log_overrides_the_configured_level_per_target() {
    let started = "Container started.";
    let port = free_port();
    let err = stop(start(port, &[("LOG_LEVEL", "warn")]));
    assert!(!err.contains(started), "{err}");
    let port = free_port();
    let err = stop(start(port, &[("LOG_LEVEL", "warn"), ("RUST_LOG", "service_sessions=info,mongodb=warn")]));
    assert!(err.contains(started), "{err}");
    let port = free_port();
    let err = stop(start(port, &[("LOG_LEVEL", "warn"), ("RUST_LOG", "service_sessions::logic=info")]));
    assert!(!err.contains(started), "other targets stay at the configured level: {err}");
}

/// The `ENV` settings of the image (docker/Dockerfile).
fn image_env() -> Vec<(String, String)> {
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker/Dockerfile")).unwrap();
    let mut env = Vec::new();
    let mut in_env = false;
    for line in dockerfile.lines() {
        let line = line.trim();
        let rest = match line.strip_prefix("ENV ") {
            Some(r) => r,
            None if in_env => line,
            None => continue,
        };
        in_env = rest.ends_with('\\');
        for pair in rest.trim_end_matches('\\').split_whitespace() {
            let (k, v) = pair.split_once('=').unwrap();
            env.push((k.to_string(), v.to_string()));
        }
    }
    env
}

/// The store descriptors and paths the shipped configuration gives with `params`.
fn stores(params: &[(String, String)]) -> Vec<(String, Option<String>)> {
    use service_sessions::toolkit::config::{parse_config, ConfigParameters};
    let text = std::fs::read_to_string(SHIPPED).unwrap();
    let mut p = ConfigParameters::new();
    for (k, v) in params {
        p.insert(k.clone(), v.clone());
    }
    parse_config(&text, &p)
        .unwrap()
        .into_iter()
        .filter(|c| c.descriptor.typ() == Some("persistence"))
        .map(|c| (c.descriptor.kind().unwrap().to_string(), c.value["path"].as_str().map(str::to_string)))
        .collect()
}

/// The image keeps sessions in the file store on its declared volume unless another backend is
/// chosen; the healthcheck is the binary's own.
#[test]
fn the_image_keeps_sessions_on_its_volume_unless_another_backend_is_chosen() {
    let env = image_env();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("CONFIG_PATH"), Some("/app/config/config.yml"));
    assert_eq!(stores(&env), [("file".to_string(), Some("/app/data".to_string()))]);
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker/Dockerfile")).unwrap();
    assert!(dockerfile.contains("VOLUME [\"/app/data\"]"));
    assert!(dockerfile.contains("CMD [\"/app/service-sessions\", \"healthcheck\""));
    for (switch, kind) in [("MEMORY_ENABLED", "memory"), ("MONGO_ENABLED", "mongodb"), ("REDIS_ENABLED", "redis")] {
        let mut chosen = env.clone();
        chosen.push((switch.to_string(), "true".to_string()));
        let got: Vec<String> = stores(&chosen).into_iter().map(|(k, _)| k).collect();
        assert_eq!(got, [kind], "{switch}");
    }
    // Outside the image (no FILE_BY_DEFAULT) the shipped configuration still defaults to memory.
    assert_eq!(stores(&[]), [("memory".to_string(), None)]);
}
