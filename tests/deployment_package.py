"""The deployment package as the tooling builds it: the working tree less what .funcignore denies.

Two matchers read .funcignore here. git's own (`packaged_files`) is the reference for gitignore
semantics, and azd's go-gitignore follows the same rules. Core Tools does not: it ports
codemix/gitignore-parser to regular expressions (`core_tools_files` mirrors it), so the tests
check that both pick the same files.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FUNCIGNORE = REPO / ".funcignore"


def _git_env() -> dict[str, str]:
    # The machine's and the user's git configuration have no say in what is packaged.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    return env


def packaged_files(root: Path, ignore_file: Path) -> list[str]:
    """Every file under root that ignore_file lets through, by git's own gitignore matching.

    git walks the tree as untracked files of a throwaway repository with ignore_file as its only
    exclude list: the project's index would list tracked files whatever the rules say, and the
    project's .gitignore is not what the tooling reads.
    """
    env = _git_env()
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(["git", "init", "--quiet", scratch], check=True, env=env)
        listed = subprocess.run(
            [
                "git",
                f"--git-dir={scratch}/.git",
                f"--work-tree={root}",
                "ls-files",
                "--others",
                "-z",
                f"--exclude-from={ignore_file.resolve()}",
            ],
            cwd=root,
            env=env,
            check=True,
            capture_output=True,
        ).stdout
    paths = sorted(path for path in listed.decode().split("\0") if path)
    # git lists a directory holding a repository of its own as "dir/" and does not look inside.
    nested = [path for path in paths if path.endswith("/")]
    if nested:
        raise ValueError(f"nested repositories in the package, not listed file by file: {nested}")
    return paths


def core_tools_accepts(ignore_text: str) -> Callable[[str], bool]:
    """Core Tools' GitIgnoreParser.Accepts, from src/Cli/func/Common/GitIgnoreParser.cs.

    Each pattern becomes a regular expression anchored at the start of the app-relative path and
    ending in a word boundary; negations win wherever they stand. Only the full-path expressions
    matter: Accepts never uses the parser's partial ones.
    """
    denied: list[str] = []
    allowed: list[str] = []
    for raw in ignore_text.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line.removeprefix("!").removeprefix("/")
        (allowed if negated else denied).append(line)

    def expression(patterns: list[str]) -> re.Pattern[str]:
        if not patterns:
            return re.compile("$^")
        prepared = [
            re.sub(r"[\-\[\]\/\{\}\(\)\+\?\.\\\^\$\|]", lambda m: "\\" + m.group(0), p)
            .replace("**", "(.+)")
            .replace("*", "([^\\/]+)")
            for p in sorted(patterns)
        ]
        # RegexOptions.ECMAScript: \b and \w are ASCII-only, as with re.ASCII.
        return re.compile("^((" + ")|(".join(prepared) + "))\\b", re.ASCII)

    negative, positive = expression(allowed), expression(denied)
    return lambda path: bool(negative.search(path)) or not positive.search(path)


# FileSystemHelpers.GetLocalFiles skips these whatever .funcignore says (case-insensitively).
_CORE_TOOLS_SKIPPED_DIRS = {".git", ".vscode"}
_CORE_TOOLS_SKIPPED_FILES = {
    ".funcignore",
    ".gitignore",
    "local.settings.json",
    "project.lock.json",
}


def core_tools_files(root: Path, ignore_text: str) -> list[str]:
    """The files `func azure functionapp publish` and `func pack` take from root.

    Core Tools tests every file on its own, so it walks into denied directories too.
    """
    accepts = core_tools_accepts(ignore_text)
    found: list[str] = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = [d for d in subdirectories if d.lower() not in _CORE_TOOLS_SKIPPED_DIRS]
        for name in names:
            if name.lower() in _CORE_TOOLS_SKIPPED_FILES:
                continue
            relative = Path(directory, name).relative_to(root).as_posix()
            if accepts(relative):
                found.append(relative)
    return sorted(found)


def build_zip(root: Path, files: list[str], destination: Path) -> Path:
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for relative in files:
            archive.write(root / relative, arcname=relative)
    return destination


def zip_entries(archive: Path) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(archive) as opened:
        for info in opened.infolist():
            if not info.is_dir():
                yield info.filename, opened.read(info)


# Imports function_app, then prints each loaded module that is neither the standard library nor
# installed in the interpreter's environment (the repository's .venv), with its file.
_LIST_APP_MODULES = """
import json, sys
from pathlib import Path
{prelude}
import function_app
installed = [Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()]
loaded = {{}}
for name, module in list(sys.modules.items()):
    file = getattr(module, "__file__", None)
    if file and not any(Path(file).resolve().is_relative_to(p) for p in installed):
        loaded[name] = str(Path(file).resolve())
print(json.dumps(loaded))
"""

# setuptools' editable install of the project answers imports from the repository through a
# finder on sys.meta_path; without it a module missing from the package would still import.
_DROP_EDITABLE_FINDERS = """
sys.meta_path[:] = [
    f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")
]
sys.path_hooks[:] = [
    h for h in sys.path_hooks if not getattr(h, "__module__", "").startswith("__editable__")
]
sys.path_importer_cache.clear()
"""


def import_function_app(
    python: str, app_dir: Path, settings: Mapping[str, str], *, isolated: bool
) -> subprocess.CompletedProcess[str]:
    """Import function_app in app_dir in a fresh interpreter; stdout is {module: file} as JSON.

    isolated: PYTHONPATH is app_dir alone and the project's editable install is switched off,
    so only what app_dir holds (and the installed dependencies) can be imported.
    """
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env.update(settings)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if isolated:
        env["PYTHONPATH"] = str(app_dir)
    code = _LIST_APP_MODULES.format(prelude=_DROP_EDITABLE_FINDERS if isolated else "")
    return subprocess.run(
        [python, "-c", code], cwd=app_dir, env=env, capture_output=True, text=True, check=False
    )


def loaded_modules(result: subprocess.CompletedProcess[str]) -> dict[str, Path]:
    if result.returncode != 0:
        raise AssertionError(f"function_app did not import:\n{result.stderr}")
    return {name: Path(file) for name, file in json.loads(result.stdout).items()}
