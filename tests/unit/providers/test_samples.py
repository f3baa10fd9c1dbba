"""`python -m lumiku.providers.local.samples` and the samples committed under docs/samples."""

from __future__ import annotations

from pathlib import Path

from lumiku.providers.local.samples import main, render_samples

from .pixels import png

DOCS = Path(__file__).resolve().parents[3] / "docs" / "samples"


async def test_the_committed_samples_are_what_the_script_renders(tmp_path: Path) -> None:
    """Also proves the renders are deterministic across processes (seeds are hashed with
    sha256, never with Python's salted hash). Re-run the script when this fails on purpose."""
    paths = await render_samples(tmp_path)
    assert sorted(p.name for p in paths) == sorted(p.name for p in DOCS.glob("*.png"))
    for path in paths:
        fresh, committed = png(path.read_bytes()), png((DOCS / path.name).read_bytes())
        assert (fresh.size, fresh.mode) == (committed.size, committed.mode), path.name
        assert fresh.tobytes() == committed.tobytes(), path.name
    assert sum(p.stat().st_size for p in DOCS.glob("*.png")) < 1_500_000


def test_the_script_wants_one_directory() -> None:
    assert main([]) == 2
