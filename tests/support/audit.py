"""What a ServiceAccount may do (the RBAC objects bound to it) and what it really did (the test
apiserver's audit log, ControlPlane.audit_log), in the same terms, so a test can compare them.

A permission is (apiGroup, resource, verb, namespace): resource carries its subresource
(``dreamboothjobs/status``) as RBAC names it; namespace is None for a grant that holds in every
namespace (a ClusterRoleBinding) and for a call made at cluster scope.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class Permission:
    group: str
    resource: str
    verb: str
    namespace: str | None

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else " (cluster)"
        return f"{self.verb} {self.resource}{'.' + self.group if self.group else ''}{where}"

    def covers(self, call: Call) -> bool:
        """Whether a call was an exercise of this grant."""
        return ((self.group, self.resource, self.verb) == (call.group, call.resource, call.verb)
                and self.namespace in (None, call.namespace))


@dataclass(frozen=True)
class Call(Permission):
    code: int  # the response status; 0 for a watch still streaming


def service_account_user(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def calls(audit_log: Path, username: str) -> set[Call]:
    """The resource requests ``username`` made (not impersonated ones: those are the admin's);
    non-resource requests (discovery: /api, /apis, /version) carry no objectRef and are left out."""
    found: set[Call] = set()
    with audit_log.open() as lines:
        for line in lines:
            event = json.loads(line)
            ref = event.get("objectRef")
            if event["user"].get("username") != username or "impersonatedUser" in event or not ref:
                continue
            resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            code = (event.get("responseStatus") or {}).get("code", 0)
            found.add(Call(ref.get("apiGroup", ""), resource, event["verb"], ref.get("namespace"), code))
    return found


@dataclass(frozen=True)
class Request:
    """One request as the audit log has it (its final stage: one per audit ID)."""

    verb: str
    resource: str  # with its subresource, as RBAC names it
    namespace: str | None
    name: str | None
    code: int


def requests(audit_log: Path, username: str, since: datetime.datetime) -> list[Request]:
    """Every resource request ``username`` made since ``since``, in the order received."""
    found: dict[str, Request] = {}
    with audit_log.open() as lines:
        for line in lines:
            event = json.loads(line)
            ref = event.get("objectRef")
            if event["user"].get("username") != username or not ref:
                continue
            received = datetime.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
            if received < since:
                continue
            resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            code = (event.get("responseStatus") or {}).get("code", 0)
            found[event["auditID"]] = Request(event["verb"], resource, ref.get("namespace"), ref.get("name"), code)
    return list(found.values())


def granted(cluster, namespace: str, name: str) -> set[Permission]:
    """Every permission the RBAC objects in the cluster give the ServiceAccount by name (the
    bindings that name it as a subject; none of the groups it belongs to)."""
    subject = ("ServiceAccount", name, namespace)

    def objects(kind: str) -> list[dict]:
        return json.loads(cluster.kubectl("get", kind, "-A", "-o", "json").stdout)["items"]

    roles = {("ClusterRole", None, r["metadata"]["name"]): r for r in objects("clusterroles")}
    roles |= {("Role", r["metadata"]["namespace"], r["metadata"]["name"]): r for r in objects("roles")}
    result: set[Permission] = set()
    for binding in objects("clusterrolebindings") + objects("rolebindings"):
        subjects = [(s["kind"], s["name"], s.get("namespace")) for s in binding.get("subjects") or []]
        if subject not in subjects:
            continue
        scope = binding["metadata"].get("namespace")  # a RoleBinding grants only in its namespace
        ref = binding["roleRef"]
        role = roles[(ref["kind"], scope if ref["kind"] == "Role" else None, ref["name"])]
        for rule in role.get("rules") or []:
            # A rule limited by resourceNames counts as its verbs: the apiserver enforces the names.
            assert "nonResourceURLs" not in rule, rule
            result |= {Permission(group, resource, verb, scope) for group in rule["apiGroups"]
                       for resource in rule["resources"] for verb in rule["verbs"]}
    return result
