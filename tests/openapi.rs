//! The API against its OpenAPI document (`crates/origin/openapi.json`): every documented
//! operation is called on a real origin, good requests and bad; every answer's status
//! must be documented for its operation and its body must match the documented schema
//! (checked with a JSON Schema validator); every operation must be exercised; a method
//! a documented path does not take answers 405, in JSON. Then the document is the one
//! the server serves.

mod support;

use longhaul_rtmp::connection::{Publisher, RtmpUrl};
use serde_json::Value;
use std::collections::BTreeSet;
use support::*;
use tokio::net::TcpStream;

const DOC: &str = include_str!("../crates/origin/openapi.json");
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

struct Contract {
    doc: Value,
    exercised: BTreeSet<(String, String)>,
}

impl Contract {
    fn new() -> Contract {
        Contract {
            doc: serde_json::from_str(DOC).expect("openapi.json is JSON"),
            exercised: BTreeSet::new(),
        }
    }

    /// Resolves a local `$ref` (`#/components/...`).
    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => self
                .doc
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling $ref {r}")),
            None => v,
        }
    }

    /// Checks one answer of `method template` against the document.
    fn check(
        &mut self,
        method: &str,
        template: &str,
        status: u16,
        content_type: &str,
        body: &[u8],
    ) {
        let what = format!("{} {template} -> {status}", method.to_uppercase());
        let operation = self
            .doc
            .pointer(&format!("/paths/{}/{method}", template.replace('/', "~1")))
            .unwrap_or_else(|| panic!("{what}: not a documented operation"))
            .clone();
        self.exercised
            .insert((method.to_owned(), template.to_owned()));
        let response = operation["responses"]
            .get(status.to_string())
            .unwrap_or_else(|| {
                panic!(
                    "{what}: status not documented: {}",
                    String::from_utf8_lossy(body)
                )
            });
        let response = self.resolve(response).clone();
        let Some(content) = response.get("content") else {
            assert!(body.is_empty(), "{what}: a body where none is documented");
            return;
        };
        let media = content_type.split(';').next().unwrap_or("").trim();
        let Some(media_doc) = content.get(media) else {
            panic!("{what}: content type {media:?} not documented ({content})");
        };
        if media != "application/json" {
            return;
        }
        let instance: Value = serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e})"));
        // The schema, with the document's components beside it so `$ref`s resolve.
        let mut schema = media_doc["schema"].clone();
        if let Value::Object(map) = &mut schema {
            map.insert("components".into(), self.doc["components"].clone());
            map.insert(
                "$schema".into(),
                "https://json-schema.org/draft/2020-12/schema".into(),
            );
        } else {
            panic!("{what}: schema is not an object");
        }
        let validator = jsonschema::validator_for(&schema)
            .unwrap_or_else(|e| panic!("{what}: the documented schema is invalid: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: the body does not match the document: {errors:?}\n{instance}"
        );
    }

    fn operations(&self) -> BTreeSet<(String, String)> {
        let mut all = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for method in METHODS {
                if item.get(method).is_some() {
                    all.insert((method.to_owned(), path.clone()));
                }
            }
        }
        all
    }
}

/// One request to the API; the answer is checked against `template`'s operation.
async fn call(
    contract: &mut Contract,
    base: &str,
    method: &str,
    template: &str,
    path: &str,
    body: &str,
    content_type: Option<&str>,
) -> (u16, Value) {
    let url = format!("{base}/api/v1{path}");
    let (status, ctype, bytes) = match content_type {
        Some(t) => http_typed(&method.to_uppercase(), &url, t, body).await,
        None => http(&method.to_uppercase(), &url, body, None).await,
    };
    contract.check(method, template, status, &ctype, &bytes);
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_as_its_openapi_document_says() {
    let mut c = Contract::new();
    // Production's endpoints, so entries carry regions and speed tests to check.
    let origin = start_origin(PRODUCTION_ENDPOINTS).await;
    let base = origin.http();
    let b = base.as_str();

    // Entries: created, listed, read, renamed, regenerated, exported, revoked, deleted.
    let (s, entry) = call(
        &mut c,
        b,
        "post",
        "/entries",
        "/entries",
        r#"{"name":"doc"}"#,
        None,
    )
    .await;
    assert_eq!(s, 201);
    let id = entry["id"].as_str().unwrap().to_owned();
    let (s, _) = call(&mut c, b, "post", "/entries", "/entries", "", None).await;
    assert_eq!(s, 201, "an empty body is {{}}");
    for (body, ctype, status) in [
        ("{not json", None, 400),
        (r#"{"nmae":"x"}"#, None, 400),
        (r#"{"name":"two\nlines"}"#, None, 400),
        (r#"{"name":"x"}"#, Some("text/plain"), 415),
    ] {
        let (s, _) = call(&mut c, b, "post", "/entries", "/entries", body, ctype).await;
        assert_eq!(s, status, "{body}");
    }
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(70_000));
    let (s, _) = call(&mut c, b, "post", "/entries", "/entries", &big, None).await;
    assert_eq!(s, 413);
    let (s, list) = call(&mut c, b, "get", "/entries", "/entries", "", None).await;
    assert_eq!((s, list["entries"].as_array().unwrap().len()), (200, 2));

    let one = "/entries/{id}";
    let (s, _) = call(&mut c, b, "get", one, &format!("/entries/{id}"), "", None).await;
    assert_eq!(s, 200);
    let (s, _) = call(&mut c, b, "get", one, "/entries/1_nothere", "", None).await;
    assert_eq!(s, 404);
    for (body, status) in [
        (r#"{"name":"renamed"}"#, 200),
        ("", 400),
        (r#"{"name":"tab\there"}"#, 400),
    ] {
        let (s, _) = call(
            &mut c,
            b,
            "patch",
            one,
            &format!("/entries/{id}"),
            body,
            None,
        )
        .await;
        assert_eq!(s, status, "{body}");
    }
    let (s, _) = call(
        &mut c,
        b,
        "patch",
        one,
        "/entries/1_nothere",
        r#"{"name":"x"}"#,
        None,
    )
    .await;
    assert_eq!(s, 404);

    let regen = "/entries/{id}/regenerate-token";
    let at = format!("/entries/{id}/regenerate-token");
    let (s, _) = call(&mut c, b, "post", regen, &at, "", None).await;
    assert_eq!(s, 200);
    let (s, _) = call(&mut c, b, "post", regen, &at, r#"{"generation":1}"#, None).await;
    assert_eq!(s, 409);
    let (s, _) = call(&mut c, b, "post", regen, &at, r#"{"generation":2}"#, None).await;
    assert_eq!(s, 200);
    let (s, _) = call(
        &mut c,
        b,
        "post",
        regen,
        "/entries/1_nothere/regenerate-token",
        "",
        None,
    )
    .await;
    assert_eq!(s, 404);

    let fmle = "/entries/{id}/fmle.xml";
    let (s, _) = call(
        &mut c,
        b,
        "get",
        fmle,
        &format!("/entries/{id}/fmle.xml"),
        "",
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(
        &mut c,
        b,
        "get",
        fmle,
        "/entries/1_nothere/fmle.xml",
        "",
        None,
    )
    .await;
    assert_eq!(s, 404);

    // A live stream, so the streams' schema is checked on a real one.
    let entry = origin.registry().get(&id).unwrap();
    let url = RtmpUrl::parse(&format!(
        "{}/kLive/?t={}/{id}_1",
        origin.rtmp(),
        entry.token
    ))
    .unwrap();
    let io = TcpStream::connect(url.address()).await.unwrap();
    let mut publisher = Publisher::start(io, url.client_config(), &url.name)
        .await
        .unwrap();
    publisher
        .send(&msg(9, 0, vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff]))
        .await
        .unwrap();
    // And a keyframe: its rendition goes on air, with a switch to describe.
    publisher
        .send(&msg(9, 0, vec![0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65]))
        .await
        .unwrap();
    origin.wait_live(&format!("{id}_1")).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while origin.origin.state.hub.renditions()[0].on_air.is_none() {
        assert!(std::time::Instant::now() < deadline, "never on air");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (s, streams) = call(&mut c, b, "get", "/streams", "/streams", "", None).await;
    assert_eq!((s, streams["streams"].as_array().unwrap().len()), (200, 1));
    assert_eq!(streams["renditions"][0]["on_air"], "primary", "{streams}");
    assert_eq!(
        streams["renditions"][0]["last_switch"]["reason"], "started",
        "{streams}"
    );

    let revoke = "/entries/{id}/revoke";
    let (s, v) = call(
        &mut c,
        b,
        "post",
        revoke,
        &format!("/entries/{id}/revoke"),
        "",
        None,
    )
    .await;
    assert_eq!((s, v["cut"].as_u64()), (200, Some(1)));
    let (s, _) = call(
        &mut c,
        b,
        "post",
        revoke,
        "/entries/1_nothere/revoke",
        "",
        None,
    )
    .await;
    assert_eq!(s, 404);

    // Draining: started once, refused publishes from then on (tested in
    // tests/failover.rs); the node keeps answering.
    let (s, v) = call(&mut c, b, "post", "/drain", "/drain", "", None).await;
    assert_eq!((s, v["started"].as_bool()), (202, Some(true)));
    let (s, v) = call(&mut c, b, "post", "/drain", "/drain", "", None).await;
    assert_eq!((s, v["started"].as_bool()), (202, Some(false)));

    let (s, _) = call(
        &mut c,
        b,
        "delete",
        one,
        &format!("/entries/{id}"),
        "",
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = call(
        &mut c,
        b,
        "delete",
        one,
        &format!("/entries/{id}"),
        "",
        None,
    )
    .await;
    assert_eq!(s, 404);

    // The document served is this one.
    let (s, served) = call(&mut c, b, "get", "/openapi.json", "/openapi.json", "", None).await;
    assert_eq!(s, 200);
    assert_eq!(served, c.doc);

    // A method a documented path does not take: 405, in JSON.
    for (path, item) in c.doc["paths"].as_object().unwrap().clone() {
        let concrete = path.replace("{id}", "1_nothere");
        for method in METHODS.iter().filter(|m| item.get(**m).is_none()) {
            let url = format!("{b}/api/v1{concrete}");
            let (s, _, body) = http(&method.to_uppercase(), &url, "", None).await;
            assert_eq!(
                (s, error_code(&body).as_str()),
                (405, "method_not_allowed"),
                "{method} {path}"
            );
        }
    }

    // With an API token: the 401 every guarded operation documents.
    let guarded = start_origin("[http]\napi_token = \"contract-test-token\"\n").await;
    let (s, _) = call(
        &mut c,
        &guarded.http(),
        "get",
        "/entries",
        "/entries",
        "",
        None,
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = call(
        &mut c,
        &guarded.http(),
        "get",
        "/openapi.json",
        "/openapi.json",
        "",
        None,
    )
    .await;
    assert_eq!(s, 200, "the document is open");

    let missing: Vec<_> = c.operations().difference(&c.exercised).cloned().collect();
    assert!(
        missing.is_empty(),
        "operations never exercised: {missing:?}"
    );
}

/// The 503 every write documents, from an origin whose PostgreSQL is down, with its
/// `retry-after`; reads still answer from memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_answer_503_as_documented_while_the_database_is_down() {
    use longhaul_registry::testing::PostgresServer;
    let mut c = Contract::new();
    let (server, database) = tokio::task::spawn_blocking(PostgresServer::start_with_database)
        .await
        .unwrap()
        .expect("a private PostgreSQL with a database");
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, server.password()).unwrap();
    let origin = start_origin(&format!(
        "[registry]\nurl = {:?}\npassword_file = {:?}\n",
        server.url(&database),
        password
    ))
    .await;
    let b = origin.http();
    let (s, entry) = call(&mut c, &b, "post", "/entries", "/entries", "", None).await;
    assert_eq!(s, 201);
    let id = entry["id"].as_str().unwrap().to_owned();
    let _server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.stop().expect("stop");
        server
    })
    .await
    .unwrap();

    let one = format!("/entries/{id}");
    let regen = format!("/entries/{id}/regenerate-token");
    for (method, template, path, body) in [
        ("post", "/entries", "/entries", ""),
        ("patch", "/entries/{id}", one.as_str(), r#"{"name":"x"}"#),
        ("post", "/entries/{id}/regenerate-token", regen.as_str(), ""),
        ("delete", "/entries/{id}", one.as_str(), ""),
    ] {
        let (s, v) = call(&mut c, &b, method, template, path, body, None).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (503, Some("registry_unavailable")),
            "{method} {path}"
        );
    }
    let (s, _) = call(&mut c, &b, "get", "/entries/{id}", &one, "", None).await;
    assert_eq!(s, 200, "reads answer from memory");

    // The header a client waits on.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let response = client
        .request(
            hyper::Request::post(format!("{b}/api/v1/entries"))
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
}
