"""Every way the wallet can refuse something, each with a stable code in 3100-3199.

The CLI prints these as one line (``error[CODE]: message``); scripts match on the code.
Each class's docstring says when it is raised; the message given at raise time says what
the person can do about it.
"""

from __future__ import annotations

from agora.errors import AgoraError


class WalletError(AgoraError):
    """Base of every wallet refusal."""

    code = 3100


class InvalidName(WalletError):
    """A wallet or hotkey name is not 1 to 64 characters of ``A-Z a-z 0-9 _ -``.

    The rule also keeps names from escaping the wallet directory (``..``, ``/``).
    """

    code = 3101


class WalletNotFound(WalletError):
    """No wallet of that name exists under the wallet directory."""

    code = 3102


class KeyNotFound(WalletError):
    """The wallet exists but holds no coldkey secret, or no hotkey of that name."""

    code = 3103


class KeyExists(WalletError):
    """Creating or importing a key would replace an existing one and overwrite was not asked."""

    code = 3104


class WrongPassword(WalletError):
    """A coldkey keyfile does not decrypt with the password given (or it was altered)."""

    code = 3105


class CorruptKeyfile(WalletError):
    """A keyfile is not valid JSON, misses a field, or holds values that do not fit together."""

    code = 3106


class UnsupportedKeyfileVersion(WalletError):
    """A keyfile was written by a format version this program does not read."""

    code = 3107


class InvalidSeed(WalletError):
    """A seed given for import is not 32 bytes written as 64 hexadecimal characters."""

    code = 3108


class InvalidPassword(WalletError):
    """The password chosen to encrypt a coldkey is empty."""

    code = 3109


class InvalidKdfParams(WalletError):
    """Argon2id cost parameters are outside the range this program accepts.

    Raised both for parameters a caller asks for and for those read from a keyfile, so a
    hostile keyfile cannot make the program allocate terabytes of memory.
    """

    code = 3110
