"""API keys.

- a key is bound to one tenant: naming it for another tenant (in the same start or at a
  later start) is refused with a clear error, never a silent re-bind;
- keys can be given by file (``serve --api-key-file PATH``, one
  ``[TENANT:]KEY`` a line) or by environment (``AICM_COLLECTOR_API_KEYS``);
- ``keys list`` shows keys by their abbreviation (``sha256:`` and 8 hex digits of the
  key's SHA-256, as everything else names keys) with their tenant, never the key;
  ``keys revoke --database DB REF`` deletes one;
- ``keys create`` without an existing database names the database and refuses to create it.
"""

from __future__ import annotations

import json
from pathlib import Path

import requests

from aicm_manual._secret import abbreviate
from aicm_manual.server import hash_key, open_storage

from .live import HTTP_TIMEOUT, SCHEMAS, cli_env, collector, record, run_cli, serve

KEY = "aicm_live_shared_key_0123"


def _serve_args(db: Path, *more: str) -> list[str]:
    return ["--database", f"sqlite:///{db}", "--schemas", str(SCHEMAS), *more]


def _events_of(url: str, key: str) -> list[str]:
    r = requests.get(
        f"{url}/api/v1/events", headers={"Authorization": f"Bearer {key}"}, timeout=HTTP_TIMEOUT
    )
    assert r.status_code == 200, (r.status_code, r.text[:200])
    return [e["response_id"] for e in r.json()["events"]]


def _track(url: str, key: str, rid: str) -> requests.Response:
    return requests.post(
        f"{url}/api/v1/track",
        json={"tracked": [record(rid)]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=HTTP_TIMEOUT,
    )


def test_serve_refuses_one_key_named_for_two_tenants(tmp_path: Path) -> None:
    """`serve --api-key tenant-a:K --api-key tenant-b:K` exits non-zero naming both
    tenants (it started and bound K to tenant-b, the last one)."""
    args = _serve_args(
        tmp_path / "c.db", "--api-key", f"tenant-a:{KEY}", "--api-key", f"tenant-b:{KEY}"
    )
    with serve(*args, cwd=tmp_path) as served:
        started = served.up
        _, err = served.stop()
    assert not started, "serve started with one key named for two tenants"
    assert served.proc.returncode != 0
    assert "tenant-a" in err, err
    assert "tenant-b" in err, err


def test_a_restart_naming_another_tenant_for_a_stored_key_is_refused(tmp_path: Path) -> None:
    """A key stored for tenant-a and named for tenant-b at the next start: the start is
    refused and the key still reads tenant-a's records (it was silently re-bound)."""
    db = tmp_path / "c.db"
    with serve(*_serve_args(db, "--api-key", f"tenant-a:{KEY}"), cwd=tmp_path) as first:
        assert first.up
        assert _track(first.url, KEY, "of-tenant-a").status_code == 200
        first.stop()
    with serve(*_serve_args(db, "--api-key", f"tenant-b:{KEY}"), cwd=tmp_path) as second:
        started = second.up
        _, err = second.stop()
    with collector(f"sqlite:///{db}", keys=()) as api:
        still = _events_of(api.url, KEY)
    assert not started, f"serve re-bound the key to tenant-b; it now reads {still}"
    assert second.proc.returncode != 0
    assert "tenant-a" in err, err
    assert "tenant-b" in err, err
    assert still == ["of-tenant-a"]


def test_serve_reads_keys_from_a_file(tmp_path: Path) -> None:
    """`serve --api-key-file PATH` (one [TENANT:]KEY a line) registers the file's keys."""
    keys = tmp_path / "keys.txt"
    keys.write_text(f"tenant-a:{KEY}\n")
    with serve(*_serve_args(tmp_path / "c.db", "--api-key-file", str(keys)), cwd=tmp_path) as s:
        if not s.up:
            _, err = s.stop()
            raise AssertionError(f"serve --api-key-file exited {s.proc.returncode}: {err}")
        assert _track(s.url, KEY, "from-file").status_code == 200
        assert _events_of(s.url, KEY) == ["from-file"]


def test_serve_reads_keys_from_the_environment(tmp_path: Path) -> None:
    """AICM_COLLECTOR_API_KEYS=TENANT:KEY registers that key at start (no --api-key)."""
    env = cli_env(AICM_COLLECTOR_API_KEYS=f"tenant-a:{KEY}")
    with serve(*_serve_args(tmp_path / "c.db"), cwd=tmp_path, env=env) as s:
        assert s.up
        r = _track(s.url, KEY, "from-env")
        assert r.status_code == 200, (r.status_code, r.text[:200])


def test_keys_list_shows_references_and_keys_revoke_removes_one(tmp_path: Path) -> None:
    """`keys list` names each key by reference with its tenant (never the key itself);
    `keys revoke REF` removes it, after which the key is refused (401)."""
    db = f"sqlite:///{tmp_path / 'c.db'}"
    open_storage(db).close()  # an existing database: `keys create` may refuse to make one
    created = run_cli("keys", "create", "--tenant", "acme", "--database", db, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    ref = abbreviate(hash_key(key))

    listed = run_cli("keys", "list", "--database", db, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "acme" in listed.stdout, listed.stdout
    assert ref in listed.stdout, listed.stdout
    assert key not in listed.stdout + listed.stderr

    revoked = run_cli("keys", "revoke", "--database", db, ref, cwd=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    again = run_cli("keys", "list", "--database", db, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert ref not in again.stdout
    with collector(db, keys=()) as api:
        assert _track(api.url, key, "after-revoke").status_code == 401


def test_keys_create_in_another_folder_does_not_create_a_database(tmp_path: Path) -> None:
    """`keys create` where no database exists (the default relative path, run from some
    other folder) exits non-zero naming the database and leaves no file behind."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_cli("keys", "create", "--tenant", "acme", cwd=elsewhere)
    assert result.returncode != 0, f"created a key in a new database: {result.stdout!r}"
    assert "collector.db" in result.stderr, result.stderr
    assert not result.stdout.strip()
    assert list(elsewhere.iterdir()) == []


def test_keys_create_names_the_database_and_creates_one_only_when_asked(tmp_path: Path) -> None:
    """`keys create --create` makes a new database and says where; the key goes to stdout
    alone, its abbreviation (never the key) to stderr."""
    db = tmp_path / "new" / "collector.db"
    result = run_cli(
        "keys",
        "create",
        "--tenant",
        "acme",
        "--database",
        f"sqlite:///{db}",
        "--create",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert db.is_file()
    assert str(db) in result.stderr.replace("\n", "")
    assert abbreviate(hash_key(key)) in result.stderr
    assert key not in result.stderr


def test_keys_revoke_refuses_an_unknown_or_malformed_reference(tmp_path: Path) -> None:
    """`keys revoke` of a reference no key has, or of text that is no reference, exits
    non-zero saying so and revokes nothing."""
    db = f"sqlite:///{tmp_path / 'c.db'}"
    open_storage(db).close()
    created = run_cli("keys", "create", "--database", db, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    for ref, says in (("sha256:00000000", "no key"), ("acme", "not a key reference")):
        result = run_cli("keys", "revoke", "--database", db, ref, cwd=tmp_path)
        assert result.returncode != 0
        assert says in result.stderr, result.stderr
    listed = run_cli("keys", "list", "--database", db, "--json", cwd=tmp_path)
    assert len(json.loads(listed.stdout)) == 1


def test_admin_routes_list_and_revoke_the_tenants_own_keys(tmp_path: Path) -> None:
    """GET /api/v1/keys lists the admin key's tenant's keys (abbreviations, never keys);
    DELETE /api/v1/keys/{ref} revokes one of them, and never another tenant's key; a key
    without the admin scope gets 403."""
    db = f"sqlite:///{tmp_path / 'c.db'}"
    admin, other, foreign = "aicm_admin_key_of_a", "aicm_other_key_of_a", "aicm_key_of_tenant_b"
    with collector(
        db, keys=(f"tenant-a:{admin}", f"tenant-a:{other}", f"tenant-b:{foreign}")
    ) as api:
        storage = open_storage(db)
        try:
            storage.put_key(hash_key(other), "tenant-a", frozenset({"read"}))
        finally:
            storage.close()

        def call(method: str, path: str, key: str) -> requests.Response:
            return requests.request(
                method,
                f"{api.url}/api/v1/{path}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=HTTP_TIMEOUT,
            )

        listed = call("GET", "keys", admin)
        assert listed.status_code == 200, listed.text
        keys = listed.json()["keys"]
        assert sorted(k["key"] for k in keys) == sorted(
            abbreviate(hash_key(k)) for k in (admin, other)
        )
        assert {k["tenant"] for k in keys} == {"tenant-a"}
        assert admin not in listed.text
        assert call("GET", "keys", other).status_code == 403
        assert call("DELETE", f"keys/{abbreviate(hash_key(foreign))}", admin).status_code == 404
        revoked = call("DELETE", f"keys/{abbreviate(hash_key(other))}", admin)
        assert revoked.status_code == 200, revoked.text
        assert revoked.json() == {"revoked": abbreviate(hash_key(other))}
        assert call("GET", "events", other).status_code == 401
        assert call("GET", "events", foreign).status_code == 200
