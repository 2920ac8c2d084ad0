"""What makes two usernames the same name.

- `username_fold`: NFKC (fullwidth and other compatibility forms become their plain
  letters, as Django's own normalize_username does) and Unicode case folding ("ß" and "ss",
  "ﬀ" and "ff", "ǅ" and "dž" fold alike): the spelling a person sees as one name. Failed
  logins are counted per folded name.
- `username_key`: the fold, then each character confusable with another mapped to one
  prototype (Unicode's confusables data, UTS #39, as shipped by confusable_homoglyphs):
  Cyrillic "\u0430" and Latin "a", "rn" and "m", "1" and "l" give one key. Two accounts with
  the same key cannot both exist (accounts.models.UsernameKey).
- `username_mixes_scripts`: letters of two scripts in one name ("bars" + Cyrillic "\u0430" +
  "dmin"): refused at registration whatever exists already."""

from __future__ import annotations

import unicodedata
from functools import cache

from confusable_homoglyphs import confusables


def username_fold(username: str) -> str:
    return unicodedata.normalize("NFKC", username).strip().casefold()


@cache
def _prototype(char: str) -> str:
    """The character (or short string) every member of `char`'s confusable class maps to.
    The data lists each (source, prototype) pair of confusables.txt in both directions; a
    prototype is the member listed with several sources, a source lists just its
    prototype; for a pair of two, the smaller code point stands for both."""
    entries = confusables.confusables_data.get(char)
    if not entries:
        return char
    if len(entries) > 1:
        return char
    other = entries[0]["c"]
    if len(confusables.confusables_data.get(other, [])) > 1 or len(other) > 1:
        return other
    return min(char, other)


def username_key(username: str) -> str:
    folded = unicodedata.normalize("NFD", username_fold(username))
    skeleton = "".join(_prototype(char) for char in folded)
    return unicodedata.normalize("NFC", skeleton).casefold()


def username_mixes_scripts(username: str) -> bool:
    # Digits and punctuation are "Common" and mix with anything.
    return bool(confusables.is_mixed_script(unicodedata.normalize("NFKC", username)))
