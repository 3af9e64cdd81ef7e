#!/usr/bin/env python3
"""Checks that the code quoted in the docs is exactly the code in docs/examples.

A quote is marked in Markdown by a comment line naming the file, followed by a
fenced cpp block:

    <!-- example: docs/examples/first_pool.cpp -->
    ```cpp
    ...the whole file...
    ```

Usage: check_sync.py SOURCE_ROOT [--update]
  Without --update, exits 1 listing every quote that differs from its file and
  every example that no document quotes. With --update, rewrites the quotes
  from the files (the files are the source of truth: they are compiled and run).
"""
import pathlib
import re
import sys

MARK = re.compile(r"^<!-- example: (\S+) -->\s*$")


def documents(root):
    yield root / "README.md"
    yield from sorted((root / "docs").glob("*.md"))


def process(path, root, update, quoted, problems):
    lines = path.read_text().splitlines(keepends=True)
    out = []
    i = 0
    changed = False
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        m = MARK.match(line)
        if not m:
            continue
        rel = m.group(1)
        example = root / rel
        quoted.add(example.resolve())
        if i >= len(lines) or lines[i].strip() != "```cpp":
            problems.append(f"{path.relative_to(root)}: '{rel}' is not followed by a ```cpp block")
            continue
        out.append(lines[i])
        i += 1
        start = i
        while i < len(lines) and lines[i].rstrip("\n") != "```":
            i += 1
        if i >= len(lines):
            problems.append(f"{path.relative_to(root)}: unterminated block for '{rel}'")
            out.extend(lines[start:])
            break
        body = "".join(lines[start:i])
        if not example.is_file():
            problems.append(f"{path.relative_to(root)}: quotes '{rel}', which does not exist")
            out.extend(lines[start:i])
            continue
        want = example.read_text()
        if not want.endswith("\n"):
            want += "\n"
        if body != want:
            if update:
                changed = True
            else:
                problems.append(f"{path.relative_to(root)}: the quote of '{rel}' differs from the file")
            out.append(want)
        else:
            out.append(body)
    if update and changed:
        path.write_text("".join(out))
        print(f"updated {path.relative_to(root)}")


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = pathlib.Path(argv[1]).resolve()
    update = "--update" in argv[2:]
    quoted, problems = set(), []
    for doc in documents(root):
        if doc.is_file():
            process(doc, root, update, quoted, problems)
    for example in sorted((root / "docs" / "examples").glob("*.cpp")):
        if example.resolve() not in quoted:
            problems.append(f"docs/examples/{example.name} is quoted by no document")
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"{len(quoted)} examples quoted in the docs, all in sync")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
