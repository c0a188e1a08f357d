"""The standard ament linters (flake8 and pep257), as a ROS 2 ament_python package runs them."""
from __future__ import annotations

from pathlib import Path

from ament_flake8.main import main_with_errors as flake8_main
from ament_pep257.main import main as pep257_main
import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_LINE_LENGTH = 99


def _paths() -> list[str]:
    """Python sources of the package: src/, launch/, tests/, bench/ and setup.py."""
    paths = [REPO / d for d in ('src', 'launch', 'tests', 'bench') if (REPO / d).is_dir()]
    paths.append(REPO / 'setup.py')
    return [str(p) for p in paths]


@pytest.mark.linter
@pytest.mark.flake8
def test_flake8(monkeypatch, tmp_path):
    # ament_flake8 walks the current directory looking for AMENT_IGNORE markers; run it from an
    # empty folder so that it does not crawl .venv/.
    monkeypatch.chdir(tmp_path)
    rc, errors = flake8_main(argv=['--linelength', str(MAX_LINE_LENGTH), *_paths()])
    assert rc == 0, f'Found {len(errors)} code style errors / warnings:\n' + '\n'.join(errors)


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    rc = pep257_main(argv=_paths())
    assert rc == 0, 'Found code style errors / warnings (see the captured output)'


def test_flake8_catches_errors(monkeypatch, tmp_path):
    """The flake8 run above does check files: a bad file fails with the expected codes."""
    bad = tmp_path / 'bad.py'
    bad.write_text('import os\nx = ' + '1 + ' * 30 + '1\n')
    monkeypatch.chdir(tmp_path)
    rc, errors = flake8_main(argv=['--linelength', str(MAX_LINE_LENGTH), str(bad)])
    assert rc == 1
    text = '\n'.join(errors)
    assert 'F401' in text and 'E501' in text, text
