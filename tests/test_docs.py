"""The README and docs/*.md stay true: every relative link and image resolves (anchors included), and every flag
shown in a ```bash block for one of our scripts exists in that script's --help."""

from __future__ import annotations

import functools
import importlib
import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_script

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
FLAG = re.compile(r"--[A-Za-z][\w-]*")


def _prose(text: str) -> str:
    """The page without its fenced code blocks (code is not a link)."""
    return FENCE.sub("", text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


@functools.cache
def _anchors(page: Path) -> frozenset:
    text = _prose(page.read_text(encoding="utf-8"))
    return frozenset(_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", text, re.M))


def _links(page: Path) -> list:
    return [m.group(1) for m in LINK.finditer(_prose(page.read_text(encoding="utf-8")))]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_and_images_resolve(page):
    bad = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ... are not checked (offline)
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target}: no heading '#{anchor}' in {dest.name}")
    assert not bad, f"{page.relative_to(ROOT)}: " + "; ".join(bad)


def _commands(page: Path) -> list:
    """(script, [flags]) for every line of a ```bash block that runs one of our .py scripts."""
    out = []
    for lang, body in FENCE.findall(page.read_text(encoding="utf-8")):
        if lang not in ("bash", "sh", "shell"):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            for i, tok in enumerate(tokens):
                if tok.endswith(".py") and (ROOT / tok).is_file():
                    flags = [FLAG.match(t).group(0) for t in tokens[i + 1 :] if FLAG.match(t)]
                    out.append((tok, flags))
                    break
    return out


@functools.cache
def _help_flags(script: str) -> frozenset:
    """Every --flag in the script's --help: its parse_opt(['--help']) in-process, else `python script --help`."""
    module = importlib.import_module(script[:-3].replace("/", "."))
    if hasattr(module, "parse_opt"):
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
            module.parse_opt(["--help"])
        text = buf.getvalue()
    else:
        r = run_script(script, "--help", timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        text = r.stdout
    return frozenset(FLAG.findall(text))


COMMANDS = [(page, script, flags) for page in PAGES for script, flags in _commands(page)]


def test_docs_show_commands():
    """The checks below see the README's quickstart (a guard against the block parser silently finding nothing)."""
    scripts = {s for p, s, _ in COMMANDS if p.name == "README.md"}
    assert {"train.py", "val.py", "detect.py", "export.py"} <= scripts


@pytest.mark.parametrize("script", sorted({s for _, s, _ in COMMANDS}))
def test_every_documented_flag_exists(script):
    known = _help_flags(script)
    shown = {(page.relative_to(ROOT), f) for page, s, flags in COMMANDS if s == script for f in flags}
    missing = sorted(f"{page}: {f}" for page, f in shown if f not in known)
    assert not missing, f"{script} --help lacks: {missing}"
