//! Request routing and the REST verbs: paths as kube-apiserver lays them
//! out, content negotiation (full objects, PartialObjectMetadata,
//! aggregated discovery), GET/LIST/POST/PUT/PATCH/DELETE.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use super::Shared;
use super::objects::{self, Removal, Scope, Written, meta_str, metadata, metadata_mut};
use super::patch::{self, Apply, PatchKind};
use super::resources::{self, Resource};
use super::select::Selector;
use super::status::{self, ApiError};
use super::store::ObjKey;
use super::watch;

/// One parsed request.
pub(crate) struct Request {
    pub method: Method,
    pub path: String,
    pub raw_query: String,
    query: Vec<(String, String)>,
    pub accept: String,
    pub content_type: String,
    pub user_agent: String,
    pub body: Bytes,
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

impl Request {
    fn new(method: Method, uri: &Uri, headers: &HeaderMap, body: Bytes) -> Self {
        let raw_query = uri.query().unwrap_or("").to_owned();
        let query = url::form_urlencoded::parse(raw_query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Self {
            method,
            path: uri.path().to_owned(),
            raw_query,
            query,
            accept: header_text(headers, header::ACCEPT),
            content_type: header_text(headers, header::CONTENT_TYPE),
            user_agent: header_text(headers, header::USER_AGENT),
            body,
        }
    }

    /// A query parameter; an empty value counts as absent, as upstream.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A boolean query parameter, parsed like Go's `strconv.ParseBool`.
    pub fn flag(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.param(name) {
            None => Ok(None),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(Some(true)),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(Some(false)),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid boolean value {other:?} for {name}"
            ))),
        }
    }

    fn dry_run(&self) -> Result<bool, ApiError> {
        match self.param("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::unprocessable(format!(
                "dryRun: Unsupported value: {other:?}: supported values: \"All\""
            ))),
        }
    }

    /// The body as JSON (or YAML) for create and replace.
    fn object_body(&self) -> Result<Value, ApiError> {
        let media = self.content_type.split(';').next().unwrap_or("").trim();
        let parsed = match media {
            "" | "application/json" | "*/*" => {
                serde_json::from_slice(&self.body).map_err(|e| e.to_string())
            }
            "application/yaml" => std::str::from_utf8(&self.body)
                .map_err(|e| e.to_string())
                .and_then(herald::yaml::parse_document),
            other => return Err(ApiError::unsupported_media_type(other)),
        };
        parsed.map_err(|e| ApiError::bad_request(format!("error decoding body: {e}")))
    }
}

/// The axum handler for every path.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Request::new(method, &uri, &headers, body);
    shared.record(&request, peer);
    route(&shared, &request).unwrap_or_else(IntoResponse::into_response)
}

pub(crate) fn json_response(code: StatusCode, value: &Value) -> Response {
    typed_response(code, value, "application/json")
}

fn typed_response(code: StatusCode, value: &Value, content_type: &str) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = (code, body).into_response();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn route(shared: &Arc<Shared>, req: &Request) -> Result<Response, ApiError> {
    let segments: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    match segments[..] {
        ["version"] => Ok(json_response(StatusCode::OK, &resources::version_info())),
        ["healthz" | "readyz" | "livez"] => Ok((StatusCode::OK, "ok").into_response()),
        ["api"] => discovery_root(shared, req, true),
        ["apis"] => discovery_root(shared, req, false),
        ["apis", group] => {
            only_get(req)?;
            let doc = resources::api_group(group).ok_or_else(ApiError::no_route)?;
            Ok(json_response(StatusCode::OK, &doc))
        }
        ["api", version, ref rest @ ..] => resource_path(shared, req, "", version, rest),
        ["apis", group, version, ref rest @ ..] => resource_path(shared, req, group, version, rest),
        _ => Err(ApiError::no_route()),
    }
}

fn only_get(req: &Request) -> Result<(), ApiError> {
    if req.method == Method::GET {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed(req.method.as_str()))
    }
}

/// Media type and parameters of each alternative of an Accept header.
fn accept_alternatives(accept: &str) -> Vec<(String, Vec<(String, String)>)> {
    accept
        .split(',')
        .map(|alternative| {
            let mut parts = alternative.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let params = parts
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect();
            (media, params)
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn is_json(media: &str) -> bool {
    matches!(media, "application/json" | "*/*" | "application/*")
}

/// `/api` and `/apis`: aggregated discovery when the Accept header asks for
/// `APIGroupDiscoveryList` first, else the legacy documents.
fn discovery_root(shared: &Shared, req: &Request, core: bool) -> Result<Response, ApiError> {
    only_get(req)?;
    if req.accept.trim().is_empty() {
        return Ok(legacy_root(shared, core));
    }
    for (media, params) in accept_alternatives(&req.accept) {
        if !is_json(&media) {
            continue;
        }
        let version = param(&params, "v");
        match param(&params, "as") {
            None => return Ok(legacy_root(shared, core)),
            Some("APIGroupDiscoveryList")
                if param(&params, "g") == Some("apidiscovery.k8s.io")
                    && matches!(version, Some("v2" | "v2beta1")) =>
            {
                let version = version.unwrap_or("v2");
                let content_type = format!(
                    "application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
                );
                let mut response = typed_response(
                    StatusCode::OK,
                    &resources::aggregated(core, version),
                    &content_type,
                );
                response
                    .headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("Accept"));
                return Ok(response);
            }
            Some(_) => continue,
        }
    }
    Err(ApiError::not_acceptable(&req.accept))
}

fn legacy_root(shared: &Shared, core: bool) -> Response {
    let doc = if core {
        resources::api_versions(&shared.address)
    } else {
        resources::api_group_list()
    };
    json_response(StatusCode::OK, &doc)
}

/// How objects are returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    Full,
    /// `as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`.
    Metadata,
}

impl Output {
    fn negotiate(accept: &str) -> Result<Self, ApiError> {
        if accept.trim().is_empty() {
            return Ok(Self::Full);
        }
        for (media, params) in accept_alternatives(accept) {
            if !is_json(&media) {
                continue;
            }
            match param(&params, "as") {
                None => return Ok(Self::Full),
                Some("PartialObjectMetadata" | "PartialObjectMetadataList")
                    if param(&params, "g") == Some("meta.k8s.io")
                        && matches!(param(&params, "v"), Some("v1" | "v1beta1")) =>
                {
                    return Ok(Self::Metadata);
                }
                Some(_) => continue,
            }
        }
        Err(ApiError::not_acceptable(accept))
    }

    /// A stored object as the client asked for it.
    pub fn object(self, res: &Resource, version: &str, stored: &Value) -> Value {
        let full = res.render(version, stored);
        match self {
            Self::Full => full,
            Self::Metadata => json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": full.get("metadata").cloned().unwrap_or_else(|| json!({})),
            }),
        }
    }

    fn respond(self, code: StatusCode, value: &Value) -> Response {
        match self {
            Self::Full => json_response(code, value),
            Self::Metadata => {
                let list =
                    value.get("kind").and_then(Value::as_str) == Some("PartialObjectMetadataList");
                let kind = if list {
                    "PartialObjectMetadataList"
                } else {
                    "PartialObjectMetadata"
                };
                typed_response(
                    code,
                    value,
                    &format!("application/json;as={kind};g=meta.k8s.io;v=v1"),
                )
            }
        }
    }
}

/// A request for a resource collection, object or object subresource.
pub(crate) struct Target {
    pub res: &'static Resource,
    pub version: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub status: bool,
}

impl Target {
    fn parse(group: &str, version: &str, rest: &[&str]) -> Result<Self, ApiError> {
        let namespaced = match rest {
            ["namespaces", ns, plural, tail @ ..] => resources::find(group, version, plural)
                .filter(|r| r.namespaced)
                .map(|res| (res, Some((*ns).to_owned()), tail)),
            _ => None,
        };
        let (res, namespace, tail) = match namespaced {
            Some(found) => found,
            None => {
                let [plural, tail @ ..] = rest else {
                    return Err(ApiError::no_route());
                };
                let res = resources::find(group, version, plural).ok_or_else(ApiError::no_route)?;
                if res.namespaced && !tail.is_empty() {
                    return Err(ApiError::no_route());
                }
                (res, None, tail)
            }
        };
        let (name, status) = match tail {
            [] => (None, false),
            [name] => (Some((*name).to_owned()), false),
            [name, "status"] if res.status => (Some((*name).to_owned()), true),
            _ => return Err(ApiError::no_route()),
        };
        Ok(Self {
            res,
            version: version.to_owned(),
            namespace,
            name,
            status,
        })
    }

    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }

    fn key(&self, name: &str) -> ObjKey {
        ObjKey::new(self.res.storage, self.namespace(), name)
    }

    fn scope(&self) -> Scope {
        if self.status {
            Scope::Status
        } else {
            Scope::Main
        }
    }

    /// `namespaces/{ns}` is required to create a namespaced object.
    fn create_namespace(&self) -> Result<&str, ApiError> {
        match (&self.namespace, self.res.namespaced) {
            (Some(ns), true) => Ok(ns),
            (None, false) => Ok(""),
            _ => Err(ApiError::no_route()),
        }
    }
}

fn resource_path(
    shared: &Arc<Shared>,
    req: &Request,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Response, ApiError> {
    if !resources::served(group, version) {
        return Err(ApiError::no_route());
    }
    if rest.is_empty() {
        only_get(req)?;
        return Ok(json_response(
            StatusCode::OK,
            &resources::resource_list(group, version),
        ));
    }
    let target = Target::parse(group, version, rest)?;
    let output = Output::negotiate(&req.accept)?;
    match (&req.method, target.name.clone()) {
        (&Method::GET, Some(name)) => get(shared, &target, &name, output),
        (&Method::GET, None) if req.flag("watch")? == Some(true) => {
            watch::start(shared, req, &target, output)
        }
        (&Method::GET, None) => list(shared, req, &target, output),
        (&Method::POST, None) if !target.status => create(shared, req, &target, output),
        (&Method::PUT, Some(name)) => replace(shared, req, &target, &name, output),
        (&Method::PATCH, Some(name)) => patch(shared, req, &target, &name, output),
        (&Method::DELETE, Some(name)) if !target.status => {
            delete(shared, req, &target, &name, output)
        }
        (&Method::DELETE, None) => delete_collection(shared, req, &target, output),
        (method, _) => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

fn get(shared: &Shared, t: &Target, name: &str, output: Output) -> Result<Response, ApiError> {
    let store = shared.store();
    let object = store
        .get(&t.key(name))
        .ok_or_else(|| ApiError::not_found(t.res, name))?;
    Ok(output.respond(StatusCode::OK, &output.object(t.res, &t.version, object)))
}

/// A `continue` token: the snapshot's resourceVersion and the key to start
/// after, base64 JSON as upstream's.
fn encode_continue(rv: u64, last_key: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{last_key}\u{0}")});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(u64, String), ApiError> {
    let invalid = |why: String| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|e| invalid(e.to_string()))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    let rv = value.get("rv").and_then(Value::as_u64);
    let start = value.get("start").and_then(Value::as_str);
    match (rv, start) {
        (Some(rv), Some(start)) if rv > 0 => Ok((rv, start.to_owned())),
        _ => Err(invalid(
            "incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into(),
        )),
    }
}

pub(crate) fn parse_rv(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {text:?}")))
}

/// Checks list options as upstream's `ValidateListOptions`.
fn validate_list_options(req: &Request) -> Result<(), ApiError> {
    let forbidden = |why: &str| {
        ApiError::unprocessable(format!("ListOptions.meta.k8s.io \"\" is invalid: {why}"))
    };
    if req.param("sendInitialEvents").is_some() {
        return Err(forbidden(
            "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list",
        ));
    }
    let Some(matching) = req.param("resourceVersionMatch") else {
        return Ok(());
    };
    if req.param("resourceVersion").is_none() {
        return Err(forbidden(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    if req.param("continue").is_some() {
        return Err(forbidden(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when continue is provided",
        ));
    }
    match matching {
        "NotOlderThan" => Ok(()),
        "Exact" if req.param("resourceVersion") == Some("0") => Err(forbidden(
            "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
        )),
        "Exact" => Ok(()),
        other => Err(forbidden(&format!(
            "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
        ))),
    }
}

fn too_large(rv: u64, current: u64) -> ApiError {
    ApiError::new(
        504,
        "Timeout",
        format!("Too large resource version: {rv}, current: {current}"),
    )
}

fn list(shared: &Shared, req: &Request, t: &Target, output: Output) -> Result<Response, ApiError> {
    validate_list_options(req)?;
    let selector = Selector::parse(
        t.res,
        req.param("labelSelector"),
        req.param("fieldSelector"),
    )?;
    let limit = match req.param("limit") {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n > 0 => Some(n as usize),
            Ok(_) => None,
            Err(_) => return Err(ApiError::bad_request(format!("invalid limit {text:?}"))),
        },
    };
    let continue_from = req.param("continue").map(decode_continue).transpose()?;
    let store = shared.store();
    let namespace = t.namespace.as_deref();
    let (rv, snapshot) = match (&continue_from, req.param("resourceVersion")) {
        (Some((rv, _)), _) => {
            if *rv < store.compacted {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. \
                     You can start a new list without the continue parameter, or use the continue \
                     token in this response to retrieve the remainder of the results. Continuing \
                     with the provided token results in an inconsistent list - objects that were \
                     created, modified, or deleted between the time the first chunk was returned \
                     and now may show up in the list.",
                ));
            }
            (*rv, store.at(*rv, t.res.storage, namespace))
        }
        (None, Some(text)) => {
            let wanted = parse_rv(text)?;
            if wanted > store.rv {
                return Err(too_large(wanted, store.rv));
            }
            if req.param("resourceVersionMatch") == Some("Exact") {
                if wanted < store.compacted {
                    return Err(ApiError::expired(
                        "The resourceVersion for the provided list is too old.",
                    ));
                }
                (wanted, store.at(wanted, t.res.storage, namespace))
            } else {
                (store.rv, store.current(t.res.storage, namespace))
            }
        }
        (None, None) => (store.rv, store.current(t.res.storage, namespace)),
    };
    drop(store);

    let start = continue_from.map(|(_, start)| start).unwrap_or_default();
    let selected: Vec<(String, Value)> = snapshot
        .into_iter()
        .filter(|(key, _)| key.sort_key().as_str() >= start.as_str())
        .map(|(key, object)| (key.sort_key(), object))
        .filter(|(_, object)| selector.matches(&t.res.render(&t.version, object)))
        .collect();
    let page_len = limit.unwrap_or(usize::MAX).min(selected.len());
    let mut list_meta = json!({"resourceVersion": rv.to_string()});
    if page_len < selected.len() {
        list_meta["continue"] = encode_continue(rv, &selected[page_len - 1].0).into();
        if selector.is_empty() {
            list_meta["remainingItemCount"] = (selected.len() - page_len).into();
        }
    }
    let items: Vec<Value> = selected[..page_len]
        .iter()
        .map(|(_, object)| list_item(t.res, &t.version, object, output))
        .collect();
    let (kind, api_version) = match output {
        Output::Full => (format!("{}List", t.res.kind), t.res.api_version(&t.version)),
        Output::Metadata => (
            "PartialObjectMetadataList".to_owned(),
            "meta.k8s.io/v1".to_owned(),
        ),
    };
    let body =
        json!({"kind": kind, "apiVersion": api_version, "metadata": list_meta, "items": items});
    Ok(output.respond(StatusCode::OK, &body))
}

/// A list item: built-in kinds' items carry no kind/apiVersion (the
/// typed list encoding drops them); custom resources' items keep them.
fn list_item(res: &Resource, version: &str, object: &Value, output: Output) -> Value {
    let mut item = output.object(res, version, object);
    if output == Output::Full
        && !res.custom
        && let Some(fields) = item.as_object_mut()
    {
        fields.remove("kind");
        fields.remove("apiVersion");
    }
    item
}

fn create(
    shared: &Shared,
    req: &Request,
    t: &Target,
    output: Output,
) -> Result<Response, ApiError> {
    let namespace = t.create_namespace()?;
    let object = t.res.ingest(&t.version, req.object_body()?)?;
    let dry_run = req.dry_run()?;
    let created = objects::create(&mut shared.store(), t.res, namespace, object, dry_run)?;
    shared.notify();
    Ok(output.respond(
        StatusCode::CREATED,
        &output.object(t.res, &t.version, &created),
    ))
}

/// The body's name and namespace must match the URL's.
fn check_identity(t: &Target, name: &str, object: &Value) -> Result<(), ApiError> {
    let body_name = meta_str(object, "name").unwrap_or("");
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    check_namespace(t, object)
}

fn check_namespace(t: &Target, object: &Value) -> Result<(), ApiError> {
    if let Some(ns) = meta_str(object, "namespace")
        && t.res.namespaced
        && ns != t.namespace()
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

fn written_response(t: &Target, output: Output, written: Written) -> Response {
    let object = written.into_object();
    output.respond(StatusCode::OK, &output.object(t.res, &t.version, &object))
}

fn replace(
    shared: &Shared,
    req: &Request,
    t: &Target,
    name: &str,
    output: Output,
) -> Result<Response, ApiError> {
    let body = req.object_body()?;
    check_identity(t, name, &body)?;
    let mut new = t.res.ingest(&t.version, body)?;
    let dry_run = req.dry_run()?;
    let key = t.key(name);
    let written = {
        let mut store = shared.store();
        let current = store
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(t.res, name))?;
        // Without managedFields in the body the stored ones are kept.
        if let Some(managed) = metadata(&current).and_then(|m| m.get("managedFields"))
            && !metadata(&new).is_some_and(|m| m.contains_key("managedFields"))
        {
            metadata_mut(&mut new).insert("managedFields".into(), managed.clone());
        }
        objects::update(&mut store, t.res, &key, &current, new, t.scope(), dry_run)?
    };
    shared.notify();
    Ok(written_response(t, output, written))
}

fn patch(
    shared: &Shared,
    req: &Request,
    t: &Target,
    name: &str,
    output: Output,
) -> Result<Response, ApiError> {
    let kind = PatchKind::from_content_type(&req.content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(&req.content_type))?;
    if kind == PatchKind::Strategic && t.res.custom {
        return Err(ApiError::unsupported_media_type(&req.content_type));
    }
    let force = req.flag("force")?;
    if force.is_some() && kind != PatchKind::Apply {
        return Err(ApiError::unprocessable(
            "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch",
        ));
    }
    let dry_run = req.dry_run()?;
    if kind == PatchKind::Apply {
        return apply(
            shared,
            req,
            t,
            name,
            force.unwrap_or(false),
            dry_run,
            output,
        );
    }
    let key = t.key(name);
    let written = {
        let mut store = shared.store();
        let current = store
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(t.res, name))?;
        let shown = t.res.render(&t.version, &current);
        let patched = match kind {
            PatchKind::Merge => patch::merge(&shown, &req.body)?,
            PatchKind::Strategic => patch::strategic(&shown, &req.body)?,
            _ => patch::json(&shown, &req.body)?,
        };
        let new = t.res.ingest(&t.version, patched)?;
        objects::update(&mut store, t.res, &key, &current, new, t.scope(), dry_run)?
    };
    shared.notify();
    Ok(written_response(t, output, written))
}

/// Server-side apply; creates the object when it does not exist.
fn apply(
    shared: &Shared,
    req: &Request,
    t: &Target,
    name: &str,
    force: bool,
    dry_run: bool,
    output: Output,
) -> Result<Response, ApiError> {
    let Some(manager) = req.param("fieldManager") else {
        return Err(ApiError::unprocessable(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    };
    let applied: Value = std::str::from_utf8(&req.body)
        .map_err(|e| e.to_string())
        .and_then(herald::yaml::parse_document)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    let api_version = t.res.api_version(&t.version);
    let apply = Apply {
        res: t.res,
        name,
        manager,
        api_version: &api_version,
        force,
        scope: t.scope(),
    };
    apply.validate(&applied)?;
    t.res.ingest(&t.version, applied.clone())?;
    check_namespace(t, &applied)?;
    let key = t.key(name);
    let mut store = shared.store();
    let Some(current) = store.get(&key).cloned() else {
        if t.status {
            return Err(ApiError::not_found(t.res, name));
        }
        let mut merged = apply.run(None, &applied)?;
        merged["apiVersion"] = api_version.clone().into();
        merged["kind"] = t.res.kind.into();
        metadata_mut(&mut merged).insert("name".into(), name.into());
        let object = t.res.ingest(&t.version, merged)?;
        let created = objects::create(&mut store, t.res, t.namespace(), object, dry_run)?;
        drop(store);
        shared.notify();
        return Ok(output.respond(
            StatusCode::CREATED,
            &output.object(t.res, &t.version, &created),
        ));
    };
    let merged = apply.run(Some(&t.res.render(&t.version, &current)), &applied)?;
    let new = t.res.ingest(&t.version, merged)?;
    let written = objects::update(&mut store, t.res, &key, &current, new, t.scope(), dry_run)?;
    drop(store);
    shared.notify();
    Ok(written_response(t, output, written))
}

fn delete_options(req: &Request) -> Result<Value, ApiError> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))
}

fn removal_response(t: &Target, name: &str, output: Output, removal: Removal) -> Response {
    match removal {
        Removal::Pending(object) => {
            output.respond(StatusCode::OK, &output.object(t.res, &t.version, &object))
        }
        Removal::Gone(object) if t.res.custom => {
            output.respond(StatusCode::OK, &output.object(t.res, &t.version, &object))
        }
        Removal::Gone(object) => {
            let uid = meta_str(&object, "uid").unwrap_or_default();
            json_response(StatusCode::OK, &status::deleted(t.res, name, uid))
        }
    }
}

fn delete(
    shared: &Shared,
    req: &Request,
    t: &Target,
    name: &str,
    output: Output,
) -> Result<Response, ApiError> {
    let options = delete_options(req)?;
    let dry_run = req.dry_run()?;
    let removal = objects::delete(&mut shared.store(), t.res, &t.key(name), &options, dry_run)?;
    shared.notify();
    Ok(removal_response(t, name, output, removal))
}

/// DELETE on a collection: deletes every selected object, answers the list
/// of what was deleted.
fn delete_collection(
    shared: &Shared,
    req: &Request,
    t: &Target,
    output: Output,
) -> Result<Response, ApiError> {
    let selector = Selector::parse(
        t.res,
        req.param("labelSelector"),
        req.param("fieldSelector"),
    )?;
    let options = delete_options(req)?;
    let dry_run = req.dry_run()?;
    let mut store = shared.store();
    let mut items = Vec::new();
    for (key, object) in store.current(t.res.storage, t.namespace.as_deref()) {
        // Deleting a namespace may already have removed later items.
        if store.get(&key).is_none() || !selector.matches(&t.res.render(&t.version, &object)) {
            continue;
        }
        let removal = objects::delete(&mut store, t.res, &key, &options, dry_run)?;
        let (Removal::Pending(last) | Removal::Gone(last)) = removal;
        items.push(list_item(t.res, &t.version, &last, output));
    }
    let rv = store.rv.to_string();
    drop(store);
    shared.notify();
    let body = json!({
        "kind": format!("{}List", t.res.kind),
        "apiVersion": t.res.api_version(&t.version),
        "metadata": {"resourceVersion": rv},
        "items": items,
    });
    Ok(output.respond(StatusCode::OK, &body))
}

/// A streaming response body fed by a channel (watch streams). When
/// `abort` fires, the body fails: hyper then cuts the connection without
/// the final chunk, which the client sees as a dropped connection.
pub(crate) fn stream_body(
    mut lines: tokio::sync::mpsc::Receiver<Bytes>,
    abort: tokio::sync::oneshot::Receiver<()>,
) -> Body {
    let mut abort = Some(abort);
    Body::from_stream(futures::stream::poll_fn(move |cx| {
        if let Some(signal) = abort.as_mut() {
            match Pin::new(signal).poll(cx) {
                Poll::Ready(Ok(())) => {
                    abort = None;
                    let error = std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "watch dropped by the test",
                    );
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(Err(_)) => abort = None,
                Poll::Pending => {}
            }
        }
        lines
            .poll_recv(cx)
            .map(|line| line.map(Ok::<_, std::io::Error>))
    }))
}
