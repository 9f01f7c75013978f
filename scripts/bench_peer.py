#!/usr/bin/env python3
"""The peer for scripts/bench: push EigenRuntime artifacts with the ORAS Python SDK.

Reads a JSON job list (written by scripts/bench) and pushes each artifact with
`oras.provider.Registry.push`, one after another (or with --jobs N threads, each with
its own client): the spec file as a `text/yaml` layer (the SDK adds the
`org.opencontainers.image.title` annotation, like eigenpub's default `layer-title = true`),
a config blob of media type `application/vnd.eigenruntime.manifest.config.v1+json` with
the same fields eigenpub writes, and the same manifest annotations.

Job list: [{"spec": path, "target": "host:port/repo:tag", "avs": name, "tag": tag,
            "created": rfc3339, "annotations": {...}}, ...]

Prints one line "pushed N artifacts in S s" and exits 1 if any push failed.
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import oras.provider

CONFIG_MEDIA_TYPE = "application/vnd.eigenruntime.manifest.config.v1+json"
SCHEMA = "https://eigenruntime.io/schemas/hourglass/v1/manifest.json"


def config_bytes(job):
    # devkit's encoding: json.MarshalIndent(map, "", "  "), keys sorted, no newline.
    config = {
        "formatVersion": "1.0",
        "eigenRuntimeAPIVersion": "v1",
        "kind": "Hourglass",
        "avsName": job["avs"],
        "validationSchema": SCHEMA,
        "metadata": {
            "createdAt": job["created"],
            "releaseVersion": job["tag"],
            "devkitVersion": "oras-py",
        },
    }
    return json.dumps(config, indent=2, sort_keys=True).encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("jobs", help="JSON job list")
    ap.add_argument("--host", required=True, help="registry host:port")
    ap.add_argument("--jobs", dest="threads", type=int, default=1)
    args = ap.parse_args()

    with open(args.jobs) as f:
        jobs = json.load(f)

    local = threading.local()

    def client():
        if not hasattr(local, "registry"):
            local.registry = oras.provider.Registry(hostname=args.host, insecure=True)
        return local.registry

    workdir = tempfile.mkdtemp(prefix="bench-peer-")
    errors = []

    def push(i_job):
        i, job = i_job
        config_path = os.path.join(workdir, f"config-{i}.json")
        with open(config_path, "wb") as f:
            f.write(config_bytes(job))
        try:
            response = client().push(
                target=job["target"],
                files=[f"{job['spec']}:text/yaml"],
                manifest_config=f"{config_path}:{CONFIG_MEDIA_TYPE}",
                manifest_annotations=job["annotations"],
                disable_path_validation=True,
                quiet=True,
            )
            if response.status_code not in (200, 201):
                errors.append(f"{job['target']}: manifest PUT answered {response.status_code}")
        except Exception as e:  # report every failure, keep going
            errors.append(f"{job['target']}: {type(e).__name__}: {e}")

    start = time.perf_counter()
    if args.threads <= 1:
        for item in enumerate(jobs):
            push(item)
    else:
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            list(pool.map(push, enumerate(jobs)))
    elapsed = time.perf_counter() - start

    print(f"pushed {len(jobs) - len(errors)} artifacts in {elapsed:.3f} s")
    for e in errors[:10]:
        print(f"error: {e}", file=sys.stderr)
    if len(errors) > 10:
        print(f"error: ... and {len(errors) - 10} more", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
