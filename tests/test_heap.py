"""corredit.heap: the steady heap keeps freed blocks instead of faulting them back in."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from corredit.heap import ENV_VAR, _glibc, steady_heap

glibc_only = pytest.mark.skipif(_glibc() is None, reason="needs glibc")

# Ten 3 MiB blocks made (every page written) and freed, again and again: prints the page
# faults of the last 10 rounds (10 x 7,680 pages when every round faults them back in).
_ROUNDS = """
import resource, sys
if sys.argv[1] == "steady":
    from corredit.heap import steady_heap
    assert steady_heap()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def round_():
    blocks = [bytearray(3 << 20) for _ in range(10)]
    del blocks
for _ in range(5):
    round_()
f0 = faults()
for _ in range(10):
    round_()
print(faults() - f0)
"""
_PAGES = 10 * 10 * (3 << 20) // 4096


def _faults(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    out = subprocess.run([sys.executable, "-c", _ROUNDS, mode], env=env, check=True,
                         capture_output=True, text=True)
    return int(out.stdout.strip())


@glibc_only
def test_steady_heap_stops_refaulting_freed_blocks():
    default = _faults("default")
    if default < _PAGES // 2:
        pytest.skip(f"this C library keeps such blocks already ({default} faults)")
    assert _faults("steady") < _PAGES // 50


@glibc_only
def test_steady_heap_applies_on_glibc_and_can_be_turned_off(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert steady_heap() is True
    assert steady_heap() is True                     # again: harmless
    monkeypatch.setenv(ENV_VAR, "0")
    assert steady_heap() is False


@pytest.mark.parametrize("kwargs", [{"mmap_threshold": 0}, {"mmap_threshold": -1},
                                    {"trim_threshold": 2 ** 31}, {"trim_threshold": 1.5},
                                    {"mmap_threshold": True}])
def test_steady_heap_rejects_bad_thresholds(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"steady_heap: {name} must be a whole number of bytes"):
        steady_heap(**kwargs)


def test_the_corredit_command_makes_the_heap_steady_first(monkeypatch, capsys):
    import corredit.heap
    from corredit.cli import main

    calls = []
    monkeypatch.setattr(corredit.heap, "steady_heap", lambda *a, **k: calls.append(a) or True)
    assert main(["models", "list"]) == 0
    assert calls == [()]
    assert "smollm2-135m" in capsys.readouterr().out
