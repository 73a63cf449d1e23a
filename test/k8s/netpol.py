"""A small evaluator of Kubernetes NetworkPolicy semantics.

It answers: may a connection from endpoint A to endpoint B on port/protocol
pass, given a set of NetworkPolicy objects? The rules follow
https://kubernetes.io/docs/concepts/services-networking/network-policies/:

* A pod is isolated for ingress (egress) when at least one policy in its
  namespace selects it and has Ingress (Egress) in its policyTypes. policyTypes
  defaults to ["Ingress"], plus "Egress" when the policy has an egress section.
* A connection passes when the source's egress allows it (not isolated, or
  some egress rule of a selecting policy matches the destination and port) AND
  the destination's ingress allows it (likewise). Policies are additive.
* A rule with no `from`/`to` matches every peer; with no `ports`, every port.
  A peer is an ipBlock, or a namespaceSelector and/or podSelector:
  podSelector alone = pods of the policy's namespace; namespaceSelector alone
  = every pod of the selected namespaces; both = selected pods of selected
  namespaces. A port may be a number (with endPort, a range) or the name of
  a container port of the destination pod; protocol defaults to TCP.
* Endpoints outside the cluster (no namespace) are matched by ipBlock only and
  are never isolated themselves.
"""
import ipaddress
from dataclasses import dataclass, field

from policy import labels_match


@dataclass(frozen=True)
class Endpoint:
    name: str
    namespace: str | None            # None: outside the cluster
    labels: tuple = ()               # ((key, value), ...)
    ip: str = "10.244.0.1"
    ports: tuple = ()                # ((name, number, protocol), ...)

    @property
    def label_dict(self):
        return dict(self.labels)


@dataclass
class Cluster:
    namespaces: dict                  # name -> labels
    policies: list = field(default_factory=list)

    def _policy_types(self, pol):
        spec = pol["spec"]
        if "policyTypes" in spec:
            return set(spec["policyTypes"])
        return {"Ingress"} | ({"Egress"} if "egress" in spec else set())

    def _selecting(self, pod, direction):
        return [p for p in self.policies
                if p["metadata"].get("namespace", "default") == pod.namespace
                and direction in self._policy_types(p)
                and labels_match(p["spec"].get("podSelector"), pod.label_dict)]

    def _peer_matches(self, peer, policy_ns, other):
        if "ipBlock" in peer:
            net = ipaddress.ip_network(peer["ipBlock"]["cidr"])
            addr = ipaddress.ip_address(other.ip)
            if addr not in net:
                return False
            return not any(addr in ipaddress.ip_network(e) for e in peer["ipBlock"].get("except") or [])
        if other.namespace is None:
            return False
        if "namespaceSelector" in peer:
            ns_labels = self.namespaces.get(other.namespace, {})
            if not labels_match(peer["namespaceSelector"], ns_labels):
                return False
        elif other.namespace != policy_ns:
            return False
        if "podSelector" in peer:
            return labels_match(peer["podSelector"], other.label_dict)
        return True

    @staticmethod
    def _port_matches(rule_ports, dst, port, protocol):
        if not rule_ports:
            return True
        for p in rule_ports:
            if p.get("protocol", "TCP") != protocol:
                continue
            if "port" not in p:
                return True
            want = p["port"]
            if isinstance(want, str):
                if any(n == want and num == port and proto == protocol for n, num, proto in dst.ports):
                    return True
            elif want == port or (p.get("endPort") and want <= port <= p["endPort"]):
                return True
        return False

    def _direction_allows(self, pod, other, dst, port, protocol, direction):
        if pod.namespace is None:
            return True
        policies = self._selecting(pod, direction)
        if not policies:
            return True
        key_rules, key_peers = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for pol in policies:
            ns = pol["metadata"].get("namespace", "default")
            for rule in pol["spec"].get(key_rules) or []:
                peers = rule.get(key_peers)
                if peers and not any(self._peer_matches(peer, ns, other) for peer in peers):
                    continue
                if self._port_matches(rule.get("ports"), dst, port, protocol):
                    return True
        return False

    def allows(self, src, dst, port, protocol="TCP"):
        return (self._direction_allows(src, dst, dst, port, protocol, "Egress")
                and self._direction_allows(dst, src, dst, port, protocol, "Ingress"))
