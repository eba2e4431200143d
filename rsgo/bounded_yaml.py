"""Reading YAML within bounds (docs/design.md#stack-config): the stack config is a few kilobytes.

The limits keep a wrong file, or a hostile one (a "billion laughs" of nested aliases: PyYAML
shares the aliased nodes, but walking the result expands them), from taking the process's
memory and time: the size is checked before parsing, and the expanded size is counted on the
composed nodes, each node once, before anything is built from them.
"""

from __future__ import annotations

import yaml

MAX_CONFIG_BYTES = 1024 * 1024
MAX_EXPANDED_NODES = 100_000
MAX_EXPANDED_TEXT = 4 * 1024 * 1024  # characters of all scalars, aliases expanded
MAX_DEPTH = 64


class UnusableFile(ValueError):
    """The file as a whole cannot be used; the message says why (with the line, for YAML errors)."""


def read_yaml(path: str):
    """The parsed YAML document, within the limits above; ``UnusableFile`` otherwise (``FileNotFoundError``
    as it is: a missing file is for the caller to judge). ``None`` for an empty document."""
    try:
        with open(path, "rb") as config_file:
            data = config_file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise UnusableFile(f"cannot read: {error.strerror or error}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise UnusableFile(f"larger than {MAX_CONFIG_BYTES // 1024 // 1024} MiB: refused")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise UnusableFile(f"not UTF-8 text (line {line}, byte {error.start})") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _count_expanded(node)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise UnusableFile(f"not valid YAML{where}: {getattr(error, 'problem', None) or error}") from None
    except RecursionError:
        raise UnusableFile(f"nested too deeply (more than {MAX_DEPTH} levels)") from None
    finally:
        loader.dispose()


def _count_expanded(root: yaml.Node) -> None:
    """Refuse a document whose expanded size (every alias replaced by what it names) is over the limits.

    Each distinct node is counted once and its total remembered, so a bomb of nested aliases
    costs what its text costs; the walk stops as soon as a limit is passed.
    """
    totals: dict[int, tuple[int, int]] = {}
    walking: set[int] = set()

    def where(node) -> str:
        mark = node.start_mark
        return f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""

    def total(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in totals:
            return totals[key]
        if key in walking:
            raise UnusableFile(f"an alias refers to a node that contains it{where(node)}: "
                               "recursive aliases are refused")
        if depth > MAX_DEPTH:
            raise UnusableFile(f"nested too deeply (more than {MAX_DEPTH} levels){where(node)}")
        walking.add(key)
        nodes, text = 1, 0
        if isinstance(node, yaml.ScalarNode):
            text = len(node.value)
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
            for child in children:
                child_nodes, child_text = total(child, depth + 1)
                nodes, text = nodes + child_nodes, text + child_text
                if nodes > MAX_EXPANDED_NODES:
                    raise UnusableFile(f"more than {MAX_EXPANDED_NODES:,} values once aliases are expanded"
                                       f"{where(node)}: refused (an alias bomb, or far too large a config)")
                if text > MAX_EXPANDED_TEXT:
                    raise UnusableFile(f"more than {MAX_EXPANDED_TEXT // 1024 // 1024} MiB of text once aliases "
                                       f"are expanded{where(node)}: refused")
        walking.discard(key)
        totals[key] = (nodes, text)
        return nodes, text

    total(root, 0)
