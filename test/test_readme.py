"""The README stays short, its parameter tables are the nodes' own, and its links resolve."""

from pathlib import Path
import re

import pytest

from semseg_ros.nodes.params import readme_tables, replace_generated

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]


def test_readme_is_short():
    """The README is the front page; the manual lives in docs/."""
    lines = (ROOT / 'README.md').read_text().count('\n')
    assert lines <= 200, f'README.md has {lines} lines; move detail to docs/'


@pytest.mark.parametrize('path', DOCUMENTS, ids=lambda p: p.name)
def test_parameter_tables_are_generated_from_the_nodes(path):
    """Every parameter table block equals what the nodes declare.

    Regenerate with ``python -m semseg_ros.nodes.params README.md docs/nodes.md``.
    """
    text = path.read_text()
    for key, table in readme_tables().items():
        if f'<!-- {key} -->' in text:
            assert replace_generated(text, key, table) == text, \
                f'{path.name}: the {key} table is stale; run python -m semseg_ros.nodes.params ' \
                f'{path.relative_to(ROOT)}'
    if path.name in ('README.md', 'nodes.md'):
        assert '<!-- segmentation_node parameters -->' in text


@pytest.mark.parametrize('path', DOCUMENTS, ids=lambda p: p.name)
def test_relative_links_resolve(path):
    """Every relative link of the README and docs/ points at a file of the repository."""
    broken = []
    for target in re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', path.read_text()):
        if not re.match(r'[a-z]+://', target) and not (path.parent / target).exists():
            broken.append(target)
    assert not broken, f'{path.name}: broken links {broken}'
