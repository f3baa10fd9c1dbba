"""Named SQL blocks, loaded once from a package's `queries.sql`.

A block starts with a `-- name: <identifier>` line and runs to the next one:

```sql
-- name: claim_jobs
-- Comment lines under the name document the block.
UPDATE jobs SET status = 'running' WHERE id = $1
```

Blocks are written in PostgreSQL's dialect with `$1…` parameters. Where the dialects really
differ, `queries.sqlite.sql` (or `queries.postgres.sql`) next to the base file overrides
blocks by name; an override without a base block is an error, so the two cannot drift. For
SQLite the parameters are rewritten to `?1…`, never inside string literals, quoted
identifiers, comments or dollar-quoted strings.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import re
from collections.abc import Iterator, Mapping
from typing import Final

import attrs

_NAME_LINE: Final = re.compile(r"^--\s*name:\s*(.*?)\s*$")
_IDENTIFIER: Final = re.compile(r"^[a-z_][a-z0-9_]*$")
# Everything that must be copied verbatim, or a parameter (group 2).
_TOKENS: Final = re.compile(
    r"""
      (?<!\w)[eE]'(?:[^'\\]|\\.|'')*'    # escape string
    | '(?:[^']|'')*'                     # string literal
    | "(?:[^"]|"")*"                     # quoted identifier
    | --[^\n]*                           # line comment
    | /\*.*?\*/                          # block comment
    | \$((?:[A-Za-z_]\w*)?)\$.*?\$\1\$   # dollar-quoted string
    | (?<![\w$])\$(\d+)                  # parameter
    """,
    re.VERBOSE | re.DOTALL,
)
_WRITE_WORDS: Final = re.compile(r"\b(insert|update|delete|replace|create|drop|alter)\b", re.I)
_READ_STARTS: Final = ("select", "values", "explain")


class QueryFileError(ValueError):
    """A queries file is malformed: duplicate or invalid name, orphan override, empty block."""


class UnknownQuery(LookupError):
    """No block of that name was loaded."""


@attrs.frozen
class Query:
    """One named statement, in both dialects (`sqlite` already uses `?n` parameters)."""

    name: str
    postgres: str
    sqlite: str


def to_sqlite_params(sql: str) -> str:
    """Rewrite `$n` parameters to `?n`, leaving literals, identifiers and comments alone."""

    def replace(match: re.Match[str]) -> str:
        number = match.group(2)
        return f"?{number}" if number is not None else match.group(0)

    return _TOKENS.sub(replace, sql)


@functools.lru_cache(maxsize=1024)
def is_read_only(sql: str) -> bool:
    """Whether a statement only reads: it starts with SELECT/VALUES/EXPLAIN, or WITH and
    writes nothing. Literals and comments are ignored."""
    code = _TOKENS.sub(lambda m: " ? " if m.group(2) else " ", sql).strip().lower()
    if code.startswith(_READ_STARTS):
        return True
    return code.startswith("with") and not _WRITE_WORDS.search(code)


def parse_blocks(text: str, source: str) -> dict[str, str]:
    """`{name: statement}` of one queries file; `source` names it in errors."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _NAME_LINE.match(line.strip())
        if match:
            name = match.group(1)
            if not _IDENTIFIER.match(name):
                raise QueryFileError(f"{source}:{number}: invalid query name {name!r}")
            if name in blocks:
                raise QueryFileError(f"{source}:{number}: duplicate query name {name!r}")
            current = blocks[name] = []
        elif current is not None:
            current.append(line)
        elif line.strip() and not line.lstrip().startswith("--"):
            raise QueryFileError(f"{source}:{number}: SQL before the first '-- name:' line")
    statements = {}
    for name, lines in blocks.items():
        statement = "\n".join(lines).strip().rstrip(";").rstrip()
        if not statement or all(
            not ln.strip() or ln.lstrip().startswith("--") for ln in statement.splitlines()
        ):
            raise QueryFileError(f"{source}: query {name!r} has no statement")
        statements[name] = statement
    return statements


class Queries(Mapping[str, Query]):
    """The queries of one file: `queries["name"]` or `queries.name`."""

    def __init__(self, queries: Mapping[str, Query], source: str) -> None:
        self._queries = dict(queries)
        self._source = source

    def __getitem__(self, name: str) -> Query:
        try:
            return self._queries[name]
        except KeyError:
            raise UnknownQuery(self._unknown(name)) from None

    def __getattr__(self, name: str) -> Query:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._queries[name]
        except KeyError:
            raise AttributeError(self._unknown(name)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._queries)

    def __len__(self) -> int:
        return len(self._queries)

    def __repr__(self) -> str:
        return f"<Queries {self._source}: {len(self._queries)} queries>"

    def _unknown(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._queries, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"no query named {name!r} in {self._source}{hint}"


def build_queries(
    base: str,
    *,
    sqlite: str | None = None,
    postgres: str | None = None,
    source: str = "<queries>",
) -> Queries:
    """Combine a base file's text with its optional dialect overrides."""
    base_blocks = parse_blocks(base, source)
    overrides = {}
    for dialect, text in (("sqlite", sqlite), ("postgres", postgres)):
        blocks = parse_blocks(text, f"{source} ({dialect})") if text is not None else {}
        orphans = sorted(set(blocks) - set(base_blocks))
        if orphans:
            raise QueryFileError(
                f"{source}: {dialect} override without a base block: {', '.join(orphans)}"
            )
        overrides[dialect] = blocks
    queries = {
        name: Query(
            name,
            overrides["postgres"].get(name, sql),
            to_sqlite_params(overrides["sqlite"].get(name, sql)),
        )
        for name, sql in base_blocks.items()
    }
    return Queries(queries, source)


@functools.cache
def load_queries(package: str, filename: str = "queries.sql") -> Queries:
    """Load `filename` of `package` and its `.sqlite.sql` / `.postgres.sql` overrides, once.

    Uses importlib.resources, so it reads from a wheel or a PyInstaller bundle alike.
    Raises `QueryFileError` at load time for a malformed file.
    """
    root = importlib.resources.files(package)
    stem = filename.removesuffix(".sql")

    def read(name: str) -> str | None:
        resource = root.joinpath(name)
        return resource.read_text(encoding="utf-8") if resource.is_file() else None

    base = read(filename)
    if base is None:
        raise QueryFileError(f"{package}/{filename} does not exist")
    return build_queries(
        base,
        sqlite=read(f"{stem}.sqlite.sql"),
        postgres=read(f"{stem}.postgres.sql"),
        source=f"{package}/{filename}",
    )
