"""The maintainer script that refreshes the bundled catalog."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, write
from test_updategraph import ATTRIBUTES

from exporter.catalog import Catalog, parse_catalog_document
from exporter.config import load_bundled_catalog, parse_yaml

SCRIPT = ROOT / "tools" / "build_catalog.py"


def build(*args: str):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def read(path) -> Catalog:
    return Catalog.of(parse_catalog_document(parse_yaml(path.read_text()), "bundled"))


def test_a_release_table_adds_releases_and_dates_and_keeps_history(tmp_path):
    table = write(
        tmp_path / "releases.tsv",
        (
            "update_version\tbase_build\trelease_date\thotfix_builds\tlatest_known_hotfix_build\n"
            "2506\t1.2506.0.15\t2025-08\t1.2506.2.24,1.2506.3.30\t\n"
            "2608\t1.2608.0.3\t2026-10-06\t\t1.2608.1.9\n"
            "2601\tunknown\tunknown\t\t\n"
        ),
    )
    out = tmp_path / "catalog.yml"
    result = build("--tsv", str(table), "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "(new: 2608)" in result.stdout
    catalog = read(out)
    bundled = Catalog.of(load_bundled_catalog())
    assert [r.update for r in catalog.releases] == [r.update for r in bundled.releases] + ["2608"]
    assert str(catalog.get("2506").released) == "2025-08"
    assert [str(h.build) for h in catalog.get("2506").hotfixes] == ["1.2506.2.24", "1.2506.3.30"]
    assert [str(h.build) for h in catalog.get("2608").hotfixes] == ["1.2608.1.9"]
    assert catalog.get("2008") == bundled.get("2008")  # history untouched
    assert out.read_text().startswith("# The release catalog bundled with azurestack-exporter.")


def test_an_update_graph_fills_in_base_builds(tmp_path):
    graph = tmp_path / "graph.xml"
    graph.write_bytes(ATTRIBUTES)
    out = tmp_path / "catalog.yml"
    result = build("--graph", str(graph), "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert str(read(out).get("2601").build) == "1.2601.0.4"


def test_rendering_the_bundled_catalog_changes_nothing(tmp_path):
    empty = write(tmp_path / "empty.tsv", "update_version\n")
    out = tmp_path / "catalog.yml"
    assert build("--tsv", str(empty), "--output", str(out)).returncode == 0
    assert read(out).releases == Catalog.of(load_bundled_catalog()).releases


def test_a_bad_table_is_refused(tmp_path):
    bad = write(tmp_path / "bad.tsv", "update_version\tbase_build\n2413\t1.2413.0.1\n")
    result = build("--tsv", str(bad), "--output", str(tmp_path / "out.yml"))
    assert result.returncode == 2 and "cannot read the source" in result.stderr
    assert not (tmp_path / "out.yml").exists()
