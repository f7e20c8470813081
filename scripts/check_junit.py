"""Fail when the test run executed no integration or e2e test, or skipped any of them; print the
figures tests recorded with ``record_property``."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def main(path: str) -> int:
    root = ET.parse(path).getroot()
    counts = {"integration": 0, "e2e": 0}
    problems = []
    for case in root.iter("testcase"):
        classname = case.get("classname", "")
        for prop in case.iter("property"):
            sys.stdout.write(f"measured: {case.get('name')}: {prop.get('name')} = {prop.get('value')}\n")
        kind = next((k for k in counts if f"tests.{k}." in classname), None)
        if kind is None:
            continue
        counts[kind] += 1
        if case.find("skipped") is not None:
            problems.append(f"skipped: {classname}::{case.get('name')}")
    for kind, n in counts.items():
        if n == 0:
            problems.append(f"no {kind} test ran")
    for line in problems:
        sys.stderr.write(f"check_junit: {line}\n")
    sys.stdout.write(f"check_junit: {counts['integration']} integration and {counts['e2e']} e2e tests ran\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
