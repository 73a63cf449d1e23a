#!/usr/bin/env python3
"""A stand-in for kubectl in the tests of tools/surge-demo: answers from the
JSON state file named by $FAKE_KUBE_STATE; `kustomize` goes to the real one."""
import json
import os
import subprocess
import sys

state = json.load(open(os.environ["FAKE_KUBE_STATE"]))
args = sys.argv[1:]
with open(os.environ["FAKE_KUBE_STATE"] + ".log", "a") as log:
    log.write(" ".join(args) + "\n")


def out(obj, code=0):
    if obj is not None:
        sys.stdout.write(obj if isinstance(obj, str) else json.dumps(obj))
    sys.exit(code)


def notfound(what):
    sys.stderr.write(f'Error from server (NotFound): {what} not found\n')
    sys.exit(1)


if args[:1] == ["kustomize"]:
    sys.exit(subprocess.call([os.environ["REAL_KUBECTL"], *args]))
if args == ["config", "current-context"]:
    if not state.get("context"):
        sys.stderr.write("error: current-context is not set\n")
        sys.exit(1)
    out(state["context"] + "\n")
if args[:2] == ["get", "--raw"]:
    path = args[2]
    if path == "/version":
        out({"gitVersion": "v1.31.2"})
    if path.startswith("/apis/metrics.k8s.io/"):
        if not state.get("metrics_server"):
            notfound("the server could not find the requested resource")
        out({"items": state.get("pod_metrics", [])})
if args[:3] == ["auth", "can-i", "create"]:
    out("yes\n")
if args[:3] == ["get", "apiservice", "v1beta1.metrics.k8s.io"]:
    if not state.get("metrics_server"):
        notfound('apiservices.apiregistration.k8s.io "v1beta1.metrics.k8s.io"')
    out({"status": {"conditions": [{"type": "Available", "status": "True"}]}})
if args[:2] == ["get", "crd"]:
    out(args[2] + "\n" if args[2] in state.get("crds", []) else "")
if args[:2] == ["get", "nodes"]:
    out({"items": [{"status": {"images": [{"names": state.get("node_images", [])}]}}]})
if args[:3] == ["get", "deployment", "surge-worker"]:
    out(state["deployment"])
if args[:2] == ["get", "hpa"]:
    out({"items": state.get("hpas", [])})
if args[:2] == ["get", "secret"]:
    ns = args[args.index("-n") + 1]
    out(f"secret/{args[2]}\n" if f"{ns}/{args[2]}" in state.get("secrets", []) else "")
if args[:1] == ["apply"]:
    out(f"applied {args[-1]}\n")
if args[:2] == ["rollout", "status"]:
    out("rolled out\n")
if args[:2] == ["get", "pods"]:
    out({"items": []})
sys.stderr.write(f"fake kubectl: unexpected arguments {args}\n")
sys.exit(3)
