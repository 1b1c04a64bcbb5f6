"""free_port: the ports it hands out within a process are distinct even when the kernel repeats one."""

from __future__ import annotations

import socket
from typing import ClassVar

import pytest

from kairos.stack import loopback


class _Probe:
    """A socket whose bind(("127.0.0.1", 0)) gets the next port of a scripted kernel."""

    offers: ClassVar[list[int]] = []

    def __init__(self, *args: object) -> None:
        self.port = 0

    def __enter__(self) -> _Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def bind(self, addr: tuple[str, int]) -> None:
        self.port = _Probe.offers.pop(0)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    monkeypatch.setattr(loopback.socket, "socket", _Probe)
    monkeypatch.setattr(loopback, "_RECENT", type(loopback._RECENT)(maxlen=256))
    _Probe.offers = []
    return _Probe.offers


def test_a_port_the_kernel_offers_twice_in_a_row_is_handed_out_once(kernel: list[int]) -> None:
    kernel.extend([40001, 40001, 40001, 40002])
    assert [loopback.free_port(), loopback.free_port()] == [40001, 40002]


def test_a_kernel_offering_only_recent_ports_is_an_error_not_a_loop(kernel: list[int]) -> None:
    kernel.extend([40001] * 65)
    assert loopback.free_port() == 40001
    with pytest.raises(RuntimeError, match="64 tries"):
        loopback.free_port()


def test_the_ports_are_free_on_the_real_loopback() -> None:
    ports = [loopback.free_port() for _ in range(20)]
    assert len(set(ports)) == 20
    for p in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))
