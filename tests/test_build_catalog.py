"""The maintainer script that generates the bundled catalog from its sourced table."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT, write
from test_updategraph import ATTRIBUTES

from exporter.catalog import Catalog, parse_catalog_document
from exporter.config import load_bundled_catalog, parse_yaml

SCRIPT = ROOT / "tools" / "build_catalog.py"
TABLE = ROOT / "tools" / "catalog-sources.tsv"
HEAD = "update\tbuild\tkind\treleased\tdate_basis\tsource\tnote\n"


def build(*args: str):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def read(path) -> Catalog:
    return Catalog.of(parse_catalog_document(parse_yaml(path.read_text()), "bundled"))


def test_the_bundled_catalog_is_what_the_table_gives():
    result = build("--check")
    assert result.returncode == 0, result.stderr


def test_check_reports_a_hand_edited_catalog(tmp_path):
    edited = tmp_path / "catalog.yml"
    edited.write_text((ROOT / "exporter" / "data" / "catalog.yml").read_text().replace("1.2601.1.14", "1.2601.1.15"))
    result = build("--check", "--output", str(edited))
    assert result.returncode == 1
    assert "+      - build: 1.2601.1.14" in result.stderr and "differs" in result.stderr


def test_generation_is_reproducible_and_keeps_the_comments(tmp_path):
    first, second = tmp_path / "a.yml", tmp_path / "b.yml"
    assert build("--output", str(first)).returncode == 0
    assert build("--output", str(second)).returncode == 0
    assert first.read_bytes() == second.read_bytes()
    text = first.read_text()
    assert text.startswith("# The release catalog bundled with azurestack-exporter")
    assert "date_basis: documented_by" in text  # the explanatory header
    assert '  # 1901 re-release "after February 26th, 2019"' not in text
    assert '      - 1.1901.0.99  # re-release "after February 26th, 2019": a second base build, not a hotfix' in text
    assert "  # 1811: there was no 1810 release; no 1811 hotfix found" in text


def test_every_row_carries_a_source_and_every_date_its_basis():
    lines = [line for line in TABLE.read_text().splitlines() if not line.startswith("#")][1:]
    assert len(lines) == 220  # 31 base builds, 6 other base builds, 183 hotfixes
    for line in lines:
        *_, released, basis, source, _note = line.split("\t")
        assert source, line
        assert (basis in ("documented", "documented_by", "announced")) if released else basis in ("", "unknown"), line


def test_help_documents_every_input_column():
    result = build("--help")
    assert result.returncode == 0
    for column in ("update", "build", "kind", "released", "date_basis", "source", "note", "documented_by"):
        assert f"  {column}" in result.stdout or f" {column} " in result.stdout, column


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ("2408\t1.2408.1.50\thotfix\t\t\tsrc\t\n", "line 2: hotfix build 1.2408.1.50 comes before 2408's base row"),
        ("2408\t1.2408.0.19\tbase\t\t\tsrc\t\n2408\t1.2408.0.20\tbase\t\t\tsrc\t\n", "line 3: a second base build"),
        ("2408\t1.2408.0.19\tbase\t2024-11-18\t\tsrc\t\n", "line 2: the date 2024-11-18 needs a date_basis"),
        ("2408\t1.2408.0.19\tbase\t\t\t\t\n", "line 2: build 1.2408.0.19 has no source"),
        ("2408\t1.2408.0.19\tpatch\t\t\tsrc\t\n", "line 2: kind 'patch' must be one of"),
        # An inconsistent base build: the exporter's parser refuses it, and the message names the row.
        (
            "2408\t1.2408.1.50\tbase\t\t\tsrc\t\n2408\t1.2408.0.19\thotfix\t\t\tsrc\t\n",
            "line 3: releases[0].hotfixes[0]",
        ),
        ("2408\t1.2501.0.1\tbase\t\t\tsrc\t\n", "line 2: releases[0].build: base build 1.2501.0.1 does not belong"),
        ("2408\t1.2408.0.19\tbase\t2024-13-01\tdocumented\tsrc\t\n", "line 2: releases[0].released: date"),
        (
            "2408\t1.2408.0.19\tbase\t\t\tsrc\t\n2408\t1.2408.1.3\thotfix\t\t\tsrc\t\n2408\t1.2408.1.3\thotfix\t\t\tsrc\t\n",
            "line 4: releases[0].hotfixes[1].build: hotfix 1.2408.1.3 is listed twice",
        ),
    ],
)
def test_a_bad_table_is_refused_with_its_line_and_no_traceback(tmp_path, rows, problem):
    table = write(tmp_path / "bad.tsv", HEAD + rows)
    out = tmp_path / "out.yml"
    result = build("--table", str(table), "--output", str(out))
    assert result.returncode == 2
    assert problem in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_a_table_without_the_columns_is_refused(tmp_path):
    table = write(tmp_path / "old.tsv", "update_version\tbase_build\n2413\t1.2413.0.1\n")
    result = build("--table", str(table), "--output", str(tmp_path / "out.yml"))
    assert result.returncode == 2 and "header lacks column(s) update, build, kind" in result.stderr


def test_a_small_table_gives_a_catalog_the_exporter_reads(tmp_path):
    table = write(
        tmp_path / "t.tsv",
        "# header comment\n" + HEAD + "2601\t1.2601.0.4\tbase\t2026-04-08\tdocumented_by\tdell\tno notes\n"
        "2601\t1.2601.1.14\thotfix\t2026-05-13\tdocumented_by\tms\t\n"
        "2601\t1.2601.0.2\tother\t\t\tdell\tOEM baseline\n",
    )
    out = tmp_path / "c.yml"
    assert build("--table", str(table), "--output", str(out)).returncode == 0
    assert out.read_text().startswith("# header comment\nreleases:\n  # 2601: no notes\n")
    release = read(out).get("2601")
    assert (str(release.build), str(release.released), release.date_basis) == (
        "1.2601.0.4",
        "2026-04-08",
        "documented_by",
    )
    assert [str(b) for b in release.other_builds] == ["1.2601.0.2"]
    assert [(str(h.build), h.citation) for h in release.hotfixes] == [("1.2601.1.14", "ms")]


def test_an_update_graph_prints_rows_for_builds_the_table_lacks(tmp_path):
    graph = tmp_path / "graph.xml"
    graph.write_bytes(ATTRIBUTES.replace(b"1.2506.2.24", b"1.2506.4.40"))
    result = build("--graph", str(graph))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["2506\t1.2506.4.40\thotfix\t\tunknown\tTODO: source\t"]


def test_the_bundled_catalog_matches_the_audit():
    """The facts the audit of November 2026 corrected."""
    catalog = Catalog.of(load_bundled_catalog())
    assert str(catalog.get("1908").build) == "1.1908.4.33"
    assert str(catalog.get("2206").build) == "1.2206.0.6"
    assert str(catalog.get("2601").build) == "1.2601.0.4"
    assert [str(b) for b in catalog.get("1901").other_builds] == ["1.1901.0.99"]
    assert str(catalog.get("2005").latest_hotfix.build) == "1.2005.48.137"
    assert str(catalog.get("2506").latest_hotfix.build) == "1.2506.3.30"
    assert str(catalog.get("2601").latest_hotfix.build) == "1.2601.1.14"
    assert all(str(h.build) != "1.2002.68.177" for h in catalog.get("2002").hotfixes)
    assert sum(len(r.hotfixes) for r in catalog.releases) >= 183
    assert all(r.released is not None and r.date_basis and r.citation for r in catalog.releases)
    assert [r.update for r in catalog.releases][-3:] == ["2501", "2506", "2601"]
