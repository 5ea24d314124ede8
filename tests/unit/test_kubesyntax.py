"""Kubernetes' syntax as the models check it (dreambooth_api.kubesyntax), against oracles written
the way k8s.io/apimachinery and pkg/apis/core/validation write it: by splitting and counting,
not by regex, and quantities in exact fractions. The CRD side runs on the real apiserver in
tests/integration/operator/test_admission_matches_job_api.py."""

from __future__ import annotations

import string
from fractions import Fraction

import pytest
from dreambooth_api import kubesyntax as k8s
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

NAME_CHARS = set(string.ascii_letters + string.digits + "-_.")
SUBDOMAIN_CHARS = set(string.ascii_lowercase + string.digits + "-")
ALNUM = set(string.ascii_letters + string.digits)


def oracle_subdomain(s: str) -> bool:
    """IsDNS1123Subdomain."""
    labels = s.split(".")
    return 0 < len(s) <= 253 and all(
        label and set(label) <= SUBDOMAIN_CHARS and label[0] in ALNUM and label[-1] in ALNUM for label in labels
    )


def oracle_qualified_name(s: str) -> bool:
    """IsQualifiedName."""
    parts = s.split("/")
    if len(parts) > 2 or (len(parts) == 2 and not oracle_subdomain(parts[0])):
        return False
    name = parts[-1]
    return 0 < len(name) <= 63 and set(name) <= NAME_CHARS and name[0] in ALNUM and name[-1] in ALNUM


def oracle_label_value(s: str) -> bool:
    return s == "" or oracle_qualified_name(s) and "/" not in s


def oracle_container_resource_name(s: str) -> bool:
    """validateContainerResourceName, less hugepages (not offered)."""
    if not oracle_qualified_name(s):
        return False
    if "/" not in s:
        return s in ("cpu", "memory", "ephemeral-storage")
    if "kubernetes.io/" in s:  # IsNativeResource
        return True
    return not s.startswith("requests.") and oracle_qualified_name("requests." + s)  # IsExtendedResourceName


SI = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": 1, "k": 10**3, "M": 10**6,
      "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
BINARY = {f"{p}i": 2 ** (10 * (i + 1)) for i, p in enumerate("KMGTPE")}


def oracle_quantity(sign: str, whole: str, fraction: str | None, suffix: str) -> Fraction:
    """ParseQuantity's value: exact, rounded up to 1n away from zero, binary ones capped at int64."""
    digits = whole + (fraction or "")
    value = Fraction(int(digits or "0"), 10 ** len(fraction or ""))
    if suffix in BINARY:
        value = min(value * BINARY[suffix], 2**63 - 1)
    else:
        value *= SI[suffix] if suffix in SI else Fraction(10) ** int(suffix[1:])
    nanos = value * 10**9
    if nanos.denominator != 1:
        value = Fraction(-(-nanos.numerator // nanos.denominator), 10**9)
    return -value if sign == "-" else value


# --- tables of the edges


@pytest.mark.parametrize(("key", "ok"), [
    ("gpu", True), ("nvidia.com/gpu.product", True), ("A.b-c_d9", True), ("x" * 63, True), ("x" * 64, False),
    ("a" * 253 + "/x", True), ("a" * 254 + "/x", False), (f"{'a' * 63}.{'b' * 63}/{'c' * 63}", True),
    ("", False), ("-a", False), ("a_", False), ("a b", False), ("a/b/c", False), ("/a", False),
    ("Example.com/a", False), ("example..com/a", False), ("example.com/", False), ("a\n", False),
])
def test_label_keys(key, ok):
    assert k8s.is_qualified_name(key) is ok
    assert oracle_qualified_name(key) is ok


@pytest.mark.parametrize(("name", "ok"), [
    ("cpu", True), ("memory", True), ("ephemeral-storage", True), ("nvidia.com/gpu", True),
    ("example.com/fpga", True), ("kubernetes.io/x", True), ("node.kubernetes.io/x", True),
    ("a" * 244 + "/x", True), ("a" * 245 + "/x", False), ("a" * 245 + ".kubernetes.io/x", False),
    ("cpu!", False), ("foo/bar/baz", False), ("pods", False), ("storage", False), ("gpu", False),
    ("hugepages-2Mi", False), ("requests.example.com/x", False), ("requests.cpu", False), ("CPU", False),
])
def test_container_resource_names(name, ok):
    assert k8s.is_resource_name(name) is ok
    assert oracle_container_resource_name(name) is ok


@pytest.mark.parametrize(("quantity", "value"), [
    ("1.5", "1.5"), ("500m", "0.5"), ("1Ki", "1024"), ("1e3", "1000"), ("1E3", "1000"), ("1E", "1e18"),
    ("5.", "5"), ("+.5", "0.5"), ("-0", "0"), ("0.0000000000", "0"), ("1.0000000001", "1.000000001"),
    ("-1.0000000001", "-1.000000001"), ("1e-999", "1e-9"), ("8Ei", str(2**63 - 1)), ("-8Ei", str(1 - 2**63)),
    ("1.5Gi", str(3 * 2**29)), (4, "4"), (-1, "-1"),
    # Refused by Kubernetes, or (exponents of four digits) by our stricter rule.
    ("1e2.5", None), ("1e1000", None), ("lots", None), ("1K", None), ("1ki", None), ("", None), (" 1", None),
])
def test_quantity_values(quantity, value):
    parsed = k8s.quantity_value(quantity)
    assert (None if parsed is None else Fraction(parsed)) == (None if value is None else Fraction(value))


@pytest.mark.parametrize(("value", "ok"), [("", True), ("a", True), ("x" * 63, True), ("x" * 64, False),
                                           ("a b", False), ("a/b", False), ("-a", False), ("a.b_c-D", True)])
def test_label_values(value, ok):
    assert oracle_label_value(value) is ok
    assert accepts_label_value(value) is ok


def accepts_label_value(value: str) -> bool:
    try:
        LABEL_VALUE.validate_python(value)
    except ValidationError:
        return False
    return True


LABEL_VALUE = TypeAdapter(k8s.LabelValue)


# --- properties: the models agree with the oracles on generated strings

PIECES = st.sampled_from(["a", "Z", "0", "-", "_", ".", "/", " ", "kubernetes.io/", "requests.", "cpu", "x" * 60,
                          "a" * 250, "example.com", "é", "\n"])
STRINGS = st.one_of(st.lists(PIECES, max_size=6).map("".join), st.text(max_size=70))


@settings(max_examples=500)
@given(STRINGS)
def test_label_keys_agree_with_the_oracle(s):
    assert k8s.is_qualified_name(s) == oracle_qualified_name(s)
    assert k8s.LABEL_KEY.check(s) == oracle_qualified_name(s)


@settings(max_examples=500)
@given(STRINGS)
def test_resource_names_agree_with_the_oracle(s):
    assert k8s.is_resource_name(s) == oracle_container_resource_name(s)


@settings(max_examples=500)
@given(STRINGS)
def test_label_values_agree_with_the_oracle(s):
    assert accepts_label_value(s) == oracle_label_value(s)


SUFFIXES = st.one_of(st.sampled_from([*SI, *BINARY]), st.builds(
    lambda e, sign, n: f"{e}{sign}{n}", st.sampled_from("eE"), st.sampled_from(["", "+", "-"]),
    st.integers(0, 999)))


@settings(max_examples=1000)
@given(st.sampled_from(["", "+", "-"]), st.text("0123456789", max_size=25),
       st.one_of(st.none(), st.text("0123456789", max_size=25)), SUFFIXES)
def test_quantities_agree_with_the_oracle(sign, whole, fraction, suffix):
    if not whole and not fraction:
        whole = "0"
    text = f"{sign}{whole}{'' if fraction is None else '.' + fraction}{suffix}"
    assert Fraction(k8s.quantity_value(text)) == oracle_quantity(sign, whole, fraction, suffix), text
