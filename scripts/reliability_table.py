"""Print README's Reliability table from the tests: every test marked
``@pytest.mark.fault(what, outcome)`` is a row. ``--check README.md`` exits 1 when the README's
table (between the reliability markers) differs; ``--write README.md`` replaces it."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- reliability:begin -->", "<!-- reliability:end -->"


def rows() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            for dec in node.decorator_list:
                if (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute) and dec.func.attr == "fault"
                        and len(dec.args) == 2):
                    what, outcome = (ast.literal_eval(a) for a in dec.args)
                    out.append((what, outcome, f"{path.name}::{node.name}"))
    return out


def table() -> str:
    lines = ["| fault or hostile input | what porter does | test |", "|---|---|---|"]
    lines += [f"| {w} | {o} | `{t}` |" for w, o, t in rows()]
    return "\n".join(lines)


def section(text: str) -> tuple[int, int]:
    a, b = text.find(BEGIN), text.find(END)
    if a < 0 or b < 0:
        raise SystemExit(f"README has no {BEGIN} … {END} section")
    return a + len(BEGIN), b


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] in ("--check", "--write"):
        path = Path(sys.argv[2])
        text = path.read_text()
        a, b = section(text)
        want = "\n" + table() + "\n"
        if sys.argv[1] == "--write":
            path.write_text(text[:a] + want + text[b:])
        elif text[a:b] != want:
            raise SystemExit("README's Reliability table is out of date: run make reliability-table")
        return
    print(table())


if __name__ == "__main__":
    main()
