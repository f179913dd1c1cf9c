//! The test API server behaves as kube-apiserver does for everything a
//! kube-rs 5.x client (Api, watcher, reflector, metadata_watcher, events
//! Recorder, discovery) relies on. Every test drives it with the real kube
//! client.

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event as CoreEvent, Namespace, ObjectReference, Secret,
};
use k8s_openapi::api::events::v1::Event as EventsEvent;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::response::Status;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use support::apiserver::{TestApiServer, create_yaml};

const WAIT: Duration = Duration::from_secs(10);
const NOTIFICATION: &str = "notification.toolkit.fluxcd.io";

/// Bounds every wait: a hang is a failure, not a stuck test run.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn alert_resource(version: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(NOTIFICATION, version, "Alert"),
        "alerts",
    )
}

fn alerts(client: &kube::Client, version: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), "flux-system", &alert_resource(version))
}

fn alert(name: &str, severity: &str) -> DynamicObject {
    alert_at("v1beta3", name, severity)
}

fn alert_at(version: &str, name: &str, severity: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": format!("{NOTIFICATION}/{version}"),
        "kind": "Alert",
        "metadata": {"name": name},
        "spec": {"eventSeverity": severity, "providerRef": {"name": "slack"}},
    }))
    .expect("alert")
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        ),
        ..Default::default()
    }
}

fn config_maps(client: &kube::Client) -> Api<ConfigMap> {
    Api::namespaced(client.clone(), "flux-system")
}

/// The Status of a failed call.
fn api_error<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> Box<Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn rv(object: &impl Resource) -> u64 {
    object
        .meta()
        .resource_version
        .as_deref()
        .expect("resourceVersion")
        .parse()
        .expect("numeric resourceVersion")
}

/// A raw request through the kube client: status, content type, JSON body.
async fn raw(
    client: &kube::Client,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, Value) {
    let mut request = axum::http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(kube::client::Body::from(body.as_bytes().to_vec()))
        .expect("request");
    let response = client.send(request).await.expect("send");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        content_type,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn assert_failure(body: &Value, code: u16, reason: &str) {
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["apiVersion"], "v1", "{body}");
    assert_eq!(body["status"], "Failure", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

// ---------------------------------------------------------------- metadata

#[tokio::test]
async fn create_sets_server_owned_metadata() {
    let server = TestApiServer::start();
    let client = server.client();
    let api = alerts(&client, "v1beta3");
    let mut with_status = alert("errors", "error");
    with_status.data["status"] = json!({"observedGeneration": 7});
    let created = api
        .create(&PostParams::default(), &with_status)
        .await
        .unwrap();

    let meta = &created.metadata;
    assert_eq!(
        meta.namespace.as_deref(),
        Some("flux-system"),
        "defaulted from the URL"
    );
    assert_eq!(meta.uid.as_ref().map(String::len), Some(36));
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    assert!(
        created.data.get("status").is_none(),
        "status is dropped on create"
    );

    // One global counter across kinds.
    let cm = config_maps(&client)
        .create(&PostParams::default(), &config_map("a", &[("k", "v")]))
        .await
        .unwrap();
    assert!(rv(&cm) > rv(&created));
    assert_eq!(
        cm.metadata.generation, None,
        "built-in kinds without spec have no generation"
    );
    assert_eq!(server.resource_version(), rv(&cm));

    // A create whose body names another namespace is refused.
    let mut elsewhere = alert("elsewhere", "info");
    elsewhere.metadata.namespace = Some("default".into());
    assert_eq!(
        api_error(api.create(&PostParams::default(), &elsewhere).await).code,
        400
    );
}

#[tokio::test]
async fn generation_follows_spec_not_status_or_metadata() {
    let server = TestApiServer::start();
    let client = server.client();
    let api = alerts(&client, "v1beta3");
    api.create(&PostParams::default(), &alert("a", "error"))
        .await
        .unwrap();

    let labelled = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata changes keep generation"
    );

    let status = api
        .patch_status(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(
        status.metadata.generation,
        Some(1),
        "status writes keep generation"
    );
    assert!(rv(&status) > rv(&labelled));

    let spec = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"eventSeverity": "info"}})),
        )
        .await
        .unwrap();
    assert_eq!(spec.metadata.generation, Some(2));
    assert_eq!(
        spec.data["status"]["observedGeneration"], 1,
        "status survives spec writes"
    );
}

#[tokio::test]
async fn every_version_serves_the_same_objects() {
    let server = TestApiServer::start();
    let client = server.client();
    alerts(&client, "v1beta1")
        .create(
            &PostParams::default(),
            &alert_at("v1beta1", "shared", "info"),
        )
        .await
        .unwrap();
    for version in ["v1beta1", "v1beta2", "v1beta3"] {
        let got = alerts(&client, version).get("shared").await.unwrap();
        assert_eq!(
            got.types.unwrap().api_version,
            format!("{NOTIFICATION}/{version}")
        );
        let listed = alerts(&client, version)
            .list(&ListParams::default())
            .await
            .unwrap();
        assert_eq!(listed.items.len(), 1);
        assert_eq!(
            listed.items[0].types.as_ref().unwrap().api_version,
            format!("{NOTIFICATION}/{version}")
        );
    }
    let stored = server
        .object(NOTIFICATION, "alerts", "flux-system", "shared")
        .unwrap();
    assert_eq!(stored["spec"]["eventSeverity"], "info");

    // A body whose apiVersion is not the URL's is refused.
    let status = api_error(
        alerts(&client, "v1beta2")
            .create(&PostParams::default(), &alert("mismatch", "info"))
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (400, "BadRequest"));
}

// ------------------------------------------------------------ CRUD verbs

#[tokio::test]
async fn get_list_create_and_errors() {
    let server = TestApiServer::start();
    let client = server.client();
    let api = config_maps(&client);

    let missing = api_error(api.get("nope").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "configmaps \"nope\" not found");
    assert!(api.get_opt("nope").await.unwrap().is_none());

    api.create(&PostParams::default(), &config_map("one", &[]))
        .await
        .unwrap();
    let again = api_error(
        api.create(&PostParams::default(), &config_map("one", &[]))
            .await,
    );
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));

    let default_ns: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    default_ns
        .create(&PostParams::default(), &config_map("two", &[]))
        .await
        .unwrap();
    let nowhere: Api<ConfigMap> = Api::namespaced(client.clone(), "no-such-namespace");
    let status = api_error(
        nowhere
            .create(&PostParams::default(), &config_map("x", &[]))
            .await,
    );
    assert_eq!(
        (status.code, status.message.as_str()),
        (404, "namespaces \"no-such-namespace\" not found")
    );

    let namespaced = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        namespaced
            .items
            .iter()
            .map(|c| c.name_any())
            .collect::<Vec<_>>(),
        ["one"]
    );
    let all: Api<ConfigMap> = Api::all(client.clone());
    let everywhere = all.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        everywhere
            .items
            .iter()
            .map(|c| c.name_any())
            .collect::<Vec<_>>(),
        ["two", "one"]
    );
    assert_eq!(
        everywhere.metadata.resource_version.as_deref(),
        Some(server.resource_version().to_string().as_str())
    );

    let invalid = api_error(
        api.create(&PostParams::default(), &config_map("Bad_Name", &[]))
            .await,
    );
    assert_eq!((invalid.code, invalid.reason.as_str()), (422, "Invalid"));

    let mut generated = config_map("", &[]);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let created = api
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    assert!(created.name_any().starts_with("gen-") && created.name_any().len() == 9);

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = namespaces.get("flux-system").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
    assert_eq!(ns.metadata.namespace, None, "namespaces are cluster-scoped");
}

#[tokio::test]
async fn failures_are_status_objects() {
    let server = TestApiServer::start();
    let client = server.client();
    let base = "/api/v1/namespaces/flux-system/configmaps";

    let (code, content_type, body) = raw(&client, "GET", &format!("{base}/missing"), &[], "").await;
    assert_eq!((code, content_type.as_str()), (404, "application/json"));
    assert_failure(&body, 404, "NotFound");
    assert_eq!(
        body["details"],
        json!({"name": "missing", "group": "", "kind": "configmaps"})
    );

    let json = [("content-type", "application/json")];
    let (code, _, body) = raw(&client, "POST", base, &json, "{not json").await;
    assert_eq!(code, 400);
    assert_failure(&body, 400, "BadRequest");

    let (code, _, body) = raw(&client, "GET", "/apis/nope.example.com/v1/things", &[], "").await;
    assert_eq!(code, 404);
    assert_failure(&body, 404, "NotFound");

    let (code, _, body) = raw(
        &client,
        "PATCH",
        &format!("{base}/x"),
        &[("content-type", "text/plain")],
        "{}",
    )
    .await;
    assert_eq!(code, 415);
    assert_failure(&body, 415, "UnsupportedMediaType");

    let (code, _, body) = raw(
        &client,
        "GET",
        base,
        &[("accept", "application/vnd.kubernetes.protobuf")],
        "",
    )
    .await;
    assert_eq!(code, 406);
    assert_failure(&body, 406, "NotAcceptable");
}

type Header = (&'static str, &'static str);

/// Malformed requests get a 4xx Status; none can take the server down.
#[tokio::test]
async fn malformed_requests_get_a_status_not_a_crash() {
    let server = TestApiServer::start();
    let client = server.client();
    let cms = "/api/v1/namespaces/flux-system/configmaps";
    let json = ("content-type", "application/json");
    let merge = ("content-type", "application/merge-patch+json");
    let apply = ("content-type", "application/apply-patch+yaml");
    raw(
        &client,
        "POST",
        cms,
        &[json],
        r#"{"metadata":{"name":"m","managedFields":[1,"x"]}}"#,
    )
    .await;
    let cases: &[(&str, String, &[Header], &str)] = &[
        ("POST", cms.into(), &[json], "[]"),
        ("POST", cms.into(), &[json], r#"{"metadata": 5}"#),
        (
            "POST",
            cms.into(),
            &[json],
            r#"{"kind": "Secret", "metadata": {"name": "k"}}"#,
        ),
        (
            "POST",
            cms.into(),
            &[json],
            r#"{"metadata": {"name": "r", "resourceVersion": "3"}}"#,
        ),
        ("POST", cms.into(), &[("content-type", "text/plain")], "x"),
        ("PUT", format!("{cms}/m"), &[json], "null"),
        ("PATCH", format!("{cms}/m"), &[merge], r#""just a string""#),
        ("PATCH", format!("{cms}/m"), &[merge], "{"),
        (
            "PATCH",
            format!("{cms}/m?fieldManager=t"),
            &[apply],
            "- a list",
        ),
        (
            "PATCH",
            format!("{cms}/m?fieldManager=t"),
            &[apply],
            "{kind: ConfigMap}",
        ),
        (
            "PATCH",
            format!("{cms}/m"),
            &[apply],
            "{apiVersion: v1, kind: ConfigMap}",
        ),
        ("PATCH", format!("{cms}/m?force=true"), &[merge], "{}"),
        ("PATCH", format!("{cms}/m?dryRun=Some"), &[merge], "{}"),
        ("DELETE", format!("{cms}/m"), &[json], "{"),
        ("GET", format!("{cms}?limit=abc"), &[], ""),
        ("GET", format!("{cms}?continue=%21%21%21"), &[], ""),
        ("GET", format!("{cms}?resourceVersionMatch=Exact"), &[], ""),
        ("GET", format!("{cms}?resourceVersion=abc"), &[], ""),
        ("GET", format!("{cms}?labelSelector=a+in+%28b"), &[], ""),
        ("GET", format!("{cms}?watch=maybe"), &[], ""),
        (
            "GET",
            format!("{cms}?watch=true&timeoutSeconds=-1"),
            &[],
            "",
        ),
        (
            "GET",
            format!("{cms}?watch=true&resourceVersion=abc"),
            &[],
            "",
        ),
        ("GET", format!("{cms}/m/status"), &[], ""),
        ("POST", format!("{cms}/m"), &[json], "{}"),
        ("GET", "/api/v2".into(), &[], ""),
        (
            "GET",
            "/apis/notification.toolkit.fluxcd.io/v1beta3/alerts/x".into(),
            &[],
            "",
        ),
    ];
    for (method, uri, headers, body) in cases {
        let (code, _, answer) = raw(&client, method, uri, headers, body).await;
        assert!(
            (400..500).contains(&code) || code == 500,
            "{method} {uri}: {code} {answer}"
        );
        assert_eq!(answer["kind"], "Status", "{method} {uri}: {answer}");
        assert_eq!(answer["code"], code, "{method} {uri}: {answer}");
    }
    // Server-side apply over garbage managedFields still works.
    let (code, _, answer) = raw(
        &client,
        "PATCH",
        &format!("{cms}/m?fieldManager=t"),
        &[apply],
        "{apiVersion: v1, kind: ConfigMap, data: {a: b}}",
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(client.apiserver_version().await.unwrap().major, "1");
}

#[tokio::test]
async fn replace_with_a_stale_resource_version_conflicts() {
    let server = TestApiServer::start();
    let client = server.client();
    let api = config_maps(&client);
    let created = api
        .create(&PostParams::default(), &config_map("c", &[("a", "1")]))
        .await
        .unwrap();

    let mut newer = created.clone();
    newer.data = Some(BTreeMap::from([("a".into(), "2".into())]));
    let replaced = api
        .replace("c", &PostParams::default(), &newer)
        .await
        .unwrap();
    assert!(rv(&replaced) > rv(&created));
    assert_eq!(replaced.metadata.uid, created.metadata.uid);
    assert_eq!(
        replaced.metadata.creation_timestamp,
        created.metadata.creation_timestamp
    );

    let stale = api_error(api.replace("c", &PostParams::default(), &newer).await);
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert!(
        stale.message.contains("the object has been modified"),
        "{}",
        stale.message
    );

    // Without a resourceVersion the update is unconditional.
    let mut unconditional = replaced.clone();
    unconditional.metadata.resource_version = None;
    unconditional.data = Some(BTreeMap::from([("a".into(), "3".into())]));
    api.replace("c", &PostParams::default(), &unconditional)
        .await
        .unwrap();

    let missing = api_error(
        api.replace("missing", &PostParams::default(), &{
            let mut m = config_map("missing", &[]);
            m.metadata.resource_version = None;
            m
        })
        .await,
    );
    assert_eq!(missing.code, 404);

    let renamed = api_error(
        api.replace("other", &PostParams::default(), &unconditional)
            .await,
    );
    assert_eq!(renamed.code, 400, "body name must match the URL");
}

#[tokio::test]
async fn delete_answers_like_the_real_server() {
    let server = TestApiServer::start();
    let client = server.client();
    let cms = config_maps(&client);
    let alerts = alerts(&client, "v1beta3");

    assert_eq!(
        api_error(cms.delete("missing", &DeleteParams::default()).await).code,
        404
    );

    // Built-in kinds answer a Success Status, custom resources the object.
    let cm = cms
        .create(&PostParams::default(), &config_map("c", &[]))
        .await
        .unwrap();
    let status = cms
        .delete("c", &DeleteParams::default())
        .await
        .unwrap()
        .right()
        .expect("Status");
    assert_eq!(
        status.details.as_ref().unwrap().uid,
        cm.metadata.uid.clone().unwrap()
    );
    assert!(cms.get_opt("c").await.unwrap().is_none());

    alerts
        .create(&PostParams::default(), &alert("plain", "info"))
        .await
        .unwrap();
    let deleted = alerts
        .delete("plain", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("object");
    assert_eq!(deleted.name_any(), "plain");

    // Finalizers hold the object: DELETE only sets deletionTimestamp.
    let mut held = alert("held", "info");
    held.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    let created = alerts.create(&PostParams::default(), &held).await.unwrap();
    let pending = alerts
        .delete("held", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("object");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(
        pending.metadata.generation,
        Some(2),
        "setting deletionTimestamp bumps generation"
    );
    assert!(rv(&pending) > rv(&created));
    let again = alerts
        .delete("held", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("object");
    assert_eq!(rv(&again), rv(&pending), "a second delete changes nothing");
    assert!(alerts.get_opt("held").await.unwrap().is_some());

    // Removing the last finalizer completes the deletion.
    alerts
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert!(alerts.get_opt("held").await.unwrap().is_none());

    // Preconditions are honoured.
    let cm = cms
        .create(&PostParams::default(), &config_map("pre", &[]))
        .await
        .unwrap();
    let wrong = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: Some("1".into()),
            uid: None,
        }),
        ..Default::default()
    };
    assert_eq!(api_error(cms.delete("pre", &wrong).await).code, 409);
    assert!(cms.get_opt(&cm.name_any()).await.unwrap().is_some());
}

// ----------------------------------------------------------------- patches

#[tokio::test]
async fn patch_content_types() {
    let server = TestApiServer::start();
    let client = server.client();
    let cms = config_maps(&client);
    let base = "/api/v1/namespaces/flux-system/configmaps/p";
    cms.create(
        &PostParams::default(),
        &config_map("p", &[("a", "1"), ("b", "2")]),
    )
    .await
    .unwrap();

    let merged = cms
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "10", "b": null}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged.data.unwrap(),
        BTreeMap::from([("a".into(), "10".into())])
    );

    // Strategic merge patch: finalizers are a merged set.
    cms.patch(
        "p",
        &PatchParams::default(),
        &Patch::Strategic(json!({"metadata": {"finalizers": ["x/one"]}})),
    )
    .await
    .unwrap();
    let strategic = cms
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"finalizers": ["x/two"]}, "data": {"c": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(strategic.metadata.finalizers.unwrap(), ["x/one", "x/two"]);
    assert_eq!(strategic.data.unwrap()["c"], "3");

    // Custom resources refuse strategic merge patch, as upstream.
    let alerts = alerts(&client, "v1beta3");
    alerts
        .create(&PostParams::default(), &alert("a", "info"))
        .await
        .unwrap();
    let refused = api_error(
        alerts
            .patch(
                "a",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {}})),
            )
            .await,
    );
    assert_eq!(refused.code, 415);

    let json_patch = [("content-type", "application/json-patch+json")];
    let (code, _, body) = raw(
        &client,
        "PATCH",
        base,
        &json_patch,
        r#"[{"op":"replace","path":"/data/a","value":"11"}]"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["a"], "11");
    let (code, _, body) = raw(
        &client,
        "PATCH",
        base,
        &json_patch,
        r#"[{"op":"test","path":"/data/a","value":"nope"}]"#,
    )
    .await;
    assert_eq!(code, 422);
    assert_failure(&body, 422, "Invalid");
    let (code, _, body) = raw(
        &client,
        "PATCH",
        base,
        &json_patch,
        r#"[{"op":"remove","path":"/data/missing"}]"#,
    )
    .await;
    assert_eq!(code, 422, "{body}");
    let (code, _, _) = raw(&client, "PATCH", base, &json_patch, "not a patch").await;
    assert_eq!(code, 400);

    // A stale resourceVersion in any patch body is a conflict.
    let stale = json!({"metadata": {"resourceVersion": "1"}, "data": {"a": "12"}});
    let conflict = api_error(
        cms.patch("p", &PatchParams::default(), &Patch::Merge(&stale))
            .await,
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    let (code, _, _) = raw(
        &client,
        "PATCH",
        base,
        &json_patch,
        r#"[{"op":"replace","path":"/metadata/resourceVersion","value":"2"}]"#,
    )
    .await;
    assert_eq!(code, 409);
    let current = cms.get("p").await.unwrap();
    let fresh =
        json!({"metadata": {"resourceVersion": current.resource_version()}, "data": {"a": "12"}});
    cms.patch("p", &PatchParams::default(), &Patch::Merge(&fresh))
        .await
        .unwrap();

    assert_eq!(
        api_error(
            cms.patch("missing", &PatchParams::default(), &Patch::Merge(json!({})))
                .await
        )
        .code,
        404
    );
}

#[tokio::test]
async fn server_side_apply_tracks_field_managers() {
    let server = TestApiServer::start();
    let client = server.client();
    let api = alerts(&client, "v1beta3");
    let config = |spec: Value| {
        json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
            "kind": "Alert",
            "metadata": {"name": "ssa", "labels": {"team": "a"}},
            "spec": spec,
        })
    };

    let created = api
        .patch(
            "ssa",
            &PatchParams::apply("one"),
            &Patch::Apply(config(json!({"eventSeverity": "info", "summary": "s"}))),
        )
        .await
        .unwrap();
    assert_eq!(created.data["spec"]["summary"], "s");
    assert_eq!(created.labels()["team"], "a");
    let managed = created.metadata.managed_fields.clone().unwrap();
    assert_eq!(managed.len(), 1);
    assert_eq!(managed[0].manager.as_deref(), Some("one"));
    assert_eq!(managed[0].operation.as_deref(), Some("Apply"));
    let apply = &server.requests()[server.requests().len() - 1];
    assert_eq!(apply.content_type, "application/apply-patch+yaml");
    assert_eq!(apply.query_param("fieldManager").as_deref(), Some("one"));

    // Re-applying without a field removes it; the same config is a no-op.
    let dropped = api
        .patch(
            "ssa",
            &PatchParams::apply("one"),
            &Patch::Apply(config(json!({"eventSeverity": "info"}))),
        )
        .await
        .unwrap();
    assert!(
        dropped.data["spec"].get("summary").is_none(),
        "{:?}",
        dropped.data
    );
    assert_eq!(dropped.metadata.generation, Some(2));
    let same = api
        .patch(
            "ssa",
            &PatchParams::apply("one"),
            &Patch::Apply(config(json!({"eventSeverity": "info"}))),
        )
        .await
        .unwrap();
    assert_eq!(
        rv(&same),
        rv(&dropped),
        "re-applying the same config keeps the resourceVersion"
    );

    // Another manager changing an owned field conflicts unless forced.
    let theirs = json!({
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
        "kind": "Alert",
        "metadata": {"name": "ssa"},
        "spec": {"eventSeverity": "error"},
    });
    let conflict = api_error(
        api.patch("ssa", &PatchParams::apply("two"), &Patch::Apply(&theirs))
            .await,
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert!(conflict.message.contains("one"), "{}", conflict.message);
    let forced = api
        .patch(
            "ssa",
            &PatchParams::apply("two").force(),
            &Patch::Apply(&theirs),
        )
        .await
        .unwrap();
    assert_eq!(forced.data["spec"]["eventSeverity"], "error");

    // "one" no longer owns eventSeverity: dropping it from its config keeps it.
    let kept = api
        .patch(
            "ssa",
            &PatchParams::apply("one"),
            &Patch::Apply(config(json!({"providerRef": {"name": "p"}}))),
        )
        .await
        .unwrap();
    assert_eq!(kept.data["spec"]["eventSeverity"], "error");
    assert_eq!(kept.data["spec"]["providerRef"]["name"], "p");

    // Apply to the status subresource changes status only.
    let status = json!({
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
        "kind": "Alert",
        "metadata": {"name": "ssa"},
        "spec": {"eventSeverity": "ignored"},
        "status": {"observedGeneration": 4},
    });
    let applied = api
        .patch_status(
            "ssa",
            &PatchParams::apply("controller").force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();
    assert_eq!(applied.data["status"]["observedGeneration"], 4);
    assert_eq!(applied.data["spec"]["eventSeverity"], "error");
    assert_eq!(applied.metadata.generation, kept.metadata.generation);
    let again = api
        .patch_status(
            "ssa",
            &PatchParams::apply("controller").force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();
    assert_eq!(rv(&again), rv(&applied));
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status() {
    let server = TestApiServer::start();
    let client = server.client();
    let api = alerts(&client, "v1beta2");
    api.create(&PostParams::default(), &alert_at("v1beta2", "s", "info"))
        .await
        .unwrap();

    // /status writes change only .status.
    let patched = api
        .patch_status(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"labels": {"ignored": "yes"}},
                "spec": {"eventSeverity": "error"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            })),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["spec"]["eventSeverity"], "info");
    assert_eq!(patched.data["status"]["conditions"][0]["type"], "Ready");
    assert!(patched.metadata.labels.is_none());

    let mut replaced = patched.clone();
    replaced.data["status"] = json!({"observedGeneration": 1});
    replaced.data["spec"]["eventSeverity"] = "error".into();
    let replaced = api
        .replace_status("s", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(replaced.data["status"], json!({"observedGeneration": 1}));
    assert_eq!(replaced.data["spec"]["eventSeverity"], "info");
    assert_eq!(
        api.get_status("s").await.unwrap().data["status"]["observedGeneration"],
        1
    );

    // Main-resource writes ignore .status.
    let mut main = replaced.clone();
    main.data["status"] = json!({"observedGeneration": 99});
    main.data["spec"]["eventSeverity"] = "error".into();
    let main = api
        .replace("s", &PostParams::default(), &main)
        .await
        .unwrap();
    assert_eq!(main.data["status"]["observedGeneration"], 1);
    assert_eq!(main.data["spec"]["eventSeverity"], "error");
    let merged = api
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 50}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.data["status"]["observedGeneration"], 1);
    assert_eq!(
        rv(&merged),
        rv(&main),
        "a main-resource status write changes nothing"
    );
}

#[tokio::test]
async fn a_write_that_changes_nothing_keeps_the_resource_version_and_sends_no_event() {
    let server = TestApiServer::start();
    let client = server.client();
    let api = alerts(&client, "v1beta3");
    api.create(&PostParams::default(), &alert("quiet", "info"))
        .await
        .unwrap();
    let status =
        Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
    let first = api
        .patch_status("quiet", &PatchParams::default(), &status)
        .await
        .unwrap();

    let events = api
        .watch(
            &WatchParams::default().timeout(2),
            &first.resource_version().unwrap(),
        )
        .await
        .unwrap();
    for _ in 0..3 {
        let again = api
            .patch_status("quiet", &PatchParams::default(), &status)
            .await
            .unwrap();
        assert_eq!(rv(&again), rv(&first));
        let replaced = api
            .replace_status("quiet", &PostParams::default(), &again)
            .await
            .unwrap();
        assert_eq!(rv(&replaced), rv(&first));
    }
    let seen: Vec<WatchEvent<DynamicObject>> =
        within("watch end", events.try_collect()).await.unwrap();
    for event in &seen {
        match event {
            WatchEvent::Bookmark(b) => assert_eq!(
                b.metadata.resource_version,
                first.resource_version().unwrap()
            ),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(server.resource_version(), rv(&first));
}

// ---------------------------------------------------------- metadata-only

#[tokio::test]
async fn metadata_only_requests() {
    let server = TestApiServer::start();
    let client = server.client();
    let api = alerts(&client, "v1beta3");
    let mut labelled = alert("m", "info");
    labelled.metadata.labels = Some(BTreeMap::from([("app".into(), "x".into())]));
    api.create(&PostParams::default(), &labelled).await.unwrap();
    server.clear_requests();

    let meta = api.get_metadata("m").await.unwrap();
    assert_eq!(meta.metadata.labels.unwrap()["app"], "x");
    let types = meta.types.unwrap();
    assert_eq!(
        (types.kind.as_str(), types.api_version.as_str()),
        ("PartialObjectMetadata", "meta.k8s.io/v1")
    );
    let list = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.types.kind, "PartialObjectMetadataList");

    let requests = server.requests();
    assert_eq!(
        requests[0].accept,
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
    );
    assert_eq!(
        requests[1].accept,
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
    );

    let (_, content_type, body) = raw(
        &client,
        "GET",
        "/apis/notification.toolkit.fluxcd.io/v1beta3/namespaces/flux-system/alerts/m",
        &[(
            "accept",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        )],
        "",
    )
    .await;
    assert!(body.get("spec").is_none(), "{body}");
    assert!(content_type.contains("as=PartialObjectMetadata"));

    // metadata_watcher lists and watches metadata only.
    #[allow(deprecated)]
    let watching = watcher::metadata_watcher(api.clone(), watcher::Config::default());
    let mut stream = watching.applied_objects().boxed();
    let first = within("initial", stream.next()).await.unwrap().unwrap();
    assert_eq!(first.name_any(), "m");
    api.patch(
        "m",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "y"}}})),
    )
    .await
    .unwrap();
    let changed = within("change", stream.next()).await.unwrap().unwrap();
    assert_eq!(changed.labels()["app"], "y");
    let watch = server
        .requests()
        .into_iter()
        .find(|r| r.is_watch())
        .expect("watch request");
    assert!(
        watch.accept.contains("as=PartialObjectMetadata"),
        "{}",
        watch.accept
    );

    // kube 5's replacement: a watcher on Api<PartialObjectMeta<K>>.
    let cms: Api<kube::core::PartialObjectMeta<ConfigMap>> =
        Api::namespaced(client.clone(), "flux-system");
    config_maps(&client)
        .create(
            &PostParams::default(),
            &config_map("meta", &[("secret", "x")]),
        )
        .await
        .unwrap();
    let (reader, writer) = reflector::store();
    tokio::spawn(
        reflector(writer, watcher(cms, watcher::Config::default())).for_each(|_| async {}),
    );
    within("metadata store", reader.wait_until_ready())
        .await
        .unwrap();
    assert_eq!(
        reader
            .state()
            .iter()
            .map(|m| m.name_any())
            .collect::<Vec<_>>(),
        ["meta"]
    );
}

// ------------------------------------------------------------------- lists

#[tokio::test]
async fn list_pages_come_from_the_first_page_snapshot() {
    let server = TestApiServer::start();
    let client = server.client();
    let api = config_maps(&client);
    for name in ["a", "b", "c", "d", "e"] {
        api.create(&PostParams::default(), &config_map(name, &[]))
            .await
            .unwrap();
    }
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    let snapshot = first.metadata.resource_version.clone().unwrap();
    assert_eq!(
        first.items.iter().map(|c| c.name_any()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let token = first.metadata.continue_.clone().expect("continue");

    // Changes after page one do not show in later pages.
    api.create(&PostParams::default(), &config_map("f", &[]))
        .await
        .unwrap();
    api.delete("d", &DeleteParams::default()).await.unwrap();
    let mut names = Vec::new();
    let mut next = Some(token.clone());
    while let Some(token) = next {
        let page = api
            .list(&ListParams::default().limit(2).continue_token(&token))
            .await
            .unwrap();
        assert_eq!(
            page.metadata.resource_version.as_deref(),
            Some(snapshot.as_str())
        );
        names.extend(page.items.iter().map(|c| c.name_any()));
        next = page.metadata.continue_.filter(|t| !t.is_empty());
    }
    assert_eq!(names, ["c", "d", "e"]);

    let fresh = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        fresh.items.iter().map(|c| c.name_any()).collect::<Vec<_>>(),
        ["a", "b", "c", "e", "f"]
    );

    // An exact resourceVersion lists that snapshot.
    let exact = api
        .list(
            &ListParams::default()
                .at(&snapshot)
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .unwrap();
    assert_eq!(exact.items.len(), 5);
    assert!(exact.items.iter().any(|c| c.name_any() == "d"));

    // Compaction expires old continue tokens and exact versions.
    server.compact();
    let expired = api_error(
        api.list(&ListParams::default().limit(2).continue_token(&token))
            .await,
    );
    assert_eq!((expired.code, expired.reason.as_str()), (410, "Expired"));
    let expired = api_error(
        api.list(
            &ListParams::default()
                .at(&snapshot)
                .matching(kube::api::VersionMatch::Exact),
        )
        .await,
    );
    assert_eq!(expired.code, 410);
}

#[tokio::test]
async fn label_and_field_selectors() {
    let server = TestApiServer::start();
    let client = server.client();
    let api = config_maps(&client);
    for (name, tier) in [("a", "web"), ("b", "db"), ("c", "web")] {
        let mut cm = config_map(name, &[]);
        cm.metadata.labels = Some(BTreeMap::from([("tier".into(), tier.into())]));
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    api.create(&PostParams::default(), &config_map("plain", &[]))
        .await
        .unwrap();
    let names = |list: kube::core::ObjectList<ConfigMap>| {
        list.items.iter().map(|c| c.name_any()).collect::<Vec<_>>()
    };
    for (selector, expected) in [
        ("tier=web", vec!["a", "c"]),
        ("tier==db", vec!["b"]),
        ("tier!=web", vec!["b", "plain"]),
        ("tier in (db, web)", vec!["a", "b", "c"]),
        ("tier notin (web)", vec!["b", "plain"]),
        ("tier", vec!["a", "b", "c"]),
        ("!tier", vec!["plain"]),
    ] {
        let listed = api
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap();
        assert_eq!(names(listed), expected, "{selector}");
    }
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(names(by_name), ["b"]);
    assert_eq!(
        api_error(api.list(&ListParams::default().fields("data.x=1")).await).code,
        400
    );
    assert_eq!(
        api_error(api.list(&ListParams::default().labels("a in (b")).await).code,
        400
    );

    // A watch with a selector sees objects enter and leave the selection.
    let start = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut events = api
        .watch(
            &WatchParams::default().labels("tier=web").timeout(5),
            &start,
        )
        .await
        .unwrap()
        .boxed();
    let relabel = |tier: &str| Patch::Merge(json!({"metadata": {"labels": {"tier": tier}}}));
    api.patch("b", &PatchParams::default(), &relabel("web"))
        .await
        .unwrap();
    api.patch("a", &PatchParams::default(), &relabel("db"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match within("selector events", events.next())
            .await
            .unwrap()
            .unwrap()
        {
            WatchEvent::Added(o) => seen.push(format!("ADDED {}", o.name_any())),
            WatchEvent::Deleted(o) => seen.push(format!("DELETED {}", o.name_any())),
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED b", "DELETED a"]);
}

// ------------------------------------------------------------------ watches

#[tokio::test]
async fn watch_streams_events_and_bookmarks() {
    let server = TestApiServer::start();
    let client = server.client();
    let api = config_maps(&client);
    let start = api
        .create(&PostParams::default(), &config_map("before", &[]))
        .await
        .unwrap();

    let mut events = api
        .watch(
            &WatchParams::default().timeout(30),
            &start.resource_version().unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    let created = api
        .create(&PostParams::default(), &config_map("w", &[("a", "1")]))
        .await
        .unwrap();
    let modified = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "2"}})),
        )
        .await
        .unwrap();
    api.delete("w", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    let mut bookmark = None;
    while bookmark.is_none() {
        match within("events", events.next()).await.unwrap().unwrap() {
            WatchEvent::Added(o) => seen.push(("ADDED", rv(&o))),
            WatchEvent::Modified(o) => seen.push(("MODIFIED", rv(&o))),
            WatchEvent::Deleted(o) => seen.push(("DELETED", rv(&o))),
            WatchEvent::Bookmark(b) => bookmark = Some(b.metadata.resource_version),
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    let deleted_rv = rv(&modified) + 1;
    assert_eq!(
        seen,
        [
            ("ADDED", rv(&created)),
            ("MODIFIED", rv(&modified)),
            ("DELETED", deleted_rv)
        ]
    );
    assert_eq!(
        bookmark,
        Some(deleted_rv.to_string()),
        "bookmarks carry the current resourceVersion"
    );
    let watch = server
        .requests()
        .into_iter()
        .find(|r| r.is_watch())
        .unwrap();
    assert_eq!(
        watch.query_param("allowWatchBookmarks").as_deref(),
        Some("true")
    );

    // Without allowWatchBookmarks there are none; timeoutSeconds ends the stream.
    let quiet = api
        .watch(
            &WatchParams {
                bookmarks: false,
                ..WatchParams::default().timeout(1)
            },
            &deleted_rv.to_string(),
        )
        .await
        .unwrap();
    let rest: Vec<_> = within("timeout", quiet.try_collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(rest.is_empty(), "{rest:?}");

    // resourceVersion 0 (and unset) starts with the current objects.
    let (code, _, body) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/flux-system/configmaps?watch=1&timeoutSeconds=1",
        &[],
        "",
    )
    .await;
    // One line: the ADDED event of the only object (no bookmarks asked).
    assert_eq!(code, 200);
    assert_eq!(body["type"], "ADDED", "{body}");
    assert_eq!(
        body["object"]["kind"], "ConfigMap",
        "watch objects carry their kind"
    );
    let initial: Vec<_> = within(
        "initial",
        api.watch(&WatchParams::default().timeout(1), "0")
            .await
            .unwrap()
            .try_collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    assert!(
        matches!(&initial[0], WatchEvent::Added(o) if o.name_any() == "before"),
        "{initial:?}"
    );
    assert!(matches!(initial.last(), Some(WatchEvent::Bookmark(_))));
}

#[tokio::test]
async fn a_watch_from_a_compacted_version_gets_410() {
    let server = TestApiServer::start();
    let client = server.client();
    let api = config_maps(&client);
    let old = api
        .create(&PostParams::default(), &config_map("x", &[]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &config_map("y", &[]))
        .await
        .unwrap();
    server.compact();

    let events: Vec<_> = within(
        "gone",
        api.watch(&WatchParams::default(), &old.resource_version().unwrap())
            .await
            .unwrap()
            .try_collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    match &events[..] {
        [WatchEvent::Error(status)] => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected one 410 ERROR event, got {other:?}"),
    }
    // Resuming from a version handed out after compaction works.
    let current = server.resource_version().to_string();
    let ok: Vec<_> = within(
        "ok",
        api.watch(&WatchParams::default().timeout(1), &current)
            .await
            .unwrap()
            .try_collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    assert!(
        ok.iter().all(|e| matches!(e, WatchEvent::Bookmark(_))),
        "{ok:?}"
    );

    // An open watch ends with a 410 ERROR event when history is compacted.
    let open = api
        .watch(&WatchParams::default().timeout(30), &current)
        .await
        .unwrap();
    server.compact();
    let events: Vec<_> = within("expired", open.try_collect::<Vec<_>>())
        .await
        .unwrap();
    match events.last() {
        Some(WatchEvent::Error(status)) => assert_eq!(status.code, 410),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    // Lists resuming from before it are too old as well.
    let status = api_error(
        api.list(
            &ListParams::default()
                .at(&current)
                .matching(kube::api::VersionMatch::Exact),
        )
        .await,
    );
    assert_eq!(status.code, 410);
}

#[tokio::test]
async fn streaming_lists_end_with_the_initial_events_bookmark() {
    let server = TestApiServer::start();
    let client = server.client();
    let api = config_maps(&client);
    for name in ["s1", "s2"] {
        api.create(&PostParams::default(), &config_map(name, &[]))
            .await
            .unwrap();
    }
    let params = WatchParams {
        send_initial_events: true,
        ..WatchParams::default().timeout(5)
    };
    let mut events = api.watch(&params, "").await.unwrap().boxed();
    let mut added = Vec::new();
    loop {
        match within("initial events", events.next())
            .await
            .unwrap()
            .unwrap()
        {
            WatchEvent::Added(o) => added.push(o.name_any()),
            WatchEvent::Bookmark(b) => {
                assert_eq!(
                    b.metadata
                        .annotations
                        .get("k8s.io/initial-events-end")
                        .map(String::as_str),
                    Some("true")
                );
                assert_eq!(
                    b.metadata.resource_version,
                    server.resource_version().to_string()
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(added, ["s1", "s2"]);
    api.create(&PostParams::default(), &config_map("s3", &[]))
        .await
        .unwrap();
    loop {
        match within("live event", events.next()).await.unwrap().unwrap() {
            WatchEvent::Added(o) => {
                assert_eq!(o.name_any(), "s3");
                break;
            }
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let request = server
        .requests()
        .into_iter()
        .find(|r| r.is_watch())
        .unwrap();
    assert_eq!(
        request.query_param("resourceVersionMatch").as_deref(),
        Some("NotOlderThan")
    );

    // sendInitialEvents without resourceVersionMatch is invalid, as upstream.
    let (code, _, body) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/flux-system/configmaps?watch=true&sendInitialEvents=true",
        &[],
        "",
    )
    .await;
    assert_eq!(code, 422);
    assert_failure(&body, 422, "Invalid");

    // kube's watcher in streaming-list mode.
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(
        writer,
        watcher(api.clone(), watcher::Config::default().streaming_lists()),
    );
    tokio::spawn(stream.for_each(|_| async {}));
    within("streaming list ready", reader.wait_until_ready())
        .await
        .unwrap();
    let mut names: Vec<String> = reader.state().iter().map(|c| c.name_any()).collect();
    names.sort();
    assert_eq!(names, ["s1", "s2", "s3"]);
    let watch = server
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.is_watch() && r.query_param("sendInitialEvents").is_some())
        .expect("the watcher's streaming-list watch");
    assert_eq!(watch.query_param("resourceVersion").as_deref(), Some("0"));
}

/// A watch that ends at timeoutSeconds must end its HTTP response properly
/// (chunked terminator, connection kept alive), or the client's pool holds
/// a dead connection.
#[tokio::test]
async fn a_finished_watch_leaves_the_connection_usable() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestApiServer::start();
    let address = server.url.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n");
    socket
        .write_all(request("/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1&allowWatchBookmarks=true").as_bytes())
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !received.ends_with(b"0\r\n\r\n") {
        let n = within("watch end", socket.read(&mut buffer)).await.unwrap();
        assert!(
            n > 0,
            "server closed the connection: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );

    socket
        .write_all(request("/version").as_bytes())
        .await
        .unwrap();
    let n = within("second response", socket.read(&mut buffer))
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"),
        "same connection answers"
    );

    // The kube client reuses its pooled connection after a finished watch.
    let client = server.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    server.clear_requests();
    let events = api
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap();
    within("watch", events.try_collect::<Vec<_>>())
        .await
        .unwrap();
    // Give hyper a moment to return the connection to its pool (else the
    // next request may race it with a fresh connection).
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        api.list(&ListParams::default()).await.unwrap();
    }
    let peers = server.peers();
    assert_eq!(peers.len(), 4);
    assert!(
        peers.iter().all(|p| *p == peers[0]),
        "one connection throughout: {peers:?}"
    );
}

/// `drop_watches()` cuts open watch connections mid-response (no final
/// chunk), as a crashed server or a broken network does.
#[tokio::test]
async fn drop_watches_aborts_open_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestApiServer::start();
    let address = server.url.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "GET /api/v1/namespaces/default/configmaps?watch=true HTTP/1.1\r\nHost: {address}\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = within("headers", socket.read(&mut buffer)).await.unwrap();
        assert!(n > 0);
        received.extend_from_slice(&buffer[..n]);
    }
    server.drop_watches();
    loop {
        let n = within("connection drop", socket.read(&mut buffer))
            .await
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buffer[..n]);
    }
    assert!(
        !received.ends_with(b"0\r\n\r\n"),
        "no clean end: {}",
        String::from_utf8_lossy(&received)
    );

    // Through kube, the stream of a dropped watch ends (to be resumed).
    let client = server.client();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let events = api.watch(&WatchParams::default(), "0").await.unwrap();
    let mut events = events.boxed();
    assert!(matches!(
        within("bookmark", events.next()).await,
        Some(Ok(WatchEvent::Bookmark(_)))
    ));
    server.drop_watches();
    within("stream end", async {
        while let Some(item) = events.next().await {
            assert!(item.is_err(), "only an error may follow a drop: {item:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_contents() {
    let server = TestApiServer::start();
    let client = server.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    create_yaml(
        &client,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: temp\n",
    )
    .await
    .unwrap();
    let created = namespaces.get("temp").await.unwrap();
    assert_eq!(created.labels()["kubernetes.io/metadata.name"], "temp");
    let in_temp: Api<ConfigMap> = Api::namespaced(client.clone(), "temp");
    in_temp
        .create(&PostParams::default(), &config_map("inside", &[]))
        .await
        .unwrap();

    let all: Api<ConfigMap> = Api::all(client.clone());
    let from = server.resource_version().to_string();
    let mut events = all
        .watch(&WatchParams::default().timeout(5), &from)
        .await
        .unwrap()
        .boxed();
    let terminating = namespaces
        .delete("temp", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("namespace");
    assert_eq!(
        terminating.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert!(namespaces.get_opt("temp").await.unwrap().is_none());
    assert!(server.object("", "configmaps", "temp", "inside").is_none());
    loop {
        match within("DELETED", events.next()).await.unwrap().unwrap() {
            WatchEvent::Deleted(cm) => {
                assert_eq!(cm.name_any(), "inside");
                break;
            }
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let server = TestApiServer::start();
    let client = server.client();
    let api = config_maps(&client);
    let before = server.resource_version();
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let answered = api
        .create(&dry, &config_map("dry", &[("a", "1")]))
        .await
        .unwrap();
    assert_eq!(answered.name_any(), "dry");
    assert!(api.get_opt("dry").await.unwrap().is_none());
    api.create(&PostParams::default(), &config_map("dry", &[("a", "1")]))
        .await
        .unwrap();
    let after_create = server.resource_version();
    let patched = api
        .patch(
            "dry",
            &PatchParams::default().dry_run(),
            &Patch::Merge(json!({"data": {"a": "2"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["a"], "2");
    assert_eq!(api.get("dry").await.unwrap().data.unwrap()["a"], "1");
    assert_eq!(server.resource_version(), after_create);
    assert_eq!(after_create, before + 1);
}

// ------------------------------------------------------- watcher recovery

/// Polls `stream` until `done` holds (the stream is only driven here, so
/// between calls the client neither reads nor reconnects).
async fn drive_until<S, T>(stream: &mut S, what: &str, mut done: impl FnMut() -> bool)
where
    S: futures::Stream<Item = T> + Unpin,
{
    within(what, async {
        while !done() {
            if stream.next().await.is_none() {
                panic!("stream ended");
            }
        }
    })
    .await;
}

fn snapshot(reader: &reflector::Store<ConfigMap>) -> BTreeMap<String, String> {
    reader
        .state()
        .iter()
        .map(|c| {
            let value = c
                .data
                .as_ref()
                .and_then(|d| d.get("v"))
                .cloned()
                .unwrap_or_default();
            (c.name_any(), value)
        })
        .collect()
}

fn expected(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

#[tokio::test]
async fn watcher_recovers_from_a_dropped_watch_and_compaction() {
    let server = TestApiServer::start();
    let client = server.client();
    let api = config_maps(&client);
    for name in ["keep", "change", "remove"] {
        api.create(&PostParams::default(), &config_map(name, &[("v", "1")]))
            .await
            .unwrap();
    }
    let (reader, writer) = reflector::store::<ConfigMap>();
    let mut stream = reflector(writer, watcher(api.clone(), watcher::Config::default())).boxed();
    let start = expected(&[("change", "1"), ("keep", "1"), ("remove", "1")]);
    drive_until(&mut stream, "initial sync", || snapshot(&reader) == start).await;
    // Let the watch request go out after the list.
    within("watch open", async {
        while !server.requests().iter().any(|r| r.is_watch()) {
            let _ = tokio::time::timeout(Duration::from_millis(20), stream.next()).await;
        }
    })
    .await;

    // A drop alone: the watcher resumes from its resourceVersion and gets
    // what happened meanwhile from the history, without a re-list.
    server.drop_watches();
    let dropped_at = server.requests().len();
    api.patch(
        "keep",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "0"}})),
    )
    .await
    .unwrap();
    let resumed = expected(&[("change", "1"), ("keep", "0"), ("remove", "1")]);
    drive_until(&mut stream, "resume after drop", || {
        snapshot(&reader) == resumed
    })
    .await;
    let after: Vec<_> = server.requests().split_off(dropped_at);
    assert!(
        after.iter().all(|r| r.is_watch() || r.method != "GET"),
        "no re-list after a plain drop: {after:?}"
    );
    let resume = after
        .iter()
        .find(|r| r.is_watch())
        .expect("a resumed watch");
    assert!(
        resume
            .query_param("resourceVersion")
            .is_some_and(|rv| rv != "0")
    );
    api.patch(
        "keep",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "1"}})),
    )
    .await
    .unwrap();
    drive_until(&mut stream, "live again", || snapshot(&reader) == start).await;

    // The connection drops; changes happen while the client is away, and
    // the history they are in is compacted.
    server.drop_watches();
    api.patch(
        "change",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    api.delete("remove", &DeleteParams::default())
        .await
        .unwrap();
    api.create(&PostParams::default(), &config_map("new", &[("v", "1")]))
        .await
        .unwrap();
    server.compact();
    let compacted_at = server.requests().len();

    let converged = expected(&[("change", "2"), ("keep", "1"), ("new", "1")]);
    drive_until(&mut stream, "re-list after 410", || {
        snapshot(&reader) == converged
    })
    .await;
    let after: Vec<_> = server.requests().split_off(compacted_at);
    assert!(after.iter().any(|r| r.is_watch()), "the watcher resumed");
    assert!(
        after.iter().any(|r| r.method == "GET" && !r.is_watch()),
        "the 410 forced a re-list: {after:?}"
    );

    // It keeps following live changes afterwards.
    api.patch(
        "keep",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "3"}})),
    )
    .await
    .unwrap();
    let live = expected(&[("change", "2"), ("keep", "3"), ("new", "1")]);
    drive_until(&mut stream, "live change", || snapshot(&reader) == live).await;
}

#[tokio::test]
async fn a_running_reflector_converges_through_repeated_drops() {
    let server = TestApiServer::start();
    let client = server.client();
    let api = config_maps(&client);
    let (reader, writer) = reflector::store::<ConfigMap>();
    let config = watcher::Config::default().page_size(2);
    let stream = reflector(writer, watcher(api.clone(), config).default_backoff());
    let task = tokio::spawn(stream.for_each(|_| async {}));
    within("ready", reader.wait_until_ready()).await.unwrap();

    let mut want = BTreeMap::new();
    for round in 0..6 {
        let name = format!("cm-{}", round % 4);
        let value = round.to_string();
        if round == 4 {
            api.delete("cm-1", &DeleteParams::default()).await.unwrap();
            want.remove("cm-1");
        }
        match api.get_opt(&name).await.unwrap() {
            Some(_) => {
                api.patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": {"v": value}})),
                )
                .await
                .unwrap();
            }
            None => {
                api.create(&PostParams::default(), &config_map(&name, &[("v", &value)]))
                    .await
                    .unwrap();
            }
        }
        want.insert(name, value);
        server.drop_watches();
        if round % 2 == 1 {
            server.compact();
        }
    }
    within("converged", async {
        while snapshot(&reader) != want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    task.abort();
}

// ---------------------------------------------------------------- discovery

#[tokio::test]
async fn discovery_legacy_and_aggregated() {
    let server = TestApiServer::start();
    let client = server.client();

    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    for group in [
        "",
        NOTIFICATION,
        "events.k8s.io",
        "coordination.k8s.io",
        "kustomize.toolkit.fluxcd.io",
        "helm.toolkit.fluxcd.io",
        "source.toolkit.fluxcd.io",
    ] {
        assert!(discovery.has_group(group), "{group}");
    }
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk(NOTIFICATION, "v1beta1", "Alert"))
        .unwrap();
    assert_eq!(ar.plural, "alerts");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    assert!(
        caps.subresources
            .iter()
            .any(|(sub, _)| sub.plural == "status")
    );
    let notification = discovery.get(NOTIFICATION).unwrap();
    assert_eq!(notification.preferred_version_or_latest(), "v1beta3");
    let (ns, ns_caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Namespace"))
        .unwrap();
    assert_eq!(
        (ns.plural.as_str(), ns_caps.scope),
        ("namespaces", kube::discovery::Scope::Cluster)
    );

    server.clear_requests();
    let aggregated = kube::discovery::Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    assert_eq!(
        server.requests().len(),
        2,
        "aggregated discovery is two requests"
    );
    let (ar, caps) = aggregated
        .resolve_gvk(&GroupVersionKind::gvk(NOTIFICATION, "v1beta2", "Provider"))
        .unwrap();
    assert_eq!(ar.plural, "providers");
    assert!(
        caps.subresources
            .iter()
            .any(|(sub, _)| sub.plural == "status")
    );
    assert!(
        aggregated
            .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Secret"))
            .is_some()
    );
    let accept = &server.requests()[0].accept;
    assert!(
        accept.starts_with("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"),
        "{accept}"
    );

    let (_, content_type, body) = raw(&client, "GET", "/apis", &[("accept", accept)], "").await;
    assert_eq!(
        content_type,
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    assert_eq!(body["kind"], "APIGroupDiscoveryList");
    let beta = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    let (_, _, body) = raw(&client, "GET", "/api", &[("accept", beta)], "").await;
    assert_eq!(body["apiVersion"], "apidiscovery.k8s.io/v2beta1");
    let (_, _, body) = raw(
        &client,
        "GET",
        "/api",
        &[("accept", "application/json")],
        "",
    )
    .await;
    assert_eq!(body["kind"], "APIVersions");

    let (ar, caps) = kube::discovery::pinned_kind(
        &client,
        &GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"),
    )
    .await
    .unwrap();
    assert_eq!(ar.plural, "leases");
    assert!(caps.supports_operation(kube::discovery::verbs::WATCH));
    assert!(
        kube::discovery::pinned_kind(&client, &GroupVersionKind::gvk(NOTIFICATION, "v1", "Alert"))
            .await
            .is_err()
    );
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
}

// ------------------------------------------------------- events and leases

#[tokio::test]
async fn the_events_recorder_publishes_and_patches_series() {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let server = TestApiServer::start();
    let client = server.client();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "herald".into(),
            instance: None,
        },
    );
    let regarding = ObjectReference {
        api_version: Some("notification.toolkit.fluxcd.io/v1beta3".into()),
        kind: Some("Alert".into()),
        name: Some("a".into()),
        namespace: Some("flux-system".into()),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: "ProviderMissing".into(),
        note: Some("provider slack not found".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder.publish(&event, &regarding).await.unwrap();
    recorder.publish(&event, &regarding).await.unwrap();

    let methods: Vec<(String, String)> = server
        .requests()
        .into_iter()
        .map(|r| (r.method, r.content_type))
        .collect();
    assert_eq!(
        methods,
        [
            ("POST".to_owned(), "application/json".to_owned()),
            (
                "PATCH".to_owned(),
                "application/merge-patch+json".to_owned()
            )
        ]
    );
    let events: Api<EventsEvent> = Api::namespaced(client.clone(), "flux-system");
    let listed = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    let published = &listed.items[0];
    assert_eq!(published.series.as_ref().unwrap().count, 2);
    assert_eq!(published.note.as_deref(), Some("provider slack not found"));
    assert_eq!(published.reporting_controller.as_deref(), Some("herald"));

    // The same Event through the core API, as upstream converts it.
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "flux-system");
    let core_event = core.get(&published.name_any()).await.unwrap();
    assert_eq!(
        core_event.message.as_deref(),
        Some("provider slack not found")
    );
    assert_eq!(core_event.involved_object.name.as_deref(), Some("a"));
    assert_eq!(core_event.reporting_component.as_deref(), Some("herald"));
    let selected = core
        .list(&ListParams::default().fields("involvedObject.kind=Alert,reason=ProviderMissing"))
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 1);
}

#[tokio::test]
async fn leases_round_trip() {
    let server = TestApiServer::start();
    let client = server.client();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "flux-system");
    let lease: Lease = serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "herald-leader"},
        "spec": {
            "holderIdentity": "pod-a",
            "leaseDurationSeconds": 15,
            "acquireTime": "2025-01-02T03:04:05.123456Z",
            "renewTime": "2025-01-02T03:04:06.654321Z",
            "leaseTransitions": 0,
        },
    }))
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    assert_eq!(created.spec, lease.spec);
    let got = leases.get("herald-leader").await.unwrap();
    assert_eq!(got.spec, lease.spec);

    let mut renewed = got.clone();
    let spec = renewed.spec.as_mut().unwrap();
    spec.holder_identity = Some("pod-b".into());
    spec.lease_transitions = Some(1);
    spec.renew_time = serde_json::from_value(json!("2025-01-02T03:05:00.000001Z")).unwrap();
    let replaced = leases
        .replace("herald-leader", &PostParams::default(), &renewed)
        .await
        .unwrap();
    assert_eq!(replaced.spec, renewed.spec);
    let stored = server
        .object(
            "coordination.k8s.io",
            "leases",
            "flux-system",
            "herald-leader",
        )
        .unwrap();
    assert_eq!(stored["spec"]["renewTime"], "2025-01-02T03:05:00.000001Z");
    assert_eq!(stored["spec"]["holderIdentity"], "pod-b");

    // Two candidates racing with the same read: the second write loses.
    let stale = api_error(
        leases
            .replace("herald-leader", &PostParams::default(), &renewed)
            .await,
    );
    assert_eq!(stale.code, 409);
}

// ------------------------------------------------- helpers for other tests

#[tokio::test]
async fn create_yaml_creates_the_seed_manifests() {
    let server = TestApiServer::start();
    let client = server.client();
    let seed = support::fixtures().join("seed");
    for file in support::SEED {
        let yaml = std::fs::read_to_string(seed.join(file)).unwrap();
        create_yaml(&client, &yaml)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e:#}"));
    }
    assert!(server.object("", "namespaces", "", "my-app").is_some());
    assert!(
        server
            .object(
                "kustomize.toolkit.fluxcd.io",
                "kustomizations",
                "flux-system",
                "my-app-kustomization"
            )
            .is_some()
    );
    let alert = server
        .object(NOTIFICATION, "alerts", "flux-system", "devops-errors")
        .unwrap();
    assert_eq!(
        alert["apiVersion"],
        "notification.toolkit.fluxcd.io/v1beta3"
    );
    let secret: Secret = serde_json::from_value(
        server
            .object("", "secrets", "flux-system", "slack-url")
            .unwrap(),
    )
    .unwrap();
    assert!(
        secret.string_data.is_none(),
        "stringData is folded into data"
    );
    let url = secret.data.unwrap()["url"].0.clone();
    assert!(
        String::from_utf8(url)
            .unwrap()
            .starts_with("https://hooks.slack.com/")
    );

    create_yaml(
        &client,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: defaulted\n---\n",
    )
    .await
    .unwrap();
    assert!(
        server
            .object("", "configmaps", "default", "defaulted")
            .is_some()
    );
    let again = create_yaml(
        &client,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: defaulted\n",
    )
    .await;
    assert!(again.is_err(), "AlreadyExists surfaces");
}

#[tokio::test]
async fn requests_are_recorded() {
    let server = TestApiServer::start();
    let client = server.client();
    config_maps(&client)
        .create(
            &PostParams {
                field_manager: Some("tester".into()),
                ..Default::default()
            },
            &config_map("r", &[("a", "1")]),
        )
        .await
        .unwrap();
    let requests = server.requests();
    let create = requests.last().unwrap();
    assert_eq!(create.method, "POST");
    assert_eq!(create.path, "/api/v1/namespaces/flux-system/configmaps");
    assert_eq!(
        create.query, "&fieldManager=tester",
        "the raw query, as kube sends it"
    );
    assert_eq!(
        create.query_param("fieldManager").as_deref(),
        Some("tester")
    );
    assert_eq!(create.content_type, "application/json");
    assert_eq!(create.body["data"]["a"], "1");
    raw(
        &client,
        "GET",
        "/version",
        &[("user-agent", "herald/0.1"), ("accept", "application/json")],
        "",
    )
    .await;
    let get = server.requests().pop().unwrap();
    assert_eq!(
        (get.user_agent.as_str(), get.accept.as_str()),
        ("herald/0.1", "application/json")
    );
    assert_eq!(get.body, Value::Null, "an empty body is Null");
    server.clear_requests();
    assert!(server.requests().is_empty());
}

#[test]
fn the_kubeconfig_points_at_the_server() {
    let server = TestApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = server.kubeconfig(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        assert_eq!(config.default_namespace, "flux-system");
        let client = kube::Client::try_from(config).unwrap();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let names: Vec<String> = namespaces
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|n| n.name_any())
            .collect();
        assert!(names.contains(&"flux-system".to_owned()), "{names:?}");
        let own: Api<ConfigMap> = Api::default_namespaced(client);
        own.create(&PostParams::default(), &config_map("via-kubeconfig", &[]))
            .await
            .unwrap();
    });
    assert!(
        server
            .object("", "configmaps", "flux-system", "via-kubeconfig")
            .is_some()
    );
}
