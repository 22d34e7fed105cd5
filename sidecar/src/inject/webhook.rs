//! The AdmissionReview answer of `berth injector`: the same edit as
//! `berth inject`, as a JSONPatch on the pod.
//!
//! Never denies: every answer is `allowed: true`; a pod that did not opt
//! in, or anything that goes wrong, gets no patch and a reason to log.
//! Admission cannot create objects (the webhook is `sideEffects: None`), so
//! berth.yaml travels in the pod's own annotation `berth.dev/berth.yaml`
//! and the downward API projects it into the berth-config volume where
//! `berth inject` mounts a ConfigMap; everything else is `berth inject`'s.

use serde_json::{json, Value};

use super::pod::{self, Inputs, MAIN_CONTAINER};
use super::settings::{self, Placement};

/// The label or annotation that opts a pod (or, as a label, a namespace) in.
pub const OPT_IN: &str = "berth.dev/inject";
/// Annotation naming a ConfigMap (key berth.yaml) in the pod's namespace.
pub const CONFIG: &str = "berth.dev/config";
/// Annotation that carries the pod's berth.yaml.
pub const CONFIG_TEXT: &str = "berth.dev/berth.yaml";

/// How the API server reached us: which webhook of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `/mutate`: the pod itself must carry `berth.dev/inject: enabled`.
    Pod,
    /// `/mutate/namespace`: the webhook's namespaceSelector matched the
    /// namespace label; a pod may still say `berth.dev/inject: disabled`.
    Namespace,
}

/// The injector's settings for every pod.
#[derive(Debug, Clone)]
pub struct Settings {
    pub native: bool,
    pub image: String,
}

/// A parsed review: what the answer needs, and what the pod asks for.
#[derive(Debug, Clone)]
pub struct Request {
    pub uid: String,
    pub namespace: String,
    pub pod: Value,
    /// `berth.dev/config`, when the pod names a ConfigMap.
    pub config_map: Option<String>,
}

/// Reads an AdmissionReview; `Err((uid, why))` when it is not one we act
/// on (the uid, if readable, still goes into the allowed answer).
pub fn parse(body: &[u8], scope: Scope) -> Result<Request, (String, String)> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| (String::new(), "body is not JSON".to_string()))?;
    let uid = v
        .pointer("/request/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let fail = |why: &str| (uid.clone(), why.to_string());
    if v.get("kind").and_then(Value::as_str) != Some("AdmissionReview")
        || v.get("apiVersion").and_then(Value::as_str) != Some("admission.k8s.io/v1")
    {
        return Err(fail("not an admission.k8s.io/v1 AdmissionReview"));
    }
    if uid.is_empty() {
        return Err(fail("the review has no request.uid"));
    }
    if v.pointer("/request/kind/kind").and_then(Value::as_str) != Some("Pod")
        || v.pointer("/request/subResource")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    {
        return Err(fail("not a Pod"));
    }
    if v.pointer("/request/operation").and_then(Value::as_str) != Some("CREATE") {
        return Err(fail("not a CREATE"));
    }
    let pod = v
        .pointer("/request/object")
        .filter(|o| o.is_object())
        .cloned()
        .ok_or_else(|| fail("the review has no pod object"))?;
    let flag = |field: &str| {
        pod.pointer(&format!("/metadata/{field}"))
            .and_then(|m| m.get(OPT_IN))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let said = flag("annotations").or_else(|| flag("labels"));
    let opted_in = match scope {
        Scope::Pod => said.as_deref() == Some("enabled"),
        Scope::Namespace => said.as_deref() != Some("disabled"),
    };
    if !opted_in {
        return Err(fail("the pod did not opt in (berth.dev/inject: enabled)"));
    }
    let namespace = v
        .pointer("/request/namespace")
        .and_then(Value::as_str)
        .or_else(|| pod.pointer("/metadata/namespace").and_then(Value::as_str))
        .unwrap_or("")
        .to_string();
    let config_map = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(CONFIG))
        .and_then(Value::as_str)
        .map(String::from);
    Ok(Request {
        uid,
        namespace,
        pod,
        config_map,
    })
}

/// The pod with berth added, or why not. `config`: the named ConfigMap's
/// berth.yaml (already fetched), else the default tcp check.
pub fn mutate(pod: &Value, config: Option<&str>, s: &Settings) -> Result<Value, String> {
    let mut meta = pod.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut spec = pod
        .get("spec")
        .filter(|v| v.is_object())
        .cloned()
        .ok_or("the pod has no spec")?;
    // A pod from a template `berth inject` already edited runs the config
    // its ConfigMap holds: re-injecting here would swap it for the default.
    if meta
        .get("annotations")
        .and_then(|a| a.get(pod::INJECTED))
        .is_some()
    {
        return Err("berth is already injected (berth inject)".into());
    }
    if pod::has_foreign_berth(&spec) {
        return Err("berth already runs in the pod".into());
    }
    let names = pod::container_names(&spec);
    let Some(first) = names.first() else {
        return Err("the pod has no containers".into());
    };
    let main = meta
        .get("annotations")
        .and_then(|a| a.get(MAIN_CONTAINER))
        .and_then(Value::as_str)
        .unwrap_or(first)
        .to_string();
    if !names.contains(&main) {
        return Err(format!(
            "{MAIN_CONTAINER} names container {main:?}, which the pod lacks"
        ));
    }
    let restart = spec
        .get("restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always");
    let batch = restart != "Always";
    let placement = Placement::decide(s.native, batch);
    let (base, text) = match config {
        Some(t) => (settings::parse_user_config(t)?, Some(t)),
        None => (
            settings::default_config(pod::first_port(&spec, &main)),
            None,
        ),
    };
    let config = settings::for_pod(&base, text, placement, batch)?;
    let (env, env_from) = pod::main_env(&spec, &main);
    if env_from.is_empty() {
        if let Some(r) = config.env_refs.iter().find(|r| {
            !env.iter()
                .any(|e| e.get("name").and_then(Value::as_str) == Some(r.as_str()))
        }) {
            return Err(format!(
                "berth.yaml uses ${{{r}}}, but container {main:?} has no env {r}"
            ));
        }
    }
    let token = super::random_token()?;
    let source = json!({"downwardAPI": {"items": [{
        "path": "berth.yaml",
        "fieldRef": {"fieldPath": format!("metadata.annotations['{CONFIG_TEXT}']")},
    }]}});
    let inputs = Inputs {
        config: &config,
        placement,
        batch,
        image: &s.image,
        token: &token,
        config_map: "",
        config_source: Some(source),
        main: &main,
        had_metadata: true,
    };
    if !pod::inject(&mut meta, &mut spec, &inputs)? {
        return Err(
            "nothing to add (a pod that does not restart, below 1.29, with nothing to wait for)"
                .into(),
        );
    }
    if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
        a.insert(CONFIG_TEXT.into(), Value::String(config.text.clone()));
    }
    let mut out = pod.clone();
    if let Some(o) = out.as_object_mut() {
        o.insert("metadata".into(), meta);
        o.insert("spec".into(), spec);
    }
    Ok(out)
}

/// A JSONPatch from `before` to `after` at the granularity inject edits:
/// whole `metadata.annotations` and whole top-level pod spec fields.
pub fn patch(before: &Value, after: &Value) -> Value {
    let mut ops = Vec::new();
    if before.pointer("/metadata/annotations") != after.pointer("/metadata/annotations") {
        if before.get("metadata").is_none() {
            ops.push(json!({"op": "add", "path": "/metadata", "value": {}}));
        }
        match after.pointer("/metadata/annotations") {
            Some(a) => ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": a})),
            None => ops.push(json!({"op": "remove", "path": "/metadata/annotations"})),
        }
    }
    let empty = serde_json::Map::new();
    let b = before
        .get("spec")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let a = after
        .get("spec")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let path = format!("/spec/{}", k.replace('~', "~0").replace('/', "~1"));
        match (b.get(k), a.get(k)) {
            (Some(x), Some(y)) if x == y => {}
            (_, Some(y)) => ops.push(json!({"op": "add", "path": path, "value": y})),
            (Some(_), None) => ops.push(json!({"op": "remove", "path": path})),
            (None, None) => {}
        }
    }
    Value::Array(ops)
}

/// The AdmissionReview answer: always allowed, with a patch when given.
pub fn response(uid: &str, patch: Option<&Value>) -> Value {
    let mut r = json!({"uid": uid, "allowed": true});
    if let (Some(p), Some(m)) = (patch, r.as_object_mut()) {
        m.insert("patchType".into(), json!("JSONPatch"));
        m.insert("patch".into(), json!(base64(p.to_string().as_bytes())));
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": r})
}

/// Standard base64 with padding (RFC 4648 §4), what `patch` must be.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }
}
