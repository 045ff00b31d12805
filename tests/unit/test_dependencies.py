"""Dependency hygiene: requirements.lock stays in step with requirements.txt, and no declared floor
drops below the first release that fixes the advisories we know of.

The lock is what CI installs (`pip install --require-hashes -r requirements.lock`, see the
Makefile); requirements.txt is what Azure's remote build installs. `make lock` regenerates the lock.
One lock serves every Python that requires-python admits: a pin that only some of them take
carries an environment marker (azure-functions is 1.x before 3.13 and 2.x from it), so the lock is
read once per supported Python.
"""

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements.lock"
REQUIREMENTS = REPO / "requirements.txt"
PYPROJECT = REPO / "pyproject.toml"

# package -> (where its floor is declared, first release fixing every advisory listed, advisories)
# "runtime": [project].dependencies and requirements.txt; "dev": the dev extras; "build":
# [build-system].requires; "lock": a transitive runtime dependency only the lock pins (its pin is
# checked; should a resolution ever pick an older release, add a floor to requirements.txt).
ADVISORY_FLOORS: dict[str, tuple[str, str, str]] = {
    "aiohttp": (
        "runtime",
        "3.14.4",
        "GHSA-h4cc-hm5h-fmm9 (PYSEC-2026-4399), PYSEC-2026-4369, PYSEC-2026-4371 fixed 3.14.4; "
        "PYSEC-2026-2108/2110/2111/2112 3.14.1; PYSEC-2026-2106 3.14.0; "
        "PYSEC-2026-2096/2101/2102/2103 3.13.4; CVE-2025-69223..69230 3.13.3; "
        "CVE-2025-53643 3.12.14; CVE-2024-52304 3.10.11",
    ),
    "azure-identity": ("runtime", "1.16.1", "CVE-2024-35255 (GHSA-m5vv-6r4h-3vj9)"),
    "cryptography": (
        "runtime",
        "50.0.0",
        "CVE-2026-69247 (GHSA-g6cj-pr64-35w5) 50.0.0; GHSA-537c-gmf6-5ccf (bundled OpenSSL) "
        "48.0.1; CVE-2026-39892 46.0.7; CVE-2026-26007 46.0.5; GHSA-79v4-65xg-pq4g 44.0.1; "
        "GHSA-h4gh-qq45-vh27 43.0.1; CVE-2024-26130 (GHSA-6vqw-3v5j-54x4) 42.0.4",
    ),
    "pydantic": ("runtime", "2.4.0", "CVE-2024-3772 (GHSA-mr82-8j83-vxmv)"),
    "azure-core": ("runtime", "1.38.0", "CVE-2026-21226"),
    "requests": (
        "runtime",
        "2.33.0",
        "CVE-2026-25645 2.33.0; CVE-2024-47081 (GHSA-9hjg-9r4m-mvj7) 2.32.4; "
        "CVE-2024-35195 (GHSA-9wx4-h78v-vm56) 2.32.0; CVE-2023-32681 2.31.0",
    ),
    "urllib3": (
        "runtime",
        "2.8.0",
        "GHSA-8988-9cw3-xx77, GHSA-vxq7-64xx-v4gw, GHSA-gh4c-6fx4-qh6g 2.8.0; "
        "GHSA-mf9v-mfxr-j63j, GHSA-qccp-gfcp-xxvc 2.7.0; CVE-2026-21441 (GHSA-38jv-5279-wg99) "
        "2.6.3; GHSA-2xpw-w6gg-jr37, GHSA-gm62-xv2j-4w53 2.6.0; CVE-2025-50181 2.5.0",
    ),
    "idna": ("runtime", "3.14", "CVE-2026-45409 3.14; CVE-2024-3651 (GHSA-jjg7-2v4v-x38h) 3.7"),
    "certifi": (
        "runtime",
        "2024.7.4",
        "CVE-2024-39689 (GHSA-248v-346w-9cwc); CVE-2023-37920 (GHSA-xqr8-7jwr-rhp7) 2023.7.22",
    ),
    "h11": ("dev", "0.16.0", "CVE-2025-43859 (GHSA-vqfr-h8mv-ghfj)"),
    "httpx": ("dev", "0.23.0", "CVE-2021-41945 (GHSA-h8pj-cxx2-jfg2)"),
    "pytest": ("dev", "9.0.3", "CVE-2025-71176 (GHSA-6w46-j5rx-g56g)"),
    "pyyaml": ("dev", "5.4", "CVE-2020-14343"),
    "starlette": (
        "dev",
        "1.3.1",
        "CVE-2026-54283 (GHSA-82w8-qh3p-5jfq) 1.3.1; GHSA-86qp-5c8j-p5mr 1.0.1; "
        "GHSA-7f5h-v6xp-fcq8 0.49.1; GHSA-f96h-pmfr-66vw 0.40.0",
    ),
    "uvicorn": ("dev", "0.11.7", "CVE-2020-7694, CVE-2020-7695"),
    "setuptools": (
        "build",
        "84.1.0",
        "GHSA-grgh-hr87-3jpw, GHSA-xmj3-9gf7-h52w 84.1.0; GHSA-h35f-9h28-mq5c 83.0.0; "
        "CVE-2025-47273 78.1.1; CVE-2024-6345 70.0.0",
    ),
    "werkzeug": (
        "lock",
        "3.1.9",
        "GHSA-g6x2-hccm-hh4m 3.1.9; GHSA-29vq-49wr-vm6x 3.1.6; GHSA-87hc-h4r5-73f7 3.1.5; "
        "GHSA-hgf8-39gv-g3f2 3.1.4; GHSA-q34m-jh98-gwm2 3.0.6; GHSA-2g68-c3qc-8985 3.0.3",
    ),
    "pyjwt": (
        "dev",
        "2.14.0",
        "GHSA-r6x4-923q-g947, GHSA-9v7f-9g4p-ffgj and others 2.14.0; GHSA-xgmm-8j9v-c9wx, "
        "GHSA-jq35-7prp-9v3f and others 2.13.0; GHSA-752w-5fwx-jx9f 2.12.0",
    ),
    "python-dotenv": ("lock", "1.2.2", "CVE-2026-28684 (GHSA-mf9w-mj56-hr94)"),
    "uamqp": ("lock", "1.6.7", "CVE-2024-21646"),
}

LOCAL_REFERENCE = re.compile(r"file:|(?:^|\s)(?:/|~|\.\.?/)\S")
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})\b")


@dataclass(frozen=True)
class Pin:
    """One pinned line of the lock: its version, hashes and the environments it applies to."""

    version: Version
    hashes: tuple[str, ...]
    marker: Marker | None = None


def supported_pythons(requires_python: str) -> list[str]:
    """The Python 3 minor versions a requires-python range admits (3.11, 3.12, 3.13 today)."""
    admitted = SpecifierSet(requires_python)
    return [f"3.{minor}" for minor in range(8, 30) if f"3.{minor}" in admitted]


def environment(python: str) -> dict[str, str]:
    """Marker environment of CPython `python` on Linux x86_64, where Azure and CI run the app."""
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "sys_platform": "linux",
        "os_name": "posix",
    }


def requirement_lines(text: str) -> list[Requirement]:
    """The requirements of a requirements.txt (or a pyproject list rendered one per line)."""
    found = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            found.append(Requirement(line))
    return found


def lock_entries(text: str) -> tuple[dict[str, list[Pin]], list[str]]:
    """Pins of a hashed lock (name -> its pinned lines) and the problems found reading it."""
    pins: dict[str, list[Pin]] = {}
    problems = []
    logical = re.sub(r"\\\n", " ", text)
    for raw in logical.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            problems.append(f"option line in the lock: {line[:80]}")
            continue
        requirement_text = line.split(" --", 1)[0].strip()
        try:
            requirement = Requirement(requirement_text)
        except InvalidRequirement:
            problems.append(f"unreadable lock line: {line[:80]}")
            continue
        name = canonicalize_name(requirement.name)
        pinned = [s for s in requirement.specifier if s.operator == "=="]
        if requirement.url or len(pinned) != 1 or len(requirement.specifier) != 1:
            problems.append(f"{name} is not pinned with == in the lock: {requirement_text}")
            continue
        hashes = HASH.findall(line)
        if not hashes:
            problems.append(f"{name} has no --hash=sha256: in the lock")
        pins.setdefault(name, []).append(
            Pin(Version(pinned[0].version), tuple(hashes), requirement.marker)
        )
    for number, raw in enumerate(text.splitlines(), start=1):
        if LOCAL_REFERENCE.search(raw):
            problems.append(f"line {number} names a local path or file URL: {raw.strip()[:80]}")
    return pins, problems


def pins_for(pins: Mapping[str, list[Pin]], python: str) -> tuple[dict[str, Pin], list[str]]:
    """The pins pip installs on `python` (markers evaluated) and any name pinned twice there."""
    applied: dict[str, Pin] = {}
    problems = []
    for name, entries in pins.items():
        applying = [
            pin for pin in entries if pin.marker is None or pin.marker.evaluate(environment(python))
        ]
        if len(applying) > 1:
            versions = ", ".join(str(pin.version) for pin in applying)
            problems.append(f"{name} is pinned more than once for Python {python}: {versions}")
        if applying:
            applied[name] = applying[0]
    return applied, problems


def lock_problems(requirements_text: str, lock_text: str, pythons: Sequence[str]) -> list[str]:
    """What is wrong with a lock as the lock of these requirements on each of these Pythons
    (empty when all is well)."""
    pins, problems = lock_entries(lock_text)
    for python in pythons:
        applied, twice = pins_for(pins, python)
        problems += twice
        for requirement in requirement_lines(requirements_text):
            if requirement.marker is not None and not requirement.marker.evaluate(
                environment(python)
            ):
                continue
            name = canonicalize_name(requirement.name)
            if name not in applied:
                problems.append(
                    f"{name} is in requirements.txt but not pinned in the lock for Python {python}"
                )
                continue
            version = applied[name].version
            if not requirement.specifier.contains(version, prereleases=True):
                problems.append(
                    f"{name}=={version} in the lock is outside {requirement.specifier} "
                    f"(Python {python})"
                )
    return problems


def lower_bound(specifier: SpecifierSet) -> Version | None:
    """The least version a specifier can admit, as far as its lower bounds tell (None: no bound)."""
    bounds = [
        Version(s.version.removesuffix(".*"))
        for s in specifier
        if s.operator in (">=", ">", "==", "~=", "===")
    ]
    return max(bounds) if bounds else None


def floor_problems(
    declared: Mapping[str, Iterable[Requirement]],
    pins: Mapping[str, Sequence[Pin]],
    table: Mapping[str, tuple[str, str, str]],
) -> list[str]:
    """Floors below the table's first safe releases, floors the table wants but no declaration has,
    and locked versions below the first safe release."""
    problems = []
    for where, requirements in declared.items():
        names: set[str] = set()
        for requirement in requirements:
            declared_name = canonicalize_name(requirement.name)
            names.add(declared_name)
            if declared_name not in table:
                continue
            safe = Version(table[declared_name][1])
            floor = lower_bound(requirement.specifier)
            if floor is None or floor < safe:
                problems.append(
                    f"{where}: {requirement} admits releases before {safe} "
                    f"({table[declared_name][2]})"
                )
        for name, (role, first_safe, _) in table.items():
            if where.startswith(role) and name not in names:
                problems.append(f"{where}: no floor for {name} (first safe {first_safe})")
    for name, (role, first_safe, advisories) in table.items():
        for pin in pins.get(name, ()):
            if pin.version < Version(first_safe):
                problems.append(
                    f"lock pins {name}=={pin.version}, before {first_safe} ({advisories})"
                )
        if role == "lock" and name not in pins:
            problems.append(f"{name} (transitive, first safe {first_safe}) is not in the lock")
    return problems


def declared_requirements() -> dict[str, list[Requirement]]:
    pyproject = tomllib.loads(PYPROJECT.read_text())
    return {
        "runtime ([project].dependencies)": [
            Requirement(d) for d in pyproject["project"]["dependencies"]
        ],
        "runtime (requirements.txt)": requirement_lines(REQUIREMENTS.read_text()),
        "dev extras": [
            Requirement(d) for d in pyproject["project"]["optional-dependencies"]["dev"]
        ],
        "build ([build-system].requires)": [
            Requirement(d) for d in pyproject["build-system"]["requires"]
        ],
    }


def pythons() -> list[str]:
    return supported_pythons(tomllib.loads(PYPROJECT.read_text())["project"]["requires-python"])


def test_the_supported_pythons_are_3_11_to_3_13():
    assert pythons() == ["3.11", "3.12", "3.13"]


def test_the_lock_pins_every_requirement_at_an_admitted_version_with_hashes_and_no_local_paths():
    assert lock_problems(REQUIREMENTS.read_text(), LOCK.read_text(), pythons()) == []


@pytest.mark.parametrize("python", ["3.11", "3.12", "3.13"])
def test_the_lock_covers_the_transitive_runtime_dependencies(python):
    pins, _ = lock_entries(LOCK.read_text())
    applied, _ = pins_for(pins, python)
    # The SDKs' own dependencies: a lock holding only the direct requirements would let pip fetch
    # these unhashed, and --require-hashes refuses that.
    for transitive in ("msrest", "msal", "uamqp", "werkzeug", "multidict", "pydantic-core", "cffi"):
        assert transitive in applied
    assert all(len(pin.hashes) >= 1 for pin in applied.values())


def test_azure_functions_is_1_x_before_python_3_13_and_2_x_from_it():
    pins, _ = lock_entries(LOCK.read_text())
    assert pins_for(pins, "3.12")[0]["azure-functions"].version.major == 1
    assert pins_for(pins, "3.13")[0]["azure-functions"].version.major == 2


def test_floors_stay_at_or_above_the_first_release_without_known_advisories():
    pins, _ = lock_entries(LOCK.read_text())
    assert floor_problems(declared_requirements(), pins, ADVISORY_FLOORS) == []


# The checks above must be able to fail: each drift below is one a later edit could make.
GOOD_LOCK = """\
# This file was autogenerated by uv via the following command:
#    make lock
aiohttp==3.14.5 \\
    --hash=sha256:{a} \\
    --hash=sha256:{b}
    # via -r requirements.txt
yarl==1.25.1 \\
    --hash=sha256:{a}
    # via aiohttp
""".format(a="0" * 64, b="f" * 64)


SPLIT_REQUIREMENTS = """\
azure-functions>=1.25,<2; python_version < "3.13"
azure-functions>=2,<3; python_version >= "3.13"
"""
SPLIT_LOCK = """\
azure-functions==1.26.0 ; python_full_version < '3.13' \\
    --hash=sha256:{a}
azure-functions==2.3.0 ; python_full_version >= '3.13' \\
    --hash=sha256:{b}
""".format(a="0" * 64, b="f" * 64)


def test_lock_problems_accepts_a_good_lock():
    assert lock_problems("aiohttp>=3.14.4,<4\n", GOOD_LOCK, ["3.11", "3.13"]) == []


def test_lock_problems_accepts_a_pin_per_python_under_markers():
    assert lock_problems(SPLIT_REQUIREMENTS, SPLIT_LOCK, ["3.11", "3.12", "3.13"]) == []


@pytest.mark.parametrize(
    ("requirements", "lock", "expected"),
    [
        ("aiohttp>=3.14.4,<4\nrich>=13\n", GOOD_LOCK, "rich is in requirements.txt but not pinned"),
        ("aiohttp>=3.15,<4\n", GOOD_LOCK, "aiohttp==3.14.5 in the lock is outside"),
        (
            "aiohttp>=3.14.4,<4\n",
            GOOD_LOCK.replace("    --hash=sha256:" + "0" * 64 + "\n", "\n"),
            "yarl has no --hash=sha256:",
        ),
        (
            "aiohttp>=3.14.4,<4\n",
            "--extra-index-url file:///opt/pypi/simple\n" + GOOD_LOCK,
            "option line in the lock",
        ),
        (
            "aiohttp>=3.14.4,<4\n",
            GOOD_LOCK + "    # via /opt/wheels/local.whl\n",
            "names a local path or file URL",
        ),
        (
            "aiohttp>=3.14.4,<4\n",
            GOOD_LOCK.replace("yarl==1.25.1", "yarl>=1.25"),
            "yarl is not pinned with ==",
        ),
        (
            SPLIT_REQUIREMENTS,
            SPLIT_LOCK.split("azure-functions==2.3.0")[0],
            "azure-functions is in requirements.txt but not pinned in the lock for Python 3.13",
        ),
        (
            SPLIT_REQUIREMENTS,
            SPLIT_LOCK.replace("python_full_version < '3.13'", "python_full_version < '3.14'"),
            "azure-functions is pinned more than once for Python 3.13: 1.26.0, 2.3.0",
        ),
        (
            SPLIT_REQUIREMENTS,
            SPLIT_LOCK.replace("'3.13'", "'3.12'"),
            "azure-functions==2.3.0 in the lock is outside <2,>=1.25 (Python 3.12)",
        ),
    ],
)
def test_lock_problems_catches_drift(requirements, lock, expected):
    problems = lock_problems(requirements, lock, ["3.11", "3.12", "3.13"])
    assert any(expected in problem for problem in problems), problems


TABLE = {
    "aiohttp": ("runtime", "3.14.4", "advisories"),
    "h11": ("dev", "0.16.0", "advisories"),
    "werkzeug": ("lock", "3.1.9", "advisories"),
}


@pytest.mark.parametrize(
    ("declared", "pins", "expected"),
    [
        (
            {"runtime": [Requirement("aiohttp>=3.10,<4")], "dev": [Requirement("h11>=0.16")]},
            {"werkzeug": [Pin(Version("3.1.9"), ("x",))]},
            "runtime: aiohttp",
        ),
        (
            {"runtime": [Requirement("aiohttp<4")], "dev": [Requirement("h11>=0.16")]},
            {"werkzeug": [Pin(Version("3.1.9"), ("x",))]},
            "admits releases before 3.14.4",
        ),
        (
            {"runtime": [Requirement("aiohttp>=3.14.4")], "dev": []},
            {"werkzeug": [Pin(Version("3.1.9"), ("x",))]},
            "dev: no floor for h11",
        ),
        (
            {"runtime": [Requirement("aiohttp>=3.14.4")], "dev": [Requirement("h11>=0.16")]},
            {"werkzeug": [Pin(Version("3.1.8"), ("x",))]},
            "lock pins werkzeug==3.1.8, before 3.1.9",
        ),
        (
            {"runtime": [Requirement("aiohttp>=3.14.4")], "dev": [Requirement("h11>=0.16")]},
            {},
            "werkzeug (transitive, first safe 3.1.9) is not in the lock",
        ),
    ],
)
def test_floor_problems_catches_a_lowered_or_missing_floor(declared, pins, expected):
    problems = floor_problems(declared, pins, TABLE)
    assert any(expected in problem for problem in problems), problems


def test_floor_problems_accepts_floors_at_the_first_safe_release():
    declared = {
        "runtime": [Requirement("aiohttp>=3.14.4,<4")],
        "dev": [Requirement("h11~=0.16.0")],
    }
    assert floor_problems(declared, {"werkzeug": [Pin(Version("3.1.9"), ("x",))]}, TABLE) == []


@pytest.mark.parametrize(
    ("requires_python", "expected"),
    [
        (">=3.11,<3.14", ["3.11", "3.12", "3.13"]),
        (">=3.11,<3.13", ["3.11", "3.12"]),
        (">=3.12", [f"3.{minor}" for minor in range(12, 30)]),
    ],
)
def test_supported_pythons(requires_python, expected):
    assert supported_pythons(requires_python) == expected


@pytest.mark.parametrize(
    ("specifier", "expected"),
    [
        (">=3.14.4,<4", "3.14.4"),
        ("<4", None),
        ("==1.2.*", "1.2"),
        ("~=0.16.0", "0.16.0"),
        ("", None),
    ],
)
def test_lower_bound(specifier, expected):
    bound = lower_bound(SpecifierSet(specifier))
    assert bound == (Version(expected) if expected else None)
