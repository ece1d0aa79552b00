"""The suite runs in temporary homes: nothing it writes (audit logs, threads, settings) reaches the user's real data
folder. tests/conftest.py also fails the whole session if that folder changed by its end (on a machine where nothing
else uses the app meanwhile: it cannot tell the suite's writes from another process's).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.session_home import REAL_FOLDERS, REPO, snapshot


def test_the_homes_point_into_the_session_folder(session_home: Path) -> None:
    import platformdirs

    from assistant.home import config_dir, data_dir, default_audit_path

    for path in (data_dir(), config_dir(), default_audit_path(), Path(platformdirs.user_data_dir("guarded-assistant"))):
        assert path.is_relative_to(session_home), path
    for real in REAL_FOLDERS:
        assert not data_dir().is_relative_to(real) and not real.is_relative_to(session_home)


def test_audit_records_land_in_the_session_home_not_the_real_one(session_home: Path, tmp_path: Path) -> None:
    """A subprocess (it inherits the environment) writes the default audit log: it lands under the session home."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\n", encoding="utf-8")  # no audit.path: the default, under the data folder
    code = (
        "import sys\nfrom pathlib import Path\nfrom assistant.home import default_audit_path\n"
        "from guards.runtime.pipeline import GuardPipeline\nfrom guards.policy import load_policy\n"
        "p = GuardPipeline.from_policy(load_policy(Path(sys.argv[1])), runners={},\n"
        "                              default_audit_path=default_audit_path())\n"
        "p.record('run_start', thread_id='isolation', policy_hash='00' * 32)\nprint(default_audit_path())\n"
    )
    before = snapshot(REAL_FOLDERS)  # compared around the write only: on a shared machine other people use the app
    out = subprocess.run([sys.executable, "-c", code, str(policy)], capture_output=True, text=True, check=True,
                         cwd=REPO, env=os.environ.copy())
    written = Path(out.stdout.strip().splitlines()[-1])
    assert written.is_relative_to(session_home) and written.is_file()
    assert "isolation" in written.read_text(encoding="utf-8")
    assert snapshot(REAL_FOLDERS) == before


def test_the_tiny_model_build_cache_is_the_repos() -> None:
    from model.tiny import default_tiny_dir

    assert default_tiny_dir() == REPO / ".cache" / "tiny-models"
