"""The documentation holds together: README.md stays short, every relative link and #anchor in
README.md and docs/*.md leads somewhere, and every option of `pipeline.py` is documented in
exactly one row of an option table.

Option tables are Markdown tables whose first header cell names the command, e.g.
``| `build` option | meaning |`` (``pipeline.py`` for the options before the command).
"""
import os
import re
import unicodedata

import pytest

import pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DOCS = os.path.join(ROOT, "docs")
README_LIMIT_BYTES = 15 * 1024

LINK = re.compile(r"(?<!\!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
OPTION_TABLE_HEADER = re.compile(r"^\|\s*`([a-z][a-z0-9.-]*)`\s+options?\s*\|")
FLAG = re.compile(r"(?<![\w-])(--?[a-zA-Z][a-zA-Z0-9-]*)")


def markdown_files():
    files = [README]
    if os.path.isdir(DOCS):
        files += sorted(os.path.join(DOCS, f) for f in os.listdir(DOCS) if f.endswith(".md"))
    return files


def prose_lines(path):
    """(line number, text) of the lines outside fenced code blocks."""
    inside = False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if FENCE.match(line):
                inside = not inside
                continue
            if not inside:
                yield number, line.rstrip("\n")


def github_slug(heading):
    """The anchor GitHub gives a heading: inline markup dropped, lower case, punctuation removed
    (letters, digits, '_', '-' and spaces kept), spaces turned into hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # a link keeps its text
    text = text.replace("`", "").replace("*", "")
    text = text.strip().lower()
    kept = []
    for ch in text:
        if ch in " -_" or unicodedata.category(ch)[0] in "LN":
            kept.append(ch)
    return "".join(kept).replace(" ", "-")


def anchors(path):
    seen = {}
    result = set()
    for _, line in prose_lines(path):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else "{}-{}".format(slug, count))
    return result


def links(path):
    for number, line in prose_lines(path):
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            yield number, target


def test_github_slug_matches_githubs_rules():
    assert github_slug("What ran where (read this first)") == "what-ran-where-read-this-first"
    assert github_slug("`verify`: how much each stage keeps") == "verify-how-much-each-stage-keeps"
    assert github_slug("INT8 for the CPU fallback (ONNX Runtime)") == "int8-for-the-cpu-fallback-onnx-runtime"
    assert github_slug("Set up, check, run: three commands") == "set-up-check-run-three-commands"


def test_readme_is_at_most_15_kb():
    size = os.path.getsize(README)
    assert size <= README_LIMIT_BYTES, "README.md is {} bytes; move detail into docs/ (limit {})".format(
        size, README_LIMIT_BYTES)


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: os.path.relpath(p, ROOT))
def test_relative_links_and_anchors_resolve(path):
    broken = []
    for number, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):   # http:, https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        where = "{}:{}: {}".format(os.path.relpath(path, ROOT), number, target)
        if not os.path.exists(dest):
            broken.append(where + " (no such file)")
        elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
            broken.append(where + " (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_link_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [bad](#nothing) [gone](missing.md)\n\n"
                    "```\n[in code](#ignored)\n```\n", encoding="utf-8")
    found = list(links(str(page)))
    assert [t for _, t in found] == ["#title", "#nothing", "missing.md"]
    assert anchors(str(page)) == {"title"}


def parser_options():
    """{(command, flag)} for every option of pipeline.py; command 'pipeline.py' for the global ones."""
    parser = pipeline.make_parser()
    options = set()

    def collect(command, p):
        for action in p._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    options.add((command, flag))

    collect("pipeline.py", parser)
    for action in parser._actions:
        if getattr(action, "choices", None) and hasattr(action, "_name_parser_map"):
            for name, sub in action.choices.items():
                collect(name, sub)
    return options


def documented_options(paths=None):
    """{(command, flag): [where, ...]} from the option tables of README.md and docs/*.md."""
    found = {}
    for path in paths or markdown_files():
        command = None
        for number, line in prose_lines(path):
            header = OPTION_TABLE_HEADER.match(line)
            if header:
                command = header.group(1)
                continue
            if command is None:
                continue
            if not line.startswith("|"):
                command = None
                continue
            if re.match(r"^\|[\s:|-]+\|?$", line):    # the |---| row
                continue
            first_cell = re.split(r"(?<!\\)\|", line)[1]   # a cell may hold an escaped \|
            for code in re.findall(r"`([^`]*)`", first_cell):
                for flag in FLAG.findall(code):
                    where = "{}:{}".format(os.path.relpath(path, ROOT), number)
                    found.setdefault((command, flag), []).append(where)
    return found


def test_every_option_is_documented_in_exactly_one_place():
    options = parser_options()
    documented = documented_options()
    missing = sorted("{} {}".format(*o) for o in options if o not in documented)
    twice = sorted("{} {}: {}".format(o[0], o[1], ", ".join(w)) for o, w in documented.items() if len(w) > 1)
    assert not missing, "options with no option-table row in README.md or docs/: " + ", ".join(missing)
    assert not twice, "options documented in more than one place:\n" + "\n".join(twice)


def test_no_option_table_documents_an_option_that_does_not_exist():
    options = parser_options()
    stale = sorted("{} {} ({})".format(o[0], o[1], ", ".join(w)) for o, w in documented_options().items()
                   if o not in options)
    assert not stale, "option tables name options pipeline.py does not have: " + ", ".join(stale)


def test_the_option_table_reader_counts_rows_per_command(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("| `bench` option | meaning |\n|---|---|\n"
                    "| `--precision fp32\\|int8`, `--size PX` | a \\| b |\n| `--size N` | again |\n\n"
                    "| `--seed` | not an option table |\n\n"
                    "```\n| `verify` option | in code |\n| `--count` | no |\n```\n", encoding="utf-8")
    found = documented_options([str(page)])
    assert sorted(found) == [("bench", "--precision"), ("bench", "--size")]
    assert len(found[("bench", "--size")]) == 2
