"""The manifests say what the issue and DESIGN.md ask: rendering, copies of
the SQL, Secrets, KEDA vs HPA, Redis ACL rules, Ingress, RBAC, placement."""
import re
import subprocess

import pytest
import yaml

import policy as P
from conftest import IMAGE_VERSION, ROOT, TARGETS, find, one, render, render_text

OURS = {"surge", "surge-data"}
CLUSTER_SCOPED = {"Namespace", "PriorityClass"}


@pytest.mark.parametrize("target", TARGETS)
def test_renders_without_duplicates_into_our_namespaces(rendered, target):
    objs = rendered[target]
    assert objs, f"{target} rendered nothing"
    keys = [(o["apiVersion"].split("/")[0], o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
            for o in objs]
    assert len(keys) == len(set(keys)), "duplicate objects"
    for o in objs:
        if o["kind"] not in CLUSTER_SCOPED:
            assert o["metadata"].get("namespace") in OURS, f"{P.ref(o)} is outside surge/surge-data"
        else:
            assert "namespace" not in o["metadata"], f"{P.ref(o)} is cluster-scoped"
    assert {o["metadata"]["name"] for o in find(objs, "Namespace")} == OURS


def test_default_is_the_production_overlay():
    assert render_text("k8s") == render_text("k8s/overlays/production")


def test_every_kustomization_is_in_the_target_list():
    found = {str(p.parent.relative_to(ROOT)) for d in ("k8s", "keda")
             for p in (ROOT / d).rglob("kustomization.yaml")}
    components = {t for t in found if yaml.safe_load((ROOT / t / "kustomization.yaml").read_text())["kind"] == "Component"}
    examples = {"k8s/secrets.example"}
    assert found - components - examples == set(TARGETS)


@pytest.mark.parametrize("name", ["schema.sql", "seed.sql"])
def test_sql_copies_are_identical(name):
    assert (ROOT / "k8s/base/postgres" / name).read_bytes() == (ROOT / "db" / name).read_bytes(), \
        f"k8s/base/postgres/{name} differs from db/{name}: copy db/{name} over it"


def test_postgres_init_configmap_holds_the_sql(rendered):
    cm = [c for c in find(rendered["k8s"], "ConfigMap") if c["metadata"]["name"].startswith("postgres-init")]
    assert len(cm) == 1
    assert cm[0]["data"]["01-schema.sql"] == (ROOT / "db/schema.sql").read_text()
    assert cm[0]["data"]["02-seed.sql"] == (ROOT / "db/seed.sql").read_text()
    sts = one(rendered["k8s"], "StatefulSet", "postgres")
    vols = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert vols["init"]["configMap"]["name"] == cm[0]["metadata"]["name"]
    mounts = {m["mountPath"]: m for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["/docker-entrypoint-initdb.d"]["name"] == "init"
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == mounts["/var/lib/postgresql/data"]["name"]


# -- images -------------------------------------------------------------------

def surge_images(objs):
    return {c["image"] for _, _, c in P.surge_containers(objs)}


def test_image_versions():
    assert surge_images(render("k8s/overlays/kind")) == {f"surge:{IMAGE_VERSION}"}
    prod = surge_images(render("k8s"))
    assert len(prod) == 1 and prod.pop().endswith(f"/surge:{IMAGE_VERSION}")


def test_kind_overlay_never_pulls_surge():
    for target in ("k8s/overlays/kind", "keda/kind"):
        for _, _, c in P.surge_containers(render(target)):
            assert c["imagePullPolicy"] == "Never"


def test_one_image_two_commands(rendered):
    cmds = {(w["metadata"]["name"], tuple(c["command"])) for w, _, c in P.surge_containers(rendered["k8s"])}
    assert cmds == {("surge-api", ("surge-api",)), ("surge-worker", ("surge-worker",))}


# -- api and worker -------------------------------------------------------------

def test_api_replicas_and_spread(rendered):
    for target in TARGETS:
        dep = one(rendered[target], "Deployment", "surge-api")
        assert dep["spec"]["replicas"] >= 2
        keys = {c["topologyKey"] for c in dep["spec"]["template"]["spec"]["topologySpreadConstraints"]}
        assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}


def test_ingress_exposes_only_the_public_port(rendered):
    for target in TARGETS:
        objs = rendered[target]
        ing = one(objs, "Ingress", "surge-api")
        assert ing["spec"]["ingressClassName"] == "nginx"
        svc = one(objs, "Service", "surge-api")
        ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                be = path["backend"]["service"]
                assert be["name"] == "surge-api"
                port = be["port"].get("number") or ports[be["port"]["name"]]
                assert port == 8080


def test_every_workload_has_its_own_tokenless_service_account(rendered):
    objs = rendered["k8s"]
    sas = {(P.ns_of(s), s["metadata"]["name"]): s for s in find(objs, "ServiceAccount")}
    used = []
    for w in P.workloads(objs):
        _, spec = P.pod_template(w)
        key = (P.ns_of(w), spec.get("serviceAccountName"))
        assert key in sas, f"{P.ref(w)} uses no rendered ServiceAccount"
        assert sas[key].get("automountServiceAccountToken") is False
        assert spec.get("automountServiceAccountToken") is False
        used.append(key)
    assert len(used) == len(set(used)) == len(sas)


def test_data_stores_and_api_are_scheduled_before_the_workers(rendered):
    """When the nodes are full of workers the HPA asked for, a re-created
    Redis, PostgreSQL or api pod takes the room back (priorityclass.yaml)."""
    for target in TARGETS:
        objs = rendered[target]
        (pc,) = find(objs, "PriorityClass")
        assert pc["value"] > 0 and pc["preemptionPolicy"] == "PreemptLowerPriority" and not pc.get("globalDefault")
        classes = {w["metadata"]["name"]: P.pod_template(w)[1].get("priorityClassName") for w in P.workloads(objs)}
        assert classes == {"redis": pc["metadata"]["name"], "postgres": pc["metadata"]["name"],
                           "surge-api": pc["metadata"]["name"], "surge-worker": None}, classes


def test_pdbs(rendered):
    objs = rendered["k8s"]
    assert one(objs, "PodDisruptionBudget", "surge-api")["spec"]["minAvailable"] >= 1
    assert one(objs, "PodDisruptionBudget", "surge-worker")["spec"]["maxUnavailable"] == 1


# -- autoscaling: HPA in k8s/, ScaledObject in keda/ ------------------------------

def test_hpa_only_without_keda_and_scaledobject_only_with(rendered):
    for target in TARGETS:
        objs = rendered[target]
        hpas, sos = find(objs, "HorizontalPodAutoscaler"), find(objs, "ScaledObject")
        if target.startswith("keda"):
            assert not hpas and len(sos) == 1 and len(find(objs, "TriggerAuthentication")) == 1
        else:
            assert len(hpas) == 1 and not sos
            assert hpas[0]["apiVersion"] == "autoscaling/v2"


@pytest.mark.parametrize("base,keda", [("k8s", "keda"), ("k8s/overlays/kind", "keda/kind")])
def test_scaledobject_matches_the_hpa(base, keda):
    hpa = one(render(base), "HorizontalPodAutoscaler", "surge-worker")["spec"]
    so = one(render(keda), "ScaledObject", "surge-worker")["spec"]
    assert so["scaleTargetRef"]["name"] == hpa["scaleTargetRef"]["name"]
    assert so["minReplicaCount"] == hpa["minReplicas"]
    assert so["maxReplicaCount"] == hpa["maxReplicas"]
    assert so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == hpa["behavior"]
    cpu = [t for t in so["triggers"] if t["type"] == "cpu"]
    assert len(cpu) == 1 and cpu[0]["metricType"] == "Utilization"
    assert int(cpu[0]["metadata"]["value"]) == hpa["metrics"][0]["resource"]["target"]["averageUtilization"]
    redis = [t for t in so["triggers"] if t["type"] == "redis"]
    assert len(redis) == 1
    md = redis[0]["metadata"]
    assert int(md["listLength"]) >= 1 and int(md["activationListLength"]) >= 0
    assert md["address"] == "redis.surge-data.svc.cluster.local:6379"
    ta = one(render(keda), "TriggerAuthentication", redis[0]["authenticationRef"]["name"])
    assert {r["parameter"] for r in ta["spec"]["secretTargetRef"]} == {"username", "password"}


def test_hpa_behavior_is_explained():
    text = (ROOT / "k8s/base/worker/hpa.yaml").read_text()
    for word in ("scaleUp", "scaleDown", "stabilizationWindowSeconds"):
        assert word in text
    comments = [line for line in text.splitlines() if line.strip().startswith("#")]
    assert len(comments) >= 10, "the behavior is chosen and explained in comments"


# -- Redis ------------------------------------------------------------------------

def redis_files(objs):
    cm = [c for c in find(objs, "ConfigMap") if c["metadata"]["name"].startswith("redis-config")]
    assert len(cm) == 1
    return cm[0]["data"]


def acl_users(acl_text):
    users = {}
    for line in acl_text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        words = line.split()
        assert words[0] == "user"
        users[words[1]] = words[2:]
    return users


def allowed_commands(rules):
    return {w[1:].lower() for w in rules if w.startswith("+") and not w.startswith("+@")}


API_COMMANDS = {"lpush", "hset", "hgetall", "expire", "ping", "llen", "zcard", "eval", "evalsha",
                "get", "set"}   # get, set: the Idempotency-Key in the enqueue script
WORKER_COMMANDS = (API_COMMANDS - {"get"}) | {
    "blmove", "lrem", "lrange", "hincrby", "hget", "hmget", "del", "zadd", "zrangebyscore",
    "zrem", "zcard", "set", "exists", "eval", "evalsha", "script", "multi", "exec", "rpush",
    "lpush", "info", "client",
    "hexists", "hdel",    # beyond the issue's list: the worker's claim and retry scripts use them
    "lpos",               # the take checks that the id is still in the worker's list
    "lmove",              # the take moves ids from a queue to the worker's list
    "lindex", "ltrim", "rpop"}  # the bounded dead list; recovery pops a dead worker's list
# KEDA's Redis scaler: EVAL of a script that calls TYPE, then LLEN
# (test_image.py runs KEDA's own script against the ACL).
KEDA_COMMANDS = {"eval", "type", "llen", "ping", "auth", "hello", "info"}
LOGIN = {"auth", "hello"}


def test_redis_config(rendered):
    conf = redis_files(rendered["k8s"])["redis.conf"]
    directives = {line.split()[0]: line.split()[1:] for line in conf.splitlines()
                  if line.strip() and not line.startswith("#")}
    assert directives["appendonly"] == ["yes"]
    assert directives["maxmemory-policy"] == ["noeviction"]
    assert directives["aclfile"] == ["/run/redis/users.acl"]
    sts = one(rendered["k8s"], "StatefulSet", "redis")
    script = sts["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    assert "> /run/redis/users.acl" in script and "exec redis-server /etc/redis/redis.conf" in script
    mounts = {m["mountPath"]: m["name"] for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["/data"] == sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]


def test_redis_acl_users(rendered):
    cm = P.configmap(rendered["k8s"])["data"]
    prefix = cm["SURGE_KEY_PREFIX"]
    users = acl_users(redis_files(rendered["k8s"])["users.acl.in"])
    assert set(users) == {"default", "api", "worker", "keda"}
    assert users["default"][0] == "off"
    for name in ("api", "worker", "keda"):
        rules = users[name]
        assert rules[0] == "on" and f"@{name.upper()}_PASSWORD@" in rules
        assert "-@all" in rules and not any(r.startswith("+@") for r in rules), f"{name}: categories"
        assert "nopass" not in rules and "allkeys" not in rules and "~*" not in rules
        keys = [r for r in rules if "~" in r and r != "resetkeys"]
        if name == "keda":
            assert keys == [f"~{prefix}queue:burn"]
        else:
            assert keys == [f"~{prefix}*"]
    base = lambda cmds: {c.split("|")[0] for c in cmds}     # noqa: E731
    assert base(allowed_commands(users["api"])) - LOGIN == API_COMMANDS
    assert base(allowed_commands(users["worker"])) - LOGIN == WORKER_COMMANDS
    assert base(allowed_commands(users["keda"])) == KEDA_COMMANDS
    for dangerous in ("script|flush", "script|kill", "client|kill", "client|pause", "flushall", "config", "keys"):
        assert dangerous not in allowed_commands(users["worker"])


def commands_in_sources(folder):
    """Redis commands a folder's C code sends: the first word of each command
    format string, and each redis.call('X') in its Lua scripts."""
    cmds = set()
    for f in (ROOT / folder).glob("*.c"):
        text = f.read_text()
        cmds |= {m.lower() for m in re.findall(r'(?:rc_command|redisAsyncCommand)\([^"]*"([A-Z]+)[ "]', text)}
        cmds |= {m.lower() for m in re.findall(r"redis\.call\('([A-Za-z]+)'", text)}
    return cmds


def test_acl_allows_every_command_the_sources_send(rendered):
    users = acl_users(redis_files(rendered["k8s"])["users.acl.in"])
    common = commands_in_sources("common")
    assert {"auth", "ping"} <= common, "the Redis client's handshake was not found in common/"
    db = int(P.configmap(rendered["k8s"])["data"]["SURGE_REDIS_URL"].rsplit("/", 1)[-1] or 0)
    if db == 0:
        common.discard("select")          # sent only for a database other than 0
    for user, folder in (("api", "api"), ("worker", "worker")):
        sent = common | commands_in_sources(folder)
        assert len(sent) > 3, f"no Redis command found in {folder}/"
        allowed = {c.split("|")[0] for c in allowed_commands(users[user])}
        assert sent - allowed == set(), f"ACL user {user} may not send what {folder}/ sends"


def test_keda_logs_in_as_the_keda_user():
    env = dict(line.split("=", 1) for line in
               (ROOT / "k8s/secrets.example/surge-keda.env").read_text().splitlines())
    assert env["redis-username"] == "keda"


def test_surge_users_match_the_acl(rendered):
    for w, _, c in P.surge_containers(rendered["k8s"]):
        user = P.effective_env(rendered["k8s"], w, c)["SURGE_REDIS_USERNAME"]
        assert user == {"surge-api": "api", "surge-worker": "worker"}[w["metadata"]["name"]]


# -- Secrets --------------------------------------------------------------------

def referenced_secrets(objs):
    """(namespace, secret, key or None) that the manifests need."""
    refs = set()
    for w in P.workloads(objs):
        ns = P.ns_of(w)
        _, spec = P.pod_template(w)
        for v in spec.get("volumes") or []:
            if "secret" in v:
                refs.add((ns, v["secret"]["secretName"], None))
        for c in P.containers(spec):
            for s in c.get("envFrom") or []:
                if "secretRef" in s:
                    refs.add((ns, s["secretRef"]["name"], None))
            for e in c.get("env") or []:
                k = (e.get("valueFrom") or {}).get("secretKeyRef")
                if k:
                    refs.add((ns, k["name"], k["key"]))
    for ta in find(objs, "TriggerAuthentication"):
        for r in ta["spec"].get("secretTargetRef") or []:
            refs.add((P.ns_of(ta), r["name"], r["key"]))
    return refs


def generated_secrets(tmp_path):
    d = tmp_path / "secrets"
    subprocess.run([ROOT / "scripts/k8s-secrets.sh", d], check=True, capture_output=True)
    out = subprocess.run(["kubectl", "kustomize", d], check=True, capture_output=True, text=True).stdout
    return d, [s for s in yaml.safe_load_all(out) if s]


def test_generated_secrets_cover_every_reference(tmp_path):
    _, secrets = generated_secrets(tmp_path)
    have = {(s["metadata"]["namespace"], s["metadata"]["name"]): set(s["data"]) for s in secrets}
    for target in TARGETS:
        for ns, name, key in referenced_secrets(render(target)):
            assert (ns, name) in have, f"{target} needs Secret {ns}/{name}"
            if key:
                assert key in have[(ns, name)], f"{target} needs key {key} of Secret {ns}/{name}"
    # The binaries' secret variables come from the workload Secrets.
    assert have[("surge", "surge-api")] == {"SURGE_REDIS_PASSWORD"}
    assert have[("surge", "surge-worker")] == {"SURGE_REDIS_PASSWORD", "PGPASSWORD"}
    assert have[("surge-data", "redis-users")] == {"api", "worker", "keda"}


def test_generated_passwords_are_random_and_consistent(tmp_path):
    d, _ = generated_secrets(tmp_path)
    env = {f.name: dict(line.split("=", 1) for line in f.read_text().splitlines())
           for f in d.glob("*.env")}
    redis = env["redis-users.env"]
    assert env["surge-api.env"]["SURGE_REDIS_PASSWORD"] == redis["api"]
    assert env["surge-worker.env"]["SURGE_REDIS_PASSWORD"] == redis["worker"]
    assert env["surge-keda.env"]["redis-password"] == redis["keda"]
    # The workers log in as the role surge; the superuser's password is another.
    assert env["surge-worker.env"]["PGPASSWORD"] == env["postgres.env"]["SURGE_DB_PASSWORD"]
    values = [redis["api"], redis["worker"], redis["keda"], env["postgres.env"]["POSTGRES_PASSWORD"],
              env["postgres.env"]["SURGE_DB_PASSWORD"]]
    assert len(set(values)) == 5 and all(re.fullmatch(r"[A-Za-z0-9]{32}", v) for v in values)
    assert (d.stat().st_mode & 0o777) == 0o700
    # A second run keeps the passwords.
    before = (d / "postgres.env").read_text()
    subprocess.run([ROOT / "scripts/k8s-secrets.sh", d], check=True, capture_output=True)
    assert (d / "postgres.env").read_text() == before


def test_committed_example_holds_no_real_secret():
    for f in (ROOT / "k8s/secrets.example").glob("*.env"):
        for line in f.read_text().splitlines():
            key, value = line.split("=", 1)
            assert value.startswith("CHANGE-ME-") or (key, value) == ("redis-username", "keda"), f"{f.name}: {key}"


def test_secrets_folder_is_ignored_by_git():
    out = subprocess.run(["git", "check-ignore", "-q", "secrets/kustomization.yaml"], cwd=ROOT)
    assert out.returncode == 0, "secrets/ must be git-ignored"
    tracked = subprocess.run(["git", "ls-files", "secrets"], cwd=ROOT, capture_output=True, text=True).stdout
    assert tracked == ""


# -- RBAC -----------------------------------------------------------------------

def rules_of(objs, name, ns):
    return one(objs, "Role", name, ns)["rules"]


def grants(rules, group, resource, verb, name=None):
    return any(group in r.get("apiGroups", []) and resource in r.get("resources", [])
               and (verb in r.get("verbs", []) or "*" in r.get("verbs", []))
               and (not r.get("resourceNames") or name in r["resourceNames"]) for r in rules)


def test_rbac(rendered):
    objs = rendered["k8s"]
    ops, ops_data = rules_of(objs, "ops", "surge"), rules_of(objs, "ops", "surge-data")
    assert grants(ops, "apps", "deployments", "patch")
    assert grants(ops, "", "configmaps", "update", "surge-config")
    assert not grants(ops, "", "configmaps", "update", "other")
    assert grants(ops_data, "", "pods/portforward", "create", "postgres-0")
    assert not grants(ops_data, "", "pods/portforward", "create", "redis-0")
    for ns in OURS:
        dev = rules_of(objs, "dev", ns)
        for res in ("pods", "pods/log", "events"):
            assert grants(dev, "", res, "get") and grants(dev, "", res, "list")
        assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in dev)
    for role in find(objs, "Role") + find(objs, "ClusterRole"):
        for r in role["rules"]:
            assert "secrets" not in r.get("resources", []) and "*" not in r.get("resources", [])
            assert "*" not in r.get("verbs", [])
    bindings = {(P.ns_of(b), b["roleRef"]["name"]) for b in find(objs, "RoleBinding")}
    assert bindings == {(ns, role) for ns in OURS for role in ("ops", "dev")}
