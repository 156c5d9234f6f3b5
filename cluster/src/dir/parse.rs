//! Parsing one object file: YAML documents (or JSON) -> typed objects of the carried kinds.

use std::path::Path;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::Deserialize;
use serde_json::Value;
use tracing::debug;

use super::super::kind::{ClusterObject, Kind, ObjectKey};
use super::super::stores::StoreWriters;
use super::{DirError, ObjectId, Op, send_object};

/// An object of any carried kind (boxed: the kinds differ much in size).
#[derive(Clone, Debug, PartialEq)]
pub(super) enum AnyObject {
    Node(Box<Node>),
    Service(Box<Service>),
    EndpointSlice(Box<EndpointSlice>),
    Pod(Box<Pod>),
    Namespace(Box<Namespace>),
    NetworkPolicy(Box<NetworkPolicy>),
}

impl AnyObject {
    pub(super) fn id(&self) -> ObjectId {
        match self {
            AnyObject::Node(o) => (Kind::Node, ObjectKey::of(o.as_ref())),
            AnyObject::Service(o) => (Kind::Service, ObjectKey::of(o.as_ref())),
            AnyObject::EndpointSlice(o) => (Kind::EndpointSlice, ObjectKey::of(o.as_ref())),
            AnyObject::Pod(o) => (Kind::Pod, ObjectKey::of(o.as_ref())),
            AnyObject::Namespace(o) => (Kind::Namespace, ObjectKey::of(o.as_ref())),
            AnyObject::NetworkPolicy(o) => (Kind::NetworkPolicy, ObjectKey::of(o.as_ref())),
        }
    }

    pub(super) fn send(&self, writers: &mut StoreWriters, op: Op, resource_version: String) {
        match self {
            AnyObject::Node(o) => send_object(writers, o.as_ref(), op, resource_version),
            AnyObject::Service(o) => send_object(writers, o.as_ref(), op, resource_version),
            AnyObject::EndpointSlice(o) => send_object(writers, o.as_ref(), op, resource_version),
            AnyObject::Pod(o) => send_object(writers, o.as_ref(), op, resource_version),
            AnyObject::Namespace(o) => send_object(writers, o.as_ref(), op, resource_version),
            AnyObject::NetworkPolicy(o) => send_object(writers, o.as_ref(), op, resource_version),
        }
    }
}

/// What one file holds.
#[derive(Debug, Default)]
pub(super) struct ParsedFile {
    /// Objects that decoded, in file order.
    pub(super) objects: Vec<AnyObject>,
    /// Objects of a carried kind, with a name, that did not decode.
    pub(super) failed: Vec<ObjectId>,
    pub(super) problems: Vec<DirError>,
    /// False when the file as a whole is not valid YAML/JSON (then nothing else is filled).
    pub(super) syntax_ok: bool,
}

/// Parses a file: `*.json` as one JSON value, anything else as a stream of YAML documents.
pub(super) fn parse_file(path: &Path, bytes: &[u8]) -> ParsedFile {
    let documents = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_slice::<Value>(bytes)
            .map(|v| vec![v])
            .map_err(|e| e.to_string())
    } else {
        yaml_documents(bytes)
    };
    let documents = match documents {
        Ok(documents) => documents,
        Err(reason) => {
            return ParsedFile {
                problems: vec![DirError::Syntax {
                    file: path.to_path_buf(),
                    reason,
                }],
                ..ParsedFile::default()
            };
        }
    };
    let mut parsed = ParsedFile {
        syntax_ok: true,
        ..ParsedFile::default()
    };
    for (index, document) in documents.into_iter().enumerate() {
        // Documents are numbered from 1, as editors and `yq` show them.
        parse_document(path, index + 1, document, true, &mut parsed);
    }
    parsed
}

/// Every YAML document as a JSON value; one bad document fails the whole file, because after a
/// syntax error the parser cannot say where the next document starts.
fn yaml_documents(bytes: &[u8]) -> Result<Vec<Value>, String> {
    serde_norway::Deserializer::from_slice(bytes)
        .map(|document| Value::deserialize(document).map_err(|e| e.to_string()))
        .collect()
}

fn parse_document(path: &Path, document: usize, value: Value, top: bool, out: &mut ParsedFile) {
    let problem = |reason: &str| DirError::Document {
        file: path.to_path_buf(),
        document,
        reason: reason.to_string(),
    };
    if value.is_null() {
        return; // an empty document, e.g. after a trailing `---`
    }
    let Some(fields) = value.as_object() else {
        out.problems.push(problem("not an object"));
        return;
    };
    let (Some(api_version), Some(kind)) = (
        fields.get("apiVersion").and_then(Value::as_str),
        fields.get("kind").and_then(Value::as_str),
    ) else {
        out.problems.push(problem("no apiVersion or kind"));
        return;
    };
    // `kubectl get -o yaml` writes `kind: List`; typed lists (`NodeList`) come from the API.
    if top && kind.ends_with("List") {
        let Some(items) = fields.get("items").and_then(Value::as_array) else {
            out.problems.push(problem("a List without items"));
            return;
        };
        for item in items.clone() {
            parse_document(path, document, item, false, out);
        }
        return;
    }
    let Some(carried) = Kind::from_type_meta(api_version, kind) else {
        debug!(file = %path.display(), document, api_version, kind, "kind not carried; ignored");
        return;
    };
    let result = match carried {
        Kind::Node => decode::<Node>(path, value).map(|o| AnyObject::Node(Box::new(o))),
        Kind::Service => decode::<Service>(path, value).map(|o| AnyObject::Service(Box::new(o))),
        Kind::EndpointSlice => {
            decode::<EndpointSlice>(path, value).map(|o| AnyObject::EndpointSlice(Box::new(o)))
        }
        Kind::Pod => decode::<Pod>(path, value).map(|o| AnyObject::Pod(Box::new(o))),
        Kind::Namespace => {
            decode::<Namespace>(path, value).map(|o| AnyObject::Namespace(Box::new(o)))
        }
        Kind::NetworkPolicy => {
            decode::<NetworkPolicy>(path, value).map(|o| AnyObject::NetworkPolicy(Box::new(o)))
        }
    };
    match result {
        Ok(obj) => out.objects.push(obj),
        Err(problem) => {
            if let DirError::Object { kind, key, .. } = &problem
                && !key.name.is_empty()
            {
                out.failed.push((*kind, key.clone()));
            }
            out.problems.push(problem);
        }
    }
}

/// Decodes an object, giving it the namespace `kubectl apply` would (`default` when a namespaced
/// object names none; none for a cluster-scoped kind).
fn decode<K: ClusterObject>(path: &Path, value: Value) -> Result<K, DirError> {
    let meta = value.get("metadata");
    let field = |name| meta.and_then(|m| m.get(name)).and_then(Value::as_str);
    let namespace = K::KIND
        .namespaced()
        .then(|| field("namespace").unwrap_or("default").to_string());
    let key = ObjectKey {
        namespace: namespace.clone(),
        name: field("name").unwrap_or_default().to_string(),
    };
    let failure = |reason: String| DirError::Object {
        file: path.to_path_buf(),
        kind: K::KIND,
        key: key.clone(),
        reason,
    };
    if key.name.is_empty() {
        return Err(failure("no metadata.name".into()));
    }
    let mut obj: K = serde_json::from_value(value).map_err(|e| failure(e.to_string()))?;
    obj.meta_mut().namespace = namespace;
    Ok(obj)
}
