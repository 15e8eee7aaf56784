//! The container kernel over real HTTP, with test-only components: a commandable echo service,
//! lifecycle recorders and a component that owns a background task.

use crate::helpers::Answer;
use async_trait::async_trait;
use futures::FutureExt;
use parking_lot::Mutex;
use serde_json::{json, Value};
use service_sessions::toolkit::commands::{output, Command, CommandSet, Commandable};
use service_sessions::toolkit::component::Component;
use service_sessions::toolkit::config::{ComponentConfig, ConfigParameters};
use service_sessions::toolkit::container::Container;
use service_sessions::toolkit::defaults::default_factory;
use service_sessions::toolkit::descriptor::Descriptor;
use service_sessions::toolkit::errors::ApplicationError;
use service_sessions::toolkit::factory::{CompositeFactory, TableFactory};
use service_sessions::toolkit::http::commandable::CommandableHttpService;
use service_sessions::toolkit::http::swagger::OpenApiDocument;
use service_sessions::toolkit::http::HttpEndpoint;
use service_sessions::toolkit::references::{References, Registration};
use service_sessions::toolkit::schema::{ObjectSchema, Schema};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use tokio::task::JoinHandle;

/// Lifecycle events of every recorder, in order.
static EVENTS: LazyLock<Mutex<Vec<String>>> = LazyLock::new(|| Mutex::new(Vec::new()));
/// Serialises the tests that read EVENTS.
static LIFECYCLE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Echo {
    commands: Arc<CommandSet>,
}

impl Echo {
    fn new() -> Self {
        let mut set = CommandSet::new();
        set.add(Command::new(
            "echo",
            "Returns its text",
            ObjectSchema::new().allow_undefined(true).with_required_property("text", Schema::string().max_length(10)),
            |_cid, args| {
                let text = args.get_str("text").map(str::to_string);
                async move { text.map_or(Ok(None), |t| output(&t)) }.boxed()
            },
        ));
        set.add(Command::new("nothing", "Returns no value", ObjectSchema::new().allow_undefined(true), |_c, _a| {
            async { Ok(None) }.boxed()
        }));
        set.add(Command::new(
            "conflict",
            "Always fails with a conflict",
            ObjectSchema::new().allow_undefined(true),
            |_c, _a| async { Err(ApplicationError::conflict("BUSY", "Resource is busy")) }.boxed(),
        ));
        set.add(Command::new("crash", "Fails internally", ObjectSchema::new().allow_undefined(true), |_c, _a| {
            async { Err(ApplicationError::internal("DISK", "Internal error").with_cause("/secret/path/file.db: EIO")) }
                .boxed()
        }));
        Self { commands: Arc::new(set) }
    }
}

impl Component for Echo {}
impl Commandable for Echo {
    fn command_set(&self) -> Arc<CommandSet> {
        self.commands.clone()
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct RecorderSettings {
    name: String,
    fail_open: bool,
    needs: Option<String>,
}

struct Recorder {
    settings: RecorderSettings,
    task: Mutex<Option<JoinHandle<()>>>,
    stop: Arc<tokio::sync::Notify>,
    joined: Arc<AtomicBool>,
}

#[async_trait]
impl Component for Recorder {
    fn set_references(&self, references: &References) -> Result<(), ApplicationError> {
        if let Some(needs) = &self.settings.needs {
            references.get_one_required::<Recorder>(&needs.parse()?)?;
        }
        Ok(())
    }
    async fn open(&self, _cid: Option<&str>) -> Result<(), ApplicationError> {
        if self.settings.fail_open {
            EVENTS.lock().push(format!("fail {}", self.settings.name));
            return Err(ApplicationError::no_response("DOWN", format!("{} cannot open", self.settings.name)));
        }
        EVENTS.lock().push(format!("open {}", self.settings.name));
        let stop = self.stop.clone();
        let joined = self.joined.clone();
        *self.task.lock() = Some(tokio::spawn(async move {
            stop.notified().await;
            joined.store(true, Ordering::SeqCst);
        }));
        Ok(())
    }
    async fn close(&self, _cid: Option<&str>) -> Result<(), ApplicationError> {
        self.stop.notify_one();
        let task = self.task.lock().take();
        if let Some(t) = task {
            let _ = t.await;
        }
        EVENTS.lock().push(format!("close {} joined={}", self.settings.name, self.joined.load(Ordering::SeqCst)));
        Ok(())
    }
}

fn test_factory() -> CompositeFactory {
    let any = || Descriptor::new("*", "*", "*", "*", "*");
    let table = TableFactory::new()
        .register(Descriptor::new("test", "controller", "echo", "*", "1.0"), move |_c| {
            let e = Arc::new(Echo::new());
            Ok(Registration::new(Descriptor::new("*", "*", "*", "*", "*"), e.clone()).provide::<dyn Commandable>(e))
        })
        .register(Descriptor::new("test", "service", "commandable-http", "*", "1.0"), move |c: &ComponentConfig| {
            let s = Arc::new(CommandableHttpService::from_config(
                c,
                "v1/echo",
                &Descriptor::new("test", "controller", "*", "*", "1.0"),
                "Echo service",
            )?);
            Ok(Registration::new(any(), s.clone()).provide::<dyn OpenApiDocument>(s))
        })
        .register(Descriptor::new("test", "recorder", "*", "*", "1.0"), move |c: &ComponentConfig| {
            let settings: RecorderSettings = c.section()?;
            Ok(Registration::new(
                any(),
                Arc::new(Recorder {
                    settings,
                    task: Mutex::new(None),
                    stop: Arc::new(tokio::sync::Notify::new()),
                    joined: Arc::new(AtomicBool::new(false)),
                }),
            ))
        });
    CompositeFactory::new().with(Arc::new(default_factory())).with(Arc::new(table))
}

const ECHO_YAML: &str = r#"
- descriptor: "pip-services:context-info:default:default:1.0"
  name: "echo-test"
  description: "Kernel test"
- descriptor: "test:controller:echo:default:1.0"
- descriptor: "pip-services:endpoint:http:default:1.0"
  connection: { protocol: http, host: 127.0.0.1, port: 0 }
  options: { request_max_size: 1024 }
- descriptor: "test:service:commandable-http:default:1.0"
- descriptor: "pip-services:heartbeat-service:http:default:1.0"
- descriptor: "pip-services:status-service:http:default:1.0"
- descriptor: "pip-services:swagger-service:http:default:1.0"
"#;

struct EchoApp {
    container: Container,
    base: String,
    client: reqwest::Client,
}

async fn echo_app() -> EchoApp {
    let container = Container::new(Arc::new(test_factory()));
    container.open_text(ECHO_YAML, &ConfigParameters::new(), None).await.unwrap();
    let ep =
        container.references().get_one_required::<HttpEndpoint>(&"*:endpoint:http:*:1.0".parse().unwrap()).unwrap();
    let base = format!("http://{}", ep.local_addr().unwrap());
    EchoApp { container, base, client: reqwest::Client::new() }
}

impl EchoApp {
    async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        Answer { status, headers, body: r.text().await.unwrap() }
    }
    async fn post(&self, path: &str, body: &str) -> Answer {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }
}

fn assert_error(a: &Answer, status: u16, category: &str, code: &str) -> Value {
    assert_eq!(a.status, status, "{}", a.body);
    let v = a.json();
    assert_eq!(v["status"], status, "{v}");
    assert_eq!(v["category"], category, "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert!(v.get("message").and_then(Value::as_str).is_some_and(|m| !m.is_empty()));
    assert_eq!(v["type"], Value::Null);
    assert!(v.get("stack_trace").is_none() && v.get("stack").is_none());
    assert_eq!(a.header("content-type"), Some("application/json"));
    v
}

#[tokio::test]
async fn commands_answer_200_204_and_error_descriptions() {
    let app = echo_app().await;
    let ok = app.post("/v1/echo/echo?correlation_id=c-1", r#"{"text":"hi","extra":1}"#).await;
    assert_eq!((ok.status, ok.json()), (200, json!("hi")));
    assert_eq!(ok.header("cache-control"), Some("no-cache, no-store, must-revalidate"));
    assert_eq!(ok.header("pragma"), Some("no-cache"));
    assert_eq!(ok.header("expires"), Some("0"));
    assert_eq!(ok.header("access-control-allow-origin"), None, "no CORS headers unless configured");
    let none = app.post("/v1/echo/nothing", "").await;
    assert_eq!((none.status, none.body.as_str()), (204, ""));

    let v = assert_error(
        &app.post("/v1/echo/echo?correlation_id=c-2", r#"{"text":5}"#).await,
        400,
        "BadRequest",
        "INVALID_DATA",
    );
    assert_eq!(v["message"], "Validation failed: text type must be string but found long");
    assert_eq!(v["correlation_id"], "c-2");
    assert_eq!(v["details"]["results"][0]["path"], "text");
    assert_eq!(v["details"]["results"][0]["code"], "TYPE_MISMATCH");
    let v = assert_error(&app.post("/v1/echo/echo", "{}").await, 400, "BadRequest", "INVALID_DATA");
    assert_eq!(v["message"], "Validation failed: text must not be null");

    let header_cid = app
        .send(
            app.client
                .post(format!("{}/v1/echo/conflict", app.base))
                .header("correlation_id", "hdr-9")
                .json(&json!({})),
        )
        .await;
    let v = assert_error(&header_cid, 409, "Conflict", "BUSY");
    assert_eq!(v["correlation_id"], "hdr-9");
    let trace = app.send(app.client.post(format!("{}/v1/echo/conflict?trace_id=t-7", app.base)).json(&json!({}))).await;
    assert_eq!(assert_error(&trace, 409, "Conflict", "BUSY")["correlation_id"], "t-7");

    let v = assert_error(&app.post("/v1/echo/crash", "{}").await, 500, "Internal", "DISK");
    assert_eq!(v["cause"], Value::Null, "server errors never carry causes or paths");
    assert!(!v.to_string().contains("/secret"));
    app.container.close(None).await;
}

#[tokio::test]
async fn framework_failures_share_the_error_shape() {
    let app = echo_app().await;
    let v = assert_error(&app.post("/v1/echo/echo", r#"{"text": "#).await, 400, "BadRequest", "INVALID_JSON");
    assert!(!v["message"].as_str().unwrap().contains("text"), "the body is never echoed");
    assert_error(&app.post("/v1/echo/echo", "[1,2]").await, 400, "BadRequest", "INVALID_DATA");
    assert_error(&app.post("/v1/echo/echo", "\"text\"").await, 400, "BadRequest", "INVALID_DATA");
    assert_error(&app.post("/v1/echo/echo", "null").await, 400, "BadRequest", "INVALID_DATA");
    let bad_utf8 = app
        .send(
            app.client
                .post(format!("{}/v1/echo/echo", app.base))
                .header("content-type", "application/json")
                .body(vec![b'{', 0xff, 0xfe, b'}']),
        )
        .await;
    assert_error(&bad_utf8, 400, "BadRequest", "INVALID_JSON");
    let v = assert_error(&app.post("/v1/echo/unknown", "{}").await, 404, "NotFound", "ROUTE_NOT_FOUND");
    assert_eq!(v["details"]["route"], "/v1/echo/unknown");
    let wrong = app.send(app.client.get(format!("{}/v1/echo/echo", app.base))).await;
    assert_error(&wrong, 405, "Unsupported", "METHOD_NOT_ALLOWED");
    assert_eq!(wrong.header("allow"), Some("POST"));
    let big = app.post("/v1/echo/echo", &format!(r#"{{"text":"{}"}}"#, "x".repeat(2000))).await;
    let v = assert_error(&big, 413, "BadRequest", "PAYLOAD_TOO_LARGE");
    assert_eq!(v["details"]["limit"], 1024);
    let xml = app
        .send(
            app.client
                .post(format!("{}/v1/echo/echo", app.base))
                .header("content-type", "application/xml")
                .body("<a/>"),
        )
        .await;
    assert_error(&xml, 415, "Unsupported", "UNSUPPORTED_MEDIA_TYPE");
    let preflight = app.send(app.client.request(reqwest::Method::OPTIONS, format!("{}/v1/echo/echo", app.base))).await;
    assert_error(&preflight, 405, "Unsupported", "METHOD_NOT_ALLOWED");
    assert!(preflight.headers.keys().all(|k| !k.as_str().starts_with("access-control-")), "CORS is off by default");
    app.container.close(None).await;
}

#[tokio::test]
async fn oversized_chunked_bodies_are_refused() {
    let app = echo_app().await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..64).map(|_| Ok(vec![b' '; 100])).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let a = app.send(app.client.post(format!("{}/v1/echo/echo", app.base)).body(body)).await;
    assert_error(&a, 413, "BadRequest", "PAYLOAD_TOO_LARGE");
    app.container.close(None).await;
}

#[tokio::test]
async fn heartbeat_status_and_swagger() {
    let app = echo_app().await;
    let hb = app.send(app.client.get(format!("{}/heartbeat", app.base))).await;
    assert_eq!(hb.status, 200);
    let t = hb.json();
    assert!(service_sessions::toolkit::time::parse_time(t.as_str().unwrap()).is_some());
    assert!(t.as_str().unwrap().ends_with('Z'));
    let st = app.send(app.client.get(format!("{}/status", app.base))).await;
    assert_eq!(st.status, 200);
    let v = st.json();
    assert_eq!(v["name"], "echo-test");
    assert_eq!(v["description"], "Kernel test");
    assert_eq!(v["ready"], true);
    assert!(v["uptime"].as_i64().unwrap() >= 0);
    assert_eq!(
        v["components"],
        json!([
            "pip-services:context-info:default:default:1.0",
            "test:controller:echo:default:1.0",
            "pip-services:endpoint:http:default:1.0",
            "test:service:commandable-http:default:1.0",
            "pip-services:heartbeat-service:http:default:1.0",
            "pip-services:status-service:http:default:1.0",
            "pip-services:swagger-service:http:default:1.0"
        ])
    );
    let ready = app.send(app.client.get(format!("{}/ready", app.base))).await;
    assert_eq!((ready.status, ready.json()["ready"].clone()), (200, json!(true)));
    let doc = app.send(app.client.get(format!("{}/v1/echo/swagger", app.base))).await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.header("content-type"), Some("application/x-yaml"));
    let yaml: Value = serde_yaml::from_str(&doc.body).unwrap();
    assert_eq!(yaml["openapi"], "3.0.3");
    assert_eq!(yaml["info"]["title"], "Echo service");
    let echo = &yaml["paths"]["/v1/echo/echo"]["post"];
    assert_eq!(echo["operationId"], "echo");
    assert_eq!(echo["requestBody"]["content"]["application/json"]["schema"]["required"], json!(["text"]));
    assert_eq!(echo["requestBody"]["content"]["application/json"]["schema"]["properties"]["text"]["maxLength"], 10);
    assert_eq!(yaml["paths"].as_object().unwrap().len(), 4);
    let page = app.send(app.client.get(format!("{}/swagger", app.base))).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/v1/echo/swagger"));
    app.container.close(None).await;
}

#[tokio::test]
async fn startup_lists_every_problem_and_opens_nothing() {
    let _guard = LIFECYCLE.lock().await;
    EVENTS.lock().clear();
    let yaml = r#"
- descriptor: "test:recorder:default:a:1.0"
  name: a
- descriptor: "test:unknown:kind:x:1.0"
- descriptor: "not-a-descriptor"
- descriptor: "pip-services:endpoint:http:default:1.0"
  connection: { protocol: gopher, port: 0 }
- descriptor: "pip-services:endpoint:http:second:1.0"
  connection: { port: "eighty" }
- foo: bar
"#;
    let c = Container::new(Arc::new(test_factory()));
    let e = c.open_text(yaml, &ConfigParameters::new(), None).await.unwrap_err();
    assert_eq!(e.code, "BAD_CONFIG");
    let errors: Vec<String> =
        e.details["errors"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    // A malformed descriptor hides nothing: every problem, in file order.
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert_eq!(
        errors[0],
        "Component #2 (test:unknown:kind:x:1.0): No factory can create component test:unknown:kind:x:1.0"
    );
    assert!(errors[1].starts_with("Component #3: Descriptor \"not-a-descriptor\" is in wrong format"), "{errors:?}");
    assert!(
        errors[2]
            .starts_with("Component #4 (pip-services:endpoint:http:default:1.0): Protocol \"gopher\" is not supported"),
        "{errors:?}"
    );
    assert_eq!(
        errors[3],
        "Component #5 (pip-services:endpoint:http:second:1.0): invalid value \"eighty\", expected an integer"
    );
    assert_eq!(errors[4], "Component #6: component configuration must have a descriptor");
    assert!(e.message.starts_with("Configuration has 5 problem(s): Component #2 "), "{}", e.message);
    assert!(EVENTS.lock().is_empty(), "nothing opened");

    let yaml = r#"
- descriptor: "test:recorder:default:a:1.0"
  name: a
- descriptor: "test:unknown:kind:x:1.0"
- descriptor: "pip-services:endpoint:http:default:1.0"
  connection: { protocol: gopher, port: 0 }
- descriptor: "pip-services:endpoint:http:second:1.0"
  connection: { port: "eighty" }
"#;
    let e = c.open_text(yaml, &ConfigParameters::new(), None).await.unwrap_err();
    let errors: Vec<String> =
        e.details["errors"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].starts_with("Component #2 (test:unknown:kind:x:1.0): No factory can create"), "{errors:?}");
    assert!(errors[1].contains("Protocol \"gopher\" is not supported"), "{errors:?}");
    assert!(
        errors[2].contains("Component #4 (pip-services:endpoint:http:second:1.0): invalid value \"eighty\""),
        "{errors:?}"
    );
    assert!(e.message.starts_with("Configuration has 3 problem(s): "));

    let missing = r#"
- descriptor: "test:recorder:default:a:1.0"
  name: a
  needs: "test:recorder:*:nothing:1.0"
- descriptor: "test:service:commandable-http:default:1.0"
"#;
    let e = c.open_text(missing, &ConfigParameters::new(), None).await.unwrap_err();
    let errors: Vec<String> =
        e.details["errors"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(
        errors,
        vec![
            "Component test:recorder:default:a:1.0: Failed to obtain reference to test:recorder:*:nothing:1.0".to_string(),
            "Component test:service:commandable-http:default:1.0: Failed to obtain reference to test:controller:*:*:1.0".to_string()
        ]
    );
    assert!(EVENTS.lock().is_empty(), "nothing opened: {:?}", EVENTS.lock());
}

#[tokio::test]
async fn components_close_in_reverse_order_and_tasks_are_joined() {
    let _guard = LIFECYCLE.lock().await;
    EVENTS.lock().clear();
    let yaml = "- descriptor: test:recorder:default:a:1.0\n  name: a\n- descriptor: test:recorder:default:b:1.0\n  name: b\n- descriptor: test:recorder:default:c:1.0\n  name: c\n";
    let c = Container::new(Arc::new(test_factory()));
    c.open_text(yaml, &ConfigParameters::new(), None).await.unwrap();
    c.close(None).await;
    assert_eq!(
        *EVENTS.lock(),
        vec!["open a", "open b", "open c", "close c joined=true", "close b joined=true", "close a joined=true"]
    );
    EVENTS.lock().clear();
    let failing = "- descriptor: test:recorder:default:a:1.0\n  name: a\n- descriptor: test:recorder:default:b:1.0\n  name: b\n- descriptor: test:recorder:default:c:1.0\n  name: c\n  fail_open: true\n- descriptor: test:recorder:default:d:1.0\n  name: d\n";
    let c = Container::new(Arc::new(test_factory()));
    let e = c.open_text(failing, &ConfigParameters::new(), None).await.unwrap_err();
    assert_eq!((e.code.as_str(), e.message.as_str()), ("DOWN", "c cannot open"));
    assert_eq!(*EVENTS.lock(), vec!["open a", "open b", "fail c", "close b joined=true", "close a joined=true"]);
}

#[tokio::test]
async fn templates_pick_components_from_parameters() {
    let yaml = r#"
{{#if ECHO_ENABLED}}
- descriptor: "test:controller:echo:default:1.0"
{{/if}}
- descriptor: "pip-services:endpoint:http:default:1.0"
  connection: { protocol: http, host: 127.0.0.1, port: {{HTTP_PORT}}{{#unless HTTP_PORT}}0{{/unless}} }
"#;
    let c = Container::new(Arc::new(test_factory()));
    let mut p = ConfigParameters::new();
    p.insert("echo_enabled".into(), "false".into());
    c.open_text(yaml, &p, None).await.unwrap();
    let locators: Vec<String> = c.references().locators().iter().map(ToString::to_string).collect();
    assert!(locators.contains(&"test:controller:echo:default:1.0".to_string()), "\"false\" is defined: {locators:?}");
    c.close(None).await;
    let e = Container::new(Arc::new(test_factory()))
        .open_text("- descriptor: a:b:c:d:1.0\n{{#if X}}\n", &ConfigParameters::new(), None)
        .await
        .unwrap_err();
    assert_eq!(e.code, "TEMPLATE_UNCLOSED_SECTION");
    assert_eq!(e.details["line"], 2);
}

#[tokio::test]
async fn https_endpoint_needs_readable_key_files() {
    let yaml = "- descriptor: pip-services:endpoint:http:default:1.0\n  connection: { protocol: https, host: 127.0.0.1, port: 0 }\n  credential: { ssl_key_file: /nonexistent/key.pem, ssl_crt_file: /nonexistent/crt.pem }\n";
    let e = Container::new(Arc::new(test_factory())).open_text(yaml, &ConfigParameters::new(), None).await.unwrap_err();
    assert_eq!(e.code, "BAD_CONFIG");
    assert!(e.details["errors"][0].as_str().unwrap().contains("Cannot read the SSL"), "{e:?}");
}

#[tokio::test]
async fn https_endpoint_serves_tls() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (key_file, crt_file) = (dir.path().join("key.pem"), dir.path().join("crt.pem"));
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    std::fs::write(&crt_file, cert.cert.pem()).unwrap();
    let yaml = format!(
        "- descriptor: test:controller:echo:default:1.0\n- descriptor: pip-services:endpoint:http:default:1.0\n  connection: {{ protocol: https, host: 127.0.0.1, port: 0 }}\n  credential: {{ ssl_key_file: \"{}\", ssl_crt_file: \"{}\" }}\n- descriptor: test:service:commandable-http:default:1.0\n- descriptor: pip-services:heartbeat-service:http:default:1.0\n",
        key_file.display(),
        crt_file.display()
    );
    let container = Container::new(Arc::new(test_factory()));
    container.open_text(&yaml, &ConfigParameters::new(), None).await.unwrap();
    let ep =
        container.references().get_one_required::<HttpEndpoint>(&"*:endpoint:http:*:1.0".parse().unwrap()).unwrap();
    let port = ep.local_addr().unwrap().port();
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder().add_root_certificate(root).build().unwrap();
    let r = client
        .post(format!("https://localhost:{port}/v1/echo/echo"))
        .json(&json!({"text": "tls"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "\"tls\"");
    let plain = reqwest::Client::new().get(format!("http://localhost:{port}/heartbeat")).send().await;
    assert!(plain.is_err() || plain.unwrap().status().as_u16() != 200, "plain HTTP is not served on the TLS port");
    container.close(None).await;
}

/// A process's maintenance path: only the entries matching a locator are built (and opened),
/// with the `-p` parameters applied; nothing else opens, no endpoint listens.
#[tokio::test]
async fn a_process_builds_and_opens_only_the_selected_components() {
    use service_sessions::toolkit::process::{ProcessArgs, ProcessContainer};
    let _guard = LIFECYCLE.lock().await;
    EVENTS.lock().clear();
    let port = crate::original::free_port();
    let mut file = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
    std::io::Write::write_all(
        &mut file,
        format!(
            "- descriptor: test:recorder:default:a:1.0\n  name: a\n\
             - descriptor: test:recorder:store:b:1.0\n  name: \"{{{{STORE_NAME}}}}\"\n\
             - descriptor: pip-services:endpoint:http:default:1.0\n  connection: {{ protocol: http, host: 127.0.0.1, port: {port} }}\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let args = ProcessArgs { config: file.path().display().to_string(), params: vec!["STORE_NAME=bee".to_string()] };
    let process = ProcessContainer::new("kernel-test", Arc::new(test_factory()));
    let select = Descriptor::new("test", "recorder", "store", "*", "1.0");

    let (built, configs) = process.build_selected(&args, &select).unwrap();
    assert_eq!(configs.iter().map(|c| c.descriptor.to_string()).collect::<Vec<_>>(), ["test:recorder:store:b:1.0"]);
    assert!(built.references().locators().iter().any(|l| l.to_string() == "test:recorder:store:b:1.0"));
    built.close(None).await;
    assert!(EVENTS.lock().is_empty(), "built, never opened: {:?}", EVENTS.lock());

    let (opened, _) = process.open_selected(&args, &select).await.unwrap();
    assert_eq!(*EVENTS.lock(), vec!["open bee"]);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "no endpoint listens");
    opened.close(None).await;
    assert_eq!(*EVENTS.lock(), vec!["open bee", "close bee joined=true"]);
    EVENTS.lock().clear();

    let missing = ProcessArgs { config: "/nonexistent/config.yml".to_string(), params: vec![] };
    let e = process.open_selected(&missing, &select).await.unwrap_err();
    assert_eq!(e.code, "CONFIG_UNREADABLE");
    assert!(e.message.contains("cannot read the configuration file /nonexistent/config.yml"), "{}", e.message);
}
