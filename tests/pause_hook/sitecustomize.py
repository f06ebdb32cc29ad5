"""Test-only: pause a Secateur process at an exact point, so a test can kill it there.

Put this folder on the child's PYTHONPATH and set ``SECATEUR_TEST_PAUSE`` to JSON, e.g.
``{"event": "os.rename", "match": "/some/folder/", "barrier": "/tmp/b", "count": 2}``. When
the process raises the audit event ``event`` (``os.rename``: ``os.replace`` is about to
publish a complete temporary; ``open``: a file or folder is opened) on a path that starts
with ``match`` (or is ``match``, with ``"exact": true``), it writes ``paused <pid> <path>``
to stderr and waits until ``count`` processes have arrived at the ``barrier`` (a folder of
marker files); without ``count`` it waits forever (to be killed). Nothing here is part of
Secateur: it only waits, through Python's own audit hooks (PEP 578), where the product runs
unchanged.
"""

from __future__ import annotations

import json
import os
import sys
import time

_SPEC = os.environ.get("SECATEUR_TEST_PAUSE")


def _hook(event: str, args: tuple) -> None:
    spec = json.loads(_SPEC or "{}")
    if event != spec.get("event") or not args:
        return
    path = str(args[0])
    if path != spec["match"] if spec.get("exact") else not path.startswith(spec["match"]):
        return
    sys.stderr.write(f"\npaused {os.getpid()} {path}\n")
    sys.stderr.flush()
    barrier = spec.get("barrier")
    count = spec.get("count")
    if barrier and count:
        os.makedirs(barrier, exist_ok=True)
        with open(os.path.join(barrier, str(os.getpid())), "w"):
            pass
        while len(os.listdir(barrier)) < count:
            time.sleep(0.005)
        return
    while True:
        time.sleep(3600)


if _SPEC:
    sys.addaudithook(_hook)
