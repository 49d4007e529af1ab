"""requirements/*.txt, compiled from requirements/*.in by `make lock`: the whole tree pinned, the three files agree."""

from __future__ import annotations

import re

import pytest

from tests.support.servers import BASE_DIR

REQUIREMENTS = BASE_DIR / "requirements"
PIN_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(path) -> list[str]:
    """The lines that name a distribution: no comments, no options (-r, -c)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def pins(path) -> dict[str, str]:
    found = {}
    for line in requirement_lines(path):
        match = PIN_RE.fullmatch(line)
        assert match, f"{path.name}: {line!r} is not an exact pin"
        found[canonical(match[1])] = match[2]
    return found


@pytest.mark.parametrize("name", ["base", "dev", "s3"])
def test_each_compiled_file_pins_every_distribution_and_every_direct_pin_of_its_in_file(name: str) -> None:
    compiled = pins(REQUIREMENTS / f"{name}.txt")
    for line in requirement_lines(REQUIREMENTS / f"{name}.in"):
        match = PIN_RE.fullmatch(line)
        assert match, f"{name}.in: {line!r} is not an exact pin"
        assert compiled.get(canonical(match[1])) == match[2], f"{name}.txt is older than {name}.in: run `make lock`"


@pytest.mark.parametrize("name", ["dev", "s3"])
def test_dev_and_s3_hold_all_of_base_at_the_same_versions(name: str) -> None:
    base, layered = pins(REQUIREMENTS / "base.txt"), pins(REQUIREMENTS / f"{name}.txt")
    assert {dist: layered.get(dist) for dist in base} == base
