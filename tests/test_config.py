"""Where the database and config file come from, and what a bad config file gets."""

from pathlib import Path

import pytest

from tqcli.config import default_db_path, load_config
from tqcli.errors import InvalidInput

# Config resolution: no store is opened.
pytestmark = pytest.mark.sqlite_only


def env_for(tmp_path, **extra):
    return {"HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "cfg"), **extra}


def test_default_database_is_under_xdg_data_home(tmp_path):
    assert default_db_path(env_for(tmp_path)) == tmp_path / "data" / "tqcli" / "tqcli.db"
    assert default_db_path({"HOME": "/home/u"}) == Path("/home/u/.local/share/tqcli/tqcli.db")


def test_precedence_flag_env_config_default(tmp_path):
    cwd = tmp_path / "project"
    cwd.mkdir()
    (cwd / "tqcli.toml").write_text('db = "from-file.db"\n')
    env = env_for(tmp_path, TQCLI_DB=str(tmp_path / "env.db"))
    assert load_config(db_flag="flag.db", env=env, cwd=cwd).db == Path("flag.db")
    assert load_config(env=env, cwd=cwd).db == tmp_path / "env.db"
    del env["TQCLI_DB"]
    assert load_config(env=env, cwd=cwd).db == cwd / "from-file.db"  # relative to the config file
    (cwd / "tqcli.toml").unlink()
    assert load_config(env=env, cwd=cwd).db == tmp_path / "data" / "tqcli" / "tqcli.db"


def test_key_file_precedence_flag_env_config_default(tmp_path):
    cwd = tmp_path / "project"
    cwd.mkdir()
    (cwd / "tqcli.toml").write_text('key_file = "keys/worker.toml"\n')
    env = env_for(tmp_path, TQCLI_KEY_FILE=str(tmp_path / "env-keys.toml"))
    assert load_config(key_file_flag="flag.toml", env=env, cwd=cwd).key_file == Path("flag.toml")
    assert load_config(env=env, cwd=cwd).key_file == tmp_path / "env-keys.toml"
    del env["TQCLI_KEY_FILE"]
    assert load_config(env=env, cwd=cwd).key_file == cwd / "keys" / "worker.toml"  # relative to the config file
    (cwd / "tqcli.toml").unlink()
    assert load_config(env=env, cwd=cwd).key_file == tmp_path / "cfg" / "tqcli" / "keys.toml"
    with pytest.raises(InvalidInput, match="--key-file is empty"):
        load_config(key_file_flag=" ", env=env, cwd=cwd)


def test_config_file_precedence(tmp_path):
    cwd = tmp_path / "project"
    cwd.mkdir()
    xdg = tmp_path / "cfg" / "tqcli"
    xdg.mkdir(parents=True)
    (xdg / "config.toml").write_text('db = "/x/xdg.db"\n')
    env = env_for(tmp_path)
    assert load_config(env=env, cwd=cwd).config_file == xdg / "config.toml"
    (cwd / "tqcli.toml").write_text('db = "/x/local.db"\n')
    assert load_config(env=env, cwd=cwd).db == Path("/x/local.db")
    named = tmp_path / "named.toml"
    named.write_text('db = "/x/named.db"\nbusy_timeout = "30s"\nsynchronous = "full"\n[worker]\nconcurrency = 4\nlease = "2m"\n')
    config = load_config(env={**env, "TQCLI_CONFIG": str(named)}, cwd=cwd)
    assert (config.db, config.busy_timeout, config.synchronous, config.worker.concurrency, config.worker.lease) == (Path("/x/named.db"), 30, "full", 4, 120)
    assert load_config(config_flag=str(xdg / "config.toml"), env={**env, "TQCLI_CONFIG": str(named)}, cwd=cwd).db == Path("/x/xdg.db")


def test_malformed_config_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('db = "x.db"\n\nbusy_timeout = = 3\n')
    with pytest.raises(InvalidInput, match=r"malformed config file .*bad.toml: .*line 3"):
        load_config(config_flag=str(bad), env=env_for(tmp_path), cwd=tmp_path)


@pytest.mark.parametrize(
    "text, message",
    [
        ('dbb = "x"\n', "unknown key 'dbb'"),
        ('synchronous = "off"\n', "synchronous must be 'normal' or 'full'"),
        ('busy_timeout = "soon"\n', "invalid busy_timeout"),
        ("[worker]\nconcurrency = 0\n", "worker.concurrency must be a positive integer"),
        ("[worker]\nthreads = 2\n", r"unknown key 'threads' in \[worker\]"),
    ],
)
def test_invalid_config_values(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=message):
        load_config(config_flag=str(path), env=env_for(tmp_path), cwd=tmp_path)


def test_a_named_config_file_must_exist(tmp_path):
    with pytest.raises(InvalidInput, match="from --config"):
        load_config(config_flag=str(tmp_path / "none.toml"), env=env_for(tmp_path), cwd=tmp_path)
    with pytest.raises(InvalidInput, match="from TQCLI_CONFIG"):
        load_config(env=env_for(tmp_path, TQCLI_CONFIG=str(tmp_path / "none.toml")), cwd=tmp_path)


def test_cli_creates_the_default_database_with_its_folder(cli):
    env = {"TQCLI_DB": None}
    cli.ok("submit", "a:b", env=env)
    assert (cli.home / "data" / "tqcli" / "tqcli.db").is_file()
    assert not cli.db.exists()


def test_cli_malformed_config_is_exit_2_with_file_and_line(cli):
    (cli.home / "tqcli.toml").write_text("db = \n")
    result = cli("status")
    assert result.code == 2 and "tqcli.toml" in result.stderr and "line 1" in result.stderr
    assert len(result.error_lines) == 1


def test_cli_db_flag_beats_the_environment(cli, tmp_path):
    other = tmp_path / "other.db"
    cli.ok("--db", str(other), "submit", "a:b")
    assert other.exists() and not cli.db.exists()


def test_tqcli_user_names_the_actor_while_the_database_runs_open(cli):
    cli.ok("submit", "a:b", env={"TQCLI_USER": "ci-bot"})
    assert cli.ok("audit", "log", "--json").json[0]["actor"] == "ci-bot"
    assert cli.ok("status", "1", "--json").json["submitted_by"] == "ci-bot"


@pytest.mark.parametrize("value", ["postgresq://u:secret@127.0.0.1:5432/jobs", "POSTGRESQL://u@host/jobs", "mysql://u@host/jobs"])
def test_a_url_that_is_not_postgresql_is_refused_not_taken_for_a_file(value, tmp_path):
    from tqcli.config import load_config

    with pytest.raises(InvalidInput, match="a URL must start with postgresql://") as raised:
        load_config(db_flag=value, env={"HOME": str(tmp_path)}, cwd=tmp_path)
    assert "secret" not in str(raised.value)
    assert list(tmp_path.iterdir()) == []
