"""Our own policy checks on rendered manifests.

Each check takes the list of rendered objects (and what else it needs) and
returns a list of violations, empty when the objects comply. test_policy.py
runs every check on every rendered kustomization, and on a broken copy to
prove that the check can fail.
"""
import re

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
SURGE_BINARIES = {"surge-api", "surge-worker"}


# -- helpers ---------------------------------------------------------------

def ns_of(obj):
    return obj["metadata"].get("namespace", "default")


def ref(obj):
    return f'{obj["kind"]} {ns_of(obj)}/{obj["metadata"]["name"]}'


def pod_template(obj):
    """(metadata, spec) of the pods a workload makes."""
    kind = obj["kind"]
    if kind == "Pod":
        return obj["metadata"], obj["spec"]
    if kind == "CronJob":
        t = obj["spec"]["jobTemplate"]["spec"]["template"]
    else:
        t = obj["spec"]["template"]
    return t.get("metadata", {}), t["spec"]


def workloads(objs):
    return [o for o in objs if o.get("kind") in WORKLOAD_KINDS]


def containers(spec, with_init=True):
    out = list(spec.get("containers", []))
    if with_init:
        out += spec.get("initContainers", []) + spec.get("ephemeralContainers", [])
    return out


def labels_match(selector, labels):
    """Kubernetes LabelSelector semantics; {} matches everything, None nothing."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def binary_of(container):
    cmd = (container.get("command") or [None])[0]
    return cmd if cmd in SURGE_BINARIES else None


def surge_containers(objs):
    """(workload, pod spec, container) for each container running a surge binary."""
    for w in workloads(objs):
        _, spec = pod_template(w)
        for c in containers(spec, with_init=False):
            if binary_of(c):
                yield w, spec, c


def configmap(objs, name="surge-config", namespace="surge"):
    for o in objs:
        if o.get("kind") == "ConfigMap" and o["metadata"]["name"] == name and ns_of(o) == namespace:
            return o
    return None


def effective_env(objs, workload, container):
    """The environment a container gets: envFrom ConfigMaps (values), then env
    (later wins). Values from Secrets are marked '<secret>'."""
    env = {}
    ns = ns_of(workload)
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "configMapRef" in src:
            cm = configmap(objs, src["configMapRef"]["name"], ns)
            for k, v in ((cm or {}).get("data") or {}).items():
                env[prefix + k] = v
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "secretKeyRef" in (e.get("valueFrom") or {}):
            env[e["name"]] = "<secret>"
        else:
            env[e["name"]] = "<ref>"
    return env


def cpu_millis(q):
    q = str(q)
    return int(q[:-1]) if q.endswith("m") else int(float(q) * 1000)


# -- Pod Security Standard "restricted" ------------------------------------

ALLOWED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                        "persistentVolumeClaim", "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}


def check_pod_security_restricted(objs):
    """Namespaces enforce `restricted`, and every pod template meets it
    (https://kubernetes.io/docs/concepts/security/pod-security-standards/)."""
    bad = []
    namespaces = {o["metadata"]["name"]: o for o in objs if o.get("kind") == "Namespace"}
    for name, ns in namespaces.items():
        labels = ns["metadata"].get("labels") or {}
        if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
            bad.append(f"Namespace {name}: pod-security.kubernetes.io/enforce is not restricted")
    for w in workloads(objs):
        where = ref(w)
        if ns_of(w) not in namespaces:
            bad.append(f"{where}: its namespace is not one of the rendered, restricted namespaces")
        _, spec = pod_template(w)
        psc = spec.get("securityContext") or {}
        for f in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(f):
                bad.append(f"{where}: {f} is true")
        for v in spec.get("volumes") or []:
            types = set(v) - {"name"}
            if not types <= ALLOWED_VOLUME_TYPES:
                bad.append(f"{where}: volume {v['name']} of type {sorted(types)} is not allowed")
        for s in psc.get("sysctls") or []:
            if s["name"] not in SAFE_SYSCTLS:
                bad.append(f"{where}: sysctl {s['name']} is not allowed")
        if psc.get("runAsUser") == 0:
            bad.append(f"{where}: pod runAsUser is 0")
        pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
        if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
            bad.append(f"{where}: pod seccompProfile {pod_seccomp}")
        if psc.get("windowsOptions", {}).get("hostProcess"):
            bad.append(f"{where}: hostProcess")
        for c in containers(spec):
            cw = f"{where} container {c['name']}"
            sc = c.get("securityContext") or {}
            if sc.get("privileged"):
                bad.append(f"{cw}: privileged")
            if sc.get("allowPrivilegeEscalation") is not False:
                bad.append(f"{cw}: allowPrivilegeEscalation is not false")
            caps = sc.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                bad.append(f"{cw}: capabilities do not drop ALL")
            extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
            if extra:
                bad.append(f"{cw}: adds capabilities {sorted(extra)}")
            non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
            if non_root is not True:
                bad.append(f"{cw}: runAsNonRoot is not true")
            if sc.get("runAsUser", psc.get("runAsUser")) == 0:
                bad.append(f"{cw}: runAsUser is 0")
            seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
            if seccomp not in ("RuntimeDefault", "Localhost"):
                bad.append(f"{cw}: seccompProfile is {seccomp}, not RuntimeDefault or Localhost")
            if sc.get("procMount", "Default") != "Default":
                bad.append(f"{cw}: procMount {sc['procMount']}")
            for p in c.get("ports") or []:
                if p.get("hostPort"):
                    bad.append(f"{cw}: hostPort {p['hostPort']}")
            # Beyond the standard: surge's own pods keep their root filesystem read-only.
            if sc.get("readOnlyRootFilesystem") is not True:
                bad.append(f"{cw}: readOnlyRootFilesystem is not true")
    return bad


# -- resources, probes, images ----------------------------------------------

def check_resources(objs):
    """Every container requests and limits both CPU and memory."""
    bad = []
    for w in workloads(objs):
        _, spec = pod_template(w)
        for c in containers(spec):
            r = c.get("resources") or {}
            for kind in ("requests", "limits"):
                for res in ("cpu", "memory"):
                    if res not in (r.get(kind) or {}):
                        bad.append(f"{ref(w)} container {c['name']}: no {kind}.{res}")
    return bad


def _probe_port_ok(probe, ports):
    for handler in ("httpGet", "tcpSocket", "grpc"):
        if handler in probe:
            port = probe[handler].get("port")
            if isinstance(port, int):
                return port in {p["containerPort"] for p in ports}
            return port in {p.get("name") for p in ports}
    return "exec" in probe


def check_probes(objs):
    """Every long-running container has readiness and liveness probes on ports
    it declares; surge binaries answer /readyz and /healthz on the admin port."""
    bad = []
    for w in workloads(objs):
        if w["kind"] not in ("Deployment", "StatefulSet", "DaemonSet"):
            continue
        _, spec = pod_template(w)
        for c in containers(spec, with_init=False):
            cw = f"{ref(w)} container {c['name']}"
            ports = c.get("ports") or []
            for kind in ("readinessProbe", "livenessProbe"):
                probe = c.get(kind)
                if not probe:
                    bad.append(f"{cw}: no {kind}")
                elif not _probe_port_ok(probe, ports):
                    bad.append(f"{cw}: {kind} targets a port the container does not declare")
            if binary_of(c):
                env = effective_env(objs, w, c)
                admin = env.get("SURGE_ADMIN_PORT")
                admin_names = {p.get("name") for p in ports if str(p["containerPort"]) == str(admin)}
                for kind, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                    get = (c.get(kind) or {}).get("httpGet") or {}
                    port = get.get("port")
                    if get.get("path") != path:
                        bad.append(f"{cw}: {kind} is not GET {path}")
                    if not (str(port) == str(admin) or port in admin_names):
                        bad.append(f"{cw}: {kind} is not on the admin port SURGE_ADMIN_PORT={admin}")
    return bad


def check_image_tags(objs, surge_version):
    """Every image names a tag (or digest), never latest; surge's own image
    carries the project's version."""
    bad = []
    for w in workloads(objs):
        _, spec = pod_template(w)
        for c in containers(spec):
            image = c.get("image", "")
            cw = f"{ref(w)} container {c['name']}"
            name, _, digest = image.partition("@")
            last = name.rsplit("/", 1)[-1]
            tag = last.partition(":")[2]
            if not tag and not digest:
                bad.append(f"{cw}: image {image} has no tag")
            elif tag == "latest":
                bad.append(f"{cw}: image {image} uses latest")
            if binary_of(c) and tag != surge_version:
                bad.append(f"{cw}: image {image} is not version {surge_version}")
    return bad


# -- autoscaling ------------------------------------------------------------

def autoscaler_targets(objs):
    """(autoscaler, namespace, kind, name) for each HPA and KEDA ScaledObject."""
    out = []
    for o in objs:
        if o.get("kind") == "HorizontalPodAutoscaler":
            t = o["spec"]["scaleTargetRef"]
            out.append((ref(o), ns_of(o), t["kind"], t["name"]))
        elif o.get("kind") == "ScaledObject":
            t = o["spec"]["scaleTargetRef"]
            out.append((ref(o), ns_of(o), t.get("kind", "Deployment"), t["name"]))
    return out


def check_autoscaled_without_replicas(objs):
    """A Deployment an autoscaler owns has no spec.replicas (an apply would
    reset the autoscaler's count); every autoscaler's target exists."""
    bad = []
    for who, ns, kind, name in autoscaler_targets(objs):
        targets = [o for o in objs if o.get("kind") == kind and o["metadata"]["name"] == name
                   and ns_of(o) == ns]
        if not targets:
            bad.append(f"{who}: its target {kind} {ns}/{name} is not rendered")
        for t in targets:
            if "replicas" in t.get("spec", {}):
                bad.append(f"{ref(t)}: sets spec.replicas but {who} scales it")
    return bad


def check_single_autoscaler(objs):
    """Never two autoscalers (HPA, ScaledObject) on one target."""
    seen = {}
    for who, ns, kind, name in autoscaler_targets(objs):
        seen.setdefault((ns, kind, name), []).append(who)
    return [f"{kind} {ns}/{name} has {len(w)} autoscalers: {', '.join(w)}"
            for (ns, kind, name), w in seen.items() if len(w) > 1]


def check_burn_scales(objs):
    """One burn (one full core) drives the worker far past its CPU target: at
    least twice the target utilisation; and the CPU limit lets each of the
    burns a worker runs at once (SURGE_WORKER_BURN_CONCURRENCY) use a full
    core."""
    bad = []
    cm = (configmap(objs) or {}).get("data") or {}
    burns = int(cm.get("SURGE_WORKER_BURN_CONCURRENCY", "1"))
    targets = []
    for o in objs:
        if o.get("kind") == "HorizontalPodAutoscaler":
            for m in o["spec"].get("metrics") or []:
                if m.get("type") == "Resource" and m["resource"]["name"] == "cpu":
                    targets.append((o, o["spec"]["scaleTargetRef"]["name"],
                                    m["resource"]["target"].get("averageUtilization")))
        elif o.get("kind") == "ScaledObject":
            for t in o["spec"].get("triggers") or []:
                if t["type"] == "cpu":
                    targets.append((o, o["spec"]["scaleTargetRef"]["name"], int(t["metadata"]["value"])))
    if not targets:
        bad.append("no CPU autoscaling target for the workers")
    for scaler, name, util in targets:
        dep = [o for o in objs if o.get("kind") == "Deployment" and o["metadata"]["name"] == name]
        if not dep or util is None:
            bad.append(f"{ref(scaler)}: no Deployment {name} or no utilisation target")
            continue
        _, spec = pod_template(dep[0])
        for c in containers(spec, with_init=False):
            res = c.get("resources") or {}
            req = cpu_millis((res.get("requests") or {}).get("cpu", "0"))
            lim = cpu_millis((res.get("limits") or {}).get("cpu", "0"))
            if lim < 1000 * burns:
                bad.append(f"{ref(dep[0])}: CPU limit {lim}m keeps {burns} burn(s) at once "
                           "below one core each")
            if req <= 0 or 100 * 1000 / req < 2 * util:
                bad.append(f"{ref(dep[0])}: one burn reads as {100 * 1000 // max(req, 1)} % "
                           f"of the {req}m request, not far past the {util} % target")
    return bad


def check_drain(objs):
    """Worker pods outlive a burn: terminationGracePeriodSeconds > its
    SURGE_SHUTDOWN_GRACE_SECONDS >= SURGE_BURN_MAX_SECONDS >= SURGE_BURN_DEFAULT_SECONDS;
    every surge pod's grace period covers its own drain and preStop."""
    bad = []
    for w, spec, c in surge_containers(objs):
        env = effective_env(objs, w, c)
        tgp = spec.get("terminationGracePeriodSeconds", 30)
        try:
            grace = int(env["SURGE_SHUTDOWN_GRACE_SECONDS"])
        except (KeyError, ValueError):
            bad.append(f"{ref(w)}: no SURGE_SHUTDOWN_GRACE_SECONDS")
            continue
        pre = ((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
        if tgp <= grace + pre:
            bad.append(f"{ref(w)}: terminationGracePeriodSeconds {tgp} <= drain {grace} s + preStop {pre} s")
        if binary_of(c) == "surge-worker":
            burn_max = int(env.get("SURGE_BURN_MAX_SECONDS", "0"))
            burn_default = int(env.get("SURGE_BURN_DEFAULT_SECONDS", "0"))
            if not grace >= burn_max >= burn_default > 0:
                bad.append(f"{ref(w)}: drain {grace} s does not cover burns "
                           f"(default {burn_default} s, max {burn_max} s)")
    return bad


# -- selectors --------------------------------------------------------------

def _template_labels(objs, namespace):
    return [pod_template(w)[0].get("labels") or {} for w in workloads(objs) if ns_of(w) == namespace]


def check_selectors(objs):
    """Every Service, PodDisruptionBudget and NetworkPolicy selects pods that
    the manifests run; NetworkPolicy peers in our namespaces do too."""
    bad = []
    own_namespaces = {o["metadata"]["name"] for o in objs if o.get("kind") == "Namespace"}
    for o in objs:
        kind = o.get("kind")
        ns = ns_of(o)
        pods = _template_labels(objs, ns)
        if kind == "Service":
            sel = o["spec"].get("selector")
            if not sel:
                bad.append(f"{ref(o)}: no selector")
            elif not any(labels_match({"matchLabels": sel}, p) for p in pods):
                bad.append(f"{ref(o)}: selector {sel} matches no pod")
            else:
                for port in o["spec"].get("ports") or []:
                    tp = port.get("targetPort", port["port"])
                    declared = [p for w in workloads(objs) if ns_of(w) == ns
                                and labels_match({"matchLabels": sel}, pod_template(w)[0].get("labels") or {})
                                for c in containers(pod_template(w)[1], with_init=False)
                                for p in c.get("ports") or []]
                    if not any(tp == p.get("name") or tp == p["containerPort"] for p in declared):
                        bad.append(f"{ref(o)}: targetPort {tp} is no port of the selected pods")
        elif kind == "PodDisruptionBudget":
            if not any(labels_match(o["spec"].get("selector"), p) for p in pods):
                bad.append(f"{ref(o)}: selector matches no pod")
        elif kind == "NetworkPolicy":
            if not any(labels_match(o["spec"].get("podSelector"), p) for p in pods):
                bad.append(f"{ref(o)}: podSelector matches no pod")
            rules = [(r, "from") for r in o["spec"].get("ingress") or []] + \
                    [(r, "to") for r in o["spec"].get("egress") or []]
            for rule, key in rules:
                for peer in rule.get(key) or []:
                    if "podSelector" not in peer:
                        continue
                    nss = [ns] if "namespaceSelector" not in peer else [
                        n for n in own_namespaces
                        if labels_match(peer["namespaceSelector"], {"kubernetes.io/metadata.name": n})]
                    for n in nss:
                        if not any(labels_match(peer["podSelector"], p) for p in _template_labels(objs, n)):
                            bad.append(f"{ref(o)}: peer podSelector {peer['podSelector']} matches no pod in {n}")
    return bad


# -- configuration ------------------------------------------------------------

def check_configmap(objs, binary_vars, secret_vars):
    """The ConfigMap holds exactly the variables the binaries read, less the
    secret ones; each surge container loads it and gets the secrets from a
    Secret, never as a literal."""
    bad = []
    cm = configmap(objs)
    if cm is None:
        return ["no ConfigMap surge/surge-config"]
    keys = set((cm.get("data") or {}))
    expected = set(binary_vars) - set(secret_vars)
    for k in sorted(expected - keys):
        bad.append(f"ConfigMap surge-config lacks {k}, which the binaries read")
    for k in sorted(keys - expected):
        if k in secret_vars:
            bad.append(f"ConfigMap surge-config holds the secret {k}")
        else:
            bad.append(f"ConfigMap surge-config has {k}, which no binary reads")
    for w, spec, c in surge_containers(objs):
        cw = f"{ref(w)} container {c['name']}"
        sources = c.get("envFrom") or []
        if not any((s.get("configMapRef") or {}).get("name") == "surge-config" for s in sources):
            bad.append(f"{cw}: does not load ConfigMap surge-config")
        if not any("secretRef" in s for s in sources) and not any(
                "secretKeyRef" in (e.get("valueFrom") or {}) for e in c.get("env") or []):
            bad.append(f"{cw}: takes no Secret")
        for e in c.get("env") or []:
            if e["name"] in secret_vars and "value" in e:
                bad.append(f"{cw}: {e['name']} is a literal, not from a Secret")
            if e["name"].startswith("SURGE_") and e["name"] not in binary_vars:
                bad.append(f"{cw}: sets {e['name']}, which no binary reads")
    return bad


def check_no_secrets(objs):
    """No Secret is rendered from the committed manifests: they come only from
    the git-ignored secrets/ folder (make k8s-secrets)."""
    return [f"{ref(o)}: a Secret is part of the committed manifests"
            for o in objs if o.get("kind") == "Secret"]


def burn_queue_key_suffix(job_src):
    """The burn queue's name after the prefix, as common/job.c builds it from
    its queue prefix ("%squeue:") and the name job.h gives JOB_BURN ("burn"):
    "queue:burn". job_src: the text of job.h and job.c."""
    m = re.search(r'queue_prefix\s*,[^;]*?"%s([A-Za-z0-9:_-]+)"', job_src)
    t = re.search(r'X\(JOB_BURN,\s*"([a-z]+)"\)', job_src)
    return m.group(1) + t.group(1) if m and t else None


def default_prefix(config_c):
    m = re.search(r'\{\s*"SURGE_KEY_PREFIX"\s*,\s*"([^"]*)"', config_c)
    return m.group(1) if m else None


def check_keda_list_name(objs, config_c, job_src):
    """Every KEDA redis trigger watches the list the binaries push burns to:
    SURGE_KEY_PREFIX (ConfigMap, else the default in config.c) + "queue:burn".
    The workers scale on burns; reads are no reason to add workers."""
    bad = []
    suffix = burn_queue_key_suffix(job_src)
    if suffix is None:
        return ["cannot find how common/job.c builds the burn queue's key"]
    cm = configmap(objs)
    prefix = ((cm or {}).get("data") or {}).get("SURGE_KEY_PREFIX", default_prefix(config_c))
    triggers = [(o, t) for o in objs if o.get("kind") == "ScaledObject"
                for t in o["spec"].get("triggers") or [] if t["type"] in ("redis", "redis-cluster")]
    for so, t in triggers:
        name = t["metadata"].get("listName")
        if name != f"{prefix}{suffix}":
            bad.append(f"{ref(so)}: listName {name!r} is not the burn queue {prefix}{suffix!s}")
    return bad
