"""Users, passwords and bearer tokens in the store.

Passwords are hashed with scrypt (stdlib ``hashlib``; n=2**14, r=8, p=1, a random
16-byte salt) and compared in constant time. Tokens are random 32-byte strings
given to the client once; the store keeps only their SHA-256, so a stolen
database does not give working tokens. A token is either a signed-in user's
session (with an expiry) or an Open311 client's API key (no user, no expiry).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from city.errors import InvalidInput, NotFound
from city.store.schema import TokenRow, UserRow
from city.users import PermissionDenied, Role, User

SESSION_TTL = timedelta(hours=12)
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, key = stored.split("$")
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(got, base64.b64decode(key))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user(row: UserRow) -> User:
    return User(name=row.name, role=Role(row.role), department_id=row.department_id)


class AccountStore:
    """Mixed into :class:`city.store.Store`."""

    def add_user(self, user: User, password: str, *, now: datetime | None = None) -> User:
        """Create a user; a name already taken is refused."""
        if len(password) < 8:
            raise InvalidInput("密码至少 8 个字符")
        user.check(self.city)
        now = now or datetime.now(UTC)
        try:
            with self.writing() as s:
                s.add(UserRow(name=user.name, role=user.role.value, department_id=user.department_id,
                              password_hash=hash_password(password), disabled=False, created_at=now))
        except IntegrityError:
            raise InvalidInput(f"用户名「{user.name}」已存在") from None
        return user

    def users(self) -> list[User]:
        with self.reading() as s:
            return [_user(r) for r in s.execute(select(UserRow).where(UserRow.disabled.is_(False)).order_by(UserRow.id)).scalars()]

    def user(self, name: str) -> User:
        with self.reading() as s:
            row = s.execute(select(UserRow).where(UserRow.name == name)).scalar_one_or_none()
        if row is None or row.disabled:
            raise NotFound(f"用户「{name}」不存在")
        return _user(row)

    def set_password(self, name: str, password: str) -> None:
        if len(password) < 8:
            raise InvalidInput("密码至少 8 个字符")
        with self.writing() as s:
            n = s.execute(update(UserRow).where(UserRow.name == name).values(password_hash=hash_password(password))).rowcount
        if not n:
            raise NotFound(f"用户「{name}」不存在")

    def disable_user(self, name: str) -> None:
        """Disable a user and revoke every token of theirs."""
        now = datetime.now(UTC)
        with self.writing() as s:
            if not s.execute(update(UserRow).where(UserRow.name == name).values(disabled=True)).rowcount:
                raise NotFound(f"用户「{name}」不存在")
            s.execute(update(TokenRow).where(TokenRow.user_name == name, TokenRow.revoked_at.is_(None)).values(revoked_at=now))

    def login(self, name: str, password: str, *, ttl: timedelta = SESSION_TTL, now: datetime | None = None) -> tuple[User, str]:
        """Check the password; a new session token for the user. The same message for an
        unknown name and a wrong password (no user enumeration)."""
        with self.reading() as s:
            row = s.execute(select(UserRow).where(UserRow.name == name)).scalar_one_or_none()
        stored = row.password_hash if row is not None else hash_password("x" * 8)  # same work either way
        if not check_password(password, stored) or row is None or row.disabled:
            raise PermissionDenied("用户名或密码错误")
        now = now or datetime.now(UTC)
        return _user(row), self._issue(kind="session", user_name=row.name, label="登录", expires_at=now + ttl, now=now)

    def _issue(self, *, kind: str, user_name: str | None, label: str, expires_at: datetime | None, now: datetime) -> str:
        token = secrets.token_urlsafe(32)
        with self.writing() as s:
            s.add(TokenRow(sha256=_digest(token), kind=kind, user_name=user_name, label=label, created_at=now,
                           expires_at=expires_at))
        return token

    def issue_api_key(self, client: str, *, now: datetime | None = None) -> str:
        """A key for an Open311 client (a hotline system, an app): shown once."""
        if not client.strip():
            raise InvalidInput("API key 需要一个客户端名称")
        return self._issue(kind="api_key", user_name=None, label=client.strip()[:128], expires_at=None,
                           now=now or datetime.now(UTC))

    def token(self, token: str, *, now: datetime | None = None) -> tuple[str, User | None, str] | None:
        """(kind, user or None, label) of a valid token; None for an unknown, expired or
        revoked one, or one whose user was disabled."""
        now = now or datetime.now(UTC)
        with self.reading() as s:
            row = s.execute(select(TokenRow).where(TokenRow.sha256 == _digest(token))).scalar_one_or_none()
            if row is None or row.revoked_at is not None or (row.expires_at and row.expires_at <= now):
                return None
            if row.user_name is None:
                return row.kind, None, row.label
            urow = s.execute(select(UserRow).where(UserRow.name == row.user_name)).scalar_one_or_none()
            if urow is None or urow.disabled:
                return None
            return row.kind, _user(urow), row.label

    def revoke(self, token: str) -> bool:
        with self.writing() as s:
            return bool(s.execute(update(TokenRow).where(TokenRow.sha256 == _digest(token), TokenRow.revoked_at.is_(None))
                                  .values(revoked_at=datetime.now(UTC))).rowcount)
