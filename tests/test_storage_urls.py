"""Storage URLs follow SQLAlchemy's slash rule: three slashes, relative; four, absolute.

The journal form once read like an absolute path in the docs (``journal:///path/study.log``) while
the code, rightly, took it as relative: these tests pin where a real journal file appears when the
command runs from another working directory, and that every ``--storage`` help says which is which.
"""

from __future__ import annotations

import json

import click
import optuna
import pytest

from experiments.cli.main import cli as root_cli
from experiments.storage import StorageError, load_study, open_storage, parse_storage_url


def _one_trial_study(url: str) -> None:
    study = optuna.create_study(study_name="s", storage=open_storage(url), directions=["maximize"])
    study.add_trial(optuna.trial.create_trial(value=0.5, params={}, distributions={}))


@pytest.mark.parametrize("scheme, name", [("journal", "study.log"), ("sqlite", "study.db")])
def test_three_slashes_are_relative_to_the_working_directory(tmp_path, monkeypatch, scheme, name):
    proj = tmp_path / "proj"
    proj.mkdir()
    monkeypatch.chdir(proj)
    _one_trial_study(f"{scheme}:///tmp/x/{name}")
    assert (proj / "tmp" / "x" / name).is_file()
    assert parse_storage_url(f"{scheme}:///tmp/x/{name}").path.as_posix() == f"tmp/x/{name}"


@pytest.mark.parametrize("scheme, name", [("journal", "study.log"), ("sqlite", "study.db")])
def test_four_slashes_are_absolute(tmp_path, monkeypatch, scheme, name):
    proj = tmp_path / "proj"
    proj.mkdir()
    monkeypatch.chdir(proj)
    target = tmp_path / "shared" / name
    url = f"{scheme}:////{target.relative_to('/')}"
    assert url.startswith(f"{scheme}:////")
    _one_trial_study(url)
    assert target.is_file()
    assert not any(p.is_file() for p in proj.rglob("*"))  # nothing under the working directory
    assert len(load_study(url, "s").trials) == 1


def test_cli_report_reads_each_form_from_another_directory(cli_here, tmp_path):
    """The real CLI, run from ``proj``: the relative URL finds proj/rel/study.log, the absolute one /.../abs.log."""
    proj = tmp_path / "proj"
    (proj / "rel").mkdir(parents=True)
    _one_trial_study(f"journal:////{(proj / 'rel' / 'study.log').relative_to('/')}")
    _one_trial_study(f"journal:////{(tmp_path / 'abs.log').relative_to('/')}")
    env = {"SHUFFLENAS_HOME": str(tmp_path / "home")}
    for url in ("journal:///rel/study.log", f"journal:////{(tmp_path / 'abs.log').relative_to('/')}"):
        proc = cli_here("report", "--storage", url, "--study", "s", "--out", str(tmp_path / "r"), "--json", cwd=proj, env=env)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["trials"] == 1
    # the relative form does not reach the absolute file: it names the path it looked for
    proc = cli_here("report", "--storage", "journal:///abs.log", "--study", "s", "--out", str(tmp_path / "r2"),
               cwd=proj, env=env)
    assert proc.returncode == 2 and "no study storage at abs.log" in proc.stderr
    assert not (tmp_path / "r2").exists() and not (proj / "abs.log").exists()


def test_missing_relative_journal_is_not_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StorageError, match="no study storage at tmp/none.log"):
        load_study("journal:///tmp/none.log", "s")
    assert not (tmp_path / "tmp").exists()


def _storage_options(command: click.Command, path: str = "shufflenas") -> list[tuple[str, click.Option]]:
    found = []
    ctx = click.Context(command)
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
                found += _storage_options(sub, f"{path} {name}")
    for param in command.params:
        if isinstance(param, click.Option) and "--storage" in param.opts:
            found.append((path, param))
    return found


def test_every_storage_help_says_which_form_is_absolute():
    options = _storage_options(root_cli)
    assert {p for p, _ in options} >= {"shufflenas search", "shufflenas report", "shufflenas export"}
    for path, option in options:
        assert "four slashes" in option.help or "four: absolute" in option.help, path
