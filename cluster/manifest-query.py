#!/usr/bin/env python3
"""What cluster/deploy.sh needs to know from a rendered overlay (the JSON
of `kubectl create --dry-run=client -o json`), read on stdin:

  images      every container image the pods use, once each, one a line
  claims      one line per StatefulSet volume claim: NAMESPACE CLAIM SIZE UID GID
              (UID/GID: the user the pod runs as, who must own a hostPath volume)
  namespaces  the Namespace objects, as a JSON List
  workloads   one line per Deployment, StatefulSet or DaemonSet: NAMESPACE KIND NAME
  stamp IDS   the objects again, as a JSON List, each workload's pod template
              annotated with the IDs of its images (IDS: a JSON object,
              image as the manifests name it -> image ID). There is no
              registry and the tags do not change when an image is rebuilt:
              the annotation changes instead, so `kubectl apply` rolls
              exactly the workloads whose image is new, and no other.
"""
import json
import sys

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")


def pod_spec(obj):
    kind = obj.get("kind")
    spec = obj.get("spec", {})
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
    if kind in WORKLOADS + ("Job", "ReplicaSet"):
        return spec.get("template", {}).get("spec")
    return None


def images(objs):
    seen = []
    for obj in objs:
        spec = pod_spec(obj) or {}
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            if c["image"] not in seen:
                seen.append(c["image"])
    return seen


def claims(objs):
    lines = []
    for obj in objs:
        if obj.get("kind") != "StatefulSet":
            continue
        meta, spec = obj["metadata"], obj["spec"]
        pod = pod_spec(obj)
        psc = pod.get("securityContext", {})
        csc = pod["containers"][0].get("securityContext", {})
        uid = csc.get("runAsUser", psc.get("runAsUser", 0))
        gid = csc.get("runAsGroup", psc.get("runAsGroup", psc.get("fsGroup", uid)))
        for i in range(spec.get("replicas", 1)):
            for vct in spec.get("volumeClaimTemplates", []):
                size = vct["spec"]["resources"]["requests"]["storage"]
                claim = f'{vct["metadata"]["name"]}-{meta["name"]}-{i}'
                lines.append(f'{meta.get("namespace", "default")} {claim} {size} {uid} {gid}')
    return lines


IMAGE_IDS = "cluster.surge.dev/image-ids"


def stamp(objs, ids):
    for obj in objs:
        if obj.get("kind") not in WORKLOADS:
            continue
        spec = pod_spec(obj)
        names = [c["image"] for c in spec.get("initContainers", []) + spec.get("containers", [])]
        meta = obj["spec"]["template"].setdefault("metadata", {})
        meta.setdefault("annotations", {})[IMAGE_IDS] = " ".join(ids[n].removeprefix("sha256:")[:12] for n in names)
    return {"apiVersion": "v1", "kind": "List", "items": objs}


def read_objects(text):
    """kubectl prints one JSON document per object, or a List."""
    objs, pos, decoder = [], 0, json.JSONDecoder()
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return objs
        obj, pos = decoder.raw_decode(text, pos)
        objs.extend(obj.get("items", []) if obj.get("kind") == "List" else [obj])


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    objs = read_objects(sys.stdin.read())
    if not objs:
        sys.exit("manifest-query: no objects on stdin")
    if what == "images":
        for line in images(objs):
            print(line)
    elif what == "claims":
        for line in claims(objs):
            print(line)
    elif what == "namespaces":
        ns = [o for o in objs if o.get("kind") == "Namespace"]
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": ns}))
    elif what == "workloads":
        for o in objs:
            if o.get("kind") in WORKLOADS:
                m = o["metadata"]
                print(f'{m.get("namespace", "default")} {o["kind"].lower()} {m["name"]}')
    elif what == "stamp" and len(sys.argv) == 3:
        print(json.dumps(stamp(objs, json.loads(sys.argv[2]))))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
