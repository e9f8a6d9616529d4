"""Every configuration snippet in the README and docs/ is valid as pasted, checked by the tool that
reads it: YAML by a YAML parser, then Prometheus configuration by `promtool check config`, rules by
`promtool check rules`, Alertmanager configuration by `amtool check-config`, the exporter's
configuration and catalogs by the exporter's own validation, JSON by a JSON parser, PromQL by
promtool as a rule expression. (Shell commands: tests/test_docs.py.)"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap

import pytest
import yaml
from conftest import ROOT, require_tool

from exporter.catalog import parse_catalog
from exporter.config import ConfigError, parse_config

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^( *)```(\w+)\n(.*?)^\1```", re.S | re.M)
EXPORTER_KEYS = {"refresh_interval", "refresh_concurrency", "policy", "catalog", "stamps", "state_file"}
# Problems a snippet may have as pasted into an empty directory: the files and variables it names
# are the reader's own. Anything else (an unknown key, a wrong type, a bad value) is a failure.
ABSENT = ("cannot read", "environment variable", "holds no readable PEM")


def snippets() -> list[tuple[str, str, str]]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in FENCE.finditer(text):
            line = text[: match.start()].count("\n") + 1
            found.append((f"{doc.relative_to(ROOT)}:{line}", match.group(2), textwrap.dedent(match.group(3))))
    return found


SNIPPETS = snippets()


def test_the_snippets_are_found():
    kinds = {kind for _, kind, _ in SNIPPETS}
    assert {"yaml", "json", "promql", "sh"} <= kinds
    assert sum(1 for _, kind, _ in SNIPPETS if kind == "yaml") >= 8


@pytest.mark.parametrize(("where", "body"), [(w, b) for w, k, b in SNIPPETS if k == "yaml"], ids=lambda v: v)
def test_every_yaml_snippet_is_valid_for_what_reads_it(where, body, tmp_path):
    document = yaml.safe_load(body)  # valid YAML as pasted, first of all
    assert isinstance(document, dict), where
    path = tmp_path / "snippet.yml"
    path.write_text(body)
    keys = set(document)
    if keys & {"scrape_configs", "rule_files", "alerting"}:
        run = subprocess.run(
            [require_tool("promtool"), "check", "config", "--syntax-only", str(path)], capture_output=True, text=True
        )
        assert run.returncode == 0, (where, run.stdout, run.stderr)
    elif {"route", "receivers"} <= keys:
        run = subprocess.run([require_tool("amtool"), "check-config", str(path)], capture_output=True, text=True)
        assert run.returncode == 0, (where, run.stdout, run.stderr)
    elif "groups" in keys:
        run = subprocess.run([require_tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
        assert run.returncode == 0, (where, run.stdout, run.stderr)
    elif keys <= {"confirmed", "releases"}:
        parse_catalog(document, "file")
    elif keys <= EXPORTER_KEYS:
        try:
            parse_config(document, str(path))
        except ConfigError as err:
            wrong = [e for e in err.errors if not any(marker in e.problem for marker in ABSENT)]
            assert not wrong, (where, [str(e) for e in wrong])


@pytest.mark.parametrize(("where", "body"), [(w, b) for w, k, b in SNIPPETS if k == "json"], ids=lambda v: v)
def test_every_json_snippet_parses(where, body):
    json.loads(body)


def test_every_promql_query_in_the_docs_is_valid(tmp_path):
    queries = [
        line.strip()
        for _, kind, body in SNIPPETS
        if kind == "promql"
        for line in body.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert queries
    rules = {"groups": [{"name": "docs", "rules": [{"record": f"docs:{i}", "expr": q} for i, q in enumerate(queries)]}]}
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(rules))
    run = subprocess.run(
        [require_tool("promtool"), "check", "rules", str(tmp_path / "queries.yml")], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_prometheus_examples_load_the_rules_and_send_alerts_to_alertmanager():
    examples = [
        (where, yaml.safe_load(body))
        for where, kind, body in SNIPPETS
        if kind == "yaml" and "scrape_configs" in (yaml.safe_load(body) or {})
    ]
    alerting = [(w, d) for w, d in examples if w.startswith("docs/alerting.md")]
    assert alerting, "docs/alerting.md shows a Prometheus configuration"
    for where, document in alerting:
        assert document.get("rule_files") and document.get("alerting", {}).get("alertmanagers"), where
    shipped = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert shipped["rule_files"] and shipped["alerting"]["alertmanagers"]


def test_no_snippet_starts_with_a_bare_file_name():
    """A file's name above its content belongs in a comment: as pasted, ' prometheus.yml' is invalid."""
    bare = [
        where
        for where, kind, body in SNIPPETS
        if kind in ("yaml", "json") and re.match(r"\s*[\w./-]+\.(ya?ml|json)\s*$", body.splitlines()[0] if body else "")
    ]
    assert bare == []
