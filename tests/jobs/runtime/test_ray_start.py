from __future__ import annotations

from jobs.runtime import ray_start


def test_runtime_env_ships_the_source_tree_without_venv_or_outputs():
    env = ray_start.runtime_env()
    assert env["working_dir"] == str(ray_start.repo_root())
    assert (ray_start.repo_root() / "jobs" / "cli.py").is_file()
    assert {".venv/", ".git/", "demo-output/", "qdrant-data/"} <= set(env["excludes"])


def test_runtime_env_from_an_installed_package_ships_no_site_packages(monkeypatch, tmp_path):
    monkeypatch.setattr(ray_start, "repo_root", lambda: tmp_path)  # no pyproject.toml: site-packages
    env = ray_start.runtime_env()
    assert "working_dir" not in env and env["env_vars"]["TOKENIZERS_PARALLELISM"] == "false"
