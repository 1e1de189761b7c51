"""Authentication for the emulator: password hashes, RSA key pairs (JWT), the login decision, secret redaction.

The emulator is started with a bootstrap administrator (environment ``SNOWFLAKE_EMULATOR_USER`` and
``SNOWFLAKE_EMULATOR_PASSWORD``, never argv). It then checks every login as Snowflake does:

- a password login (``AUTHENTICATOR`` absent or ``SNOWFLAKE``) against the user's salted scrypt hash; a wrong
  password or an unknown user gets ``390100 Incorrect username or password was specified.``;
- a key-pair login (``AUTHENTICATOR = SNOWFLAKE_JWT``): the JWT the connector signs with the private key must
  name ``ACCOUNT.USER`` and the SHA-256 fingerprint of one of the user's ``RSA_PUBLIC_KEY``/``RSA_PUBLIC_KEY_2``,
  verify against that key and not be expired; otherwise ``390144 JWT token is invalid.``;
- the role asked for at login must be granted to the user (``390189``).

Stored procedures call back into the emulator as an internal user with a random token issued for that one call and
valid only for its role (the procedure owner's, or the caller's) while it runs (never the administrator's password).

Without a bootstrap password the emulator accepts any credentials (``open`` mode, for ad-hoc use) and says so at
start-up. Passwords never appear in the emulator's log: :func:`install_redaction` rewrites every log record.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

INTERNAL_USER = "EMULATOR$PROCEDURE"
ADMIN_ROLES = frozenset({"ACCOUNTADMIN", "SECURITYADMIN", "SYSADMIN", "USERADMIN"})

BAD_CREDENTIALS = (390100, "Incorrect username or password was specified.")
BAD_JWT = (390144, "JWT token is invalid.")
USER_DISABLED = (390102, "User access disabled. Contact your local system administrator.")

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class LoginError(Exception):
    """A refused login: ``code`` and ``message`` are what Snowflake answers."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def role_not_granted(role: str) -> LoginError:
    return LoginError(
        390189,
        f"Role '{role}' specified in the connect string is not granted to this user. Contact your local system "
        "administrator, or attempt to login with another role, e.g. PUBLIC.",
    )


# -- passwords -------------------------------------------------------------------------------------------------------
def hash_password(password: str) -> str:
    """``scrypt$n$r$p$<salt>$<hash>`` (base64), a fresh 16-byte salt each time."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, maxmem=64 * 1024 * 1024, **_SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


# Logins that succeeded, so a client logging in again (dbt, Airflow and the CLI open many sessions) does not pay for
# scrypt each time: keyed by the stored hash (a changed password misses) and an HMAC of the password under a key
# that lives only in this process. Failed attempts are never cached, so guessing still costs a full scrypt each try.
_VERIFIED_KEY = secrets.token_bytes(32)
_verified: set[tuple[str, bytes]] = set()
_VERIFIED_MAX = 1024


def verify_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    seen = (stored, hmac.new(_VERIFIED_KEY, password.encode(), hashlib.sha256).digest())
    if seen in _verified:
        return True
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=64 * 1024 * 1024,
        )
    except ValueError:
        return False
    if not hmac.compare_digest(actual, expected):
        return False
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    _verified.add(seen)
    return True


# -- public keys -----------------------------------------------------------------------------------------------------
def load_public_key(text: str) -> Any:
    """A public key as ``ALTER USER ... SET RSA_PUBLIC_KEY`` takes it: base64 DER, with or without PEM lines."""
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    body = re.sub(r"-----(BEGIN|END) [A-Z ]+-----", "", text)
    body = re.sub(r"\s+", "", body)
    try:
        return load_der_public_key(base64.b64decode(body))
    except (ValueError, TypeError) as e:
        raise ValueError("Invalid public key: expected a base64 DER (PEM body) RSA or EC public key") from e


def public_key_body(text: str) -> str:
    """The key in the form Snowflake stores it: base64 DER on one line (validated)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = load_public_key(text)
    return base64.b64encode(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode()


def fingerprint(text: str) -> str:
    """``SHA256:<base64 sha256 of the DER public key>``, as ``DESC USER`` shows ``RSA_PUBLIC_KEY_FP``."""
    der = base64.b64decode(public_key_body(text))
    return "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def verify_jwt(token: str, account: str, user: str, keys: list[str]) -> bool:
    """The connector's key-pair JWT: issued by ``ACCOUNT.USER.SHA256:<fp>`` for subject ``ACCOUNT.USER``, signed
    by the private key of one of ``keys`` (the user's registered public keys), not expired."""
    import jwt

    qualified = f"{account}.{user}".upper()
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    issuer, subject = str(claims.get("iss", "")), str(claims.get("sub", ""))
    if subject.upper() != qualified or not issuer.upper().startswith(qualified + "."):
        return False
    wanted = issuer[len(qualified) + 1 :]
    for key in keys:
        try:
            if fingerprint(key) != wanted:
                continue
            jwt.decode(
                token,
                key=load_public_key(key),
                algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"],
                options={"require": ["iss", "sub", "iat", "exp"]},
                leeway=60,
            )
            return True
        except (jwt.PyJWTError, ValueError):
            continue
    return False


# -- the login decision ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Principal:
    """Who a session is: its user, its current role, and whether the user may use every role (an unchecked login
    in open mode, or the internal procedure user)."""

    user: str
    role: str
    any_role: bool = False


@dataclass
class Authenticator:
    """The process's authentication settings, and the tokens of the procedure calls running now: a CALL's handler
    logs in as :data:`INTERNAL_USER` with a token of its own that is valid for that call's role only (the owner's,
    or the caller's for ``EXECUTE AS CALLER``), and only while the call runs."""

    bootstrap_user: str | None = None
    bootstrap_password: str | None = field(default=None, repr=False)
    _calls: dict[str, str] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def open(self) -> bool:
        """No bootstrap password: every login is accepted (ad-hoc use)."""
        return not self.bootstrap_password

    def secrets(self) -> list[str]:
        return [s for s in (self.bootstrap_password,) if s]

    def issue(self, role: str) -> str:
        """A token for one procedure call running with ``role``."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._calls[token] = role
        _KNOWN.append(token)
        return token

    def revoke(self, token: str) -> None:
        with self._lock:
            self._calls.pop(token, None)
        with contextlib.suppress(ValueError):
            _KNOWN.remove(token)

    def call_role(self, token: str) -> str | None:
        """The role of the running call whose token this is (compared in constant time), or None."""
        with self._lock:
            calls = list(self._calls.items())
        found = None
        for known, role in calls:
            if hmac.compare_digest(known.encode(), token.encode()):
                found = role
        return found


def normalise_name(name: str) -> str:
    name = name.strip()
    if len(name) >= 2 and name.startswith('"') and name.endswith('"'):
        return name[1:-1]
    return name.upper()


# -- redaction -------------------------------------------------------------------------------------------------------
_SECRET_VALUE = re.compile(
    r"""(?P<key>\b(?:PASSWORD|PRIVATE_KEY_PASSPHRASE|PRIVATE_KEY_FILE_PWD|TOKEN)\b["']?\s*[=:]\s*)"""
    r"""(?P<value>\\?'(?:''|\\'|[^'])*?\\?'(?!')|\\?"(?:[^"\\]|\\.)*?\\?"|[^\s,;)]+)""",
    re.IGNORECASE,
)
_KNOWN: list[str] = []


def redact(text: str) -> str:
    """``text`` with password values (``PASSWORD = '...'``) and the process's own secrets replaced by ``****``."""
    for secret in _KNOWN:
        if secret and secret in text:
            text = text.replace(secret, "****")
    if "PASSWORD" in text.upper() or "TOKEN" in text.upper() or "PASSPHRASE" in text.upper():
        text = _SECRET_VALUE.sub(lambda m: m.group("key") + "'****'", text)
    return text


def install_redaction(known: list[str]) -> None:
    """Redact every log record this process writes (its message and any traceback), whatever the logger."""
    _KNOWN[:] = [s for s in known if s]
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_emulator_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler
            return record
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    factory._emulator_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
