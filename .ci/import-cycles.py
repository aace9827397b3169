#!/usr/bin/env python3
"""Fails when files of src/ import each other in a cycle (ARCHITECTURE.md: leaves stay
leaves, rooms depend one way).

A file's imports are every `crate::…`, `super::…` and `self::…` path it names outside its
tests (`use` lines and inline paths, `{…}` groups expanded), plus the child modules a
`mod.rs` names bare (`load::run`). Each path goes to the file that defines its longest
module prefix. Cycles between files (strongly connected components) and between
top-level rooms (`engine` <-> `report`) are printed, and the exit status is 1.
"""
import re
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else "src")
files = {}
for path in root.rglob("*.rs"):
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    files[tuple(parts)] = path

PATH = re.compile(
    r"(?<!\()\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)(::\{([^;]*?)\})?"
)
CHILD = re.compile(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_0-9]+)\s*;", re.M)


def defining_file(segments):
    for end in range(len(segments), -1, -1):
        if tuple(segments[:end]) in files:
            return tuple(segments[:end])
    return None


edges = {}
for module, path in files.items():
    text = path.read_text()
    text = text[: text.find("#[cfg(test)]")] if "#[cfg(test)]" in text else text
    text = re.sub(r"//[^\n]*", "", text)
    targets = set()
    for match in PATH.finditer(text):
        kind, tail, group = match.group(1), match.group(2), match.group(4)
        segments = [s for s in tail.split("::") if s]
        if kind == "crate":
            base = []
        elif kind == "super":
            base = list(module[:-1])
            while segments and segments[0] == "super":
                base, segments = base[:-1], segments[1:]
        else:
            base = list(module)
        heads = [segments]
        if group:
            heads = []
            for item in group.split(","):
                item = item.split(" as ")[0].replace("{", "").replace("}", "").strip()
                if item:
                    heads.append(segments + [s for s in item.split("::") if s and s != "self"])
        for head in heads:
            target = defining_file(base + head)
            if target is not None and target != module:
                targets.add(target)
    for child in CHILD.findall(text):
        if re.search(r"(?<![:\w])" + child + r"::", text) and module + (child,) in files:
            targets.add(module + (child,))
    edges[module] = targets

# Tarjan's strongly connected components.
index, low, stack, on_stack, components, counter = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)


def connect(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in edges.get(v, ()):
        if w not in index:
            connect(w)
            low[v] = min(low[v], low[w])
        elif w in on_stack:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        component = []
        while True:
            w = stack.pop()
            on_stack.discard(w)
            component.append(w)
            if w == v:
                break
        if len(component) > 1:
            components.append(component)


for v in edges:
    if v not in index:
        connect(v)


def name(module):
    return "/".join(module) or "lib"


for component in components:
    print("import cycle:", ", ".join(sorted(name(m) for m in component)))
    for a in component:
        for b in sorted(edges[a]):
            if b in component:
                print(f"    {name(a)} -> {name(b)}")
rooms = {}
for a, targets in edges.items():
    for b in targets:
        if a[:1] != b[:1]:
            rooms.setdefault(a[:1], set()).add(b[:1])
room_cycles = sorted(
    {tuple(sorted((a, b))) for a, bs in rooms.items() for b in bs if a in rooms.get(b, ())}
)
for a, b in room_cycles:
    print(f"room cycle: {name(a)} <-> {name(b)}")
if components or room_cycles:
    sys.exit(1)
print(f"no import cycles among {len(files)} files")
