#!/usr/bin/env python3
"""mini-kubelet: run the pods of a rendered Helm chart with podman 4.3, doing
the kubelet's part that podman does not do.

    kubelet.py serve --manifests RENDER.yaml --prefix berth-t-1234 [options]
    kubelet.py down --prefix berth-t-1234        (remove everything left over)

WHY this exists. There is no Kubernetes here, only podman 4.3.1, and podman's
`kube play` ignores most of what berth is about (tests/pods/README.md has the
list): probes, preStop hooks, native sidecars (initContainers with
`restartPolicy: Always`), terminationGracePeriodSeconds, and secretKeyRef.
So this script reads the manifests exactly as `helm template` rendered them
and drives podman directly, one call per pod and container, the way kubelet
drives a container runtime:

  * a podman pod per replica (`--share net,ipc,uts`, plus `pid` when the pod
    spec says shareProcessNamespace), infra container = pause, hostname = pod
    name, `--add-host` for names a cluster DNS would resolve;
  * every container from its own spec: image, command/args (with `$(VAR)`
    expansion), env (value / configMapKeyRef / secretKeyRef / fieldRef /
    resourceFieldRef, envFrom), volumes (configMap and secret as read-only
    files, emptyDir as a per-pod podman volume that is world-writable like a
    Kubernetes emptyDir), resources limits, and the merged pod+container
    securityContext (runAsUser/runAsGroup/fsGroup -> --user/--group-add,
    readOnlyRootFilesystem -> --read-only without podman's extra tmpfs mounts,
    capabilities -> --cap-drop/--cap-add, allowPrivilegeEscalation=false ->
    no-new-privileges, runAsNonRoot refused for uid 0 as kubelet refuses it);
  * start order as kubelet: init containers one by one; a native sidecar is
    started and the next container waits until its startupProbe passed;
    then the main containers;
  * probes polled per the rendered spec (httpGet / tcpSocket / exec, period,
    timeout, initialDelay, success/failure thresholds), from the host to the
    pod IP as kubelet does; startup before liveness/readiness; liveness or
    startup failure restarts the container; exited containers restart per
    restartPolicy;
  * termination as kubelet does it: per main container (in parallel) the
    preStop hook (httpGet from the host to the pod IP, or exec), then SIGTERM
    with the rest of terminationGracePeriodSeconds, SIGKILL after it; native
    sidecars only once every main container is gone, in reverse order; the
    infra container (the pod network) last;
  * helm hook Jobs (pre-install/pre-upgrade) first, by hook weight, to
    completion; Job pods complete when their main containers have exited,
    which also stops their native sidecars.

Not emulated: Services/kube-proxy (publish ports with --publish and put a
load balancer in front), scheduling, HPA, PDB, CronJobs, image pulls.

Control API on --control (127.0.0.1:PORT, JSON):
  GET  /status                 pods, containers, probe state, events
  POST /pods/NAME/delete       graceful termination (returns at once)
  POST /pods/NAME/kill         SIGKILL everything (a node crash)
  POST /pods/NAME/replace      graceful deletion, then a new pod of the same name and ports
  POST /pods/NAME/replace-kill SIGKILL, then a new pod of the same name and ports
  POST /shutdown               terminate every pod gracefully, then exit
SIGTERM/SIGINT = /shutdown. The process also shuts down when its parent dies.
"""
import argparse
import base64
import copy
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

PODMAN = os.environ.get("PODMAN", "podman")
T0 = time.monotonic()
LOG_LOCK = threading.Lock()


def log(msg):
    with LOG_LOCK:
        print(f"[kubelet {time.strftime('%H:%M:%S')} +{time.monotonic() - T0:6.1f}s] {msg}",
              file=sys.stderr, flush=True)


def podman(*args, env=None, check=True, timeout=120, quiet=False):
    """Runs podman; returns stdout. Raises RuntimeError with stderr on failure."""
    cmd = [PODMAN, *args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"podman {' '.join(args[:3])} timed out after {timeout}s")
    if check and r.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:4])}: {r.stderr.strip()[-600:]}")
    if not quiet and r.returncode != 0:
        log(f"podman {' '.join(args[:3])} rc={r.returncode}: {r.stderr.strip()[-300:]}")
    return r.stdout


# ---------------------------------------------------------------- quantities

def parse_quantity(q):
    """Kubernetes resource quantity -> float (cores or bytes)."""
    s = str(q).strip()
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9,
             "T": 1e12, "m": 1e-3}
    for u, mult in units.items():
        if s.endswith(u):
            return float(s[:-len(u)]) * mult
    return float(s)


def parse_duration_s(v, default):
    return default if v is None else float(v)


# ---------------------------------------------------------------- manifests

class Manifests:
    def __init__(self, text):
        self.docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("kind")]
        self.configmaps = {}
        self.secrets = {}
        for d in self.docs:
            name = d.get("metadata", {}).get("name")
            if d["kind"] == "ConfigMap":
                data = dict(d.get("data") or {})
                for k, v in (d.get("binaryData") or {}).items():
                    data[k] = base64.b64decode(v).decode("utf-8", "replace")
                self.configmaps[name] = {k: str(v) for k, v in data.items()}
            elif d["kind"] == "Secret":
                data = {k: base64.b64decode(v or "").decode("utf-8", "replace")
                        for k, v in (d.get("data") or {}).items()}
                data.update({k: str(v) for k, v in (d.get("stringData") or {}).items()})
                self.secrets[name] = data

    def hpa_min(self, kind, name):
        for d in self.docs:
            if d["kind"] == "HorizontalPodAutoscaler":
                ref = d.get("spec", {}).get("scaleTargetRef", {})
                if ref.get("kind") == kind and ref.get("name") == name:
                    return int(d["spec"].get("minReplicas", 1))
        return None


def hook_of(doc):
    ann = (doc.get("metadata") or {}).get("annotations") or {}
    hooks = [h.strip() for h in str(ann.get("helm.sh/hook", "")).split(",") if h.strip()]
    weight = int(str(ann.get("helm.sh/hook-weight", "0")) or 0)
    return hooks, weight


# ---------------------------------------------------------------- pods

class ContainerState:
    def __init__(self, spec, pod, kind):
        self.spec = spec
        self.name = spec["name"]
        self.pod = pod
        self.kind = kind  # init | sidecar | main
        self.podman_name = f"{pod.name}-{self.name}"
        self.state = "waiting"  # waiting | running | exited
        self.exit_code = None
        self.restarts = 0
        self.started = False  # startup probe passed (or none)
        self.ready = False
        self.created_at = None
        self.started_at = None
        self.startup_passed_at = None
        self.ready_at = None
        self.exited_at = None
        self.host_pid = None
        self.probe = {}  # kind -> dict(next, succ, fail, last)
        self.termination = None
        self.terminating = False
        self.error = None

    def public(self):
        return {
            "name": self.name, "podman_name": self.podman_name, "kind": self.kind,
            "image": self.spec.get("image"), "state": self.state, "exit_code": self.exit_code,
            "restarts": self.restarts, "started": self.started, "ready": self.ready,
            "created_at": self.created_at, "started_at": self.started_at,
            "startup_passed_at": self.startup_passed_at, "ready_at": self.ready_at,
            "exited_at": self.exited_at, "host_pid": self.host_pid, "error": self.error,
            "probes": {k: {kk: vv for kk, vv in v.items() if kk != "next"} for k, v in self.probe.items()},
            "termination": self.termination,
        }


class Pod:
    def __init__(self, kl, name, workload, kind, template, index, publish):
        self.kl = kl
        self.name = name
        self.workload = workload
        self.workload_kind = kind
        self.index = index
        self.meta = copy.deepcopy(template.get("metadata") or {})
        self.spec = copy.deepcopy(template["spec"])
        self.template_spec = copy.deepcopy(template["spec"])
        self.uid = str(uuid.uuid4())
        self.publish = publish  # [(host_port, container_port)]
        self.ip = None
        self.phase = "Pending"
        self.events = []
        self.lock = threading.RLock()
        self.deleting = False
        self.deleted = threading.Event()
        self.volumes = {}  # volume name -> ("bind", path) | ("volume", podman name)
        self.workdir = os.path.join(kl.workdir, name)
        self.restart_policy = self.spec.get("restartPolicy", "Always")
        self.grace = int(self.spec.get("terminationGracePeriodSeconds", 30))
        inits = self.spec.get("initContainers") or []
        self.containers = []
        for c in inits:
            self.containers.append(ContainerState(c, self, "sidecar" if c.get("restartPolicy") == "Always" else "init"))
        for c in self.spec.get("containers") or []:
            self.containers.append(ContainerState(c, self, "main"))
        self.termination = None

    # -- bookkeeping
    def event(self, what, container=None):
        e = {"t": round(time.time(), 3), "pod": self.name, "container": container, "event": what}
        with self.lock:
            self.events.append(e)
        self.kl.events.append(e)
        log(f"{self.name}{'/' + container if container else ''}: {what}")

    def ready(self):
        cs = [c for c in self.containers if c.kind in ("main", "sidecar")]
        return self.phase == "Running" and bool(cs) and all(c.ready for c in cs)

    def public(self):
        with self.lock:
            return {
                "name": self.name, "workload": self.workload, "workload_kind": self.workload_kind,
                "index": self.index, "ip": self.ip, "phase": self.phase, "ready": self.ready(),
                "deleting": self.deleting, "grace_seconds": self.grace,
                "share_pid": bool(self.spec.get("shareProcessNamespace")),
                "publish": [{"host": h, "container": c} for h, c in self.publish],
                "labels": self.meta.get("labels") or {},
                "containers": [c.public() for c in self.containers],
                "termination": self.termination,
                "events": list(self.events),
            }

    # -- security context
    def security_args(self, c):
        psc = self.spec.get("securityContext") or {}
        csc = c.spec.get("securityContext") or {}
        sc = dict(psc)
        sc.update(csc)
        args = []
        uid = sc.get("runAsUser")
        gid = sc.get("runAsGroup")
        if uid is not None:
            args += ["--user", f"{uid}:{gid}" if gid is not None else str(uid)]
        elif gid is not None:
            raise RuntimeError("runAsGroup without runAsUser is not supported by this harness")
        groups = list(psc.get("supplementalGroups") or [])
        if psc.get("fsGroup") is not None:
            groups.append(psc["fsGroup"])
        for g in groups:
            args += ["--group-add", str(g)]
        if sc.get("runAsNonRoot"):
            eff = uid
            if eff is None:
                user = podman("image", "inspect", "--format", "{{.Config.User}}",
                              self.kl.image(c.spec["image"])).strip()
                eff = user.split(":")[0] if user else "0"
            if not str(eff).isdigit() or int(eff) == 0:
                # kubelet: "container has runAsNonRoot and image will run as root"
                raise RuntimeError(f"runAsNonRoot but container {c.name} would run as user {eff!r}")
        if sc.get("readOnlyRootFilesystem"):
            # podman --read-only adds writable tmpfs on /tmp, /run, /var/tmp by
            # default; Kubernetes does not, so turn that off.
            args += ["--read-only", "--read-only-tmpfs=false"]
        caps = sc.get("capabilities") or {}
        for cap in caps.get("drop") or []:
            args += ["--cap-drop", "ALL" if str(cap).upper() == "ALL" else str(cap)]
        for cap in caps.get("add") or []:
            args += ["--cap-add", str(cap)]
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        if sc.get("privileged"):
            args += ["--privileged"]
        prof = (sc.get("seccompProfile") or {}).get("type")
        if prof == "Unconfined":
            args += ["--security-opt", "seccomp=unconfined"]
        return args

    # -- env
    def resolve_env(self, c):
        env = {}
        m = self.kl.manifests

        def source(kind, name):
            table = m.configmaps if kind == "configMap" else m.secrets
            if name not in table:
                raise RuntimeError(f"{kind} {name!r} not in the render")
            return table[name]

        for ef in c.spec.get("envFrom") or []:
            prefix = ef.get("prefix", "")
            for kind in ("configMap", "secret"):
                ref = ef.get(kind + "Ref")
                if ref:
                    if ref.get("optional") and ref["name"] not in (m.configmaps if kind == "configMap" else m.secrets):
                        continue
                    for k, v in source(kind, ref["name"]).items():
                        env[prefix + k] = v
        for e in c.spec.get("env") or []:
            name = e["name"]
            if "value" in e:
                env[name] = expand(str(e["value"]), env)
                continue
            vf = e.get("valueFrom") or {}
            if not vf:
                env[name] = ""
                continue
            for kind in ("configMap", "secret"):
                ref = vf.get(kind + "KeyRef")
                if ref:
                    table = m.configmaps if kind == "configMap" else m.secrets
                    if ref["name"] not in table or ref["key"] not in table[ref["name"]]:
                        if ref.get("optional"):
                            break
                        raise RuntimeError(f"env {name}: {kind} {ref['name']}/{ref['key']} not in the render")
                    env[name] = table[ref["name"]][ref["key"]]
            if "fieldRef" in vf:
                env[name] = self.field(vf["fieldRef"]["fieldPath"])
            if "resourceFieldRef" in vf:
                r = vf["resourceFieldRef"]
                target = c
                if r.get("containerName"):
                    target = next(x for x in self.containers if x.name == r["containerName"])
                kind, res = r["resource"].split(".", 1)
                val = ((target.spec.get("resources") or {}).get(kind) or {}).get(res)
                div = parse_quantity(r.get("divisor", "1"))
                if val is None:
                    env[name] = "0"
                else:
                    q = parse_quantity(val) / div
                    env[name] = str(int(-(-q // 1)))  # kubelet rounds up
        return env

    def field(self, path):
        md = self.meta
        if path == "metadata.name":
            return self.name
        if path == "metadata.namespace":
            return self.kl.namespace
        if path == "metadata.uid":
            return self.uid
        if path in ("status.podIP", "status.podIPs"):
            return self.ip or ""
        if path in ("status.hostIP", "status.hostIPs"):
            return self.kl.gateway
        if path == "spec.nodeName":
            return socket.gethostname()
        if path == "spec.serviceAccountName":
            return self.spec.get("serviceAccountName", "default")
        mm = re.match(r"metadata\.(labels|annotations)\['(.+)'\]$", path)
        if mm:
            return str((md.get(mm.group(1)) or {}).get(mm.group(2), ""))
        raise RuntimeError(f"fieldRef {path} not supported by this harness")

    # -- volumes
    def prepare_volumes(self):
        os.makedirs(self.workdir, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        fs_group = (self.spec.get("securityContext") or {}).get("fsGroup")
        for v in self.spec.get("volumes") or []:
            name = v["name"]
            if "emptyDir" in v or "persistentVolumeClaim" in v or "ephemeral" in v:
                vol = f"{self.name}-{name}"
                podman("volume", "create", "--label", f"berth.dev/kubelet={self.kl.prefix}", vol)
                mp = podman("volume", "inspect", "--format", "{{.Mountpoint}}", vol).strip()
                # An emptyDir is world-writable (0777) in Kubernetes; with fsGroup it
                # belongs to that group, setgid.
                if fs_group is not None:
                    os.chown(mp, 0, int(fs_group))
                    os.chmod(mp, 0o2777)
                else:
                    os.chmod(mp, 0o777)
                self.volumes[name] = ("volume", vol)
            elif "configMap" in v or "secret" in v or "projected" in v:
                d = os.path.join(self.workdir, "vol-" + name)
                os.makedirs(d, exist_ok=True)
                if "projected" in v:
                    mode = int(v["projected"].get("defaultMode", 0o644))
                    sources = v["projected"].get("sources") or []
                else:
                    key = "configMap" if "configMap" in v else "secret"
                    src = dict(v[key])
                    if key == "secret":
                        src["name"] = src.get("secretName")
                    mode = int(src.get("defaultMode", 0o644))
                    sources = [{key: src}]
                for src in sources:
                    self.write_source(name, d, src, mode, fs_group)
                os.chmod(d, 0o755)
                self.volumes[name] = ("bind", d)
            else:
                raise RuntimeError(f"volume {name}: type {sorted(set(v) - {'name'})} not supported")

    def write_source(self, vol, d, src, mode, fs_group):
        """Writes one configMap/secret source of a volume as files (kubelet's atomic writer, minus the atomics)."""
        for kind, table in (("configMap", self.kl.manifests.configmaps), ("secret", self.kl.manifests.secrets)):
            if kind not in src:
                continue
            ref = src[kind].get("name")
            if ref not in table:
                if src[kind].get("optional"):
                    return
                raise RuntimeError(f"volume {vol}: {kind} {ref!r} not in the render")
            data = table[ref]
            for it in src[kind].get("items") or [{"key": k, "path": k} for k in data]:
                if it["key"] not in data:
                    raise RuntimeError(f"volume {vol}: key {it['key']} not in {kind} {ref}")
                p = os.path.join(d, it["path"])
                os.makedirs(os.path.dirname(p), exist_ok=True)
                with open(p, "w") as f:
                    f.write(data[it["key"]])
                os.chmod(p, int(it.get("mode", mode)))
                if fs_group is not None:
                    os.chown(p, 0, int(fs_group))
            return
        raise RuntimeError(f"volume {vol}: projected source {sorted(src)} not supported by this harness")

    def mount_args(self, c):
        args = []
        for m in c.spec.get("volumeMounts") or []:
            kind, src = self.volumes[m["name"]]
            ro = m.get("readOnly", False)
            if kind == "bind":
                ro = True  # configMap/secret volumes are always read-only
                path = os.path.join(src, m["subPath"]) if m.get("subPath") else src
                args += ["-v", f"{path}:{m['mountPath']}:ro"]
            else:
                if m.get("subPath"):
                    raise RuntimeError("subPath on emptyDir is not supported by this harness")
                args += ["-v", f"{src}:{m['mountPath']}{':ro' if ro else ''}"]
        return args

    # -- lifecycle
    def create(self):
        share = "net,ipc,uts,pid" if self.spec.get("shareProcessNamespace") else "net,ipc,uts"
        args = ["pod", "create", "--name", self.name, "--share", share, "--hostname", self.name[:63],
                "--label", f"berth.dev/kubelet={self.kl.prefix}"]
        for h in self.kl.add_hosts:
            args += ["--add-host", h]
        for ha in self.spec.get("hostAliases") or []:
            for hn in ha.get("hostnames") or []:
                args += ["--add-host", f"{hn}:{ha['ip']}"]
        for hp, cp in self.publish:
            args += ["-p", f"127.0.0.1:{hp}:{cp}"]
        podman(*args)
        podman("pod", "start", self.name)
        infra = podman("pod", "inspect", "--format", "{{.InfraContainerID}}", self.name).strip()
        self.ip = podman("inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                         infra).strip()
        self.event(f"pod created, ip {self.ip}, share {share}")
        self.prepare_volumes()

    def run_container(self, c):
        """Creates and starts one container (first start) as its spec says."""
        env = self.resolve_env(c)
        args = ["create", "--name", c.podman_name, "--pod", self.name, "--restart", "no",
                "--label", f"berth.dev/kubelet={self.kl.prefix}", "--pull", "never",
                "--stop-timeout", str(self.grace)]
        args += self.security_args(c)
        args += self.mount_args(c)
        lim = (c.spec.get("resources") or {}).get("limits") or {}
        if "memory" in lim:
            args += ["--memory", str(int(parse_quantity(lim["memory"])))]
        if "cpu" in lim:
            args += ["--cpus", f"{parse_quantity(lim['cpu']):.3f}"]
        if c.spec.get("workingDir"):
            args += ["--workdir", c.spec["workingDir"]]
        penv = dict(os.environ)
        for k, v in env.items():
            # `-e NAME` takes the value from podman's own environment: values
            # (secrets) never appear on a command line.
            args += ["-e", k]
            penv[k] = v
        if c.spec.get("command"):
            args += ["--entrypoint", json.dumps([expand(str(x), env) for x in c.spec["command"]])]
        args.append(self.kl.image(c.spec["image"]))
        args += [expand(str(x), env) for x in c.spec.get("args") or []]
        podman(*args, env=penv)
        c.created_at = time.time()
        self.start_container(c, first=True)

    def start_container(self, c, first=False):
        if not first:
            podman("start", c.podman_name)
        else:
            podman("start", c.podman_name)
        now = time.time()
        c.state, c.exit_code, c.started_at = "running", None, now
        c.started, c.ready, c.startup_passed_at, c.ready_at = False, False, None, None
        try:
            c.host_pid = int(podman("inspect", "--format", "{{.State.Pid}}", c.podman_name).strip() or 0)
        except (RuntimeError, ValueError):
            c.host_pid = None
        mono = time.monotonic()
        c.probe = {}
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            p = c.spec.get(kind)
            if p and c.kind != "init":
                c.probe[kind] = {"next": mono + float(p.get("initialDelaySeconds", 0)),
                                 "succ": 0, "fail": 0, "last": None, "runs": 0}
        if "startupProbe" not in c.probe:
            c.started = True
        self.event("started" if first else f"restarted (restart #{c.restarts})", c.name)

    def wait_started(self, c, timeout):
        """Blocks until c's startup probe passed (a native sidecar gate)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.deleting:
            self.tick()
            if c.started and c.state == "running":
                return True
            time.sleep(0.1)
        return False

    def run_init(self, c):
        """A regular init container: run to completion (restart per policy)."""
        self.run_container(c)
        while not self.deleting:
            out = podman("wait", c.podman_name, timeout=3600).strip()
            code = int(out.splitlines()[-1]) if out else -1
            c.state, c.exit_code, c.exited_at = "exited", code, time.time()
            self.event(f"exited with {code}", c.name)
            if code == 0:
                return True
            if self.restart_policy == "Never":
                return False
            c.restarts += 1
            time.sleep(min(10, 2 ** min(c.restarts, 4)) / 2)
            self.start_container(c)
        return False

    def start(self):
        try:
            self.create()
            for c in self.containers:
                if self.deleting:
                    return
                if c.kind == "init":
                    if not self.run_init(c):
                        self.phase = "Failed"
                        self.event("init container failed: pod Failed", c.name)
                        return
                elif c.kind == "sidecar":
                    self.run_container(c)
                    if not self.wait_started(c, self.kl.startup_timeout):
                        if not self.deleting:
                            self.event("sidecar never passed its startup probe", c.name)
                        return
                    self.event("startup gate passed: next container may start", c.name)
            self.phase = "Running"
            for c in self.containers:
                if c.kind == "main" and not self.deleting:
                    self.run_container(c)
        except Exception as e:  # noqa: BLE001 - reported through /status
            self.phase = "Failed"
            self.event(f"error: {e}")

    # -- probes
    def probe_once(self, c, kind, p):
        timeout = float(p.get("timeoutSeconds", 1))
        try:
            if "httpGet" in p:
                g = p["httpGet"]
                port = resolve_port(c, g.get("port"))
                host = g.get("host") or self.ip
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
                headers = {h["name"]: h["value"] for h in g.get("httpHeaders") or []}
                headers.setdefault("User-Agent", "kube-probe/1.31")
                conn.request("GET", g.get("path", "/"), headers=headers)
                r = conn.getresponse()
                r.read()
                conn.close()
                return 200 <= r.status < 400, f"HTTP {r.status}"
            if "tcpSocket" in p:
                port = resolve_port(c, p["tcpSocket"].get("port"))
                with socket.create_connection((p["tcpSocket"].get("host") or self.ip, port), timeout=timeout):
                    return True, "connected"
            if "exec" in p:
                r = subprocess.run([PODMAN, "exec", c.podman_name, *p["exec"]["command"]],
                                   capture_output=True, timeout=timeout + 5)
                return r.returncode == 0, f"exit {r.returncode}"
            return False, "unsupported probe handler"
        except Exception as e:  # noqa: BLE001
            return False, type(e).__name__ + ": " + str(e)[:120]

    def tick(self):
        """Runs the probes that are due (called from the pod's loop)."""
        now = time.monotonic()
        for c in self.containers:
            if c.state != "running" or c.terminating:
                continue
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                st = c.probe.get(kind)
                if not st or now < st["next"]:
                    continue
                if kind == "startupProbe" and c.started:
                    continue
                if kind != "startupProbe" and not c.started:
                    continue
                if self.deleting and kind != "readinessProbe":
                    continue
                p = c.spec[kind]
                st["next"] = now + float(p.get("periodSeconds", 10))
                ok, detail = self.probe_once(c, kind, p)
                st["runs"] += 1
                st["last"] = detail
                if ok:
                    st["succ"] += 1
                    st["fail"] = 0
                else:
                    st["fail"] += 1
                    st["succ"] = 0
                if kind == "startupProbe":
                    if ok:
                        c.started = True
                        c.startup_passed_at = time.time()
                        self.event(f"startupProbe passed ({detail}) after {st['runs']} probe(s)", c.name)
                    elif st["fail"] >= int(p.get("failureThreshold", 3)):
                        self.event(f"startupProbe failed {st['fail']}x ({detail}): restarting", c.name)
                        self.restart_container(c)
                elif kind == "readinessProbe":
                    if ok and not c.ready and st["succ"] >= int(p.get("successThreshold", 1)):
                        c.ready = True
                        c.ready_at = time.time()
                        self.event(f"ready ({detail})", c.name)
                    elif not ok and c.ready and st["fail"] >= int(p.get("failureThreshold", 3)):
                        c.ready = False
                        self.event(f"not ready ({detail})", c.name)
                elif kind == "livenessProbe":
                    if not ok and st["fail"] >= int(p.get("failureThreshold", 3)):
                        self.event(f"livenessProbe failed {st['fail']}x ({detail}): restarting", c.name)
                        self.restart_container(c)
            if c.started and "readinessProbe" not in c.probe and not c.ready and c.kind != "init":
                c.ready = True
                c.ready_at = time.time()

    def restart_container(self, c):
        self.stop_container(c, self.grace, run_prestop=True)
        c.restarts += 1
        self.start_container(c)

    def observe(self, ps):
        """Updates container states from one `podman ps` snapshot; restarts exits."""
        for c in self.containers:
            if c.state != "running" or c.terminating or c.kind == "init":
                continue
            info = ps.get(c.podman_name)
            if info is None or info.get("State") not in ("exited", "stopped"):
                continue
            c.state, c.exit_code, c.exited_at, c.ready = "exited", info.get("ExitCode"), time.time(), False
            self.event(f"exited with {c.exit_code}", c.name)
            if self.deleting:
                continue
            restart = (self.restart_policy == "Always" or c.kind == "sidecar"
                       or (self.restart_policy == "OnFailure" and c.exit_code != 0))
            if restart:
                c.restarts += 1
                threading.Timer(min(10.0, 0.5 * 2 ** min(c.restarts, 5)), self.safe_start, [c]).start()
        mains = [c for c in self.containers if c.kind == "main"]
        if (self.restart_policy != "Always" and self.phase == "Running" and mains
                and all(c.state == "exited" for c in mains)):
            ok = all(c.exit_code == 0 for c in mains)
            self.phase = "Succeeded" if ok else "Failed"
            self.event(f"all main containers exited: pod {self.phase}; stopping sidecars")
            for c in reversed([c for c in self.containers if c.kind == "sidecar"]):
                self.stop_container(c, self.grace, run_prestop=True)

    def safe_start(self, c):
        if self.deleting or c.state == "running":
            return
        try:
            self.start_container(c)
        except RuntimeError as e:
            self.event(f"restart failed: {e}", c.name)

    # -- termination
    def run_prestop(self, c, budget):
        ps = (c.spec.get("lifecycle") or {}).get("preStop")
        if not ps or budget <= 0:
            return None
        t = time.monotonic()
        res = {"handler": None, "ok": False, "detail": None, "body": None}
        try:
            if "httpGet" in ps:
                g = ps["httpGet"]
                res["handler"] = f"httpGet {g.get('path', '/')}"
                conn = http.client.HTTPConnection(g.get("host") or self.ip, resolve_port(c, g.get("port")),
                                                  timeout=budget)
                conn.request("GET", g.get("path", "/"),
                             headers={h["name"]: h["value"] for h in g.get("httpHeaders") or []})
                r = conn.getresponse()
                body = r.read()
                conn.close()
                res.update(ok=200 <= r.status < 400, detail=f"HTTP {r.status}",
                           body=body.decode("utf-8", "replace")[:2000])
            elif "exec" in ps:
                res["handler"] = "exec " + " ".join(ps["exec"]["command"])
                r = subprocess.run([PODMAN, "exec", c.podman_name, *ps["exec"]["command"]],
                                   capture_output=True, text=True, timeout=budget)
                res.update(ok=r.returncode == 0, detail=f"exit {r.returncode}", body=r.stdout[-2000:])
            elif "sleep" in ps:
                res["handler"] = f"sleep {ps['sleep']['seconds']}"
                time.sleep(min(budget, float(ps["sleep"]["seconds"])))
                res.update(ok=True, detail="slept")
        except Exception as e:  # noqa: BLE001
            res["detail"] = type(e).__name__ + ": " + str(e)[:200]
        res["seconds"] = round(time.monotonic() - t, 3)
        return res

    def stop_container(self, c, budget, run_prestop):
        """preStop, then SIGTERM and up to the rest of `budget` seconds, then SIGKILL."""
        with self.lock:
            if c.state != "running" or c.terminating:
                return
            c.terminating = True
        t0 = time.monotonic()
        term = {"prestop": None, "sigterm_at": None, "exited_after_s": None}
        if run_prestop:
            term["prestop"] = self.run_prestop(c, budget)
            if term["prestop"]:
                self.event(f"preStop {term['prestop']['handler']}: {term['prestop']['detail']} "
                           f"in {term['prestop']['seconds']}s", c.name)
        rest = max(2, int(round(budget - (time.monotonic() - t0))))  # kubelet's minimum is 2s
        term["sigterm_at"] = time.time()
        term["grace_left_s"] = rest
        self.event(f"SIGTERM (SIGKILL after {rest}s)", c.name)
        t1 = time.monotonic()
        podman("stop", "-t", str(rest), c.podman_name, check=False, timeout=rest + 60)
        term["exited_after_s"] = round(time.monotonic() - t1, 3)
        try:
            code = int(podman("inspect", "--format", "{{.State.ExitCode}}", c.podman_name).strip())
        except (RuntimeError, ValueError):
            code = None
        term["exit_code"] = code
        term["killed"] = code == 137
        c.state, c.exit_code, c.exited_at, c.ready = "exited", code, time.time(), False
        c.termination = term
        c.terminating = False
        self.event(f"exited with {code} {term['exited_after_s']}s after SIGTERM", c.name)

    def delete(self, graceful=True):
        with self.lock:
            if self.deleting:
                return
            self.deleting = True
        t0 = time.monotonic()
        self.event("deleting" + ("" if graceful else " (SIGKILL)"))
        self.termination = {"started_at": time.time(), "graceful": graceful}
        try:
            if not graceful:
                podman("pod", "kill", self.name, check=False)
            else:
                mains = [c for c in self.containers if c.kind in ("main", "init") and c.state == "running"]
                threads = [threading.Thread(target=self.stop_container, args=(c, self.grace, True))
                           for c in mains]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                # Native sidecars: only after the main containers are gone, in
                # reverse order, with whatever grace is left.
                for c in reversed([c for c in self.containers if c.kind == "sidecar"]):
                    left = self.grace - (time.monotonic() - t0)
                    self.stop_container(c, max(2, left), True)
                # Only now the infra container: the pod network stayed up until here.
            podman("pod", "stop", "-t", "1", self.name, check=False, quiet=True)
            self.termination["seconds"] = round(time.monotonic() - t0, 3)
            self.event(f"terminated in {self.termination['seconds']}s")
            self.kl.save_logs(self)
            podman("pod", "rm", "-f", self.name, check=False, quiet=True)
            for kind, src in self.volumes.values():
                if kind == "volume":
                    podman("volume", "rm", "-f", src, check=False, quiet=True)
            shutil.rmtree(self.workdir, ignore_errors=True)
        finally:
            self.phase = "Terminated"
            self.deleted.set()

    def loop(self):
        self.start()
        while not self.deleted.is_set():
            if not self.deleting:
                self.tick()
            elif self.phase != "Terminated":
                self.tick()  # readiness keeps being observed during termination
            time.sleep(0.1)


def resolve_port(c, port):
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for cc in c.pod.containers:
        for p in cc.spec.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
    raise RuntimeError(f"named port {port!r} not found in pod {c.pod.name}")


def expand(s, env):
    """Kubernetes $(VAR) expansion: defined variables are replaced, $$ escapes."""
    def rep(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", rep, s)


# ---------------------------------------------------------------- kubelet

class Kubelet:
    def __init__(self, a, manifests):
        self.a = a
        self.manifests = manifests
        self.prefix = a.prefix
        self.namespace = a.namespace
        self.add_hosts = a.add_host
        self.startup_timeout = a.startup_timeout
        self.images = [tuple(x.split("=", 1)) for x in a.image]
        self.workdir = tempfile.mkdtemp(prefix=f"{a.prefix}-kubelet-")
        os.chmod(self.workdir, 0o755)
        self.logs_dir = a.logs_dir
        self.pods = []
        self.events = []
        self.stopping = threading.Event()
        self.gateway = gateway_ip()
        self.hooks_done = False
        self.error = None

    def image(self, ref):
        """--image OLD=NEW rewrites (prefix match on the repository)."""
        for old, new in self.images:
            if ref == old or ref.startswith(old + ":") or ref.startswith(old + "@"):
                return new
        return ref

    def plan(self):
        """Hook Jobs (in order) and the pods of every other workload."""
        pre, main, post = [], [], []
        scale = dict(x.split("=", 1) for x in self.a.scale)
        only = set(self.a.only)
        skip = set(self.a.skip)
        for d in self.manifests.docs:
            kind = d["kind"]
            name = d["metadata"]["name"]
            if kind not in ("Deployment", "StatefulSet", "Job", "Pod", "DaemonSet", "ReplicaSet"):
                continue
            if (only and name not in only) or name in skip:
                continue
            hooks, weight = hook_of(d)
            if "test" in hooks or "test-success" in hooks:
                continue
            if kind == "Pod":
                tmpl, n = {"metadata": d.get("metadata"), "spec": d["spec"]}, 1
            elif kind == "Job":
                tmpl = d["spec"]["template"]
                n = int(d["spec"].get("parallelism", 1))
            else:
                tmpl = d["spec"]["template"]
                n = d["spec"].get("replicas")
                if n is None:
                    n = self.manifests.hpa_min(kind, name) or 1
            if name in scale:
                n = int(scale[name])
            backoff = int(d["spec"].get("backoffLimit", 6)) if kind == "Job" else 0
            entry = (weight, name, kind, tmpl, int(n), backoff)
            # This is an install: pre-/post-upgrade hooks do not run.
            if "pre-install" in hooks:
                pre.append(entry)
            elif "post-install" in hooks:
                post.append(entry)
            elif hooks:
                continue
            else:
                main.append(entry)
        pre.sort(key=lambda e: e[0])
        post.sort(key=lambda e: e[0])
        return pre, main, post

    def make_pods(self, entry, first=0):
        _, name, kind, tmpl, n, _ = entry
        pods = []
        publish = {}
        for p in self.a.publish:
            w, rest = p.split(":", 1)
            port, base = rest.split("=", 1)
            if w == name:
                publish[port] = int(base)
        for i in range(first, first + n):
            pname = f"{self.prefix}-{name}-{i}"
            pub = []
            for port, base in publish.items():
                cp = None
                for c in (tmpl["spec"].get("initContainers") or []) + tmpl["spec"]["containers"]:
                    for pp in c.get("ports") or []:
                        if pp.get("name") == port or str(pp.get("containerPort")) == port:
                            cp = int(pp["containerPort"])
                if cp is None:
                    raise RuntimeError(f"--publish {name}:{port}: no such container port")
                pub.append((base + i, cp))
            pods.append(Pod(self, pname, name, kind, tmpl, i, pub))
        return pods

    def run_pods(self, pods, wait_completion):
        self.pods.extend(pods)
        threads = []
        for p in pods:
            t = threading.Thread(target=p.loop, daemon=True, name=p.name)
            t.start()
            threads.append(t)
        if wait_completion:
            deadline = time.monotonic() + self.a.hook_timeout
            while time.monotonic() < deadline and not self.stopping.is_set():
                if all(p.phase in ("Succeeded", "Failed") for p in pods):
                    break
                time.sleep(0.2)
            ok = all(p.phase == "Succeeded" for p in pods)
            for p in pods:
                threading.Thread(target=p.delete, daemon=True).start()
            return ok
        return True

    def run(self):
        pre, main, post = self.plan()
        log(f"plan: hooks {[e[1] for e in pre]}, workloads {[(e[1], e[4]) for e in main]}, "
            f"post hooks {[e[1] for e in post]}")
        for entry in pre:
            if self.stopping.is_set():
                return
            if not self.run_job(entry):
                return
        for entry in main:
            self.run_pods(self.make_pods(entry), wait_completion=False)
        for entry in post:
            if entry[2] == "Job":
                if not self.run_job(entry):
                    return
            else:
                self.run_pods(self.make_pods(entry), wait_completion=False)
        self.hooks_done = True
        log("every workload created and every hook Job done")

    def run_job(self, entry):
        """A hook Job: its pod(s) to completion, a new pod per failure up to backoffLimit."""
        name, n, backoff = entry[1], entry[4], entry[5]
        for attempt in range(backoff + 1):
            log(f"running hook Job {name} (attempt {attempt + 1}/{backoff + 1})")
            if self.run_pods(self.make_pods(entry, first=attempt * n), wait_completion=True):
                return True
            if self.stopping.is_set():
                return False
            time.sleep(min(10, 2 ** attempt))
        self.error = f"hook Job {name} failed {backoff + 1} times"
        log(self.error)
        return False

    def monitor(self):
        while not self.stopping.is_set():
            try:
                out = podman("ps", "-a", "--filter", f"label=berth.dev/kubelet={self.prefix}",
                             "--format", "json", check=False, quiet=True)
                ps = {}
                for c in json.loads(out or "[]"):
                    for n in c.get("Names") or []:
                        ps[n] = c
                for p in list(self.pods):
                    if p.phase not in ("Terminated",) and not p.deleted.is_set():
                        p.observe(ps)
            except Exception as e:  # noqa: BLE001
                log(f"monitor: {e}")
            if self.a.parent_pid and not pid_alive(self.a.parent_pid):
                log("parent process is gone: shutting down")
                threading.Thread(target=self.shutdown, daemon=True).start()
            self.stopping.wait(1.0)

    def pod(self, name):
        found = [p for p in list(self.pods) if p.name == name]
        return found[-1] if found else None

    def replace(self, old, graceful):
        """Deletes a pod and creates a fresh one in its place (same name, ports):
        what a ReplicaSet does, minus the new name, so a load balancer that
        knows the published port sees the replacement."""
        old.delete(graceful)
        if self.stopping.is_set():
            return
        new = Pod(self, old.name, old.workload, old.workload_kind,
                  {"metadata": old.meta, "spec": old.template_spec}, old.index, old.publish)
        self.run_pods([new], wait_completion=False)

    def status(self):
        return {"prefix": self.prefix, "gateway": self.gateway, "hooks_done": self.hooks_done,
                "error": self.error, "pods": [p.public() for p in list(self.pods)]}

    def save_logs(self, pod):
        if not self.logs_dir:
            return
        os.makedirs(self.logs_dir, exist_ok=True)
        for c in pod.containers:
            r = subprocess.run([PODMAN, "logs", c.podman_name], capture_output=True, text=True)
            with open(os.path.join(self.logs_dir, c.podman_name + ".log"), "w") as f:
                f.write(r.stdout + r.stderr)

    def shutdown(self):
        if self.stopping.is_set():
            return
        self.stopping.set()
        log("shutdown: deleting every pod gracefully")
        threads = [threading.Thread(target=p.delete) for p in list(self.pods) if not p.deleted.is_set()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        down(self.prefix)
        shutil.rmtree(self.workdir, ignore_errors=True)
        log("shutdown complete")
        os._exit(0)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def gateway_ip():
    try:
        out = podman("network", "inspect", "podman", "--format",
                     "{{range .Subnets}}{{.Gateway}}{{end}}", check=False, quiet=True).strip()
        return out or "10.88.0.1"
    except RuntimeError:
        return "10.88.0.1"


def down(prefix):
    """Removes every pod, container and volume carrying this prefix's label."""
    out = podman("pod", "ps", "-q", "--filter", f"label=berth.dev/kubelet={prefix}", check=False, quiet=True)
    ids = out.split()
    if ids:
        podman("pod", "rm", "-f", *ids, check=False, quiet=True)
    out = podman("ps", "-aq", "--filter", f"label=berth.dev/kubelet={prefix}", check=False, quiet=True)
    if out.split():
        podman("rm", "-f", *out.split(), check=False, quiet=True)
    out = podman("volume", "ls", "-q", "--filter", f"label=berth.dev/kubelet={prefix}", check=False, quiet=True)
    if out.split():
        podman("volume", "rm", "-f", *out.split(), check=False, quiet=True)


class Control(BaseHTTPRequestHandler):
    kl = None

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/status":
            return self.reply(200, self.kl.status())
        return self.reply(404, {"error": "not found"})

    def do_POST(self):
        m = re.match(r"^/pods/([^/]+)/(delete|kill|replace|replace-kill)$", self.path)
        if m:
            p = self.kl.pod(m.group(1))
            if not p:
                return self.reply(404, {"error": f"no pod {m.group(1)}"})
            action = m.group(2)
            if action.startswith("replace"):
                target, args = self.kl.replace, (p, action == "replace")
            else:
                target, args = p.delete, (action == "delete",)
            threading.Thread(target=target, args=args, daemon=True).start()
            return self.reply(202, {action: p.name})
        if self.path == "/shutdown":
            threading.Thread(target=self.kl.shutdown, daemon=True).start()
            return self.reply(202, {"shutdown": True})
        return self.reply(404, {"error": "not found"})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--manifests", required=True, help="helm template output (file or - for stdin)")
    s.add_argument("--prefix", required=True, help="prefix of every pod/container/volume name")
    s.add_argument("--namespace", default="default")
    s.add_argument("--control", default="127.0.0.1:0", help="HOST:PORT of the control API")
    s.add_argument("--control-file", help="write the control API's address here once listening")
    s.add_argument("--scale", action="append", default=[], metavar="WORKLOAD=N")
    s.add_argument("--only", action="append", default=[], metavar="WORKLOAD")
    s.add_argument("--skip", action="append", default=[], metavar="WORKLOAD")
    s.add_argument("--publish", action="append", default=[], metavar="WORKLOAD:PORT=HOSTBASE",
                   help="publish a container port (name or number) of replica i on 127.0.0.1:HOSTBASE+i")
    s.add_argument("--add-host", action="append", default=[], metavar="NAME:IP",
                   help="an /etc/hosts entry in every pod (what cluster DNS would resolve)")
    s.add_argument("--image", action="append", default=[], metavar="OLD=NEW",
                   help="run image NEW where the render says OLD (repository prefix match)")
    s.add_argument("--startup-timeout", type=float, default=300)
    s.add_argument("--hook-timeout", type=float, default=300)
    s.add_argument("--logs-dir", help="save each container's log here when its pod is deleted")
    s.add_argument("--parent-pid", type=int, help="shut down when this process is gone")
    d = sub.add_parser("down")
    d.add_argument("--prefix", required=True)
    a = ap.parse_args()

    if a.cmd == "down":
        down(a.prefix)
        return
    if not re.match(r"^[a-z0-9][a-z0-9-]*$", a.prefix):
        sys.exit("kubelet: --prefix must be lowercase letters, digits and dashes")
    text = sys.stdin.read() if a.manifests == "-" else open(a.manifests).read()
    kl = Kubelet(a, Manifests(text))
    host, port = a.control.rsplit(":", 1)
    Control.kl = kl
    srv = ThreadingHTTPServer((host, int(port)), Control)
    srv.daemon_threads = True
    addr = f"{srv.server_address[0]}:{srv.server_address[1]}"
    if a.control_file:
        with open(a.control_file + ".tmp", "w") as f:
            f.write(addr)
        os.rename(a.control_file + ".tmp", a.control_file)
    log(f"control API on http://{addr} (prefix {a.prefix}, gateway {kl.gateway})")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: threading.Thread(target=kl.shutdown, daemon=True).start())
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    threading.Thread(target=kl.monitor, daemon=True).start()
    threading.Thread(target=kl.run, daemon=True).start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
