"""Kubernetes' own syntax for what a DreamBoothJob hands to its pods: label keys and values
(nodeSelector, tolerations), container resource names and quantities.

The rules are the ones the Job API applies to the pods the operator builds (k8s.io/kubernetes
pkg/apis/core/validation: ValidateLabels, ValidateTolerations, validateContainerResourceName,
ValidateResourceQuantityValue, validateResourceRequirements), so a spec the CRD admits never
becomes a Job the apiserver refuses. Each rule is written once here, as regexes and lengths,
and used twice: by a Python check for the models' parse, and by a CEL expression for the CRD.

Where Kubernetes' rule rests on quirks of its number representation, the rule here is a
stricter subset, said in the messages: hugepages are not offered (their divisibility rule needs
integer arithmetic CEL's quantities lack), extended resources count whole devices written as
plain integers, and exponents have at most three digits (so both sides compute exactly).
"""

from __future__ import annotations

import dataclasses
import decimal
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, StringConstraints, WithJsonSchema

from .base import DNS_SUBDOMAIN, Rule

# --- label keys and values: k8s.io/apimachinery IsQualifiedName, IsValidLabelValue

# The name part of a qualified name, at most 63 characters.
LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_VALUE = rf"^({LABEL_NAME})?$"
LABEL_VALUE_MAX = 63
QUALIFIED_NAME = rf"^({DNS_SUBDOMAIN[1:-1]}/)?{LABEL_NAME}$"
PREFIX_MAX = 253  # a DNS subdomain
QUALIFIED_NAME_MAX = PREFIX_MAX + 1 + 63

# --- container resource names: validateContainerResourceName

STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")
NATIVE_DOMAIN = "kubernetes.io/"  # Kubernetes' own prefixed names, e.g. example.kubernetes.io/x
# Quota names an extended resource requests.<name>, which must still be a qualified name.
EXTENDED_PREFIX_MAX = PREFIX_MAX - len("requests.")
# Extended resources are integers; Kubernetes checks them as ceil(1000·q) % 1000 == 0 in an
# int64, which 15 digits never overflow.
WHOLE_NUMBER = r"^[0-9]{1,15}$"

# --- quantities: k8s.io/apimachinery resource.ParseQuantity

_NUMBER = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)"
_SUFFIX = r"([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]{1,3})?"
QUANTITY = rf"^{_NUMBER}{_SUFFIX}$"
QUANTITY_MAX = 64
_PARTS = re.compile(rf"(?P<number>{_NUMBER})(?P<suffix>{_SUFFIX})")
_DECIMAL_SI = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SI = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_INT64_MAX = decimal.Decimal(2**63 - 1)
_NANO = decimal.Decimal("1e-9")
# Exact for 64 digits times 2**60 or 10**±999.
_EXACT = decimal.Context(prec=200, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def is_qualified_name(s: str) -> bool:
    return len(s) <= QUALIFIED_NAME_MAX and re.fullmatch(QUALIFIED_NAME, s) is not None and s.find("/") <= PREFIX_MAX


def _qualified_name_cel(x: str) -> str:
    # The size test first: it bounds the regex's cost on map keys, whose size the schema cannot.
    return f"{x}.size() <= {QUALIFIED_NAME_MAX} && {x}.matches(r'{QUALIFIED_NAME}') && {x}.indexOf('/') <= {PREFIX_MAX}"


def is_extended_resource(s: str) -> bool:
    """A resource outside Kubernetes' own domain, e.g. nvidia.com/gpu (a valid name assumed)."""
    return "/" in s and NATIVE_DOMAIN not in s


def _extended_resource_cel(x: str) -> str:
    return f"({x}.contains('/') && !{x}.contains('{NATIVE_DOMAIN}'))"


def is_resource_name(s: str) -> bool:
    if not is_qualified_name(s):
        return False
    if "/" not in s:
        return s in STANDARD_RESOURCES
    return NATIVE_DOMAIN in s or (not s.startswith("requests.") and s.find("/") <= EXTENDED_PREFIX_MAX)


def _resource_name_cel(x: str) -> str:
    standard = ", ".join(f"'{r}'" for r in STANDARD_RESOURCES)
    prefixed = (f"{x}.contains('{NATIVE_DOMAIN}')"
                f" || (!{x}.startsWith('requests.') && {x}.indexOf('/') <= {EXTENDED_PREFIX_MAX})")
    return f"({_qualified_name_cel(x)}) && ({x}.contains('/') ? ({prefixed}) : {x} in [{standard}])"


def is_extended_resource_name(s: str) -> bool:
    return is_resource_name(s) and is_extended_resource(s)


def _extended_resource_name_cel(x: str) -> str:
    return f"{_extended_resource_cel(x)} && {_resource_name_cel(x)}"


@dataclasses.dataclass(frozen=True)
class Syntax:
    """A string syntax of Kubernetes: one Python check and one CEL expression, and what it asks."""

    check: Callable[[str], bool]
    cel: Callable[[str], str]  # a boolean CEL expression over the variable named
    says: str  # completes "must be …"

    def string_type(self, where: str) -> Any:
        """The string type the models check; the CRD checks it with ``rule`` or ``keys_rule``."""

        def check(value: str) -> str:
            if not self.check(value):
                raise ValueError(f"{where} must be {self.says}, not {value!r}")
            return value

        return Annotated[str, AfterValidator(check)]

    def rule(self, where: str) -> Rule:
        """The CEL rule of a string field."""
        return Rule(self.cel("self"), f"{where} must be {self.says}")

    def keys_rule(self, where: str) -> Rule:
        """The CEL rule of a map whose keys have this syntax."""
        return Rule(f"self.all(k, {self.cel('k')})", f"every key of {where} must be {self.says}")


LABEL_KEY = Syntax(
    is_qualified_name, _qualified_name_cel,
    "a label key: an optional DNS subdomain prefix of at most 253 characters and '/', then a name of"
    " at most 63 letters, digits, '-', '_' or '.' that begins and ends with a letter or digit",
)
RESOURCE_NAME = Syntax(
    is_resource_name, _resource_name_cel,
    "cpu, memory, ephemeral-storage or an extended resource with a domain prefix such as"
    " example.com/fpga (hugepages are not offered)",
)
# ValidateTolerations: an empty key is no key (it needs operator Exists, a rule of its own).
TOLERATION_KEY = Syntax(
    lambda s: s == "" or is_qualified_name(s), lambda x: f"{x} == '' || ({_qualified_name_cel(x)})",
    f"empty or {LABEL_KEY.says}",
)
EXTENDED_RESOURCE_NAME = Syntax(
    is_extended_resource_name, _extended_resource_name_cel,
    "an extended resource with a domain prefix such as nvidia.com/gpu",
)


LabelValue = Annotated[str, StringConstraints(max_length=LABEL_VALUE_MAX, pattern=LABEL_VALUE)]


# --- quantities


def quantity_value(q: int | str) -> decimal.Decimal | None:
    """The value Kubernetes parses ``q`` to, exactly as it compares it; None where it would not.

    ParseQuantity rounds values finer than 1n up (away from zero) and caps binary-suffixed ones
    at the int64 range; quantities compare by that value.
    """
    if isinstance(q, int):
        return decimal.Decimal(q)
    parts = _PARTS.fullmatch(q)
    if parts is None:
        return None
    number, suffix = decimal.Decimal(parts["number"]), parts["suffix"]
    if suffix in _BINARY_SI:
        value = _EXACT.multiply(number, decimal.Decimal(2 ** _BINARY_SI[suffix]))
        value = max(-_INT64_MAX, min(value, _INT64_MAX))
    else:
        exponent = _DECIMAL_SI[suffix] if suffix in _DECIMAL_SI else int(suffix[1:])
        value = number.scaleb(exponent, _EXACT)
    if value and value.as_tuple().exponent < -9:
        value = value.quantize(_NANO, rounding=decimal.ROUND_UP, context=_EXACT)
    return value


def _quantity_cel(x: str) -> str:
    return f"quantity(string({x}))"


QUANTITY_SAYS = "a resource quantity must be a non-negative number with an optional suffix, e.g. 500m, 1.5, 4Gi or 1e3"


def _check_quantity(q: int | str) -> int | str:
    value = quantity_value(q)
    if value is None or value < 0:
        raise ValueError(f"{QUANTITY_SAYS}, not {q!r}")
    return q


# int-or-string as the Job API reads it. The CEL rule also covers integers, which the pattern
# does not see, and strings the pattern admits but ParseQuantity refuses.
ResourceQuantity = Annotated[
    int | Annotated[str, StringConstraints(pattern=QUANTITY, max_length=QUANTITY_MAX)],
    AfterValidator(_check_quantity),
    WithJsonSchema({
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": QUANTITY,
        "maxLength": QUANTITY_MAX,
        "x-kubernetes-int-or-string": True,
        "x-kubernetes-validations": [Rule(
            f"isQuantity(string(self)) && !{_quantity_cel('self')}.isLessThan(quantity('0'))", QUANTITY_SAYS).render()],
    }),
]


WHOLE_SAYS = "of extended resources (e.g. example.com/fpga) must be whole numbers of at most 15 digits"


def is_whole_number(q: int | str) -> bool:
    return re.fullmatch(WHOLE_NUMBER, str(q)) is not None


def whole_extended_rule(where: str) -> Rule:
    """The CEL rule of a requests or limits map: extended resources count whole devices."""
    return Rule(f"self.all(k, !{_extended_resource_cel('k')} || string(self[k]).matches(r'{WHOLE_NUMBER}'))",
                f"{where} {WHOLE_SAYS}")


def compare_quantities(a: int | str, b: int | str) -> int:
    """-1, 0 or 1 as Kubernetes compares two valid quantities."""
    x, y = quantity_value(a), quantity_value(b)
    return (x > y) - (x < y)


_REQ, _LIM = "self.requests[k]", "self.limits[k]"
_COMPARE = f"{_quantity_cel(_REQ)}.compareTo({_quantity_cel(_LIM)})"
# Rules of a resources object with requests and limits maps. Values the per-value rule refuses
# are skipped here, so a bad value gets one message, not an evaluation error.
REQUESTS_WITHIN_LIMITS = Rule(
    "!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits)"
    f" || !(isQuantity(string({_REQ})) && isQuantity(string({_LIM}))) || {_COMPARE} <= 0)",
    "resources.requests must not exceed resources.limits for the same resource",
    field_path=".requests",
)
# Kubernetes does not overcommit extended resources: their requests equal their limits.
EXTENDED_REQUESTS_LIMITED = Rule(
    f"!has(self.requests) || self.requests.all(k, !{_extended_resource_cel('k')} || (has(self.limits)"
    f" && k in self.limits && (!(string({_REQ}).matches(r'{WHOLE_NUMBER}')"
    f" && string({_LIM}).matches(r'{WHOLE_NUMBER}')) || {_COMPARE} == 0)))",
    "resources.requests of an extended resource (e.g. example.com/fpga) needs the same quantity in"
    " resources.limits",
    field_path=".requests",
)


def requests_within_limits(requests: dict[str, int | str], limits: dict[str, int | str]) -> bool:
    """The models' side of REQUESTS_WITHIN_LIMITS (the quantities valid)."""
    return all(k not in limits or compare_quantities(q, limits[k]) <= 0 for k, q in requests.items())


def extended_requests_limited(requests: dict[str, int | str], limits: dict[str, int | str]) -> bool:
    """The models' side of EXTENDED_REQUESTS_LIMITED (the quantities valid)."""
    return all(k in limits and compare_quantities(q, limits[k]) == 0
               for k, q in requests.items() if is_extended_resource(k))
