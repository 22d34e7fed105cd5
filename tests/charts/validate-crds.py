#!/usr/bin/env python3
"""Validates the CRD objects of rendered manifests against
tests/charts/crd-schemas.yaml (kubernetes-validate has no schema for them).

    validate-crds.py RENDER.yaml...

Every object whose apiVersion/kind is listed under `kinds` is checked
strictly; an object of a CRD group the chart uses (monitoring.coreos.com, keda.sh,
gateway.networking.k8s.io) with no schema listed fails. Prints per-kind
counts; exit 1 on any failure.
"""
import collections
import os
import sys

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
GROUPS = ("monitoring.coreos.com/", "gateway.networking.k8s.io/", "keda.sh/")


def main():
    doc = yaml.safe_load(open(os.path.join(HERE, "crd-schemas.yaml")))
    defs, kinds = doc["$defs"], doc["kinds"]
    counts, failed = collections.Counter(), 0
    for path in sys.argv[1:]:
        for obj in yaml.safe_load_all(open(path)):
            if not isinstance(obj, dict):
                continue
            key = f"{obj.get('apiVersion')}/{obj.get('kind')}"
            if key not in kinds:
                if str(obj.get("apiVersion", "")).startswith(GROUPS):
                    print(f"FAIL {os.path.basename(path)}: no schema for {key}")
                    failed += 1
                continue
            schema = dict(kinds[key], **{"$defs": defs})
            errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
            name = obj.get("metadata", {}).get("name")
            if errors:
                failed += 1
                for e in errors:
                    where = ".".join(str(p) for p in e.path)
                    print(f"FAIL {os.path.basename(path)} {key} {name}: {where}: {e.message}")
            counts[key] += 1
    print(", ".join(f"{k.split('/')[-1]} {n}" for k, n in sorted(counts.items())) or "no CRD objects")
    sys.exit(1 if failed or not counts else 0)


if __name__ == "__main__":
    main()
