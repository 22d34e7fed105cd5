//! Kubernetes YAML in, the same documents out: finding the pod templates
//! of workloads (also inside `kind: List`), the generated ConfigMaps, and
//! naming a document in errors.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::pod::{self, Inputs, MAIN_CONTAINER};
use super::settings::{self, Placement};
use super::{InputError, Options};

/// Marks the ConfigMaps inject writes, so a second run replaces them and
/// `--remove` drops them.
pub const GENERATED: &str = "berth.dev/generated-by";
const GENERATOR: &str = "berth-inject";

/// The kinds that carry a pod template, and where it is.
fn template_path(kind: &str) -> Option<(&'static str, &'static str)> {
    match kind {
        "Pod" => Some(("/metadata", "/spec")),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            Some(("/spec/template/metadata", "/spec/template/spec"))
        }
        "CronJob" => Some((
            "/spec/jobTemplate/spec/template/metadata",
            "/spec/jobTemplate/spec/template/spec",
        )),
        _ => None,
    }
}

/// Splits a YAML stream into documents (empty ones dropped).
pub fn parse_documents(
    text: &str,
    label: &dyn Fn(usize) -> String,
) -> Result<Vec<Value>, InputError> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(de).map_err(|e| {
            // The parser may quote the offending text (a secret in an env
            // value, maybe): keep only the position.
            let at = e
                .location()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            InputError::new(label(i + 1), format!("not YAML{at}"))
        })?;
        if !v.is_null() {
            docs.push((i + 1, v));
        }
    }
    let mut out = Vec::new();
    for (n, v) in docs {
        check_object(&v).map_err(|m| InputError::new(label(n), m))?;
        if v.get("kind").and_then(Value::as_str) == Some("List") {
            let items = v
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (j, item) in items.iter().enumerate() {
                check_object(item)
                    .map_err(|m| InputError::new(format!("{} item {}", label(n), j + 1), m))?;
            }
        }
        out.push(v);
    }
    Ok(out)
}

fn check_object(v: &Value) -> Result<(), String> {
    let ok = v.is_object()
        && v.get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        && v.get("kind")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
    if ok {
        Ok(())
    } else {
        Err("not a Kubernetes object (a mapping with apiVersion and kind)".into())
    }
}

/// `Kind name` of an object, for messages.
pub fn describe(v: &Value) -> String {
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("?");
    let name = v
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("(no name)");
    format!("{kind} {name}")
}

fn is_generated(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("ConfigMap")
        && v.pointer("/metadata/annotations")
            .and_then(|a| a.get(GENERATED))
            .and_then(Value::as_str)
            == Some(GENERATOR)
}

/// The lifecycle token of the first pod berth was injected into.
pub fn find_token(docs: &[Value]) -> Option<String> {
    let mut found = None;
    for d in docs {
        for_each_object(d, &mut |obj| {
            if found.is_some() {
                return;
            }
            if let Some((_, spec)) =
                template_path(obj.get("kind").and_then(Value::as_str).unwrap_or(""))
            {
                if let Some(s) = obj.pointer(spec) {
                    found = pod::token_of(s);
                }
            }
        });
    }
    found
}

fn for_each_object(d: &Value, f: &mut dyn FnMut(&Value)) {
    if d.get("kind").and_then(Value::as_str) == Some("List") {
        for item in d
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            f(item);
        }
    } else {
        f(d);
    }
}

/// Injects into (or, with `opts.remove`, removes berth from) every
/// workload of `docs`; returns the output documents.
pub fn transform(
    docs: Vec<Value>,
    opts: &Options,
    token: &str,
    label: &dyn Fn(usize) -> String,
) -> Result<Vec<Value>, InputError> {
    let mut out = Vec::new();
    let mut config_maps = Vec::new();
    let mut first_workload: Option<usize> = None;
    for (n, mut d) in docs.into_iter().enumerate() {
        let here = label(n + 1);
        if is_generated(&d) {
            continue;
        }
        let mut injected_any = false;
        if d.get("kind").and_then(Value::as_str) == Some("List") {
            if let Some(items) = d.get_mut("items").and_then(Value::as_array_mut) {
                items.retain(|i| !is_generated(i));
                for (j, item) in items.iter_mut().enumerate() {
                    let l = format!("{here} item {} ({})", j + 1, describe(item));
                    if let Some(cm) =
                        object(item, opts, token).map_err(|m| InputError::new(l, m))?
                    {
                        config_maps.push(cm);
                        injected_any = true;
                    }
                }
            }
        } else {
            let l = format!("{here} ({})", describe(&d));
            if let Some(cm) = object(&mut d, opts, token).map_err(|m| InputError::new(l, m))? {
                config_maps.push(cm);
                injected_any = true;
            }
        }
        if injected_any && first_workload.is_none() {
            first_workload = Some(out.len());
        }
        out.push(d);
    }
    if let Some(at) = first_workload {
        out.splice(at..at, config_maps);
    }
    Ok(out)
}

/// One object: restores it from inject's record, then (unless removing)
/// injects again. Returns the ConfigMap to emit, if berth was added.
fn object(obj: &mut Value, opts: &Options, token: &str) -> Result<Option<Value>, String> {
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some((meta_path, spec_path)) = template_path(&kind) else {
        return Ok(None);
    };
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(String::from);
    let namespace = obj.pointer("/metadata/namespace").cloned();
    let object_main = obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(MAIN_CONTAINER))
        .and_then(Value::as_str)
        .map(String::from);
    let Some(mut spec) = obj.pointer(spec_path).cloned() else {
        return Err("a workload without a pod spec".into());
    };
    let mut had_meta = obj.pointer(meta_path).is_some();
    let mut meta = obj.pointer(meta_path).cloned().unwrap_or_else(|| json!({}));
    if let Some(record) = pod::remove(&mut meta, &mut spec)? {
        // The template had no metadata before inject added the record.
        if record.get("metadata").and_then(Value::as_bool) == Some(false)
            && meta.as_object().is_some_and(Map::is_empty)
        {
            had_meta = false;
            remove_at(obj, meta_path);
        }
    }
    if opts.remove {
        put(obj, spec_path, spec)?;
        if had_meta {
            put(obj, meta_path, meta)?;
        }
        return Ok(None);
    }
    let at = Paths {
        meta: meta_path,
        spec: spec_path,
    };
    inject_into(
        obj,
        &kind,
        name,
        namespace,
        object_main,
        spec,
        meta,
        had_meta,
        opts,
        token,
        at,
    )
}

struct Paths<'a> {
    meta: &'a str,
    spec: &'a str,
}

#[allow(clippy::too_many_arguments)]
fn inject_into(
    obj: &mut Value,
    kind: &str,
    name: Option<String>,
    namespace: Option<Value>,
    object_main: Option<String>,
    mut spec: Value,
    mut meta: Value,
    had_meta: bool,
    opts: &Options,
    token: &str,
    at: Paths,
) -> Result<Option<Value>, String> {
    let (meta_path, spec_path) = (at.meta, at.spec);
    let put_back = |obj: &mut Value, spec: Value, meta: Value| -> Result<(), String> {
        put(obj, spec_path, spec)?;
        if had_meta {
            put(obj, meta_path, meta)?;
        }
        Ok(())
    };
    if pod::has_foreign_berth(&spec) {
        // Rendered by the chart or added by hand: berth is already there.
        put_back(obj, spec, meta)?;
        return Ok(None);
    }
    let names = pod::container_names(&spec);
    if names.is_empty() {
        return Err("a workload without containers (spec.containers is empty)".into());
    }
    let template_main = meta
        .get("annotations")
        .and_then(|a| a.get(MAIN_CONTAINER))
        .and_then(Value::as_str)
        .map(String::from);
    let (main, source) = match (template_main.or(object_main), &opts.container) {
        (Some(m), _) => (m, format!("annotation {MAIN_CONTAINER}")),
        (None, Some(c)) => (c.clone(), "--container".to_string()),
        (None, None) => (names[0].clone(), String::new()),
    };
    if !names.contains(&main) {
        return Err(format!(
            "{source} names container {main:?}, but the pod has only {}",
            names.join(", ")
        ));
    }
    let Some(name) = name else {
        return Err("no metadata.name (the berth ConfigMap is named after it)".into());
    };
    let restart = spec
        .get("restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always");
    let batch = matches!(kind, "Job" | "CronJob") || (kind == "Pod" && restart != "Always");
    let placement = Placement::decide(opts.native, batch);
    let (base, base_text) = match &opts.config {
        Some((m, t)) => (m.clone(), Some(t.as_str())),
        None => (
            settings::default_config(pod::first_port(&spec, &main)),
            None,
        ),
    };
    let config = settings::for_pod(&base, base_text, placement, batch)?;
    let (env, env_from) = pod::main_env(&spec, &main);
    if env_from.is_empty() {
        for r in &config.env_refs {
            if !env
                .iter()
                .any(|e| e.get("name").and_then(Value::as_str) == Some(r.as_str()))
            {
                return Err(format!(
                    "berth.yaml uses ${{{r}}}, but container {main:?} has no env {r} to give berth (berth would exit 64 at start)"
                ));
            }
        }
    }
    let cm_name = format!("{name}-berth");
    let inputs = Inputs {
        config: &config,
        placement,
        batch,
        image: &opts.image,
        token,
        config_map: &cm_name,
        config_source: None,
        main: &main,
        had_metadata: had_meta,
    };
    let added = pod::inject(&mut meta, &mut spec, &inputs)?;
    put(obj, spec_path, spec)?;
    if added || had_meta {
        put(obj, meta_path, meta)?;
    }
    if !added {
        return Ok(None);
    }
    let mut metadata = json!({"name": cm_name, "annotations": {GENERATED: GENERATOR}});
    if let (Some(ns), Some(m)) = (namespace, metadata.as_object_mut()) {
        m.insert("namespace".into(), ns);
    }
    Ok(Some(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {"berth.yaml": config.text},
    })))
}

/// Sets the value at a JSON pointer whose parents exist or can be made.
fn put(obj: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let mut cur = obj;
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let Some((last, parents)) = parts.split_last() else {
        return Err("empty path".into());
    };
    for p in parents {
        let Some(m) = cur.as_object_mut() else {
            return Err(format!("{path}: a parent is not a mapping"));
        };
        cur = m.entry((*p).to_string()).or_insert_with(|| json!({}));
    }
    match cur.as_object_mut() {
        Some(m) => {
            m.insert((*last).to_string(), value);
            Ok(())
        }
        None => Err(format!("{path}: a parent is not a mapping")),
    }
}

fn remove_at(obj: &mut Value, path: &str) {
    if let Some((parent, last)) = path.rsplit_once('/') {
        if let Some(m) = obj.pointer_mut(parent).and_then(Value::as_object_mut) {
            m.remove(last);
        }
    }
}

/// Serializes documents as one YAML stream.
pub fn write_documents(docs: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(d).map_err(|e| format!("cannot write YAML: {e}"))?);
    }
    Ok(out)
}
