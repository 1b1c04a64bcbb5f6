"""The MQL5 imports (mql5/Include/KairosBridge.mqh) and the C ABI header cannot drift apart.

Every function of kairos_bridge.h must be imported with the same name and parameter types (MQL5
types mapped to their x64 C ABI equivalents), every struct must have the same fields in the same
order with the same types, and every status code the same value. The enum numbers the EA uses must
match bridge.proto.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kairos.bridge.v1 import bridge_pb2
from kairos.marketdata.v1 import marketdata_pb2

REPO = Path(__file__).resolve().parents[3]
HEADER = (REPO / "cpp/mt5_bridge/include/kairos_bridge.h").read_text()
MQH = (REPO / "mql5/Include/KairosBridge.mqh").read_text()

MQL_SCALARS = {
    "int": "int32_t",
    "uint": "uint32_t",
    "long": "int64_t",
    "ulong": "uint64_t",
    "double": "double",
    "ushort": "kb_char16",
    "string": "const kb_char16*",
}


def strip_c_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    return re.sub(r"//[^\n]*", "", text)


def c_param_type(param: str) -> str:
    param = " ".join(param.split())
    m = re.fullmatch(r"(.+?)\s*(\*?)\s*(\w+)", param)
    assert m, param
    base, star = m.group(1).replace(" *", "*"), m.group(2)
    return (base + star).replace(" *", "*")


def mql_param_type(param: str) -> str:
    const = param.startswith("const ")
    ref = "&" in param
    array = param.rstrip().endswith("[]")
    words = re.findall(r"\w+", param)
    base: str = words[1] if const else words[0]
    if base in ("MqlTick", "MqlRates"):
        base = "Kb" + base
    c = MQL_SCALARS.get(base, base)
    if ref or array:
        return f"{'const ' if const else ''}{c}*"
    return c


def header_functions() -> dict[str, list[str]]:
    text = strip_c_comments(HEADER)
    out = {}
    for name, params in re.findall(r"KB_API\s+int32_t\s+(kb_\w+)\((.*?)\)\s*KB_NOEXCEPT;", text, re.DOTALL):
        ps = [p.strip() for p in params.split(",") if p.strip() and p.strip() != "void"]
        out[name] = [c_param_type(p) for p in ps]
    return out


def mql_functions() -> dict[str, list[str]]:
    block = re.search(r'#import "kairos_bridge\.dll"(.*?)#import', MQH, re.DOTALL)
    assert block, "no #import block for kairos_bridge.dll"
    out = {}
    for ret, name, params in re.findall(r"^(\w+)\s+(kb_\w+)\((.*?)\);", block.group(1), re.MULTILINE):
        assert ret == "int", f"{name} returns {ret}, the ABI returns int32_t"
        ps = [p.strip() for p in params.split(",") if p.strip()]
        out[name] = [mql_param_type(p) for p in ps]
    return out


def header_structs() -> dict[str, list[tuple[str, str]]]:
    text = strip_c_comments(HEADER)
    out = {}
    for name, body, _ in re.findall(r"typedef struct (\w+) \{(.*?)\} (\w+);", text, re.DOTALL):
        fields = re.findall(r"([\w ]+?)\s+(\w+(?:\[\d+\])?);", body)
        out[name] = [(" ".join(t.split()), f) for t, f in fields]
    return out


def mql_structs() -> dict[str, list[tuple[str, str]]]:
    out = {}
    for name, body in re.findall(r"struct (\w+)\s*\{(.*?)\};", strip_c_comments(MQH), re.DOTALL):
        fields = re.findall(r"(\w+)\s+(\w+(?:\[\d+\])?);", body)
        out[name] = [(MQL_SCALARS[t], f) for t, f in fields]
    return out


def defines(text: str) -> dict[str, int]:
    return {
        k: int(v.strip("()"))
        for k, v in re.findall(r"#define (KB_\w+) (\(?-?\d+\)?)[ \t]*$", strip_c_comments(text), re.MULTILINE)
    }


def test_every_header_function_is_imported_with_the_same_parameter_types() -> None:
    c, mql = header_functions(), mql_functions()
    assert len(c) >= 20
    assert sorted(c) == sorted(mql), set(c) ^ set(mql)
    for name, params in c.items():
        assert mql[name] == params, f"{name}: header {params} vs mqh {mql[name]}"


def test_every_struct_has_the_same_fields_in_the_same_order() -> None:
    c, mql = header_structs(), mql_structs()
    # MqlTick and MqlRates are built into MQL5; the header's KbMqlTick and KbMqlRates mirror them.
    assert sorted(set(c) - {"KbMqlTick", "KbMqlRates"}) == sorted(mql)
    for name, fields in mql.items():
        assert fields == c[name], f"{name}: mqh {fields} vs header {c[name]}"


def test_status_codes_and_limits_have_the_same_values() -> None:
    c, mql = defines(HEADER), defines(MQH)
    shared = {k: v for k, v in c.items() if k in mql}
    assert len(shared) >= 25
    assert all(mql[k] == v for k, v in shared.items()), {
        k: (v, mql[k]) for k, v in shared.items() if mql[k] != v
    }
    assert set(c) - set(mql) <= {"KB_MAX_FRAME_BYTES"}, set(c) - set(mql)


@pytest.mark.parametrize(
    ("define", "value"),
    [
        ("KB_COMMAND_PLACE", bridge_pb2.COMMAND_KIND_PLACE),
        ("KB_COMMAND_CANCEL", bridge_pb2.COMMAND_KIND_CANCEL),
        ("KB_COMMAND_MODIFY", bridge_pb2.COMMAND_KIND_MODIFY),
        ("KB_COMMAND_CLOSE_POSITION", bridge_pb2.COMMAND_KIND_CLOSE_POSITION),
        ("KB_COMMAND_QUERY_ORDER", bridge_pb2.COMMAND_KIND_QUERY_ORDER),
        ("KB_COMMAND_SNAPSHOT", bridge_pb2.COMMAND_KIND_SNAPSHOT),
        ("KB_COMMAND_MODIFY_POSITION", bridge_pb2.COMMAND_KIND_MODIFY_POSITION),
        ("KB_SIDE_BUY", bridge_pb2.SIDE_BUY),
        ("KB_SIDE_SELL", bridge_pb2.SIDE_SELL),
        ("KB_ORDER_MARKET", bridge_pb2.ORDER_TYPE_MARKET),
        ("KB_ORDER_LIMIT", bridge_pb2.ORDER_TYPE_LIMIT),
        ("KB_ORDER_STOP", bridge_pb2.ORDER_TYPE_STOP),
        ("KB_ORDER_STOP_LIMIT", bridge_pb2.ORDER_TYPE_STOP_LIMIT),
        ("KB_STATUS_SENT", bridge_pb2.BRIDGE_STATUS_SENT),
        ("KB_STATUS_INVALID", bridge_pb2.BRIDGE_STATUS_INVALID),
        ("KB_STATUS_EXPIRED", bridge_pb2.BRIDGE_STATUS_EXPIRED),
        ("KB_STATUS_TRADING_DISABLED", bridge_pb2.BRIDGE_STATUS_TRADING_DISABLED),
        ("KB_STATUS_QUERY_RESULT", bridge_pb2.BRIDGE_STATUS_QUERY_RESULT),
        ("KB_HISTORY_TICKS", marketdata_pb2.HISTORY_KIND_TICKS),
        ("KB_HISTORY_BARS", marketdata_pb2.HISTORY_KIND_BARS),
        ("KB_HISTORY_DONE", marketdata_pb2.HISTORY_STATUS_DONE),
        ("KB_HISTORY_EMPTY", marketdata_pb2.HISTORY_STATUS_EMPTY),
        ("KB_HISTORY_ERROR", marketdata_pb2.HISTORY_STATUS_ERROR),
        ("KB_HISTORY_PARTIAL", marketdata_pb2.HISTORY_STATUS_PARTIAL),
    ],
)
def test_enum_numbers_the_ea_uses_match_bridge_proto(define: str, value: int) -> None:
    assert defines(MQH)[define] == value


def test_the_parser_sees_a_drifted_import() -> None:
    """Guards the test itself: a changed parameter type must be noticed."""
    drifted = MQH.replace(
        "int kb_push_ticks(long handle, string symbol, int digits,",
        "int kb_push_ticks(long handle, string symbol, long digits,",
    )
    assert drifted != MQH
    block = re.search(r'#import "kairos_bridge\.dll"(.*?)#import', drifted, re.DOTALL)
    assert block
    line = next(ln for ln in block.group(1).splitlines() if "kb_push_ticks" in ln)
    params = re.search(r"\((.*)\)", line)
    assert params
    types = [mql_param_type(p.strip()) for p in params.group(1).split(",")]
    assert types != header_functions()["kb_push_ticks"]
