"""NetworkPolicy matrix: for every pair of endpoints (our workloads, cluster
DNS, the ingress controller, KEDA, Prometheus, stray pods, the internet) and
every port, the rendered policies allow exactly the flows of DESIGN.md."""
import itertools

import pytest

import policy as P
from conftest import TARGETS, find, one, render
from netpol import Cluster, Endpoint

OURS = ("surge", "surge-data")


def ep(name, namespace, labels, ip, ports=()):
    return Endpoint(name, namespace, tuple(sorted(labels.items())), ip, tuple(ports))


# Components outside our manifests, labelled as their standard installs label
# them (ingress-nginx, KEDA and kube-prometheus-stack Helm charts, CoreDNS).
EXTERNAL = [
    ep("ingress-controller", "ingress-nginx",
       {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"},
       "10.244.1.10", [("http", 80, "TCP"), ("https", 443, "TCP")]),
    ep("keda-operator", "keda", {"app.kubernetes.io/name": "keda-operator", "app": "keda-operator"},
       "10.244.1.20"),
    ep("keda-metrics-apiserver", "keda",
       {"app.kubernetes.io/name": "keda-operator-metrics-apiserver"}, "10.244.1.21"),
    ep("prometheus", "monitoring",
       {"app.kubernetes.io/name": "prometheus", "prometheus": "kube-prometheus-stack-prometheus"},
       "10.244.1.30", [("web", 9090, "TCP")]),
    ep("grafana", "monitoring", {"app.kubernetes.io/name": "grafana"}, "10.244.1.31"),
    ep("coredns", "kube-system", {"k8s-app": "kube-dns"}, "10.244.1.40",
       [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]),
    ep("other-app", "default", {"app": "other"}, "10.244.1.50", [("http", 8080, "TCP")]),
    # Pods someone starts by hand in our namespaces (kubectl run): no flows
    # but DNS.
    ep("stray-surge", "surge", {"run": "debug"}, "10.244.1.60"),
    ep("stray-data", "surge-data", {"run": "debug"}, "10.244.1.61"),
    ep("internet", None, {}, "203.0.113.7", [("https", 443, "TCP")]),
]

PORTS = [(53, "UDP"), (53, "TCP"), (80, "TCP"), (443, "TCP"), (5432, "TCP"), (6379, "TCP"),
         (8080, "TCP"), (9090, "TCP")]


def our_endpoints(objs):
    out = []
    for i, w in enumerate(P.workloads(objs)):
        meta, spec = P.pod_template(w)
        ports = [(p.get("name"), p["containerPort"], p.get("protocol", "TCP"))
                 for c in P.containers(spec, with_init=False) for p in c.get("ports") or []]
        out.append(ep(w["metadata"]["name"], P.ns_of(w), meta.get("labels") or {},
                      f"10.244.0.{10 + i}", ports))
    return out


def cluster(objs, endpoints):
    namespaces = {e.namespace for e in endpoints if e.namespace}
    ns_labels = {n: {"kubernetes.io/metadata.name": n} for n in namespaces}
    for o in find(objs, "Namespace"):
        ns_labels[o["metadata"]["name"]] = {**(o["metadata"].get("labels") or {}),
                                            "kubernetes.io/metadata.name": o["metadata"]["name"]}
    return Cluster(ns_labels, find(objs, "NetworkPolicy"))


# The intended flows, DESIGN.md "Kubernetes", and nothing else.
INTENDED = {
    ("ingress-controller", "surge-api", 8080, "TCP"),
    ("prometheus", "surge-api", 9090, "TCP"),
    ("prometheus", "surge-worker", 9090, "TCP"),
    ("surge-api", "redis", 6379, "TCP"),
    ("surge-worker", "redis", 6379, "TCP"),
    ("surge-worker", "postgres", 5432, "TCP"),
    ("keda-operator", "redis", 6379, "TCP"),
}
DNS_CLIENTS = {"surge-api", "surge-worker", "redis", "postgres", "stray-surge", "stray-data"}
INTENDED |= {(c, "coredns", 53, proto) for c in DNS_CLIENTS for proto in ("UDP", "TCP")}


def allowed_flows(objs):
    endpoints = our_endpoints(objs) + EXTERNAL
    c = cluster(objs, endpoints)
    flows = set()
    for src, dst in itertools.permutations(endpoints, 2):
        if src.namespace not in OURS and dst.namespace not in OURS:
            continue        # neither end is ours: not our policies' business
        for port, proto in PORTS:
            if c.allows(src, dst, port, proto):
                flows.add((src.name, dst.name, port, proto))
    return flows


@pytest.mark.parametrize("target", TARGETS)
def test_matrix_is_exactly_the_intended_flows(rendered, target):
    names = {e.name for e in our_endpoints(rendered[target])}
    assert names == {"surge-api", "surge-worker", "postgres", "redis"}
    flows = allowed_flows(rendered[target])
    assert sorted(flows - INTENDED) == [], "flows allowed that DESIGN.md does not intend"
    assert sorted(INTENDED - flows) == [], "intended flows that the policies block"


# -- the matrix test notices broken policies ---------------------------------

def test_matrix_catches_missing_default_deny():
    objs = [o for o in render("k8s") if not (o["kind"] == "NetworkPolicy"
                                             and o["metadata"]["name"] == "default-deny-all"
                                             and o["metadata"]["namespace"] == "surge-data")]
    extra = allowed_flows(objs) - INTENDED
    # Pods of surge-data that no other policy selects become reachable...
    assert ("other-app", "stray-data", 80, "TCP") in extra
    # ...while postgres' own ingress policy and the DNS-only egress still hold.
    assert ("other-app", "postgres", 5432, "TCP") not in extra
    assert ("redis", "internet", 443, "TCP") not in extra


def test_matrix_catches_a_widened_peer():
    objs = render("k8s")
    pol = one(objs, "NetworkPolicy", "redis", "surge-data")
    del pol["spec"]["ingress"][0]["from"][1]["podSelector"]      # any pod of namespace keda
    assert ("keda-metrics-apiserver", "redis", 6379, "TCP") in allowed_flows(objs) - INTENDED


def test_matrix_catches_a_widened_egress():
    objs = render("k8s")
    pol = one(objs, "NetworkPolicy", "surge-api", "surge")
    del pol["spec"]["egress"][0]["to"]                            # port 6379 anywhere
    extra = allowed_flows(objs) - INTENDED
    assert ("surge-api", "internet", 6379, "TCP") in extra
    assert ("surge-api", "other-app", 6379, "TCP") in extra


def test_matrix_catches_a_missing_flow():
    objs = render("k8s")
    pol = one(objs, "NetworkPolicy", "surge-worker", "surge")
    pol["spec"]["egress"] = pol["spec"]["egress"][:1]
    assert ("surge-worker", "postgres", 5432, "TCP") in INTENDED - allowed_flows(objs)


def test_matrix_catches_an_open_port_range():
    objs = render("k8s")
    pol = one(objs, "NetworkPolicy", "surge-api", "surge")
    pol["spec"]["ingress"][0]["ports"] = [{"protocol": "TCP", "port": 1, "endPort": 65535}]
    assert ("ingress-controller", "surge-api", 9090, "TCP") in allowed_flows(objs) - INTENDED


# -- the evaluator itself, on small cases with known answers -----------------

A = ep("a", "ns1", {"app": "a"}, "10.0.0.1", [("http", 80, "TCP")])
B = ep("b", "ns2", {"app": "b"}, "10.0.0.2", [("http", 80, "TCP"), ("dns", 53, "UDP")])
NS = {"ns1": {"kubernetes.io/metadata.name": "ns1", "team": "x"},
      "ns2": {"kubernetes.io/metadata.name": "ns2"}}


def pol(ns, spec):
    return {"kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": ns}, "spec": spec}


def test_evaluator_no_policy_allows_all():
    assert Cluster(NS, []).allows(A, B, 80)


def test_evaluator_default_deny_ingress_only():
    c = Cluster(NS, [pol("ns2", {"podSelector": {}})])      # policyTypes defaults to Ingress
    assert not c.allows(A, B, 80)
    assert c.allows(B, A, 80)


def test_evaluator_egress_section_implies_egress_type():
    c = Cluster(NS, [pol("ns1", {"podSelector": {}, "egress": []})])
    assert not c.allows(A, B, 80)


def test_evaluator_peer_semantics():
    both = pol("ns2", {"podSelector": {"matchLabels": {"app": "b"}}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "x"}}, "podSelector": {"matchLabels": {"app": "a"}}}]}]})
    assert Cluster(NS, [both]).allows(A, B, 80)
    pod_only = pol("ns2", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})
    assert not Cluster(NS, [pod_only]).allows(A, B, 80)            # podSelector alone: own namespace
    ns_only = pol("ns2", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]}}]}]})
    assert Cluster(NS, [ns_only]).allows(A, B, 80)


def test_evaluator_ports_named_ranges_protocols():
    named = pol("ns2", {"podSelector": {}, "ingress": [{"ports": [{"port": "dns", "protocol": "UDP"}]}]})
    assert Cluster(NS, [named]).allows(A, B, 53, "UDP")
    assert not Cluster(NS, [named]).allows(A, B, 53, "TCP")
    rng = pol("ns2", {"podSelector": {}, "ingress": [{"ports": [{"port": 70, "endPort": 90}]}]})
    assert Cluster(NS, [rng]).allows(A, B, 80)
    assert not Cluster(NS, [rng]).allows(A, B, 53, "UDP")


def test_evaluator_ipblock():
    out = ep("out", None, {}, "198.51.100.5")
    p = pol("ns1", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"ipBlock": {"cidr": "198.51.100.0/24", "except": ["198.51.100.128/25"]}}]}]})
    assert Cluster(NS, [p]).allows(A, out, 443)
    assert not Cluster(NS, [p]).allows(A, ep("o2", None, {}, "198.51.100.200"), 443)
    assert not Cluster(NS, [p]).allows(A, B, 80)


def test_evaluator_policies_are_additive():
    deny = pol("ns2", {"podSelector": {}, "policyTypes": ["Ingress"]})
    allow = pol("ns2", {"podSelector": {"matchLabels": {"app": "b"}}, "ingress": [{}]})
    assert Cluster(NS, [deny, allow]).allows(A, B, 80)
