"""Per-install secrets: generated at first use into private, git-ignored files; none in the code."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from imgfeat import credentials, paths


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_local_secrets_are_generated_once_private_and_per_install(tmp_path):
    first = credentials.local(tmp_path / "a")
    path = tmp_path / "a" / "secrets.json"
    assert _mode(path) == 0o600
    assert json.loads(path.read_text()) == first
    assert len(first["jwt_secret"]) >= 40 and len(first["admin_password"]) >= 20
    assert credentials.local(tmp_path / "a") == first  # reused on later starts
    other = credentials.local(tmp_path / "b")
    assert other["jwt_secret"] != first["jwt_secret"] and other["admin_password"] != first["admin_password"]


def test_concurrent_first_starts_agree_on_one_secret(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        seen = list(pool.map(lambda _: credentials.local(tmp_path)["jwt_secret"], range(16)))
    assert len(set(seen)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["secrets.json"]  # no temporary file left


def test_airflow_env_and_services_take_the_home_s_generated_secrets(tmp_path):
    from devtools.airflow_services import LocalAirflow, service_env
    from devtools.local import airflow_env

    secret = credentials.local(tmp_path)["jwt_secret"]
    assert airflow_env(tmp_path)["AIRFLOW__API_AUTH__JWT_SECRET"] == secret
    assert service_env(tmp_path)["AIRFLOW__API_AUTH__JWT_SECRET"] == secret
    af = LocalAirflow(home=tmp_path)
    assert af.password == credentials.local(tmp_path)["admin_password"] and af.secrets_file == tmp_path / "secrets.json"
    assert service_env(tmp_path)["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"  # user admin, role admin


def test_no_fixed_secret_or_password_in_the_code():
    sources = [paths.REPO / "docker-compose.yml", paths.REPO / "Makefile", *sorted((paths.REPO / "imgfeat").glob("*.py")),
               *sorted((paths.REPO / "devtools").glob("*.py")),
               *sorted((paths.REPO / "docker").rglob("*")), *sorted((paths.REPO / "plugins").rglob("*.py"))]
    for f in (s for s in sources if s.is_file()):
        text = f.read_text()
        assert "imgfeat-local-only" not in text, f
        assert '"admin": "admin"' not in text and "admin / admin" not in text and "admin/admin" not in text, f
    assert not (paths.REPO / "docker" / "airflow-passwords.json").exists()


def test_compose_secrets_are_generated_once_and_private(tmp_path):
    out = subprocess.run([sys.executable, "-m", "imgfeat.credentials", "compose", "--dir", str(tmp_path / "c")],
                         cwd=paths.REPO, capture_output=True, text=True, check=True).stdout
    env_file, passwords = tmp_path / "c" / "airflow.env", tmp_path / "c" / "passwords.json"
    assert out.strip() == f"compose secrets in {env_file}; login admin, password in {passwords}"
    assert _mode(env_file) == _mode(passwords) == 0o600
    env = credentials.read_env_file(env_file)
    assert set(env) == set(credentials.COMPOSE_KEYS)
    from cryptography.fernet import Fernet

    Fernet(env["AIRFLOW__CORE__FERNET_KEY"])  # a valid Fernet key
    users = json.loads(passwords.read_text())
    assert list(users) == ["admin"] and len(users["admin"]) >= 20
    before = (env_file.read_text(), passwords.read_text())
    credentials.compose(tmp_path / "c")  # never overwritten: the stack's database keeps its Fernet key
    assert (env_file.read_text(), passwords.read_text()) == before
    assert credentials.read_env_file(credentials.compose(tmp_path / "d")["env_file"]) != env


def test_the_generated_files_are_git_ignored():
    for rel in ("var/airflow/secrets.json", "var/airflow/passwords.json",
                str(credentials.COMPOSE_DIR / credentials.COMPOSE_ENV),
                str(credentials.COMPOSE_DIR / credentials.COMPOSE_PASSWORDS)):
        r = subprocess.run(["git", "check-ignore", "-q", "--no-index", rel], cwd=paths.REPO)
        assert r.returncode == 0, f"{rel} is not git-ignored"
