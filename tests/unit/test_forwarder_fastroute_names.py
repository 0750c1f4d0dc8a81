"""Every Python name the native fast path looks up exists, on the real objects and in
the Protocols of ``forwarder/_fastroute.pyi``.

``forwarder/_fastroute.c`` interns each attribute, method, dict key and keyword name it
uses from one table, ``NAMES`` (``{&variable, owner, name}``; the owner is the Protocol of
``_fastroute.pyi`` that declares it, or ``key``/``keyword``). A name renamed on the Python
side would otherwise fail only at run time, on the first native frame: here it fails by
name, with the file to update.
"""

from __future__ import annotations

import ast
import re
import types
from pathlib import Path
from typing import Any

import pytest

from forwarder.avro_writer import EnvelopeWriter
from forwarder.metrics import ForwarderMetrics
from forwarder.producer import EnvelopeProducer
from forwarder.router import EnvelopeRouter, TraceIds
from forwarder.sequence import SequenceNumbers
from forwarder.settings import ForwarderSettings

ROOT = Path(__file__).resolve().parents[2]
C_FILE = ROOT / "forwarder" / "_fastroute.c"
PYI_FILE = ROOT / "forwarder" / "_fastroute.pyi"
T0 = 1_709_303_400_123_456_789

# the C API calls that look a name up: their second argument is the name object
_LOOKUPS = r"PyObject_GetAttr|PyObject_SetAttr|PyObject_CallMethodObjArgs|get_i64|attr_add"
# the C API calls that look up a name given as a C string (none may be used: no table)
_BY_STRING = re.compile(
    r"\b(PyObject_(?:GetAttrString|SetAttrString|HasAttrString|DelAttrString|CallMethod"
    r"|GetOptionalAttrString)|PyUnicode_FromString|_PyObject_GetAttrId|_Py_IDENTIFIER"
    r"|PyDict_GetItemString)\b"
)


def _code_only(c: str) -> str:
    """The C source without comments, string and character literals."""
    return re.sub(
        r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'',
        lambda m: "" if m.group(0)[0] == "/" else '""',
        c,
        flags=re.S,
    )


def _names_table(c: str) -> tuple[list[tuple[str, str, str]], str]:
    """The rows of NAMES (variable, owner, name) and the source with the table cut out."""
    m = re.search(r"\}\s*NAMES\[\]\s*=\s*\{(.*?)\n\};", c, re.S)
    assert m, f"{C_FILE.name}: no NAMES[] table"
    rows = re.findall(r'\{\s*&(\w+)\s*,\s*"(\w+)"\s*,\s*"(\w+)"\s*\}', m.group(1))
    return rows, c[: m.start(1)] + c[m.end(1) :]


C_TEXT = C_FILE.read_text()
NAMES, C_WITHOUT_TABLE = _names_table(C_TEXT)
CODE = _code_only(C_WITHOUT_TABLE)
VARS = {var for var, _, _ in NAMES}


def _protocols() -> tuple[dict[str, set[str]], set[str]]:
    """Protocol class name -> the attributes and methods it declares (``_fastroute.pyi``),
    and the keyword-only parameters of ``Producer.raw_produce``."""
    out, keywords = {}, set()
    for node in ast.parse(PYI_FILE.read_text()).body:
        if isinstance(node, ast.ClassDef) and any(
            isinstance(b, ast.Name) and b.id == "Protocol" for b in node.bases
        ):
            members = set()
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    members.add(item.name)
                    if (node.name, item.name) == ("Producer", "raw_produce"):
                        keywords = {a.arg for a in item.args.kwonlyargs}
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members.add(item.target.id)
            out[node.name] = members
    return out, keywords


PROTOCOLS, PRODUCE_KEYWORDS = _protocols()


def test_the_names_table_is_complete_and_nothing_else_is_interned():
    assert len(NAMES) >= 30
    assert len(VARS) == len(NAMES), "a variable twice in NAMES"
    assert len({(o, n) for _, o, n in NAMES}) == len(NAMES), "a name twice in NAMES"
    # one interning loop over the table; no name given to the C API as a C string
    assert CODE.count("PyUnicode_InternFromString") == 1
    assert re.search(r"PyUnicode_InternFromString\(NAMES\[\w+\]\.name\)", CODE)
    assert not _BY_STRING.findall(CODE), "names looked up outside NAMES (use the table)"
    # every name object a lookup is given comes from the table (`name`: the helpers' own
    # parameter, get_i64 and attr_add)
    looked_up = set(re.findall(rf"\b(?:{_LOOKUPS})\(\s*[\w>.\-]+\s*,\s*(\w+)", CODE))
    assert looked_up, "no lookups found: has the C API usage changed?"
    assert looked_up - {"name"} <= VARS, f"not in NAMES: {sorted(looked_up - {'name'} - VARS)}"
    # the file's name objects (static PyObject *n_..., *k_...) are the table's, each used
    statics = {
        v
        for decl in re.findall(r"static PyObject\s*(\*[^;]*);", CODE)
        for v in re.findall(r"\*\s*(\w+)", decl)
    }
    names = {v for v in statics if re.match(r"[nk]_", v)}
    assert names == VARS, f"interned outside NAMES: {sorted(names - VARS)}"
    unused = {v for v in VARS if len(re.findall(rf"\b{v}\b", CODE)) < 2}  # declared + used
    assert not unused, f"NAMES rows nothing uses: {sorted(unused)}"


def _real_objects() -> dict[str, Any]:
    """What forwarder.router hands the C code: a router as the app builds it (a real
    EnvelopeProducer, pointed nowhere), and the frame state of ``_begin``."""
    settings = ForwarderSettings(kafka_bootstrap="127.0.0.1:1", message_timeout_ms=1000)
    metrics = ForwarderMetrics()
    router = EnvelopeRouter(
        EnvelopeWriter(42, "iex"),
        SequenceNumbers(1_000_000),
        EnvelopeProducer(settings, metrics, {"log_level": 0}),
        metrics,
        1000,
        300.0,
        on_reject=lambda reason, detail, m: None,
        on_control=lambda m: None,
        trace_ids=TraceIds(),
    )
    return {
        "Router": router,
        "Producer": router.producer,
        "TraceIds": router.trace_ids,
        "Seqs": router.seqs,
        "Dedup": router.dedup["t"],
        "DedupOrder": router.dedup["t"].order,
        "Frame": router._begin(T0, 0.0),
    }


def _disagreements(objects: dict[str, Any]) -> list[str]:
    """Each NAMES row the Python objects or the Protocols do not have, with where to look."""
    out = []
    router = objects["Router"]
    for _, owner, name in NAMES:
        if owner == "key":  # a message type: the router's per-type tables hold it
            for table in ("headers", "topics", "_slots", "dedup"):
                if name not in getattr(router, table, {}):
                    out.append(f"router.{table} has no key {name!r} (forwarder/router.py)")
        elif owner == "keyword":  # of raw_produce(topic, value, key, timestamp=ms)
            if name not in PRODUCE_KEYWORDS:
                out.append(f"Producer.raw_produce: no keyword {name!r} (_fastroute.pyi)")
        elif owner not in objects or owner not in PROTOCOLS:
            out.append(f"owner {owner!r} of {name!r}: no such Protocol in _fastroute.pyi")
        else:
            if not hasattr(objects[owner], name):
                out.append(
                    f"{owner}.{name}: forwarder/_fastroute.c looks it up, the Python object "
                    f"({type(objects[owner]).__qualname__}) has no such attribute"
                )
            if name not in PROTOCOLS[owner]:
                out.append(f"{owner}.{name}: not declared on Protocol {owner} (_fastroute.pyi)")
    for owner, members in PROTOCOLS.items():  # the Protocols declare nothing the C skips
        stale = members - {n for _, o, n in NAMES if o == owner} - {"__len__"}
        out += [f"{owner}.{n}: in _fastroute.pyi, not in NAMES" for n in sorted(stale)]
    return out


@pytest.fixture(scope="module")
def objects() -> Any:
    objs = _real_objects()
    yield objs
    objs["Producer"].kafka.purge()


def test_every_name_the_c_code_looks_up_exists_in_python_and_in_the_protocols(objects):
    assert set(PROTOCOLS) == {o for _, o, _ in NAMES} - {"key", "keyword"}
    assert _disagreements(objects) == []


def test_the_real_producer_takes_the_timestamp_keyword(objects):
    # confluent-kafka's produce is built in (no signature to inspect): call it as the C
    # code does, then drop the record
    kw = {name: 1_000 for _, owner, name in NAMES if owner == "keyword"}
    objects["Producer"].raw_produce("torghut.names-test", b"v", b"k", **kw)
    objects["Producer"].kafka.purge()


@pytest.mark.parametrize(
    "owner,renamed",
    [("TraceIds", "_n"), ("Frame", "tq_max"), ("Router", "_route_spans"), ("Producer", "native")],
)
def test_a_name_renamed_on_the_python_side_is_named(objects, owner, renamed):
    real = objects[owner]
    attrs = {n: getattr(real, n) for _, o, n in NAMES if o == owner and n != renamed}
    changed = {**objects, owner: types.SimpleNamespace(**attrs)}
    assert _disagreements(changed) == [
        f"{owner}.{renamed}: forwarder/_fastroute.c looks it up, the Python object "
        "(SimpleNamespace) has no such attribute"
    ]
