"""burstsnn.heap: after keep_freed_memory, what one simulation frees is reused by the next
without page faults; with glibc's own thresholds it is handed back to the OS and faulted in
again.  Each case runs in a fresh process: malloc's settings are process-wide."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from burstsnn.heap import keep_freed_memory

# Eight forwards of VGG16 w0.25 (batch 32, T = 4; eager steps: no compilation); the minor page
# faults of each.
FORWARDS = """
import json, resource, sys, torch
from burstsnn.heap import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "kept" else None
from burstsnn.ann.models import build_model
from burstsnn.conversion import convert
torch.manual_seed(0)
x = torch.randn(32, 1, 32, 32)
snn = convert(build_model("vgg16", 10, 1, 0.25, 32).eval(), [(x, None)], p=99.9, gamma=5)
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    snn(x, 4)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""


def run_forwards(mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES" and not k.startswith("MALLOC_")}
    env["BURSTSNN_COMPILE"] = "0"
    out = subprocess.run([sys.executable, "-c", FORWARDS, mode], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_what_a_simulation_frees_is_reused_without_page_faults():
    default, kept = run_forwards("default"), run_forwards("kept")
    # glibc's own thresholds: thousands of 4 KiB pages faulted in again by every forward
    assert sum(default["faults"][2:]) > 2000, default
    assert kept["applied"] is True
    assert sum(kept["faults"][2:]) * 4 < sum(default["faults"][2:]), (kept, default)


def test_malloc_settings_of_the_environment_are_left_alone(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1000000")
    assert keep_freed_memory() is False
