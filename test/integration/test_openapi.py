"""api/openapi.yaml describes the live API: the document covers every route,
status code and error code of the contract, and schemathesis (pinned in
test/integration/requirements.txt) sends generated requests to a running
surge-api on 127.0.0.1 and checks every answer against the document. Redis
is up during the run, so no 5xx at all may appear."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import ERROR_CODES, REPO_ROOT, assert_error, http
from reliability import metrics, poll_until, readyz

DOC = REPO_ROOT / "api" / "openapi.yaml"
ARCH = REPO_ROOT / "docs" / "architecture.md"
SEED = 20261125
MAX_EXAMPLES = 50
PUBLIC = {"/jobs": {"post"}, "/jobs/read": {"post"}, "/jobs/burn": {"post"},
          "/jobs/{id}": {"get"}}
ADMIN = {"/healthz": {"get"}, "/readyz": {"get"}, "/metrics": {"get"}}
JOB_FIELDS = {"id", "type", "status", "attempts", "params", "result", "error",
              "created_at", "started_at", "finished_at", "worker", "retry_at"}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@pytest.fixture(scope="module")
def doc():
    return yaml.safe_load(DOC.read_text())


def resolve(doc, node):
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = doc
        for part in ref[2:].split("/"):
            node = node[part]
    return node


def documented_codes():
    """{code: status} from the error list of docs/architecture.md."""
    text = ARCH.read_text()
    section = text[text.index("## HTTP answers"):]
    section = section[:section.index("\n## ", 4)]
    pairs = re.findall(r"`([a-z_]+)` \((\d{3})", section)
    assert len(pairs) >= 12, pairs
    return {code: int(status) for code, status in pairs}


def test_document_covers_the_contract(doc):
    assert re.match(r"^3\.[01]\.\d+$", doc["openapi"]), doc["openapi"]
    declared = {p: {m for m in ops if m in METHODS} for p, ops in doc["paths"].items()}
    assert declared == {**PUBLIC, **ADMIN}, declared

    codes = documented_codes()
    enum = set(resolve(doc, doc["components"]["schemas"]["ErrorCode"])["enum"])
    assert enum == set(codes), f"ErrorCode enum {enum} != documented codes {set(codes)}"
    assert enum == {c for cs in ERROR_CODES.values() for c in cs}

    public_statuses = set()
    for path, methods in PUBLIC.items():
        for m in methods:
            op = doc["paths"][path][m]
            for status, response in op["responses"].items():
                response = resolve(doc, response)
                public_statuses.add(int(status))
                body = response["content"]["application/json"]["schema"]
                if int(status) >= 400:
                    assert resolve(doc, body) is doc["components"]["schemas"]["Error"], \
                        f"{m.upper()} {path} {status} does not use the error schema"
                if int(status) == 503:
                    assert resolve(doc, response["headers"]["Retry-After"])["required"]
                if int(status) == 405:
                    assert resolve(doc, response["headers"]["Allow"])["required"]
            if m == "post":
                accepted = resolve(doc, op["responses"]["202"])
                assert accepted["headers"]["Location"]["required"] is True
                assert set(resolve(doc, accepted["content"]["application/json"]["schema"])
                           ["properties"]) == {"id", "type", "status"}
    # Every status of DESIGN.md's HTTP API and of the error list.
    assert public_statuses >= {200, 202} | set(codes.values()), public_statuses

    job = doc["components"]["schemas"]["Job"]
    assert set(job["properties"]) == JOB_FIELDS and set(job["required"]) == JOB_FIELDS
    assert set(job["properties"]["status"]["enum"]) == {
        "queued", "running", "succeeded", "failed", "dead"}
    for field in ("created_at", "started_at", "finished_at"):
        assert resolve(doc, job["properties"][field]) is doc["components"]["schemas"]["Timestamp"]


def schemathesis_run(tmp_path, base_url, *args):
    """Runs the schemathesis CLI of this venv against base_url (loopback only);
    returns (exit code, output)."""
    exe = Path(sys.executable).parent / "schemathesis"
    assert exe.is_file(), f"{exe} is missing: `make venv` installs test/integration/requirements.txt"
    assert base_url.startswith("http://127.0.0.1:"), base_url
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update({"NO_COLOR": "1", "HOME": str(tmp_path)})
    workdir = tmp_path / "schemathesis"
    workdir.mkdir(exist_ok=True)
    # A schema-valid POST may carry an Idempotency-Key that an earlier case
    # of the run sent with another job: 422 idempotency_key_reused is then
    # the documented answer (the IETF draft's), not a rejection of valid data.
    config = workdir / "schemathesis.toml"
    config.write_text('[checks.positive_data_acceptance]\n'
                      'expected-statuses = ["2XX", "3XX", "401", "403", "404", "409", "422", '
                      '"429", "5XX"]\n')
    cmd = [str(exe), "--config-file", str(config), "run", str(DOC), "--url", base_url,
           "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
           "--generation-database", "none", "--workers", "1", "--request-timeout", "10",
           "--no-color", "--output-truncate", "false", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=workdir, env=env)
    return r.returncode, r.stdout + r.stderr


def _summary(out):
    m = re.search(r"Test cases:\s*\n\s*(.*)", out)
    return m.group(1).strip() if m else "?"


def test_live_api_conforms_to_the_document(surge, tmp_path):
    api = surge.api()
    poll_until(lambda: readyz(api)[0] == 200, 15, what="api ready")
    # Every check schemathesis has, except its opinion on methods it invents
    # (QUERY and the like are answered 400 bad_request, as the document says):
    # test_undeclared_methods_get_405 checks 405 and Allow for real methods.
    code, out = schemathesis_run(tmp_path, f"http://127.0.0.1:{api.http_port}",
                                 "--include-tag", "jobs", "--checks", "all",
                                 "--exclude-checks", "unsupported_method")
    print(f"\nschemathesis, public routes: {_summary(out)}")
    assert code == 0, out[-20000:]
    assert "No tests were run" not in out, out[-5000:]
    # The api's own count of answers by status: not one 5xx.
    # (/readyz is on the admin port and answered 503 until Redis was first seen.)
    fivexx = {k: v for k, v in metrics(api.admin_port).items()
              if k[0] == "surge_http_requests_total" and dict(k[1]).get("code", "")[:1] == "5"
              and dict(k[1]).get("route") != "/readyz"}
    assert not fivexx, f"5xx answers counted by the api: {fivexx}"
    answered = sum(v for k, v in metrics(api.admin_port).items()
                   if k[0] == "surge_http_requests_total")
    assert answered >= 4 * MAX_EXAMPLES, f"only {answered} requests reached the api"
    assert http(api.admin_port, "GET", "/healthz").status == 200


def test_admin_routes_conform_to_the_document(surge, tmp_path):
    api = surge.api()
    # The worker gets its own key prefix: it must not pick up anything.
    worker = surge.worker(SURGE_KEY_PREFIX="openapi:")
    for proc in (api, worker):
        poll_until(lambda: readyz(proc)[0] == 200, 15, what=f"{proc.name} ready")
        code, out = schemathesis_run(tmp_path, f"http://127.0.0.1:{proc.admin_port}",
                                     "--include-tag", "admin", "--checks", "all",
                                     "--exclude-checks", "unsupported_method",
                                     "--phases", "examples,coverage,fuzzing")
        print(f"\nschemathesis, admin routes of {proc.name}: {_summary(out)}")
        assert code == 0, out[-20000:]


def test_undeclared_methods_get_405(doc, api):
    """Every real method a route does not declare gets 405, its Allow header
    names what the route takes; an unknown method is a 400 bad_request."""
    ports = {**{p: api.http_port for p in PUBLIC}, **{p: api.admin_port for p in ADMIN}}
    for path, port in ports.items():
        url = path.replace("{id}", "01M8A4E1EA2HS751PXC6HB2TWS")
        allowed = {m.upper() for m in doc["paths"][path] if m in METHODS}
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            if method in allowed or (method == "HEAD" and "GET" in allowed):
                continue
            body = "{}" if method in ("POST", "PUT", "PATCH") else None
            r = http(port, method, url, body)
            assert_error(r, 405, "method_not_allowed")
            allow = {m.strip() for m in (r.header("allow") or "").split(",")}
            assert allowed <= allow and method not in allow, (method, path, r)
        with_query = http(port, "QUERY", url)
        assert_error(with_query, 400, "bad_request")
