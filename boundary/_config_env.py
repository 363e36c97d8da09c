"""`${VAR}` substitution in config strings.

Applied to string values after YAML parsing, so that a substituted value is
never itself parsed as YAML (a password containing `: ` or `#` stays a
string). Only the braced forms are recognised; a lone `$` is kept as is, so
most literal dollars need no escaping at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SYNTAX = "${NAME} or ${NAME:-default}, NAME made of letters, digits and _ ($$ for a literal $)"


@dataclass(frozen=True)
class SubstitutionProblem:
    expected: str
    found: str


def substitute(text: str, environ: Mapping[str, str]) -> tuple[str, list[SubstitutionProblem]]:
    """Expand `${NAME}`, `${NAME:-default}` and `$$` in `text`.

    As in the shell, the default applies when the variable is unset or empty;
    it is taken literally (no nesting) and cannot contain `}`. Every problem
    in the string is reported, not only the first.
    """
    out: list[str] = []
    problems: list[SubstitutionProblem] = []
    i = 0
    while (j := text.find("$", i)) != -1:
        out.append(text[i:j])
        nxt = text[j + 1 : j + 2]
        if nxt == "$":
            out.append("$")
            i = j + 2
        elif nxt == "{":
            end = text.find("}", j + 2)
            if end == -1:
                problems.append(SubstitutionProblem(_SYNTAX, f"unclosed '{text[j:]}'"))
                return text, problems
            i = end + 1
            name, sep, default = text[j + 2 : end].partition(":-")
            if not _NAME.fullmatch(name):
                problems.append(SubstitutionProblem(_SYNTAX, f"'{text[j:i]}'"))
            elif environ.get(name):
                out.append(environ[name])
            elif sep:
                out.append(default)
            elif name in environ:
                out.append("")  # set but empty, and no default asked for
            else:
                problems.append(
                    SubstitutionProblem(
                        f"environment variable {name} to be set (or a default: "
                        f"${{{name}:-default}})",
                        f"{name} is not set",
                    )
                )
        else:
            out.append("$")
            i = j + 1
    out.append(text[i:])
    return "".join(out), problems
