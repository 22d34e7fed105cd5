#!/usr/bin/env python3
"""Runs `berth check-config` on every berth.yaml the charts render.

    check-configs.py BERTH_BINARY RENDER.yaml...

The chart validates what it can at `helm template` time; this closes the loop
with the real parser: every ConfigMap whose data has `berth.yaml` (the
per-workload configs and the `helm test` config) is written to a temporary
file and checked by the berth binary built from this repository, so a key the
chart renders and berth does not know (or a value berth rejects) fails CI.

berth expands `${VAR}` and `${file:/path}` before validating, as it does in a
pod, so each `${VAR}` gets a stand-in value of the right shape (a PostgreSQL
URL for DATABASE_URL, a plain word otherwise) and each `${file:...}` path is
redirected to a temporary file. Prints one line per config; exit 1 if any
config is rejected.
"""
import os
import re
import subprocess
import sys
import tempfile

import yaml

VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
FILE = re.compile(r"\$\{file:([^}]+)\}")
STAND_IN = {
    "DATABASE_URL": "postgresql://user:pw@db.example:5432/app",
    "REDIS_URL": "redis://cache.example:6379/0",
    # berth wants 16+ characters (the chart renders 40)
    "BERTH_LIFECYCLE_TOKEN": "stand-in-lifecycle-token-0123456789",
}


def configs(paths):
    for path in paths:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
                    text = (doc.get("data") or {}).get("berth.yaml")
                    if text is not None:
                        yield f"{os.path.basename(path)}:{doc['metadata']['name']}", text


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    berth, renders = sys.argv[1], sys.argv[2:]
    failed = checked = 0
    with tempfile.TemporaryDirectory() as tmp:
        for n, (name, text) in enumerate(configs(renders)):
            env = {k: v for k, v in os.environ.items() if not VAR.fullmatch("${%s}" % k)}
            for var in VAR.findall(text):
                env[var] = STAND_IN.get(var, "stand-in-value")

            def redirect(m, n=n):
                target = os.path.join(tmp, f"file-{n}-{os.path.basename(m.group(1))}")
                with open(target, "w") as f:
                    f.write("stand-in-file-content")
                return "${file:%s}" % target

            text = FILE.sub(redirect, text)
            cfg = os.path.join(tmp, f"berth-{n}.yaml")
            with open(cfg, "w") as f:
                f.write(text)
            r = subprocess.run([berth, "check-config", cfg], env=env, capture_output=True, text=True)
            checked += 1
            if r.returncode == 0:
                print(f"ok   {name}: {r.stdout.strip()}")
            else:
                failed += 1
                print(f"FAIL {name} (exit {r.returncode}): {(r.stderr or r.stdout).strip()}")
                print("     " + text.replace("\n", "\n     "))
    print(f"{checked - failed}/{checked} berth configs accepted by {berth}")
    sys.exit(1 if failed or not checked else 0)


if __name__ == "__main__":
    main()
