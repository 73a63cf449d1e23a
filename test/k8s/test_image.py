"""The image, built with podman from the Dockerfile, runs the way the
manifests run it, and the system works end to end.

Redis and PostgreSQL run on this host on loopback ports: Redis with the
rendered redis.conf and the ACL file that the rendered StatefulSet's own start
script builds; PostgreSQL with the schema and seed of the rendered ConfigMap
postgres-init. The api and worker containers get the command, environment
(ConfigMap + env + Secrets), user, read-only root filesystem and dropped
capabilities of the rendered kind Deployments; only addresses and ports are
moved to loopback.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path

import pytest

import policy as P
from conftest import IMAGE_VERSION, ROOT, find, keda_module_dir, one, render, require_tool

IMAGE = os.environ.get("SURGE_IMAGE", f"docker.io/library/surge:{IMAGE_VERSION}")
PGBIN = Path("/usr/lib/postgresql/15/bin")
TARGET = "k8s/overlays/kind"
PASSWORDS = {"api": "api-test-pw-1", "worker": "worker-test-pw-2", "keda": "keda-test-pw-3",
             "postgres": "pg-test-pw-4"}
# Secret name -> data, as scripts/k8s-secrets.sh makes them, with test values.
SECRETS = {
    "surge-api": {"SURGE_REDIS_PASSWORD": PASSWORDS["api"]},
    "surge-worker": {"SURGE_REDIS_PASSWORD": PASSWORDS["worker"], "PGPASSWORD": PASSWORDS["postgres"]},
    "redis-users": {"api": PASSWORDS["api"], "worker": PASSWORDS["worker"], "keda": PASSWORDS["keda"]},
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@lru_cache(maxsize=None)
def _podman_env():
    env = dict(os.environ)
    subprocess.run(["bash", "-c", f". {ROOT}/scripts/podman-env.sh"], check=True)
    env["CONTAINERS_CONF"] = str(ROOT / "build/podman/containers.conf")
    return env


def podman_env():
    return dict(_podman_env())


def podman(*args, check=True, timeout=120):
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, env=podman_env(),
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def wait_for(what, fn, timeout=30, interval=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = fn()
            if result:
                return result
        except Exception as e:    # noqa: BLE001 -- retried until the deadline
            last = e
            if "exited" in str(e) or " is " in str(e):
                raise
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")


def http(method, url, body=None, timeout=5):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


# -- fixtures -------------------------------------------------------------------

@pytest.fixture(scope="module")
def objs():
    return render(TARGET)


@pytest.fixture(scope="module")
def image():
    require_tool("podman")
    t0 = time.monotonic()
    proc = subprocess.run([str(ROOT / "scripts/image-build.sh"), IMAGE], capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, f"image build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    print(f"image built in {time.monotonic() - t0:.0f} s")
    return IMAGE


@pytest.fixture(scope="module")
def redis(objs):
    """redis-server with the rendered config and the ACL that the rendered
    start script of the redis StatefulSet builds from the rendered rules."""
    require_tool("redis-server")
    require_tool("redis-cli")
    d = Path(tempfile.mkdtemp(prefix="surge-redis-"))
    (d / "etc").mkdir()
    (d / "run").mkdir()
    (d / "data").mkdir()
    (d / "secrets").mkdir()
    cm = [c for c in find(objs, "ConfigMap") if c["metadata"]["name"].startswith("redis-config")][0]
    port = free_port()

    def moved(text):
        return (text.replace("/run/secrets/redis-users", str(d / "secrets"))
                .replace("/etc/redis/", f"{d}/etc/").replace("/run/redis/", f"{d}/run/"))

    (d / "etc/users.acl.in").write_text(cm["data"]["users.acl.in"])
    # Only where it listens and keeps its files differ from the cluster.
    conf = re.sub(r"^(bind|port|dir) .*$", "", moved(cm["data"]["redis.conf"]), flags=re.M)
    (d / "etc/redis.conf").write_text(conf + f"\nbind 127.0.0.1\nport {port}\ndir {d}/data\n")
    for k, v in SECRETS["redis-users"].items():
        (d / "secrets" / k).write_text(v)
    sts = one(objs, "StatefulSet", "redis")
    command = sts["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["sh", "-ec"]
    log = open(d / "redis.log", "w")
    proc = subprocess.Popen(["sh", "-ec", moved(command[2])], stdout=log, stderr=subprocess.STDOUT)

    def cli(user, *args):
        return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--user", user,
                               "--pass", PASSWORDS[user], "--no-auth-warning", *args],
                              capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        def up():
            assert proc.poll() is None, f"redis exited:\n{(d / 'redis.log').read_text()[-3000:]}"
            return cli("api", "PING") == "PONG"
        wait_for("redis", up, timeout=20)
        yield {"port": port, "cli": cli, "dir": d}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres(objs):
    """PostgreSQL 15 on a loopback port, role and database surge, loaded with
    the rendered ConfigMap postgres-init in file-name order (as the image's
    entrypoint runs /docker-entrypoint-initdb.d)."""
    for tool in ("initdb", "pg_ctl"):
        if not (PGBIN / tool).exists():
            pytest.fail(f"{PGBIN / tool} is missing (scripts/install-deps.sh run)")
    require_tool("psql")
    require_tool("runuser")
    d = Path(tempfile.mkdtemp(prefix="surge-pg-"))
    shutil.chown(d, "postgres", "postgres")
    port = free_port()
    pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*pg, PGBIN / "initdb", "-D", d / "data", "-U", "postgres", "--auth-local=trust",
                    "--auth-host=scram-sha-256"], check=True, capture_output=True)
    subprocess.run([*pg, PGBIN / "pg_ctl", "-D", d / "data", "-l", d / "log", "-w", "-t", "60", "-o",
                    f"-p {port} -k {d} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    try:
        # As the image's entrypoint does: the superuser creates the database,
        # then runs each file in name order, *.sql with psql and *.sh sourced
        # by a shell with POSTGRES_USER and POSTGRES_DB set.
        admin = {**os.environ, "PGHOST": str(d), "PGPORT": str(port), "PGUSER": "postgres",
                 "POSTGRES_USER": "postgres", "POSTGRES_DB": "surge"}
        subprocess.run(["psql", "-v", "ON_ERROR_STOP=1", "-q", "-d", "postgres",
                        "-c", "CREATE DATABASE surge"], check=True, capture_output=True, env=admin)
        secret = d / "SURGE_DB_PASSWORD"
        secret.write_text(PASSWORDS["postgres"])
        admin["SURGE_DB_PASSWORD_FILE"] = str(secret)
        init = [c for c in find(objs, "ConfigMap") if c["metadata"]["name"].startswith("postgres-init")][0]
        for name in sorted(init["data"]):
            if name.endswith(".sh"):
                cmd = ["bash", "-e"]
            else:
                cmd = ["psql", "-d", "surge", "-v", "ON_ERROR_STOP=1", "-q"]
            r = subprocess.run(cmd, input=init["data"][name], text=True, capture_output=True,
                               env=admin)
            assert r.returncode == 0, f"{name}: {r.stderr}"
        # The workers' role reads items and may not write.
        worker = {**os.environ, "PGPASSWORD": PASSWORDS["postgres"]}
        q = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "surge", "-d", "surge", "-tAc"]
        assert subprocess.run([*q, "SELECT count(*) FROM items"], capture_output=True, text=True,
                              env=worker).stdout.strip() == "100000"
        denied = subprocess.run([*q, "DELETE FROM items WHERE id = 1"], capture_output=True,
                                text=True, env=worker)
        assert denied.returncode != 0 and "permission denied" in denied.stderr, denied
        yield {"port": port}
    finally:
        subprocess.run([*pg, PGBIN / "pg_ctl", "-D", d / "data", "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


def run_args(objs, deployment, name, overrides):
    """podman run arguments that run a rendered Deployment's container as a
    kubelet would: command, env, user, read-only root, no capabilities."""
    dep = one(objs, "Deployment", deployment)
    spec = dep["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    psc, sc = spec.get("securityContext") or {}, c.get("securityContext") or {}
    env = {}
    for src in c.get("envFrom") or []:
        if "configMapRef" in src:
            env.update(one(objs, "ConfigMap", src["configMapRef"]["name"])["data"])
        if "secretRef" in src:
            env.update(SECRETS[src["secretRef"]["name"]])
    for e in c.get("env") or []:
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = SECRETS[ref["name"]][ref["key"]]
    env.update(overrides)
    args = ["run", "-d", "--name", name, "--network", "host", "--pull", "never",
            "--user", f'{sc.get("runAsUser", psc.get("runAsUser"))}:{sc.get("runAsGroup", psc.get("runAsGroup"))}']
    assert sc["readOnlyRootFilesystem"] is True
    args += ["--read-only", "--read-only-tmpfs=false"]
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["allowPrivilegeEscalation"] is False
    args += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    assert not spec.get("volumes"), "volumes of the surge pods would need mounting here"
    for k, v in sorted(env.items()):
        args += ["--env", f"{k}={v}"]
    image = c["image"]
    assert image == f"surge:{IMAGE_VERSION}"
    return args + [IMAGE] + c.get("command", []) + c.get("args", []), env


@pytest.fixture(scope="module")
def stack(objs, image, redis, postgres):
    tag = f"{os.getpid()}-{int(time.time())}"
    names = []

    def start(deployment, overrides):
        name = f"surge-test-{deployment}-{tag}"
        args, env = run_args(objs, deployment, name, overrides)
        podman("rm", "-f", name, check=False)
        podman(*args)
        names.append(name)
        admin = env["SURGE_ADMIN_PORT"]

        def ready():
            state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            if state not in ("running", "created", "configured"):
                raise AssertionError(f"{name} is {state}:\n{podman('logs', name, check=False).stderr[-3000:]}")
            return http("GET", f"http://127.0.0.1:{admin}/readyz", timeout=2)[0] == 200
        wait_for(f"{name} /readyz", ready, timeout=30)
        return name

    cm_dsn = one(objs, "ConfigMap", "surge-config")["data"]["SURGE_PG_DSN"]
    dsn = re.sub(r"port=\S+", f"port={postgres['port']}", re.sub(r"host=\S+", "host=127.0.0.1", cm_dsn))
    common = {"SURGE_BIND_ADDRESS": "127.0.0.1",
              "SURGE_REDIS_URL": f"redis://127.0.0.1:{redis['port']}/0",
              "SURGE_PG_DSN": dsn}
    ports = {"api_http": free_port(), "api_admin": free_port(), "worker_admin": free_port()}
    try:
        yield {"start": start, "names": names, "ports": ports,
               "api_env": {**common, "SURGE_HTTP_PORT": str(ports["api_http"]),
                           "SURGE_ADMIN_PORT": str(ports["api_admin"])},
               "worker_env": {**common, "SURGE_HTTP_PORT": str(free_port()),
                              "SURGE_ADMIN_PORT": str(ports["worker_admin"])}}
    finally:
        for n in names:
            podman("rm", "-f", "-t", "5", n, check=False)


# -- tests ----------------------------------------------------------------------

def test_image_is_small_non_root_and_shell_less(image):
    info = json.loads(podman("image", "inspect", image).stdout)[0]
    size_mb = info["Size"] / 1e6
    print(f"image size: {size_mb:.1f} MB")
    assert size_mb < 40, f"the image grew to {size_mb:.1f} MB"
    assert info["Config"]["User"] == "10001:10001"
    assert info["Config"].get("Cmd") == ["surge-api"]
    assert "PATH=/usr/local/bin" in info["Config"]["Env"]
    proc = podman("run", "--rm", "--pull", "never", image, "sh", "-c", "true", check=False)
    assert proc.returncode != 0, "the runtime image must not contain a shell"


def keda_list_length_script():
    """The Lua script KEDA's Redis scaler sends with EVAL, from the source of
    the KEDA version test/k8s/keda.version pins."""
    src = (keda_module_dir() / "pkg/scalers/redis_scaler.go").read_text()
    m = re.search(r"luaScript := `(.*?)`", src, re.S)
    assert m, "KEDA's redis scaler no longer has its luaScript: read pkg/scalers/redis_scaler.go again"
    assert "redis.call('llen'" in m.group(1), m.group(1)
    return m.group(1)


def test_read_job_end_to_end(objs, stack, redis):
    api = stack["start"]("surge-api", stack["api_env"])
    base = f"http://127.0.0.1:{stack['ports']['api_http']}"

    # Enqueued with no worker running, each job waits on the queue of its
    # type: the burn on the list KEDA watches, whose length KEDA's user can
    # read (and nothing else), the read on its own queue, no trigger.
    status, headers, body = http("POST", f"{base}/jobs/read", {"item_id": 42})
    assert status == 202, body
    job = json.loads(body)
    assert job["status"] == "queued" and headers["Location"] == f"/jobs/{job['id']}"
    status, _, body = http("POST", f"{base}/jobs/burn", {"seconds": 1})
    assert status == 202, body
    burn_id = json.loads(body)["id"]
    so = one(render("keda/kind"), "ScaledObject", "surge-worker")
    list_name = next(t for t in so["spec"]["triggers"] if t["type"] == "redis")["metadata"]["listName"]
    assert list_name == "surge:queue:burn"
    assert redis["cli"]("keda", "LLEN", list_name) == "1"
    assert redis["cli"]("api", "LLEN", "surge:queue:read") == "1"
    assert "NOPERM" in redis["cli"]("keda", "LLEN", "surge:queue:read")
    assert "NOPERM" in redis["cli"]("keda", "LPUSH", list_name, "x")
    assert "NOPERM" in redis["cli"]("keda", "HGETALL", f"surge:job:{job['id']}")
    assert "NOPERM" in redis["cli"]("api", "FLUSHALL")
    # KEDA's Redis scaler asks with EVAL of its own script (TYPE, then LLEN):
    # the script of the pinned KEDA, run as keda, reads that length...
    script = keda_list_length_script()
    assert redis["cli"]("keda", "EVAL", script, "1", list_name) == "1"
    # ...and no other key's, and a script of keda's writes nothing.
    assert "NOPERM" in redis["cli"]("keda", "EVAL", script, "1", "surge:queue:read")
    assert "can't run this command" in redis["cli"](
        "keda", "EVAL", "return redis.call('lpush', KEYS[1], 'x')", "1", list_name)
    assert redis["cli"]("api", "LLEN", list_name) == "1"

    worker = stack["start"]("surge-worker", stack["worker_env"])

    def finished():
        s, _, b = http("GET", f"{base}/jobs/{job['id']}")
        assert s == 200, b
        j = json.loads(b)
        return j if j["status"] in ("succeeded", "failed", "dead") else None
    done = wait_for("the read job", finished, timeout=60, interval=0.5)
    assert done["status"] == "succeeded", done
    assert done["result"]["id"] == 42 and done["result"]["name"] == "item-42", done

    # The burn runs too, and leaves the queue KEDA watches empty.
    def burned():
        j = json.loads(http("GET", f"{base}/jobs/{burn_id}")[2])
        return j if j["status"] in ("succeeded", "failed", "dead") else None
    done = wait_for("the burn job", burned, timeout=60, interval=0.5)
    assert done["status"] == "succeeded", done
    assert done["result"]["seconds_requested"] == 1
    assert redis["cli"]("keda", "LLEN", list_name) == "0"

    # The containers ran as the manifests say: user, read-only root, no capabilities.
    for name in (api, worker):
        info = json.loads(podman("inspect", name).stdout)[0]
        assert info["Config"]["User"] == "10001:10001"
        assert info["HostConfig"]["ReadonlyRootfs"] is True
        assert info["State"]["Running"] is True
        caps = info.get("EffectiveCaps") or []
        assert caps == [], f"{name} kept capabilities {caps}"
        status = Path(f"/proc/{info['State']['Pid']}/status").read_text()
        uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
        gids = re.search(r"^Gid:\s+(.*)$", status, re.M).group(1).split()
        assert set(uids) == {"10001"} and set(gids) == {"10001"}, (uids, gids)
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), "no_new_privs is not set"
        assert re.search(r"^CapEff:\s+0+$", status, re.M), "the process has capabilities"

    # SIGTERM, as the kubelet sends it: both drain and exit 0.
    for name in (api, worker):
        podman("stop", "-t", "30", name)
        code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        logs = podman("logs", name, check=False).stderr[-2000:]
        assert code == "0", f"{name} exited {code} on SIGTERM:\n{logs}"


def test_image_matches_manifests_ports(objs):
    """The ports the Deployments declare are the ones the image exposes."""
    out = subprocess.run(["grep", "-E", "^EXPOSE", str(ROOT / "Dockerfile")], capture_output=True, text=True).stdout
    exposed = {int(p) for p in out.split()[1:]}
    declared = {p["containerPort"] for _, _, c in P.surge_containers(objs) for p in c.get("ports") or []}
    assert declared == exposed
