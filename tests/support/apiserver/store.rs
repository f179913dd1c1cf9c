//! Object storage with one global, increasing resourceVersion (like etcd's
//! revision) and a change history that watches resume from and that list
//! snapshots are rebuilt from (by undoing newer changes).

use std::collections::BTreeMap;

use serde_json::Value;

/// Where one object lives: stored (group, plural), namespace ("" for
/// cluster-scoped) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ObjKey {
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub name: String,
}

impl ObjKey {
    pub fn new(storage: (&str, &str), namespace: &str, name: &str) -> Self {
        Self {
            group: storage.0.to_owned(),
            plural: storage.1.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// etcd's key order within one resource: `namespace/name`.
    pub fn sort_key(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }

    fn in_scope(&self, storage: (&str, &str), namespace: Option<&str>) -> bool {
        self.group == storage.0
            && self.plural == storage.1
            && namespace.is_none_or(|ns| ns == self.namespace)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One committed write.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub key: ObjKey,
    pub kind: ChangeType,
    /// The object after the change; for a deletion its last state, carrying
    /// the deletion's resourceVersion (as upstream's DELETED events do).
    pub object: Value,
    /// The object before the change.
    pub prev: Option<Value>,
}

#[derive(Default)]
pub(crate) struct Store {
    /// The latest resourceVersion handed out.
    pub rv: u64,
    /// Watches and lists may not resume from a resourceVersion below this.
    pub compacted: u64,
    objects: BTreeMap<ObjKey, Value>,
    /// Every change, in resourceVersion order. Kept in full (compaction only
    /// moves `compacted`) so watches that are already open never miss one.
    history: Vec<Change>,
}

pub(crate) fn set_resource_version(object: &mut Value, rv: u64) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("resourceVersion".into(), rv.to_string().into());
    }
}

impl Store {
    pub fn get(&self, key: &ObjKey) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Stores `object` under a new resourceVersion and records the change.
    pub fn put(&mut self, key: ObjKey, mut object: Value) -> Value {
        self.rv += 1;
        set_resource_version(&mut object, self.rv);
        let prev = self.objects.insert(key.clone(), object.clone());
        let kind = if prev.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        self.history.push(Change {
            rv: self.rv,
            key,
            kind,
            object: object.clone(),
            prev,
        });
        object
    }

    /// Removes the object; `last` is its final state (for finalizer removal,
    /// the update that emptied the finalizers). Returns it with the
    /// deletion's resourceVersion.
    pub fn remove(&mut self, key: &ObjKey, mut last: Value) -> Value {
        self.rv += 1;
        set_resource_version(&mut last, self.rv);
        let prev = self.objects.remove(key);
        self.history.push(Change {
            rv: self.rv,
            key: key.clone(),
            kind: ChangeType::Deleted,
            object: last.clone(),
            prev,
        });
        last
    }

    /// Current objects of one stored resource, in etcd key order.
    pub fn current(&self, storage: (&str, &str), namespace: Option<&str>) -> Vec<(ObjKey, Value)> {
        let mut items: Vec<(ObjKey, Value)> = self
            .objects
            .iter()
            .filter(|(k, _)| k.in_scope(storage, namespace))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        items.sort_by_cached_key(|(k, _)| k.sort_key());
        items
    }

    /// The objects as they were at resourceVersion `rv` (which must not be
    /// below `compacted`): the current state with newer changes undone.
    pub fn at(
        &self,
        rv: u64,
        storage: (&str, &str),
        namespace: Option<&str>,
    ) -> Vec<(ObjKey, Value)> {
        let mut objects: BTreeMap<ObjKey, Value> =
            self.current(storage, namespace).into_iter().collect();
        for change in self.changes_after(rv).iter().rev() {
            if !change.key.in_scope(storage, namespace) {
                continue;
            }
            match &change.prev {
                Some(prev) => objects.insert(change.key.clone(), prev.clone()),
                None => objects.remove(&change.key),
            };
        }
        let mut items: Vec<(ObjKey, Value)> = objects.into_iter().collect();
        items.sort_by_cached_key(|(k, _)| k.sort_key());
        items
    }

    /// Changes with a resourceVersion above `rv`, oldest first.
    pub fn changes_after(&self, rv: u64) -> &[Change] {
        let start = self.history.partition_point(|c| c.rv <= rv);
        &self.history[start..]
    }

    pub fn namespace_exists(&self, name: &str) -> bool {
        self.objects
            .contains_key(&ObjKey::new(("", "namespaces"), "", name))
    }

    /// Keys of every namespaced object in `namespace`.
    pub fn keys_in_namespace(&self, namespace: &str) -> Vec<ObjKey> {
        self.objects
            .keys()
            .filter(|k| k.namespace == namespace)
            .cloned()
            .collect()
    }
}
