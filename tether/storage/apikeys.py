"""API keys: their text, the hash stores keep of them, and the in-memory `KeyStore`.

A key reads `tk-<id>-<secret>`: `id` is 16 hex digits, the key's name in every
listing and log; `secret` is 32 random bytes in base64url (43 characters). Stores
keep the id in clear, to find a key in one indexed read, and only the SHA-256 of the
secret, which they compare in constant time.

Why SHA-256 and not a slow password hash (bcrypt, scrypt, argon2): slow hashes make
it expensive to guess a *low-entropy* password from its stolen hash. A secret of 256
random bits cannot be guessed whatever the hash costs, so a fast hash loses nothing
— while a slow one would cost every key lookup tens of milliseconds of CPU.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, replace

from tether.errors import InvalidRequestError
from tether.storage.base import ApiKey, Principal

PREFIX = "tk-"
_ID = re.compile(r"[0-9a-f]{16}")
_PROJECT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_NAME = 128


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key: its record, its text (shown once) and the hash stores keep."""

    record: ApiKey
    text: str
    digest: bytes


def check_project(project: str) -> str:
    """`project` if it is a valid project name; else `InvalidRequestError`."""
    if not _PROJECT.fullmatch(project):
        raise InvalidRequestError(
            f"Invalid project name {project!r}: use 1 to 64 letters, digits, '_', '-' or '.'.",
            param="project",
        )
    return project


def issue(project: str, name: str | None = None) -> IssuedKey:
    """A new random key of `project`. Raises `InvalidRequestError` for a bad project
    name or a name over 128 characters."""
    check_project(project)
    if name is not None and len(name) > MAX_NAME:
        raise InvalidRequestError(
            f"The key name is {len(name)} characters long; use at most {MAX_NAME}.", param="name"
        )
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    record = ApiKey(key_id, project, name, time.time())
    return IssuedKey(record, f"{PREFIX}{key_id}-{secret}", digest(secret))


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse(key: str) -> tuple[str, bytes] | None:
    """(id, hash of the secret) of a key's text; None when it is not a Tether key."""
    if not key.startswith(PREFIX):
        return None
    key_id, dash, secret = key[len(PREFIX) :].partition("-")
    if not dash or not secret or not _ID.fullmatch(key_id):
        return None
    return key_id, digest(secret)


def verified(
    key_id: str, project: str, stored: bytes, revoked: bool, presented: bytes
) -> Principal | None:
    """The principal of a stored key when the presented hash matches and the key is
    not revoked (the comparison takes the same time wherever the hashes differ)."""
    if not hmac.compare_digest(stored, presented) or revoked:
        return None
    return Principal(project, key_id)


class MemoryKeyStore:
    """The in-memory `KeyStore` (the twin of the real ones; nothing survives)."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[ApiKey, bytes]] = {}

    def __repr__(self) -> str:
        return f"<MemoryKeyStore keys={len(self._keys)}>"

    async def create(self, project: str, name: str | None = None) -> tuple[str, str]:
        issued = issue(project, name)
        self._keys[issued.record.id] = (issued.record, issued.digest)
        return issued.record.id, issued.text

    async def list(self) -> list[ApiKey]:
        return sorted((record for record, _ in self._keys.values()), key=_age)

    async def revoke(self, key_id: str) -> bool:
        found = self._keys.get(key_id)
        if found is None:
            return False
        record, stored = found
        if record.revoked_at is None:
            self._keys[key_id] = (replace(record, revoked_at=time.time()), stored)
        return True

    async def lookup(self, key: str) -> Principal | None:
        parsed = parse(key)
        found = None if parsed is None else self._keys.get(parsed[0])
        if parsed is None or found is None:
            return None
        record, stored = found
        return verified(record.id, record.project, stored, record.revoked_at is not None, parsed[1])


def _age(record: ApiKey) -> tuple[float, str]:
    return record.created_at, record.id
